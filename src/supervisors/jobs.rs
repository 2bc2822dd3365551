//! The kernel's side of the job pipeline: submit → queue → inbox ring → (units) → outbox-kernel
//! ring → result → job-history record.
//!
//! - `JobQueue::submit` checks a job before it is queued (its library is a registered module, its
//!   frame fits the inbox, its id is not already in flight) and refuses it with a typed error.
//! - On every pulse the queue sends jobs in order (priority, then earliest deadline, then
//!   submission order) as frames on the inbox ring until the ring is full, and signals the inbox
//!   epoch; the rest wait for the next pulse.
//! - When the outbox-kernel epoch moves, results are read, matched to their job, kept until
//!   taken (`take_result`), and recorded in the SAB's job history.
//! - A job still unanswered after its timeout is resolved `Timeout`; a late result for it is
//!   counted and dropped.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

use bevy::prelude::*;

use crate::protocol::{Job, JobOutcome, JobStatus, Payload};
use crate::pulse::PulseSystems;
use crate::sab::ring::{RingConsumer, RingProducer};
use crate::sab::{EpochIndex, JobRecord, Owner, RingError, RingId, Sab, epoch_changed, now_ms};

/// Why a job was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("no module {0:?} is registered")]
    UnknownLibrary(String),
    #[error("job {0} is already in flight")]
    DuplicateId(u64),
    #[error("the job's frame is {len} bytes; the inbox takes at most {max}")]
    TooLarge { len: usize, max: usize },
}

/// Counters of the pipeline.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelineStats {
    pub submitted: u64,
    pub dispatched: u64,
    pub resolved: u64,
    pub timed_out: u64,
    /// Results for no job in flight (late after a timeout, or foreign).
    pub unmatched: u64,
    /// Outbox frames that did not decode.
    pub malformed: u64,
}

struct Queued {
    key: (u8, Reverse<u64>, Reverse<u64>),
    id: u64,
    frame: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.key.cmp(&other.key)
    }
}

/// A job between submission and result.
struct InFlight {
    library: String,
    method: String,
    priority: u8,
    submitted_ms: u64,
    /// When it times out (ms since the Unix epoch); `None` = never.
    timeout_at: Option<u64>,
    deadline_ms: u64,
}

struct KernelEnds {
    inbox: RingProducer,
    outbox: RingConsumer,
    frame: Vec<u8>,
}

/// The job queue, the jobs in flight and the results not yet taken.
#[derive(Resource)]
pub struct JobQueue {
    queue: BinaryHeap<Queued>,
    in_flight: HashMap<u64, InFlight>,
    results: HashMap<u64, JobOutcome>,
    sequence: u64,
    max_frame: usize,
    pub stats: PipelineStats,
    /// Ring ends cache positions in cells (`Send`, not `Sync`); only reached through `get_mut`.
    ends: Mutex<KernelEnds>,
}

impl JobQueue {
    /// Checks and queues a job; it is sent on the next pulse.
    pub fn submit(&mut self, sab: &Sab, job: &Job) -> Result<(), SubmitError> {
        if sab.registry().lookup(&job.library).is_none() {
            return Err(SubmitError::UnknownLibrary(job.library.clone()));
        }
        if self.in_flight.contains_key(&job.id) || self.results.contains_key(&job.id) {
            return Err(SubmitError::DuplicateId(job.id));
        }
        let frame = job.encode();
        if frame.len() > self.max_frame {
            return Err(SubmitError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        let now = now_ms();
        self.sequence += 1;
        let deadline = if job.deadline_ms == 0 {
            u64::MAX
        } else {
            job.deadline_ms
        };
        self.queue.push(Queued {
            key: (job.priority, Reverse(deadline), Reverse(self.sequence)),
            id: job.id,
            frame,
        });
        self.in_flight.insert(
            job.id,
            InFlight {
                library: job.library.clone(),
                method: job.method.clone(),
                priority: job.priority,
                submitted_ms: now,
                timeout_at: (job.timeout_ms > 0).then(|| now.saturating_add(job.timeout_ms)),
                deadline_ms: job.deadline_ms,
            },
        );
        self.stats.submitted += 1;
        Ok(())
    }

    /// The result of a job, once, when it has one.
    pub fn take_result(&mut self, id: u64) -> Option<JobOutcome> {
        self.results.remove(&id)
    }

    /// Jobs submitted and not yet resolved.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Jobs waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn resolve(&mut self, outcome: JobOutcome, history: &mut Vec<JobRecord>) {
        let Some(job) = self.in_flight.remove(&outcome.id) else {
            self.stats.unmatched += 1;
            return;
        };
        let now = now_ms();
        history.push(JobRecord {
            job_id: outcome.id,
            unit_hash: crc32c::crc32c(job.library.as_bytes()),
            method_hash: crc32c::crc32c(job.method.as_bytes()),
            submitted_ms: job.submitted_ms,
            duration_us: (now.saturating_sub(job.submitted_ms).saturating_mul(1000)).min(u64::from(u32::MAX)) as u32,
            input_bytes: outcome.input_bytes.min(u64::from(u32::MAX)) as u32,
            output_bytes: outcome.output_bytes.min(u64::from(u32::MAX)) as u32,
            status: match outcome.status {
                JobStatus::Success => 0,
                JobStatus::Timeout => 2,
                JobStatus::Rejected => 3,
                _ => 1,
            },
            priority: u32::from(job.priority),
            deadline_ms: job
                .deadline_ms
                .saturating_sub(job.submitted_ms)
                .min(u64::from(u32::MAX)) as u32,
            reserved: [0; 4],
        });
        self.stats.resolved += 1;
        self.results.insert(outcome.id, outcome);
    }
}

pub struct JobPipelinePlugin;

/// The kernel's pipeline stages in `FixedUpdate`: dispatch after the pulse, results after the
/// units have run.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobPipelineSystems {
    Dispatch,
    Resolve,
}

