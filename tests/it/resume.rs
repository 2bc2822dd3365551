//! A snapshot resumes the whole system: queued and in-flight jobs, a running workflow, the
//! supervisor tree and the engines' models, taken up by a new app from the file alone.

use std::collections::BTreeMap;
use std::path::Path;

use bevy::prelude::*;
use inos::engines::learning::{LearningEngine, LearningState};
use inos::engines::scheduling::SchedulingEngine;
use inos::headless::{HeadlessConfig, build_app, build_app_with};
use inos::protocol::{Job, JobStatus, Payload};
use inos::sab::lifecycle::{LifecycleAction, LifecycleRequest};
use inos::sab::{Owner, RingId, Sab};
use inos::supervisors::jobs::{JobPipelineSystems, JobQueue};
use inos::supervisors::tree::{Lifecycle, SupervisorTree};
use inos::supervisors::workflows::{Step, StepInput, StepStatus, Workflow, WorkflowEngine};
use inos::units::host::JobHostSystems;

const QUEUED: u64 = 1000;
const IN_FLIGHT: u64 = 100;
const WORKFLOW: u64 = 77;

/// Where the first app takes its snapshot: on the tick it is armed for, between the kernel's
/// dispatch and the units' run, so that jobs are on the inbox ring, sent and not answered. The
/// engines' states are kept as they were then.
#[derive(Resource)]
struct SnapshotAt {
    file: std::path::PathBuf,
    armed: bool,
    engines: Option<(LearningState, SchedulingEngine)>,
}

fn snapshot_mid_tick(
    sab: Res<Sab>,
    mut at: ResMut<SnapshotAt>,
    learning: Res<LearningEngine>,
    scheduling: Res<SchedulingEngine>,
) {
    if std::mem::take(&mut at.armed) {
        sab.write_snapshot(&at.file).expect("the snapshot is written");
        at.engines = Some((learning.state, *scheduling));
    }
}

fn echo(id: u64) -> Job {
    Job::new(id, "echo", "echo", Payload::Inline(id.to_le_bytes().to_vec()))
}

fn crypto(id: u64) -> Job {
    Job::new(id, "crypto", "hash", Payload::Inline(id.to_le_bytes().to_vec()))
}

fn submit(app: &mut App, job: &Job) {
    let sab = app.world().resource::<Sab>().clone();
    app.world_mut()
        .resource_mut::<JobQueue>()
        .submit(&sab, job)
        .unwrap_or_else(|e| panic!("job {}: {e}", job.id));
}

fn lifecycle(app: &App, unit: &str, action: LifecycleAction) {
    let sab = app.world().resource::<Sab>();
    sab.request_lifecycle(Owner::Host, LifecycleRequest::new(unit, action))
        .expect("the lifecycle ring takes a request");
}

fn chain() -> Workflow {
    Workflow {
        id: WORKFLOW,
        steps: vec![
            Step::new("a", "echo", "echo", StepInput::Inline(b"chained".to_vec())),
            Step::new("b", "echo", "echo", StepInput::Output(0)),
            Step::new("c", "crypto", "hash", StepInput::Output(1)),
        ],
    }
}

/// Takes every result there is now; each id may be answered only once.
fn take_all(app: &mut App, ids: impl Iterator<Item = u64>, answered: &mut BTreeMap<u64, Vec<u8>>) {
    let sab = app.world().resource::<Sab>().clone();
    let mut queue = app.world_mut().resource_mut::<JobQueue>();
    for id in ids {
        if let Some(outcome) = queue.take_result(id) {
            assert_eq!(outcome.status, JobStatus::Success, "job {id}: {}", outcome.error);
            let output = outcome.output.bytes(&sab).expect("the output is readable");
            assert!(answered.insert(id, output).is_none(), "job {id} was answered twice");
        }
    }
}

