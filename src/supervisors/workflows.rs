//! Workflows: DAGs of jobs across units, each run under its own composite supervisor.
//!
//! - **Submission** checks the DAG: steps exist, dependencies name earlier-or-later steps but not
//!   themselves, no cycle (Kahn's algorithm), every library is registered, the id is free.
//! - **Order.** A step is submitted to the job queue once every step it depends on has succeeded,
//!   so steps run in a topological order, independent branches side by side.
//! - **Data by SAB offset.** A step that takes another step's output (`StepInput::Output`) gets a
//!   `Payload::Sab` range: the producing step's output is written once into an arena block and
//!   every consumer reads it in place. Blocks are freed when the workflow's outcome is taken.
//! - **State in the SAB.** Every workflow, its steps and each step's state are SAB records (the
//!   workflow table in the kernel state, and an arena block per workflow; see "State in the SAB"
//!   below), so a resumed snapshot carries on running workflows and keeps the outcomes not yet
//!   taken. The engine's maps are caches of those records.
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
use crate::sab::generated as g;
use crate::sab::kernel_state::AREA_HEADER;
use crate::sab::supervisors::SupervisorSlot;
use crate::sab::table::KeyedTable;
use crate::sab::{
    ArenaError, EpochIndex, KernelArea, Owner, Sab, SupervisorHeader, SupervisorStatus, epoch_changed, now_ms,
};
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
    #[error("{MAX_WORKFLOWS} workflows are running or waiting for their outcomes to be taken")]
    TooMany,
    #[error("the workflow has no room in the SAB: {0}")]
    NoRoom(String),
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
    /// Succeeded; its output (in the SAB unless empty), and whether its block is the workflow's.
    Done(Payload, bool),
    Ended(StepStatus, String),
}

struct Run {
    workflow: Workflow,
    states: Vec<State>,
    /// Steps waiting per dependency count.
    missing: Vec<usize>,
    dependants: Vec<Vec<usize>>,
    /// The arena block holding the steps and their state records (see "State in the SAB"), and
    /// where the records start in it.
    block: usize,
    records_at: usize,
    slot: Option<SupervisorSlot>,
    run: u64,
}

/// The running workflows and the outcomes not yet taken. A cache of the SAB's workflow table
/// (see the module's "State in the SAB").
#[derive(Resource)]
pub struct WorkflowEngine {
    runs: HashMap<u64, Run>,
    /// Job id → (workflow id, step).
    jobs: HashMap<u64, (u64, usize)>,
    /// Outcomes of ended workflows, as computed when they ended (after a resume, built from the
    /// SAB when taken).
    outcomes: HashMap<u64, WorkflowOutcome>,
    pub stats: WorkflowStats,
    /// A workflow started since the engine last ran: its first steps wait for no job history.
    started: bool,
    sab: Sab,
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

fn step_job_id(run: u64, step: usize) -> u64 {
    STEP_ID_BIT | (run << 16) | step as u64
}

impl FromWorld for WorkflowEngine {
    fn from_world(world: &mut World) -> Self {
        Self::from_sab(world.resource::<Sab>())
    }
}

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
        if self.runs.contains_key(&workflow.id) || table(sab).get(&workflow.id).is_some() {
            return Err(WorkflowError::DuplicateId(workflow.id));
        }
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
        }
        let (dependants, missing) = dependencies(&workflow.steps)?;
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
        let run = self.stats.workflows + 1;
        let (block, records_at) = store_workflow(sab, &workflow, run)?;
        self.started = true;
        self.stats.workflows = run;
        save_header(sab, &self.stats);
        let slot = supervisor_slot(sab, workflow.id);
        self.runs.insert(
            workflow.id,
            Run {
                states: vec![State::Waiting; n],
                workflow,
                missing,
                dependants,
                block,
                records_at,
                slot,
                run,
            },
        );
        Ok(())
    }

    /// The engine over the workflows `sab` holds: running ones carry on (their running steps'
    /// jobs are in the job table), ended ones keep their outcomes until taken.
    fn from_sab(sab: &Sab) -> Self {
        let header: WorkflowHeader = sab.kernel_state(KernelArea::WorkflowTable).header();
        let mut engine = Self {
            runs: HashMap::new(),
            jobs: HashMap::new(),
            outcomes: HashMap::new(),
            stats: WorkflowStats {
                workflows: header.runs,
                steps_finished: header.steps_finished,
                ..WorkflowStats::default()
            },
            started: false,
            sab: sab.clone(),
        };
        for (id, slot) in table(sab).entries() {
            if slot.ended != 0 {
                continue;
            }
            let Some(run) = load_run(sab, id, &slot) else {
                error!("workflow {id}'s record in the SAB does not decode; it is dropped");
                continue;
            };
            for (step, state) in run.states.iter().enumerate() {
                if matches!(state, State::Running) {
                    engine.jobs.insert(step_job_id(run.run, step), (id, step));
                }
            }
            engine.runs.insert(id, run);
        }
        engine
    }

    /// The outcome of a finished workflow, once; its blocks in the SAB are freed then.
    pub fn take_outcome(&mut self, id: u64) -> Option<WorkflowOutcome> {
        let table = table(&self.sab);
        let slot = table.get(&id).filter(|slot| slot.ended != 0)?;
        let outcome = self
            .outcomes
            .remove(&id)
            .or_else(|| load_run(&self.sab, id, &slot).map(|run| outcome_of(&self.sab, &run)))
            .unwrap_or_else(|| WorkflowOutcome { id, steps: Vec::new() });
        free_workflow(&self.sab, &slot);
        table.remove(&id);
        Some(outcome)
    }

    /// Workflows still running.
    pub fn running(&self) -> usize {
        self.runs.len()
    }
}

