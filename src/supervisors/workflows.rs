//! Workflows: DAGs of jobs across units, each run under its own composite supervisor.
//!
//! - **Submission** checks the DAG: steps exist, dependencies name earlier-or-later steps but not
//!   themselves, no cycle (Kahn's algorithm), every library is registered, the id is free.
//! - **Order.** A step is submitted to the job queue once every step it depends on has succeeded,
//!   so steps run in a topological order, independent branches side by side.
//! - **Data by SAB offset.** A step that takes another step's output (`StepInput::Output`) gets a
//!   `Payload::Sab` range: the producing step's output is written once into an arena block and
//!   every consumer reads it in place. Blocks are freed when the workflow ends.
//! - **Failure.** A failed step fails the steps that depend on it, directly or not (`Skipped`,
//!   naming the failed step); steps on other branches run on. Nothing outside the workflow is
//!   touched.
//! - **Supervision.** Each running workflow holds a slot in the supervisor table (`wf/<id>`) and
//!   rewrites its header as steps finish (steps done and failed, status); the slot is released
//!   when the workflow ends.
//! - The engine measures its own coordination time per step (DAG bookkeeping, arena copies,
//!   submissions), which `inos bench` reports.

use std::collections::VecDeque;

use bevy::platform::collections::HashMap;
use std::time::Duration;

use bevy::platform::time::Instant;
use bevy::prelude::*;

use crate::protocol::{Job, JobParams, JobStatus, Payload, SabRange};
use crate::sab::supervisors::SupervisorSlot;
use crate::sab::{Owner, Sab, SupervisorHeader, SupervisorStatus, now_ms};
use crate::supervisors::jobs::{JobPipelineSystems, JobQueue, SubmitError};
use crate::supervisors::tree::SupervisorTreeSystems;

/// Where a step's input comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum StepInput {
    Inline(Vec<u8>),
    Sab(SabRange),
    /// The output of step `n` of the same workflow (which the step then depends on).
    Output(usize),
}

/// One job of a workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub name: String,
    pub library: String,
    pub method: String,
    pub input: StepInput,
    pub params: JobParams,
    /// Steps (by index) that must succeed first.
    pub after: Vec<usize>,
}

impl Step {
    pub fn new(name: &str, library: &str, method: &str, input: StepInput) -> Self {
        Self {
            name: name.into(),
            library: library.into(),
            method: method.into(),
            input,
            params: JobParams::None,
            after: Vec::new(),
        }
    }

    pub fn after(mut self, steps: &[usize]) -> Self {
        self.after.extend_from_slice(steps);
        self
    }

    /// Every step this one waits for: `after`, and the step whose output it takes.
    fn dependencies(&self) -> impl Iterator<Item = usize> + '_ {
        let output = match self.input {
            StepInput::Output(n) => Some(n),
            _ => None,
        };
        self.after.iter().copied().chain(output)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    pub id: u64,
    pub steps: Vec<Step>,
}

/// Why a workflow was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("a workflow needs at least one step and at most {MAX_STEPS}")]
    Size,
    #[error("step {step} depends on step {dependency}, which is not another step of the workflow")]
    BadDependency { step: usize, dependency: usize },
    #[error("the steps' dependencies form a cycle through step {0}")]
    Cycle(usize),
    #[error("step {step} names library {library:?}, which is not registered")]
    UnknownLibrary { step: usize, library: String },
    #[error("step {step} calls method {method:?}, which library {library:?} does not declare")]
    UnknownMethod {
        step: usize,
        library: String,
        method: String,
    },
    #[error("workflow {0} is running or its outcome has not been taken")]
    DuplicateId(u64),
}

