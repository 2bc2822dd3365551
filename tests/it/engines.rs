//! The engines in a headless app: the security gate's rate limit, input limits and malformed
//! frames with their audit records; a decompression bomb caught by anomaly detection; the
//! learning engine's models and sequences; the scheduler's EDF order against a sorted reference
//! and its deadline-hit rate; the health engine's CUSUM degradation and the restart it triggers.

use bevy::prelude::*;
use inos::engines::learning::SEQUENCE_KIND;
use inos::headless::{HeadlessConfig, build_app_with};
use inos::protocol::GateError;
use inos::protocol::{Job, JobOutcome, JobStatus, Payload, SOURCE_KEY};
use inos::sab::engines::{AuditKind, Engine};
use inos::sab::patterns::JOB_HISTORY_CAPACITY;
use inos::sab::{JobRecord, ModuleSpec, Owner, PatternRecord, Sab};
use inos::supervisors::jobs::{JobQueue, SubmitError};
use inos::supervisors::tree::SupervisorTree;
use inos::units::RegisterUnitExt;
use proptest::prelude::*;

/// Returns 1 000 bytes per input byte for inputs starting with `b`, sleeps 4 ms for `s`, else
/// echoes.
fn test_unit(_: &Sab, job: &Job) -> JobOutcome {
    let Payload::Inline(input) = &job.input else {
        return JobOutcome::failed(job.id, JobStatus::InvalidParams, "inline input only");
    };
    let output = match input.first() {
        Some(b'b') => vec![0; input.len() * 1000],
        Some(b's') => {
            std::thread::sleep(std::time::Duration::from_millis(4));
            input.clone()
        }
        _ => input.clone(),
    };
    let mut outcome = JobOutcome::new(job.id, JobStatus::Success, Payload::Inline(output));
    (outcome.input_bytes, outcome.output_bytes) = (input.len() as u64, outcome.output.len());
    outcome
}

fn app() -> App {
    let config = HeadlessConfig::kernel();
    let mut app = build_app_with(config, |app| {
        app.register_job_unit(ModuleSpec::cpu_unit("tester", 1, &[]), test_unit);
    });
    app.update();
    app
}

/// A job on `unit`'s method (echo's echo, crypto's hash; the test unit declares none and runs
/// any), from `source`.
fn job(id: u64, unit: &str, source: &str, input: &[u8]) -> Job {
    let method = match unit {
        "echo" => "echo",
        "crypto" => "hash",
        _ => "run",
    };
    Job {
        metadata: vec![(SOURCE_KEY.into(), source.into())],
        ..Job::new(id, unit, method, Payload::Inline(input.to_vec()))
    }
}

fn submit(app: &mut App, job: &Job) -> Result<(), SubmitError> {
    let sab = app.world().resource::<Sab>().clone();
    app.world_mut().resource_mut::<JobQueue>().submit(&sab, job)
}

fn settle(app: &mut App) {
    for _ in 0..100 {
        app.update();
        if app.world().resource::<JobQueue>().in_flight() == 0 {
            break;
        }
    }
    app.update();
}

fn engine_metric(app: &App, engine: Engine, name: &str) -> f32 {
    let record = app.world().resource::<Sab>().engines().read(engine).unwrap();
    record
        .metric(engine, name)
        .unwrap_or_else(|| panic!("{engine:?} has no metric {name}"))
}

fn audits(app: &App, kind: AuditKind) -> usize {
    let log = app.world().resource::<Sab>().audit_log().records().unwrap();
    log.iter().filter(|r| r.kind == kind as u32).count()
}

#[test]
fn a_burst_over_the_rate_limit_is_refused_exactly_and_leaves_other_sources_alone() {
    let mut app = app();
    // 100 tokens and one more per second: a 150-job burst takes well under a second.
    app.world().resource::<Sab>().admission().configure(100, 1);
    let mut refused = 0;
    for id in 1..=150 {
        match submit(&mut app, &job(id, "echo", "flood", b"x")) {
            Ok(()) => {}
            Err(SubmitError::Refused(GateError::RateLimited(source))) => {
                assert_eq!(source, "flood");
                refused += 1;
            }
            Err(e) => panic!("job {id}: {e}"),
        }
        if id % 10 == 0 {
            submit(&mut app, &job(1000 + id, "echo", "polite", b"y")).unwrap();
        }
    }
    assert_eq!(refused, 50);
    settle(&mut app);
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    for id in (1..=100).chain((1010..=1150).step_by(10)) {
        assert_eq!(
            queue.take_result(id).map(|o| o.status),
            Some(JobStatus::Success),
            "job {id}"
        );
    }
    assert!(queue.take_result(101).is_none());
    assert_eq!(audits(&app, AuditKind::RateLimited), 50);
    assert_eq!(engine_metric(&app, Engine::Security, "rate_limited"), 50.0);
    assert_eq!(engine_metric(&app, Engine::Security, "admitted"), 115.0);
}

