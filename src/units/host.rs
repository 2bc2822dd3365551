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
//! Syscall replies (`SyscallReplies`) are keyed by call id alone: a unit makes its call ids unique,
//! for example with its module hash in the high half.

use bevy::platform::collections::HashMap;

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

/// What the host has done.
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

/// The host's ring ends, the result waiting for room in the outbox, and whether the inbox may
/// still hold frames (the host stops reading it while a result waits, so the kernel's priority
/// queue, not this host, holds the backlog).
#[derive(Resource)]
struct JobHost {
    /// Ring ends cache positions in cells (`Send`, not `Sync`).
    ends: SyncCell<HostEnds>,
    waiting: Option<Vec<u8>>,
    inbox_unread: bool,
}

struct HostEnds {
    inbox: RingConsumer,
    outbox: RingProducer,
    outbox_max: usize,
    frame: Vec<u8>,
    /// The job being run and its result frame, reused from job to job.
    job: Job,
    result: Vec<u8>,
}

pub struct JobHostPlugin;

/// The host's stages in `FixedUpdate`, after the pulse: reading the inbox and running immediate
/// jobs, the units' mailbox systems, and sending the mailbox jobs' outcomes.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobHostSystems {
    Run,
    Mailbox,
    Send,
}

impl Plugin for JobHostPlugin {
    fn build(&self, app: &mut App) {
        let sab = app.world().resource::<Sab>().clone();
        let inbox = sab.ring(RingId::Inbox);
        let outbox = sab.ring(RingId::OutboxKernel);
        let ends = HostEnds {
            frame: vec![0; inbox.max_payload()],
            job: Job::new(0, "", "", crate::protocol::Payload::Inline(Vec::new())),
            result: Vec::new(),
            inbox: inbox.consumer().expect("the job host is the inbox's only consumer"),
            outbox_max: outbox.max_payload(),
            outbox: outbox
                .producer(Owner::Module)
                .expect("units may write the outbox-kernel ring"),
        };
        app.insert_resource(JobHost {
            ends: SyncCell::new(ends),
            waiting: None,
            inbox_unread: false,
        })
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
            (JobHostSystems::Run, JobHostSystems::Mailbox, JobHostSystems::Send)
                .chain()
                .after(PulseSystems),
        )
        .add_systems(
            FixedUpdate,
            (
                run_jobs
                    .in_set(JobHostSystems::Run)
                    .run_if(crate::sab::epoch_changed(EpochIndex::INBOX_DIRTY).or_else(has_work)),
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

fn has_work(host: Res<JobHost>) -> bool {
    host.waiting.is_some() || host.inbox_unread
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

/// Stamps the host's measurement of a job's execution time on its outcome and charges it: the
/// cost is at least the execution time in microseconds (a unit may report more), and a job whose
/// cost exceeds its non-zero `budget` is answered `BudgetExceeded`, without its output.
pub(crate) fn charge(mut outcome: JobOutcome, job: &Job, execution_ns: u64) -> JobOutcome {
    outcome.execution_time_ns = execution_ns;
    outcome.cost = outcome.cost.max(execution_ns / 1000);
    if job.budget > 0 && outcome.cost > job.budget && outcome.status == JobStatus::Success {
        let mut over = JobOutcome::failed(
            job.id,
            JobStatus::BudgetExceeded,
            format!("the job cost {} against its budget of {}", outcome.cost, job.budget),
        );
        (over.cost, over.execution_time_ns, over.input_bytes) = (outcome.cost, execution_ns, outcome.input_bytes);
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

fn run_jobs(
    sab: Res<Sab>,
    executors: Res<JobExecutors>,
    mut host: ResMut<JobHost>,
    mut stats: ResMut<JobHostStats>,
    mut mailboxes: ResMut<JobMailboxes>,
) {
    let _span = info_span!("job_host").entered();
    let host = &mut *host;
    let ends = host.ends.get();
    let mut pushed = 0;
    loop {
        if let Some(waiting) = host.waiting.take() {
            ends.result = waiting;
        } else {
            let n = match ends.inbox.read_into(&mut ends.frame) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    host.inbox_unread = false;
                    break;
                }
                Err(e) => {
                    error!("the job host stopped reading the inbox: {e}");
                    host.inbox_unread = false;
                    break;
                }
            };
            let job = &mut ends.job;
            if let Err(e) = Job::decode_into(&ends.frame[..n], job) {
                stats.malformed += 1;
                warn!("a {n}-byte inbox frame is not a job: {e}");
                continue;
            }
            let outcome = match executors.0.get(&job.library) {
                Some(JobEntry::Mailbox) => {
                    stats.executed += 1;
                    mailboxes.0.entry(job.library.clone()).or_default().push(job.clone());
                    continue;
                }
                Some(&JobEntry::Immediate(execute)) => {
                    stats.executed += 1;
                    let start = Instant::now();
                    let outcome = run_guarded(execute, &sab, job);
                    stats.crashed += u64::from(outcome.status == JobStatus::Crashed);
                    charge(outcome, job, start.elapsed().as_nanos() as u64)
                }
                None => {
                    stats.unknown_library += 1;
                    JobOutcome::failed(
                        job.id,
                        JobStatus::Rejected,
                        format!("no unit takes jobs for library {:?}", job.library),
                    )
                }
            };
            result_frame(&outcome, ends.outbox_max, &mut ends.result);
        }
        match ends.outbox.push(&ends.result) {
            Ok(()) => pushed += 1,
            Err(e) => {
                // Full (or broken): the result waits, and so does the rest of the inbox.
                if !matches!(e, RingError::Full { .. }) {
                    error!("the outbox-kernel ring refused a result: {e}");
                }
                host.waiting = Some(std::mem::take(&mut ends.result));
                host.inbox_unread = true;
                break;
            }
        }
    }
    if pushed > 0
        && let Err(e) = ends.outbox.publish()
    {
        error!("the outbox-kernel guard refused the job host: {e}");
    }
}

/// Sends the mailbox jobs' outcomes on the outbox-kernel ring; what does not fit waits for the
/// next tick.
fn send_mailbox_results(mut host: ResMut<JobHost>, mut results: ResMut<MailboxResults>) {
    let ends = host.ends.get();
    let frames = results.0.iter().map(|outcome| {
        let mut frame = Vec::new();
        result_frame(outcome, ends.outbox_max, &mut frame);
        frame
    });
    let sent = ends.outbox.push_all(frames);
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
