//! The egui inspector (feature `render`): a live view of the SAB (registry, supervisor headers, epochs with their
//! rates, rings, guards and the arena), tick-time and fitness plots, the controls (pause and
//! step, bird count, faithful mode, seed, snapshot save and load), and the FPS overlay. It reads
//! the SAB and writes requests into it (the flock's controls, lifecycle requests); a load runs the
//! simulator again on the snapshot (`--resume`).
//!
//! The SAB report behind the panels is the one `inos inspect` prints, rebuilt a few times a second
//! from the live SAB; birds are never listed one by one.

use std::path::PathBuf;

use bevy::diagnostic::{DiagnosticsStore, FrameTimeDiagnosticsPlugin};
use bevy::prelude::*;
use bevy_egui::input::egui_wants_any_keyboard_input;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};
use egui_plot::{Legend, Line, Plot};

use crate::inspect::SabReport;
use crate::pulse::PulseControl;
use crate::render::birds::UploadStats;
use crate::sab::lifecycle::{LifecycleAction, LifecycleRequest};
use crate::sab::supervisors::{BreakerState, Lifecycle};
use crate::sab::{EpochIndex, Owner, Sab, SupervisorStatus};
use crate::timing::StageTimes;

/// How often the SAB report and the epoch rates are refreshed.
const REFRESH_SECONDS: f64 = 0.25;
/// Tick-time samples per stage in the plot.
const PLOT_TICKS: usize = 240;
const PLOT_HEIGHT: f32 = 110.0;

pub struct InspectorPlugin;

impl Plugin for InspectorPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<InspectorState>()
            .add_systems(
                Update,
                (
                    refresh,
                    keyboard.run_if(not(egui_wants_any_keyboard_input)),
                    log_frame_times,
                ),
            )
            .add_systems(EguiPrimaryContextPass, (overlay, inspector));
    }
}

/// The inspector runs on another process's SAB (`inos --attach PATH`), read-only: no controls,
/// and its own record in the SAB's process table, kept alive.
#[derive(Resource, Debug)]
pub struct Attached {
    pub path: PathBuf,
    /// Its record in the process table.
    pub process: usize,
}

/// What the panels show and the controls' pending values.
#[derive(Resource)]
pub struct InspectorState {
    report: Option<SabReport>,
    refreshed_at: f64,
    /// Epoch values at the previous refresh, and the rates derived from them.
    last_epochs: Vec<u32>,
    rates: Vec<f64>,
    birds: usize,
    seed: u64,
    snapshot_path: String,
    message: String,
    all_epochs: bool,
}

impl Default for InspectorState {
    fn default() -> Self {
        Self {
            report: None,
            refreshed_at: f64::NEG_INFINITY,
            last_epochs: Vec::new(),
            rates: Vec::new(),
            birds: 0,
            seed: 1,
            snapshot_path: "inos.snap".into(),
            message: String::new(),
            all_epochs: false,
        }
    }
}

fn refresh(sab: Res<Sab>, time: Res<Time<Real>>, mut state: ResMut<InspectorState>, attached: Option<Res<Attached>>) {
    if state.birds == 0 {
        state.birds = sab.flock_state().info().birds as usize;
    }
    let now = time.elapsed_secs_f64();
    let dt = now - state.refreshed_at;
    if dt < REFRESH_SECONDS {
        return;
    }
    let epochs = sab.epochs();
    let values: Vec<u32> = EpochIndex::NAMED.iter().map(|(i, _, _)| epochs.load(*i)).collect();
    state.rates = if state.last_epochs.len() == values.len() {
        values
            .iter()
            .zip(&state.last_epochs)
            .map(|(v, old)| f64::from(v.wrapping_sub(*old)) / dt)
            .collect()
    } else {
        vec![0.0; values.len()]
    };
    state.last_epochs = values;
    state.refreshed_at = now;
    if let Some(attached) = attached {
        sab.processes().beat(attached.process);
    }
    state.report = Some(SabReport::new(&sab, None));
}