fn run(dir: &Path) {
    let file = dir.join("resume.snap");
    let config = HeadlessConfig::kernel();
    let mut first = build_app_with(config.clone(), |app| {
        app.insert_resource(SnapshotAt {
            file: file.clone(),
            armed: false,
            engines: None,
        })
        .add_systems(
            FixedUpdate,
            snapshot_mid_tick
                .after(JobPipelineSystems::Dispatch)
                .before(JobHostSystems::Run),
        );
    });
    first
        .world()
        .resource::<Sab>()
        .admission()
        .configure(u32::MAX, u32::MAX);
    let mut answered = BTreeMap::new();

    // Warm-up: jobs the engines learn from before the snapshot, answered and taken.
    for id in 1..=200 {
        submit(&mut first, &echo(id));
    }
    first.update();
    take_all(&mut first, 1..=200, &mut answered);
    assert_eq!(answered.len(), 200);

    // The workflow's first step runs; then the crypto unit pauses.
    let sab = first.world().resource::<Sab>().clone();
    first
        .world_mut()
        .resource_mut::<WorkflowEngine>()
        .submit(&sab, chain())
        .unwrap();
    first.update();
    first.update();
    lifecycle(&first, "crypto", LifecycleAction::Pause);
    first.update();
    let crypto_paused = |app: &App| {
        app.world()
            .resource::<SupervisorTree>()
            .unit("crypto")
            .unwrap()
            .lifecycle
    };
    assert_eq!(crypto_paused(&first), Lifecycle::Paused);

    // 1 000 crypto jobs wait for the paused unit; 100 echo jobs are sent on the snapshot's tick.
    let (queued, in_flight) = (1001..=1000 + QUEUED, 5001..=5000 + IN_FLIGHT);
    for id in queued.clone() {
        submit(&mut first, &crypto(id));
    }
    for id in in_flight.clone() {
        submit(&mut first, &echo(id));
    }
    first.world_mut().resource_mut::<SnapshotAt>().armed = true;
    first.update();
    let (learned, scheduled) = first
        .world()
        .resource::<SnapshotAt>()
        .engines
        .expect("the snapshot was taken");
    let workflows = first.world().resource::<WorkflowEngine>().running();
    assert!(learned.jobs_learned >= 200, "{learned:?}");
    assert_eq!(workflows, 1, "the workflow is still running at the snapshot");
    drop(first);

    // A new app over the file alone.
    let sab = Sab::resume(&file).expect("the snapshot loads");
    // The unit took the sent jobs off the inbox ring and died before it answered: only the
    // kernel's job table still knows them.
    let inbox = sab.ring(RingId::Inbox);
    let mut taken = 0;
    inbox
        .consumer()
        .expect("the resumed SAB's inbox has no consumer")
        .drain(&mut vec![0; inbox.max_payload()], |_| taken += 1);
    assert_eq!(taken, IN_FLIGHT, "the sent echo jobs were on the inbox ring");
    let jobs = sab.job_table().live().count();
    assert!(
        jobs as u64 >= QUEUED + IN_FLIGHT,
        "the job table holds the queued and the sent jobs: {jobs}"
    );
    let mut second = build_app(HeadlessConfig {
        sab: Some(sab),
        ..config
    });
    assert_eq!(
        second.world().resource::<JobQueue>().in_flight() as u64,
        QUEUED + IN_FLIGHT + 1,
        "every unanswered job, the workflow's running step included, is back in the queue"
    );
    assert_eq!(second.world().resource::<WorkflowEngine>().running(), 1);
    let resumed = second.world().resource::<LearningEngine>().state;
    assert_eq!(resumed, learned, "the learning engine's state is the saved one");
    assert_eq!(
        second.world().resource::<SchedulingEngine>().finished,
        scheduled.finished
    );
    // The first tick: the tree takes up its units; the paused one's jobs stay queued.
    second.update();
    take_all(&mut second, queued.clone().chain(in_flight.clone()), &mut answered);
    assert_eq!(crypto_paused(&second), Lifecycle::Paused, "the tree kept the pause");
    assert_eq!(second.world().resource::<JobQueue>().queued() as u64, QUEUED + 1);
    lifecycle(&second, "crypto", LifecycleAction::Resume);

    let mut outcome = None;
    for _ in 0..200 {
        second.update();
        take_all(&mut second, queued.clone().chain(in_flight.clone()), &mut answered);
        outcome = outcome.or_else(|| {
            second
                .world_mut()
                .resource_mut::<WorkflowEngine>()
                .take_outcome(WORKFLOW)
        });
        if answered.len() as u64 == 200 + QUEUED + IN_FLIGHT && outcome.is_some() {
            break;
        }
    }
    assert_eq!(
        answered.len() as u64,
        200 + QUEUED + IN_FLIGHT,
        "every job is answered once"
    );
    for (id, output) in &answered {
        let expected = match *id {
            id if queued.contains(&id) => blake3::hash(&id.to_le_bytes()).as_bytes().to_vec(),
            id => id.to_le_bytes().to_vec(),
        };
        assert_eq!(output, &expected, "job {id}'s output");
    }
    let outcome = outcome.expect("the workflow finished after the resume");
    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.steps[1].output, b"chained");
    assert_eq!(outcome.steps[2].status, StepStatus::Succeeded);
    assert_eq!(outcome.steps[2].output, blake3::hash(b"chained").as_bytes());
    // Nothing is answered twice: no result is left to take, and the queue holds nothing.
    take_all(&mut second, queued.clone().chain(in_flight.clone()), &mut answered);
    let queue = second.world().resource::<JobQueue>();
    assert_eq!((queue.in_flight(), queue.queued()), (0, 0));
    assert_eq!(second.world().resource::<Sab>().job_table().live().count(), 0);

    let carried = second.world().resource::<LearningEngine>().state;
    assert!(
        carried.jobs_learned >= learned.jobs_learned + QUEUED + IN_FLIGHT,
        "the learning engine carried on from {} to {}",
        learned.jobs_learned,
        carried.jobs_learned
    );
    assert!(second.world().resource::<SchedulingEngine>().finished >= scheduled.finished + QUEUED + IN_FLIGHT);
}

