//! The boids unit: every rule, constant and formula of reference §4, stepping the flock once per
//! pulse and publishing it on the bird stream.
//!
//! - Default (correct) mode: Jacobi. Every bird reads the start-of-step flock and writes the next
//!   one, so the result does not depend on update order or on the number of worker threads; birds
//!   bank about their own forward axis (q = Ry(heading) · Rx(pitch) · Rz(bank)).
//! - `faithful` mode reproduces the original: birds are updated in place in index order (later
//!   birds see earlier birds' new state) and bank about the world Z axis
//!   (q = Rz(bank) · Ry(heading) · Rx(pitch)).
//! - The world grows with the bird count so that the density stays that of the original's 1000
//!   birds in 80 × 60 × 80 (cell size and perception radius 10), unless a world scale is fixed:
//!   horizontally by √(birds / 1000), which also keeps the golden-angle start disk in the same
//!   proportion to the world.
//! - Neighbour search uses a counting-sort uniform grid with cell-ordered position and velocity
//!   arrays (one array per coordinate). The Jacobi step first sums each bird's neighbours in slot
//!   order, cell by cell: the 27 cells' runs are listed once per cell as groups of slots, and
//!   every bird of the cell takes the same groups in SIMD lanes, without branches that depend on
//!   where it sits: groups of 16 with AVX-512 lane masks where the CPU has them (checked at run
//!   time), of 4 otherwise. The two widths add the same neighbours in different orders, so a
//!   run's bits (and stream hash) are the same for any thread count on one machine, but can
//!   differ between a CPU with AVX-512 and one without. Then each bird steps in index order, and
//!   stages its cell, position and velocity for the next step's grid, which therefore never
//!   rereads the records. All buffers are reused, so a steady-state step allocates no
//!   flock-sized memory. Both passes split their work into chunks taken by the threads of the
//!   units' worker pool ([`crate::units::pool`]).
//! - Per-bird trigonometry is replaced by identities that give the reference's values to f32
//!   rounding: the noise and wing-beat sines by angle addition with each bird's phases (computed
//!   once, in f64), the heading's half-angle from the velocity itself, the small pitch and bank
//!   half-angles by polynomial.
//! - Birds steer away from the physics unit's obstacles, read from the SAB's obstacle table on the
//!   physics epoch ([`steer`], weight [`W_AVOID`]): an addition to the reference's forces.

mod evolve;
mod flock;
mod grid;
mod step;
#[cfg(any(test, target_arch = "x86_64"))]
mod wide;

pub use evolve::{MAX_BATCH, evolve_batch};
pub use flock::{Flock, FlockError, birds_in, check_capacity, check_records};
pub use grid::Grid;
pub use step::{BirdForces, BirdPhases, StepClock, forces, initial_population, steer, step_bird};

use bevy::math::Vec3;
use bevy::platform::time::Instant;
use bevy::prelude::*;
use serde::Serialize;

use crate::pulse::PulseSystems;
use crate::sab::engines::{DEFAULT_CHUNKS_PER_THREAD, Engine};
use crate::sab::flock_state::{FlockControl, FlockInfo};
use crate::sab::stream::StreamWriter;
use crate::sab::supervisors::unit_running;
use crate::sab::{EpochIndex, ModuleSpec, ObstacleRecord, Owner, Sab, StreamId, epoch_changed};
use crate::timing::StageTimes;
use crate::units::RegisterUnitExt;

/// Reference §4.3.
pub const SEPARATION_DISTANCE: f32 = 3.0;
pub const PERCEPTION_RADIUS: f32 = 10.0;
pub const CELL_SIZE: f32 = 10.0;
pub const W_SEP: f32 = 1.5;
pub const W_ALI: f32 = 0.05;
pub const W_COH: f32 = 0.02;
pub const W_BOUNDARY: f32 = 0.5;
pub const MIN_SPEED: f32 = 2.0;
pub const MAX_SPEED: f32 = 6.0;
/// The original's soft bounds and grid, for 1000 birds.
pub const BASE_BOUNDS: Vec3 = Vec3::new(38.0, 28.0, 38.0);
pub const BASE_CELLS: [f32; 3] = [8.0, 6.0, 8.0];
pub const BASE_BIRDS: f32 = 1000.0;
/// Birds closer than this to an obstacle's surface steer away from it.
pub const AVOID_RADIUS: f32 = 4.0;
/// Velocity change per frame (1/60 s) at an obstacle's surface, fading linearly to zero at
/// [`AVOID_RADIUS`]. It has to beat the swirl, which near the pillars adds about 0.9 per frame
/// along their circle.
pub const W_AVOID: f32 = 3.0;