/// Every 5 s of wall time, the frame rate and the last matrix upload go to the log (for runs
/// without a window to look at, such as screenshots and measurements under Xvfb).
fn log_frame_times(
    time: Res<Time<Real>>,
    diagnostics: Res<DiagnosticsStore>,
    uploads: Res<UploadStats>,
    mut last: Local<f64>,
) {
    let now = time.elapsed_secs_f64();
    if now - *last < 5.0 {
        return;
    }
    *last = now;
    let (fps, frame) = frame_rate(&diagnostics);
    let (count, upload_ms, upload_bytes, birds) = uploads.read();
    info!(
        "{fps:.1} fps, {frame:.1} ms/frame; {count} matrix uploads, the last {:.2} MB for {birds} birds in {upload_ms:.2} ms",
        upload_bytes as f64 / 1e6
    );
}

/// Smoothed frames per second and frame time (ms).
fn frame_rate(diagnostics: &DiagnosticsStore) -> (f64, f64) {
    let smoothed = |path| diagnostics.get(path).and_then(|d| d.smoothed()).unwrap_or(0.0);
    (
        smoothed(&FrameTimeDiagnosticsPlugin::FPS),
        smoothed(&FrameTimeDiagnosticsPlugin::FRAME_TIME),
    )
}

/// Space pauses and resumes; `.` steps one tick while paused.
fn keyboard(keys: Res<ButtonInput<KeyCode>>, mut pulse: ResMut<PulseControl>) {
    if keys.just_pressed(KeyCode::Space) {
        pulse.paused = !pulse.paused;
    }
    if keys.just_pressed(KeyCode::Period) && pulse.paused {
        pulse.pending_steps += 1;
    }
}

/// FPS and frame time, top left.
fn overlay(mut contexts: EguiContexts, diagnostics: Res<DiagnosticsStore>, uploads: Res<UploadStats>) -> Result {
    let ctx = contexts.ctx_mut()?;
    let (fps, frame) = frame_rate(&diagnostics);
    let (_, upload_ms, upload_bytes, birds) = uploads.read();
    egui::Area::new("fps".into())
        .fixed_pos(egui::pos2(10.0, 10.0))
        .show(ctx, |ui| {
            egui::Frame::popup(ui.style()).show(ui, |ui| {
                ui.monospace(format!("{fps:5.1} fps  {frame:6.2} ms/frame"));
                ui.monospace(format!(
                    "{birds} birds  matrices {:.2} MB in {upload_ms:.2} ms",
                    upload_bytes as f64 / 1e6
                ));
            });
        });
    Ok(())
}

