//! `inos bench`: the benchmark suite, every comparison measured side by side in one run.
//!
//! - Epoch signal-to-wake latency, one way, with a waiter present: on the spin path (the waiter is
//!   still spinning when the signal lands) and on the parked path (the waiter sleeps on the
//!   epoch's futex), next to a crossbeam channel whose receiver is blocked the same way.
//! - Epoch round trip (signal, the other thread answers on a second epoch) next to a crossbeam
//!   channel round trip.
//! - Ring throughput with 64-byte frames between two threads, next to crossbeam's `ArrayQueue`.
//! - Registry lookup and registration, and an arena alloc/free pair.
//! - Flock scaling: physics and matrices per tick at 1k, 10k and 100k birds, in the start disk
//!   (about 40 neighbours per bird within the perception radius) and spread evenly through the
//!   world (about 11, the density other flocking libraries are measured at), each with its mean
//!   neighbour count; and the grid step against an O(n²) step of the same model at the same bird
//!   count, layout and thread count, alternating tick by tick.
//! - The job pipeline (echo jobs), workflows (chains of echo steps), and the learning and
//!   scheduling engines' own figures after hash jobs at an admissible load.
//! - Across processes (`processes`): epoch wake, ring transfer and echo jobs from an outside
//!   client, each beside the same between threads.

//!
//! The measurements live by subject (`kernel`: signals, rings, bookkeeping, jobs, workflows,
//! engines; `flock`: the flock and the headless app at 10 000 birds), the text report in `report`;
//! this file holds what they produce, [`measure`] and [`run`].

mod flock;
mod kernel;
pub use kernel::PeerRole;
#[cfg(not(target_arch = "wasm32"))]
pub mod processes;
mod report;

use std::time::Instant;

use serde::Serialize;

use crate::sab::BirdRecord;
use crate::timing::quantile;
use crate::units::boids::{World, initial_population};

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Latency {
    fn from_samples(mut ns: Vec<u64>) -> Self {
        ns.sort_unstable();
        Self {
            samples: ns.len(),
            p50_ns: quantile(&ns, 0.50),
            p99_ns: quantile(&ns, 0.99),
            max_ns: *ns.last().expect("at least one sample"),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Throughput {
    pub items: u64,
    pub seconds: f64,
    pub per_second: f64,
}

/// The suite's sections, each runnable alone with `inos bench --only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Epoch signal-to-wake latency and round trips, next to crossbeam channels.
    Signals,
    /// Ring throughput next to crossbeam's ArrayQueue.
    Rings,
    /// Registry lookup and registration, arena alloc/free.
    Bookkeeping,
    /// Flock physics plus matrices at 1k, 10k and 100k birds, next to a naive step.
    Flock,
    /// Echo jobs through the whole job pipeline.
    Jobs,
    /// Chains of echo steps as workflows.
    Workflows,
    /// The learning and scheduling engines' figures after hash jobs.
    Engines,
    /// Epoch wake, ring transfer and echo jobs across processes, beside the same between threads.
    Processes,
}

/// Every section that ran; the JSON keys are flat, and a section left out has none of its keys.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    #[serde(flatten)]
    pub signals: Option<Signals>,
    #[serde(flatten)]
    pub rings: Option<Rings>,
    #[serde(flatten)]
    pub bookkeeping: Option<Bookkeeping>,
    #[serde(flatten)]
    pub flock: Option<FlockScaling>,
    #[serde(flatten)]
    pub jobs: Option<Jobs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflows: Option<WorkflowTiming>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engines: Option<EngineTargets>,
    #[cfg(not(target_arch = "wasm32"))]
    #[serde(flatten)]
    pub processes: Option<processes::CrossProcess>,
}

#[derive(Debug, Serialize)]
pub struct Signals {
    pub epoch_wake_spin: Latency,
    pub epoch_wake_parked: Latency,
    pub crossbeam_wake_parked: Latency,
    pub epoch_round_trip: Latency,
    pub crossbeam_round_trip: Latency,
}

#[derive(Debug, Serialize)]
pub struct Rings {
    pub ring_64b: Throughput,
    pub array_queue_64b: Throughput,
    /// ring_64b / array_queue_64b, measured in the same run.
    pub ring_vs_array_queue: f64,
}

#[derive(Debug, Serialize)]
pub struct Bookkeeping {
    pub registry_lookup_ns: f64,
    pub registry_register_us: f64,
    pub arena_alloc_free_ns: f64,
}

#[derive(Debug, Serialize)]
pub struct FlockScaling {
    pub flock: Vec<FlockTiming>,
    /// The grid step against the O(n²) step of the same model, like for like.
    pub flock_vs_naive: Vec<NaiveComparison>,
    /// The same flock in the headless app, where each tick also reads and publishes the SAB's
    /// streams and steers around the Rapier scene.
    pub flock_app: FlockAppTiming,
}

/// Where the birds start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlockLayout {
    /// The reference's golden-angle disk: dense (about 40 neighbours per bird).
    StartDisk,
    /// Uniformly at random inside the world's soft bounds (about 11 neighbours per bird).
    Spread,
}

