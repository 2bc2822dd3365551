//! `inos bench`: the benchmark suite, every comparison measured side by side in one run.
//!
//! - Epoch signal-to-wake latency, one way, with a waiter present: on the spin path (the waiter is
//!   still spinning when the signal lands) and on the parked path (the waiter sleeps in the parking
//!   lot), next to a crossbeam channel whose receiver is blocked the same way.
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

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::headless::{HeadlessConfig, build_app, build_app_with};
use crate::protocol::{Job, Payload};
use crate::sab::engines::Engine;
use crate::sab::generated as g;
use crate::sab::job_table;
use crate::sab::{
    BirdRecord, Capability, EpochIndex, ModuleSpec, Owner, RingError, RingId, Sab, SabLayout, Tier, Wake,
};
use crate::supervisors::jobs::JobQueue;
use crate::supervisors::workflows::{Step, StepInput, Workflow, WorkflowEngine};
use crate::timing::quantile;
use crate::units::boids::{Flock, FlockParams, StepClock, World, forces, initial_population, step_bird};
use crate::units::host::JobHostMode;
use crate::units::matrices::{MATRIX_WORDS, PARTS, write_part_major_words};

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
    /// predictions within 20 % (the seed's target).
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

/// Neighbours per bird within the perception radius.
pub fn mean_neighbours(world: &World, birds: &[BirdRecord]) -> f64 {
    let mut grid = crate::units::boids::Grid::default();
    grid.build(world, birds);
    let total: u64 = (0..birds.len())
        .map(|i| u64::from(grid.forces(i, world).neighbours))
        .sum();
    total as f64 / birds.len().max(1) as f64
}

/// Physics and matrices per tick, after a short warm-up.
fn flock_timing(birds: usize, layout: FlockLayout, ticks: usize) -> FlockTiming {
    let mut flock = Flock::from_records(layout.birds(birds), FlockParams::default());
    // The matrices go where the matrix unit writes them: words, as in the SAB.
    let words: Vec<AtomicU32> = (0..PARTS * MATRIX_WORDS * birds).map(|_| AtomicU32::new(0)).collect();
    for _ in 0..3 {
        flock.step(1.0 / 64.0, &[]);
    }
    let first_neighbours = mean_neighbours(&flock.world, flock.birds());
    let (mut physics, mut matrices) = (Vec::with_capacity(ticks), Vec::with_capacity(ticks));
    for _ in 0..ticks {
        physics.push(time_ms(|| flock.step(1.0 / 64.0, &[])));
        matrices.push(time_ms(|| {
            write_part_major_words(flock.birds(), &words, flock.params.threads)
        }));
    }
    let last_neighbours = mean_neighbours(&flock.world, flock.birds());
    let total: Vec<f64> = physics.iter().zip(&matrices).map(|(p, m)| p + m).collect();
    let (median_ms, p99_ms) = median_and_p99(total);
    FlockTiming {
        birds,
        layout,
        threads: flock.params.threads,
        ticks,
        mean_neighbours: (first_neighbours + last_neighbours) / 2.0,
        physics_median_ms: median(physics),
        matrices_median_ms: median(matrices),
        median_ms,
        p99_ms,
    }
}