/// Each step's dependants, and how many steps each waits for; or the first bad dependency.
fn dependencies(steps: &[Step]) -> Result<(Vec<Vec<usize>>, Vec<usize>), WorkflowError> {
    let n = steps.len();
    let mut dependants = vec![Vec::new(); n];
    let mut missing = vec![0; n];
    for (i, step) in steps.iter().enumerate() {
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
    Ok((dependants, missing))
}

fn supervisor_slot(sab: &Sab, id: u64) -> Option<SupervisorSlot> {
    sab.supervisors()
        .allocate(&format!("wf/{id}"), Owner::Kernel)
        .inspect_err(|e| warn!("workflow {id} runs without a supervisor slot: {e}"))
        .ok()
}

pub struct WorkflowPlugin;

impl Plugin for WorkflowPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<WorkflowEngine>().add_systems(
            FixedUpdate,
            advance
                .after(JobPipelineSystems::Deliver)
                .before(SupervisorTreeSystems)
                // Steps end in the job history; a new workflow's first steps wait for nothing.
                .run_if(epoch_changed(EpochIndex::JOB_HISTORY).or_eager(|engine: Res<WorkflowEngine>| engine.started)),
        );
    }
}

/// Takes the results of running steps, passes outputs on, submits the steps now ready, and ends
/// workflows with nothing left to run.
fn advance(sab: Res<Sab>, mut engine: ResMut<WorkflowEngine>, mut queue: ResMut<JobQueue>) {
    engine.started = false;
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
            let (output, owned) = keep_output(&sab, outcome.output);
            set_state(&sab, run, step, State::Done(output, owned));
            for &d in &run.dependants[step] {
                run.missing[d] -= 1;
            }
        } else {
            fail(&sab, run, step, StepStatus::Failed(outcome.status), outcome.error);
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
                    State::Done(output, _) => output.clone(),
                    _ => unreachable!("a step runs only after the steps it depends on succeeded"),
                },
            };
            let job_id = step_job_id(run.run, step);
            let job = Job {
                params: s.params.clone(),
                ..Job::new(job_id, &s.library, &s.method, input)
            };
            match queue.submit(&sab, &job) {
                Ok(()) => {
                    set_state(&sab, run, step, State::Running);
                    engine.jobs.insert(job_id, (id, step));
                }
                Err(e) => {
                    finished_steps += 1;
                    let status = match e {
                        SubmitError::Invalid(_) | SubmitError::TooLarge { .. } => JobStatus::InvalidParams,
                        _ => JobStatus::Rejected,
                    };
                    fail(&sab, run, step, StepStatus::Failed(status), e.to_string());
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
                .all(|s| matches!(s, State::Done(..) | State::Ended(..)))
        })
        .map(|(&id, _)| id)
        .collect();
    for id in ended {
        let run = engine.runs.remove(&id).expect("listed above");
        engine.outcomes.insert(id, finish(&sab, run));
    }
    engine.stats.steps_finished += finished_steps;
    save_header(&sab, &engine.stats);
    engine.stats.coordination += start.elapsed();
}

