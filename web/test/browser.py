#!/usr/bin/env python3
"""Drives headless Chromium against the served browser build and checks it really runs.

Usage: browser.py URL SCREENSHOT.png

Talks the Chrome DevTools Protocol over a WebSocket with nothing but the standard library, and:
  0. loads the page once as a browser without WebGL2 and checks that it says so, in words;
  1. waits until the JS host's HUD shows the bird epoch advancing (read from the SAB in wasm memory),
     and reports the time from navigation to the first bird epoch (the loading indicator stays
     until then);
  2. checks `window.__INOS_SAB__`: the SAB magic at the header, the bird count, live epochs;
  3. takes a screenshot and checks the canvas is not blank (many colours, no colour dominating);
  4. hides the page and checks the visibility word goes to 0 and the pulse drops to 30 Hz.
Prints what it sees as it goes; exits non-zero with a reason on any failure.
"""

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--window-size=1280,720",
    "--remote-debugging-port=0",
]


def fail(message):
    print(f"browser test FAILED: {message}", flush=True)
    sys.exit(1)


class WebSocket:
    """A minimal client WebSocket (RFC 6455): text frames out (masked), frames in."""

    def __init__(self, url):
        assert url.startswith("ws://"), url
        host_port, _, path = url[len("ws://") :].partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=120)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                fail("the DevTools WebSocket closed during the handshake")
            response += chunk
        if b" 101 " not in response.split(b"\r\n", 1)[0]:
            fail(f"DevTools refused the WebSocket: {response[:200]!r}")
        self.buffer = response.split(b"\r\n\r\n", 1)[1]

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                fail("the DevTools WebSocket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send_text(self, text):
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def receive_text(self):
        message = b""
        while True:
            first, second = self._read(2)
            opcode, n = first & 0x0F, second & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self._read(8))
            payload = self._read(n)
            if opcode == 0x8:
                fail("DevTools closed the connection")
            if opcode in (0x9, 0xA):  # ping / pong: Chromium does not send these unprompted
                continue
            message += payload
            if first & 0x80:
                return message.decode()


