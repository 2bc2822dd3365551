//! The job host: the units' side of the job pipeline. It takes every job frame off the inbox ring
//! when the inbox epoch moves, runs it on the unit registered for its library, and answers on the
//! outbox-kernel ring, signalling the outbox epoch.
//!
//! Units that take jobs register an entry point with `RegisterUnitExt::register_job_unit`; the host
//! calls it, so units still never call each other. When the outbox is full, the result waits in
//! the host and the host stops reading the inbox until it has gone out, so the backlog stays in
//! the kernel's priority queue and no result is lost. A result too large for the outbox is
//! replaced by a `Failed` answer that says so. A frame that does not decode cannot be answered
//! (it has no job id): it is counted and logged; the kernel only sends frames it has decoded. A job
//! that panics in its unit is answered `Crashed`, and the unit's supervisor restarts the unit. The
//! host measures each job's execution time; a job's cost is at least that time in microseconds,
//! and a job that costs more than its non-zero `budget` is answered `BudgetExceeded`. A mailbox
//! unit (`JobEntry::Mailbox`) runs its jobs in its own systems and charges them with the same
//! `charge`; a panic there is not caught.
//!
//! The host runs in the fixed tick by default ([`JobHostMode::Tick`]: a job dispatched in a tick
//! is answered in it). With [`JobHostMode::Thread`] (native builds, `--job-host-thread`) it runs
//! on a thread of its own that waits on the inbox epoch, so the kernel's tick and the units' work
//! overlap on two cores; mailbox jobs still reach their units' systems in the tick (over a
//! channel), and the thread is stopped and joined when the app is dropped. Either way the host
//! counts what it does before each result goes out, and `JobHostStats` is copied from those
//! counts once per tick, after the kernel resolves.
//!
//! Syscall replies (`SyscallReplies`) are keyed by call id alone: a unit makes its call ids unique,
//! for example with its module hash in the high half.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bevy::platform::collections::HashMap;
use crossbeam::channel::{Receiver, Sender};

use bevy::platform::cell::SyncCell;
use bevy::platform::time::Instant;
use bevy::prelude::*;

use crate::protocol::{Job, JobOutcome, JobStatus, Syscall, SyscallBody, SyscallResponse};
use crate::pulse::PulseSystems;
use crate::sab::ring::{RingConsumer, RingProducer};
use crate::sab::{EpochIndex, Owner, RingError, RingId, Sab};

/// A unit's job entry point, run by the host.
pub type JobExecutor = fn(&Sab, &Job) -> JobOutcome;

/// How a unit takes its jobs.
#[derive(Clone, Copy, Debug)]
pub enum JobEntry {
    /// The host runs the entry point at once.
    Immediate(JobExecutor),
    /// The host leaves the job in the unit's mailbox (`JobMailboxes`); the unit's own system, in
    /// `JobHostSystems::Mailbox`, runs it with whatever ECS access it needs and puts the outcome
    /// in `MailboxResults`, which the host sends on.
    Mailbox,
}

/// The entry points of the units that take jobs, by library (registry id).
#[derive(Resource, Default)]
pub struct JobExecutors(pub HashMap<String, JobEntry>);

/// Jobs waiting for units that run them in their own systems, by library.
#[derive(Resource, Default, Debug)]
pub struct JobMailboxes(pub HashMap<String, Vec<Job>>);

impl JobMailboxes {
    /// Takes the jobs waiting for `library`.
    pub fn take(&mut self, library: &str) -> Vec<Job> {
        self.0.get_mut(library).map(std::mem::take).unwrap_or_default()
    }
}

/// The units' syscall responses, read from the outbox-host ring, by call id.
#[derive(Resource)]
pub struct SyscallReplies {
    consumer: SyncCell<RingConsumer>,
    frame: Vec<u8>,
    replies: HashMap<u64, SyscallResponse>,
    /// Frames that were not responses.
    pub malformed: u64,
}

