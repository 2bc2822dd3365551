//! The physics unit: a Rapier world (bevy_rapier3d) holding the scene's obstacles, stepped on the
//! pulse, and published into the SAB's obstacle table for the boids unit to steer by.
//!
//! The scene is sized from the flock's soft bounds: a floor under the flock, three static pillars
//! through it, a kinematic ball orbiting through the flock at mid height, and dynamic balls
//! bouncing elastically between the floor and invisible walls (which only the balls meet). After
//! each Rapier step the unit writes every obstacle's shape and pose (as Rapier left it) into the
//! obstacle table and signals the physics epoch; the boids unit reads the table from there.
//!
//! Rapier steps only on ticks where the pulse moved, so pausing the pulse pauses the scene too,
//! and the same seed, bird count and tick count give the same run.

use bevy::prelude::*;
use bevy_rapier3d::prelude::*;

use crate::protocol::{Job, JobOutcome, JobParams, JobStatus, Payload, PhysicsCall};
use crate::pulse::PulseSystems;
use crate::sab::obstacles::ObstacleRole;
use crate::sab::supervisors::unit_running;
use crate::sab::{EpochIndex, ModuleSpec, ObstacleRecord, ObstacleShape, Owner, Sab, epoch_changed};
use crate::units::RegisterUnitExt;
use crate::units::host::{JobClock, JobHostSystems, JobMailboxes, MailboxResults, charge};

/// The orbiting ball's angular speed (rad/s) and its bobbing frequency (rad/s).
const ORBIT_SPEED: f32 = 0.35;
const BOB_SPEED: f32 = 0.9;

/// What an obstacle is, for publishing and drawing it.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct Obstacle {
    pub kind: ObstacleKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ObstacleKind {
    /// The ground plane under the flock (a flat box).
    Floor { half: Vec3 },
    /// A static vertical cylinder.
    Pillar { radius: f32, half_height: f32 },
    /// The kinematic ball orbiting through the flock.
    Orbiter { radius: f32 },
    /// A dynamic ball.
    Ball { radius: f32 },
    /// A box spawned by a `spawn_body` job.
    Crate { half: Vec3 },
}

/// The physics unit's scene: the kinematic orbiter's path.
#[derive(Component, Clone, Copy, Debug)]
struct Orbit {
    radius: f32,
    height: f32,
    bob: f32,
}

/// The physics unit: Rapier in `FixedUpdate`, and the scene for a flock within `bounds`.
pub struct PhysicsPlugin {
    pub bounds: Vec3,
}

/// The physics unit's stages in `FixedUpdate`, around Rapier's own sets.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum PhysicsSystems {
    /// Gates Rapier on the pulse and moves the kinematic obstacles.
    Drive,
    /// Publishes the obstacle table after Rapier's writeback.
    Publish,
}

impl Plugin for PhysicsPlugin {
    fn build(&self, app: &mut App) {
        let bounds = self.bounds;
        let dt = app
            .world()
            .get_resource::<Time<Fixed>>()
            .map_or(1.0 / 64.0, |t| t.timestep().as_secs_f32());
        if !app.is_plugin_added::<TransformPlugin>() {
            app.add_plugins(TransformPlugin);
        }
        app.insert_resource(TimestepMode::Fixed { dt, substeps: 1 })
            .add_plugins(RapierPhysicsPlugin::<NoUserData>::default().in_fixed_schedule())
            .register_mailbox_unit(spec())
            .insert_resource(SceneBounds(bounds))
            .add_systems(Startup, move |commands: Commands| spawn_scene(commands, bounds))
            .configure_sets(
                FixedUpdate,
                (
                    PhysicsSystems::Drive
                        .after(PulseSystems)
                        .before(PhysicsSet::SyncBackend),
                    PhysicsSystems::Publish.after(PhysicsSet::Writeback),
                ),
            )
            .add_systems(
                FixedUpdate,
                (
                    (
                        follow_the_flock_world.run_if(epoch_changed(EpochIndex::BIRD_COUNT)),
                        follow_the_pulse_rate,
                        gate_rapier,
                        drive_orbiters.run_if(epoch_changed(EpochIndex::SYSTEM_PULSE)),
                    )
                        .chain()
                        .in_set(PhysicsSystems::Drive),
                    publish_obstacles
                        .in_set(PhysicsSystems::Publish)
                        .run_if(epoch_changed(EpochIndex::SYSTEM_PULSE))
                        .run_if(unit_running("physics")),
                    run_physics_jobs
                        .in_set(JobHostSystems::Mailbox)
                        .after(PhysicsSystems::Publish),
                ),
            );
    }
}

