//! The kernel's side of the job pipeline: submit → queue → inbox ring → (units) → outbox-kernel
//! ring → result → job-history record.
//!
//! - `JobQueue::submit` checks a job before it is queued (its library is a registered module, its
//!   frame decodes and fits the inbox, its id is not already in use) and refuses it with a typed
//!   error. On the wire a job carries a kernel-assigned id, so a caller may reuse its own id once
//!   it has taken the result, even while a timed-out run of the old job is still on its way.
//! - On every pulse the queue sends jobs in order (the scheduling score of `SchedulingPolicy`:
//!   priority plus deadline urgency, times the source's credit multiplier; then earliest
//!   deadline, then submission order) as frames on the inbox ring until the ring is full, and
//!   signals the inbox epoch; the rest wait for the next pulse. Jobs of a paused or restarting
//!   unit wait in the queue; those of a stopped unit or an open breaker are refused.
//! - `submit` also checks the job against the SAB's admission table (per-unit input limits, a token
//!   bucket per source; `sab::admission`), which the security engine configures; a refusal goes to
//!   the job history, where the engine audits it.
//! - When the outbox-kernel epoch moves, results are read, matched to their job, kept until
//!   taken (`take_result`), and recorded in the SAB's job history.
//! - A job still unanswered after its timeout (a monotonic clock) is resolved `Timeout`; if it was
//!   still queued it is never sent, and a late result for it is counted (`unmatched`) and dropped.
//! - Every job lives in the SAB's job table (`sab::job_table`) from submission until its result is
//!   taken: its record and frame while it waits or runs, its result's frame once answered. The
//!   ready queue, the in-flight window, the timeouts and the results map are caches of that table;
//!   a kernel started on a resumed SAB rebuilds them from it ([`JobQueue::from_sab`]). Jobs that
//!   were on their way to a unit (sent, not answered) are sent again, and the first result to come
//!   back answers them: a job is answered exactly once, and may run twice across a resume.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use bevy::platform::collections::hash_map::Entry;
use bevy::platform::collections::{HashMap, HashSet};
use std::time::Duration;

use bevy::platform::cell::SyncCell;
use bevy::platform::time::Instant;
use bevy::prelude::*;

use crate::protocol::{FrameError, GateError, Job, JobOutcome, JobStatus, OVERFLOW_SOURCE, OutboxFrame, source_of};
use crate::pulse::PulseSystems;
use crate::sab::admission::Refusal;
use crate::sab::job_table::{JobSlot, JobState, SLOTS};
use crate::sab::patterns::{JOB_HISTORY_CAPACITY, Refused};
use crate::sab::pipeline::PipelineRecord;
use crate::sab::ring::{RingConsumer, RingProducer};
use crate::sab::supervisors::{BreakerState, Lifecycle, ROLE_UNIT};
use crate::sab::{EpochIndex, JobRecord, Owner, RingError, RingId, Sab, epoch_changed, now_ms};
use crate::supervisors::clients;
use crate::supervisors::syscalls::SyscallInbox;

/// Why a job was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("no module {0:?} is registered")]
    UnknownLibrary(String),
    #[error("module {library:?} has no method {method:?} (it registers {known})")]
    UnknownMethod {
        library: String,
        method: String,
        known: String,
    },
    #[error("job {0} is in flight or its result has not been taken")]
    DuplicateId(u64),
    #[error("job id {0:#x} is in the range of outside clients' jobs (bit 62 set, bit 63 clear)")]
    ReservedId(u64),
    #[error("the job's frame is {len} bytes; the inbox takes at most {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the job would not decode at the other end: {0}")]
    Invalid(#[from] FrameError),
    #[error("unit {0:?} is stopped (killed, or not restarted by its supervisor)")]
    UnitStopped(String),
    #[error("unit {0:?} has failed too often: its circuit breaker is open")]
    CircuitOpen(String),
    #[error(transparent)]
    Refused(#[from] GateError),
    #[error("the job table is full: {capacity} jobs are queued, in flight or waiting to be taken")]
    QueueFull { capacity: usize },
    #[error("the job's frame has no room in the SAB: {0}")]
    NoRoom(String),
}

/// What the queue does with a unit's jobs, set by the unit's supervisor (`tree`). A unit without
/// an entry takes every job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Queue them, but send none (paused or restarting unit).
    Hold,
    /// Half-open breaker: one job at a time, the probe.
    Probe,
    /// Refuse new jobs and answer queued ones `Rejected` (open breaker).
    CircuitOpen,
    /// The same, for a stopped unit.
    Refuse,
}

