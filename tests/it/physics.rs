//! The physics unit: steering by the obstacle table against hand-computed values, Rapier really
//! stepping the scene (and pausing with the pulse), birds avoiding the pillars, and determinism
//! with the obstacles in.

use bevy::prelude::*;
use inos::FlockPlugins;
use inos::headless::{HeadlessConfig, bird_stream_hash, build_app, build_app_with};
use inos::protocol::{Job, JobOutcome, JobParams, JobStatus, Payload, PhysicsCall};
use inos::pulse::PulseControl;
use inos::sab::obstacles::ObstacleRole;
use inos::sab::{BirdRecord, ObstacleRecord, ObstacleShape, Sab, SabLayout, StreamId, Tier};
use inos::supervisors::jobs::JobQueue;
use inos::units::boids::{AVOID_RADIUS, World, steer};
use inos::units::host::{JobHostMode, JobHostStats};
use inos::units::physics::{Obstacle, ObstacleKind, scene_layout};

use crate::flock::flock_plugins;

fn close(a: Vec3, b: Vec3) -> bool {
    (a - b).length() < 1e-5
}

fn ball(centre: Vec3, r: f32) -> ObstacleRecord {
    ObstacleRecord::new(
        ObstacleShape::Ball,
        ObstacleRole::Ball,
        centre,
        Quat::IDENTITY,
        Vec3::new(r, 0.0, 0.0),
    )
}

#[test]
fn steering_fades_linearly_from_the_surface_and_pushes_out_from_inside() {
    let field = [ball(Vec3::ZERO, 2.0)];
    // 1 unit from the surface: (1 - 1/4) along the outward normal.
    assert!(close(
        steer(&field, Vec3::new(3.0, 0.0, 0.0)),
        Vec3::new(0.75, 0.0, 0.0)
    ));
    assert!(close(
        steer(&field, Vec3::new(0.0, -5.0, 0.0)),
        Vec3::new(0.0, -0.25, 0.0)
    ));
    // At or beyond the avoidance radius: nothing.
    assert_eq!(steer(&field, Vec3::new(2.0 + AVOID_RADIUS, 0.0, 0.0)), Vec3::ZERO);
    assert_eq!(steer(&field, Vec3::new(40.0, 1.0, 0.0)), Vec3::ZERO);
    // Inside: full strength, out through the nearest surface point.
    assert!(close(steer(&field, Vec3::new(0.0, 0.0, 1.5)), Vec3::new(0.0, 0.0, 1.0)));

    // A box turned a quarter about Z lies along X (half length 3, half height 1): 2 units above
    // its top face, and 1 unit below a ball's surface; the two add up.
    let field = [
        ObstacleRecord::new(
            ObstacleShape::Cuboid,
            ObstacleRole::Crate,
            Vec3::new(10.0, 0.0, 0.0),
            Quat::from_rotation_z(std::f32::consts::FRAC_PI_2),
            Vec3::new(1.0, 3.0, 1.0),
        ),
        ball(Vec3::new(10.0, 5.0, 0.0), 1.0),
    ];
    let s = steer(&field, Vec3::new(10.0, 3.0, 0.0));
    assert!(close(s, Vec3::new(0.0, 0.5 - 0.75, 0.0)), "{s}");
    // Inside the box, nearer its end face (x = 13) than its top: out along +X.
    let s = steer(&field[..1], Vec3::new(12.5, 0.2, 0.0));
    assert!(close(s, Vec3::X), "{s}");

    // A pillar (radius 2, half height 10): beside it radially, above its cap, and inside it.
    let pillar = [ObstacleRecord::new(
        ObstacleShape::Cylinder,
        ObstacleRole::Pillar,
        Vec3::new(0.0, 0.0, 5.0),
        Quat::IDENTITY,
        Vec3::new(2.0, 10.0, 0.0),
    )];
    assert!(close(
        steer(&pillar, Vec3::new(0.0, 3.0, 8.0)),
        Vec3::new(0.0, 0.0, 0.75)
    ));
    assert!(close(
        steer(&pillar, Vec3::new(0.5, 12.0, 5.0)),
        Vec3::new(0.0, 0.5, 0.0)
    ));
    assert!(close(steer(&pillar, Vec3::new(1.5, 0.0, 5.0)), Vec3::X));
    // An unknown shape code (a corrupt table) is ignored, not trusted.
    let mut corrupt = pillar[0];
    corrupt.shape = 99;
    assert_eq!(steer(&[corrupt], Vec3::new(1.5, 0.0, 5.0)), Vec3::ZERO);
}

