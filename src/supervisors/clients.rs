//! Outside clients: the kernel's end of the client lanes (`sab::clients`).
//!
//! `inos submit`, and any process that attaches to a running kernel's SAB, sends jobs through a
//! lane of its own. At the start of each tick the kernel takes the frames waiting in every lane
//! and submits each job through the same checks as its own (registry, unit state, the admission
//! table's input limits and rate limits), with one difference: the job's source is the client's
//! pid (`client-<pid>`), so a client has its own rate limit and cannot spend another's. The job's
//! id is tagged with its lane and the lane's generation (bit 62 set, bit 63 clear: workflow steps
//! use bit 63), so the result goes to that lane only, under the id the client gave, and a result
//! that comes back after its client has gone (the lane's generation moved on) is dropped, never
//! delivered to the lane's next client.
//!
//! Results are sent at the end of each tick. A lane whose result ring is full keeps the rest in
//! the job table and gets them on a later tick; a job table that is full leaves requests waiting
//! in the lanes (the clients see their lanes fill up). Lanes of clients that said they are done
//! are reclaimed at once; lanes of clients whose process is gone are found every
//! `RECLAIM_EVERY` ticks, and the frame such a client left half-written is counted (the process
//! table's header). A client that breaks one of its rings (positions or frames the kernel cannot
//! read or write) loses its lane: nothing more is taken from it or sent to it, its results leave
//! the job table, and the lane is reclaimed when the client is done or gone.

use std::collections::VecDeque;

use bevy::prelude::*;

use crate::protocol::{Job, JobOutcome, JobStatus, Payload};
use crate::sab::clients::LANES;
use crate::sab::{EpochIndex, RingError, Sab};
use crate::supervisors::jobs::{JobPipelineSystems, JobQueue};

/// Bit 62: an outside client's job (with bit 63 clear).
const CLIENT_ID_BIT: u64 = 1 << 62;
/// The ids clients may give their jobs: below 2^48.
pub const CLIENT_ID_LIMIT: u64 = 1 << 48;
/// Ticks between two looks for lanes whose client process is gone.
const RECLAIM_EVERY: u32 = 16;

/// Whether `id` is an outside client's job as the kernel tags it.
pub fn is_client_id(id: u64) -> bool {
    id >> 62 == 1
}

/// The low bits of a lane's generation that a tagged id carries (bits 52 to 61): a result is
/// delivered only while its lane is in the generation it was submitted in, and a job would have to
/// stay in flight through 1 024 reclaims of its lane to be mistaken for a new client's.
const GENERATION_MASK: u32 = 0x3FF;

/// The kernel's id for job `id` of the client in `lane` at `generation`.
fn tag(lane: usize, generation: u32, id: u64) -> u64 {
    CLIENT_ID_BIT | u64::from(generation & GENERATION_MASK) << 52 | (lane as u64) << 48 | id
}

/// The lane, generation (low bits) and client id of a tagged id.
fn untag(id: u64) -> (usize, u32, u64) {
    (
        ((id >> 48) & 0xF) as usize,
        ((id >> 52) as u32) & GENERATION_MASK,
        id & (CLIENT_ID_LIMIT - 1),
    )
}

/// A result on its way to a lane.
enum Pending {
    /// Answered in the job table, not yet taken.
    Answered(u64),
    /// Taken and encoded, waiting for room in the lane.
    Frame(Vec<u8>),
}

/// What the kernel keeps about the lanes between ticks: only what is on its way (the requests and
/// results themselves are in the SAB).
#[derive(Resource)]
struct ClientRouter {
    pending: [VecDeque<Pending>; LANES],
    answered: Vec<u64>,
    /// Scratch, kept for their allocations: a request's frame, its job, a result's frame.
    frame: Vec<u8>,
    job: Job,
    out: Vec<u8>,
    /// A lane still had requests when the job table filled up.
    requests_left: bool,
    /// Lanes whose client sent a corrupt ring (by generation): no more requests are taken from
    /// them until the client is gone or done; the lane is not reset under a live client.
    refused: [Option<u32>; LANES],
    ticks: u32,
    user_job_seen: u32,
}