impl Admission {
    /// What a unit's supervisor state means for its jobs.
    pub fn of(lifecycle: Lifecycle, breaker: BreakerState) -> Self {
        match (lifecycle, breaker) {
            (Lifecycle::Stopped, _) => Admission::Refuse,
            (_, BreakerState::Open) => Admission::CircuitOpen,
            (Lifecycle::Paused | Lifecycle::Restarting, _) => Admission::Hold,
            (Lifecycle::Running, BreakerState::HalfOpen) => Admission::Probe,
            (Lifecycle::Running, BreakerState::Closed) => Admission::Accept,
        }
    }
}

/// How a job's place in the queue is scored (seed 000's scheduling engine): its priority, plus
/// 100 if its deadline is less than a minute away at submission or 50 if less than five, times
/// its source's credit multiplier (1 unless set). Jobs with equal scores go earliest deadline
/// first, then in submission order.
#[derive(Clone, Debug, Default)]
pub struct SchedulingPolicy {
    /// Credit multipliers by source (the job's `source` metadata), each finite and positive.
    pub credits: Vec<(String, f32)>,
}

impl SchedulingPolicy {
    /// The score of `job` submitted at `now_ms` (always finite and non-negative).
    pub fn score(&self, job: &Job, now_ms: u64) -> f32 {
        let left = job.deadline_ms.saturating_sub(now_ms);
        let urgency = match job.deadline_ms {
            0 => 0.0,
            _ if left < 60_000 => 100.0,
            _ if left < 300_000 => 50.0,
            _ => 0.0,
        };
        let source = source_of(job);
        let credit = self.credits.iter().find(|(s, _)| s == source).map_or(1.0, |(_, c)| *c);
        let credit = if credit.is_finite() && credit > 0.0 {
            credit
        } else {
            1.0
        };
        (f32::from(job.priority) + urgency) * credit
    }
}

/// Sent frames kept for reuse: enough for a full inbox ring of small jobs, and only small ones
/// (a burst of large jobs must not leave its memory behind).
const SPARE_FRAMES: usize = 4096;
const SPARE_FRAME_BYTES: usize = 1024;

/// A frame waiting to be sent (a copy of its job table slot's).
struct Queued {
    wire: u64,
    slot: u32,
    unit_hash: u32,
    frame: Vec<u8>,
}

/// A ready-queue run's key: (score as ordered bits, reversed so the highest comes first; deadline).
type RunKey = (Reverse<u32>, u64);

/// The jobs waiting to be sent, in scheduling order: higher score first, then earlier deadline,
/// then earlier submission. Jobs with the same (score, deadline) form a run, and since wire ids
/// grow with submission, a run is first in, first out: pushing and popping are O(1) in the run
/// and O(log runs) in the map, with no reordering of the jobs themselves.
#[derive(Default)]
struct ReadyQueue {
    runs: BTreeMap<RunKey, VecDeque<Queued>>,
    len: usize,
}

impl ReadyQueue {
    fn push(&mut self, score: f32, deadline: u64, job: Queued) {
        // A non-negative finite f32's bits order as the float does.
        self.runs
            .entry((Reverse(score.to_bits()), deadline))
            .or_default()
            .push_back(job);
        self.len += 1;
    }

    fn peek(&self) -> Option<&Queued> {
        self.runs.first_key_value().and_then(|(_, run)| run.front())
    }

    /// The next job and its run's key (to put it back with `unpop`).
    fn pop(&mut self) -> Option<(RunKey, Queued)> {
        let mut run = self.runs.first_entry()?;
        let job = run.get_mut().pop_front().expect("runs are never empty");
        let key = *run.key();
        if run.get().is_empty() {
            run.remove();
        }
        self.len -= 1;
        Some((key, job))
    }

    /// Puts back a job just popped (jobs popped together go back in reverse order).
    fn unpop(&mut self, key: RunKey, job: Queued) {
        self.runs.entry(key).or_default().push_front(job);
        self.len += 1;
    }
}

/// The jobs in flight by wire id. Wire ids are handed out in sequence, so the table is a window
/// of slots from the oldest unresolved job on: insert, lookup and removal are O(1) and touch
/// memory in submission order. A job left unresolved for long (held for a paused unit, without a
/// timeout) keeps one empty slot per later job behind it until it resolves.
#[derive(Default)]
struct InFlightTable {
    /// The wire id of `slots[0]`.
    first: u64,
    slots: VecDeque<Option<InFlight>>,
    live: usize,
}

impl InFlightTable {
    /// Inserts a job with a wire id above every one inserted before (gaps are left empty).
    fn insert(&mut self, wire: u64, job: InFlight) {
        if self.live == 0 {
            self.slots.clear();
            self.first = wire;
        }
        debug_assert!(wire >= self.first + self.slots.len() as u64, "wire ids grow");
        while self.first + (self.slots.len() as u64) < wire {
            self.slots.push_back(None);
        }
        self.slots.push_back(Some(job));
        self.live += 1;
    }

