//! The supervisor tree in a headless app, with fault injection: a unit that panics on every Nth
//! job is restarted by each strategy with exact counts, too many restarts escalate, a unit that
//! stops heartbeating becomes a Zombie and is restarted, the circuit breaker refuses and probes,
//! lifecycle requests on the SAB's ring act, and late registrations get a supervisor.

use std::time::Duration;

use bevy::prelude::*;
use inos::headless::{HeadlessConfig, build_app_with};
use inos::protocol::{Job, JobOutcome, JobStatus, Payload};
use inos::sab::lifecycle::{LifecycleAction, LifecycleRequest};
use inos::sab::supervisors::{BreakerState, Lifecycle};
use inos::sab::{ModuleSpec, Owner, RingId, Sab, SupervisorStatus};
use inos::supervisors::jobs::{JobQueue, SubmitError};
use inos::supervisors::tree::{
    self, Intensity, LifecycleRequests, RestartPolicies, RestartPolicy, Strategy, SupervisionConfig, SupervisorTree,
    UnitRestarted,
};
use inos::units::RegisterUnitExt;

/// Test units' job entry point: the input's first byte injects the fault.
fn faulty(_: &Sab, job: &Job) -> JobOutcome {
    match &job.input {
        Payload::Inline(bytes) if bytes.first() == Some(&b'p') => panic!("injected fault in job {}", job.id),
        Payload::Inline(bytes) if bytes.first() == Some(&b'f') => {
            JobOutcome::failed(job.id, JobStatus::Failed, "injected failure")
        }
        _ => JobOutcome::new(job.id, JobStatus::Success, Payload::Inline(vec![])),
    }
}

/// Whether the `beater` unit has stopped beating (a restart cures it).
#[derive(Resource, Default)]
struct Hang(bool);

fn beater(sab: Res<Sab>, hang: Res<Hang>) {
    if !hang.0 {
        sab.heartbeats().beat_unit("beater");
    }
}

fn cure(mut restarted: MessageReader<UnitRestarted>, mut hang: ResMut<Hang>) {
    if restarted.read().any(|r| r.unit == "beater") {
        hang.0 = false;
    }
}

/// The core plus units alpha, faulty and omega (started in that order around crypto and echo),
/// and the heartbeating `beater`, with `config`.
fn app(config: SupervisionConfig, policies: &[(&str, RestartPolicy)]) -> App {
    let headless = HeadlessConfig::kernel();
    let policies = RestartPolicies(policies.iter().map(|(u, p)| (u.to_string(), *p)).collect());
    let mut app = build_app_with(headless, |app| {
        app.insert_resource(config)
            .insert_resource(policies)
            .init_resource::<Hang>()
            .register_unit(ModuleSpec::cpu_unit(
                "beater",
                1,
                &[inos::sab::heartbeats::PULSE_HEARTBEAT],
            ))
            .add_systems(
                FixedUpdate,
                (cure, beater.run_if(tree::unit_running("beater")))
                    .chain()
                    .after(inos::pulse::PulseSystems)
                    .before(tree::SupervisorTreeSystems),
            );
        for unit in ["alpha", "faulty", "omega"] {
            app.register_job_unit(ModuleSpec::cpu_unit(unit, 1, &[]), faulty);
        }
    });
    app.update();
    app
}

fn config(strategy: Strategy, max_restarts: u32) -> SupervisionConfig {
    SupervisionConfig {
        strategy,
        intensity: Intensity {
            max_restarts,
            period: Duration::from_secs(60),
        },
        ..SupervisionConfig::default()
    }
}

fn submit(app: &mut App, id: u64, unit: &str, input: &[u8]) -> Result<(), SubmitError> {
    let sab = app.world().resource::<Sab>().clone();
    // The test units declare no methods and take any; echo's one method is "echo".
    let method = if unit == "echo" { "echo" } else { "run" };
    let job = Job::new(id, unit, method, Payload::Inline(input.to_vec()));
    app.world_mut().resource_mut::<JobQueue>().submit(&sab, &job)
}

/// Updates until job `id` has a result (at most 1 000 ticks).
fn result(app: &mut App, id: u64) -> JobOutcome {
    for _ in 0..1000 {
        if let Some(outcome) = app.world_mut().resource_mut::<JobQueue>().take_result(id) {
            return outcome;
        }
        app.update();
    }
    panic!("job {id} has no result after 1000 ticks");
}