/// A succeeded step's output, written once into an arena block of the workflow's (so that later
/// steps read it by offset and the SAB holds it until the outcome is taken), and whether it was.
/// An output already in the SAB, or empty, stays as it is.
fn keep_output(sab: &Sab, output: Payload) -> (Payload, bool) {
    let Payload::Inline(bytes) = output else {
        return (output, false); // already in the SAB
    };
    if bytes.is_empty() {
        return (Payload::Inline(bytes), false);
    }
    match store(sab, &bytes) {
        Ok(offset) => (
            Payload::Sab(SabRange {
                offset: offset as u64,
                length: bytes.len() as u32,
            }),
            true,
        ),
        Err(e) => {
            warn!("a workflow step's output stays in memory only (no arena room: {e})");
            (Payload::Inline(bytes), false)
        }
    }
}

/// Ends `step` with `status`, and every step depending on it (directly or not) as skipped.
fn fail(sab: &Sab, run: &mut Run, step: usize, status: StepStatus, error: String) {
    set_state(sab, run, step, State::Ended(status, error));
    let mut stack = run.dependants[step].clone();
    while let Some(d) = stack.pop() {
        if matches!(run.states[d], State::Waiting) {
            let skipped = State::Ended(StepStatus::Skipped { failed: step }, format!("step {step} failed"));
            set_state(sab, run, d, skipped);
            stack.extend(run.dependants[d].iter().copied());
        }
    }
}

fn write_header(sab: &Sab, run: &Run) {
    let Some(slot) = run.slot else {
        return;
    };
    let done = run.states.iter().filter(|s| matches!(s, State::Done(..))).count() as u32;
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

/// An ended workflow: its outcome (outputs copied out), its record marked ended (its blocks stay
/// until the outcome is taken), its supervisor slot released.
fn finish(sab: &Sab, run: Run) -> WorkflowOutcome {
    let outcome = outcome_of(sab, &run);
    let table = table(sab);
    if let Some(mut slot) = table.get(&run.workflow.id) {
        slot.ended = 1;
        let _ = table.insert(run.workflow.id, slot);
    }
    if run.slot.is_some() {
        let _ = sab
            .supervisors()
            .release(&format!("wf/{}", run.workflow.id), Owner::Kernel);
    }
    outcome
}

fn outcome_of(sab: &Sab, run: &Run) -> WorkflowOutcome {
    let steps = run
        .states
        .iter()
        .zip(&run.workflow.steps)
        .map(|(state, step)| match state {
            State::Done(output, _) => StepResult {
                name: step.name.clone(),
                status: StepStatus::Succeeded,
                output: output.bytes(sab).unwrap_or_default(),
                error: String::new(),
            },
            State::Ended(status, error) => StepResult {
                name: step.name.clone(),
                status: status.clone(),
                output: Vec::new(),
                error: error.clone(),
            },
            State::Waiting | State::Running => StepResult {
                name: step.name.clone(),
                status: StepStatus::Failed(JobStatus::Crashed),
                output: Vec::new(),
                error: "the workflow's record in the SAB ended with this step unfinished".into(),
            },
        })
        .collect();
    WorkflowOutcome {
        id: run.workflow.id,
        steps,
    }
}

// ---------------------------------------------------------------------------------------------
// State in the SAB. The workflow table (a keyed table in the kernel state, by workflow id) points
// to one arena block per workflow: its steps, encoded once when it starts, then one 32-byte
// `StepRecord` per step, rewritten as the step moves on. Outputs and error texts are arena blocks
// of their own, freed with the workflow when its outcome is taken. The area's header keeps the
// run counter (job ids of steps derive from it, so a resumed engine never reuses one).
//
// Step encoding (little-endian): u32 step count, then per step: u32 name length, name, u32 input
// step (u32::MAX if the input is not another step's output), u32 dependency count, u32 per
// dependency, u32 frame length, the step's job frame (`Job::encode`, id 0; an output input is
// encoded as an empty inline one).
// ---------------------------------------------------------------------------------------------

/// Workflows the SAB holds at once (running, or ended with the outcome not yet taken).
pub const MAX_WORKFLOWS: usize = g::WORKFLOW_SLOTS as usize;

#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct WorkflowHeader {
    /// The last run number handed out.
    runs: u64,
    steps_finished: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct WorkflowSlot {
    run: u64,
    /// The arena block of the steps and their records.
    block: u32,
    steps: u32,
    /// Where the step records start in the block.
    records_at: u32,
    ended: u32,
}
const _: () =
    assert!(AREA_HEADER + KeyedTable::<u64, WorkflowSlot>::bytes(MAX_WORKFLOWS) <= g::WORKFLOW_TABLE_SIZE as usize);

const WAITING: u32 = 0;
const RUNNING: u32 = 1;
const DONE: u32 = 2;
const ENDED: u32 = 3;
/// `StepRecord::status` of a skipped step.
const SKIPPED: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct StepRecord {
    state: u32,
    /// A failed step's job status code, or `SKIPPED`.
    status: u32,
    /// The failed step a skipped one waited for.
    failed_step: u32,
    /// A done step's output in the SAB (0 if empty or kept in memory only).
    output_offset: u32,
    output_len: u32,
    /// 1 if the output's block is the workflow's (freed with it).
    output_owned: u32,
    error_block: u32,
    error_len: u32,
}
const STEP_RECORD: usize = size_of::<StepRecord>();

fn table(sab: &Sab) -> KeyedTable<'_, u64, WorkflowSlot> {
    sab.kernel_state(KernelArea::WorkflowTable)
        .table(0, MAX_WORKFLOWS, false)
}