    fn slot(&self, wire: u64) -> Option<usize> {
        let k = usize::try_from(wire.checked_sub(self.first)?).ok()?;
        (k < self.slots.len()).then_some(k)
    }

    fn contains(&self, wire: u64) -> bool {
        self.slot(wire).is_some_and(|k| self.slots[k].is_some())
    }

    fn remove(&mut self, wire: u64) -> Option<InFlight> {
        let k = self.slot(wire)?;
        let job = self.slots[k].take()?;
        self.live -= 1;
        while self.slots.front().is_some_and(Option::is_none) {
            self.slots.pop_front();
            self.first += 1;
        }
        Some(job)
    }
}

/// A caller's job id: in flight, or resolved with a result not yet taken.
enum Call {
    Pending,
    /// The result is in job table slot `slot`; `outcome` is its decoded copy (absent after a
    /// resume: decoded from the slot when taken). Boxed: the map stays small (an outcome is ~150
    /// bytes) while many jobs are in flight.
    Done {
        slot: u32,
        outcome: Option<Box<JobOutcome>>,
    },
}

/// A job between submission and result, by wire id.
struct InFlight {
    id: u64,
    slot: u32,
    unit_hash: u32,
    method_hash: u32,
    source_hash: u32,
    priority: u8,
    submitted: Instant,
    submitted_ms: u64,
    deadline_ms: u64,
}

struct KernelEnds {
    inbox: RingProducer,
    outbox: RingConsumer,
    frame: Vec<u8>,
}

/// A registered library as the queue checks jobs against it.
struct Library {
    name: String,
    /// CRC32C of the name: the unit's hash.
    hash: u32,
    /// The methods its registry entry declares (capabilities `<library>:<method>`); a unit that
    /// declares none takes any method.
    methods: Vec<String>,
}

impl Library {
    fn read(sab: &Sab, name: &str) -> Option<Self> {
        Some(Self {
            name: name.to_owned(),
            hash: crc32c::crc32c(name.as_bytes()),
            methods: sab.registry().methods(name)?,
        })
    }
}

/// The job queue, the jobs in flight and the results not yet taken.
#[derive(Resource)]
pub struct JobQueue {
    queue: ReadyQueue,
    in_flight: InFlightTable,
    /// By caller id: every id in flight or with a result not yet taken.
    calls: HashMap<u64, Call>,
    /// Libraries found registered, while the registry epoch stays at `registry_epoch` (a
    /// registration or removal clears them).
    libraries: Vec<Library>,
    registry_epoch: u32,
    /// (timeout, wire id) of the jobs that have a timeout, soonest first; entries of jobs already
    /// resolved are skipped when they come up.
    timeouts: BinaryHeap<Reverse<(Instant, u64)>>,
    sequence: u64,
    max_frame: usize,
    /// Per unit (CRC32C of its id), set by its supervisor.
    admission: HashMap<u32, Admission>,
    /// Jobs in flight per unit.
    unit_in_flight: HashMap<u32, u32>,
    /// Job table slots not in use.
    free_slots: Vec<u32>,
    /// Scratch for encoding results the kernel makes (refusals, timeouts).
    result_frame: Vec<u8>,
    /// History records of jobs refused at submission, written on the next dispatch.
    refused: Vec<JobRecord>,
    scheduling: SchedulingPolicy,
    /// A monotonic instant and the wall clock (ms since the Unix epoch) then, re-read on every
    /// dispatch so that submission times follow the wall clock (suspend, NTP) while `submit`
    /// reads one clock only.
    wall_anchor: (Instant, u64),
    /// Jobs of outside clients answered since the client lanes last took them (`clients`).
    answered_for_clients: Vec<u64>,
    /// Frames already sent, kept for their allocations (`SPARE_FRAMES` of `SPARE_FRAME_BYTES` at most).
    spare_frames: Vec<Vec<u8>>,
    /// The pipeline's counters, published as its record in the SAB (`queued` and `in_flight` are
    /// filled in when it is published).
    pub stats: PipelineRecord,
    /// Ring ends cache positions in cells (`Send`, not `Sync`).
    ends: SyncCell<KernelEnds>,
    /// The SAB whose job table this queue caches.
    sab: Sab,
}