fn run(app: &mut App, id: u64, unit: &str, input: &[u8]) -> JobOutcome {
    submit(app, id, unit, input).unwrap();
    result(app, id)
}

/// Restarts per unit, in start order: alpha, beater, crypto, echo, faulty, omega.
fn restarts(app: &App) -> Vec<u32> {
    let tree = app.world().resource::<SupervisorTree>();
    tree.units.iter().map(|u| u.restarts).collect()
}

fn header(app: &App, unit: &str) -> inos::sab::SupervisorHeader {
    let tree = app.world().resource::<SupervisorTree>();
    let slot = tree.unit(unit).unwrap_or_else(|| panic!("{unit} is supervised")).slot;
    app.world().resource::<Sab>().supervisors().header(slot.slot).unwrap()
}

/// Twenty jobs one after the other on `faulty`, every fourth panicking.
fn every_fourth_job_panics(app: &mut App) {
    for id in 1..=20u64 {
        let outcome = run(app, id, "faulty", if id % 4 == 0 { b"p" } else { b"ok" });
        if id % 4 == 0 {
            assert_eq!(outcome.status, JobStatus::Crashed, "job {id}");
            assert!(outcome.error.contains("injected fault"), "{}", outcome.error);
            app.update();
            let h = header(app, "faulty");
            assert_eq!(h.status, SupervisorStatus::Zombie as u8, "job {id}");
            assert_eq!(h.lifecycle, Lifecycle::Restarting as u8, "job {id}");
        } else {
            assert_eq!(outcome.status, JobStatus::Success, "job {id}: {}", outcome.error);
        }
    }
}

#[test]
fn units_start_in_dependency_order_with_a_supervisor_and_header_each() {
    let app = app(SupervisionConfig::default(), &[]);
    let tree = app.world().resource::<SupervisorTree>();
    let names: Vec<String> = tree.units.iter().map(|u| u.unit.clone()).collect();
    assert_eq!(names, ["alpha", "beater", "crypto", "echo", "faulty", "omega"]);
    for unit in &names {
        let h = header(&app, unit);
        assert_eq!(h.name(), *unit);
        assert_eq!(h.lifecycle, Lifecycle::Running as u8);
        assert!(h.runs > 0 && h.last_heartbeat_ms > 0, "{unit}: {h:?}");
    }
    let sab = app.world().resource::<Sab>();
    let root = sab
        .supervisors()
        .find(crc32c::crc32c(tree::ROOT_ID.as_bytes()))
        .unwrap();
    assert_eq!(sab.supervisors().header(root.slot).unwrap().name(), "root");
}

#[test]
fn one_for_one_restarts_only_the_crashed_unit_once_per_crash() {
    let mut app = app(config(Strategy::OneForOne, 10), &[]);
    every_fourth_job_panics(&mut app);
    assert_eq!(restarts(&app), [0, 0, 0, 0, 5, 0]);
    assert_eq!(header(&app, "faulty").restarts, 5);
    let tree = app.world().resource::<SupervisorTree>();
    let faulty = tree.unit("faulty").unwrap();
    assert_eq!((faulty.crashes, faulty.jobs_processed, faulty.jobs_failed), (5, 20, 5));
    assert!(!tree.escalated);
}

#[test]
fn one_for_all_restarts_every_unit_but_stops_temporary_bystanders() {
    let mut app = app(config(Strategy::OneForAll, 10), &[("omega", RestartPolicy::Temporary)]);
    every_fourth_job_panics(&mut app);
    assert_eq!(restarts(&app), [5, 5, 5, 5, 5, 0]);
    assert_eq!(header(&app, "omega").lifecycle, Lifecycle::Stopped as u8);
    assert_eq!(
        submit(&mut app, 99, "omega", b"ok"),
        Err(SubmitError::UnitStopped("omega".into()))
    );
    // The others run jobs again.
    assert_eq!(run(&mut app, 100, "echo", b"back").status, JobStatus::Success);
}

#[test]
fn rest_for_one_restarts_the_crashed_unit_and_those_started_after_it() {
    let mut app = app(config(Strategy::RestForOne, 10), &[]);
    every_fourth_job_panics(&mut app);
    assert_eq!(restarts(&app), [0, 0, 0, 0, 5, 5]);
}