fn save_header(sab: &Sab, stats: &WorkflowStats) {
    sab.kernel_state(KernelArea::WorkflowTable).set_header(&WorkflowHeader {
        runs: stats.workflows,
        steps_finished: stats.steps_finished,
    });
}

/// Writes `bytes` into a new arena block; returns its offset.
fn store(sab: &Sab, bytes: &[u8]) -> Result<usize, ArenaError> {
    let block = sab.arena().alloc(bytes.len().max(4), Owner::Kernel)?;
    sab.write_bytes(block.offset, bytes)
        .expect("an arena block lies inside the SAB");
    Ok(block.offset)
}

fn encode_steps(steps: &[Step]) -> Vec<u8> {
    let mut out = Vec::new();
    let put = |out: &mut Vec<u8>, v: usize| out.extend_from_slice(&(v as u32).to_le_bytes());
    put(&mut out, steps.len());
    for step in steps {
        put(&mut out, step.name.len());
        out.extend_from_slice(step.name.as_bytes());
        let (input, from) = match &step.input {
            StepInput::Inline(bytes) => (Payload::Inline(bytes.clone()), u32::MAX as usize),
            StepInput::Sab(range) => (Payload::Sab(*range), u32::MAX as usize),
            StepInput::Output(n) => (Payload::Inline(Vec::new()), *n),
        };
        put(&mut out, from);
        put(&mut out, step.after.len());
        for &d in &step.after {
            put(&mut out, d);
        }
        let frame = Job {
            params: step.params.clone(),
            ..Job::new(0, &step.library, &step.method, input)
        }
        .encode();
        put(&mut out, frame.len());
        out.extend_from_slice(&frame);
    }
    out
}

/// Reads the step encoding.
struct StepReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> StepReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let part = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(part)
    }

    fn word(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }
}

fn decode_steps(bytes: &[u8]) -> Option<Vec<Step>> {
    let mut r = StepReader { bytes, at: 0 };
    let count = r.word()?;
    let mut steps = Vec::with_capacity(count.min(MAX_STEPS));
    for _ in 0..count {
        let len = r.word()?;
        let name = String::from_utf8(r.take(len)?.to_vec()).ok()?;
        let from = r.word()?;
        let after_count = r.word()?;
        let after = (0..after_count).map(|_| r.word()).collect::<Option<Vec<_>>>()?;
        let len = r.word()?;
        let job = Job::decode(r.take(len)?).ok()?;
        let input = match (from, job.input) {
            (from, _) if from != u32::MAX as usize => StepInput::Output(from),
            (_, Payload::Inline(bytes)) => StepInput::Inline(bytes),
            (_, Payload::Sab(range)) => StepInput::Sab(range),
        };
        steps.push(Step {
            name,
            library: job.library,
            method: job.method,
            input,
            params: job.params,
            after,
        });
    }
    Some(steps)
}

/// Stores a starting workflow: its block (steps, then a waiting record per step) and its slot.
/// Returns the block and where its records start.
fn store_workflow(sab: &Sab, workflow: &Workflow, run: u64) -> Result<(usize, usize), WorkflowError> {
    let mut bytes = encode_steps(&workflow.steps);
    let records_at = bytes.len().next_multiple_of(8);
    bytes.resize(records_at + workflow.steps.len() * STEP_RECORD, 0);
    let block = store(sab, &bytes).map_err(|e| WorkflowError::NoRoom(e.to_string()))?;
    let slot = WorkflowSlot {
        run,
        block: block as u32,
        steps: workflow.steps.len() as u32,
        records_at: records_at as u32,
        ended: 0,
    };
    if table(sab).insert(workflow.id, slot).is_err() {
        let _ = sab.arena().free(block, Owner::Kernel);
        return Err(WorkflowError::TooMany);
    }
    Ok((block, records_at))
}

