//! A persistent pool of worker threads for the units' parallel phases.
//!
//! A tick runs several short parallel phases back to back (the grid's staging, the neighbour
//! sums, the birds' steps, the matrices). Starting a scoped thread for each costs tens of
//! microseconds on a virtual machine, mostly in waking the idle core, so the pool keeps its
//! workers: after a job they spin for [`SPIN`] (catching the next phase of the same tick at
//! once), then park until the next job.
//!
//! A job is one closure called with a participant index `0..participants`; index 0 runs on the
//! caller, which returns only when every participant has returned. One job runs at a time: a
//! caller that finds the pool busy (another thread's job, or a job started from inside a job)
//! runs its job alone, inline.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a worker spins for the next job before it parks.
pub const SPIN: Duration = Duration::from_micros(500);

/// The job's closure, its lifetime erased: only participants call it, and only while the caller
/// waits for them.
type JobFn = dyn Fn(usize) + Sync;

struct Shared {
    /// The job counter (high bits) and the job's participant count (low 8 bits), published with
    /// Release after `job` is written.
    state: AtomicU64,
    /// Written by the caller before it publishes `state`; read by participants only, and not
    /// written again before they have all counted themselves out of `pending`.
    job: UnsafeCell<Option<*const JobFn>>,
    /// Participants (other than the caller) still running the job.
    pending: AtomicUsize,
    /// A participant's job panicked (the caller re-raises it).
    panicked: AtomicBool,
    /// Workers that are parked, under the lock the caller takes to wake them.
    sleepers: Mutex<usize>,
    wake: Condvar,
    /// Set by the caller for the whole job (a flag, not a lock: a panicking job must not leave
    /// the pool poisoned).
    busy: AtomicBool,
    stop: AtomicBool,
}

// SAFETY: `job` is written only by the caller holding `busy` while no participant can read it
// (before `state` is published, and after `pending` has reached zero); participants read it only
// between observing the published `state` (Acquire) and decrementing `pending` (Release).
unsafe impl Sync for Shared {}
// SAFETY: the raw pointer in `job` is only dereferenced under the protocol above.
unsafe impl Send for Shared {}

const PARTICIPANT_BITS: u32 = 8;
/// The most participants one job can have (the caller and 255 workers).
pub const MAX_PARTICIPANTS: usize = (1 << PARTICIPANT_BITS) - 1;

/// The pool: `workers` threads beside the callers.
pub struct WorkerPool {
    shared: Arc<Shared>,
    workers: usize,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl WorkerPool {
    /// A pool of `workers` threads (none on the web, which has no threads here).
    pub fn new(workers: usize) -> Self {
        let workers = if cfg!(target_arch = "wasm32") {
            0
        } else {
            workers.min(MAX_PARTICIPANTS - 1)
        };
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: Mutex::new(0),
            wake: Condvar::new(),
            busy: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let mut handles = Vec::with_capacity(workers);
        for index in 1..=workers {
            let shared = shared.clone();
            match std::thread::Builder::new()
                .name(format!("inos-worker-{index}"))
                .spawn(move || work(&shared, index))
            {
                Ok(handle) => handles.push(handle),
                // Fewer workers: jobs just have fewer participants.
                Err(_) => break,
            }
        }
        Self {
            workers: handles.len(),
            shared,
            handles,
        }
    }

    /// The process-wide pool, one worker per core besides the caller's.
    pub fn global() -> &'static Self {
        static POOL: OnceLock<WorkerPool> = OnceLock::new();
        POOL.get_or_init(|| Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()) - 1))
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Calls `f(k)` once for each participant k in `0..n`, where n is `participants` capped at the
    /// workers plus the caller (and 1 when the pool is busy), k = 0 on this thread; returns the n
    /// once all calls have returned. A panic in any call is raised here, after all have returned.
    pub fn broadcast(&self, participants: usize, f: &(dyn Fn(usize) + Sync)) -> usize {
        let n = participants.clamp(1, self.workers + 1);
        let shared = &*self.shared;
        if n == 1 || shared.busy.swap(true, Ordering::Acquire) {
            f(0);
            return 1;
        }
        /// Frees the pool when the job ends, also by a panic.
        struct Busy<'a>(&'a AtomicBool);
        impl Drop for Busy<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _busy = Busy(&shared.busy);
        // SAFETY: the lifetime is erased only until every participant has returned (below).
        let job: *const JobFn = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static JobFn>(f) };
        // SAFETY: no participant reads `job` now (the previous job's all counted out).
        unsafe { *shared.job.get() = Some(job) };
        shared.pending.store(n - 1, Ordering::Relaxed);
        let state = shared.state.load(Ordering::Relaxed);
        let next = ((state >> PARTICIPANT_BITS) + 1) << PARTICIPANT_BITS | n as u64;
        shared.state.store(next, Ordering::Release);
        {
            let sleepers = shared.sleepers.lock().unwrap_or_else(|e| e.into_inner());
            if *sleepers > 0 {
                shared.wake.notify_all();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        let mut spins = 0u32;
        while shared.pending.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: every participant has counted itself out; none reads `job` again.
        unsafe { *shared.job.get() = None };
        let theirs = shared.panicked.swap(false, Ordering::Relaxed);
        match mine {
            Err(panic) => resume_unwind(panic),
            Ok(()) if theirs => panic!("a worker's part of a parallel job panicked"),
            Ok(()) => n,
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            let _sleepers = self.shared.sleepers.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// A worker: waits for each new job, runs its part if it is a participant, counts itself out.
fn work(shared: &Shared, index: usize) {
    // The state before the first job (a job published before this thread started still counts).
    let mut seen = 0;
    loop {
        let state = wait_for_job(shared, seen);
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        seen = state;
        let participants = (state & ((1 << PARTICIPANT_BITS) - 1)) as usize;
        if index >= participants {
            continue;
        }
        // SAFETY: published before `state` (Acquire above) and kept until this participant
        // counts itself out of `pending`.
        let job = unsafe { (*shared.job.get()).expect("a published job") };
        // SAFETY: the caller waits for this participant before its closure goes away.
        let result: Result<(), Box<dyn Any + Send>> = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(index) }));
        if result.is_err() {
            shared.panicked.store(true, Ordering::Relaxed);
        }
        shared.pending.fetch_sub(1, Ordering::Release);
    }
}