#[test]
fn more_restarts_than_the_intensity_escalate_and_stop_every_unit_until_spawned() {
    let mut app = app(config(Strategy::OneForOne, 2), &[]);
    for id in 1..=3 {
        assert_eq!(run(&mut app, id, "faulty", b"p").status, JobStatus::Crashed);
        app.update();
    }
    let tree = app.world().resource::<SupervisorTree>();
    assert!(tree.escalated);
    assert_eq!(tree.escalations, 1);
    assert_eq!(tree.unit("faulty").unwrap().restarts, 2);
    assert!(tree.units.iter().all(|u| u.lifecycle == Lifecycle::Stopped));
    let sab = app.world().resource::<Sab>().clone();
    let root = sab
        .supervisors()
        .find(crc32c::crc32c(tree::ROOT_ID.as_bytes()))
        .unwrap();
    assert_eq!(
        sab.supervisors().header(root.slot).unwrap().status,
        SupervisorStatus::Zombie as u8
    );
    assert_eq!(
        submit(&mut app, 10, "echo", b"x"),
        Err(SubmitError::UnitStopped("echo".into()))
    );

    request(&mut app, "echo", LifecycleAction::Spawn);
    app.update();
    app.update();
    assert!(!app.world().resource::<SupervisorTree>().escalated);
    assert_eq!(run(&mut app, 11, "echo", b"x").status, JobStatus::Success);
    assert_eq!(header(&app, "echo").lifecycle, Lifecycle::Running as u8);
}

#[test]
fn a_unit_that_stops_heartbeating_becomes_a_zombie_and_is_restarted() {
    let mut app = app(SupervisionConfig::default(), &[]);
    for _ in 0..10 {
        app.update();
    }
    assert_eq!(header(&app, "beater").status, SupervisorStatus::Healthy as u8);
    app.world_mut().resource_mut::<Hang>().0 = true;
    // The timeout is 32 pulses without a beat: the 33rd pulse finds it hung.
    for _ in 0..32 {
        app.update();
    }
    assert_eq!(header(&app, "beater").status, SupervisorStatus::Healthy as u8);
    app.update();
    let h = header(&app, "beater");
    assert_eq!(
        (h.status, h.lifecycle),
        (SupervisorStatus::Zombie as u8, Lifecycle::Restarting as u8)
    );
    assert_eq!(
        app.world().resource::<SupervisorTree>().unit("beater").unwrap().hangs,
        1
    );
    // After its back-off it restarts, is cured, and beats again.
    for _ in 0..40 {
        app.update();
    }
    let h = header(&app, "beater");
    assert_eq!(
        (h.status, h.lifecycle, h.restarts),
        (SupervisorStatus::Healthy as u8, 0, 1)
    );
    assert!(!app.world().resource::<Hang>().0);
    let beats = app.world().resource::<Sab>().heartbeats();
    let slot = app
        .world()
        .resource::<SupervisorTree>()
        .unit("beater")
        .unwrap()
        .registry_slot;
    assert!(beats.read(slot).unwrap().beats > 30);
}

#[test]
fn the_circuit_breaker_refuses_jobs_while_open_and_closes_after_a_good_probe() {
    let mut app = app(SupervisionConfig::default(), &[]);
    for id in 1..=5 {
        assert_eq!(run(&mut app, id, "faulty", b"f").status, JobStatus::Failed);
    }
    app.update();
    assert_eq!(header(&app, "faulty").breaker, BreakerState::Open as u8);
    assert_eq!(header(&app, "faulty").status, SupervisorStatus::Degraded as u8);
    assert_eq!(
        submit(&mut app, 6, "faulty", b"ok"),
        Err(SubmitError::CircuitOpen("faulty".into()))
    );
    // Other units are unaffected.
    assert_eq!(run(&mut app, 7, "alpha", b"ok").status, JobStatus::Success);
    // After the 2 s cooldown (128 pulses) it half-opens: one probe at a time.
    for _ in 0..130 {
        app.update();
    }
    assert_eq!(header(&app, "faulty").breaker, BreakerState::HalfOpen as u8);
    submit(&mut app, 8, "faulty", b"ok").unwrap();
    assert_eq!(
        submit(&mut app, 9, "faulty", b"ok"),
        Err(SubmitError::CircuitOpen("faulty".into()))
    );
    assert_eq!(result(&mut app, 8).status, JobStatus::Success);
    app.update();
    assert_eq!(header(&app, "faulty").breaker, BreakerState::Closed as u8);
    assert_eq!(run(&mut app, 9, "faulty", b"ok").status, JobStatus::Success);
}