#[allow(
    clippy::too_many_arguments,
    reason = "the inspector shows and controls most of the app"
)]
fn inspector(
    mut contexts: EguiContexts,
    sab: Res<Sab>,
    mut state: ResMut<InspectorState>,
    mut pulse: ResMut<PulseControl>,
    times: Res<StageTimes>,
    attached: Option<Res<Attached>>,
) -> Result {
    let ctx = contexts.ctx_mut()?;
    let state = &mut *state;
    egui::Window::new("INOS inspector")
        .default_pos(egui::pos2(ctx.content_rect().right() - 430.0, 10.0))
        .default_width(410.0)
        .default_height(ctx.content_rect().height() - 30.0)
        .vscroll(true)
        .show(ctx, |ui| {
            match &attached {
                Some(attached) => attachment(ui, &sab, attached),
                None => controls(ui, &sab, state, &mut pulse),
            }
            let Some(report) = &state.report else {
                return;
            };
            ui.label(format!(
                "tier {}  {} MiB  layout v{}  {} birds max",
                report.tier,
                report.sab_size >> 20,
                report.layout_version,
                sab.layout().spec().max_birds
            ));
            egui::CollapsingHeader::new("Epochs").default_open(true).show(ui, |ui| {
                ui.checkbox(&mut state.all_epochs, "show the epochs still at zero");
                egui::Grid::new("epochs").striped(true).show(ui, |ui| {
                    ui.strong("epoch");
                    ui.strong("value");
                    ui.strong("rate/s");
                    ui.end_row();
                    let named = EpochIndex::NAMED.iter().zip(&state.last_epochs).zip(&state.rates);
                    for (((index, name, _), value), rate) in named.filter(|((_, v), _)| state.all_epochs || **v != 0) {
                        ui.monospace(format!("{:>2} {name}", index.get()));
                        ui.monospace(value.to_string());
                        ui.monospace(format!("{rate:.1}"));
                        ui.end_row();
                    }
                });
            });
            egui::CollapsingHeader::new(format!("Registry ({} modules)", report.modules.len())).show(ui, |ui| {
                for m in &report.modules {
                    let [a, b, c] = m.version;
                    ui.strong(format!("{} {a}.{b}.{c}  (slot {})", m.id, m.slot));
                    ui.indent(&m.id, |ui| {
                        let caps: Vec<&str> = m.capabilities.iter().map(|c| c.id.as_str()).collect();
                        ui.label(format!("capabilities: {}", caps.join(", ")));
                        if !m.dependencies.is_empty() {
                            let v = |[a, b, c]: [u8; 3]| format!("{a}.{b}.{c}");
                            let deps: Vec<String> = m
                                .dependencies
                                .iter()
                                .map(|d| format!("{} {} to {}", d.module_id, v(d.min), v(d.max)))
                                .collect();
                            ui.label(format!("depends on: {}", deps.join(", ")));
                        }
                    });
                }
            });
            egui::CollapsingHeader::new(format!("Supervisors ({})", report.supervisors.len())).show(ui, |ui| {
                if report.supervisors.is_empty() {
                    ui.label("no supervisor has claimed a slot in the supervisor table");
                }
                let now = crate::sab::now_ms();
                for s in &report.supervisors {
                    let (colour, status) = match s.status {
                        Some(SupervisorStatus::Healthy) => (egui::Color32::from_rgb(80, 200, 120), "healthy"),
                        Some(SupervisorStatus::Degraded) => (egui::Color32::from_rgb(240, 180, 40), "degraded"),
                        Some(SupervisorStatus::Zombie) => (egui::Color32::from_rgb(230, 70, 60), "zombie"),
                        Some(SupervisorStatus::Starting) => (egui::Color32::GRAY, "starting"),
                        None => (egui::Color32::GRAY, "?"),
                    };
                    let h = &s.header;
                    let state = Lifecycle::from_u8(h.lifecycle);
                    ui.horizontal(|ui| {
                        // A drawn dot: the default fonts have no "●".
                        let (dot, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
                        ui.painter().circle_filled(dot.center(), 4.5, colour);
                        ui.strong(&s.name);
                        ui.label(format!(
                            "epoch {}, {status}, {}, breaker {}",
                            s.epoch,
                            state.map_or("?".into(), |l| format!("{l:?}").to_lowercase()),
                            BreakerState::from_u8(h.breaker).map_or("?".into(), |b| format!("{b:?}").to_lowercase()),
                        ));
                    });
                    ui.label(format!(
                        "    {} jobs, {} failed, {:.0} µs, {} restarts, health {:.2}, header {} ms ago",
                        h.jobs_processed,
                        h.jobs_failed,
                        h.avg_job_time_us,
                        h.restarts,
                        h.health_score,
                        now.saturating_sub(h.last_heartbeat_ms)
                    ));
                    if s.name == "root" || s.name.starts_with("wf/") || attached.is_some() {
                        continue;
                    }
                    ui.horizontal(|ui| {
                        ui.add_space(16.0);
                        let button = |ui: &mut egui::Ui, label: &str, action, enabled: bool| {
                            if ui.add_enabled(enabled, egui::Button::new(label).small()).clicked()
                                && let Err(e) =
                                    sab.request_lifecycle(Owner::Host, LifecycleRequest::new(&s.name, action))
                            {
                                error!("the inspector could not ask for {action:?} of {}: {e}", s.name);
                            }
                        };
                        let running = state == Some(Lifecycle::Running);
                        let paused = state == Some(Lifecycle::Paused);
                        let stopped = state == Some(Lifecycle::Stopped);
                        button(ui, "pause", LifecycleAction::Pause, running);
                        button(ui, "resume", LifecycleAction::Resume, paused);
                        button(ui, "restart", LifecycleAction::Restart, running || paused);
                        button(ui, "kill", LifecycleAction::Kill, !stopped);
                        button(ui, "spawn", LifecycleAction::Spawn, stopped);
                        button(ui, "snapshot", LifecycleAction::Snapshot, true);
                    });
                }
            });
            egui::CollapsingHeader::new("Engines").show(ui, |ui| {
                for e in &report.engines {
                    ui.strong(format!("{} ({} runs)", e.engine.name(), e.runs));
                    ui.horizontal_wrapped(|ui| {
                        for (name, value) in &e.metrics {
                            ui.label(format!("{name} {value:.3}"));
                        }
                    });
                }
                ui.label(format!("audit log: {} records written", report.audit_total));
            });
            if !report.being_written.is_empty() {
                egui::CollapsingHeader::new(format!("Being written ({})", report.being_written.len())).show(ui, |ui| {
                    for b in &report.being_written {
                        ui.label(format!("{} {}: being written (no consistent copy)", b.record, b.at));
                    }
                });
            }
            egui::CollapsingHeader::new("Rings, guards and arena").show(ui, |ui| {
                for r in &report.rings {
                    let used = r.used_bytes as f64 / r.control.capacity.max(1) as f64;
                    ui.horizontal(|ui| {
                        ui.monospace(format!("{:?}", r.ring));
                        ui.add(
                            egui::ProgressBar::new(used as f32)
                                .desired_width(140.0)
                                .text(format!("{} B, {} frames", r.used_bytes, r.pending_frames)),
                        );
                    });
                }
                let violations: u32 = report.guards.iter().map(|g| g.entry.violations).sum();
                ui.label(format!("guard violations: {violations}"));
                for g in report.guards.iter().filter(|g| g.entry.violations > 0) {
                    ui.monospace(format!("  {:?}: {}", g.policy.region, g.entry.violations));
                }
                let a = &report.arena;
                ui.label(format!(
                    "arena: {} KiB used of {} KiB, {} allocations, fragmentation {:.2}",
                    a.used >> 10,
                    a.capacity >> 10,
                    a.allocations,
                    a.fragmentation
                ));
                ui.label(format!(
                    "patterns: {}  job history: {} records",
                    report.live_patterns, report.job_history.count
                ));
            });
            egui::CollapsingHeader::new("Tick times (ms)")
                .default_open(attached.is_none())
                .show(ui, |ui| {
                    let lines = times
                        .series()
                        .map(|(stage, times)| {
                            let samples = times.samples();
                            let recent = samples.iter().skip(samples.len().saturating_sub(PLOT_TICKS));
                            (stage, series(recent.map(|us| us / 1000.0)))
                        })
                        .collect();
                    plot(ui, "tick times", lines);
                });
            let (generation, history) = sab.flock_state().evolution();
            egui::CollapsingHeader::new(format!("Fitness ({generation} generations)"))
                .default_open(true)
                .show(ui, |ui| {
                    let mean = series(history.iter().map(|g| g[0]));
                    let best = series(history.iter().map(|g| g[1]));
                    plot(ui, "fitness", vec![("mean", mean), ("best", best)]);
                    if let Some([mean, best]) = history.last() {
                        ui.label(format!("last generation: mean {mean:.4}, best {best:.4}"));
                    }
                });
        });
    Ok(())
}

/// In place of the controls when attached: whose SAB this is, and whether its kernel still runs.
fn attachment(ui: &mut egui::Ui, sab: &Sab, attached: &Attached) {
    ui.strong(format!("attached to {} (read-only)", attached.path.display()));
    let header = sab.processes().header();
    match sab.processes().check_kernel() {
        Ok(()) => ui.label(format!("kernel pid {}", header.kernel_pid)),
        Err(e) => ui.colored_label(egui::Color32::from_rgb(240, 180, 40), e.to_string()),
    };
    ui.label("tick times are the kernel's own: they are not in the SAB");
    ui.separator();
}

/// The controls: each writes a request into the SAB (`sab::flock_state`), which the boids unit
/// and its supervisor act on; none calls them.
fn controls(ui: &mut egui::Ui, sab: &Sab, state: &mut InspectorState, pulse: &mut PulseControl) {
    let flock = sab.flock_state();
    ui.horizontal(|ui| {
        if ui.button(if pulse.paused { "▶ resume" } else { "⏸ pause" }).clicked() {
            pulse.paused = !pulse.paused;
        }
        if ui.add_enabled(pulse.paused, egui::Button::new("step")).clicked() {
            pulse.pending_steps += 1;
        }
        let mut faithful = flock.info().faithful != 0;
        if ui.checkbox(&mut faithful, "faithful").changed() {
            flock.request_faithful(faithful);
        }
    });
    let max = sab.layout().spec().max_birds as usize;
    ui.horizontal(|ui| {
        ui.add(
            egui::Slider::new(&mut state.birds, 2..=max)
                .logarithmic(true)
                .text("birds"),
        );
        if ui.button("respawn").clicked() {
            flock.request_respawn(state.birds as u32);
        }
    });
    ui.horizontal(|ui| {
        ui.add(egui::DragValue::new(&mut state.seed).prefix("seed "));
        if ui.button("restart evolution").clicked() {
            flock.request_evolution_restart(state.seed);
        }
    });
    ui.horizontal(|ui| {
        ui.text_edit_singleline(&mut state.snapshot_path);
        let path = PathBuf::from(&state.snapshot_path);
        if ui.button("save").clicked() {
            state.message = match sab.write_snapshot(&path) {
                Ok(_) => format!("saved {}", path.display()),
                Err(e) => e.to_string(),
            };
        }
        if ui.button("load").clicked() {
            state.message = resume_from(&path);
        }
    });
    if !state.message.is_empty() {
        ui.label(&state.message);
    }
    ui.separator();
}

/// The whole system lives in the SAB, so loading a snapshot means running on it: the simulator
/// starts again as `inos --resume FILE` with the rest of its command line (the process image is
/// replaced). A file that is no snapshot of this build is refused first, with the simulator left
/// running; the reason is returned for the panel.
fn resume_from(path: &std::path::Path) -> String {
    if let Err(e) = Sab::read_snapshot(path) {
        return e.to_string();
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => return format!("cannot find this program to restart it: {e}"),
        };
        let args = resume_args(std::env::args_os().skip(1), path);
        let error = std::process::Command::new(exe).args(args).exec();
        format!("cannot restart on {}: {error}", path.display())
    }
    #[cfg(not(unix))]
    {
        format!(
            "{} is a snapshot; run `inos --resume {}` to carry it on",
            path.display(),
            path.display()
        )
    }
}

