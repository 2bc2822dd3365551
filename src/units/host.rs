//! The job host: the units' side of the job pipeline. It takes every job frame off the inbox ring
//! when the inbox epoch moves, runs it on the unit registered for its library, and answers on the
//! outbox-kernel ring, signalling the outbox epoch.
//!
//! Units that take jobs register an entry point with `RegisterUnitExt::register_job_unit`; the host
//! calls it, so units still never call each other. A result that does not fit the outbox waits
//! in the host and is pushed again on the next tick, so no result is lost. A frame that does not
//! decode cannot be answered (it has no job id): it is counted and logged.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bevy::prelude::*;

use crate::protocol::{Job, JobOutcome, JobStatus, Payload};
use crate::pulse::PulseSystems;
use crate::sab::ring::{RingConsumer, RingProducer};
use crate::sab::{EpochIndex, Owner, RingError, RingId, Sab};

/// A unit's job entry point.
pub type JobExecutor = fn(&Sab, &Job) -> JobOutcome;

/// The entry points of the units that take jobs, by library (registry id).
#[derive(Resource, Default)]
pub struct JobExecutors(pub HashMap<String, JobExecutor>);

/// What the host has done.
#[derive(Resource, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobHostStats {
    pub executed: u64,
    /// Frames that did not decode (and so could not be answered).
    pub malformed: u64,
    /// Jobs for a library no unit registered (answered `Rejected`).
    pub unknown_library: u64,
}

/// The host's ring ends and its backlog of results not yet pushed. (Ring ends cache positions in
/// cells, so they are `Send` but not `Sync`; the mutex makes the resource shareable and is only
/// ever taken uncontended, through `get_mut`, except by the backlog check.)
#[derive(Resource)]
struct JobHost(Mutex<HostEnds>);

struct HostEnds {
    inbox: RingConsumer,
    outbox: RingProducer,
    frame: Vec<u8>,
    backlog: VecDeque<Vec<u8>>,
}

pub struct JobHostPlugin;

/// The host's place in `FixedUpdate`: after the pulse.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobHostSystems;

impl Plugin for JobHostPlugin {
    fn build(&self, app: &mut App) {
        let sab = app.world().resource::<Sab>().clone();
        let inbox = sab.ring(RingId::Inbox);
        let host = HostEnds {
            frame: vec![0; inbox.max_payload()],
            inbox: inbox.consumer().expect("the job host is the inbox's only consumer"),
            outbox: sab
                .ring(RingId::OutboxKernel)
                .producer(Owner::Module)
                .expect("units may write the outbox-kernel ring"),
            backlog: VecDeque::new(),
        };
        app.insert_resource(JobHost(Mutex::new(host)))
            .init_resource::<JobExecutors>()
            .init_resource::<JobHostStats>()
            .configure_sets(FixedUpdate, JobHostSystems.after(PulseSystems))
            .add_systems(
                FixedUpdate,
                run_jobs
                    .in_set(JobHostSystems)
                    .run_if(crate::sab::epoch_changed(EpochIndex::INBOX_DIRTY).or_else(has_backlog)),
            );
    }
}

fn has_backlog(host: Res<JobHost>) -> bool {
    host.0.lock().is_ok_and(|h| !h.backlog.is_empty())
}

fn run_jobs(sab: Res<Sab>, executors: Res<JobExecutors>, mut host: ResMut<JobHost>, mut stats: ResMut<JobHostStats>) {
    let _span = info_span!("job_host").entered();
    let Ok(host) = host.0.get_mut() else {
        error!("the job host's state was poisoned by a panic; it stops");
        return;
    };
    loop {
        let n = match host.inbox.read_into(&mut host.frame) {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(e) => {
                error!("the job host stopped reading the inbox: {e}");
                break;
            }
        };
        let job = match Job::decode(&host.frame[..n]) {
            Ok(job) => job,
            Err(e) => {
                stats.malformed += 1;
                warn!("a {n}-byte inbox frame is not a job: {e}");
                continue;
            }
        };
        let outcome = match executors.0.get(&job.library) {
            Some(execute) => {
                stats.executed += 1;
                execute(&sab, &job)
            }
            None => {
                stats.unknown_library += 1;
                let mut o = JobOutcome::new(job.id, JobStatus::Rejected, Payload::Inline(vec![]));
                o.error = format!("no unit takes jobs for library {:?}", job.library);
                o
            }
        };
        host.backlog.push_back(outcome.encode());
    }
    let mut pushed = 0;
    while let Some(frame) = host.backlog.front() {
        match host.outbox.push(frame) {
            Ok(()) => {
                host.backlog.pop_front();
                pushed += 1;
            }
            Err(RingError::Full { .. }) => break,
            Err(e) => {
                // Too large for the ring: it can never be sent; say so instead of retrying.
                error!("a job result was dropped: {e}");
                host.backlog.pop_front();
            }
        }
    }
    if pushed > 0
        && let Err(e) = host.outbox.publish()
    {
        error!("the outbox-kernel guard refused the job host: {e}");
    }
}