impl SyscallReplies {
    /// The response to call `call_id`, once, when it has arrived.
    pub fn take(&mut self, call_id: u64) -> Option<SyscallResponse> {
        self.replies.remove(&call_id)
    }
}

/// Sends a syscall from registered module `module` on the outbox-kernel ring (and signals the
/// kernel). The response arrives in `SyscallReplies` under `call_id`.
pub fn send_syscall(sab: &Sab, module: &str, call_id: u64, body: SyscallBody) -> Result<(), RingError> {
    let frame = Syscall {
        flags: 0,
        source_module: crc32c::crc32c(module.as_bytes()),
        call_id,
        body,
    }
    .encode();
    let mut producer = sab.ring(RingId::OutboxKernel).producer(Owner::Module)?;
    producer.push(&frame)?;
    producer.publish()?;
    Ok(())
}

/// Outcomes of mailbox jobs, for the host to send.
#[derive(Resource, Default, Debug)]
pub struct MailboxResults(pub Vec<JobOutcome>);

/// What the host has done (copied from its counters once per tick, after the kernel resolves).
#[derive(Resource, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobHostStats {
    pub executed: u64,
    /// Frames that did not decode (and so could not be answered).
    pub malformed: u64,
    /// Jobs for a library no unit registered (answered `Rejected`).
    pub unknown_library: u64,
    /// Jobs whose unit panicked (answered `Crashed`; the unit's supervisor restarts it).
    pub crashed: u64,
}

/// Where the job host runs. Insert it before the app's first update (it is read at startup).
#[derive(Resource, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobHostMode {
    /// In `FixedUpdate`, right after the kernel dispatches: a job sent in a tick is answered in
    /// that tick, deterministically. The tests and the browser build use it.
    #[default]
    Tick,
    /// On a thread of its own that waits on the inbox epoch (spinning briefly, then parked), as
    /// the original ran its units in workers: the kernel's tick and the units' work overlap on
    /// two cores, and each result is resolved by the first tick after it arrives. Native only.
    /// The thread takes the executors registered by startup: a unit registered later is answered
    /// `Rejected` as an unknown library.
    Thread,
}

/// The host: run in the tick, or the handle of its thread; and the outbox end the mailbox units'
/// results go out on (the kernel-bound ring takes many producers).
#[derive(Resource)]
struct JobHost {
    /// Taken by the thread in `Thread` mode. Ring ends cache positions in cells (`Send`, not
    /// `Sync`).
    worker: SyncCell<Option<Worker>>,
    outbox: SyncCell<RingProducer>,
    outbox_max: usize,
    counters: Arc<HostCounters>,
    thread: Option<HostThread>,
}

/// The host's counters, counted before each result goes out (so a kernel that has a result sees
/// the counts that include it).
#[derive(Default)]
struct HostCounters {
    executed: AtomicU64,
    malformed: AtomicU64,
    unknown_library: AtomicU64,
    crashed: AtomicU64,
}

impl HostCounters {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> JobHostStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        JobHostStats {
            executed: load(&self.executed),
            malformed: load(&self.malformed),
            unknown_library: load(&self.unknown_library),
            crashed: load(&self.crashed),
        }
    }
}

/// The host proper: its ring ends, the buffers it reuses, whether `result` holds a frame still
/// waiting for room in the outbox, and whether the inbox may still hold frames (the host stops
/// reading it while a result waits, so the kernel's priority queue, not the host, holds the
/// backlog).
struct Worker {
    inbox: RingConsumer,
    outbox: RingProducer,
    outbox_max: usize,
    frame: Vec<u8>,
    job: Job,
    result: Vec<u8>,
    waiting: bool,
    inbox_unread: bool,
    counters: Arc<HostCounters>,
    /// Libraries whose last job ran shorter than `SHORT_JOB`: their jobs' CPU time is not read
    /// from the thread's clock (see [`JobClock`]).
    short: HashMap<String, bool>,
}

