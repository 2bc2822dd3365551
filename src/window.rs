//! The simulator's window (feature `render`): assembles the core, the flock and the visual
//! plugins into one app and runs it until the window closes, or, with `--screenshot`, until the
//! picture is saved. In the browser, the page's canvas is the window.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bevy::asset::AssetMetaCheck;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};

#[cfg(not(target_arch = "wasm32"))]
use crate::inspector::Attached;
use crate::inspector::InspectorPlugin;
use crate::render::VisualPlugins;
use crate::sab::Sab;
use crate::{CorePlugins, RunConfig, RunError};

/// Runs the simulator window until it is closed (or, with `--screenshot`, until the PNG is saved).
/// Natively, a missing display or GPU is an error with a hint, not a panic (see [`crate::render::display`]).
pub fn run(config: RunConfig) -> Result<(), RunError> {
    let mut app = window_app()?;
    if let Some(sab) = config.sab.clone() {
        app.insert_resource(sab);
    }
    app.add_plugins(CorePlugins {
        layout: config.layout,
        pulse_hz: config.pulse_hz,
    })
    .insert_resource(config.job_host)
    .add_plugins(config.flock)
    .add_plugins((VisualPlugins, InspectorPlugin));
    // `App::run` hands the app to the window's event loop, so keep what is needed afterwards.
    let sab = app.world().resource::<Sab>().clone();
    #[cfg(target_arch = "wasm32")]
    crate::web::expose(&sab);
    let exit = run_window(app, config.screenshot)?;
    if let Some(path) = &config.snapshot {
        sab.write_snapshot(path)?;
        info!("snapshot written to {}", path.display());
    }
    exit_code(exit)
}

/// `inos --attach PATH`: the window and the inspector on another process's SAB (a running
/// kernel's), read-only: the renderer draws the kernel's flock from its streams, the inspector
/// shows its SAB, and nothing is written but this process's own record in the process table.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_attached(path: &std::path::Path, screenshot: Option<(PathBuf, u32)>) -> Result<(), RunError> {
    let sab = Sab::attach(path)?;
    let process = sab
        .processes()
        .register(crate::sab::processes::Role::Inspector, "inos --attach", None)?;
    let mut app = window_app()?;
    app.insert_resource(sab.clone())
        .insert_resource(Attached {
            path: path.to_owned(),
            process,
        })
        // The kernel's pulse and tick times are its own; these stay as they are.
        .init_resource::<crate::pulse::PulseControl>()
        .init_resource::<crate::timing::StageTimes>()
        .add_plugins((VisualPlugins, InspectorPlugin));
    let exit = run_window(app, screenshot);
    sab.processes().unregister(process);
    exit_code(exit?)
}

/// An app with the window's plugins, after checking (natively) that a display and GPU are there.
fn window_app() -> Result<App, RunError> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::render::display::preflight()?;
        crate::render::display::SetupFailureHook::install();
    }
    let mut app = App::new();
    // No `.meta` files are served next to assets (the browser build would fetch each and get 404s).
    let assets = AssetPlugin {
        meta_check: AssetMetaCheck::Never,
        ..default()
    };
    app.add_plugins(DefaultPlugins.set(assets).set(WindowPlugin {
        primary_window: Some(primary_window()),
        ..default()
    }));
    Ok(app)
}

/// Runs the window until it closes or, with `screenshot`, until the picture is saved (an error if
/// it could not be).
fn run_window(mut app: App, screenshot: Option<(PathBuf, u32)>) -> Result<AppExit, RunError> {
    let screenshot_error = Arc::new(Mutex::new(None));
    if let Some((path, frames)) = screenshot {
        app.insert_resource(ScreenshotRequest {
            path,
            after_frames: frames,
            error: Arc::clone(&screenshot_error),
        })
        .add_systems(Last, request_screenshot);
    }
    let exit = app.run();
    match screenshot_error.lock().map_or(None, |mut e| e.take()) {
        Some(error) => Err(error),
        None => Ok(exit),
    }
}

fn exit_code(exit: AppExit) -> Result<(), RunError> {
    match exit {
        AppExit::Success => Ok(()),
        AppExit::Error(code) => Err(RunError::Exited(code)),
    }
}

/// The window: 1280 × 720 natively; in the browser, the page's canvas, sized by its parent.
fn primary_window() -> Window {
    Window {
        title: "INOS on Bevy".into(),
        #[cfg(not(target_arch = "wasm32"))]
        resolution: bevy::window::WindowResolution::new(1280, 720),
        #[cfg(target_arch = "wasm32")]
        canvas: Some("#inos-canvas".into()),
        #[cfg(target_arch = "wasm32")]
        fit_canvas_to_parent: true,
        ..default()
    }
}

/// `--screenshot FILE --frames N`: after N frames, capture the window, save it, and exit.
#[derive(Resource)]
struct ScreenshotRequest {
    path: PathBuf,
    after_frames: u32,
    /// Why saving failed, read by `run` after the event loop has ended.
    error: Arc<Mutex<Option<RunError>>>,
}

fn request_screenshot(mut commands: Commands, request: Res<ScreenshotRequest>, mut frames: Local<u32>) {
    *frames += 1;
    if *frames != request.after_frames {
        return;
    }
    let path = request.path.clone();
    commands.spawn(Screenshot::primary_window()).observe(
        move |captured: On<ScreenshotCaptured>, request: Res<ScreenshotRequest>, mut exit: MessageWriter<AppExit>| {
            let saved = captured
                .image
                .clone()
                .try_into_dynamic()
                .map_err(|e| e.to_string())
                .and_then(|image| image.to_rgb8().save(&path).map_err(|e| e.to_string()));
            match saved {
                Ok(()) => {
                    info!("screenshot saved to {}", path.display());
                    exit.write(AppExit::Success);
                }
                Err(e) => {
                    if let Ok(mut error) = request.error.lock() {
                        *error = Some(RunError::Screenshot {
                            path: path.clone(),
                            reason: e,
                        });
                    }
                    exit.write(AppExit::error());
                }
            }
        },
    );
}