#[test]
fn lifecycle_requests_pause_resume_kill_spawn_and_snapshot_a_unit() {
    let mut app = app(SupervisionConfig::default(), &[]);
    let command = |app: &mut App, action| {
        request(app, "echo", action);
        app.update();
    };
    command(&mut app, LifecycleAction::Pause);
    assert_eq!(header(&app, "echo").lifecycle, Lifecycle::Paused as u8);
    submit(&mut app, 1, "echo", b"held").unwrap();
    for _ in 0..20 {
        app.update();
    }
    assert!(app.world_mut().resource_mut::<JobQueue>().take_result(1).is_none());
    command(&mut app, LifecycleAction::Resume);
    assert_eq!(result(&mut app, 1).status, JobStatus::Success);

    command(&mut app, LifecycleAction::Kill);
    assert_eq!(header(&app, "echo").lifecycle, Lifecycle::Stopped as u8);
    assert_eq!(
        submit(&mut app, 2, "echo", b"x"),
        Err(SubmitError::UnitStopped("echo".into()))
    );
    command(&mut app, LifecycleAction::Spawn);
    app.update();
    assert_eq!(header(&app, "echo").lifecycle, Lifecycle::Running as u8);
    assert_eq!(run(&mut app, 2, "echo", b"x").status, JobStatus::Success);

    command(&mut app, LifecycleAction::Snapshot);
    let tree = app.world().resource::<SupervisorTree>();
    let snapshot = tree.snapshots.last().unwrap();
    assert_eq!(
        (snapshot.unit.as_str(), snapshot.header.name()),
        ("echo", "echo".into())
    );
    assert_eq!(snapshot.header.jobs_processed, 2);
}

#[test]
fn a_unit_registered_late_gets_a_supervisor_and_one_that_leaves_loses_it() {
    let mut app = app(SupervisionConfig::default(), &[]);
    let sab = app.world().resource::<Sab>().clone();
    sab.registry()
        .register(&ModuleSpec::cpu_unit("late", 1, &[]), Owner::Module)
        .unwrap();
    app.update();
    app.update();
    assert_eq!(header(&app, "late").name(), "late");
    sab.registry().unregister("late", Owner::Module).unwrap();
    app.update();
    app.update();
    assert!(app.world().resource::<SupervisorTree>().unit("late").is_none());
}

#[test]
fn only_units_that_promise_a_beat_every_pulse_can_be_found_hung() {
    let headless = HeadlessConfig::kernel();
    // Both beat for the first 5 pulses and then go quiet, as a unit driven by a stalled input
    // would; only the one with `heartbeat:pulse` has broken a promise.
    let mut app = build_app_with(headless, |app| {
        app.register_unit(ModuleSpec::cpu_unit("idler", 1, &[]))
            .register_unit(ModuleSpec::cpu_unit(
                "promiser",
                1,
                &[inos::sab::heartbeats::PULSE_HEARTBEAT],
            ))
            .add_systems(FixedUpdate, |sab: Res<Sab>| {
                if sab.epochs().load(inos::sab::EpochIndex::SYSTEM_PULSE) < 5 {
                    sab.heartbeats().beat_unit("idler");
                    sab.heartbeats().beat_unit("promiser");
                }
            });
    });
    for _ in 0..100 {
        app.update();
    }
    let tree = app.world().resource::<SupervisorTree>();
    assert_eq!(tree.unit("idler").unwrap().hangs, 0);
    assert!(tree.unit("promiser").unwrap().hangs >= 1);
}

#[test]
fn a_bystander_the_operator_killed_stays_killed_when_a_sibling_crashes() {
    let mut app = app(config(Strategy::OneForAll, 10), &[]);
    request(&mut app, "alpha", LifecycleAction::Kill);
    app.update();
    assert_eq!(run(&mut app, 1, "faulty", b"p").status, JobStatus::Crashed);
    for _ in 0..10 {
        app.update();
    }
    assert_eq!(restarts(&app), [0, 1, 1, 1, 1, 1]);
    assert_eq!(header(&app, "alpha").lifecycle, Lifecycle::Stopped as u8);
    assert_eq!(header(&app, "echo").lifecycle, Lifecycle::Running as u8);
}

/// Whether the `sick` unit has stopped beating.
#[derive(Resource, Default)]
struct Silent(bool);

fn sick_beats(sab: Res<Sab>, silent: Res<Silent>) {
    if !silent.0 {
        sab.heartbeats().beat_unit("sick");
    }
}

