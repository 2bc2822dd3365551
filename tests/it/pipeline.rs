//! The job pipeline end to end in a headless app: submit → queue → inbox ring → units → outbox
//! ring → result → job history; none lost or duplicated, bad input refused without disturbing the
//! other jobs, priority order, and timeouts.

use bevy::prelude::*;
use inos::headless::{HeadlessConfig, build_app, build_app_with};
use inos::protocol::{Job, JobOutcome, JobStatus, Payload};
use inos::pulse::PulseControl;
use inos::sab::{Owner, RingId, Sab};
use inos::supervisors::jobs::{JobQueue, SubmitError};
use inos::units::RegisterUnitExt;
use inos::units::host::{JobHostMode, JobHostStats};

fn app() -> App {
    build_app(HeadlessConfig::kernel())
}

/// An app with the job host in `mode` and a unit that answers with the name of the thread that
/// ran it.
fn app_with_host(mode: JobHostMode) -> App {
    build_app_with(HeadlessConfig::kernel(), |app| {
        app.insert_resource(mode)
            .register_job_unit(inos::sab::ModuleSpec::cpu_unit("whereami", 1, &[]), |_, job| {
                let name = std::thread::current().name().unwrap_or("").as_bytes().to_vec();
                JobOutcome::new(job.id, JobStatus::Success, Payload::Inline(name))
            });
    })
}

fn submit(app: &mut App, job: &Job) -> Result<(), SubmitError> {
    let sab = app.world().resource::<Sab>().clone();
    app.world_mut().resource_mut::<JobQueue>().submit(&sab, job)
}

fn input(id: u64) -> Vec<u8> {
    (0..(id % 97 + 1)).map(|k| (id * 7 + k) as u8).collect()
}

#[test]
fn a_thousand_jobs_all_complete_once_with_checked_results() {
    a_thousand_jobs(JobHostMode::Tick);
}

/// The same with the job host on its own thread: results arrive between ticks.
#[test]
fn a_thousand_jobs_complete_once_with_the_job_host_on_its_own_thread() {
    a_thousand_jobs(JobHostMode::Thread);
}