#[test]
fn per_unit_input_limits_and_malformed_frames_are_refused_and_audited() {
    let mut app = app();
    let echo = crc32c::crc32c(b"echo");
    app.world()
        .resource::<Sab>()
        .admission()
        .set_input_limit(echo, Some(64))
        .unwrap();
    submit(&mut app, &job(1, "echo", "a", &[7; 64])).unwrap();
    assert_eq!(
        submit(&mut app, &job(2, "echo", "a", &[7; 65])),
        Err(SubmitError::Refused(GateError::InputTooLarge {
            unit: "echo".into(),
            len: 65,
            max: 64
        }))
    );
    // The limit is per unit: crypto takes it.
    submit(&mut app, &Job::new(3, "crypto", "hash", Payload::Inline(vec![7; 65]))).unwrap();
    let mut bad = job(4, "echo", "a", b"x");
    bad.metadata = (0..100).map(|i| (format!("k{i}"), String::new())).collect();
    assert!(matches!(submit(&mut app, &bad), Err(SubmitError::Invalid(_))));
    settle(&mut app);
    assert_eq!(
        (audits(&app, AuditKind::TooLarge), audits(&app, AuditKind::Malformed)),
        (1, 1)
    );
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    assert_eq!(queue.take_result(1).unwrap().status, JobStatus::Success);
    assert_eq!(queue.take_result(3).unwrap().status, JobStatus::Success);
}

#[test]
fn a_decompression_bomb_is_flagged_as_a_ratio_anomaly() {
    let mut app = app();
    for id in 1..=40 {
        submit(&mut app, &job(id, "tester", "a", b"normal input")).unwrap();
        settle(&mut app);
    }
    assert_eq!(audits(&app, AuditKind::RatioAnomaly), 0);
    submit(&mut app, &job(41, "tester", "a", b"bomb")).unwrap();
    settle(&mut app);
    let log = app.world().resource::<Sab>().audit_log().records().unwrap();
    let bomb = log
        .iter()
        .find(|r| r.kind == AuditKind::RatioAnomaly as u32)
        .expect("an anomaly");
    assert_eq!((bomb.job_id, bomb.unit_hash), (41, crc32c::crc32c(b"tester")));
    assert!(bomb.value > 6.0, "z = {}", bomb.value);
    assert_eq!(engine_metric(&app, Engine::Security, "ratio_anomalies"), 1.0);
    // The bomb did not become the baseline: normal jobs are fine again.
    submit(&mut app, &job(42, "tester", "a", b"normal input")).unwrap();
    settle(&mut app);
    assert_eq!(engine_metric(&app, Engine::Security, "ratio_anomalies"), 1.0);
}

#[test]
fn the_learning_engine_models_units_and_publishes_repeated_sequences() {
    let mut app = app();
    for round in 0..4u64 {
        submit(&mut app, &job(10 * round + 1, "crypto", "pipeline", b"abc")).unwrap();
        settle(&mut app);
        submit(&mut app, &job(10 * round + 2, "echo", "pipeline", b"abc")).unwrap();
        settle(&mut app);
    }
    assert_eq!(engine_metric(&app, Engine::Learning, "jobs_learned"), 8.0);
    assert_eq!(engine_metric(&app, Engine::Learning, "models"), 2.0);
    // crypto → echo four times and echo → crypto three: both reach the 3 needed.
    assert!(engine_metric(&app, Engine::Learning, "sequences_written") >= 3.0);
    let sequences = sequences(&app);
    assert_eq!(sequences.len(), 2);
    assert!(
        sequences
            .iter()
            .all(|(_, p)| { p.source_hash } == crc32c::crc32c(b"pipeline"))
    );
}

/// A batch of one source's echo jobs resolved in one update writes its echo → echo sequence once,
/// with the counts of the whole batch.
#[test]
fn a_batch_writes_each_sequence_once_with_its_final_counts() {
    let mut app = app();
    for id in 1..=40 {
        submit(&mut app, &job(id, "echo", "stream", b"abc")).unwrap();
    }
    settle(&mut app);
    assert_eq!(engine_metric(&app, Engine::Learning, "jobs_learned"), 40.0);
    assert_eq!(engine_metric(&app, Engine::Learning, "sequences_written"), 1.0);
    let sequences = sequences(&app);
    assert_eq!(sequences.len(), 1);
    let record = sequences[0].1;
    // 39 transitions echo → echo, all successful, and echo was followed only by echo.
    assert_eq!({ record.access_count }, 39);
    assert_eq!({ record.success_rate }, 1.0);
    assert_eq!({ record.confidence }, 255);
}