/// The unit's registry record.
pub fn spec() -> ModuleSpec {
    ModuleSpec::cpu_unit(
        "physics",
        4,
        &[
            "physics:spawn_body",
            "physics:step",
            "physics:raycast",
            "physics:obstacle_table",
            crate::sab::heartbeats::PULSE_HEARTBEAT,
        ],
    )
}

/// The scene's obstacles for a flock within `b` (its soft bounds), as (kind, position) pairs;
/// the floor first.
pub fn scene_layout(b: Vec3) -> Vec<(ObstacleKind, Vec3)> {
    let mut scene = vec![(
        ObstacleKind::Floor {
            half: Vec3::new(b.x * 1.6, 0.5, b.z * 1.6),
        },
        Vec3::new(0.0, -b.y - 0.5, 0.0),
    )];
    let pillar_radius = 0.045 * b.x.min(b.z);
    // Spaced a third of a turn apart, and none straight between the default camera and the centre.
    for k in 0..3 {
        let angle = k as f32 * std::f32::consts::TAU / 3.0 + 0.2;
        scene.push((
            ObstacleKind::Pillar {
                radius: pillar_radius,
                half_height: b.y,
            },
            Vec3::new(0.5 * b.x * angle.cos(), 0.0, 0.5 * b.z * angle.sin()),
        ));
    }
    scene.push((
        ObstacleKind::Orbiter {
            radius: 0.1 * b.x.min(b.z),
        },
        Vec3::new(0.3 * b.x, 0.0, 0.0),
    ));
    let ball = 0.06 * b.x.min(b.z);
    for k in 0..4 {
        let angle = k as f32 * std::f32::consts::FRAC_PI_2 + 0.8;
        scene.push((
            ObstacleKind::Ball { radius: ball },
            Vec3::new(
                0.75 * b.x * angle.cos(),
                0.3 * b.y * (k + 1) as f32 / 4.0,
                0.75 * b.z * angle.sin(),
            ),
        ));
    }
    scene
}

impl ObstacleKind {
    pub fn collider(self) -> Collider {
        match self {
            Self::Floor { half } | Self::Crate { half } => Collider::cuboid(half.x, half.y, half.z),
            Self::Pillar { radius, half_height } => Collider::cylinder(half_height, radius),
            Self::Orbiter { radius } | Self::Ball { radius } => Collider::ball(radius),
        }
    }

    /// The obstacle table's record for this obstacle at `centre`, turned by `rotation`.
    pub fn record(self, centre: Vec3, rotation: Quat) -> ObstacleRecord {
        let (shape, role, dims) = match self {
            Self::Floor { half } => (ObstacleShape::Cuboid, ObstacleRole::Floor, half),
            Self::Crate { half } => (ObstacleShape::Cuboid, ObstacleRole::Crate, half),
            Self::Pillar { radius, half_height } => (
                ObstacleShape::Cylinder,
                ObstacleRole::Pillar,
                Vec3::new(radius, half_height, 0.0),
            ),
            Self::Orbiter { radius } => (ObstacleShape::Ball, ObstacleRole::Orbiter, Vec3::new(radius, 0.0, 0.0)),
            Self::Ball { radius } => (ObstacleShape::Ball, ObstacleRole::Ball, Vec3::new(radius, 0.0, 0.0)),
        };
        ObstacleRecord::new(shape, role, centre, rotation, dims)
    }
}

/// The soft bounds the scene was built for.
#[derive(Resource)]
struct SceneBounds(Vec3);

/// What `spawn_scene` spawned (bodies spawned by jobs are not scenery).
#[derive(Component)]
struct Scenery;