fn obstacle_app(birds: usize, threads: usize) -> App {
    obstacle_app_with_host(birds, threads, JobHostMode::Tick)
}

fn obstacle_app_with_host(birds: usize, threads: usize, mode: JobHostMode) -> App {
    let config = HeadlessConfig {
        sab: None,
        layout: SabLayout::for_tier(Tier::Light),
        pulse_hz: 64.0,
        flock: Some(FlockPlugins {
            obstacles: true,
            ..flock_plugins(birds, threads, 1, 180)
        }),
    };
    build_app_with(config, |app| {
        app.insert_resource(mode);
    })
}

/// Every obstacle's kind and position, in spawn order.
fn obstacles(app: &mut App) -> Vec<(ObstacleKind, Vec3)> {
    let mut query = app.world_mut().query::<(Entity, &Obstacle, &Transform)>();
    let mut all: Vec<_> = query
        .iter(app.world())
        .map(|(e, o, t)| (e, o.kind, t.translation))
        .collect();
    all.sort_by_key(|(e, _, _)| *e);
    all.into_iter().map(|(_, kind, at)| (kind, at)).collect()
}

#[test]
fn rapier_moves_the_scene_on_the_pulse_and_stops_when_it_pauses() {
    let mut app = obstacle_app(200, 1);
    let world = World::new(200, None);
    let start = obstacles(&mut app);
    assert_eq!(start.len(), scene_layout(world.bounds).len());
    for _ in 0..120 {
        app.update();
    }
    let moved = obstacles(&mut app);
    let floor_top = -world.bounds.y;
    for ((kind, before), (_, after)) in start.iter().zip(&moved) {
        match kind {
            ObstacleKind::Floor { .. } | ObstacleKind::Pillar { .. } | ObstacleKind::Crate { .. } => {
                assert_eq!(before, after)
            }
            ObstacleKind::Orbiter { .. } => {
                // The orbiter follows its path by tick count: 120 ticks of 1/64 s at 0.35 rad/s.
                let angle: f32 = 0.35 * 120.0 / 64.0;
                let r = before.x;
                assert!((after.x - r * angle.cos()).abs() < 1e-3 && (after.z - r * angle.sin()).abs() < 1e-3);
            }
            ObstacleKind::Ball { radius } => {
                assert!(
                    before.distance(*after) > 1.0,
                    "a ball fell and moved: {before} -> {after}"
                );
                assert!(after.y > floor_top + radius - 0.1, "the floor holds the ball: {after}");
            }
        }
    }
    // The obstacle table in the SAB holds what Rapier left, in the same order.
    let mut table = Vec::new();
    app.world().resource::<Sab>().obstacles().read_into(&mut table).unwrap();
    let published: Vec<Vec3> = table.iter().map(|r| Vec3::from(r.centre)).collect();
    assert_eq!(published, moved.iter().map(|(_, at)| *at).collect::<Vec<_>>());
    // Paused: the flock's pulse stops, and the scene with it.
    app.world_mut().resource_mut::<PulseControl>().paused = true;
    for _ in 0..30 {
        app.update();
    }
    let paused = obstacles(&mut app);
    for _ in 0..30 {
        app.update();
    }
    assert_eq!(paused, obstacles(&mut app));
    // One step moves it again, by one tick.
    app.world_mut().resource_mut::<PulseControl>().pending_steps = 1;
    app.update();
    assert_ne!(paused, obstacles(&mut app));
}

