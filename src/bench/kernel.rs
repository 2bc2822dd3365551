//! The kernel's measurements: epoch signals and round trips next to crossbeam channels, ring
//! throughput next to crossbeam's `ArrayQueue`, registry and arena bookkeeping, echo jobs through
//! the whole pipeline, workflows of echo steps, and the engines' own figures.

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Bookkeeping, EchoRun, EngineTargets, Jobs, Latency, Rings, Signals, Throughput, WorkflowTiming, mean_ns};
use crate::headless::{HeadlessConfig, build_app_with};
use crate::protocol::{Job, Payload};
use crate::sab::engines::Engine;
use crate::sab::generated as g;
use crate::sab::job_table;
use crate::sab::{Capability, EpochIndex, ModuleSpec, Owner, RingError, RingId, Sab, Tier, Wake};
use crate::supervisors::jobs::JobQueue;
use crate::supervisors::workflows::{Step, StepInput, Workflow, WorkflowEngine};
use crate::units::host::JobHostMode;

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

pub(super) fn busy_wait(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
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

/// The same transfer through crossbeam's bounded `ArrayQueue` of 64-byte items.
fn array_queue_throughput(frames: u64) -> Throughput {
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
pub(super) fn echo_jobs(jobs: u64, samples: usize, window: u64) -> Jobs {
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
/// the pipeline, not the rate limit that a deployment keeps (`protocol::DEFAULT_BURST`). On `sab`
/// if given, else a private SAB.
pub(super) fn flood_app(sab: Option<Sab>, setup: impl FnOnce(&mut bevy::app::App)) -> bevy::app::App {
    let app = build_app_with(
        HeadlessConfig {
            sab,
            ..HeadlessConfig::kernel()
        },
        setup,
    );
    app.world().resource::<Sab>().admission().configure(u32::MAX, u32::MAX);
    app
}

pub(super) fn echo_run(mode: JobHostMode, jobs: u64, samples: usize, window: u64) -> EchoRun {
    let mut app = flood_app(None, |app| {
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
pub(super) fn workflow_chains(workflows: u64, length: usize) -> WorkflowTiming {
    let mut app = flood_app(None, |_| {});
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
pub(super) fn engine_targets(jobs: u64) -> EngineTargets {
    let mut app = flood_app(None, |_| {});
    let sab = app.world().resource::<Sab>().clone();
    let data = vec![0x5a; 64 << 10];
    let tick = Duration::from_secs_f64(1.0 / crate::pulse::DEFAULT_PULSE_HZ);
    let (start, mut ticks) = (Instant::now(), 0u32);
    let engines = sab.engines();
    // The app ran on this thread and has stopped: no record is in the middle of a write.
    let read = |engine| engines.read(engine).expect("no engine is writing");
    let metric = |record: &crate::sab::engines::EngineRecord, engine, name| {
        f64::from(record.metric(engine, name).expect("a named metric"))
    };
    // The learning engine's error is a running mean over its last ~50 jobs (five ticks here): one
    // busy moment of the other core moves it far. The figure is its mean over every tick once
    // the model has seen `WARM_UP` jobs, so the whole run is measured, not its last 80 ms.
    const WARM_UP: f64 = 100.0;
    let (mut error_sum, mut within_sum, mut sampled) = (0.0, 0.0, 0u32);
    let mut paced_update = |app: &mut bevy::app::App| {
        ticks += 1;
        if let Some(wait) = (start + tick * ticks).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        app.update();
        let learning = read(Engine::Learning);
        if metric(&learning, Engine::Learning, "jobs_learned") >= WARM_UP {
            error_sum += metric(&learning, Engine::Learning, "mean_abs_error_pct");
            within_sum += metric(&learning, Engine::Learning, "within_20pct_share");
            sampled += 1;
        }
    };
    // Results are taken as a caller would (untaken ones keep their job-table slots).
    let mut untaken = std::collections::VecDeque::new();
    for id in 1..=jobs {
        let size = 4096 * (1 + (id as usize * 7) % 16);
        let job = Job {
            deadline_ms: crate::sab::now_ms() + 50,
            ..Job::new(id, "crypto", "hash", Payload::Inline(data[..size].to_vec()))
        };
        let mut queue = app.world_mut().resource_mut::<JobQueue>();
        queue.submit(&sab, &job).expect("crypto is registered");
        untaken.push_back(id);
        if id % 10 == 0 {
            paced_update(&mut app);
            let mut queue = app.world_mut().resource_mut::<JobQueue>();
            untaken.retain(|&id| queue.take_result(id).is_none());
        }
    }
    for _ in 0..1000 {
        if app.world().resource::<JobQueue>().in_flight() == 0 {
            break;
        }
        paced_update(&mut app);
    }
    paced_update(&mut app);
    assert!(sampled > 0, "the learning engine learnt from {WARM_UP} jobs");
    EngineTargets {
        jobs,
        learning_mean_abs_error_pct: error_sum / f64::from(sampled),
        learning_within_20pct: within_sum / f64::from(sampled),
        deadline_hit_rate: metric(&read(Engine::Scheduling), Engine::Scheduling, "deadline_hit_rate"),
    }
}

pub(super) fn signals(samples: usize) -> Signals {
    let sab = Sab::for_tier(Tier::Light);
    let spin_settle = Duration::from_micros(2);
    let park_settle = Duration::from_micros(300);
    Signals {
        epoch_wake_spin: wake(&sab, samples, u32::MAX, spin_settle),
        epoch_wake_parked: wake(&sab, samples, 0, park_settle),
        crossbeam_wake_parked: crossbeam_wake(samples, park_settle),
        epoch_round_trip: epoch_round_trip(&sab, samples),
        crossbeam_round_trip: crossbeam_round_trip(samples),
    }
}

pub(super) fn rings(frames: u64) -> Rings {
    let ring_64b = ring(&Sab::for_tier(Tier::Light), frames);
    let array_queue_64b = array_queue_throughput(frames);
    Rings {
        ring_vs_array_queue: ring_64b.per_second / array_queue_64b.per_second,
        ring_64b,
        array_queue_64b,
    }
}

pub(super) fn bookkeeping(quick: bool) -> Bookkeeping {
    let (registry_lookup_ns, registry_register_us) = registry_costs(quick);
    Bookkeeping {
        registry_lookup_ns,
        registry_register_us,
        arena_alloc_free_ns: arena_cost(quick),
    }
}

/// What the peer of a `wake` or `ring` measurement does: in a thread of this process when the SAB
/// is private, in `inos bench-peer` when it is shared. Both sides stamp times with the wall clock (the
/// one clock two processes share; read through the vDSO like the monotonic one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerRole {
    /// Waits on PEER_PING (spinning `spins` times first), stamps its wake time, announces on PEER_PONG.
    Waiter,
    /// Waits for PEER_PING, then pushes `count` 64-byte frames into the inbox ring.
    Producer,
}

/// A peer's go and ready signals.
const PEER_PING: EpochIndex = EpochIndex::new(g::EPOCH_RESERVED_FIRST + 2).expect("in range");
const PEER_PONG: EpochIndex = EpochIndex::new(g::EPOCH_RESERVED_FIRST + 3).expect("in range");
/// The waiter's wake time (ns since the Unix epoch), low and high words.
const WAKE_LO: EpochIndex = EpochIndex::new(g::EPOCH_RESERVED_FIRST + 4).expect("in range");
const WAKE_HI: EpochIndex = EpochIndex::new(g::EPOCH_RESERVED_FIRST + 5).expect("in range");

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The peer's side of a measurement, in a thread of this process or in `inos bench-peer`.
pub fn peer(sab: &Sab, role: PeerRole, count: u64, spins: u32) -> Result<(), String> {
    let epochs = sab.epochs();
    let mut ping = epochs.load(PEER_PING);
    match role {
        PeerRole::Waiter => {
            for _ in 0..count {
                epochs.signal(PEER_PONG);
                match epochs.wait_with(PEER_PING, ping, TIMEOUT, spins) {
                    Wake::Changed(value) => ping = value,
                    Wake::TimedOut => return Err("the signaller stopped".into()),
                }
                let woke = now_ns();
                epochs.store(WAKE_LO, woke as u32);
                epochs.store(WAKE_HI, (woke >> 32) as u32);
            }
            epochs.signal(PEER_PONG);
        }
        PeerRole::Producer => {
            let producer = sab
                .ring(RingId::Inbox)
                .producer(Owner::Kernel)
                .map_err(|e| e.to_string())?;
            epochs.signal(PEER_PONG);
            if epochs.wait(PEER_PING, ping, TIMEOUT) == Wake::TimedOut {
                return Err("the consumer did not start".into());
            }
            let mut frame = [0u8; 64];
            for i in 0..count {
                frame[..8].copy_from_slice(&i.to_le_bytes());
                loop {
                    match producer.push(&frame) {
                        Ok(()) => break,
                        Err(RingError::Full { .. }) => std::hint::spin_loop(),
                        Err(e) => return Err(format!("ring push failed: {e}")),
                    }
                }
            }
        }
    }
    Ok(())
}

/// Where a peer runs.
enum Peer {
    Thread(std::thread::JoinHandle<Result<(), String>>),
    Process(ChildGuard),
}

/// A child process, killed if it is still running when this drops.
pub(super) struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub(super) fn spawn(command: &mut Command) -> ChildGuard {
        ChildGuard(Some(command.spawn().expect("start the bench's peer process")))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn running(&mut self) -> bool {
        let child = self.0.as_mut().expect("not waited for yet");
        child.try_wait().expect("wait for the peer process").is_none()
    }

    /// Waits for it to end; its output.
    pub(super) fn wait(mut self) -> std::process::Output {
        let child = self.0.take().expect("not waited for yet");
        child.wait_with_output().expect("wait for the peer process")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Peer {
    fn start(sab: &Sab, role: PeerRole, count: u64, spins: u32) -> Peer {
        match sab.path() {
            None => {
                let sab = sab.clone();
                Peer::Thread(std::thread::spawn(move || peer(&sab, role, count, spins)))
            }
            Some(path) => Peer::Process(ChildGuard::spawn(
                Command::new(std::env::current_exe().expect("this binary"))
                    .args(["bench-peer", "--role", role_name(role), "--sab"])
                    .arg(path)
                    .args(["--count", &count.to_string(), "--spins", &spins.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )),
        }
    }

    fn finish(self) {
        match self {
            Peer::Thread(thread) => thread
                .join()
                .expect("the peer thread")
                .expect("the peer thread's measurement"),
            Peer::Process(child) => {
                let out = child.wait();
                assert!(
                    out.status.success(),
                    "the bench's peer process failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

fn role_name(role: PeerRole) -> &'static str {
    match role {
        PeerRole::Waiter => "waiter",
        PeerRole::Producer => "producer",
    }
}

fn wait_pong(sab: &Sab, seen: &mut u32) {
    match sab.epochs().wait_with(PEER_PONG, *seen, TIMEOUT, u32::MAX) {
        Wake::Changed(value) => *seen = value,
        Wake::TimedOut => panic!("the bench's peer did not answer within {TIMEOUT:?}"),
    }
}

/// One-way signal-to-wake latency: the peer announces on PEER_PONG that it is about to wait, this side
/// lets `settle` pass (the peer is then spinning or parked), stamps the time and signals PEER_PING; the
/// peer stamps its wake.
pub(super) fn wake(sab: &Sab, samples: usize, waiter_spins: u32, settle: Duration) -> Latency {
    let epochs = sab.epochs();
    let mut pong = epochs.load(PEER_PONG);
    let peer = Peer::start(sab, PeerRole::Waiter, samples as u64, waiter_spins);
    let mut ns = Vec::with_capacity(samples);
    let mut sent = 0;
    for sample in 0..=samples {
        wait_pong(sab, &mut pong);
        if sample > 0 {
            let woke = u64::from(epochs.load(WAKE_LO)) | u64::from(epochs.load(WAKE_HI)) << 32;
            ns.push(woke.saturating_sub(sent));
        }
        if sample == samples {
            break;
        }
        busy_wait(settle);
        sent = now_ns();
        epochs.signal(PEER_PING);
    }
    peer.finish();
    Latency::from_samples(ns)
}

/// `frames` frames of 64 bytes from the peer to this side through the inbox ring.
pub(super) fn ring(sab: &Sab, frames: u64) -> Throughput {
    let mut consumer = sab
        .ring(RingId::Inbox)
        .consumer()
        .expect("a fresh ring has no consumer");
    let mut pong = sab.epochs().load(PEER_PONG);
    let peer = Peer::start(sab, PeerRole::Producer, frames, 0);
    wait_pong(sab, &mut pong);
    let start = Instant::now();
    sab.epochs().signal(PEER_PING);
    let mut buf = [0u8; 64];
    let mut received = 0;
    while received < frames {
        match consumer.read_into(&mut buf) {
            Ok(Some(_)) => {
                debug_assert_eq!(u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")), received);
                received += 1;
            }
            Ok(None) => {
                assert!(
                    start.elapsed() < TIMEOUT * 6,
                    "the producer stopped at frame {received}"
                );
                std::hint::spin_loop();
            }
            Err(e) => panic!("ring read failed: {e}"),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    peer.finish();
    Throughput {
        items: frames,
        seconds,
        per_second: frames as f64 / seconds,
    }
}
