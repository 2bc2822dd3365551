//! The visual simulator (feature `render`): a window onto the live SAB.
//!
//! So far it shows the SAB itself: a grid floor, and a panel with the tier, the region map and
//! every named epoch with its live rate, read straight from the SAB every frame. The flock
//! renderer and the egui inspector build on this.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::window::WindowResolution;

use crate::cli::RunArgs;
use crate::sab::{EpochIndex, Sab};
use crate::{CorePlugins, FlockPlugins};

/// The window, camera and SAB panel.
pub struct VisualPlugins;

impl Plugin for VisualPlugins {
    fn build(&self, app: &mut App) {
        app.insert_resource(ClearColor(Color::srgb(0.02, 0.03, 0.06)))
            .add_systems(Startup, setup)
            .add_systems(Update, (draw_floor, update_panel));
    }
}

/// Runs the simulator window until it is closed (or, with `--screenshot`, until the PNG is saved).
pub fn run(args: &RunArgs) -> Result<(), String> {
    let layout = args.layout()?;
    let (birds, params) = args.flock(&layout)?;
    let mut app = App::new();
    app.add_plugins(DefaultPlugins.set(WindowPlugin {
        primary_window: Some(Window {
            title: "INOS on Bevy".into(),
            resolution: WindowResolution::new(1280, 720),
            ..default()
        }),
        ..default()
    }))
    .add_plugins(CorePlugins {
        layout,
        pulse_hz: args.hz,
    })
    .add_plugins(FlockPlugins {
        birds,
        params,
        seed: args.seed,
        evolve_every: args.evolve_every,
    })
    .add_plugins(VisualPlugins);
    // `App::run` hands the app to the window's event loop, so keep what is needed afterwards.
    let sab = app.world().resource::<Sab>().clone();
    let screenshot_error = Arc::new(Mutex::new(None));
    if let Some(path) = &args.screenshot {
        app.insert_resource(ScreenshotRequest {
            path: path.clone(),
            after_frames: args.frames,
            error: Arc::clone(&screenshot_error),
        })
        .add_systems(Last, request_screenshot);
    }
    let exit = app.run();
    if let Some(error) = screenshot_error.lock().map_or(None, |mut e| e.take()) {
        return Err(error);
    }
    if let Some(path) = &args.snapshot {
        sab.write_snapshot(path).map_err(|e| e.to_string())?;
        info!("snapshot written to {}", path.display());
    }
    match exit {
        AppExit::Success => Ok(()),
        AppExit::Error(code) => Err(format!("the simulator exited with code {code}")),
    }
}

#[derive(Component)]
struct SabPanel;

fn setup(mut commands: Commands) {
    commands.spawn((
        Camera3d::default(),
        Transform::from_xyz(15.0, 12.0, 45.0).looking_at(Vec3::ZERO, Vec3::Y),
    ));
    commands.spawn((
        SabPanel,
        Text::new(""),
        TextFont {
            font_size: FontSize::Px(14.0),
            ..default()
        },
        TextColor(Color::srgb(0.75, 0.9, 1.0)),
        Node {
            position_type: PositionType::Absolute,
            top: Val::Px(12.0),
            left: Val::Px(12.0),
            ..default()
        },
    ));
}

fn draw_floor(mut gizmos: Gizmos) {
    gizmos.grid(
        Isometry3d::new(
            Vec3::new(0.0, -10.0, 0.0),
            Quat::from_rotation_x(std::f32::consts::FRAC_PI_2),
        ),
        UVec2::splat(16),
        Vec2::splat(5.0),
        Color::srgba(0.3, 0.6, 0.9, 0.25),
    );
}

/// Epoch values one second ago, for the live rates.
#[derive(Default)]
struct RateWindow {
    since: f64,
    values: Vec<u32>,
    rates: Vec<f64>,
}

fn update_panel(
    sab: Res<Sab>,
    time: Res<Time<Real>>,
    mut window: Local<RateWindow>,
    mut panel: Single<&mut Text, With<SabPanel>>,
) {
    let epochs = sab.epochs();
    let now: Vec<u32> = EpochIndex::NAMED.iter().map(|(i, _, _)| epochs.load(*i)).collect();
    let t = time.elapsed_secs_f64();
    if window.values.is_empty() || t - window.since >= 1.0 {
        let dt = (t - window.since).max(1e-9);
        window.rates = if window.values.is_empty() {
            vec![0.0; now.len()]
        } else {
            now.iter()
                .zip(&window.values)
                .map(|(n, o)| f64::from(n.wrapping_sub(*o)) / dt)
                .collect()
        };
        window.values.clone_from(&now);
        window.since = t;
    }
    let layout = sab.layout();
    let mut text = format!(
        "INOS SAB  tier {}  {} MiB  layout v{}  {} regions  {} birds max\n\nepoch                  value     rate/s\n",
        layout.tier,
        layout.sab_size >> 20,
        sab.header().layout_version,
        layout.regions().len(),
        layout.spec().max_birds
    );
    for (((_, name, _), value), rate) in EpochIndex::NAMED.iter().zip(&now).zip(&window.rates) {
        if *value != 0 {
            text.push_str(&format!("{name:<20} {value:>8} {rate:>10.1}\n"));
        }
    }
    panel.0 = text;
}

/// `--screenshot FILE --frames N`: after N frames, capture the window, save it, and exit.
#[derive(Resource)]
struct ScreenshotRequest {
    path: PathBuf,
    after_frames: u32,
    /// Why saving failed, read by `run` after the event loop has ended.
    error: Arc<Mutex<Option<String>>>,
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
                        *error = Some(format!("cannot save the screenshot to {}: {e}", path.display()));
                    }
                    exit.write(AppExit::error());
                }
            }
        },
    );
}