#[test]
fn a_snapshot_resumes_jobs_workflows_the_tree_and_the_engines() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path());
}

/// A job table from an untrusted snapshot: a queued job whose frame does not decode is answered
/// `Crashed` when the kernel takes the table up, never sent; the good one next to it runs.
#[test]
fn a_corrupt_job_in_a_resumed_table_is_answered_not_sent() {
    use inos::sab::job_table::{JobSlot, JobState};
    let sab = Sab::for_tier(inos::sab::Tier::Light);
    let table = sab.job_table();
    let queued = |wire, job_id| JobSlot {
        wire,
        job_id,
        state: JobState::Queued as u8,
        ..JobSlot::default()
    };
    table.write(0, queued(1, 10), b"not a job frame").unwrap();
    // On the wire a job carries the kernel's id (its slot's wire id), not its caller's.
    let on_the_wire = Job { id: 2, ..echo(11) };
    table.write(1, queued(2, 11), &on_the_wire.encode()).unwrap();
    table.set_sequence(2);
    let mut app = build_app(HeadlessConfig {
        sab: Some(sab.clone()),
        ..HeadlessConfig::kernel()
    });
    let broken = app
        .world_mut()
        .resource_mut::<JobQueue>()
        .take_result(10)
        .expect("answered at once");
    assert_eq!(broken.status, JobStatus::Crashed);
    assert!(broken.error.contains("does not decode"), "{}", broken.error);
    for _ in 0..3 {
        app.update();
    }
    let good = app
        .world_mut()
        .resource_mut::<JobQueue>()
        .take_result(11)
        .expect("the good job ran");
    assert_eq!(good.status, JobStatus::Success);
    assert_eq!(good.output.bytes(&sab).unwrap(), 11u64.to_le_bytes());
    assert_eq!(sab.job_table().live().count(), 0);
}