class DevTools:
    """Commands to one page target; events are skipped."""

    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send_text(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.receive_text())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    fail(f"{method}: {reply['error']}")
                return reply["result"]

    def eval(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            fail(f"page script failed: {expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


def decode_png(data):
    """Width, height, channels and rows of an 8-bit RGB or RGBA PNG (Chromium's screenshots)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("the screenshot is not a PNG")
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if depth != 8 or colour not in (2, 6):
        fail(f"unexpected PNG format: depth {depth}, colour type {colour}")
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, up_left = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, channels, rows


def wait_for(devtools, what, expression, timeout_s, every_s=1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = devtools.eval(expression)
        if value:
            return value
        time.sleep(every_s)
    page = devtools.eval("document.body ? document.body.innerText.slice(0, 400) : ''")
    fail(f"timed out after {timeout_s} s waiting for {what}; the page shows: {page!r}")


def hud(devtools):
    return devtools.eval("JSON.stringify(document.getElementById('hud')?.dataset ?? {})")


# Makes the page believe it has no WebGL2 (run before any of its own scripts).
NO_WEBGL2 = """
const getContext = HTMLCanvasElement.prototype.getContext;
HTMLCanvasElement.prototype.getContext = function (kind, ...rest) {
  return kind === "webgl2" ? null : getContext.call(this, kind, ...rest);
};
"""


def check_without_webgl2(devtools, url):
    """The page, in a browser without WebGL2, says so instead of failing silently or panicking."""
    script = devtools.call("Page.addScriptToEvaluateOnNewDocument", source=NO_WEBGL2)["identifier"]
    devtools.call("Page.navigate", url=url)
    text = wait_for(
        devtools,
        "the page to say that WebGL2 is missing",
        "(() => { const l = document.getElementById('loading');"
        " return l && l.classList.contains('error') && l.innerText.includes('WebGL2') ? l.innerText : ''; })()",
        60,
        every_s=0.2,
    )
    print(f"without WebGL2 the page says: {text!r}", flush=True)
    devtools.call("Page.removeScriptToEvaluateOnNewDocument", identifier=script)
    devtools.call("Page.navigate", url="about:blank")


def pulse_rate(devtools, seconds):
    """Pulses per second over `seconds`, from the SAB's pulse epoch."""
    read = "window.__INOS_SAB__.epochs()[window.__INOS_SAB__.layout.EPOCH_SYSTEM_PULSE]"
    start, t0 = devtools.eval(read), time.monotonic()
    time.sleep(seconds)
    return (devtools.eval(read) - start) / (time.monotonic() - t0)


def main():
    if len(sys.argv) != 3:
        fail("usage: browser.py URL SCREENSHOT.png")
    url, screenshot = sys.argv[1], sys.argv[2]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        fail("no chromium on PATH (Debian package `chromium`)")
    profile = tempfile.mkdtemp(prefix="inos-chromium-")
    browser = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        for _ in range(300):
            if os.path.exists(port_file) and open(port_file).read().count("\n") >= 1:
                break
            time.sleep(0.1)
        else:
            fail("chromium did not open its DevTools port")
        port = open(port_file).read().split("\n")[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        devtools.call("Page.enable")
        check_without_webgl2(devtools, url)
        devtools.call("Page.navigate", url=url)
        started = time.monotonic()

        wait_for(devtools, "the JS host's HUD", "document.getElementById('hud')?.dataset.birdEpoch !== undefined", 600)
        print(f"the JS host found the SAB after {time.monotonic() - started:.1f} s", flush=True)
        first_bird_ms = wait_for(devtools, "the first bird epoch", "window.__INOS_FIRST_BIRD_MS__", 300, every_s=0.2)
        if devtools.eval("document.getElementById('loading') !== null"):
            fail("the loading indicator is still shown after the first bird epoch")
        print(f"first frame: the first bird epoch {first_bird_ms / 1000:.2f} s after navigation", flush=True)
        wasm = devtools.eval(
            "JSON.stringify(performance.getEntriesByType('resource').filter(e => e.name.endsWith('.wasm'))"
            ".map(e => [e.encodedBodySize, e.decodedBodySize]))"
        )
        for encoded, decoded in json.loads(wasm):
            print(f"the module crossed the wire as {encoded / 1048576:.1f} MiB ({decoded / 1048576:.1f} MiB decoded)", flush=True)
        first = json.loads(hud(devtools))
        print(f"HUD: {first}", flush=True)
        target = int(first["birdEpoch"]) + 20
        wait_for(devtools, "the bird epoch to advance by 20", f"+document.getElementById('hud').dataset.birdEpoch >= {target}", 300)
        now = json.loads(hud(devtools))
        print(f"HUD: {now}", flush=True)

        magic = devtools.eval("window.__INOS_SAB__.magic() === window.__INOS_SAB__.layout.SAB_MAGIC")
        if not magic:
            fail("window.__INOS_SAB__ does not point at the SAB header's magic")
        if int(now["birds"]) != 1000:
            fail(f"the HUD shows {now['birds']} birds, expected the default 1000")
        if int(now["visible"]) != 1:
            fail("the visibility word is not 1 on a visible page")

        shot = base64.b64decode(devtools.call("Page.captureScreenshot", format="png")["data"])
        with open(screenshot, "wb") as f:
            f.write(shot)
        width, height, channels, rows = decode_png(shot)
        counts = {}
        for row in rows[: height * 3 // 4]:  # above the HUD
            for x in range(0, width * channels, channels * 2):
                pixel = row[x : x + 3]
                counts[pixel] = counts.get(pixel, 0) + 1
        total, top = sum(counts.values()), max(counts.values())
        print(f"screenshot {width}x{height}: {len(counts)} colours, the commonest {100 * top / total:.0f} %", flush=True)
        if len(counts) < 200 or top > 0.9 * total:
            fail(f"the canvas looks blank ({len(counts)} colours, the commonest covers {100 * top / total:.0f} %)")

        visible_hz = pulse_rate(devtools, 4)
        devtools.eval(
            "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )
        flag = devtools.eval("window.__INOS_SAB__.epochs()[window.__INOS_SAB__.layout.EPOCH_SYSTEM_VISIBILITY]")
        if flag != 0:
            fail(f"hiding the page left the visibility word at {flag}")
        time.sleep(1)
        hidden_hz = pulse_rate(devtools, 4)
        print(f"pulse: {visible_hz:.1f} Hz visible, {hidden_hz:.1f} Hz hidden", flush=True)
        # A slow software renderer caps both rates by the same factor (Bevy catches up at most
        # 250 ms of fixed steps per frame), so the ratio is checked as well as the ceiling.
        if hidden_hz > 31.5 or hidden_hz > 0.6 * visible_hz:
            fail(f"the pulse ran at {hidden_hz:.1f} Hz hidden against {visible_hz:.1f} Hz visible (30 vs 64 expected)")
        print(f"browser test passed in {time.monotonic() - started:.0f} s", flush=True)
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
