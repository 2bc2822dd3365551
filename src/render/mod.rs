//! The visual simulator (feature `render`): a window onto the live SAB.
//!
//! It shows the SAB itself: a grid floor, a panel with the tier, the region map and every named
//! epoch with its live rate, read straight from the SAB every frame, and the flock, drawn as line
//! gizmos (body, wings, tail) from the matrix stream, copied only when the matrix epoch moves. The
//! instanced WGSL renderer and the egui inspector replace and extend this view.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::window::WindowResolution;

use crate::cli::RunArgs;
use crate::sab::{EpochIndex, MatrixPart, Sab, StreamId, epoch_changed};
use crate::{CorePlugins, FlockPlugins};

/// The window, camera and SAB panel.
pub struct VisualPlugins;

impl Plugin for VisualPlugins {
    fn build(&self, app: &mut App) {
        app.insert_resource(ClearColor(Color::srgb(0.02, 0.03, 0.06)))
            .add_systems(Startup, setup)
            .init_resource::<MatrixView>()
            .add_systems(
                Update,
                (
                    copy_matrices.run_if(epoch_changed(EpochIndex::MATRIX)),
                    draw_flock,
                    draw_floor,
                    update_panel,
                )
                    .chain(),
            );
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

/// The latest matrix stream, copied into a reused buffer.
#[derive(Resource, Default)]
struct MatrixView {
    parts: Vec<MatrixPart>,
    count: usize,
}

fn copy_matrices(sab: Res<Sab>, mut view: ResMut<MatrixView>) {
    let stream = sab.stream(StreamId::Matrices);
    let capacity = 8 * stream.capacity();
    if view.parts.len() != capacity {
        view.parts = vec![MatrixPart { cols: [0.0; 16] }; capacity];
    }
    match stream.read_into(&mut view.parts) {
        Ok(read) => view.count = read.count,
        Err(e) => warn!("could not read the matrix stream: {e}"),
    }
}

/// Each bird as lines: body axis, both two-segment wings, and the tail, from its part matrices.
fn draw_flock(view: Res<MatrixView>, mut gizmos: Gizmos) {
    let n = view.count;
    let at = |part: usize, i: usize, local: Vec3| {
        Mat4::from_cols_array(&view.parts[part * n + i].cols).transform_point3(local)
    };
    let body = Color::srgb(0.55, 0.85, 1.0);
    let wing = Color::srgb(0.35, 0.65, 1.0);
    for i in 0..n {
        let (head, tail) = (at(1, i, Vec3::ZERO), at(7, i, Vec3::ZERO));
        gizmos.line(tail, head, body);
        gizmos.line(
            at(1, i, Vec3::ZERO),
            at(2, i, Vec3::Y * 0.08),
            Color::srgb(1.0, 0.75, 0.3),
        );
        for (root, tip) in [(3, 4), (5, 6)] {
            gizmos.line(at(0, i, Vec3::ZERO), at(root, i, Vec3::ZERO), wing);
            gizmos.line(at(root, i, Vec3::ZERO), at(tip, i, Vec3::ZERO), wing);
        }
    }
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