impl JobQueue {
    /// The queue of the jobs in `sab`'s job table (none in a new SAB): jobs that were queued or
    /// sent are queued again (in submission order, with their scores, deadlines and the time left
    /// of their timeouts), and answered jobs keep their results until taken. The pipeline's
    /// counters carry on from its record.
    fn from_sab(sab: &Sab, ends: SyncCell<KernelEnds>, max_frame: usize) -> Self {
        let table = sab.job_table();
        let mut queue = JobQueue {
            queue: ReadyQueue::default(),
            in_flight: InFlightTable::default(),
            calls: HashMap::new(),
            libraries: Vec::new(),
            registry_epoch: sab.epochs().load(EpochIndex::REGISTRY),
            timeouts: BinaryHeap::new(),
            sequence: table.sequence(),
            max_frame,
            admission: HashMap::new(),
            unit_in_flight: HashMap::new(),
            free_slots: Vec::new(),
            result_frame: Vec::new(),
            refused: Vec::new(),
            scheduling: SchedulingPolicy::default(),
            wall_anchor: (Instant::now(), now_ms()),
            answered_for_clients: Vec::new(),
            spare_frames: Vec::new(),
            stats: sab.pipeline().read().unwrap_or_default(),
            ends,
            sab: sab.clone(),
        };
        // Until the tree runs, each unit's jobs go as its supervisor's header last said.
        let supervisors = sab.supervisors();
        for slot in supervisors.allocated() {
            let Ok(header) = supervisors.header(slot.slot) else {
                continue;
            };
            if let (ROLE_UNIT, Some(lifecycle), Some(breaker)) = (
                header.role,
                Lifecycle::from_u8(header.lifecycle),
                BreakerState::from_u8(header.breaker),
            ) {
                queue
                    .admission
                    .insert(header.unit_hash, Admission::of(lifecycle, breaker));
            }
        }
        let mut live: Vec<(usize, JobSlot)> = table.live().collect();
        live.sort_unstable_by_key(|(_, record)| record.wire);
        let in_use: HashSet<usize> = live.iter().map(|(slot, _)| *slot).collect();
        // Popped from the end: lowest slots first.
        queue.free_slots = (0..SLOTS as u32)
            .rev()
            .filter(|s| !in_use.contains(&(*s as usize)))
            .collect();
        let (now, now_wall) = queue.wall_anchor;
        for (slot, record) in live {
            queue.sequence = queue.sequence.max(record.wire);
            let mut frame = Vec::new();
            let waiting = matches!(record.job_state(), Some(JobState::Queued | JobState::Sent));
            if waiting {
                table.frame(slot, &mut frame);
                if Job::decode(&frame).is_ok() {
                    table.set_state(slot, JobState::Queued);
                    let age = Duration::from_millis(now_wall.saturating_sub(record.submitted_ms));
                    let submitted = now.checked_sub(age).unwrap_or(now);
                    queue.enqueue(record, slot as u32, frame, submitted);
                    queue.calls.insert(record.job_id, Call::Pending);
                    continue;
                }
                // A record the snapshot holds corrupt: answered, never sent.
                JobOutcome::failed(
                    record.wire,
                    JobStatus::Crashed,
                    "its frame in the job table does not decode",
                )
                .encode_into(&mut frame);
                if let Err(e) = table.answer(slot, &frame) {
                    error!("job {} cannot be answered in the job table: {e}", record.job_id);
                }
            }
            let slot = slot as u32;
            queue.calls.insert(record.job_id, Call::Done { slot, outcome: None });
            if clients::is_client_id(record.job_id) {
                queue.answered_for_clients.push(record.job_id);
            }
        }
        queue
    }

    /// Checks and queues a job; it is sent on the next pulse.
    pub fn submit(&mut self, sab: &Sab, job: &Job) -> Result<(), SubmitError> {
        if clients::is_client_id(job.id) {
            return Err(SubmitError::ReservedId(job.id));
        }
        self.submit_from(sab, job, source_of(job))
    }

    /// Whether the job table has room for another job.
    pub fn has_room(&self) -> bool {
        !self.free_slots.is_empty()
    }

    /// Takes the ids of the outside clients' jobs answered since the last call.
    pub(super) fn take_answered_for_clients(&mut self, out: &mut Vec<u64>) {
        out.append(&mut self.answered_for_clients);
    }