/// A hidden page slows the pulse to 30 Hz: Rapier then steps by 1/30 s and the orbiter moves by
/// the simulated time, so the scene keeps its speed instead of running in slow motion, and the
/// orbiter continues from where it was instead of jumping.
#[test]
fn physics_time_follows_the_pulse_rate() {
    use bevy_rapier3d::plugin::TimestepMode;
    let mut app = obstacle_app(200, 1);
    let orbiter = |app: &mut App| {
        let (_, at) = obstacles(app)
            .into_iter()
            .find(|(kind, _)| matches!(kind, ObstacleKind::Orbiter { .. }))
            .expect("the scene has an orbiter");
        at.z.atan2(at.x)
    };
    // Rapier's step in Hz, rounded (the fixed step is a Duration, Rapier's an f32).
    let rapier_dt = |app: &App| match *app.world().resource::<TimestepMode>() {
        TimestepMode::Fixed { dt, .. } => (1.0 / dt).round(),
        ref other => panic!("{other:?}"),
    };
    let sab = app.world().resource::<Sab>().clone();
    for _ in 0..64 {
        app.update();
    }
    assert_eq!(rapier_dt(&app), 64.0);
    let visible = orbiter(&mut app);
    assert!((visible - 0.35).abs() < 1e-4, "one second at 0.35 rad/s: {visible}");
    sab.epochs().store(inos::sab::EpochIndex::SYSTEM_VISIBILITY, 0);
    for _ in 0..30 {
        app.update();
    }
    assert_eq!(rapier_dt(&app), 30.0);
    let hidden = orbiter(&mut app);
    assert!((hidden - 0.70).abs() < 1e-4, "and one more second at 30 Hz: {hidden}");
    sab.epochs().store(inos::sab::EpochIndex::SYSTEM_VISIBILITY, 1);
    app.update();
    assert_eq!(rapier_dt(&app), 64.0);
    assert!((orbiter(&mut app) - (0.70 + 0.35 / 64.0)).abs() < 1e-4);
}

/// Birds inside a pillar (summed over every tick), with and without the obstacles in the scene.
fn birds_inside_pillars(obstacles_on: bool) -> usize {
    let birds = 1000;
    let mut app = build_app(HeadlessConfig {
        sab: None,
        layout: SabLayout::for_tier(Tier::Light),
        pulse_hz: 64.0,
        flock: Some(FlockPlugins {
            obstacles: obstacles_on,
            ..flock_plugins(birds, 2, 1, 0)
        }),
    });
    let pillars: Vec<(Vec3, f32)> = scene_layout(World::new(birds, None).bounds)
        .into_iter()
        .filter_map(|(kind, at)| match kind {
            ObstacleKind::Pillar { radius, .. } => Some((at, radius)),
            _ => None,
        })
        .collect();
    let sab = app.world().resource::<Sab>().clone();
    let mut records: Vec<BirdRecord> = vec![bytemuck::Zeroable::zeroed(); birds];
    let mut inside = 0;
    for _ in 0..600 {
        app.update();
        sab.stream(StreamId::Birds).read_into(&mut records).unwrap();
        inside += records
            .iter()
            .filter(|b| {
                let p = Vec3::from(b.position);
                pillars
                    .iter()
                    .any(|(c, r)| Vec2::new(p.x - c.x, p.z - c.z).length() < *r)
            })
            .count();
    }
    inside
}

#[test]
fn birds_steer_around_the_pillars() {
    let without = birds_inside_pillars(false);
    let with = birds_inside_pillars(true);
    // Without the physics unit, the swirl carries plenty of birds through where the pillars stand.
    assert!(
        without > 1000,
        "{without} bird-ticks inside the pillars without obstacles"
    );
    assert!(
        with * 10 < without,
        "{with} bird-ticks inside with obstacles, {without} without"
    );
}

#[test]
fn obstacles_keep_the_run_identical_on_one_and_two_threads() {
    let hash = |threads| {
        let mut app = obstacle_app(1000, threads);
        for _ in 0..200 {
            app.update();
        }
        bird_stream_hash(app.world().resource::<Sab>())
    };
    assert_eq!(hash(1), hash(2));
}

