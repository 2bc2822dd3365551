//! The scene around the flock: an orbit camera framed on the flock's world, the original's cream
//! backdrop, a lit ground with a grid, and meshes for the physics unit's obstacles. All of it is
//! read from the SAB: the world's bounds from the flock state the boids unit publishes, the
//! obstacles (shape, role, pose, size) from the obstacle table on the physics epoch.

use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll, MouseScrollUnit};
use bevy::light::GlobalAmbientLight;
use bevy::prelude::*;
use bevy::render::renderer::RenderAdapterInfo;
use bevy_egui::input::egui_wants_any_pointer_input;

use crate::sab::{EpochIndex, ObstacleRecord, ObstacleRole, ObstacleShape, Sab, epoch_changed};

/// The original page's background (reference §8).
pub const BACKDROP: Color = Color::srgb(0.957, 0.945, 0.918);

pub struct ScenePlugin;

impl Plugin for ScenePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(ClearColor(BACKDROP))
            .insert_resource(GlobalAmbientLight {
                color: Color::WHITE,
                brightness: 600.0,
                ..default()
            })
            .add_systems(Startup, (spawn_camera, spawn_lights))
            .add_systems(
                Update,
                (
                    orbit.run_if(not(egui_wants_any_pointer_input)),
                    draw_obstacles.run_if(epoch_changed(EpochIndex::PHYSICS)),
                    draw_grid,
                ),
            );
    }
}

/// Where the camera looks from: yaw and pitch about the target, and the distance.
#[derive(Component, Clone, Copy, Debug)]
pub struct OrbitCamera {
    pub target: Vec3,
    pub yaw: f32,
    pub pitch: f32,
    pub distance: f32,
}

impl OrbitCamera {
    /// The original's view, (15, 12, 45) onto the origin, scaled with the width of the world
    /// whose half extents are `bounds`.
    pub fn framing(bounds: Vec3) -> Self {
        let eye = Vec3::new(15.0, 12.0, 45.0) * (bounds.x / 38.0);
        Self {
            target: Vec3::ZERO,
            yaw: eye.x.atan2(eye.z),
            pitch: (eye.y / eye.length()).asin(),
            distance: eye.length(),
        }
    }

    pub fn transform(&self) -> Transform {
        let rotation = Quat::from_euler(EulerRot::YXZ, self.yaw, -self.pitch, 0.0);
        Transform::from_translation(self.target + rotation * Vec3::Z * self.distance).looking_at(self.target, Vec3::Y)
    }
}

/// The original's world (80 × 60 × 80 m, half extents), framed until the boids unit has published
/// its own.
const ORIGINAL_BOUNDS: Vec3 = Vec3::new(40.0, 30.0, 40.0);

fn world_bounds(sab: &Sab) -> Vec3 {
    sab.flock_state().bounds().unwrap_or(ORIGINAL_BOUNDS)
}

fn spawn_camera(mut commands: Commands, sab: Res<Sab>, adapter: Option<Res<RenderAdapterInfo>>) {
    let orbit = OrbitCamera::framing(world_bounds(&sab));
    // A software rasteriser (Mesa lavapipe under Xvfb) pays for every sample: no MSAA there.
    let software = adapter.is_some_and(|a| a.device_type == wgpu::DeviceType::Cpu);
    commands.spawn((
        Camera3d::default(),
        Projection::Perspective(PerspectiveProjection {
            fov: 42f32.to_radians(),
            far: 20.0 * orbit.distance,
            ..default()
        }),
        orbit.transform(),
        orbit,
        if software { Msaa::Off } else { Msaa::default() },
        // The bird parts are drawn with plain instanced draws, not indirect ones.
        bevy::render::view::NoIndirectDrawing,
    ));
}

fn spawn_lights(mut commands: Commands) {
    commands.spawn((
        DirectionalLight {
            illuminance: 6000.0,
            ..default()
        },
        Transform::from_xyz(15.0, 30.0, 15.0).looking_at(Vec3::ZERO, Vec3::Y),
    ));
}