    /// `submit` for `source` (rate-limited and recorded as it, whatever the job's metadata says),
    /// without the check of the id's range: for outside clients' jobs, whose ids the kernel tags
    /// and whose source it names.
    pub(super) fn submit_from(&mut self, sab: &Sab, job: &Job, source: &str) -> Result<(), SubmitError> {
        let unit_hash = self.registered(sab, &job.library, &job.method)?;
        let busy = self.unit_in_flight.get(&unit_hash).is_some_and(|&n| n > 0);
        match self.admission.get(&unit_hash) {
            Some(Admission::Refuse) => return Err(SubmitError::UnitStopped(job.library.clone())),
            Some(Admission::CircuitOpen) => return Err(SubmitError::CircuitOpen(job.library.clone())),
            Some(Admission::Probe) if busy => return Err(SubmitError::CircuitOpen(job.library.clone())),
            _ => {}
        }
        if self.calls.contains_key(&job.id) {
            return Err(SubmitError::DuplicateId(job.id));
        }
        // What the job host will decode: refused here, not lost there.
        let submitted = Instant::now();
        let (anchor, anchor_ms) = self.wall_anchor;
        // Wall-clock nanoseconds, monotonic between two dispatches: the admission table's clock,
        // which another process (or a resumed snapshot) shares.
        let now_ns = anchor_ms * 1_000_000 + submitted.saturating_duration_since(anchor).as_nanos() as u64;
        let submitted_ms = now_ns / 1_000_000;
        let source_hash = crc32c::crc32c(source.as_bytes());
        if let Err(e) = job.check() {
            sab.admission().count_malformed();
            self.refuse(job, unit_hash, source_hash, submitted_ms, Refused::Malformed);
            return Err(e.into());
        }
        let wire = self.sequence + 1;
        let mut frame = self.spare_frames.pop().unwrap_or_default();
        job.encode_into(wire, &mut frame);
        if frame.len() > self.max_frame {
            return Err(SubmitError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        // Before admission, which takes a token.
        if self.free_slots.is_empty() {
            return Err(SubmitError::QueueFull { capacity: SLOTS });
        }
        match sab.admission().admit(source_hash, unit_hash, job.input.len(), now_ns) {
            Ok(()) => {}
            Err(Refusal::TooLarge { max }) => {
                self.refuse(job, unit_hash, source_hash, submitted_ms, Refused::TooLarge);
                return Err(GateError::InputTooLarge {
                    unit: job.library.clone(),
                    len: job.input.len(),
                    max,
                }
                .into());
            }
            Err(Refusal::RateLimited { shared }) => {
                self.refuse(job, unit_hash, source_hash, submitted_ms, Refused::RateLimited);
                let source = if shared { OVERFLOW_SOURCE } else { source };
                return Err(GateError::RateLimited(source.to_owned()).into());
            }
        }
        let score = self.scheduling.score(job, submitted_ms);
        let slot = self.free_slots.pop().expect("checked above");
        let record = JobSlot {
            wire,
            job_id: job.id,
            submitted_ms,
            deadline_ms: job.deadline_ms,
            unit_hash,
            method_hash: crc32c::crc32c(job.method.as_bytes()),
            source_hash,
            score,
            timeout_ms: job.timeout_ms.min(u64::from(u32::MAX)) as u32,
            state: JobState::Queued as u8,
            priority: job.priority,
            ..JobSlot::default()
        };
        let table = sab.job_table();
        if let Err(e) = table.write(slot as usize, record, &frame) {
            self.free_slots.push(slot);
            return Err(SubmitError::NoRoom(e.to_string()));
        }
        table.set_sequence(wire);
        self.sequence = wire;
        self.enqueue(record, slot, frame, submitted);
        self.calls.insert(job.id, Call::Pending);
        self.stats.submitted += 1;
        Ok(())
    }

    /// Puts a job of the table into the caches: the ready queue, the in-flight window, the
    /// timeouts, the per-unit count. `submitted` is when it was submitted on the monotonic clock.
    fn enqueue(&mut self, record: JobSlot, slot: u32, frame: Vec<u8>, submitted: Instant) {
        let deadline = if record.deadline_ms == 0 {
            u64::MAX
        } else {
            record.deadline_ms
        };
        let wire = record.wire;
        let unit_hash = record.unit_hash;
        self.queue.push(
            record.score,
            deadline,
            Queued {
                wire,
                slot,
                unit_hash,
                frame,
            },
        );
        *self.unit_in_flight.entry(unit_hash).or_default() += 1;
        self.in_flight.insert(
            wire,
            InFlight {
                id: record.job_id,
                slot,
                unit_hash,
                method_hash: record.method_hash,
                source_hash: record.source_hash,
                priority: record.priority,
                submitted,
                submitted_ms: record.submitted_ms,
                deadline_ms: record.deadline_ms,
            },
        );
        if record.timeout_ms > 0 {
            let at = submitted + Duration::from_millis(u64::from(record.timeout_ms));
            self.timeouts.push(Reverse((at, wire)));
        }
    }

    /// The unit hash of a registered library that has `method`.
    fn registered(&mut self, sab: &Sab, library: &str, method: &str) -> Result<u32, SubmitError> {
        let epoch = sab.epochs().load(EpochIndex::REGISTRY);
        if epoch != self.registry_epoch {
            self.libraries.clear();
            self.registry_epoch = epoch;
        }
        let index = match self.libraries.iter().position(|l| l.name == library) {
            Some(index) => index,
            None => {
                let found =
                    Library::read(sab, library).ok_or_else(|| SubmitError::UnknownLibrary(library.to_owned()))?;
                self.libraries.push(found);
                self.libraries.len() - 1
            }
        };
        let found = &self.libraries[index];
        if !found.methods.is_empty() && !found.methods.iter().any(|m| m == method) {
            return Err(SubmitError::UnknownMethod {
                library: library.to_owned(),
                method: method.to_owned(),
                known: found.methods.join(", "),
            });
        }
        Ok(found.hash)
    }

    /// The result of a job, once, when it has one.
    pub fn take_result(&mut self, id: u64) -> Option<JobOutcome> {
        let (slot, outcome) = match self.calls.entry(id) {
            Entry::Occupied(call) if matches!(call.get(), Call::Done { .. }) => match call.remove() {
                Call::Done { slot, outcome } => (slot, outcome),
                Call::Pending => unreachable!("matched as done"),
            },
            _ => return None,
        };
        let table = self.sab.job_table();
        let outcome = match outcome {
            Some(outcome) => *outcome,
            None => {
                table.frame(slot as usize, &mut self.result_frame);
                match OutboxFrame::decode(&self.result_frame) {
                    Ok(OutboxFrame::Result(mut outcome)) => {
                        outcome.id = id;
                        outcome
                    }
                    _ => JobOutcome::failed(id, JobStatus::Crashed, "its result in the job table does not decode"),
                }
            }
        };
        table.free(slot as usize);
        self.free_slots.push(slot);
        // A map grown by a burst is given back once it is mostly empty: a table far larger than
        // its entries spreads them over memory, and every lookup misses the cache.
        if self.calls.capacity() > 4096 && self.calls.len() * 8 < self.calls.capacity() {
            self.calls.shrink_to(self.calls.len() * 2);
        }
        Some(outcome)
    }

    /// Jobs submitted and not yet resolved.
    pub fn in_flight(&self) -> usize {
        self.in_flight.live
    }

    /// Jobs waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len
    }

    /// The scheduling policy (urgency bonuses and credit multipliers).
    pub fn scheduling_mut(&mut self) -> &mut SchedulingPolicy {
        &mut self.scheduling
    }

    /// Sets what happens to the jobs of unit `unit_hash` (CRC32C of its id).
    pub fn set_admission(&mut self, unit_hash: u32, admission: Admission) {
        self.admission.insert(unit_hash, admission);
    }

    /// Keeps the history record of a job refused at submission (the security engine audits it).
    fn refuse(&mut self, job: &Job, unit_hash: u32, source_hash: u32, submitted_ms: u64, why: Refused) {
        // While the pulse is paused nothing is dispatched: keep what the history ring would.
        if self.refused.len() >= JOB_HISTORY_CAPACITY {
            self.refused.drain(..JOB_HISTORY_CAPACITY / 2);
        }
        self.refused.push(JobRecord {
            job_id: job.id,
            unit_hash,
            method_hash: crc32c::crc32c(job.method.as_bytes()),
            submitted_ms,
            input_bytes: job.input.len().min(u64::from(u32::MAX)) as u32,
            status: JobStatus::Rejected.code(),
            priority: job.priority,
            refusal: why as u8,
            source_hash,
            ..JobRecord::default()
        });
    }

    /// Matches a result (carrying its wire id) to its job and keeps it in the job's slot: `frame`
    /// is the result as it came off the ring, or `None` for a result the kernel made (it is then
    /// encoded here). `now` is when it came in.
    fn resolve(&mut self, mut outcome: JobOutcome, frame: Option<&[u8]>, now: Instant, history: &mut Vec<JobRecord>) {
        let Some(job) = self.in_flight.remove(outcome.id) else {
            self.stats.unmatched += 1;
            return;
        };
        let frame = frame.unwrap_or_else(|| {
            outcome.encode_into(&mut self.result_frame);
            &self.result_frame
        });
        if let Err(e) = self.sab.job_table().answer(job.slot as usize, frame) {
            // Kept in memory only: a snapshot taken before it is taken loses this result.
            error!("job {}'s result is not in the job table: {e}", job.id);
        }
        if let Some(n) = self.unit_in_flight.get_mut(&job.unit_hash) {
            *n -= 1;
        }
        outcome.id = job.id;
        let clamp = |v: u64| v.min(u64::from(u32::MAX)) as u32;
        let record = JobRecord {
            job_id: job.id,
            unit_hash: job.unit_hash,
            method_hash: job.method_hash,
            submitted_ms: job.submitted_ms,
            duration_us: clamp(now.saturating_duration_since(job.submitted).as_micros() as u64),
            input_bytes: clamp(outcome.input_bytes),
            output_bytes: clamp(outcome.output_bytes),
            status: outcome.status.code(),
            priority: job.priority,
            refusal: 0,
            deadline_ms: clamp(job.deadline_ms.saturating_sub(job.submitted_ms)),
            source_hash: job.source_hash,
            execution_ns: outcome.execution_time_ns,
            cpu_ns: outcome.cpu_ns,
        };
        history.push(record);
        self.stats.resolved += 1;
        if clients::is_client_id(job.id) {
            self.answered_for_clients.push(job.id);
        }
        self.calls.insert(
            job.id,
            Call::Done {
                slot: job.slot,
                outcome: Some(Box::new(outcome)),
            },
        );
    }
}

pub struct JobPipelinePlugin;

/// The kernel's pipeline stages in `FixedUpdate`: dispatch after the pulse, results after the
/// units have run, then the outside clients' results sent to their lanes (`clients`), before
/// anything else reads the queue.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobPipelineSystems {
    Dispatch,
    Resolve,
    Deliver,
}