/// At most this many steps per workflow (the step index is part of its jobs' ids).
pub const MAX_STEPS: usize = 1 << 16;

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepStatus {
    Succeeded,
    /// Its job ended with this status (or was refused at submission).
    Failed(JobStatus),
    /// A step it depends on failed.
    Skipped {
        failed: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    pub name: String,
    pub status: StepStatus,
    /// The step's output (copied out of the SAB once the workflow has ended).
    pub output: Vec<u8>,
    pub error: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowOutcome {
    pub id: u64,
    pub steps: Vec<StepResult>,
}

impl WorkflowOutcome {
    pub fn succeeded(&self) -> bool {
        self.steps.iter().all(|s| s.status == StepStatus::Succeeded)
    }
}

#[derive(Clone, Debug)]
enum State {
    Waiting,
    Running,
    /// Succeeded; its output, in the SAB when a later step takes it.
    Done(Payload),
    Ended(StepStatus, String),
}

struct Run {
    workflow: Workflow,
    states: Vec<State>,
    /// Steps waiting per dependency count.
    missing: Vec<usize>,
    dependants: Vec<Vec<usize>>,
    /// Arena blocks holding outputs (offset), freed at the end.
    blocks: Vec<usize>,
    slot: Option<SupervisorSlot>,
    run: u64,
}

/// The running workflows and the outcomes not yet taken.
#[derive(Resource, Default)]
pub struct WorkflowEngine {
    runs: HashMap<u64, Run>,
    /// Job id → (workflow id, step).
    jobs: HashMap<u64, (u64, usize)>,
    outcomes: HashMap<u64, WorkflowOutcome>,
    pub stats: WorkflowStats,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkflowStats {
    pub workflows: u64,
    pub steps_finished: u64,
    /// Time spent coordinating (checking and starting workflows, submitting their steps,
    /// resolving them, passing data), all workflows.
    pub coordination: Duration,
    /// Of which in [`WorkflowEngine::submit`] (the DAG check, registry look-ups, the supervisor
    /// slot).
    pub submitting: Duration,
}

impl WorkflowStats {
    /// Mean coordination time per finished step.
    pub fn per_step(&self) -> Duration {
        self.coordination / self.steps_finished.max(1) as u32
    }
}

/// Job ids of workflow steps have the top bit set: (1 << 63) | run << 16 | step.
const STEP_ID_BIT: u64 = 1 << 63;

impl WorkflowEngine {
    /// Checks and starts a workflow; its first steps are submitted on the next tick. Its time
    /// counts as coordination, refused workflows included.
    pub fn submit(&mut self, sab: &Sab, workflow: Workflow) -> Result<(), WorkflowError> {
        let start = Instant::now();
        let result = self.start(sab, workflow);
        let took = start.elapsed();
        self.stats.coordination += took;
        self.stats.submitting += took;
        result
    }

    fn start(&mut self, sab: &Sab, workflow: Workflow) -> Result<(), WorkflowError> {
        let n = workflow.steps.len();
        if n == 0 || n > MAX_STEPS {
            return Err(WorkflowError::Size);
        }
        if self.runs.contains_key(&workflow.id) || self.outcomes.contains_key(&workflow.id) {
            return Err(WorkflowError::DuplicateId(workflow.id));
        }
        let mut dependants = vec![Vec::new(); n];
        let mut missing = vec![0; n];
        for (i, step) in workflow.steps.iter().enumerate() {
            match sab.registry().methods(&step.library) {
                None => {
                    return Err(WorkflowError::UnknownLibrary {
                        step: i,
                        library: step.library.clone(),
                    });
                }
                Some(methods) if !methods.is_empty() && !methods.contains(&step.method) => {
                    return Err(WorkflowError::UnknownMethod {
                        step: i,
                        library: step.library.clone(),
                        method: step.method.clone(),
                    });
                }
                Some(_) => {}
            }
            let mut deps: Vec<usize> = step.dependencies().collect();
            deps.sort_unstable();
            deps.dedup();
            for d in deps {
                if d >= n || d == i {
                    return Err(WorkflowError::BadDependency { step: i, dependency: d });
                }
                dependants[d].push(i);
                missing[i] += 1;
            }
        }
        // Kahn: every step must be reachable from the roots.
        let mut left = missing.clone();
        let mut ready: VecDeque<usize> = (0..n).filter(|&i| left[i] == 0).collect();
        let mut seen = 0;
        while let Some(i) = ready.pop_front() {
            seen += 1;
            for &d in &dependants[i] {
                left[d] -= 1;
                if left[d] == 0 {
                    ready.push_back(d);
                }
            }
        }
        if seen < n {
            let stuck = (0..n).find(|&i| left[i] > 0).expect("a step is left");
            return Err(WorkflowError::Cycle(stuck));
        }
        let slot = sab
            .supervisors()
            .allocate(&format!("wf/{}", workflow.id), Owner::Kernel)
            .inspect_err(|e| warn!("workflow {} runs without a supervisor slot: {e}", workflow.id))
            .ok();
        self.stats.workflows += 1;
        self.runs.insert(
            workflow.id,
            Run {
                states: vec![State::Waiting; n],
                workflow,
                missing,
                dependants,
                blocks: Vec::new(),
                slot,
                run: self.stats.workflows,
            },
        );
        Ok(())
    }

    /// The outcome of a finished workflow, once.
    pub fn take_outcome(&mut self, id: u64) -> Option<WorkflowOutcome> {
        self.outcomes.remove(&id)
    }

    /// Workflows still running.
    pub fn running(&self) -> usize {
        self.runs.len()
    }
}

pub struct WorkflowPlugin;

impl Plugin for WorkflowPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<WorkflowEngine>().add_systems(
            FixedUpdate,
            advance.after(JobPipelineSystems::Resolve).before(SupervisorTreeSystems),
        );
    }
}

/// Takes the results of running steps, passes outputs on, submits the steps now ready, and ends
/// workflows with nothing left to run.
fn advance(sab: Res<Sab>, mut engine: ResMut<WorkflowEngine>, mut queue: ResMut<JobQueue>) {
    if engine.runs.is_empty() {
        return;
    }
    let start = Instant::now();
    let engine = &mut *engine;
    let mut finished_steps = 0u64;
    // Results of running steps.
    let running: Vec<u64> = engine.jobs.keys().copied().collect();
    for job_id in running {
        let Some(outcome) = queue.take_result(job_id) else {
            continue;
        };
        let (id, step) = engine.jobs.remove(&job_id).expect("listed above");
        let Some(run) = engine.runs.get_mut(&id) else {
            continue;
        };
        finished_steps += 1;
        if outcome.status == JobStatus::Success {
            let output = keep_output(&sab, run, step, outcome.output);
            run.states[step] = State::Done(output);
            for &d in &run.dependants[step] {
                run.missing[d] -= 1;
            }
        } else {
            fail(run, step, StepStatus::Failed(outcome.status), outcome.error);
        }
    }
    // Steps now ready.
    for (&id, run) in &mut engine.runs {
        for step in 0..run.states.len() {
            if !matches!(run.states[step], State::Waiting) || run.missing[step] > 0 {
                continue;
            }
            let s = &run.workflow.steps[step];
            let input = match &s.input {
                StepInput::Inline(bytes) => Payload::Inline(bytes.clone()),
                StepInput::Sab(range) => Payload::Sab(*range),
                StepInput::Output(n) => match &run.states[*n] {
                    State::Done(output) => output.clone(),
                    _ => unreachable!("a step runs only after the steps it depends on succeeded"),
                },
            };
            let job_id = STEP_ID_BIT | (run.run << 16) | step as u64;
            let job = Job {
                params: s.params.clone(),
                ..Job::new(job_id, &s.library, &s.method, input)
            };
            match queue.submit(&sab, &job) {
                Ok(()) => {
                    run.states[step] = State::Running;
                    engine.jobs.insert(job_id, (id, step));
                }
                Err(e) => {
                    finished_steps += 1;
                    let status = match e {
                        SubmitError::Invalid(_) | SubmitError::TooLarge { .. } => JobStatus::InvalidParams,
                        _ => JobStatus::Rejected,
                    };
                    fail(run, step, StepStatus::Failed(status), e.to_string());
                }
            }
        }
        write_header(&sab, run);
    }
    // Workflows with nothing waiting or running.
    let ended: Vec<u64> = engine
        .runs
        .iter()
        .filter(|(_, run)| {
            run.states
                .iter()
                .all(|s| matches!(s, State::Done(_) | State::Ended(..)))
        })
        .map(|(&id, _)| id)
        .collect();
    for id in ended {
        let run = engine.runs.remove(&id).expect("listed above");
        engine.outcomes.insert(id, finish(&sab, run));
    }
    engine.stats.steps_finished += finished_steps;
    engine.stats.coordination += start.elapsed();
}

/// A succeeded step's output: written once into an arena block if a later step takes it, so
/// consumers read it by offset.
fn keep_output(sab: &Sab, run: &mut Run, step: usize, output: Payload) -> Payload {
    let consumed = run.workflow.steps.iter().any(|s| s.input == StepInput::Output(step));
    let Payload::Inline(mut bytes) = output else {
        return output; // already in the SAB
    };
    if !consumed || bytes.is_empty() {
        return Payload::Inline(bytes);
    }
    let len = bytes.len();
    bytes.resize(len.next_multiple_of(4), 0);
    match sab.arena().alloc(bytes.len(), Owner::Kernel) {
        Ok(block) => {
            sab.write(block.offset, &bytes)
                .expect("an arena block lies inside the SAB");
            run.blocks.push(block.offset);
            Payload::Sab(SabRange {
                offset: block.offset as u64,
                length: len as u32,
            })
        }
        Err(e) => {
            warn!("workflow step output stays inline (no arena room: {e})");
            bytes.truncate(len);
            Payload::Inline(bytes)
        }
    }
}

/// Ends `step` with `status`, and every step depending on it (directly or not) as skipped.
fn fail(run: &mut Run, step: usize, status: StepStatus, error: String) {
    run.states[step] = State::Ended(status, error);
    let mut stack = run.dependants[step].clone();
    while let Some(d) = stack.pop() {
        if matches!(run.states[d], State::Waiting) {
            run.states[d] = State::Ended(StepStatus::Skipped { failed: step }, format!("step {step} failed"));
            stack.extend(run.dependants[d].iter().copied());
        }
    }
}

fn write_header(sab: &Sab, run: &Run) {
    let Some(slot) = run.slot else {
        return;
    };
    let done = run.states.iter().filter(|s| matches!(s, State::Done(_))).count() as u32;
    let failed = run.states.iter().filter(|s| matches!(s, State::Ended(..))).count() as u32;
    let mut header = SupervisorHeader {
        supervisor_id: slot.id_hash,
        epoch_index: slot.epoch.get() as u8,
        status: if failed > 0 {
            SupervisorStatus::Degraded
        } else {
            SupervisorStatus::Healthy
        } as u8,
        jobs_processed: done + failed,
        jobs_failed: failed,
        queue_depth: run
            .states
            .iter()
            .filter(|s| matches!(s, State::Waiting | State::Running))
            .count() as u32,
        last_heartbeat_ms: now_ms(),
        ..SupervisorHeader::default()
    };
    header.set_name(&format!("wf/{}", run.workflow.id));
    let _ = sab.supervisors().write_header(slot.slot, &header);
    sab.epochs().signal(slot.epoch);
}

/// The outcome of an ended workflow: outputs copied out, blocks freed, the slot released.
fn finish(sab: &Sab, run: Run) -> WorkflowOutcome {
    let steps = run
        .states
        .into_iter()
        .zip(&run.workflow.steps)
        .map(|(state, step)| match state {
            State::Done(output) => StepResult {
                name: step.name.clone(),
                status: StepStatus::Succeeded,
                output: output.bytes(sab).unwrap_or_default(),
                error: String::new(),
            },
            State::Ended(status, error) => StepResult {
                name: step.name.clone(),
                status,
                output: Vec::new(),
                error,
            },
            State::Waiting | State::Running => unreachable!("only ended workflows finish"),
        })
        .collect();
    for offset in run.blocks {
        if let Err(e) = sab.arena().free(offset, Owner::Kernel) {
            error!(
                "workflow {} could not free its block at {offset:#x}: {e}",
                run.workflow.id
            );
        }
    }
    if run.slot.is_some() {
        let _ = sab
            .supervisors()
            .release(&format!("wf/{}", run.workflow.id), Owner::Kernel);
    }
    WorkflowOutcome {
        id: run.workflow.id,
        steps,
    }
}