/// The sequence records in the pattern exchange.
fn sequences(app: &App) -> Vec<(usize, PatternRecord)> {
    let sab = app.world().resource::<Sab>();
    let live = sab.patterns().live().unwrap();
    live.into_iter().filter(|(_, p)| { p.kind } == SEQUENCE_KIND).collect()
}

fn finished(duration_us: u32, deadline_ms: u32, status: JobStatus) -> JobRecord {
    JobRecord {
        job_id: 1,
        unit_hash: 1,
        method_hash: 1,
        duration_us,
        status: status.code(),
        deadline_ms,
        execution_ns: u64::from(duration_us) * 1000,
        cpu_ns: u64::from(duration_us) * 1000,
        ..JobRecord::default()
    }
}

#[test]
fn the_deadline_hit_rate_counts_successes_by_their_deadline() {
    let mut engine = inos::engines::scheduling::SchedulingEngine::default();
    assert_eq!(engine.hit_rate(), 1.0);
    for (duration_us, deadline_ms, status) in [
        (900, 1, JobStatus::Success),
        (1000, 1, JobStatus::Success),
        (1001, 1, JobStatus::Success),
        (10, 1, JobStatus::Failed),
        (5_000_000, 0, JobStatus::Success),
    ] {
        engine.observe(&finished(duration_us, deadline_ms, status));
    }
    assert_eq!((engine.with_deadline, engine.deadline_met), (4, 2));
    assert_eq!(engine.hit_rate(), 0.5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn jobs_are_dispatched_in_priority_then_earliest_deadline_order(
        jobs in proptest::collection::vec((0u8..4, 0u64..5), 1..60),
    ) {
        let mut app = app();
        app.world_mut().resource_mut::<inos::pulse::PulseControl>().paused = true;
        let far = inos::sab::now_ms() + 3_600_000;
        for (i, (priority, deadline)) in jobs.iter().enumerate() {
            let mut j = job(i as u64 + 1, "echo", "p", b"");
            j.priority = *priority;
            j.deadline_ms = if *deadline == 0 { 0 } else { far + deadline * 1000 };
            submit(&mut app, &j).unwrap();
        }
        app.world_mut().resource_mut::<inos::pulse::PulseControl>().paused = false;
        settle(&mut app);
        let sab = app.world().resource::<Sab>().clone();
        let order: Vec<u64> = sab.job_history().records().unwrap().iter().map(|r| r.job_id).collect();
        // The reference: a stable sort by (priority descending, deadline ascending with none last).
        let mut reference: Vec<u64> = (1..=jobs.len() as u64).collect();
        reference.sort_by_key(|&id| {
            let (priority, deadline) = jobs[id as usize - 1];
            (std::cmp::Reverse(priority), if deadline == 0 { u64::MAX } else { deadline })
        });
        prop_assert_eq!(order, reference);
    }
}

/// The urgent jobs' (id, submission-to-result µs), in the order they were answered, after twenty
/// bulk jobs and then five urgent ones, each 4 ms of work on 100 KiB of input: the inbox holds
/// five such frames, so the load takes five ticks. With `deadlines`, the urgent jobs are due
/// 60 ms after submission; without, the queue keeps all 25 in submission order (FIFO).
fn urgent_after_bulk(deadlines: bool) -> (Vec<(u64, u32)>, f32) {
    let mut app = app();
    app.world_mut().resource_mut::<inos::pulse::PulseControl>().paused = true;
    let mut input = vec![0u8; 100 << 10];
    input[0] = b's';
    for id in 1..=20 {
        submit(&mut app, &job(id, "tester", "bulk", &input)).unwrap();
    }
    let due = inos::sab::now_ms() + 60;
    for id in 21..=25 {
        let mut urgent = job(id, "tester", "urgent", &input);
        urgent.deadline_ms = if deadlines { due } else { 0 };
        submit(&mut app, &urgent).unwrap();
    }
    app.world_mut().resource_mut::<inos::pulse::PulseControl>().paused = false;
    settle(&mut app);
    let records = app.world().resource::<Sab>().job_history().records().unwrap();
    assert_eq!(records.len(), 25);
    let urgent = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.job_id > 20)
        .map(|(_, r)| (r.job_id, r.duration_us))
        .collect();
    (urgent, engine_metric(&app, Engine::Scheduling, "deadline_hit_rate"))
}