impl Plugin for JobPipelinePlugin {
    fn build(&self, app: &mut App) {
        let sab = app.world().resource::<Sab>().clone();
        let outbox = sab.ring(RingId::OutboxKernel);
        let inbox = sab.ring(RingId::Inbox);
        let ends = SyncCell::new(KernelEnds {
            frame: vec![0; outbox.max_payload()],
            outbox: outbox
                .consumer()
                .expect("the kernel is the outbox-kernel's only consumer"),
            inbox: inbox.producer(Owner::Kernel).expect("the kernel writes the inbox"),
        });
        app.insert_resource(JobQueue::from_sab(&sab, ends, inbox.max_payload()))
            .configure_sets(
                FixedUpdate,
                (
                    JobPipelineSystems::Dispatch,
                    JobPipelineSystems::Resolve,
                    JobPipelineSystems::Deliver,
                )
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

fn dispatch(
    sab: Res<Sab>,
    mut queue: ResMut<JobQueue>,
    mut held: Local<Vec<(RunKey, Queued)>>,
    mut history: Local<Vec<JobRecord>>,
) {
    let queue = &mut *queue;
    queue.wall_anchor = (Instant::now(), now_ms());
    let table = sab.job_table();
    let ends = queue.ends.get();
    let mut sent = 0u64;
    let mut refused = Vec::new();
    while let Some(next) = queue.queue.peek() {
        let wire = next.wire;
        if !queue.in_flight.contains(wire) {
            // Timed out while it waited: not worth running.
            queue.queue.pop();
            continue;
        }
        let refusal = match queue.admission.get(&next.unit_hash) {
            Some(Admission::Hold) => {
                held.extend(queue.queue.pop());
                continue;
            }
            Some(Admission::Refuse) => Some("its unit was stopped before it ran"),
            Some(Admission::CircuitOpen) => Some("its unit's circuit breaker opened before it ran"),
            _ => None,
        };
        if let Some(reason) = refusal {
            queue.queue.pop();
            refused.push(JobOutcome::failed(wire, JobStatus::Rejected, reason));
            continue;
        }
        match ends.inbox.push(&next.frame) {
            Ok(()) => {
                let (_, sent_job) = queue.queue.pop().expect("just peeked");
                table.set_state(sent_job.slot as usize, JobState::Sent);
                if queue.spare_frames.len() < SPARE_FRAMES && sent_job.frame.capacity() <= SPARE_FRAME_BYTES {
                    queue.spare_frames.push(sent_job.frame);
                }
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
    for (key, job) in held.drain(..).rev() {
        queue.queue.unpop(key, job);
    }
    history.clear();
    history.append(&mut queue.refused);
    let now = Instant::now();
    for outcome in refused {
        queue.resolve(outcome, None, now, &mut history);
    }
    if sent > 0 {
        queue.stats.dispatched += sent;
        if let Err(e) = queue.ends.get().inbox.publish() {
            error!("the inbox guard refused the kernel: {e}");
        }
    }
    record(&sab, &history);
    publish(&sab, queue);
}

/// Results read off the outbox-kernel ring in one run, each with its frame's bytes in the buffer.
type ResultFrames = (Vec<(JobOutcome, std::ops::Range<usize>)>, Vec<u8>);

/// Reads the outbox-kernel ring: job results, and syscalls (told apart by the envelope's magic)
/// for `syscalls::serve`.
fn resolve(
    sab: Res<Sab>,
    mut queue: ResMut<JobQueue>,
    mut syscalls: ResMut<SyscallInbox>,
    mut history: Local<Vec<JobRecord>>,
    mut scratch: Local<ResultFrames>,
) {
    let queue = &mut *queue;
    let (outcomes, frames) = &mut *scratch;
    let mut malformed = 0;
    let ends = queue.ends.get();
    ends.outbox
        .drain(&mut ends.frame, |frame| match OutboxFrame::decode(frame) {
            Ok(OutboxFrame::Result(outcome)) => {
                let start = frames.len();
                frames.extend_from_slice(frame);
                outcomes.push((outcome, start..frames.len()));
            }
            Ok(OutboxFrame::Syscall(call)) => syscalls.0.push(call),
            Err(e) => {
                malformed += 1;
                warn!("an outbox frame is neither a job result nor a syscall: {e}");
            }
        });
    queue.stats.malformed += malformed;
    history.clear();
    let now = Instant::now();
    for (outcome, span) in outcomes.drain(..) {
        queue.resolve(outcome, Some(&frames[span]), now, &mut history);
    }
    frames.clear();
    record(&sab, &history);
}

/// Resolves jobs past their timeout.
fn expire(sab: Res<Sab>, mut queue: ResMut<JobQueue>, mut history: Local<Vec<JobRecord>>) {
    let now = Instant::now();
    history.clear();
    while let Some(&Reverse((at, wire))) = queue.timeouts.peek() {
        if at > now {
            break;
        }
        queue.timeouts.pop();
        if !queue.in_flight.contains(wire) {
            continue;
        }
        let mut outcome = JobOutcome::failed(wire, JobStatus::Timeout, "no result before the job's timeout");
        outcome.retryable = true;
        queue.stats.timed_out += 1;
        queue.resolve(outcome, None, now, &mut history);
    }
    record(&sab, &history);
    publish(&sab, &queue);
}

/// Rewrites the pipeline's record in the SAB (the end of each stage).
fn publish(sab: &Sab, queue: &JobQueue) {
    sab.pipeline().publish(&PipelineRecord {
        queued: queue.queued() as u32,
        in_flight: queue.in_flight() as u32,
        ..queue.stats
    });
}

fn record(sab: &Sab, history: &[JobRecord]) {
    if history.is_empty() {
        return;
    }
    if let Err(e) = sab.job_history().append(history, Owner::Kernel) {
        error!("the job history refused {} records: {e}", history.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The ready queue pops in (score descending, deadline ascending, submission) order, and
        /// jobs popped then put back in reverse come out again in the same order.
        #[test]
        fn ready_queue_pops_in_scheduling_order(
            jobs in proptest::collection::vec((0u8..4, 0u64..4), 0..64),
            held in 0usize..64,
        ) {
            let mut queue = ReadyQueue::default();
            for (wire, &(score, deadline)) in jobs.iter().enumerate() {
                queue.push(f32::from(score), deadline, Queued { wire: wire as u64, slot: 0, unit_hash: 0, frame: vec![] });
            }
            let mut expected: Vec<usize> = (0..jobs.len()).collect();
            expected.sort_by_key(|&w| (Reverse(jobs[w].0), jobs[w].1, w));
            let popped: Vec<_> = (0..held.min(jobs.len())).map_while(|_| queue.pop()).collect();
            for (key, job) in popped.into_iter().rev() {
                queue.unpop(key, job);
            }
            prop_assert_eq!(queue.len, jobs.len());
            let order: Vec<usize> = std::iter::from_fn(|| queue.pop()).map(|(_, q)| q.wire as usize).collect();
            prop_assert_eq!(order, expected);
            prop_assert_eq!(queue.len, 0);
        }

        /// The in-flight window finds exactly the jobs inserted and not removed, whatever the
        /// removal order, and shrinks to nothing when all are gone.
        #[test]
        fn in_flight_window_tracks_live_jobs(count in 1u64..64, removals in proptest::collection::vec(0u64..80, 0..100)) {
            let mut table = InFlightTable::default();
            let job = |id| InFlight {
                slot: 0,
                id,
                unit_hash: 0,
                method_hash: 0,
                source_hash: 0,
                priority: 0,
                submitted: Instant::now(),
                submitted_ms: 0,
                deadline_ms: 0,
            };
            for wire in 1..=count {
                table.insert(wire, job(wire * 10));
            }
            let mut live: std::collections::BTreeSet<u64> = (1..=count).collect();
            for wire in removals {
                prop_assert_eq!(table.remove(wire).map(|j| j.id), live.remove(&wire).then_some(wire * 10));
                prop_assert_eq!(table.live, live.len());
            }
            for wire in 0..=count + 1 {
                prop_assert_eq!(table.contains(wire), live.contains(&wire));
            }
            for wire in live.clone() {
                table.remove(wire);
            }
            prop_assert!(table.slots.is_empty());
        }
    }
}