/// The grid step and the naive step from the same birds, alternating tick by tick.
fn naive_comparison(birds: usize, layout: FlockLayout, ticks: usize) -> NaiveComparison {
    let start = layout.birds(birds);
    let params = FlockParams::default();
    let threads = params.threads.max(1);
    let mut flock = Flock::from_records(start.clone(), params);
    let world = flock.world;
    let mut naive = start;
    let mut intensity = vec![0.0; birds];
    let mut next = naive.clone();
    let mean_neighbours = mean_neighbours(&world, &naive);
    let (mut grid_ms, mut naive_ms) = (Vec::with_capacity(ticks), Vec::with_capacity(ticks));
    for k in 1..=ticks {
        grid_ms.push(time_ms(|| flock.step(1.0 / 64.0, &[])));
        naive_ms.push(time_ms(|| {
            let clock = StepClock::new(k as f32 / 64.0, 1.0 / 64.0, k as u32 - 1);
            let chunk = birds.div_ceil(threads);
            let current = &naive;
            std::thread::scope(|scope| {
                for (c, (out, intensity)) in next.chunks_mut(chunk).zip(intensity.chunks_mut(chunk)).enumerate() {
                    scope.spawn(move || {
                        for (j, (out, intensity)) in out.iter_mut().zip(intensity).enumerate() {
                            let i = c * chunk + j;
                            let f = forces(i, current, 0..birds, &world);
                            *out = step_bird(i, &current[i], &f, intensity, clock, false);
                        }
                    });
                }
            });
            std::mem::swap(&mut naive, &mut next);
        }));
    }
    let (grid_median_ms, naive_median_ms) = (median(grid_ms), median(naive_ms));
    NaiveComparison {
        birds,
        layout,
        threads,
        ticks,
        mean_neighbours,
        grid_median_ms,
        naive_median_ms,
        speedup: naive_median_ms / grid_median_ms,
    }
}