/// Rebuilds the scene when the flock's world changes size (a respawn with another bird count, as
/// the boids unit publishes it in the SAB's flock state), so the pillars, the orbiter and the
/// balls' walls stay in proportion to the birds' world.
fn follow_the_flock_world(
    sab: Res<Sab>,
    mut scene: ResMut<SceneBounds>,
    scenery: Query<Entity, With<Scenery>>,
    mut commands: Commands,
) {
    let Some(bounds) = sab.flock_state().bounds() else {
        return;
    };
    if bounds == scene.0 {
        return;
    }
    for entity in &scenery {
        commands.entity(entity).despawn();
    }
    spawn_scene(commands, bounds);
    scene.0 = bounds;
}

fn spawn_scene(mut commands: Commands, b: Vec3) {
    for (kind, at) in scene_layout(b) {
        let mut entity = commands.spawn((
            Obstacle { kind },
            Scenery,
            kind.collider(),
            Transform::from_translation(at),
        ));
        match kind {
            ObstacleKind::Floor { .. } | ObstacleKind::Pillar { .. } => {
                entity.insert((RigidBody::Fixed, Restitution::new(1.0), Friction::new(0.0)));
            }
            ObstacleKind::Orbiter { .. } => {
                entity.insert((
                    RigidBody::KinematicPositionBased,
                    Orbit {
                        radius: at.x,
                        height: at.y,
                        bob: 0.35 * b.y,
                    },
                ));
            }
            ObstacleKind::Crate { .. } => {
                entity.insert(RigidBody::Fixed);
            }
            ObstacleKind::Ball { .. } => {
                // Elastic and frictionless: they keep bouncing between the floor and the walls.
                let sideways = Vec3::new(-at.z, 0.0, at.x).normalize_or_zero() * 6.0;
                entity.insert((
                    RigidBody::Dynamic,
                    Velocity::linear(sideways),
                    Restitution {
                        coefficient: 1.0,
                        combine_rule: CoefficientCombineRule::Max,
                    },
                    Friction::new(0.0),
                    Damping {
                        linear_damping: 0.0,
                        angular_damping: 0.0,
                    },
                    Ccd::enabled(),
                ));
            }
        }
    }
    // Walls that keep the balls over the floor; the birds do not see them.
    let (wx, wz, h) = (b.x * 1.6, b.z * 1.6, b.y * 2.0);
    for (half, at) in [
        (Vec3::new(0.5, h, wz), Vec3::new(wx + 0.5, 0.0, 0.0)),
        (Vec3::new(0.5, h, wz), Vec3::new(-wx - 0.5, 0.0, 0.0)),
        (Vec3::new(wx, h, 0.5), Vec3::new(0.0, 0.0, wz + 0.5)),
        (Vec3::new(wx, h, 0.5), Vec3::new(0.0, 0.0, -wz - 0.5)),
    ] {
        commands.spawn((
            Scenery,
            RigidBody::Fixed,
            Collider::cuboid(half.x, half.y, half.z),
            Restitution::new(1.0),
            Friction::new(0.0),
            Transform::from_translation(at),
        ));
    }
}

/// Rapier steps only on ticks where the pulse moved (a paused pulse pauses the scene).
fn gate_rapier(sab: Res<Sab>, mut seen: Local<u32>, mut configs: Query<&mut RapierConfiguration>) {
    let pulse = sab.epochs().load(EpochIndex::SYSTEM_PULSE);
    let active = pulse != *seen;
    *seen = pulse;
    for mut config in &mut configs {
        if config.physics_pipeline_active != active {
            config.physics_pipeline_active = active;
        }
    }
}

/// Rapier steps by the pulse's own period, which changes when the page is hidden (30 Hz) or shown
/// again: the scene keeps its speed in simulated time instead of running in slow motion.
fn follow_the_pulse_rate(time: Res<Time<Fixed>>, mut mode: ResMut<TimestepMode>) {
    let dt = time.timestep().as_secs_f32();
    if !matches!(*mode, TimestepMode::Fixed { dt: current, .. } if current == dt) {
        *mode = TimestepMode::Fixed { dt, substeps: 1 };
    }
}