/// Left drag orbits, right drag pans, the wheel zooms.
fn orbit(
    buttons: Res<ButtonInput<MouseButton>>,
    motion: Res<AccumulatedMouseMotion>,
    scroll: Res<AccumulatedMouseScroll>,
    mut camera: Single<(&mut OrbitCamera, &mut Transform)>,
) {
    let (orbit, transform) = &mut *camera;
    let delta = motion.delta;
    if buttons.pressed(MouseButton::Left) {
        orbit.yaw -= delta.x * 0.005;
        orbit.pitch = (orbit.pitch + delta.y * 0.005).clamp(-1.45, 1.45);
    }
    if buttons.pressed(MouseButton::Right) {
        let pan = orbit.distance * 0.0015;
        let (right, up) = (transform.right(), transform.up());
        orbit.target += (-delta.x * *right + delta.y * *up) * pan;
    }
    let lines = match scroll.unit {
        MouseScrollUnit::Line => scroll.delta.y,
        MouseScrollUnit::Pixel => scroll.delta.y / 40.0,
    };
    orbit.distance = (orbit.distance * 0.9f32.powf(lines)).clamp(2.0, 5000.0);
    **transform = orbit.transform();
}

/// The mesh drawn for slot `slot` of the obstacle table, and the record it was made for.
#[derive(Component)]
struct ObstacleMesh {
    slot: usize,
    made_for: (u32, u32, [f32; 3]),
}

/// Draws the obstacle table: each record's mesh at its pose, a new mesh where a slot's shape, role
/// or size changed, and none for slots past the table's count.
fn draw_obstacles(
    sab: Res<Sab>,
    mut commands: Commands,
    mut drawn: Query<(Entity, &ObstacleMesh, &mut Transform)>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut records: Local<Vec<ObstacleRecord>>,
) {
    // A table being written is read on the next physics epoch.
    if sab.obstacles().read_into(&mut records).is_err() {
        return;
    }
    let mut kept = vec![false; records.len()];
    for (entity, mesh, mut transform) in &mut drawn {
        match records.get(mesh.slot) {
            Some(r) if (r.shape, r.role, r.dims) == mesh.made_for => {
                *transform = pose(r);
                kept[mesh.slot] = true;
            }
            _ => commands.entity(entity).despawn(),
        }
    }
    for (slot, r) in records.iter().enumerate().filter(|(slot, _)| !kept[*slot]) {
        let Some((mesh, colour, unlit)) = look(r) else {
            continue;
        };
        commands.spawn((
            ObstacleMesh {
                slot,
                made_for: (r.shape, r.role, r.dims),
            },
            Mesh3d(meshes.add(mesh)),
            MeshMaterial3d(materials.add(StandardMaterial {
                base_color: colour,
                perceptual_roughness: 0.8,
                unlit,
                ..default()
            })),
            pose(r),
        ));
    }
}

fn pose(r: &ObstacleRecord) -> Transform {
    Transform::from_translation(Vec3::from(r.centre)).with_rotation(Quat::from_array(r.rotation).normalize())
}

/// A record's mesh, colour and whether it is unlit; `None` for a record that describes no shape.
fn look(r: &ObstacleRecord) -> Option<(Mesh, Color, bool)> {
    let d = Vec3::from(r.dims);
    if !d.is_finite() || d.cmplt(Vec3::ZERO).any() {
        return None;
    }
    let mesh = match r.shape()? {
        ObstacleShape::Cuboid => Mesh::from(Cuboid::from_size(d * 2.0)),
        ObstacleShape::Cylinder => Mesh::from(Cylinder::new(d.x, d.y * 2.0)),
        ObstacleShape::Ball => Sphere::new(d.x).mesh().uv(32, 16),
    };
    let role = ObstacleRole::from_code(r.role);
    let colour = match role {
        Some(ObstacleRole::Floor) => Color::srgb(0.91, 0.89, 0.84),
        Some(ObstacleRole::Crate) | None => Color::srgb(0.55, 0.42, 0.3),
        Some(ObstacleRole::Pillar) => Color::srgb(0.80, 0.84, 0.88),
        Some(ObstacleRole::Orbiter) => Color::srgb(0.96, 0.62, 0.04),
        Some(ObstacleRole::Ball) => Color::srgb(0.05, 0.65, 0.91),
    };
    // The ground is large on screen and flat: unlit, it costs a software renderer a fraction of
    // the lit shading and looks the same.
    Some((mesh, colour, role == Some(ObstacleRole::Floor)))
}

/// A grid on the ground (or, without obstacles, where the ground would be), sized for the
/// flock's world, like the scene (both follow a respawn with another bird count).
fn draw_grid(sab: Res<Sab>, mut gizmos: Gizmos) {
    let b = world_bounds(&sab);
    let cells = 16;
    gizmos.grid(
        Isometry3d::new(
            Vec3::new(0.0, -b.y + 0.02, 0.0),
            Quat::from_rotation_x(std::f32::consts::FRAC_PI_2),
        ),
        UVec2::splat(cells),
        Vec2::new(b.x, b.z) * 3.2 / cells as f32,
        Color::srgb(0.78, 0.75, 0.68),
    );
}