/// How the flock is stepped.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FlockParams {
    pub faithful: bool,
    /// World scale relative to the original's 80 × 60 × 80; `None` scales with the bird count.
    pub world_scale: Option<f32>,
    /// Worker threads for Jacobi steps (1 = this thread only).
    pub threads: usize,
    /// Work items per thread in a Jacobi step: the threads take items from a shared queue, so
    /// more items balance the load better and cost more handing out. The optimisation engine
    /// tunes it (`EPOCH_OPTIMIZATION`).
    pub chunks_per_thread: usize,
}

impl Default for FlockParams {
    fn default() -> Self {
        Self {
            faithful: false,
            world_scale: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunks_per_thread: DEFAULT_CHUNKS_PER_THREAD,
        }
    }
}

/// The world for `birds` birds: soft bounds and grid dimensions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct World {
    pub bounds: Vec3,
    pub dims: [usize; 3],
    pub half: Vec3,
}

impl World {
    /// With `scale` fixed, every axis is scaled by it. Otherwise the horizontal axes grow with
    /// √(birds / 1000) and the height stays: the volume then grows with the bird count (constant
    /// density), and the golden-angle start disk, whose radius grows with √i, covers the same share
    /// of the world as the original's 1000 birds did.
    pub fn new(birds: usize, scale: Option<f32>) -> Self {
        let scales = match scale {
            Some(s) => Vec3::splat(s),
            None => {
                let h = (birds.max(1) as f32 / BASE_BIRDS).sqrt().max(1.0);
                Vec3::new(h, 1.0, h)
            }
        };
        let dims = [
            (BASE_CELLS[0] * scales.x).ceil().max(1.0) as usize,
            (BASE_CELLS[1] * scales.y).ceil().max(1.0) as usize,
            (BASE_CELLS[2] * scales.z).ceil().max(1.0) as usize,
        ];
        Self {
            bounds: BASE_BOUNDS * scales,
            dims,
            half: Vec3::new(dims[0] as f32, dims[1] as f32, dims[2] as f32) * (CELL_SIZE / 2.0),
        }
    }

    fn cell_of(&self, p: Vec3) -> usize {
        // Truncation is the floor here: negative values (and NaN) are clamped to 0 first.
        let c = |v: f32, half: f32, dim: usize| (((v + half) / CELL_SIZE).max(0.0) as usize).min(dim - 1);
        let (x, y, z) = (
            c(p.x, self.half.x, self.dims[0]),
            c(p.y, self.half.y, self.dims[1]),
            c(p.z, self.half.z, self.dims[2]),
        );
        (x * self.dims[1] + y) * self.dims[2] + z
    }

    fn cell_coords(&self, cell: usize) -> [usize; 3] {
        let z = cell % self.dims[2];
        let y = (cell / self.dims[2]) % self.dims[1];
        [cell / (self.dims[1] * self.dims[2]), y, z]
    }

    pub fn cell_count(&self) -> usize {
        self.dims.iter().product()
    }
}

/// The unit's registry record.
pub fn spec() -> ModuleSpec {
    ModuleSpec::cpu_unit(
        "boids",
        8,
        &[
            "boids:step_physics",
            "boids:init_population",
            "boids:evolve_batch",
            crate::sab::heartbeats::PULSE_HEARTBEAT,
        ],
    )
}

/// The boids unit's place in `FixedUpdate` (after the pulse; `lib.rs` orders it among the
/// other units).
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct BoidsSystems;

/// Steps the flock on every pulse and publishes it on the bird stream.
pub struct BoidsPlugin {
    pub birds: usize,
    pub params: FlockParams,
}

/// The hosts' requests (`sab::flock_state`) the unit has acted on, by their sequence numbers.
#[derive(Resource, Debug)]
struct SeenRequests(FlockControl);

/// The bird stream's writer, held by the unit.
#[derive(Resource)]
pub struct BirdWriter(pub StreamWriter);