fn a_thousand_jobs(mode: JobHostMode) {
    let mut app = app_with_host(mode);
    submit(&mut app, &Job::new(5000, "whereami", "name", Payload::Inline(vec![]))).unwrap();
    for id in 1..=1000u64 {
        let library = if id % 2 == 0 { "echo" } else { "crypto" };
        let method = if id % 2 == 0 { "echo" } else { "hash" };
        submit(&mut app, &Job::new(id, library, method, Payload::Inline(input(id)))).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.world().resource::<JobQueue>().in_flight() > 0 && std::time::Instant::now() < deadline {
        app.update();
    }
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    assert_eq!(queue.in_flight(), 0);
    for id in 1..=1000u64 {
        let outcome = queue
            .take_result(id)
            .unwrap_or_else(|| panic!("job {id} has no result"));
        assert_eq!(outcome.status, JobStatus::Success, "job {id}: {}", outcome.error);
        let expected = if id % 2 == 0 {
            input(id)
        } else {
            blake3::hash(&input(id)).as_bytes().to_vec()
        };
        assert_eq!(outcome.output, Payload::Inline(expected), "job {id}");
        assert!(queue.take_result(id).is_none(), "job {id} is taken once");
    }
    let ran_on = queue.take_result(5000).expect("the thread-name job is answered").output;
    let host_thread = ran_on == Payload::Inline(b"inos-job-host".to_vec());
    assert_eq!(host_thread, mode == JobHostMode::Thread, "{ran_on:?}");
    let stats = queue.stats;
    assert_eq!(
        (
            stats.submitted,
            stats.dispatched,
            stats.resolved,
            stats.unmatched,
            stats.timed_out
        ),
        (1001, 1001, 1001, 0, 0)
    );
    let sab = app.world().resource::<Sab>().clone();
    assert_eq!(sab.job_history().header().total, 1001);
    let host = *app.world().resource::<JobHostStats>();
    assert_eq!((host.executed, host.malformed), (1001, 0));
}

#[test]
fn bad_jobs_and_frames_are_refused_and_the_rest_complete() {
    let mut app = app();
    let ok = Job::new(1, "echo", "echo", Payload::Inline(vec![1, 2, 3]));
    submit(&mut app, &ok).unwrap();
    assert_eq!(submit(&mut app, &ok), Err(SubmitError::DuplicateId(1)));
    assert_eq!(
        submit(&mut app, &Job::new(2, "nobody", "x", Payload::Inline(vec![]))),
        Err(SubmitError::UnknownLibrary("nobody".into()))
    );
    let huge = Job::new(3, "echo", "echo", Payload::Inline(vec![0; 600 * 1024]));
    assert!(matches!(submit(&mut app, &huge), Err(SubmitError::TooLarge { .. })));
    // The inbox has one writer, the kernel, which encodes every frame itself; a foreign module
    // can only reach the outbox, and puts garbage there.
    let sab = app.world().resource::<Sab>().clone();
    assert!(sab.ring(RingId::Inbox).producer(Owner::Module).is_err());
    let mut foreign = sab.ring(RingId::OutboxKernel).producer(Owner::Module).unwrap();
    foreign.push(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
    foreign.publish().unwrap();
    // A registered library with no job entry point is answered, not lost.
    sab.registry()
        .register(&inos::sab::ModuleSpec::cpu_unit("mute", 1, &[]), Owner::Module)
        .unwrap();
    submit(&mut app, &Job::new(4, "mute", "x", Payload::Inline(vec![]))).unwrap();
    for _ in 0..3 {
        app.update();
    }
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    let echoed = queue.take_result(1).unwrap();
    assert_eq!(
        (echoed.status, echoed.output),
        (JobStatus::Success, Payload::Inline(vec![1, 2, 3]))
    );
    let refused = queue.take_result(4).unwrap();
    assert_eq!(refused.status, JobStatus::Rejected);
    assert!(refused.error.contains("mute"), "{}", refused.error);
    assert_eq!((queue.stats.submitted, queue.stats.malformed), (2, 1));
    assert_eq!(app.world().resource::<JobHostStats>().unknown_library, 1);
}

#[test]
fn higher_priority_runs_first_then_earlier_deadlines() {
    let mut app = app();
    // Deadlines hours away: no urgency bonus, so only earliest-deadline-first tells 3 and 4 apart.
    let hour = 3_600_000;
    let now = inos::sab::now_ms();
    let jobs = [
        (1, 0, 0),
        (2, 9, 0),
        (3, 5, now + 2 * hour),
        (4, 5, now + hour),
        (5, 9, 0),
    ];
    for (id, priority, deadline_ms) in jobs {
        let mut job = Job::new(id, "echo", "echo", Payload::Inline(vec![]));
        (job.priority, job.deadline_ms) = (priority, deadline_ms);
        submit(&mut app, &job).unwrap();
    }
    app.update();
    let sab = app.world().resource::<Sab>().clone();
    let order: Vec<u64> = sab.job_history().records().unwrap().iter().map(|r| r.job_id).collect();
    assert_eq!(order, [2, 5, 4, 3, 1]);
}

#[test]
fn a_job_past_its_timeout_is_resolved_as_timed_out_and_never_runs() {
    let mut app = app();
    app.world_mut().resource_mut::<PulseControl>().paused = true;
    let mut job = Job::new(1, "echo", "echo", Payload::Inline(vec![9]));
    job.timeout_ms = 1;
    submit(&mut app, &job).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    app.update();
    let outcome = app.world_mut().resource_mut::<JobQueue>().take_result(1).unwrap();
    assert_eq!((outcome.status, outcome.retryable), (JobStatus::Timeout, true));
    app.world_mut().resource_mut::<PulseControl>().paused = false;
    for _ in 0..3 {
        app.update();
    }
    let queue = app.world().resource::<JobQueue>();
    assert_eq!(
        (queue.stats.timed_out, queue.stats.dispatched, queue.stats.unmatched),
        (1, 0, 0)
    );
    assert_eq!(app.world().resource::<JobHostStats>().executed, 0);
}

/// Jobs whose frames fill both rings many times over: each still completes once, correctly.
#[test]
fn full_rings_hold_jobs_back_without_losing_any() {
    let mut app = app();
    let big = |id: u64| vec![(id % 251) as u8; 4096];
    for id in 1..=1500u64 {
        submit(&mut app, &Job::new(id, "echo", "echo", Payload::Inline(big(id)))).unwrap();
    }
    let mut ticks = 0;
    while app.world().resource::<JobQueue>().in_flight() > 0 {
        app.update();
        ticks += 1;
        assert!(ticks < 1000, "stuck: {:?}", app.world().resource::<JobQueue>().stats);
    }
    assert!(
        ticks > 10,
        "1500 × 4 KiB takes many ticks through 256 KiB of outbox, not {ticks}"
    );
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    for id in 1..=1500u64 {
        let o = queue.take_result(id).unwrap_or_else(|| panic!("job {id}"));
        assert_eq!(o.output, Payload::Inline(big(id)), "job {id}");
    }
    assert_eq!((queue.stats.resolved, queue.stats.unmatched), (1500, 0));
}

#[test]
fn results_too_large_for_the_outbox_and_undecodable_jobs_are_still_answered_or_refused() {
    let mut app = app();
    // 300 KiB fits the inbox (512 KiB) but its echo cannot fit the outbox (256 KiB).
    submit(
        &mut app,
        &Job::new(1, "echo", "echo", Payload::Inline(vec![1; 300 * 1024])),
    )
    .unwrap();
    let mut crowded = Job::new(2, "echo", "echo", Payload::Inline(vec![]));
    crowded.metadata = vec![(String::new(), String::new()); 65];
    assert!(matches!(
        submit(&mut app, &crowded),
        Err(SubmitError::Invalid(inos::protocol::FrameError::TooMany { .. }))
    ));
    app.update();
    let o = app.world_mut().resource_mut::<JobQueue>().take_result(1).unwrap();
    assert_eq!(o.status, JobStatus::Failed);
    assert!(o.error.contains("the outbox takes at most"), "{}", o.error);
}

#[test]
fn a_caller_may_reuse_an_id_after_a_timeout_and_gets_the_new_jobs_result() {
    let mut app = app();
    app.world_mut().resource_mut::<PulseControl>().paused = true;
    let mut old = Job::new(1, "echo", "echo", Payload::Inline(vec![1]));
    old.timeout_ms = 1;
    submit(&mut app, &old).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    app.update();
    let timed_out = app.world_mut().resource_mut::<JobQueue>().take_result(1).unwrap();
    assert_eq!(timed_out.status, JobStatus::Timeout);
    // The old frame is still queued; the new job with the same id must get its own result.
    submit(&mut app, &Job::new(1, "echo", "echo", Payload::Inline(vec![2]))).unwrap();
    app.world_mut().resource_mut::<PulseControl>().paused = false;
    for _ in 0..3 {
        app.update();
    }
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    let fresh = queue.take_result(1).unwrap();
    assert_eq!(
        (fresh.status, fresh.output),
        (JobStatus::Success, Payload::Inline(vec![2]))
    );
    assert_eq!((queue.stats.dispatched, queue.stats.unmatched), (1, 0));
}