/// Moves the kinematic orbiters along their paths, by simulated time: the sum of the pulses'
/// periods (not wall time), so a change of pulse rate changes the speed of nothing.
fn drive_orbiters(time: Res<Time<Fixed>>, mut t: Local<f32>, mut orbiters: Query<(&Orbit, &mut Transform)>) {
    *t += time.timestep().as_secs_f32();
    let t = *t;
    for (orbit, mut transform) in &mut orbiters {
        let angle = ORBIT_SPEED * t;
        transform.translation = Vec3::new(
            orbit.radius * angle.cos(),
            orbit.height + orbit.bob * (BOB_SPEED * t).sin(),
            orbit.radius * angle.sin(),
        );
    }
}

/// Writes every obstacle's shape and pose, as Rapier's writeback left them, into the SAB, in
/// spawn order (query order changes as Rapier adds components).
fn publish_obstacles(
    sab: Res<Sab>,
    obstacles: Query<(Entity, &Obstacle, &Transform)>,
    mut records: Local<Vec<(Entity, ObstacleRecord)>>,
    mut table: Local<Vec<ObstacleRecord>>,
) {
    sab.heartbeats().beat_unit("physics");
    records.clear();
    records.extend(
        obstacles
            .iter()
            .map(|(e, o, t)| (e, o.kind.record(t.translation, t.rotation))),
    );
    records.sort_unstable_by_key(|(e, _)| *e);
    table.clear();
    table.extend(records.iter().map(|(_, r)| *r));
    if let Err(e) = sab.obstacles().publish(&table, Owner::Module) {
        error!("the physics unit could not publish its obstacles: {e}");
    }
}

/// The largest body a `spawn_body` job may ask for (half extent or radius, m), the farthest it
/// may place it or cast a ray, and the most steps one `step` job may wait for.
pub const MAX_BODY_SIZE: f32 = 50.0;
pub const MAX_DISTANCE: f32 = 10_000.0;
pub const MAX_STEPS: u32 = 100_000;

/// The physics unit's jobs, from its mailbox:
/// - `spawn_body` (`PhysicsCall::SpawnBody`): a ball (radius `size[0]`) or a box (half extents
///   `size`) at `at`, dynamic or fixed. It joins the obstacle table, so the flock avoids it and
///   the window draws it. Output: the body's entity bits, u64 little-endian.
/// - `step` (`PhysicsCall::Step`): answers once Rapier has stepped `steps` more times (it steps
///   once per pulse). Output: the pulse it completed on, u32 little-endian.
/// - `raycast` (`PhysicsCall::Raycast`): the first collider hit along the ray. Output, 32 bytes
///   little-endian: hit (u32, 0 or 1), distance (f32), entity bits (u64), hit point (3 × f32),
///   4 reserved bytes.
fn run_physics_jobs(
    sab: Res<Sab>,
    mut mailboxes: ResMut<JobMailboxes>,
    mut results: ResMut<MailboxResults>,
    rapier: ReadRapierContext,
    obstacles: Query<(), With<Obstacle>>,
    mut commands: Commands,
    mut stepping: Local<Vec<(u64, u32)>>,
) {
    let pulse = sab.epochs().load(EpochIndex::SYSTEM_PULSE);
    stepping.retain(|&(id, until)| {
        let done = pulse.wrapping_sub(until) as i32 >= 0;
        if done {
            results.0.push(JobOutcome::new(
                id,
                JobStatus::Success,
                Payload::Inline(pulse.to_le_bytes().to_vec()),
            ));
        }
        !done
    });
    let mut bodies = obstacles.iter().count();
    for job in mailboxes.take("physics") {
        let clock = JobClock::start(true);
        let outcome = match (job.method.as_str(), &job.params) {
            (
                "spawn_body",
                JobParams::Physics(PhysicsCall::SpawnBody {
                    cuboid,
                    size,
                    at,
                    dynamic,
                }),
            ) => spawn_body(&job, *cuboid, *size, *at, *dynamic, &mut bodies, &mut commands),
            ("step", JobParams::Physics(PhysicsCall::Step { steps })) if *steps <= MAX_STEPS => {
                stepping.push((job.id, pulse.wrapping_add(*steps)));
                continue;
            }
            (
                "raycast",
                JobParams::Physics(PhysicsCall::Raycast {
                    origin,
                    direction,
                    max_distance,
                }),
            ) => raycast(&job, *origin, *direction, *max_distance, &rapier),
            (method, _) => JobOutcome::failed(
                job.id,
                JobStatus::InvalidParams,
                format!(
                    "physics takes spawn_body, step (at most {MAX_STEPS} steps) or raycast with the matching \
                     physics parameters, not {method:?} with {:?}",
                    job.params
                ),
            ),
        };
        results.0.push(charge(outcome, &job, &clock));
    }
}