/// The command line `args` (without the program) with `--resume path` instead of the options a
/// resumed run takes from the snapshot (`--resume`, `--tier`, `--sab-mib`, `--birds`), in both
/// their `--name value` and `--name=value` forms.
#[cfg(any(unix, test))]
fn resume_args(args: impl IntoIterator<Item = std::ffi::OsString>, path: &std::path::Path) -> Vec<std::ffi::OsString> {
    const TAKEN: [&str; 4] = ["--resume", "--tier", "--sab-mib", "--birds"];
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if TAKEN.contains(&text.as_ref()) {
            args.next(); // its value
        } else if !TAKEN.iter().any(|name| text.starts_with(&format!("{name}="))) {
            out.push(arg);
        }
    }
    out.extend(["--resume".into(), path.as_os_str().to_owned()]);
    out
}

/// Values as plot points, x = sample index.
fn series(values: impl Iterator<Item = f32>) -> Vec<[f64; 2]> {
    values.enumerate().map(|(k, v)| [k as f64, f64::from(v)]).collect()
}

/// Named lines in one small plot with a legend; dragging and zooming are off, so the inspector
/// scrolls normally over it.
fn plot(ui: &mut egui::Ui, id: &str, lines: Vec<(&str, Vec<[f64; 2]>)>) {
    Plot::new(id)
        .height(PLOT_HEIGHT)
        .legend(Legend::default())
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .show(ui, |plot| {
            for (name, points) in lines {
                plot.line(Line::new(name, points));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_keeps_the_command_line_but_what_the_snapshot_decides() {
        let args = [
            "--tier",
            "heavy",
            "--birds=3000",
            "--seed",
            "7",
            "--resume",
            "old.snap",
            "--sab-mib=256",
            "--faithful",
        ]
        .map(std::ffi::OsString::from);
        let out = resume_args(args, std::path::Path::new("new.snap"));
        assert_eq!(
            out,
            ["--seed", "7", "--faithful", "--resume", "new.snap"].map(std::ffi::OsString::from)
        );
    }
}