/// The core and `sick`: a job unit (jobs fail on input `f`) that promises a heartbeat every pulse
/// and beats until `Silent` says otherwise.
fn sick_app() -> App {
    let mut app = build_app_with(HeadlessConfig::kernel(), |app| {
        app.init_resource::<Silent>()
            .register_job_unit(
                ModuleSpec::cpu_unit("sick", 1, &[inos::sab::heartbeats::PULSE_HEARTBEAT]),
                faulty,
            )
            .add_systems(
                FixedUpdate,
                sick_beats
                    .run_if(tree::unit_running("sick"))
                    .after(inos::pulse::PulseSystems)
                    .before(tree::SupervisorTreeSystems),
            );
    });
    for _ in 0..10 {
        app.update();
    }
    app
}

/// Runs `sick` for up to `pulses` pulses with `failing` jobs submitted first and beats stopped
/// when `silent`; returns the pulse (after the first) at which the health engine restarted it.
fn hazard_remediation(failing: u64, silent: bool, pulses: u32) -> (Option<u32>, u32, u32) {
    use inos::engines::health::HealthEngine;
    let mut app = sick_app();
    let sab = app.world().resource::<Sab>().clone();
    for id in 1..=failing {
        let job = Job::new(id, "sick", "run", Payload::Inline(b"f".to_vec()));
        app.world_mut().resource_mut::<JobQueue>().submit(&sab, &job).unwrap();
    }
    app.update();
    app.world_mut().resource_mut::<Silent>().0 = silent;
    let fired = (1..=pulses).find(|_| {
        app.update();
        app.world().resource::<HealthEngine>().state.remediations > 0
    });
    // The tree acts on the engine's command in the next tick.
    app.update();
    let unit = app.world().resource::<SupervisorTree>().unit("sick").unwrap();
    (fired, unit.restarts, unit.hangs)
}

/// A unit whose jobs fail and which has stopped beating is restarted by the health engine's
/// hazard halfway to the tree's heartbeat timeout (32 pulses), before the tree would find it a
/// Zombie.
#[test]
fn the_hazard_restarts_a_unit_that_fails_while_silent() {
    let (fired, restarts, hangs) = hazard_remediation(2, true, 40);
    let fired = fired.expect("the hazard fired");
    assert!((17..=18).contains(&fired), "fired after {fired} silent pulses");
    assert_eq!((restarts, hangs), (1, 0));
}

/// Failing jobs from a unit that beats, or silence without failures, do not raise the hazard:
/// the first is the breaker's business, the second the tree's (its Zombie restart on the 33rd
/// silent pulse).
#[test]
fn the_hazard_holds_still_on_one_symptom_alone() {
    let (fired, restarts, _) = hazard_remediation(3, false, 60);
    assert_eq!((fired, restarts), (None, 0));
    let (fired, restarts, hangs) = hazard_remediation(0, true, 40);
    assert_eq!((fired, restarts, hangs), (None, 1, 1));
}

/// Asks the supervisor tree for `action` on `unit` the way the inspector and the health engine do:
/// a request on the SAB's lifecycle ring.
fn request(app: &mut App, unit: &str, action: LifecycleAction) {
    let sab = app.world().resource::<Sab>().clone();
    sab.request_lifecycle(Owner::Host, LifecycleRequest::new(unit, action))
        .unwrap();
}

/// The lifecycle ring admits only its writers (the kernel and the host); frames that are no request
/// are counted and skipped, and the requests around them still act, in order.
#[test]
fn the_lifecycle_ring_skips_what_is_no_request_and_admits_only_its_writers() {
    let mut app = app(SupervisionConfig::default(), &[]);
    let sab = app.world().resource::<Sab>().clone();
    let pause = LifecycleRequest::new("echo", LifecycleAction::Pause);
    assert!(
        sab.request_lifecycle(Owner::Module, pause).is_err(),
        "a unit cannot ask for lifecycles"
    );
    let mut producer = sab.ring(RingId::Lifecycle).producer(Owner::Host).unwrap();
    producer.push(b"abc").unwrap();
    producer
        .push(bytemuck::bytes_of(&LifecycleRequest { action: 99, ..pause }))
        .unwrap();
    producer.push(bytemuck::bytes_of(&pause)).unwrap();
    producer.publish().unwrap();
    drop(producer);
    app.update();
    assert_eq!(app.world().resource::<LifecycleRequests>().malformed, 2);
    assert_eq!(header(&app, "echo").lifecycle, Lifecycle::Paused as u8);
}