fn spawn_body(
    job: &Job,
    cuboid: bool,
    size: [f32; 3],
    at: [f32; 3],
    dynamic: bool,
    bodies: &mut usize,
    commands: &mut Commands,
) -> JobOutcome {
    let dims = if cuboid { &size[..] } else { &size[..1] };
    if !dims.iter().all(|d| d.is_finite() && *d > 0.0 && *d <= MAX_BODY_SIZE)
        || !at.iter().all(|c| c.is_finite() && c.abs() <= MAX_DISTANCE)
    {
        return JobOutcome::failed(
            job.id,
            JobStatus::InvalidParams,
            format!("a body needs sizes in (0, {MAX_BODY_SIZE}] and a finite position within {MAX_DISTANCE} m"),
        );
    }
    if *bodies >= crate::sab::ObstacleTable::MAX {
        return JobOutcome::failed(
            job.id,
            JobStatus::Rejected,
            format!("the obstacle table is full ({} bodies)", crate::sab::ObstacleTable::MAX),
        );
    }
    *bodies += 1;
    let kind = if cuboid {
        ObstacleKind::Crate { half: Vec3::from(size) }
    } else {
        ObstacleKind::Ball { radius: size[0] }
    };
    let body = if dynamic { RigidBody::Dynamic } else { RigidBody::Fixed };
    let entity = commands
        .spawn((
            Obstacle { kind },
            kind.collider(),
            body,
            Transform::from_translation(Vec3::from(at)),
        ))
        .id();
    JobOutcome::new(
        job.id,
        JobStatus::Success,
        Payload::Inline(entity.to_bits().to_le_bytes().to_vec()),
    )
}

fn raycast(
    job: &Job,
    origin: [f32; 3],
    direction: [f32; 3],
    max_distance: f32,
    rapier: &ReadRapierContext,
) -> JobOutcome {
    let (origin, direction) = (Vec3::from(origin), Vec3::from(direction));
    let valid = origin.is_finite()
        && direction.is_finite()
        && direction.length() > 1e-6
        && max_distance.is_finite()
        && max_distance > 0.0
        && max_distance <= MAX_DISTANCE;
    if !valid {
        return JobOutcome::failed(
            job.id,
            JobStatus::InvalidParams,
            format!("a ray needs a finite origin, a non-zero direction and a distance in (0, {MAX_DISTANCE}]"),
        );
    }
    let context = match rapier.single() {
        Ok(context) => context,
        Err(e) => return JobOutcome::failed(job.id, JobStatus::Failed, format!("no Rapier world: {e}")),
    };
    let direction = direction.normalize();
    let hit = context.cast_ray(origin, direction, max_distance, true, QueryFilter::default());
    let (hit, distance, entity) = hit.map_or((0, 0.0, 0), |(e, toi)| (1, toi, e.to_bits()));
    let record = RayHit {
        hit,
        distance,
        entity,
        point: (origin + direction * distance).to_array(),
        reserved: 0,
    };
    JobOutcome::new(
        job.id,
        JobStatus::Success,
        Payload::Inline(bytemuck::bytes_of(&record).to_vec()),
    )
}

/// A `raycast` job's output, byte for byte (little-endian on every target this builds for).
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct RayHit {
    hit: u32,
    distance: f32,
    entity: u64,
    point: [f32; 3],
    reserved: u32,
}
const _: () = assert!(size_of::<RayHit>() == 32);