impl FlockLayout {
    pub const ALL: [Self; 2] = [Self::StartDisk, Self::Spread];

    /// `count` birds in this layout (genes as in the reference's initial population).
    pub fn birds(self, count: usize) -> Vec<BirdRecord> {
        let mut birds = initial_population(count);
        if self == Self::Spread {
            let bounds = World::new(count, None).bounds;
            let mut rng = crate::sab::genes::SplitMix64::new(count as u64);
            for b in &mut birds {
                b.position = [0, 1, 2].map(|axis| rng.range(-bounds[axis], bounds[axis]));
            }
        }
        birds
    }

    fn name(self) -> &'static str {
        match self {
            Self::StartDisk => "start disk",
            Self::Spread => "spread",
        }
    }
}

/// The grid step and the O(n²) step (every bird against every other, then the same per-bird
/// update) over the same birds, on the same threads, timed on alternate ticks.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NaiveComparison {
    pub birds: usize,
    pub layout: FlockLayout,
    pub threads: usize,
    pub ticks: usize,
    pub mean_neighbours: f64,
    pub grid_median_ms: f64,
    pub naive_median_ms: f64,
    /// naive_median_ms / grid_median_ms.
    pub speedup: f64,
}

/// Median stage times of a headless app with the flock and its obstacles (the dedicated tier).
#[derive(Debug, Serialize)]
pub struct FlockAppTiming {
    pub birds: usize,
    pub ticks: u64,
    /// The boids unit: obstacles read, the step, the bird stream published.
    pub physics_median_ms: f64,
    /// The matrix unit: the bird stream read, the matrices written into the matrix stream.
    pub matrices_median_ms: f64,
}

/// Echo jobs through the whole pipeline (queue, inbox ring, job host, outbox ring, results, job
/// history) in a headless app, with the job host in the tick and on its own thread.
#[derive(Debug, Serialize)]
pub struct Jobs {
    /// Submitted all at once.
    pub echo_jobs: Throughput,
    pub echo_jobs_host_thread: Throughput,
    /// Kept flowing: submitted while fewer than `echo_window` are unanswered, results taken after
    /// every update (the pipeline's steady state, with small tables).
    pub echo_jobs_steady: Throughput,
    pub echo_jobs_steady_host_thread: Throughput,
    pub echo_window: u64,
    /// One echo job, submit to result (updates until it is answered: one, with the host in the
    /// tick).
    pub echo_job_round_trip: Latency,
    pub echo_job_round_trip_host_thread: Latency,
}

/// One host mode's echo figures.
struct EchoRun {
    at_once: Throughput,
    steady: Throughput,
    round_trip: Latency,
}