impl Plugin for JobPipelinePlugin {
    fn build(&self, app: &mut App) {
        let sab = app.world().resource::<Sab>().clone();
        let outbox = sab.ring(RingId::OutboxKernel);
        let inbox = sab.ring(RingId::Inbox);
        let ends = KernelEnds {
            frame: vec![0; outbox.max_payload()],
            outbox: outbox
                .consumer()
                .expect("the kernel is the outbox-kernel's only consumer"),
            inbox: inbox.producer(Owner::Kernel).expect("the kernel writes the inbox"),
        };
        app.insert_resource(JobQueue {
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            results: HashMap::new(),
            sequence: 0,
            max_frame: inbox.max_payload(),
            stats: PipelineStats::default(),
            ends: Mutex::new(ends),
        })
        .configure_sets(
            FixedUpdate,
            (JobPipelineSystems::Dispatch, JobPipelineSystems::Resolve)
                .chain()
                .after(PulseSystems),
        )
        .add_systems(
            FixedUpdate,
            (
                dispatch
                    .in_set(JobPipelineSystems::Dispatch)
                    .run_if(epoch_changed(EpochIndex::SYSTEM_PULSE)),
                (resolve.run_if(epoch_changed(EpochIndex::OUTBOX_KERNEL_DIRTY)), expire)
                    .chain()
                    .in_set(JobPipelineSystems::Resolve),
            ),
        );
    }
}

fn dispatch(mut queue: ResMut<JobQueue>) {
    let queue = &mut *queue;
    let Ok(ends) = queue.ends.get_mut() else {
        return;
    };
    let mut sent = 0u64;
    while let Some(next) = queue.queue.peek() {
        if !queue.in_flight.contains_key(&next.id) {
            // Timed out while it waited: not worth running.
            queue.queue.pop();
            continue;
        }
        match ends.inbox.push(&next.frame) {
            Ok(()) => {
                queue.queue.pop();
                sent += 1;
            }
            Err(RingError::Full { .. }) => break,
            Err(e) => {
                // Frames are size-checked at submission, so this is a broken ring.
                error!("the inbox refused a job frame: {e}");
                break;
            }
        }
    }
    if sent > 0 {
        queue.stats.dispatched += sent;
        if let Err(e) = ends.inbox.publish() {
            error!("the inbox guard refused the kernel: {e}");
        }
    }
}

fn resolve(sab: Res<Sab>, mut queue: ResMut<JobQueue>, mut history: Local<Vec<JobRecord>>) {
    let queue = &mut *queue;
    let mut outcomes = Vec::new();
    if let Ok(ends) = queue.ends.get_mut() {
        loop {
            match ends.outbox.read_into(&mut ends.frame) {
                Ok(Some(n)) => match JobOutcome::decode(&ends.frame[..n]) {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(e) => {
                        queue.stats.malformed += 1;
                        warn!("an outbox frame is not a job result: {e}");
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    error!("the kernel stopped reading the outbox: {e}");
                    break;
                }
            }
        }
    }
    history.clear();
    for outcome in outcomes {
        queue.resolve(outcome, &mut history);
    }
    record(&sab, &history);
}

/// Resolves jobs past their timeout.
fn expire(sab: Res<Sab>, mut queue: ResMut<JobQueue>, mut history: Local<Vec<JobRecord>>) {
    let now = now_ms();
    let expired: Vec<u64> = queue
        .in_flight
        .iter()
        .filter(|(_, job)| job.timeout_at.is_some_and(|t| now >= t))
        .map(|(id, _)| *id)
        .collect();
    if expired.is_empty() {
        return;
    }
    history.clear();
    for id in expired {
        let mut outcome = JobOutcome::new(id, JobStatus::Timeout, Payload::Inline(vec![]));
        outcome.error = "no result before the job's timeout".into();
        outcome.retryable = true;
        queue.stats.timed_out += 1;
        queue.resolve(outcome, &mut history);
    }
    record(&sab, &history);
}

fn record(sab: &Sab, history: &[JobRecord]) {
    if history.is_empty() {
        return;
    }
    if let Err(e) = sab.job_history().append(history, Owner::Kernel) {
        error!("the job history refused {} records: {e}", history.len());
    }
}
