//! Workflows end to end: a diamond DAG across the echo and crypto units with data passed by SAB
//! offset, topological order, failure confined to the failed step's dependants, every malformed
//! DAG refused, a composite supervisor per running workflow, and many workflows at once.

use bevy::prelude::*;
use inos::headless::{HeadlessConfig, build_app};
use inos::protocol::JobStatus;
use inos::sab::Sab;
use inos::supervisors::workflows::{
    Step, StepInput, StepStatus, Workflow, WorkflowEngine, WorkflowError, WorkflowOutcome,
};

fn app() -> App {
    build_app(HeadlessConfig::kernel())
}

fn submit(app: &mut App, workflow: Workflow) -> Result<(), WorkflowError> {
    let sab = app.world().resource::<Sab>().clone();
    app.world_mut().resource_mut::<WorkflowEngine>().submit(&sab, workflow)
}

fn outcome(app: &mut App, id: u64) -> WorkflowOutcome {
    for _ in 0..200 {
        app.update();
        if let Some(outcome) = app.world_mut().resource_mut::<WorkflowEngine>().take_outcome(id) {
            return outcome;
        }
    }
    panic!("workflow {id} did not end");
}

fn input() -> Vec<u8> {
    (0..1001u32).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn a_diamond_runs_in_topological_order_and_passes_data_by_sab_offset() {
    let mut app = app();
    let sab = app.world().resource::<Sab>().clone();
    let allocations = sab.arena().stats().allocations;
    let data = input();
    let workflow = Workflow {
        id: 7,
        steps: vec![
            Step::new("source", "echo", "echo", StepInput::Inline(data.clone())),
            Step::new("hash", "crypto", "hash", StepInput::Output(0)),
            Step::new("copy", "echo", "echo", StepInput::Output(0)),
            Step::new("hash copy", "crypto", "hash", StepInput::Output(2)).after(&[1]),
        ],
    };
    submit(&mut app, workflow).unwrap();
    // While it runs, the workflow's record (its steps and their states) and the source's output
    // (1 001 bytes, read by two steps) sit in two arena blocks.
    app.update();
    app.update();
    assert_eq!(sab.arena().stats().allocations, allocations + 2);
    let outcome = outcome(&mut app, 7);
    assert!(outcome.succeeded(), "{outcome:?}");
    let digest = blake3::hash(&data).as_bytes().to_vec();
    let outputs: Vec<&[u8]> = outcome.steps.iter().map(|s| s.output.as_slice()).collect();
    assert_eq!(outputs, [&data[..], &digest[..], &data[..], &digest[..]]);
    // Blocks are freed at the end.
    assert_eq!(sab.arena().stats().allocations, allocations);
    // Order: source first, hash copy last, each step after what it depends on.
    let order: Vec<u64> = sab
        .job_history()
        .records()
        .unwrap()
        .iter()
        .map(|r| r.job_id & 0xFFFF)
        .collect();
    assert_eq!(order.first(), Some(&0));
    assert_eq!(order.last(), Some(&3));
    assert_eq!(order.len(), 4);
}

#[test]
fn a_failed_step_fails_its_dependants_and_nothing_else() {
    let mut app = app();
    let workflow = Workflow {
        id: 1,
        steps: vec![
            Step::new("root", "echo", "echo", StepInput::Inline(b"x".to_vec())),
            // Verification without the expected digest: the unit refuses the job.
            Step::new("bad", "crypto", "verify", StepInput::Output(0)),
            Step::new("child", "echo", "echo", StepInput::Output(1)),
            Step::new("grandchild", "echo", "echo", StepInput::Inline(vec![])).after(&[2]),
            Step::new("sibling", "crypto", "hash", StepInput::Output(0)),
            Step::new("nephew", "echo", "echo", StepInput::Output(4)),
        ],
    };
    submit(&mut app, workflow).unwrap();
    let outcome = outcome(&mut app, 1);
    let statuses: Vec<StepStatus> = outcome.steps.iter().map(|s| s.status.clone()).collect();
    assert_eq!(
        statuses,
        [
            StepStatus::Succeeded,
            StepStatus::Failed(JobStatus::InvalidParams),
            StepStatus::Skipped { failed: 1 },
            StepStatus::Skipped { failed: 1 },
            StepStatus::Succeeded,
            StepStatus::Succeeded,
        ]
    );
    assert_eq!(outcome.steps[5].output, blake3::hash(b"x").as_bytes());
    assert!(!outcome.steps[1].error.is_empty());
}

#[test]
fn malformed_workflows_are_refused() {
    let mut app = app();
    let step = |deps: &[usize]| Step::new("s", "echo", "echo", StepInput::Inline(vec![])).after(deps);
    let cases = [
        (vec![], WorkflowError::Size),
        (vec![step(&[1]), step(&[0])], WorkflowError::Cycle(0)),
        (vec![step(&[]), step(&[2]), step(&[1])], WorkflowError::Cycle(1)),
        (
            vec![step(&[0])],
            WorkflowError::BadDependency { step: 0, dependency: 0 },
        ),
        (
            vec![step(&[]), step(&[5])],
            WorkflowError::BadDependency { step: 1, dependency: 5 },
        ),
        (
            vec![Step::new("s", "echo", "echo", StepInput::Output(3))],
            WorkflowError::BadDependency { step: 0, dependency: 3 },
        ),
        (
            vec![Step::new("s", "nobody", "x", StepInput::Inline(vec![]))],
            WorkflowError::UnknownLibrary {
                step: 0,
                library: "nobody".into(),
            },
        ),
        (
            vec![
                step(&[]),
                Step::new("s", "crypto", "no such method", StepInput::Output(0)),
            ],
            WorkflowError::UnknownMethod {
                step: 1,
                library: "crypto".into(),
                method: "no such method".into(),
            },
        ),
    ];
    for (steps, error) in cases {
        assert_eq!(submit(&mut app, Workflow { id: 1, steps }), Err(error));
    }
    submit(
        &mut app,
        Workflow {
            id: 2,
            steps: vec![step(&[])],
        },
    )
    .unwrap();
    assert_eq!(
        submit(
            &mut app,
            Workflow {
                id: 2,
                steps: vec![step(&[])]
            }
        ),
        Err(WorkflowError::DuplicateId(2))
    );
}

#[test]
fn each_running_workflow_has_a_supervisor_header_released_at_the_end() {
    let mut app = app();
    let steps = (0..4)
        .map(|i| {
            let input = if i == 0 {
                StepInput::Inline(b"chain".to_vec())
            } else {
                StepInput::Output(i - 1)
            };
            Step::new("link", "echo", "echo", input)
        })
        .collect();
    submit(&mut app, Workflow { id: 42, steps }).unwrap();
    app.update();
    app.update();
    let sab = app.world().resource::<Sab>().clone();
    let hash = crc32c::crc32c(b"wf/42");
    let slot = sab.supervisors().find(hash).expect("a slot while it runs");
    let header = sab.supervisors().header(slot.slot).unwrap();
    assert_eq!(header.name(), "wf/42");
    assert!(header.jobs_processed >= 1 && header.queue_depth >= 1, "{header:?}");
    let outcome = outcome(&mut app, 42);
    assert_eq!(outcome.steps[3].output, b"chain");
    assert!(sab.supervisors().find(hash).is_none());
}

#[test]
fn fifty_workflows_run_side_by_side() {
    let mut app = app();
    for id in 0..50u64 {
        let steps = vec![
            Step::new("a", "echo", "echo", StepInput::Inline(id.to_le_bytes().to_vec())),
            Step::new("b", "crypto", "hash", StepInput::Output(0)),
            Step::new("c", "echo", "echo", StepInput::Output(1)),
        ];
        submit(&mut app, Workflow { id, steps }).unwrap();
    }
    for _ in 0..10 {
        app.update();
    }
    let mut engine = app.world_mut().resource_mut::<WorkflowEngine>();
    for id in 0..50u64 {
        let outcome = engine.take_outcome(id).unwrap_or_else(|| panic!("workflow {id} ended"));
        assert_eq!(outcome.steps[2].output, blake3::hash(&id.to_le_bytes()).as_bytes());
    }
    assert_eq!(engine.running(), 0);
    assert_eq!(engine.stats.steps_finished, 150);
    assert!(engine.stats.per_step() > std::time::Duration::ZERO);
}