/// The engines' own figures after a run of crypto hash jobs of varied sizes with deadlines.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EngineTargets {
    pub jobs: u64,
    /// The learning engine's mean absolute error of its latency predictions, and the share of
    /// predictions within 20 % (the seed's target): the engine's running figures (over about its
    /// last 50 jobs) averaged over every tick after its first 100 jobs.
    pub learning_mean_abs_error_pct: f64,
    pub learning_within_20pct: f64,
    /// The scheduling engine's share of jobs done by their deadline (target ≥ 95 %).
    pub deadline_hit_rate: f64,
}

/// Workflows of echo steps in a headless app.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WorkflowTiming {
    pub workflows: u64,
    pub steps: u64,
    /// The workflow engine's own time per step: `submit` (the DAG check, registry look-ups,
    /// supervisor-slot allocation) and `advance` (DAG bookkeeping, passing outputs through the
    /// arena, submitting the steps' jobs), target < 50 µs.
    pub coordination_per_step_us: f64,
    /// Of which `submit`.
    pub submit_per_step_us: f64,
    /// Wall time per step, pipeline included.
    pub wall_per_step_us: f64,
    /// App updates for the whole batch (a chain of n steps needs at least n + 1).
    pub updates: u64,
}

/// Physics and matrices per tick for one flock size and layout.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FlockTiming {
    pub birds: usize,
    pub layout: FlockLayout,
    pub threads: usize,
    pub ticks: usize,
    /// Neighbours per bird within the perception radius, averaged over the timed ticks' first
    /// and last flock.
    pub mean_neighbours: f64,
    /// The physics step alone (grid, neighbour pass, update).
    pub physics_median_ms: f64,
    /// The matrices alone (8 part transforms per bird, into SAB-like words).
    pub matrices_median_ms: f64,
    /// Physics plus matrices.
    pub median_ms: f64,
    pub p99_ms: f64,
}

fn median_and_p99(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (quantile(&ms, 0.5), quantile(&ms, 0.99))
}

fn median(ms: Vec<f64>) -> f64 {
    median_and_p99(ms).0
}

/// Milliseconds that `f` takes.
fn time_ms(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64() * 1e3
}

/// Mean nanoseconds per call of `op` over `n` calls.
fn mean_ns(n: u64, mut op: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        op(i);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Runs the `sections` (all of them when empty).
pub fn measure(quick: bool, sections: &[Section]) -> BenchReport {
    let wanted = |s: Section| (sections.is_empty() || sections.contains(&s)).then_some(());
    let samples = if quick { 200 } else { 2000 };
    let frames = if quick { 200_000 } else { 4_000_000 };
    BenchReport {
        signals: wanted(Section::Signals).map(|()| kernel::signals(samples)),
        rings: wanted(Section::Rings).map(|()| kernel::rings(frames)),
        bookkeeping: wanted(Section::Bookkeeping).map(|()| kernel::bookkeeping(quick)),
        flock: wanted(Section::Flock).map(|()| flock::flock_scaling(quick)),
        jobs: wanted(Section::Jobs)
            .map(|()| kernel::echo_jobs(if quick { 20_000 } else { 200_000 }, samples / 4, 4096)),
        workflows: wanted(Section::Workflows).map(|()| kernel::workflow_chains(if quick { 100 } else { 1000 }, 10)),
        engines: wanted(Section::Engines).map(|()| kernel::engine_targets(if quick { 2_000 } else { 20_000 })),
        #[cfg(not(target_arch = "wasm32"))]
        processes: wanted(Section::Processes)
            .map(|()| processes::cross_process(samples, frames, if quick { 20_000 } else { 200_000 })),
    }
}

/// `inos bench`: measures the `sections`, then prints the report (a table, or JSON).
pub fn run(json: bool, quick: bool, sections: &[Section]) -> Result<(), crate::RunError> {
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run `cargo run --release -- bench` for meaningful numbers");
    }
    let r = measure(quick, sections);
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        report::print(&r);
    }
    Ok(())
}