impl Plugin for BoidsPlugin {
    fn build(&self, app: &mut App) {
        let sab = app.world().resource::<Sab>().clone();
        // A plugin cannot return an error; the command line checks this first with a clear message.
        if let Err(e) = check_capacity(sab.layout(), self.birds) {
            panic!("{e}");
        }
        let mut writer = sab
            .stream(StreamId::Birds)
            .writer(Owner::Module)
            .expect("the boids unit is the bird stream's only writer");
        // A resumed SAB's birds carry on; a new SAB gets the start disk, in both buffers
        // (reference §4.9).
        let resumed = birds_in(&sab)
            .ok()
            .filter(|birds| !birds.is_empty() && check_records(birds).is_ok());
        let flock = match resumed {
            Some(birds) => Flock::from_records(birds, self.params),
            None => {
                let flock = Flock::new(self.birds, self.params);
                for _ in 0..2 {
                    writer.publish(flock.birds()).expect("the bird count fits the tier");
                }
                flock
            }
        };
        publish_info(&sab, &flock);
        app.insert_resource(flock)
            .insert_resource(BirdWriter(writer))
            .insert_resource(SeenRequests(sab.flock_state().control()))
            .init_resource::<StageTimes>()
            .register_job_unit(spec(), evolve_batch)
            .configure_sets(FixedUpdate, BoidsSystems.after(PulseSystems))
            .add_systems(
                FixedUpdate,
                (
                    apply_requests.run_if(epoch_changed(EpochIndex::SENSOR)),
                    step_flock
                        .run_if(epoch_changed(EpochIndex::SYSTEM_PULSE))
                        .run_if(unit_running("boids")),
                )
                    .chain()
                    .in_set(BoidsSystems),
            );
    }
}

/// What the unit simulates, for the renderer, the inspector and the physics unit.
fn publish_info(sab: &Sab, flock: &Flock) {
    sab.flock_state().publish_info(&FlockInfo {
        bounds: flock.world.bounds.to_array(),
        birds: flock.birds().len() as u32,
        faithful: u32::from(flock.params.faithful),
        ..FlockInfo::default()
    });
}

/// Acts on the hosts' requests (a respawn, the faithful switch) before the next step, even while
/// the pulse is paused: on `EpochIndex::SENSOR`, for each request whose sequence number moved.
fn apply_requests(
    sab: Res<Sab>,
    mut seen: ResMut<SeenRequests>,
    mut flock: ResMut<Flock>,
    mut writer: ResMut<BirdWriter>,
) {
    let asked = sab.flock_state().control();
    if asked.faithful_request != seen.0.faithful_request {
        flock.params.faithful = asked.faithful;
    }
    if asked.respawn != seen.0.respawn {
        let birds = asked.respawn_birds as usize;
        match check_capacity(sab.layout(), birds) {
            Ok(()) => {
                *flock = Flock::from_records(initial_population(birds), flock.params);
                // Readers take the active buffer, so one publish shows the new flock.
                if let Err(e) = writer.0.publish(flock.birds()) {
                    error!("the bird stream refused the new flock: {e}");
                }
            }
            Err(e) => error!("the flock was not respawned: {e}"),
        }
    }
    seen.0 = asked;
    publish_info(&sab, &flock);
}

/// What the boids step keeps between runs: the epochs it last saw of what it reads besides the
/// pulse, and its copy of the obstacle table.
#[derive(Default)]
struct StepInputs {
    evolution: u32,
    physics: u32,
    obstacles: Vec<ObstacleRecord>,
    optimisation: u32,
}

fn step_flock(
    sab: Res<Sab>,
    time: Res<Time>,
    mut flock: ResMut<Flock>,
    mut writer: ResMut<BirdWriter>,
    mut times: ResMut<StageTimes>,
    mut inputs: Local<StepInputs>,
) {
    let _span = info_span!("boids_step", birds = flock.birds().len()).entered();
    let start = Instant::now();
    sab.heartbeats().beat_unit("boids");
    let epochs = sab.epochs();
    let evolution = epochs.load(EpochIndex::EVOLUTION);
    // A read that fails is retried on the next step (the epoch is only marked seen on success).
    if evolution != inputs.evolution {
        match flock.merge_genes(&sab) {
            Ok(()) => inputs.evolution = evolution,
            Err(e) => error!("the boids unit could not read the new generation: {e}"),
        }
    }
    let optimisation = epochs.load(EpochIndex::OPTIMIZATION);
    // A record being written is read again on the next step.
    if optimisation != inputs.optimisation
        && let Ok(record) = sab.engines().read(Engine::Optimisation)
    {
        inputs.optimisation = optimisation;
        let value = record.metric(Engine::Optimisation, "current_value").unwrap_or(0.0);
        if (1.0..=256.0).contains(&value) {
            flock.params.chunks_per_thread = value as usize;
        }
    }
    let physics = epochs.load(EpochIndex::PHYSICS);
    if physics != inputs.physics {
        match sab.obstacles().read_into(&mut inputs.obstacles) {
            Ok(()) => inputs.physics = physics,
            Err(e) => error!("the boids unit could not read the obstacles: {e}"),
        }
    }
    flock.step(time.delta_secs(), &inputs.obstacles);
    if let Err(e) = writer.0.publish(flock.birds()) {
        error!("the bird stream refused a publish: {e}");
    }
    times.record("physics", start.elapsed());
}