impl Worker {
    fn has_work(&self) -> bool {
        self.waiting || self.inbox_unread
    }

    /// Runs the inbox's jobs until it is empty or the outbox is full, then publishes the results
    /// that went out. Jobs for mailbox units go to `to_mailbox`.
    fn run(&mut self, sab: &Sab, executors: &HashMap<String, JobEntry>, mut to_mailbox: impl FnMut(Job)) {
        let counters = &*self.counters;
        let mut pushed = 0;
        loop {
            if !self.waiting {
                let n = match self.inbox.read_into(&mut self.frame) {
                    Ok(Some(n)) => n,
                    Ok(None) => {
                        self.inbox_unread = false;
                        break;
                    }
                    Err(e) => {
                        error!("the job host stopped reading the inbox: {e}");
                        self.inbox_unread = false;
                        break;
                    }
                };
                let job = &mut self.job;
                if let Err(e) = Job::decode_into(&self.frame[..n], job) {
                    HostCounters::count(&counters.malformed);
                    warn!("a {n}-byte inbox frame is not a job: {e}");
                    continue;
                }
                let outcome = match executors.get(&job.library) {
                    Some(JobEntry::Mailbox) => {
                        HostCounters::count(&counters.executed);
                        to_mailbox(job.clone());
                        continue;
                    }
                    Some(&JobEntry::Immediate(execute)) => {
                        HostCounters::count(&counters.executed);
                        let short = self.short.get(&job.library).copied().unwrap_or(false);
                        let clock = JobClock::start(!short);
                        let outcome = charge(run_guarded(execute, sab, job), job, &clock);
                        if outcome.status == JobStatus::Crashed {
                            HostCounters::count(&counters.crashed);
                        }
                        let was_short = outcome.execution_time_ns < SHORT_JOB.as_nanos() as u64;
                        if was_short != short {
                            self.short.insert(job.library.clone(), was_short);
                        }
                        outcome
                    }
                    None => {
                        HostCounters::count(&counters.unknown_library);
                        JobOutcome::failed(
                            job.id,
                            JobStatus::Rejected,
                            format!("no unit takes jobs for library {:?}", job.library),
                        )
                    }
                };
                result_frame(&outcome, self.outbox_max, &mut self.result);
            }
            if let Err(e) = self.outbox.push(&self.result) {
                // Full (or broken): the result waits, and so does the rest of the inbox.
                if !matches!(e, RingError::Full { .. }) {
                    error!("the outbox-kernel ring refused a result: {e}");
                }
                self.waiting = true;
                self.inbox_unread = true;
                break;
            }
            self.waiting = false;
            pushed += 1;
        }
        if pushed > 0
            && let Err(e) = self.outbox.publish()
        {
            error!("the outbox-kernel guard refused the job host: {e}");
        }
    }
}

/// The host's thread: stopped (woken through the inbox epoch) and joined when the app drops it.
struct HostThread {
    sab: Sab,
    stop: Arc<AtomicBool>,
    mailbox: SyncCell<Receiver<Job>>,
    handle: Option<JoinHandle<()>>,
    /// The thread ended without being stopped (reported once).
    died: bool,
}

impl Drop for HostThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.sab.epochs().signal(EpochIndex::INBOX_DIRTY);
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            error!("the job host's thread panicked");
        }
    }
}

/// How long the host's thread sleeps when the outbox is full (the kernel drains it every tick).
const OUTBOX_FULL_BACKOFF: Duration = Duration::from_micros(100);