/// Under a load that takes several ticks, urgent jobs submitted after bulk ones meet their
/// deadlines: the queue sends them first. In submission order (FIFO) the same jobs finish after
/// the bulk, past their deadlines.
#[test]
fn deadlines_are_met_under_a_load_where_submission_order_misses_them() {
    let (fifo, _) = urgent_after_bulk(false);
    for &(id, us) in &fifo {
        assert!(
            us > 60_000,
            "in FIFO order job {id} would have met its deadline: {us} µs"
        );
    }
    let (scheduled, hit_rate) = urgent_after_bulk(true);
    assert_eq!(
        scheduled.iter().map(|&(id, _)| id).collect::<Vec<_>>(),
        [21, 22, 23, 24, 25]
    );
    for &(id, us) in &scheduled {
        assert!(us <= 60_000, "job {id} missed its deadline: {us} µs");
    }
    assert_eq!(hit_rate, 1.0);
}

#[test]
fn a_unit_whose_latency_degrades_is_detected_by_cusum_and_restarted() {
    let mut app = app();
    for id in 1..=8 {
        submit(&mut app, &job(id, "tester", "a", b"fast")).unwrap();
        settle(&mut app);
    }
    assert_eq!(engine_metric(&app, Engine::Health, "degradations"), 0.0);
    // 4 ms jobs against a baseline of microseconds each count for 1.5 baselines (capped at three
    // baselines, less the half-baseline allowance): three leave S at 4.5 baselines, the fourth
    // takes it past 5.
    for id in 9..=11 {
        submit(&mut app, &job(id, "tester", "a", b"slow")).unwrap();
        settle(&mut app);
    }
    assert_eq!(engine_metric(&app, Engine::Health, "degradations"), 0.0);
    submit(&mut app, &job(12, "tester", "a", b"slow")).unwrap();
    settle(&mut app);
    assert_eq!(engine_metric(&app, Engine::Health, "degradations"), 1.0);
    assert_eq!(engine_metric(&app, Engine::Health, "remediations"), 1.0);
    let tree = app.world().resource::<SupervisorTree>();
    assert_eq!(tree.unit("tester").unwrap().restarts, 1);
}

#[test]
fn a_job_over_its_budget_is_answered_budget_exceeded() {
    let mut app = app();
    let mut slow = job(1, "tester", "a", b"slow");
    slow.budget = 1000; // µs; the job sleeps 4 ms
    let mut roomy = job(2, "tester", "a", b"slow");
    roomy.budget = 1_000_000;
    submit(&mut app, &slow).unwrap();
    submit(&mut app, &roomy).unwrap();
    settle(&mut app);
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    let over = queue.take_result(1).unwrap();
    assert_eq!(
        (over.status, over.output.clone()),
        (JobStatus::BudgetExceeded, Payload::Inline(vec![]))
    );
    assert!(over.cost >= 4000 && over.error.contains("budget of 1000"), "{over:?}");
    let within = queue.take_result(2).unwrap();
    assert_eq!(within.status, JobStatus::Success);
    assert!(within.cost >= 4000 && within.execution_time_ns >= 4_000_000);
}

#[test]
fn urgency_and_credits_reorder_the_queue_as_the_seed_scores_them() {
    use inos::supervisors::jobs::SchedulingPolicy;
    let policy = SchedulingPolicy {
        credits: vec![("gold".into(), 3.0), ("broken".into(), f32::NAN)],
    };
    let now = 1_000_000;
    let scored = |priority: u8, deadline_ms: u64, source: &str| {
        let mut j = job(1, "echo", source, b"");
        (j.priority, j.deadline_ms) = (priority, deadline_ms);
        policy.score(&j, now)
    };
    assert_eq!(scored(5, 0, "plain"), 5.0);
    assert_eq!(scored(5, now + 59_999, "plain"), 105.0);
    assert_eq!(scored(5, now + 60_000, "plain"), 55.0);
    assert_eq!(scored(5, now + 300_000, "plain"), 5.0);
    assert_eq!(scored(2, 0, "gold"), 6.0);
    assert_eq!(scored(2, 0, "broken"), 2.0, "a bad multiplier counts as 1");

    let mut app = app();
    app.world_mut().resource_mut::<JobQueue>().scheduling_mut().credits = vec![("gold".into(), 3.0)];
    app.world_mut().resource_mut::<inos::pulse::PulseControl>().paused = true;
    let soon = inos::sab::now_ms() + 30_000;
    for (id, priority, deadline, source) in [
        (1, 9, 0, "plain"),
        (2, 2, 0, "gold"),
        (3, 0, soon, "plain"),
        (4, 5, 0, "plain"),
    ] {
        let mut j = job(id, "echo", source, b"");
        (j.priority, j.deadline_ms) = (priority, deadline);
        submit(&mut app, &j).unwrap();
    }
    app.world_mut().resource_mut::<inos::pulse::PulseControl>().paused = false;
    settle(&mut app);
    let sab = app.world().resource::<Sab>().clone();
    let order: Vec<u64> = sab.job_history().records().unwrap().iter().map(|r| r.job_id).collect();
    // Scores: urgent 100, plain 9, gold 2 × 3 = 6, plain 5.
    assert_eq!(order, [3, 1, 2, 4]);
}