fn physics_job(app: &mut App, id: u64, method: &str, call: PhysicsCall) -> JobOutcome {
    let sab = app.world().resource::<Sab>().clone();
    let job = Job {
        params: JobParams::Physics(call),
        ..Job::new(id, "physics", method, Payload::Inline(vec![]))
    };
    app.world_mut().resource_mut::<JobQueue>().submit(&sab, &job).unwrap();
    // Time-bounded rather than counted: with the job host on its own thread, results arrive
    // between ticks.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        app.update();
        if let Some(outcome) = app.world_mut().resource_mut::<JobQueue>().take_result(id) {
            return outcome;
        }
    }
    panic!("physics job {id} has no result");
}

fn output(outcome: &JobOutcome) -> &[u8] {
    match &outcome.output {
        Payload::Inline(bytes) => bytes,
        Payload::Sab(_) => panic!("inline output expected"),
    }
}

fn raycast(app: &mut App, id: u64, origin: [f32; 3]) -> (u32, f32, u64, [f32; 3]) {
    let call = PhysicsCall::Raycast {
        origin,
        direction: [0.0, -2.0, 0.0],
        max_distance: 100.0,
    };
    let outcome = physics_job(app, id, "raycast", call);
    assert_eq!(outcome.status, JobStatus::Success, "{}", outcome.error);
    let b = output(&outcome);
    assert_eq!(b.len(), 32);
    let f = |i: usize| f32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    (
        u32::from_le_bytes(b[0..4].try_into().unwrap()),
        f(4),
        u64::from_le_bytes(b[8..16].try_into().unwrap()),
        [f(16), f(20), f(24)],
    )
}

/// Spawns (job 1) a fixed 2 m crate far from the scene, centred at (500, 0, 500), for rays to come
/// straight down onto; returns its entity bits, one update after it was spawned.
fn spawn_crate(app: &mut App) -> u64 {
    let spawn = PhysicsCall::SpawnBody {
        cuboid: true,
        size: [1.0, 1.0, 1.0],
        at: [500.0, 0.0, 500.0],
        dynamic: false,
    };
    let spawned = physics_job(app, 1, "spawn_body", spawn);
    assert_eq!(spawned.status, JobStatus::Success, "{}", spawned.error);
    let bits = u64::from_le_bytes(output(&spawned).try_into().unwrap());
    app.update();
    bits
}

/// With the job host on its own thread, a mailbox unit's jobs still reach its system in the tick,
/// and its results go out on the kernel-bound ring beside the thread's.
#[test]
fn mailbox_jobs_run_with_the_job_host_on_its_own_thread() {
    let mut app = obstacle_app_with_host(200, 1, JobHostMode::Thread);
    let bits = spawn_crate(&mut app);
    let (hit, distance, entity, _) = raycast(&mut app, 2, [500.0, 50.0, 500.0]);
    assert_eq!((hit, entity), (1, bits));
    assert!((distance - 49.0).abs() < 1e-3, "{distance}");
    // The thread's counters reach the app.
    app.update();
    assert_eq!(app.world().resource::<JobHostStats>().executed, 2);
}