/// The host's thread: runs the inbox's jobs whenever the inbox epoch moves, until stopped. The
/// host itself arrives over `handover` once the thread is known to have started.
fn host_thread(
    handover: Receiver<Worker>,
    sab: Sab,
    executors: HashMap<String, JobEntry>,
    stop: Arc<AtomicBool>,
    mailbox: Sender<Job>,
) {
    let Ok(mut worker) = handover.recv() else {
        return;
    };
    while !stop.load(Ordering::Acquire) {
        // Read before the inbox: a frame published after this read moves the epoch past it.
        let seen = sab.epochs().load(EpochIndex::INBOX_DIRTY);
        worker.run(&sab, &executors, |job| {
            // The receiver lives as long as this thread's handle.
            let _ = mailbox.send(job);
        });
        if worker.waiting {
            std::thread::sleep(OUTBOX_FULL_BACKOFF);
        } else {
            sab.epochs()
                .wait(EpochIndex::INBOX_DIRTY, seen, Duration::from_millis(100));
        }
    }
}

/// Starts the host's thread in `Thread` mode (native builds; the browser build stays in the tick).
fn start_host_thread(sab: Res<Sab>, executors: Res<JobExecutors>, mut host: ResMut<JobHost>) {
    if cfg!(target_arch = "wasm32") {
        warn!("the browser build runs the job host in the tick: it has no threads");
        return;
    }
    if host.worker.get().is_none() {
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, receiver) = crossbeam::channel::unbounded();
    let (handover, worker_in) = crossbeam::channel::bounded(1);
    let spawned = std::thread::Builder::new().name("inos-job-host".into()).spawn({
        let (sab, executors, stop) = (sab.clone(), executors.0.clone(), stop.clone());
        move || host_thread(worker_in, sab, executors, stop, sender)
    });
    let handle = match spawned {
        Ok(handle) => handle,
        Err(e) => {
            error!("the job host's thread could not start ({e}); the host stays in the tick");
            return;
        }
    };
    let worker = host.worker.get().take().expect("checked above");
    handover.send(worker).expect("the thread waits for its host");
    host.thread = Some(HostThread {
        sab: sab.clone(),
        stop,
        mailbox: SyncCell::new(receiver),
        handle: Some(handle),
        died: false,
    });
}

/// In `Thread` mode: the jobs the thread left for mailbox units.
fn collect_from_host_thread(mut host: ResMut<JobHost>, mut mailboxes: ResMut<JobMailboxes>) {
    let Some(thread) = host.thread.as_mut() else {
        return;
    };
    for job in thread.mailbox.get().try_iter() {
        mailboxes.0.entry(job.library.clone()).or_default().push(job);
    }
    // The units' panics are caught; anything else that ends the thread would stall every job.
    if !thread.died && thread.handle.as_ref().is_some_and(JoinHandle::is_finished) {
        thread.died = true;
        error!("the job host's thread has stopped: no more jobs will be answered");
    }
}

/// The host's counters into `JobHostStats` (after the kernel resolves, so the stats count every
/// job whose result it has).
fn copy_host_stats(host: Res<JobHost>, mut stats: ResMut<JobHostStats>) {
    stats.set_if_neq(host.counters.snapshot());
}

pub struct JobHostPlugin;

/// The host's stages in `FixedUpdate`, after the pulse: reading the inbox and running immediate
/// jobs, the units' mailbox systems, sending the mailbox jobs' outcomes, and copying the host's
/// counters into `JobHostStats` (the app orders it after the kernel resolves).
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobHostSystems {
    Run,
    Mailbox,
    Send,
    Stats,
}