impl Default for ClientRouter {
    fn default() -> Self {
        Self {
            pending: Default::default(),
            answered: Vec::new(),
            frame: Vec::new(),
            job: Job::new(0, "", "", Payload::Inline(Vec::new())),
            out: Vec::new(),
            requests_left: false,
            refused: [None; LANES],
            ticks: 0,
            user_job_seen: 0,
        }
    }
}

pub struct ClientPlugin;

impl Plugin for ClientPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<ClientRouter>().add_systems(
            FixedUpdate,
            (
                take_requests.before(JobPipelineSystems::Dispatch),
                send_results.in_set(JobPipelineSystems::Deliver),
            ),
        );
    }
}

/// Reclaims the lanes whose clients are done or gone, then takes every lane's waiting requests.
fn take_requests(sab: Res<Sab>, mut queue: ResMut<JobQueue>, mut router: ResMut<ClientRouter>) {
    let router = &mut *router;
    router.ticks = router.ticks.wrapping_add(1);
    let lanes = sab.clients();
    let look_for_dead = router.ticks.is_multiple_of(RECLAIM_EVERY);
    for lane in 0..LANES {
        let state = lanes.state(lane);
        if state.owner != 0 && (state.closing || look_for_dead && !lanes.owner_alive(lane)) {
            let abandoned = lanes.abandoned_frames(lane);
            lanes.reset(lane);
            sab.processes().count_reclaimed(abandoned);
            // Results waiting for room are taken from the job table and dropped; those still to
            // come are dropped as they come (the generation moved on).
            let dropped = router.pending[lane].len();
            drop_pending(&mut queue, &mut router.pending[lane]);
            router.refused[lane] = None;
            info!(
                "client lane {lane} reclaimed from pid {} ({}; {abandoned} frame(s) left half-written, {dropped} result(s) not delivered)",
                state.owner,
                if state.closing { "done" } else { "gone" },
            );
        }
    }
    let epoch = sab.epochs().load(EpochIndex::USER_JOB);
    if epoch == router.user_job_seen && !router.requests_left {
        return;
    }
    router.user_job_seen = epoch;
    router.requests_left = false;
    for lane in 0..LANES {
        let state = lanes.state(lane);
        if state.owner == 0 || state.closing || router.refused[lane] == Some(state.generation) {
            continue;
        }
        let ring = lanes.requests(lane);
        let cursor = ring.cursor();
        router.frame.resize(ring.max_payload(), 0);
        let source = format!("client-{}", state.owner);
        let mut taken = 0;
        loop {
            if !queue.has_room() {
                router.requests_left = true;
                break;
            }
            match ring.pop_into(&mut router.frame, &cursor) {
                Ok(Some(len)) => {
                    taken += 1;
                    match Job::decode_into(&router.frame[..len], &mut router.job) {
                        Ok(()) => {
                            let tag = |id| tag(lane, state.generation, id);
                            if let Some(refused) = submit(&sab, &mut queue, &mut router.job, tag, &source) {
                                router.pending[lane].push_back(Pending::Frame(refused.encode()));
                            }
                        }
                        Err(e) => warn!(
                            "client pid {} sent a frame that is not a job ({e}); dropped",
                            state.owner
                        ),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Only the client writes its requests: its own lane is all it can break.
                    error!(
                        "client lane {lane} (pid {}) is corrupt: {e}; no more of its requests are taken",
                        state.owner
                    );
                    router.refused[lane] = Some(state.generation);
                    break;
                }
            }
        }
        ring.publish(&cursor);
        lanes.count(lane, taken, 0);
    }
}

/// Submits a client's job under its tagged id, for `source`; the outcome to send back if it is
/// refused.
fn submit(
    sab: &Sab,
    queue: &mut JobQueue,
    job: &mut Job,
    tag: impl Fn(u64) -> u64,
    source: &str,
) -> Option<JobOutcome> {
    let id = job.id;
    let refuse = |why: String| Some(JobOutcome::failed(id, JobStatus::Rejected, why));
    if id >= CLIENT_ID_LIMIT {
        return refuse(format!("a client's job ids are below 2^48; {id} is not"));
    }
    if matches!(job.input, Payload::Sab(_)) {
        return refuse("a client's job carries its input in its frame, not as a SAB range".into());
    }
    job.id = tag(id);
    queue
        .submit_from(sab, job, source)
        .err()
        .and_then(|e| refuse(e.to_string()))
}

/// Drops the results waiting for a lane, taking those still in the job table out of it.
fn drop_pending(queue: &mut JobQueue, pending: &mut VecDeque<Pending>) {
    for pending in pending.drain(..) {
        if let Pending::Answered(id) = pending {
            queue.take_result(id);
        }
    }
}

/// Sends the answered jobs' results to their clients' lanes.
fn send_results(sab: Res<Sab>, mut queue: ResMut<JobQueue>, mut router: ResMut<ClientRouter>) {
    let router = &mut *router;
    queue.take_answered_for_clients(&mut router.answered);
    for id in router.answered.drain(..) {
        router.pending[untag(id).0].push_back(Pending::Answered(id));
    }
    let lanes = sab.clients();
    for (lane, pending) in router.pending.iter_mut().enumerate() {
        if pending.is_empty() {
            continue;
        }
        let state = lanes.state(lane);
        if router.refused[lane] == Some(state.generation) {
            // Its results cannot be written: they leave the job table, and no more are kept.
            drop_pending(&mut queue, pending);
            continue;
        }
        let ring = lanes.results(lane);
        let head = std::cell::Cell::new(0);
        let mut sent = 0;
        while let Some(next) = pending.pop_front() {
            let frame = match next {
                Pending::Frame(frame) => frame,
                Pending::Answered(id) => {
                    let (_, generation, client_id) = untag(id);
                    let outcome = queue.take_result(id);
                    if state.owner == 0 || generation != state.generation & GENERATION_MASK {
                        continue; // its client is gone
                    }
                    let Some(mut outcome) = outcome else { continue };
                    outcome.id = client_id;
                    if let Payload::Sab(_) = outcome.output {
                        outcome.output = Payload::Inline(outcome.output.bytes(&sab).unwrap_or_default());
                    }
                    outcome.encode_into(&mut router.out);
                    std::mem::take(&mut router.out)
                }
            };
            match ring.push(&frame, &head, true) {
                Ok(_) => {
                    sent += 1;
                    router.out = frame;
                }
                Err(RingError::Full { .. }) => {
                    pending.push_front(Pending::Frame(frame));
                    break;
                }
                Err(e @ RingError::FrameTooLarge { .. }) => {
                    // A small frame in its place, which fits any lane.
                    let outcome = JobOutcome::decode(&frame).map_or(0, |o| o.id);
                    let failed =
                        JobOutcome::failed(outcome, JobStatus::Failed, format!("its result cannot be sent: {e}"));
                    pending.push_front(Pending::Frame(failed.encode()));
                }
                Err(e) => {
                    // The client wrote its result ring's positions wrong: its own lane is all it
                    // breaks. Nothing more is sent to it or taken from it; it is reclaimed when
                    // it is done or gone.
                    error!(
                        "client lane {lane} (pid {}) cannot take results: {e}; its requests and results are dropped",
                        state.owner
                    );
                    router.refused[lane] = Some(state.generation);
                    drop_pending(&mut queue, pending);
                    break;
                }
            }
        }
        if sent > 0 {
            lanes.count(lane, 0, sent);
            lanes.results_signal(lane).signal();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_stay_apart_from_workflow_steps() {
        let id = tag(7, 0x1_23, CLIENT_ID_LIMIT - 1);
        assert!(is_client_id(id));
        assert_eq!(untag(id), (7, 0x123, CLIENT_ID_LIMIT - 1));
        assert_eq!(untag(tag(2, 0x7_0005, 9)).1, 5, "the generation's low 10 bits");
        assert!(!is_client_id(1 << 63 | 5), "a workflow step's id");
        assert!(!is_client_id(42));
    }
}