/// The first state other than `seen` (or any state once stopping): spinning for [`SPIN`], then
/// parked.
fn wait_for_job(shared: &Shared, seen: u64) -> u64 {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let state = shared.state.load(Ordering::Acquire);
        if state != seen || shared.stop.load(Ordering::Acquire) {
            return state;
        }
        spins += 1;
        if !spins.is_multiple_of(64) {
            std::hint::spin_loop();
        } else if start.elapsed() >= SPIN {
            break;
        }
    }
    let mut sleepers = shared.sleepers.lock().unwrap_or_else(|e| e.into_inner());
    *sleepers += 1;
    loop {
        let state = shared.state.load(Ordering::Acquire);
        if state != seen || shared.stop.load(Ordering::Acquire) {
            *sleepers -= 1;
            return state;
        }
        sleepers = shared.wake.wait(sleepers).unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_participant_runs_once_per_job_and_the_caller_waits_for_all() {
        let pool = WorkerPool::new(3);
        for round in 0..200 {
            let participants = 1 + round % 5;
            let hits: Vec<AtomicUsize> = (0..8).map(|_| AtomicUsize::new(0)).collect();
            let n = pool.broadcast(participants, &|k| {
                hits[k].fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(n, participants.min(pool.workers() + 1));
            for (k, hit) in hits.iter().enumerate() {
                assert_eq!(
                    hit.load(Ordering::Relaxed),
                    usize::from(k < n),
                    "round {round}, participant {k}"
                );
            }
        }
    }

    #[test]
    fn parked_workers_wake_for_the_next_job() {
        let pool = WorkerPool::new(1);
        std::thread::sleep(SPIN * 4);
        let ran = AtomicUsize::new(0);
        assert_eq!(
            pool.broadcast(2, &|_| {
                ran.fetch_add(1, Ordering::Relaxed);
            }),
            2
        );
        assert_eq!(ran.into_inner(), 2);
    }

    #[test]
    fn a_job_started_inside_a_job_or_beside_one_runs_inline() {
        let pool = WorkerPool::new(1);
        let inner = AtomicUsize::new(0);
        pool.broadcast(2, &|_| {
            assert_eq!(
                pool.broadcast(2, &|_| {
                    inner.fetch_add(1, Ordering::Relaxed);
                }),
                1
            );
        });
        assert_eq!(inner.into_inner(), 2);
        // Two callers at once: each job still runs fully.
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let n = pool.broadcast(2, &|_| {
                            total.fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(n == 1 || n == 2);
                    }
                });
            }
        });
        assert!(total.into_inner() >= 100);
    }

    #[test]
    fn a_panic_in_a_worker_reaches_the_caller_and_the_pool_goes_on() {
        let pool = WorkerPool::new(1);
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.broadcast(2, &|k| assert_ne!(k, 1, "worker part fails"));
        }));
        assert!(result.is_err());
        let ran = AtomicUsize::new(0);
        pool.broadcast(2, &|_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.into_inner(), 2);
    }
}