/// Mean nanoseconds per call of `op` over `n` calls.
fn mean_ns(n: u64, mut op: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        op(i);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn bench_spec(id: String) -> ModuleSpec {
    ModuleSpec {
        id,
        version: [1, 0, 0],
        resource_flags: 1,
        min_memory_mb: 16,
        capabilities: (0..4)
            .map(|i| Capability {
                id: format!("action{i}"),
                min_memory_mb: 8,
                requires_gpu: false,
            })
            .collect(),
        dependencies: vec![],
    }
}

/// (lookup ns, registration µs): lookups by name over 48 registered modules, and re-registration
/// of one module with four capabilities (slot search, arena tables, entry write, old tables freed).
fn registry_costs(quick: bool) -> (f64, f64) {
    let sab = Sab::for_tier(Tier::Light);
    let registry = sab.registry();
    let names: Vec<String> = (0..48).map(|i| format!("unit{i}")).collect();
    for name in &names {
        registry
            .register(&bench_spec(name.clone()), Owner::Module)
            .expect("48 modules fit the registry");
    }
    let lookups = if quick { 100_000 } else { 2_000_000 };
    let lookup = mean_ns(lookups, |i| {
        black_box(registry.lookup(&names[(i % 48) as usize]));
    });
    let spec = bench_spec("unit7".into());
    let registrations = if quick { 2_000 } else { 50_000 };
    let register = mean_ns(registrations, |_| {
        registry
            .register(&spec, Owner::Module)
            .expect("re-registration succeeds");
    }) / 1e3;
    (lookup, register)
}

fn arena_cost(quick: bool) -> f64 {
    let sab = Sab::for_tier(Tier::Light);
    let arena = sab.arena();
    mean_ns(if quick { 100_000 } else { 2_000_000 }, |i| {
        let size = [24, 200, 5000, 70_000][(i % 4) as usize];
        let block = arena.alloc(size, Owner::Module).expect("the heap has room");
        arena.free(block.offset, Owner::Module).expect("the block is live");
    })
}

/// Two spare epoch indices of the user-defined range, so the benchmark disturbs no named epoch.
const PING: EpochIndex = EpochIndex::new(g::EPOCH_RESERVED_FIRST).expect("in range");
const PONG: EpochIndex = EpochIndex::new(g::EPOCH_RESERVED_FIRST + 1).expect("in range");
const TIMEOUT: Duration = Duration::from_secs(10);

/// Nanoseconds since `base`, comparable across threads (the monotonic clock is system-wide).
fn since(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

fn busy_wait(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// One-way signal-to-wake latency. The waiter announces on PONG that it is about to wait, the
/// signaller lets `settle` pass (so the waiter is spinning or parked), stamps the time and signals.
fn epoch_wake(sab: &Sab, samples: usize, waiter_spins: u32, settle: Duration) -> Latency {
    let base = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    // Read before the waiter starts, or its first announcement could be taken for the baseline.
    let mut seen = sab.epochs().load(PONG);
    let waiter = {
        let (sab, sent) = (sab.clone(), Arc::clone(&sent));
        std::thread::spawn(move || {
            let epochs = sab.epochs();
            (0..samples)
                .map(|_| {
                    let last = epochs.load(PING);
                    epochs.signal(PONG);
                    match epochs.wait_with(PING, last, TIMEOUT, waiter_spins) {
                        Wake::Changed(_) => since(base).saturating_sub(sent.load(Ordering::Acquire)),
                        Wake::TimedOut => panic!("benchmark waiter timed out"),
                    }
                })
                .collect::<Vec<_>>()
        })
    };
    let epochs = sab.epochs();
    for _ in 0..samples {
        match epochs.wait_with(PONG, seen, TIMEOUT, u32::MAX) {
            Wake::Changed(v) => seen = v,
            Wake::TimedOut => panic!("benchmark signaller timed out"),
        }
        busy_wait(settle);
        sent.store(since(base), Ordering::Release);
        epochs.signal(PING);
    }
    Latency::from_samples(waiter.join().expect("waiter thread"))
}

/// The same measurement through a crossbeam channel whose receiver is blocked in `recv`.
fn crossbeam_wake(samples: usize, settle: Duration) -> Latency {
    let base = Instant::now();
    let (ping_tx, ping_rx) = crossbeam::channel::bounded::<u64>(1);
    let (ready_tx, ready_rx) = crossbeam::channel::bounded::<()>(1);
    let waiter = std::thread::spawn(move || {
        (0..samples)
            .map(|_| {
                ready_tx.send(()).expect("signaller alive");
                let sent = ping_rx.recv().expect("signaller alive");
                since(base).saturating_sub(sent)
            })
            .collect::<Vec<_>>()
    });
    for _ in 0..samples {
        ready_rx.recv().expect("waiter alive");
        busy_wait(settle);
        ping_tx.send(since(base)).expect("waiter alive");
    }
    Latency::from_samples(waiter.join().expect("waiter thread"))
}

/// Round trip: signal PING, the other thread answers on PONG; both sides spin-then-park.
fn epoch_round_trip(sab: &Sab, samples: usize) -> Latency {
    let first_ping = sab.epochs().load(PING);
    let echo = {
        let sab = sab.clone();
        std::thread::spawn(move || {
            let epochs = sab.epochs();
            let mut seen = first_ping;
            for _ in 0..samples {
                match epochs.wait(PING, seen, TIMEOUT) {
                    Wake::Changed(v) => seen = v,
                    Wake::TimedOut => panic!("echo thread timed out"),
                }
                epochs.signal(PONG);
            }
        })
    };
    let epochs = sab.epochs();
    let mut seen = epochs.load(PONG);
    let ns = (0..samples)
        .map(|_| {
            let start = Instant::now();
            epochs.signal(PING);
            match epochs.wait(PONG, seen, TIMEOUT) {
                Wake::Changed(v) => seen = v,
                Wake::TimedOut => panic!("round trip timed out"),
            }
            start.elapsed().as_nanos() as u64
        })
        .collect();
    echo.join().expect("echo thread");
    Latency::from_samples(ns)
}

fn crossbeam_round_trip(samples: usize) -> Latency {
    let (ping_tx, ping_rx) = crossbeam::channel::bounded::<()>(1);
    let (pong_tx, pong_rx) = crossbeam::channel::bounded::<()>(1);
    let echo = std::thread::spawn(move || {
        for _ in 0..samples {
            ping_rx.recv().expect("peer alive");
            pong_tx.send(()).expect("peer alive");
        }
    });
    let ns = (0..samples)
        .map(|_| {
            let start = Instant::now();
            ping_tx.send(()).expect("peer alive");
            pong_rx.recv().expect("peer alive");
            start.elapsed().as_nanos() as u64
        })
        .collect();
    echo.join().expect("echo thread");
    Latency::from_samples(ns)
}

/// Frames of 64 bytes from a producer thread to this thread through the SAB inbox ring.
pub fn ring_throughput(frames: u64) -> Throughput {
    let sab = Sab::for_tier(Tier::Light);
    let ring = sab.ring(RingId::Inbox);
    let mut consumer = ring.consumer().expect("fresh ring has no consumer");
    let producer = ring.producer(Owner::Kernel).expect("kernel may write the inbox");
    let start = Instant::now();
    let thread = std::thread::spawn(move || {
        let mut frame = [0u8; 64];
        for i in 0..frames {
            frame[..8].copy_from_slice(&i.to_le_bytes());
            loop {
                match producer.push(&frame) {
                    Ok(()) => break,
                    Err(RingError::Full { .. }) => std::hint::spin_loop(),
                    Err(e) => panic!("ring push failed: {e}"),
                }
            }
        }
    });
    let mut buf = [0u8; 64];
    let mut received = 0;
    while received < frames {
        match consumer.read_into(&mut buf) {
            Ok(Some(_)) => {
                debug_assert_eq!(u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")), received);
                received += 1;
            }
            Ok(None) => std::hint::spin_loop(),
            Err(e) => panic!("ring read failed: {e}"),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    thread.join().expect("producer thread");
    black_box(buf);
    Throughput {
        items: frames,
        seconds,
        per_second: frames as f64 / seconds,
    }
}

/// The same transfer through crossbeam's bounded `ArrayQueue` of 64-byte items.
pub fn array_queue_throughput(frames: u64) -> Throughput {
    let queue = Arc::new(crossbeam::queue::ArrayQueue::<[u8; 64]>::new(4096));
    let start = Instant::now();
    let thread = {
        let queue = Arc::clone(&queue);
        std::thread::spawn(move || {
            let mut frame = [0u8; 64];
            for i in 0..frames {
                frame[..8].copy_from_slice(&i.to_le_bytes());
                while queue.push(frame).is_err() {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let mut received = 0;
    while received < frames {
        match queue.pop() {
            Some(frame) => {
                black_box(frame);
                received += 1;
            }
            None => std::hint::spin_loop(),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    thread.join().expect("producer thread");
    Throughput {
        items: frames,
        seconds,
        per_second: frames as f64 / seconds,
    }
}

/// Echo jobs with the host in the tick and on its own thread, `jobs` at once and `jobs` kept
/// flowing with at most `window` unanswered, and the round trip of `samples` single jobs.
fn echo_jobs(jobs: u64, samples: usize, window: u64) -> Jobs {
    let tick = echo_run(JobHostMode::Tick, jobs, samples, window);
    let thread = echo_run(JobHostMode::Thread, jobs, samples, window);
    Jobs {
        echo_jobs: tick.at_once,
        echo_jobs_host_thread: thread.at_once,
        echo_jobs_steady: tick.steady,
        echo_jobs_steady_host_thread: thread.steady,
        echo_window: window,
        echo_job_round_trip: tick.round_trip,
        echo_job_round_trip_host_thread: thread.round_trip,
    }
}

/// A kernel app whose admission table lets one source flood the pipeline: the benchmark measures
/// the pipeline, not the rate limit that a deployment keeps (`protocol::DEFAULT_BURST`).
fn flood_app(setup: impl FnOnce(&mut bevy::app::App)) -> bevy::app::App {
    let app = build_app_with(HeadlessConfig::kernel(), setup);
    app.world().resource::<Sab>().admission().configure(u32::MAX, u32::MAX);
    app
}

fn echo_run(mode: JobHostMode, jobs: u64, samples: usize, window: u64) -> EchoRun {
    let mut app = flood_app(|app| {
        app.insert_resource(mode);
    });
    let sab = app.world().resource::<Sab>().clone();
    // One job, resubmitted under each id: the pipeline is measured, not the caller's allocations.
    let mut job = Job::new(0, "echo", "echo", Payload::Inline(vec![7; 16]));
    let mut submit = |queue: &mut JobQueue, id| {
        job.id = id;
        queue.submit(&sab, &job).expect("echo is registered");
    };
    // At once: as many as the job table holds.
    let at_once = jobs.min(job_table::SLOTS as u64);
    let start = Instant::now();
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    for id in 1..=at_once {
        submit(&mut queue, id);
    }
    for _ in 0..10_000_000 {
        if app.world().resource::<JobQueue>().in_flight() == 0 {
            break;
        }
        app.update();
    }
    let stats = app.world().resource::<JobQueue>().stats;
    assert_eq!(stats.resolved, at_once, "every echo job is answered: {stats:?}");
    let seconds = start.elapsed().as_secs_f64();
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    for id in 1..=at_once {
        black_box(queue.take_result(id));
    }
    let round_trips = (0..samples as u64)
        .map(|k| {
            let id = at_once + 1 + k;
            let t = Instant::now();
            submit(&mut app.world_mut().resource_mut::<JobQueue>(), id);
            loop {
                app.update();
                if app.world_mut().resource_mut::<JobQueue>().take_result(id).is_some() {
                    break;
                }
                match mode {
                    JobHostMode::Tick => panic!("an echo job completes within one update with the host in the tick"),
                    JobHostMode::Thread => assert!(
                        t.elapsed() < Duration::from_secs(10),
                        "an echo job completes within 10 s with the host on its own thread"
                    ),
                }
            }
            t.elapsed().as_nanos() as u64
        })
        .collect();
    let first = at_once + samples as u64 + 1;
    let (mut next_submit, mut next_take) = (first, first);
    let start = Instant::now();
    for _ in 0..10_000_000 {
        if next_take == first + jobs {
            break;
        }
        let mut queue = app.world_mut().resource_mut::<JobQueue>();
        while next_submit < first + jobs && next_submit - next_take < window {
            submit(&mut queue, next_submit);
            next_submit += 1;
        }
        app.update();
        let mut queue = app.world_mut().resource_mut::<JobQueue>();
        while next_take < next_submit && queue.take_result(next_take).is_some() {
            next_take += 1;
        }
    }
    assert_eq!(next_take, first + jobs, "every steady echo job is answered");
    let steady = start.elapsed().as_secs_f64();
    let throughput = |items: u64, seconds: f64| Throughput {
        items,
        seconds,
        per_second: items as f64 / seconds,
    };
    EchoRun {
        at_once: throughput(at_once, seconds),
        steady: throughput(jobs, steady),
        round_trip: Latency::from_samples(round_trips),
    }
}

/// `workflows` chains of `length` echo steps, each step taking the previous step's output by SAB
/// offset, all started at once.
fn workflow_chains(workflows: u64, length: usize) -> WorkflowTiming {
    let mut app = flood_app(|_| {});
    let sab = app.world().resource::<Sab>().clone();
    let start = Instant::now();
    for id in 0..workflows {
        let steps = (0..length)
            .map(|i| {
                let input = match i {
                    0 => StepInput::Inline(vec![7; 64]),
                    _ => StepInput::Output(i - 1),
                };
                Step::new("echo", "echo", "echo", input)
            })
            .collect();
        app.world_mut()
            .resource_mut::<WorkflowEngine>()
            .submit(&sab, Workflow { id, steps })
            .expect("a valid chain");
    }
    let mut updates = 0;
    while app.world().resource::<WorkflowEngine>().running() > 0 && updates < 100_000 {
        app.update();
        updates += 1;
    }
    let wall = start.elapsed();
    let stats = app.world().resource::<WorkflowEngine>().stats;
    assert_eq!(stats.steps_finished, workflows * length as u64, "every step ran");
    let per_step = |d: Duration| d.as_secs_f64() * 1e6 / stats.steps_finished as f64;
    WorkflowTiming {
        workflows,
        steps: stats.steps_finished,
        coordination_per_step_us: per_step(stats.coordination),
        submit_per_step_us: per_step(stats.submitting),
        wall_per_step_us: wall.as_secs_f64() * 1e6 / stats.steps_finished as f64,
        updates,
    }
}

/// `jobs` BLAKE3 hash jobs, 4 KiB to 64 KiB, 10 per tick (at most 460 KiB of input per tick, so
/// every tick's jobs fit the 512 KiB inbox: an admissible load), each with a deadline 50 ms out;
/// then the learning and scheduling engines' own figures. The ticks are paced at the pulse rate
/// (64 Hz of wall time), so the deadlines are met or missed in real time.
fn engine_targets(jobs: u64) -> EngineTargets {
    let mut app = flood_app(|_| {});
    let sab = app.world().resource::<Sab>().clone();
    let data = vec![0x5a; 64 << 10];
    let tick = Duration::from_secs_f64(1.0 / crate::pulse::DEFAULT_PULSE_HZ);
    let (start, mut ticks) = (Instant::now(), 0u32);
    let mut paced_update = |app: &mut bevy::app::App| {
        ticks += 1;
        if let Some(wait) = (start + tick * ticks).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        app.update();
    };
    for id in 1..=jobs {
        let size = 4096 * (1 + (id as usize * 7) % 16);
        let job = Job {
            deadline_ms: crate::sab::now_ms() + 50,
            ..Job::new(id, "crypto", "hash", Payload::Inline(data[..size].to_vec()))
        };
        app.world_mut()
            .resource_mut::<JobQueue>()
            .submit(&sab, &job)
            .expect("crypto is registered");
        if id % 10 == 0 {
            paced_update(&mut app);
        }
    }
    for _ in 0..1000 {
        if app.world().resource::<JobQueue>().in_flight() == 0 {
            break;
        }
        paced_update(&mut app);
    }
    paced_update(&mut app);
    let engines = sab.engines();
    // The app ran on this thread and has stopped: no record is in the middle of a write.
    let read = |engine| engines.read(engine).expect("no engine is writing");
    let (learning, scheduling) = (read(Engine::Learning), read(Engine::Scheduling));
    let metric = |record: &crate::sab::engines::EngineRecord, engine, name| {
        f64::from(record.metric(engine, name).expect("a named metric"))
    };
    EngineTargets {
        jobs,
        learning_mean_abs_error_pct: metric(&learning, Engine::Learning, "mean_abs_error_pct"),
        learning_within_20pct: metric(&learning, Engine::Learning, "within_20pct_share"),
        deadline_hit_rate: metric(&scheduling, Engine::Scheduling, "deadline_hit_rate"),
    }
}

/// Runs the `sections` (all of them when empty).
pub fn measure(quick: bool, sections: &[Section]) -> BenchReport {
    let wanted = |s: Section| (sections.is_empty() || sections.contains(&s)).then_some(());
    let samples = if quick { 200 } else { 2000 };
    let frames = if quick { 200_000 } else { 4_000_000 };
    BenchReport {
        signals: wanted(Section::Signals).map(|()| {
            let sab = Sab::for_tier(Tier::Light);
            let spin_settle = Duration::from_micros(2);
            let park_settle = Duration::from_micros(300);
            Signals {
                epoch_wake_spin: epoch_wake(&sab, samples, u32::MAX, spin_settle),
                epoch_wake_parked: epoch_wake(&sab, samples, 0, park_settle),
                crossbeam_wake_parked: crossbeam_wake(samples, park_settle),
                epoch_round_trip: epoch_round_trip(&sab, samples),
                crossbeam_round_trip: crossbeam_round_trip(samples),
            }
        }),
        rings: wanted(Section::Rings).map(|()| {
            let ring_64b = ring_throughput(frames);
            let array_queue_64b = array_queue_throughput(frames);
            Rings {
                ring_vs_array_queue: ring_64b.per_second / array_queue_64b.per_second,
                ring_64b,
                array_queue_64b,
            }
        }),
        bookkeeping: wanted(Section::Bookkeeping).map(|()| {
            let (registry_lookup_ns, registry_register_us) = registry_costs(quick);
            Bookkeeping {
                registry_lookup_ns,
                registry_register_us,
                arena_alloc_free_ns: arena_cost(quick),
            }
        }),
        flock: wanted(Section::Flock).map(|()| flock_scaling(quick)),
        jobs: wanted(Section::Jobs).map(|()| echo_jobs(if quick { 20_000 } else { 200_000 }, samples / 4, 4096)),
        workflows: wanted(Section::Workflows).map(|()| workflow_chains(if quick { 100 } else { 1000 }, 10)),
        engines: wanted(Section::Engines).map(|()| engine_targets(if quick { 2_000 } else { 20_000 })),
    }
}

fn flock_scaling(quick: bool) -> FlockScaling {
    let flock = [(1_000, 200), (10_000, 60), (100_000, 10)]
        .into_iter()
        .flat_map(|(birds, ticks)| {
            let ticks = if quick { ticks / 5 } else { ticks };
            FlockLayout::ALL.map(|layout| flock_timing(birds, layout, ticks))
        })
        .collect();
    let flock_vs_naive = [(1_000, 20), (10_000, 6)]
        .into_iter()
        .flat_map(|(birds, ticks)| {
            let ticks = if quick { ticks / 2 } else { ticks };
            FlockLayout::ALL.map(|layout| naive_comparison(birds, layout, ticks))
        })
        .collect();
    FlockScaling {
        flock,
        flock_vs_naive,
        flock_app: flock_app_timing(10_000, if quick { 20 } else { 300 }),
    }
}

fn flock_app_timing(birds: usize, ticks: u64) -> FlockAppTiming {
    let mut app = build_app(HeadlessConfig {
        resume: None,
        layout: SabLayout::for_tier(Tier::Dedicated),
        pulse_hz: crate::pulse::DEFAULT_PULSE_HZ,
        flock: Some(crate::FlockPlugins {
            birds,
            params: FlockParams::default(),
            seed: 1,
            evolve_every: crate::EVOLVE_EVERY,
            obstacles: true,
        }),
    });
    for _ in 0..ticks {
        app.update();
    }
    let stages = app.world().resource::<crate::timing::StageTimes>().summaries();
    let median_ms = |name: &str| {
        stages
            .iter()
            .find(|s| s.stage == name)
            .map_or(f64::NAN, |s| f64::from(s.median_us) / 1e3)
    };
    FlockAppTiming {
        birds,
        ticks,
        physics_median_ms: median_ms("physics"),
        matrices_median_ms: median_ms("matrices"),
    }
}

pub fn run(json: bool, quick: bool, sections: &[Section]) -> Result<(), crate::RunError> {
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run `cargo run --release -- bench` for meaningful numbers");
    }
    let r = measure(quick, sections);
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let lat = |name: &str, l: &Latency| {
        println!(
            "  {name:<40} p50 {:>8.2} µs   p99 {:>8.2} µs   max {:>9.2} µs   ({} samples)",
            l.p50_ns as f64 / 1e3,
            l.p99_ns as f64 / 1e3,
            l.max_ns as f64 / 1e3,
            l.samples
        )
    };
    let thr = |name: &str, t: &Throughput| {
        println!(
            "  {name:<40} {:>8.2} M frames/s   ({} frames in {:.3} s)",
            t.per_second / 1e6,
            t.items,
            t.seconds
        )
    };
    if let Some(s) = &r.signals {
        println!("epoch signal -> wake (one way, waiter present)");
        lat("epoch, waiter spinning", &s.epoch_wake_spin);
        lat("epoch, waiter parked", &s.epoch_wake_parked);
        lat("crossbeam channel, receiver blocked", &s.crossbeam_wake_parked);
        println!("round trip");
        lat("epoch ping-pong", &s.epoch_round_trip);
        lat("crossbeam channel ping-pong", &s.crossbeam_round_trip);
    }
    if let Some(rings) = &r.rings {
        println!("64-byte frames, producer thread -> consumer thread");
        thr("SAB ring (inbox)", &rings.ring_64b);
        thr("crossbeam ArrayQueue", &rings.array_queue_64b);
        println!("  ring / ArrayQueue: {:.2}x", rings.ring_vs_array_queue);
    }
    if let Some(b) = &r.bookkeeping {
        println!("bookkeeping (one thread)");
        println!(
            "  {:<40} {:>8.1} ns   (target < 100 ns)",
            "registry lookup by name", b.registry_lookup_ns
        );
        println!(
            "  {:<40} {:>8.2} µs   (target < 5 µs)",
            "registry re-registration", b.registry_register_us
        );
        println!("  {:<40} {:>8.1} ns", "arena alloc + free", b.arena_alloc_free_ns);
    }
    if let Some(f) = &r.flock {
        println!("flock, physics + matrices per tick (neighbours: per bird, within the perception radius)");
        for t in &f.flock {
            println!(
                "  {:>7} birds, {:<10} {:>5.1} neighbours, {} threads   median {:>8.2} ms (physics {:.2} + matrices {:.2})   p99 {:>8.2} ms",
                t.birds,
                t.layout.name(),
                t.mean_neighbours,
                t.threads,
                t.median_ms,
                t.physics_median_ms,
                t.matrices_median_ms,
                t.p99_ms
            );
        }
        println!("flock physics step: the grid against every bird checking every other (same birds, threads, model)");
        for c in &f.flock_vs_naive {
            println!(
                "  {:>7} birds, {:<10} {:>5.1} neighbours, {} threads   grid {:>8.3} ms   O(n²) {:>9.2} ms   {:.1}x",
                c.birds,
                c.layout.name(),
                c.mean_neighbours,
                c.threads,
                c.grid_median_ms,
                c.naive_median_ms,
                c.speedup
            );
        }
        let a = &f.flock_app;
        println!(
            "  {:>7} birds in the headless app (SAB streams, obstacles; {} ticks): physics stage {:.2} ms, matrix stage {:.2} ms (medians)",
            a.birds, a.ticks, a.physics_median_ms, a.matrices_median_ms
        );
    }
    if let Some(j) = &r.jobs {
        println!("job pipeline (echo, 16-byte input, headless app; target 1 M jobs/s)");
        let rate = |name: String, t: &Throughput| {
            println!(
                "  {name:<40} {:>8.3} M jobs/s   ({} jobs in {:.3} s)",
                t.per_second / 1e6,
                t.items,
                t.seconds
            );
        };
        for (host, at_once, steady, round_trip) in [
            ("in the tick", &j.echo_jobs, &j.echo_jobs_steady, &j.echo_job_round_trip),
            (
                "on its own thread",
                &j.echo_jobs_host_thread,
                &j.echo_jobs_steady_host_thread,
                &j.echo_job_round_trip_host_thread,
            ),
        ] {
            println!("  the job host {host}:");
            rate("  throughput, submitted at once".into(), at_once);
            rate(format!("  throughput, {} in flight", j.echo_window), steady);
            lat("  one job, submit to result", round_trip);
        }
    }
    if let Some(w) = &r.workflows {
        println!(
            "workflows ({} chains of {} echo steps, outputs passed by SAB offset, {} updates)",
            w.workflows,
            w.steps / w.workflows.max(1),
            w.updates
        );
        println!(
            "  {:<40} {:>8.2} µs   (target < 50 µs; submit {:.2} µs of it)",
            "coordination per step", w.coordination_per_step_us, w.submit_per_step_us
        );
        println!(
            "  {:<40} {:>8.2} µs",
            "wall time per step, pipeline included", w.wall_per_step_us
        );
    }
    if let Some(e) = &r.engines {
        println!(
            "engines ({} BLAKE3 jobs of 4-64 KiB, 10 per tick, ticks paced at 64 Hz, deadlines 50 ms out)",
            e.jobs
        );
        println!(
            "  {:<40} {:>7.1} %   within 20 %: {:.1} % of predictions (target: within 20 %)",
            "learning: latency prediction error",
            e.learning_mean_abs_error_pct,
            100.0 * e.learning_within_20pct
        );
        println!(
            "  {:<40} {:>7.1} %   (target ≥ 95 %)",
            "scheduling: deadlines met",
            100.0 * e.deadline_hit_rate
        );
    }
    Ok(())
}