#[test]
fn physics_jobs_spawn_bodies_cast_rays_at_them_and_wait_for_steps() {
    let mut app = obstacle_app(200, 1);
    let sab = app.world().resource::<Sab>().clone();
    let before = obstacles(&mut app).len();
    let bits = spawn_crate(&mut app);
    assert_eq!(obstacles(&mut app).len(), before + 1);
    let mut table = Vec::new();
    sab.obstacles().read_into(&mut table).unwrap();
    assert!(
        table
            .iter()
            .any(|r| r.shape() == Some(ObstacleShape::Cuboid) && r.centre == [500.0, 0.0, 500.0])
    );

    let (hit, distance, entity, point) = raycast(&mut app, 2, [500.0, 50.0, 500.0]);
    assert_eq!((hit, entity), (1, bits));
    assert!((distance - 49.0).abs() < 1e-3, "{distance}");
    assert!((point[1] - 1.0).abs() < 1e-3, "{point:?}");
    let (hit, ..) = raycast(&mut app, 3, [500.0, 50.0, 520.0]);
    assert_eq!(hit, 0, "nothing under that ray");

    // A step job answers after exactly that many more Rapier steps (one per pulse).
    let pulse = sab.epochs().load(inos::sab::EpochIndex::SYSTEM_PULSE);
    let stepped = physics_job(&mut app, 4, "step", PhysicsCall::Step { steps: 5 });
    let done = u32::from_le_bytes(output(&stepped).try_into().unwrap());
    assert_eq!(done, pulse + 1 + 5, "dispatched on the next pulse, done 5 pulses later");

    // Bad parameters are refused with a reason.
    let bad = [
        (
            "spawn_body",
            PhysicsCall::SpawnBody {
                cuboid: false,
                size: [0.0, 1.0, 1.0],
                at: [0.0; 3],
                dynamic: true,
            },
        ),
        (
            "raycast",
            PhysicsCall::Raycast {
                origin: [0.0; 3],
                direction: [0.0; 3],
                max_distance: 10.0,
            },
        ),
        ("step", PhysicsCall::Step { steps: u32::MAX }),
    ];
    for (i, (method, call)) in bad.into_iter().enumerate() {
        let outcome = physics_job(&mut app, 10 + i as u64, method, call);
        assert_eq!(outcome.status, JobStatus::InvalidParams, "{method}");
        assert!(!outcome.error.is_empty());
    }
    // A method the unit does not declare never reaches it: the queue refuses it.
    let sab = app.world().resource::<Sab>().clone();
    let teleport = Job::new(99, "physics", "teleport", Payload::Inline(vec![]));
    let refused = app
        .world_mut()
        .resource_mut::<JobQueue>()
        .submit(&sab, &teleport)
        .unwrap_err();
    assert!(refused.to_string().contains("has no method \"teleport\""), "{refused}");
}

/// A respawn with another bird count resizes the flock's world, and the scene follows: the
/// floor and pillars are rebuilt for the new bounds, once, and bodies spawned by jobs stay.
#[test]
fn the_scene_follows_the_flock_world_when_the_bird_count_changes() {
    let mut app = obstacle_app(1000, 1);
    let call = PhysicsCall::SpawnBody {
        cuboid: true,
        size: [1.0, 1.0, 1.0],
        at: [5.0, 0.0, 5.0],
        dynamic: false,
    };
    assert_eq!(physics_job(&mut app, 1, "spawn_body", call).status, JobStatus::Success);
    let before = obstacles(&mut app).len();
    app.world().resource::<Sab>().flock_state().request_respawn(2000);
    for _ in 0..3 {
        app.update();
    }
    let bounds = World::new(2000, None).bounds;
    assert_ne!(bounds, World::new(1000, None).bounds);
    let now = obstacles(&mut app);
    assert_eq!(now.len(), before, "the scene is replaced, not added to");
    let layout = scene_layout(bounds);
    // The job's crate stays; the rest is the new layout (recycled entities come in another order).
    let is_crate = |k: &ObstacleKind| matches!(k, ObstacleKind::Crate { .. });
    assert!(
        now.iter()
            .any(|(k, at)| is_crate(k) && close(*at, Vec3::new(5.0, 0.0, 5.0)))
    );
    assert_eq!(now.iter().filter(|(k, _)| !is_crate(k)).count(), layout.len());
    for (kind, want) in &layout {
        assert_eq!(
            now.iter().filter(|(k, _)| k == kind).count(),
            layout.iter().filter(|(k, _)| k == kind).count(),
            "{kind:?}"
        );
        // The fixed ones are where the new layout puts them (the others move).
        if matches!(kind, ObstacleKind::Floor { .. } | ObstacleKind::Pillar { .. }) {
            assert!(
                now.iter().any(|(k, at)| k == kind && close(*at, *want)),
                "{kind:?} at {want}"
            );
        }
    }
}