impl Plugin for JobHostPlugin {
    fn build(&self, app: &mut App) {
        let sab = app.world().resource::<Sab>().clone();
        let inbox = sab.ring(RingId::Inbox);
        let outbox = sab.ring(RingId::OutboxKernel);
        let counters = Arc::new(HostCounters::default());
        let worker = Worker {
            frame: vec![0; inbox.max_payload()],
            job: Job::new(0, "", "", crate::protocol::Payload::Inline(Vec::new())),
            result: Vec::new(),
            inbox: inbox.consumer().expect("the job host is the inbox's only consumer"),
            outbox_max: outbox.max_payload(),
            outbox: outbox
                .producer(Owner::Module)
                .expect("units may write the outbox-kernel ring"),
            waiting: false,
            inbox_unread: false,
            counters: counters.clone(),
            short: HashMap::new(),
        };
        app.insert_resource(JobHost {
            worker: SyncCell::new(Some(worker)),
            outbox: SyncCell::new(
                outbox
                    .producer(Owner::Module)
                    .expect("units may write the outbox-kernel ring"),
            ),
            outbox_max: outbox.max_payload(),
            counters,
            thread: None,
        })
        .init_resource::<JobHostMode>()
        .init_resource::<JobExecutors>()
        .init_resource::<JobHostStats>()
        .init_resource::<JobMailboxes>()
        .init_resource::<MailboxResults>()
        .insert_resource(SyscallReplies {
            frame: vec![0; sab.ring(RingId::OutboxHost).max_payload()],
            consumer: SyncCell::new(
                sab.ring(RingId::OutboxHost)
                    .consumer()
                    .expect("the job host is the outbox-host's only consumer"),
            ),
            replies: HashMap::new(),
            malformed: 0,
        })
        .configure_sets(
            FixedUpdate,
            (
                JobHostSystems::Run,
                JobHostSystems::Mailbox,
                JobHostSystems::Send,
                JobHostSystems::Stats,
            )
                .chain()
                .after(PulseSystems),
        )
        .add_systems(Startup, start_host_thread.run_if(resource_equals(JobHostMode::Thread)))
        .add_systems(
            FixedUpdate,
            (
                (
                    run_jobs,
                    collect_from_host_thread.run_if(resource_equals(JobHostMode::Thread)),
                )
                    .chain()
                    .in_set(JobHostSystems::Run),
                copy_host_stats
                    .in_set(JobHostSystems::Stats)
                    .run_if(crate::sab::epoch_changed(EpochIndex::OUTBOX_KERNEL_DIRTY)),
                send_mailbox_results
                    .in_set(JobHostSystems::Send)
                    .run_if(|results: Res<MailboxResults>| !results.0.is_empty()),
                read_syscall_replies
                    .in_set(JobHostSystems::Run)
                    .run_if(crate::sab::epoch_changed(EpochIndex::OUTBOX_HOST_DIRTY)),
            ),
        );
    }
}

/// The result frame for `outcome` into `out`, or, if it cannot fit the outbox, a small failure
/// for the same job that says so (the job is answered either way).
fn result_frame(outcome: &JobOutcome, outbox_max: usize, out: &mut Vec<u8>) {
    outcome.encode_into(out);
    if out.len() > outbox_max {
        let message = format!(
            "the result is {} bytes; the outbox takes at most {outbox_max}",
            out.len()
        );
        JobOutcome::failed(outcome.id, JobStatus::Failed, message).encode_into(out);
    }
}

/// Jobs shorter than this are not timed on the thread's CPU clock when their library's last job
/// was as short: reading that clock is a system call (about 0.5 µs here, two per job), which for
/// an echo job is most of the job's cost, while a preemption inside a few microseconds is rare
/// (a time slice is milliseconds) and the learning engine's Huber weights damp the one that
/// happens. Their CPU time is their wall time.
pub const SHORT_JOB: Duration = Duration::from_micros(20);

/// The host's two clocks on a job: wall time, and the CPU time of the thread that runs it (what
/// the job consumed, which a preemption does not inflate; the learning engine models it). Where
/// the platform has no thread clock (the browser), or the job is known to be short
/// ([`SHORT_JOB`]), the CPU time is the wall time.
pub(crate) struct JobClock {
    wall: Instant,
    #[cfg(not(target_arch = "wasm32"))]
    cpu: Option<cpu_time::ThreadTime>,
}

impl JobClock {
    /// Starts the clocks; `cpu`: also the thread's CPU clock.
    pub(crate) fn start(cpu: bool) -> Self {
        #[cfg(target_arch = "wasm32")]
        let _ = cpu;
        Self {
            wall: Instant::now(),
            #[cfg(not(target_arch = "wasm32"))]
            cpu: cpu.then(|| cpu_time::ThreadTime::try_now().ok()).flatten(),
        }
    }