/// A method the unit does not declare in its registry entry is refused at submission, with the
/// methods it does declare, and leaves no trace in the engines' tables; a unit that declares no
/// methods takes any.
#[test]
fn unknown_methods_are_refused_at_submission() {
    let mut app = app();
    let mut nope = job(1, "crypto", "a", b"x");
    nope.method = "mine_bitcoin".into();
    let refused = submit(&mut app, &nope).unwrap_err();
    assert_eq!(
        refused,
        SubmitError::UnknownMethod {
            library: "crypto".into(),
            method: "mine_bitcoin".into(),
            known: "hash, keyed_hash, verify".into(),
        }
    );
    assert!(
        refused.to_string().contains("has no method \"mine_bitcoin\""),
        "{refused}"
    );
    submit(&mut app, &job(2, "crypto", "a", b"x")).unwrap();
    let mut any = job(3, "tester", "a", b"x");
    any.method = "whatever".into();
    submit(&mut app, &any).unwrap();
    settle(&mut app);
    assert_eq!(engine_metric(&app, Engine::Learning, "models"), 2.0);
}

/// The engines learn from the job history in the SAB and nothing else: records written straight
/// into it, by no pipeline, move every engine's figures. An engine that falls behind the ring
/// says how many records it lost.
#[test]
fn every_engine_learns_from_the_job_history_alone() {
    let mut app = app();
    let metric = |app: &App, engine, name| engine_metric(app, engine, name);
    let before = [
        metric(&app, Engine::Learning, "jobs_learned"),
        metric(&app, Engine::Scheduling, "with_deadline"),
        metric(&app, Engine::Security, "ratio_anomalies"),
        metric(&app, Engine::Health, "degradations"),
    ];
    // A unit no supervisor knows: 40 jobs of 1 ms, 100 bytes in and out; then one answering
    // 1 000 times its input (a decompression bomb); then four at 3 ms (a degradation).
    let record = |id: u64, output_bytes: u32, us: u32| JobRecord {
        job_id: 1_000_000 + id,
        unit_hash: 0xD00D,
        method_hash: 1,
        duration_us: us,
        input_bytes: 100,
        output_bytes,
        status: JobStatus::Success.code(),
        deadline_ms: 10,
        source_hash: 7,
        execution_ns: u64::from(us) * 1000,
        cpu_ns: u64::from(us) * 1000,
        ..JobRecord::default()
    };
    let mut records: Vec<JobRecord> = (0..40).map(|i| record(i, 100, 1000)).collect();
    records.push(record(40, 100_000, 1000));
    records.extend((41..45).map(|i| record(i, 100, 3000)));
    let sab = app.world().resource::<Sab>().clone();
    sab.job_history().append(&records, Owner::Kernel).unwrap();
    app.update();
    let after = [
        metric(&app, Engine::Learning, "jobs_learned"),
        metric(&app, Engine::Scheduling, "with_deadline"),
        metric(&app, Engine::Security, "ratio_anomalies"),
        metric(&app, Engine::Health, "degradations"),
    ];
    let learned: Vec<f32> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(
        learned,
        [45.0, 45.0, 1.0, 1.0],
        "learning, scheduling, security, health"
    );

    // More records at once than the ring holds: each engine reads the newest and counts the rest.
    let flood: Vec<JobRecord> = (0..JOB_HISTORY_CAPACITY as u64 + 500)
        .map(|i| record(100 + i, 100, 1000))
        .collect();
    sab.job_history().append(&flood, Owner::Kernel).unwrap();
    app.update();
    for engine in [Engine::Learning, Engine::Scheduling, Engine::Security, Engine::Health] {
        assert_eq!(metric(&app, engine, "history_lost"), 500.0, "{engine:?}");
    }
}
