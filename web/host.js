// The JS host of the browser build.
//
// The simulator's SAB is one allocation inside the wasm linear memory. This host reads it in place,
// with no copy, through typed arrays over `WebAssembly.Memory.buffer` at the SAB's base offset,
// using the offsets generated from `schemas/sab_layout.capnp` (the same schema as the Rust
// constants). It:
//   - exposes `window.__INOS_SAB__` = { buffer, base, size, layout, epochs() };
//   - draws a small HUD (epochs, bird count, tick rate) straight from memory every animation frame;
//   - writes page visibility into the SYSTEM_VISIBILITY word (1 visible, 0 hidden); the pulse
//     drops to 30 Hz while the page is hidden, as in the original;
//   - is trunk's initializer (`data-initializer`), so it also shows download progress and failures;
//     the loading indicator stays until the first bird epoch, whose time after navigation it
//     records in `window.__INOS_FIRST_BIRD_MS__`;
//   - says so at once when the browser has no WebGL2, which the simulator draws with.

import * as layout from "./generated/sab_layout.js";

const loading = () => document.getElementById("loading");

function showLoading(text, isError = false) {
  const element = loading();
  // The simulator may already have reported its own error into the element.
  if (!element || element.classList.contains("error")) return;
  const message = element.querySelector(".message");
  if (message) message.textContent = text;
  element.classList.toggle("error", isError);
}

/** Whether this browser can draw with WebGL2 (the Rust side refuses to start without it too). */
function hasWebGl2() {
  try {
    return document.createElement("canvas").getContext("webgl2") !== null;
  } catch {
    return false;
  }
}

const NO_WEBGL2 =
  "INOS cannot start: this browser has no WebGL2, which the simulator draws with.\n" +
  "Enable hardware acceleration or WebGL in the browser's settings, or use a current Chrome, Firefox or Safari.";

/** Trunk's initializer hooks: progress while the `.wasm` downloads, and failures. */
export default function initializer() {
  return {
    onStart: () => (hasWebGl2() ? showLoading("downloading INOS…") : showLoading(NO_WEBGL2, true)),
    onProgress: ({ current, total }) => {
      const mib = (bytes) => (bytes / 1048576).toFixed(1);
      const share = total ? Math.min(100, (100 * current) / total).toFixed(0) : "?";
      showLoading(`downloading INOS… ${mib(current)} of ${mib(total)} MiB (${share} %)`);
      const bar = loading()?.querySelector("progress");
      if (bar && total) bar.value = current / total;
    },
    onComplete: () => showLoading("starting INOS…"),
    onFailure: (reason) => showLoading(`INOS could not load: ${reason}`, true),
  };
}

/**
 * A view of the SAB in the wasm memory. The memory's buffer is replaced (and the old one
 * detached) whenever the wasm memory grows, so views are rebuilt when the buffer changes.
 */
class SabView {
  constructor(memory, base, size) {
    this.memory = memory;
    this.base = base;
    this.size = size;
    this.layout = layout;
    this.cachedBuffer = null;
    this.cachedEpochs = null;
  }

  /** The ArrayBuffer holding the SAB (the wasm memory's, current after any growth). */
  get buffer() {
    return this.memory.buffer;
  }

  /** The epoch words (u32 at byte 4 × index), a live view. */
  epochs() {
    if (this.cachedBuffer !== this.memory.buffer) {
      this.cachedBuffer = this.memory.buffer;
      this.cachedEpochs = new Uint32Array(
        this.cachedBuffer,
        this.base + layout.EPOCHS_OFFSET,
        layout.EPOCH_COUNT,
      );
    }
    return this.cachedEpochs;
  }

  /** The SAB header's magic number, to check that the base offset really is the SAB's. */
  magic() {
    return new DataView(this.buffer, this.base + layout.SAB_HEADER_OFFSET, 8).getBigUint64(0, true);
  }
}

/** The pulse rate over the last second, from (time, pulse) samples taken every frame. */
class RateMeter {
  constructor(windowMs = 1000) {
    this.windowMs = windowMs;
    this.samples = [];
  }

  sample(now, value) {
    this.samples.push([now, value]);
    while (this.samples.length > 2 && now - this.samples[1][0] >= this.windowMs) this.samples.shift();
    const [t0, v0] = this.samples[0];
    return now > t0 ? ((value - v0) * 1000) / (now - t0) : 0;
  }
}

function publishVisibility(sab) {
  const visible = document.visibilityState === "visible" ? 1 : 0;
  sab.epochs()[layout.EPOCH_SYSTEM_VISIBILITY] = visible;
}

function startHud(sab) {
  const hud = document.getElementById("hud");
  let firstBird = false;
  const pulseRate = new RateMeter();
  const mib = (sab.size / 1048576).toFixed(0);
  const hex = (n) => `0x${n.toString(16)}`;
  const frame = (now) => {
    const e = sab.epochs();
    const pulse = e[layout.EPOCH_SYSTEM_PULSE];
    const hz = pulseRate.sample(now, pulse);
    if (!firstBird && e[layout.EPOCH_BIRD] > 0) {
      // The first flock is published: from here on the canvas shows birds.
      firstBird = true;
      window.__INOS_FIRST_BIRD_MS__ = performance.now();
      loading()?.remove();
    }
    const fields = {
      birds: e[layout.EPOCH_BIRD_COUNT],
      birdEpoch: e[layout.EPOCH_BIRD],
      matrixEpoch: e[layout.EPOCH_MATRIX],
      generation: e[layout.EPOCH_EVOLUTION],
      pulse,
      pulseHz: hz.toFixed(1),
      visible: e[layout.EPOCH_SYSTEM_VISIBILITY],
    };
    Object.assign(hud.dataset, fields);
    hud.textContent =
      `SAB ${mib} MiB at wasm ${hex(sab.base)}\n` +
      `birds ${fields.birds}   generation ${fields.generation}\n` +
      `bird epoch ${fields.birdEpoch}   matrix epoch ${fields.matrixEpoch}\n` +
      `pulse ${pulse} at ${fields.pulseHz} Hz (${fields.visible ? "visible" : "hidden"})`;
    requestAnimationFrame(frame);
  };
  hud.hidden = false;
  requestAnimationFrame(frame);
}

function start(wasm, bindings) {
  const base = bindings?.inos_sab_base?.() ?? 0;
  if (!wasm?.memory || base === 0) return; // the simulator reported why it did not start
  const sab = new SabView(wasm.memory, base, bindings.inos_sab_size());
  if (sab.magic() !== layout.SAB_MAGIC) {
    showLoading(`no SAB at wasm offset ${base}: wrong magic ${sab.magic().toString(16)}`, true);
    return;
  }
  window.__INOS_SAB__ = sab;
  publishVisibility(sab);
  document.addEventListener("visibilitychange", () => publishVisibility(sab));
  addEventListener("pageshow", () => publishVisibility(sab));
  showLoading("starting INOS…");
  startHud(sab);
}

addEventListener("TrunkApplicationStarted", (event) => start(event.detail.wasm, window.wasmBindings));