/// Moves `step` to `state`, in memory and in the SAB.
fn set_state(sab: &Sab, run: &mut Run, step: usize, state: State) {
    let mut record = StepRecord::default();
    match &state {
        State::Waiting => record.state = WAITING,
        State::Running => record.state = RUNNING,
        State::Done(output, owned) => {
            record.state = DONE;
            if let Payload::Sab(range) = output {
                record.output_offset = range.offset as u32;
                record.output_len = range.length;
                record.output_owned = u32::from(*owned);
            }
        }
        State::Ended(status, error) => {
            record.state = ENDED;
            (record.status, record.failed_step) = match status {
                StepStatus::Failed(status) => (u32::from(status.code()), 0),
                StepStatus::Skipped { failed } => (SKIPPED, *failed as u32),
                StepStatus::Succeeded => (0, 0),
            };
            let error = &error.as_bytes()[..error.len().min(1024)];
            if let Ok(block) = store(sab, error) {
                (record.error_block, record.error_len) = (block as u32, error.len() as u32);
            }
        }
    }
    sab.write(run.block + run.records_at + step * STEP_RECORD, &[record])
        .expect("a workflow's block lies inside the SAB");
    run.states[step] = state;
}

/// A workflow as the SAB holds it.
fn load_run(sab: &Sab, id: u64, slot: &WorkflowSlot) -> Option<Run> {
    let block = slot.block as usize;
    let mut bytes = Vec::new();
    sab.read_bytes(block, slot.records_at as usize, &mut bytes).ok()?;
    let steps = decode_steps(&bytes)?;
    if steps.len() != slot.steps as usize {
        return None;
    }
    let (dependants, mut missing) = dependencies(&steps).ok()?;
    let mut states = Vec::with_capacity(steps.len());
    for i in 0..steps.len() {
        let record: StepRecord = sab.read(block + slot.records_at as usize + i * STEP_RECORD).ok()?;
        states.push(match record.state {
            WAITING => State::Waiting,
            RUNNING => State::Running,
            DONE => State::Done(
                match record.output_offset {
                    0 => Payload::Inline(Vec::new()),
                    offset => Payload::Sab(SabRange {
                        offset: u64::from(offset),
                        length: record.output_len,
                    }),
                },
                record.output_owned != 0,
            ),
            ENDED => {
                let status = match record.status {
                    SKIPPED => StepStatus::Skipped {
                        failed: record.failed_step as usize,
                    },
                    code => StepStatus::Failed(JobStatus::from_code(code as u16).unwrap_or(JobStatus::Failed)),
                };
                let mut error = Vec::new();
                if record.error_block != 0 {
                    let _ = sab.read_bytes(record.error_block as usize, record.error_len as usize, &mut error);
                }
                State::Ended(status, String::from_utf8_lossy(&error).into_owned())
            }
            _ => return None,
        });
    }
    for (i, state) in states.iter().enumerate() {
        if matches!(state, State::Done(..)) {
            for &d in &dependants[i] {
                missing[d] -= 1;
            }
        }
    }
    Some(Run {
        workflow: Workflow { id, steps },
        states,
        missing,
        dependants,
        block,
        slot: if slot.ended == 0 {
            supervisor_slot(sab, id)
        } else {
            None
        },
        run: slot.run,
        records_at: slot.records_at as usize,
    })
}

/// Frees a workflow's blocks: its outputs, error texts and its own.
fn free_workflow(sab: &Sab, slot: &WorkflowSlot) {
    let block = slot.block as usize;
    let arena = sab.arena();
    for i in 0..slot.steps as usize {
        let Ok(record) = sab.read::<StepRecord>(block + slot.records_at as usize + i * STEP_RECORD) else {
            break;
        };
        if record.output_owned != 0 {
            let _ = arena.free(record.output_offset as usize, Owner::Kernel);
        }
        if record.error_block != 0 {
            let _ = arena.free(record.error_block as usize, Owner::Kernel);
        }
    }
    let _ = arena.free(block, Owner::Kernel);
}