    /// (wall, CPU) nanoseconds since `start`, on the thread that started it.
    fn elapsed_ns(&self) -> (u64, u64) {
        let wall = self.wall.elapsed().as_nanos() as u64;
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(cpu) = self.cpu.as_ref().and_then(|c| c.try_elapsed().ok()) {
            return (wall, cpu.as_nanos() as u64);
        }
        (wall, wall)
    }
}

/// Stamps the host's measurements of a job (`clock`, started just before it ran) on its outcome
/// and charges it: the cost is at least the execution time in microseconds (a unit may report
/// more), and a job whose cost exceeds its non-zero `budget` is answered `BudgetExceeded`, without
/// its output.
pub(crate) fn charge(mut outcome: JobOutcome, job: &Job, clock: &JobClock) -> JobOutcome {
    let (execution_ns, cpu_ns) = clock.elapsed_ns();
    outcome.execution_time_ns = execution_ns;
    outcome.cpu_ns = cpu_ns;
    outcome.cost = outcome.cost.max(execution_ns / 1000);
    if job.budget > 0 && outcome.cost > job.budget && outcome.status == JobStatus::Success {
        let mut over = JobOutcome::failed(
            job.id,
            JobStatus::BudgetExceeded,
            format!("the job cost {} against its budget of {}", outcome.cost, job.budget),
        );
        (over.cost, over.execution_time_ns, over.cpu_ns, over.input_bytes) =
            (outcome.cost, execution_ns, cpu_ns, outcome.input_bytes);
        return over;
    }
    outcome
}

/// Runs a job, turning a panic in the unit into a `Crashed` answer, so one bad job cannot take
/// the host (and every other unit's jobs) down with it.
fn run_guarded(execute: JobExecutor, sab: &Sab, job: &Job) -> JobOutcome {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(sab, job))).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        JobOutcome::failed(
            job.id,
            JobStatus::Crashed,
            format!("unit {} panicked: {message}", job.library),
        )
    })
}

/// In `Tick` mode: runs the inbox's jobs when the inbox epoch has moved or work was left over.
fn run_jobs(
    sab: Res<Sab>,
    executors: Res<JobExecutors>,
    mut host: ResMut<JobHost>,
    mut mailboxes: ResMut<JobMailboxes>,
    mut seen: Local<u32>,
) {
    let Some(worker) = host.worker.get() else {
        return;
    };
    let epoch = sab.epochs().load(EpochIndex::INBOX_DIRTY);
    if epoch == *seen && !worker.has_work() {
        return;
    }
    *seen = epoch;
    let _span = info_span!("job_host").entered();
    worker.run(&sab, &executors.0, |job| {
        mailboxes.0.entry(job.library.clone()).or_default().push(job);
    });
}

/// Sends the mailbox jobs' outcomes on the outbox-kernel ring; what does not fit waits for the
/// next tick.
fn send_mailbox_results(mut host: ResMut<JobHost>, mut results: ResMut<MailboxResults>) {
    let outbox_max = host.outbox_max;
    let frames = results.0.iter().map(|outcome| {
        let mut frame = Vec::new();
        result_frame(outcome, outbox_max, &mut frame);
        frame
    });
    let sent = host.outbox.get().push_all(frames);
    results.0.drain(..sent);
}

fn read_syscall_replies(mut replies: ResMut<SyscallReplies>) {
    let replies = &mut *replies;
    replies
        .consumer
        .get()
        .drain(&mut replies.frame, |frame| match SyscallResponse::decode(frame) {
            Ok(response) => {
                replies.replies.insert(response.call_id, response);
            }
            Err(e) => {
                replies.malformed += 1;
                warn!("an outbox-host frame is not a syscall response: {e}");
            }
        });
}
