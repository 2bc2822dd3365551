//! The supervisor tree: a root supervisor over one unit supervisor per registered unit.
//!
//! - **Discovery.** A unit supervisor is created for every module in the registry, in dependency
//!   order, and for every module registered later (on the registry epoch). Each claims a slot in
//!   the SAB's supervisor table, so it owns an epoch index and a 128-byte header, which it
//!   rewrites on every fixed tick (status, lifecycle, breaker, counters, health, heartbeat) and then
//!   signals its epoch. The root has a header of its own.
//! - **Failure detection.** A unit fails when a job panics in it (the job host answers `Crashed`)
//!   or when it stops heartbeating: a running unit with the `heartbeat:pulse` capability that has
//!   beaten (`Sab::heartbeats`) must beat again within `heartbeat_timeout` pulses, else it is a
//!   Zombie. Pulses, not wall time, so a paused simulation never looks hung.
//! - **Restarts** follow Erlang/OTP: the root's strategy (`one_for_one`, `one_for_all`,
//!   `rest_for_one`) picks which units restart, each unit's restart policy (`permanent`,
//!   `transient`, `temporary`) whether it does, and more than `max_restarts` restarts within
//!   `period` escalates: every unit is stopped and the root becomes a Zombie (it has no parent to
//!   fail to; an operator can `Spawn` units again). A restarting unit waits an exponential back-off
//!   (`backoff_base` doubling up to `backoff_max`, reset once it has run `stable_after` without
//!   failing); its queued jobs wait with it, and `UnitRestarted` tells a unit that keeps state of
//!   its own to rebuild it.
//! - **Circuit breaker** per unit: `breaker_threshold` consecutive failed jobs open it (jobs are
//!   refused with `SubmitError::CircuitOpen`), `breaker_cooldown` later it half-opens and lets one
//!   probe job through; the probe's result closes it or opens it again.
//! - **Lifecycle requests** (`sab::lifecycle`): spawn, kill, pause, resume, snapshot and restart of
//!   a unit, read from the SAB's lifecycle ring, where the health engine, the inspector's buttons
//!   and the `spawnThread`/`killThread` syscalls write them.
//!
//! The decisions live in plain structs (`Supervision`, `Breaker`), tested without an app; the
//! systems apply them and keep the SAB headers and the job queue's admission in step. Everything
//! the tree knows is in the SAB: the headers, and in its kernel-state area its clock, its place in
//! the job history, the root's restart times and each unit's back-off, breaker and counters
//! (`TreeState`), so a tree started on a resumed SAB takes up where the old one stopped.

use std::collections::VecDeque;
use std::time::Duration;

use bevy::platform::cell::SyncCell;
use bevy::prelude::*;
use serde::Serialize;

use crate::protocol::JobStatus;
use crate::sab::generated as g;
use crate::sab::heartbeats;
use crate::sab::kernel_state::AREA_HEADER;
use crate::sab::lifecycle::{LifecycleAction, LifecycleRequest};
use crate::sab::ring::{RingConsumer, RingId};
use crate::sab::supervisors::{BreakerState, NO_BEAT_PROMISED, ROLE_UNIT, SupervisorHeader, SupervisorSlot};
pub use crate::sab::supervisors::{Lifecycle, supervisor_id, unit_running};
use crate::sab::table::KeyedTable;
use crate::sab::{
    EpochIndex, HistoryCursor, HistoryReader, KernelArea, Owner, Sab, SupervisorStatus, epoch_changed, now_ms,
};
use crate::supervisors::DiscoveredModules;
use crate::supervisors::jobs::{Admission, JobPipelineSystems, JobQueue};

/// Which children restart when one fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Strategy {
    /// Only the failed child.
    OneForOne,
    /// Every child.
    OneForAll,
    /// The failed child and every child started after it.
    RestForOne,
}

/// Whether a child is restarted when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RestartPolicy {
    /// Always.
    Permanent,
    /// Only after an abnormal end (a crash or a hang).
    Transient,
    /// Never, not even as a bystander of a sibling's restart.
    Temporary,
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Exit {
    Normal,
    /// A job panicked in it.
    Crashed,
    /// It stopped heartbeating.
    Hung,
}

/// At most `max_restarts` restarts within `period`; one more escalates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intensity {
    pub max_restarts: u32,
    pub period: Duration,
}

/// What a supervisor does about a child that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Restart these children and stop those (temporary bystanders), by start-order index.
    Restart { restart: Vec<usize>, stop: Vec<usize> },
    /// The child's policy says it stays stopped; nobody else is touched.
    Stop,
    /// Too many restarts: stop every child and fail to the parent.
    Escalate,
}

/// One supervisor's restart bookkeeping over children in start order.
#[derive(Clone, Debug)]
pub struct Supervision {
    pub strategy: Strategy,
    pub intensity: Intensity,
    /// Times of the restarts still inside the period.
    restarts: VecDeque<Duration>,
}

impl Supervision {
    pub fn new(strategy: Strategy, intensity: Intensity) -> Self {
        Self {
            strategy,
            intensity,
            restarts: VecDeque::new(),
        }
    }

    /// Child `failed` (of `policies.len()`, in start order) ended with `exit` at `now`.
    pub fn child_exited(&mut self, failed: usize, exit: Exit, policies: &[RestartPolicy], now: Duration) -> Decision {
        let restarts = match (policies[failed], exit) {
            (RestartPolicy::Permanent, _) => true,
            (RestartPolicy::Transient, exit) => exit != Exit::Normal,
            (RestartPolicy::Temporary, _) => false,
        };
        if !restarts {
            return Decision::Stop;
        }
        while self
            .restarts
            .front()
            .is_some_and(|&at| now.saturating_sub(at) >= self.intensity.period)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= self.intensity.max_restarts as usize {
            // The supervisor gives up: its history ends with it.
            self.restarts.clear();
            return Decision::Escalate;
        }
        self.restarts.push_back(now);
        let affected = match self.strategy {
            Strategy::OneForOne => failed..failed + 1,
            Strategy::OneForAll => 0..policies.len(),
            Strategy::RestForOne => failed..policies.len(),
        };
        let (restart, stop) = affected.partition(|&i| i == failed || policies[i] != RestartPolicy::Temporary);
        Decision::Restart { restart, stop }
    }

    /// Restarts counted against the intensity right now.
    pub fn recent_restarts(&self) -> usize {
        self.restarts.len()
    }
}

/// The circuit breaker of one unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Breaker {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    opened_at: Duration,
}

impl Breaker {
    /// A job of the unit ended; `failed` counts against the unit (crashes, failures, timeouts).
    pub fn record(&mut self, failed: bool, threshold: u32, now: Duration) {
        if !failed {
            *self = Self::default();
            return;
        }
        self.consecutive_failures += 1;
        if self.state == BreakerState::HalfOpen || self.consecutive_failures >= threshold {
            self.state = BreakerState::Open;
            self.opened_at = now;
        }
    }

    /// An open breaker half-opens once `cooldown` has passed.
    pub fn tick(&mut self, cooldown: Duration, now: Duration) {
        if self.state == BreakerState::Open && now.saturating_sub(self.opened_at) >= cooldown {
            self.state = BreakerState::HalfOpen;
        }
    }
}

/// The root's restart times the tree keeps in the SAB (an intensity above this counts only the
/// most recent ones).
pub const ROOT_RESTARTS: usize = 16;
/// Units whose supervision the SAB keeps.
pub const MAX_UNITS: usize = 128;

/// The tree's header in its kernel-state area. Times are on the tree's clock (nanoseconds of
/// fixed-tick time since the tree first started, carried on across resumes).
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct TreeState {
    pub cursor: HistoryCursor,
    /// The tree's clock when it last ran.
    pub clock_ns: u64,
    /// The root's restarts inside the intensity period, oldest first.
    pub root_restarts_ns: [u64; ROOT_RESTARTS],
    pub root_restart_count: u32,
    pub escalated: u32,
    pub escalations: u32,
    pub runs: u32,
}

/// One unit's supervision in the SAB (the tree's table, by unit hash).
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct UnitRecord {
    restart_at_ns: u64,
    running_since_ns: u64,
    breaker_opened_ns: u64,
    backoff_level: u32,
    breaker_failures: u32,
    restarts: u32,
    crashes: u32,
    hangs: u32,
    jobs_processed: u32,
    jobs_failed: u32,
    avg_job_time_us: f32,
    health_score: f32,
    running_since_pulse: u32,
    lifecycle: u8,
    status: u8,
    breaker: u8,
    reserved: u8,
    reserved2: u32,
}
const _: () = assert!(AREA_HEADER + KeyedTable::<u32, UnitRecord>::bytes(MAX_UNITS) <= g::TREE_STATE_SIZE as usize);

fn unit_records(sab: &Sab) -> KeyedTable<'_, u32, UnitRecord> {
    sab.kernel_state(KernelArea::TreeState).table(0, MAX_UNITS, true)
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

impl UnitSupervisor {
    fn record(&self) -> UnitRecord {
        UnitRecord {
            restart_at_ns: nanos(self.restart_at),
            running_since_ns: nanos(self.running_since),
            breaker_opened_ns: nanos(self.breaker.opened_at),
            backoff_level: self.backoff_level,
            breaker_failures: self.breaker.consecutive_failures,
            restarts: self.restarts,
            crashes: self.crashes,
            hangs: self.hangs,
            jobs_processed: self.jobs_processed,
            jobs_failed: self.jobs_failed,
            avg_job_time_us: self.avg_job_time_us,
            health_score: self.health_score,
            running_since_pulse: self.running_since_pulse,
            lifecycle: self.lifecycle as u8,
            status: self.status as u8,
            breaker: self.breaker.state as u8,
            ..UnitRecord::default()
        }
    }

    /// Takes up the supervision `record` kept (a resumed SAB); fields that do not decode stay.
    fn restore(&mut self, record: &UnitRecord) {
        self.restart_at = Duration::from_nanos(record.restart_at_ns);
        self.running_since = Duration::from_nanos(record.running_since_ns);
        self.breaker = Breaker {
            state: BreakerState::from_u8(record.breaker).unwrap_or_default(),
            consecutive_failures: record.breaker_failures,
            opened_at: Duration::from_nanos(record.breaker_opened_ns),
        };
        self.backoff_level = record.backoff_level;
        self.restarts = record.restarts;
        self.crashes = record.crashes;
        self.hangs = record.hangs;
        self.jobs_processed = record.jobs_processed;
        self.jobs_failed = record.jobs_failed;
        self.avg_job_time_us = record.avg_job_time_us;
        self.health_score = record.health_score;
        self.running_since_pulse = record.running_since_pulse;
        self.lifecycle = Lifecycle::from_u8(record.lifecycle).unwrap_or(self.lifecycle);
        self.status = SupervisorStatus::from_u8(record.status).unwrap_or(self.status);
    }
}

impl SupervisorTree {
    /// The tree as `sab` keeps it (units are adopted, and take up their records, on discovery).
    fn from_sab(sab: &Sab, config: &SupervisionConfig) -> Self {
        let state: TreeState = sab.kernel_state(KernelArea::TreeState).header();
        let mut root = Supervision::new(config.strategy, config.intensity);
        let kept = (state.root_restart_count as usize).min(ROOT_RESTARTS);
        root.restarts = state.root_restarts_ns[..kept]
            .iter()
            .map(|&ns| Duration::from_nanos(ns))
            .collect();
        Self {
            root,
            root_slot: None,
            units: Vec::new(),
            escalated: state.escalated != 0,
            escalations: state.escalations,
            snapshots: Vec::new(),
            runs: state.runs,
            cursor: state.cursor,
            clock_offset: Duration::from_nanos(state.clock_ns),
        }
    }

    /// The tree's clock: fixed-tick time since the tree first started, across resumes.
    fn clock(&self, time: &Time) -> Duration {
        self.clock_offset + time.elapsed()
    }

    /// Writes the tree's state to the SAB.
    fn save(&self, sab: &Sab, now: Duration) {
        let mut state = TreeState {
            cursor: self.cursor,
            clock_ns: nanos(now),
            escalated: u32::from(self.escalated),
            escalations: self.escalations,
            runs: self.runs,
            ..TreeState::default()
        };
        let recent = self.root.restarts.iter().rev().take(ROOT_RESTARTS).rev();
        for (slot, at) in state.root_restarts_ns.iter_mut().zip(recent) {
            *slot = nanos(*at);
            state.root_restart_count += 1;
        }
        sab.kernel_state(KernelArea::TreeState).set_header(&state);
        let table = unit_records(sab);
        for unit in &self.units {
            table
                .insert(unit.unit_hash, unit.record())
                .expect("an evicting table takes every key");
        }
    }
}

/// Tuning of the tree.
#[derive(Resource, Clone, Copy, Debug)]
pub struct SupervisionConfig {
    pub strategy: Strategy,
    pub intensity: Intensity,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Running this long without failing resets a unit's back-off.
    pub stable_after: Duration,
    /// Pulses a running unit that heartbeats may go without a beat.
    pub heartbeat_timeout: u32,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::OneForOne,
            // kameo's default; OTP's is 1 in 5 s, strict for units that restart in milliseconds.
            intensity: Intensity {
                max_restarts: 5,
                period: Duration::from_secs(5),
            },
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            stable_after: Duration::from_secs(5),
            heartbeat_timeout: 32,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(2),
        }
    }
}

/// The tree's end of the lifecycle ring (`sab::lifecycle`): requests from the health engine, the
/// inspector and the syscalls.
#[derive(Resource)]
pub struct LifecycleRequests {
    consumer: SyncCell<RingConsumer>,
    /// A frame's bytes (as large as the ring's largest frame, so no frame can stop the reading).
    frame: Vec<u8>,
    /// Frames on the ring that were no request (bytes from a broken writer).
    pub malformed: u64,
}

/// Sent when a unit starts again after a restart or a spawn, for units that keep state outside
/// the SAB to rebuild it (the built-in units keep theirs in the SAB or resources that stay valid).
#[derive(Message, Clone, Debug, PartialEq, Eq)]
pub struct UnitRestarted {
    pub unit: String,
}

/// The supervisor of one unit.
#[derive(Clone, Debug, Serialize)]
pub struct UnitSupervisor {
    pub unit: String,
    pub policy: RestartPolicy,
    /// The supervisor's slot in the supervisor table (its header and epoch).
    #[serde(skip)]
    pub slot: SupervisorSlot,
    /// CRC32C of the unit id, as jobs and the job history name the unit.
    pub unit_hash: u32,
    pub registry_slot: usize,
    /// Whether the unit promises a heartbeat on every pulse (capability `heartbeat:pulse`); only
    /// those can be found hung.
    pub beats_on_pulse: bool,
    pub lifecycle: Lifecycle,
    pub status: SupervisorStatus,
    #[serde(skip)]
    pub breaker: Breaker,
    pub restarts: u32,
    pub crashes: u32,
    pub hangs: u32,
    pub jobs_processed: u32,
    pub jobs_failed: u32,
    /// Exponentially weighted mean job time.
    pub avg_job_time_us: f32,
    /// Exponentially weighted share of jobs that succeeded (1 when none has run).
    pub health_score: f32,
    /// Consecutive restarts without a stable run (the back-off exponent).
    backoff_level: u32,
    /// When a `Restarting` unit starts again.
    #[serde(skip)]
    restart_at: Duration,
    /// When the unit last started, and on which pulse.
    #[serde(skip)]
    running_since: Duration,
    running_since_pulse: u32,
}

/// A unit's supervisor state when it was snapshotted.
#[derive(Clone, Debug)]
pub struct UnitSnapshot {
    pub unit: String,
    pub header: SupervisorHeader,
    pub at: Duration,
}

/// The tree: the root's supervision over the unit supervisors, in start order.
#[derive(Resource)]
pub struct SupervisorTree {
    pub root: Supervision,
    root_slot: Option<SupervisorSlot>,
    pub units: Vec<UnitSupervisor>,
    /// Set when the root's intensity was exceeded; every unit was stopped.
    pub escalated: bool,
    pub escalations: u32,
    pub snapshots: Vec<UnitSnapshot>,
    runs: u32,
    /// Where the tree stands in the job history.
    cursor: HistoryCursor,
    /// The tree's clock when this process took it up.
    clock_offset: Duration,
}

impl UnitSupervisor {
    /// Pulses since the unit's last heartbeat (or since it started, if later), for a running unit
    /// that promises a beat every pulse and has beaten since it started; `None` for any other.
    pub fn pulses_without_beat(&self, sab: &Sab, pulse: u32) -> Option<u32> {
        if self.lifecycle != Lifecycle::Running || !self.beats_on_pulse {
            return None;
        }
        let beat = sab.heartbeats().read(self.registry_slot).ok()?;
        if beat.beats == 0 {
            return None;
        }
        let since = if beat.last_pulse.wrapping_sub(self.running_since_pulse) as i32 > 0 {
            beat.last_pulse
        } else {
            self.running_since_pulse
        };
        Some(pulse.wrapping_sub(since))
    }
}

impl SupervisorTree {
    pub fn unit(&self, id: &str) -> Option<&UnitSupervisor> {
        self.units.iter().find(|u| u.unit == id)
    }

    pub(crate) fn index_of_hash(&self, hash: u32) -> Option<usize> {
        self.units.iter().position(|u| u.unit_hash == hash)
    }
}

/// Unit snapshots kept (the oldest goes first).
pub const MAX_SNAPSHOTS: usize = 64;

/// The root supervisor's id in the supervisor table.
pub const ROOT_ID: &str = "sup/root";

/// Restart policies of units, by unit id; units not listed are `Permanent`.
#[derive(Resource, Default, Clone, Debug)]
pub struct RestartPolicies(pub Vec<(String, RestartPolicy)>);

pub struct SupervisorTreePlugin;

/// The tree's place in `FixedUpdate`: after the job pipeline has resolved the pulse's results
/// (and, with the flock, after its units have beaten; `lib.rs` orders that).
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct SupervisorTreeSystems;

impl Plugin for SupervisorTreePlugin {
    fn build(&self, app: &mut App) {
        // `supervise` takes the strategy and intensity from the config on every run.
        let config = SupervisionConfig::default();
        let sab = app.world().resource::<Sab>().clone();
        app.init_resource::<SupervisionConfig>()
            .init_resource::<RestartPolicies>()
            .insert_resource(LifecycleRequests {
                consumer: SyncCell::new(
                    sab.ring(RingId::Lifecycle)
                        .consumer()
                        .expect("the supervisor tree is the lifecycle ring's only consumer"),
                ),
                frame: vec![0; sab.ring(RingId::Lifecycle).max_payload()],
                malformed: 0,
            })
            .add_message::<UnitRestarted>()
            .insert_resource(SupervisorTree::from_sab(&sab, &config))
            .configure_sets(FixedUpdate, SupervisorTreeSystems.after(JobPipelineSystems::Deliver))
            .add_systems(
                FixedUpdate,
                (
                    adopt_units.run_if(resource_changed::<DiscoveredModules>),
                    // Heartbeats, jobs and back-offs move with the pulse; requests come at any time,
                    // also while the pulse is paused.
                    supervise.run_if(
                        epoch_changed(EpochIndex::SYSTEM_PULSE).or_eager(epoch_changed(EpochIndex::LIFECYCLE_DIRTY)),
                    ),
                )
                    .chain()
                    .in_set(SupervisorTreeSystems),
            );
    }
}

/// Creates a unit supervisor for every registered module without one (dependency order first,
/// then later registrations), and removes those whose module left the registry.
fn adopt_units(
    sab: Res<Sab>,
    discovered: Res<DiscoveredModules>,
    policies: Res<RestartPolicies>,
    time: Res<Time>,
    mut tree: ResMut<SupervisorTree>,
) {
    let supervisors = sab.supervisors();
    if tree.root_slot.is_none() {
        tree.root_slot = supervisors
            .allocate(ROOT_ID, Owner::Kernel)
            .inspect_err(|e| error!("the root supervisor has no slot: {e}"))
            .ok();
    }
    let registered: Vec<&str> = discovered.0.iter().map(|m| m.id.as_str()).collect();
    tree.units.retain(|u| {
        let keep = registered.contains(&u.unit.as_str());
        if !keep {
            info!("unit {} left the registry; its supervisor is gone", u.unit);
            let _ = supervisors.release(&supervisor_id(&u.unit), Owner::Kernel);
        }
        keep
    });
    let order = sab.registry().dependency_order().unwrap_or_else(|e| {
        warn!("units start in registry order: {e}");
        registered.iter().map(|id| id.to_string()).collect()
    });
    let pulse = sab.epochs().load(EpochIndex::SYSTEM_PULSE);
    let now = tree.clock(&time);
    for id in order {
        if tree.unit(&id).is_some() {
            continue;
        }
        let Some(module) = discovered.0.iter().find(|m| m.id == id) else {
            continue;
        };
        let slot = match supervisors.allocate(&supervisor_id(&id), Owner::Kernel) {
            Ok(slot) => slot,
            Err(e) => {
                error!("unit {id} has no supervisor: {e}");
                continue;
            }
        };
        let policy = policies
            .0
            .iter()
            .find(|(unit, _)| *unit == id)
            .map_or(RestartPolicy::Permanent, |(_, p)| *p);
        let _ = sab.heartbeats().clear(module.slot);
        info!("unit {id} supervised ({policy:?}, epoch {})", slot.epoch.get());
        let unit_hash = crc32c::crc32c(id.as_bytes());
        tree.units.push(UnitSupervisor {
            unit_hash,
            unit: id,
            policy,
            slot,
            registry_slot: module.slot,
            beats_on_pulse: module.capabilities.iter().any(|c| c.id == heartbeats::PULSE_HEARTBEAT),
            lifecycle: Lifecycle::Running,
            status: SupervisorStatus::Starting,
            breaker: Breaker::default(),
            restarts: 0,
            crashes: 0,
            hangs: 0,
            jobs_processed: 0,
            jobs_failed: 0,
            avg_job_time_us: 0.0,
            health_score: 1.0,
            backoff_level: 0,
            restart_at: Duration::ZERO,
            running_since: now,
            running_since_pulse: pulse,
        });
        if let Some(record) = unit_records(&sab).get(&unit_hash) {
            tree.units.last_mut().expect("just pushed").restore(&record);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn supervise(
    sab: Res<Sab>,
    config: Res<SupervisionConfig>,
    time: Res<Time>,
    mut tree: ResMut<SupervisorTree>,
    mut queue: ResMut<JobQueue>,
    mut history: Local<HistoryReader>,
    mut requests: ResMut<LifecycleRequests>,
    mut restarted: MessageWriter<UnitRestarted>,
) {
    let tree = &mut *tree;
    let now = tree.clock(&time);
    let pulse = sab.epochs().load(EpochIndex::SYSTEM_PULSE);
    tree.runs += 1;
    tree.root.strategy = config.strategy;
    tree.root.intensity = config.intensity;

    // Finished jobs (the job history): counters, breakers, crashes.
    for record in history.read(&sab, &mut tree.cursor) {
        let Some(status) = JobStatus::from_code(record.status) else {
            continue;
        };
        // Refused before running (by the kernel or the host): says nothing about the unit.
        if status == JobStatus::Rejected {
            continue;
        }
        let Some(i) = tree.index_of_hash(record.unit_hash) else {
            continue;
        };
        let unit = &mut tree.units[i];
        let failed = matches!(
            status,
            JobStatus::Failed | JobStatus::Crashed | JobStatus::Timeout | JobStatus::BudgetExceeded
        );
        unit.jobs_processed += 1;
        unit.jobs_failed += u32::from(failed);
        unit.avg_job_time_us += 0.1 * (record.duration_us as f32 - unit.avg_job_time_us);
        unit.health_score += 0.1 * (f32::from(u8::from(!failed)) - unit.health_score);
        unit.breaker.record(failed, config.breaker_threshold, now);
        if status == JobStatus::Crashed {
            unit.crashes += 1;
            if unit.lifecycle == Lifecycle::Running {
                fail(tree, i, Exit::Crashed, &config, now);
            }
        }
    }

    // Heartbeats of running units that beat.
    for i in 0..tree.units.len() {
        let unit = &tree.units[i];
        let Some(silent) = unit.pulses_without_beat(&sab, pulse) else {
            continue;
        };
        if silent > config.heartbeat_timeout {
            warn!("unit {} missed its heartbeat for {silent} pulses", unit.unit);
            tree.units[i].hangs += 1;
            fail(tree, i, Exit::Hung, &config, now);
        }
    }

    // Lifecycle requests, in the order they were made.
    let mut asked = Vec::new();
    let LifecycleRequests {
        consumer,
        frame,
        malformed,
    } = &mut *requests;
    consumer
        .get()
        .drain(frame, |bytes| match LifecycleRequest::decode(bytes) {
            Ok(request) => asked.push(request),
            Err(e) => {
                *malformed += 1;
                warn!("the lifecycle ring held a frame that is no request: {e}");
            }
        });
    for (unit_hash, action) in asked {
        let Some(i) = tree.index_of_hash(unit_hash) else {
            warn!("lifecycle request {action:?} for unknown unit {unit_hash:#010x}");
            continue;
        };
        let unit = &mut tree.units[i];
        info!("unit {}: {action:?}", unit.unit);
        match action {
            LifecycleAction::Spawn if unit.lifecycle == Lifecycle::Stopped => {
                unit.lifecycle = Lifecycle::Restarting;
                unit.restart_at = now;
                unit.backoff_level = 0;
                tree.escalated &= tree.units.iter().all(|u| u.lifecycle == Lifecycle::Stopped);
            }
            LifecycleAction::Kill => unit.lifecycle = Lifecycle::Stopped,
            LifecycleAction::Pause if unit.lifecycle == Lifecycle::Running => unit.lifecycle = Lifecycle::Paused,
            LifecycleAction::Resume if unit.lifecycle == Lifecycle::Paused => {
                unit.lifecycle = Lifecycle::Running;
                unit.running_since_pulse = pulse;
            }
            LifecycleAction::Restart if matches!(unit.lifecycle, Lifecycle::Running | Lifecycle::Paused) => {
                unit.lifecycle = Lifecycle::Restarting;
                unit.restart_at = now;
                unit.restarts += 1;
            }
            LifecycleAction::Snapshot => {
                let snapshot = UnitSnapshot {
                    unit: unit.unit.clone(),
                    header: header_of(
                        unit,
                        tree.runs,
                        unit.pulses_without_beat(&sab, pulse),
                        config.heartbeat_timeout,
                    ),
                    at: now,
                };
                info!("snapshot of unit {}: {:?}", unit.unit, snapshot.header);
                if tree.snapshots.len() == MAX_SNAPSHOTS {
                    tree.snapshots.remove(0);
                }
                tree.snapshots.push(snapshot);
            }
            _ => warn!("unit {} is {:?}; {action:?} does nothing", unit.unit, unit.lifecycle),
        }
    }

    // Restarts whose back-off is over, stable runs, breakers, status.
    for unit in &mut tree.units {
        if unit.lifecycle == Lifecycle::Restarting && now >= unit.restart_at {
            unit.lifecycle = Lifecycle::Running;
            unit.status = SupervisorStatus::Starting;
            unit.running_since = now;
            unit.running_since_pulse = pulse;
            let _ = sab.heartbeats().clear(unit.registry_slot);
            restarted.write(UnitRestarted {
                unit: unit.unit.clone(),
            });
        }
        if unit.lifecycle == Lifecycle::Running && now.saturating_sub(unit.running_since) >= config.stable_after {
            unit.backoff_level = 0;
        }
        unit.breaker.tick(config.breaker_cooldown, now);
        // A unit that crashed or hung stays a Zombie until it runs again.
        unit.status = match unit.lifecycle {
            Lifecycle::Restarting | Lifecycle::Stopped if unit.status == SupervisorStatus::Zombie => {
                SupervisorStatus::Zombie
            }
            Lifecycle::Restarting => SupervisorStatus::Starting,
            Lifecycle::Running if unit.breaker.state == BreakerState::Closed && unit.health_score >= 0.8 => {
                SupervisorStatus::Healthy
            }
            _ => SupervisorStatus::Degraded,
        };
        queue.set_admission(unit.unit_hash, Admission::of(unit.lifecycle, unit.breaker.state));
    }

    write_headers(&sab, tree, pulse, config.heartbeat_timeout);
    tree.save(&sab, now);
}

/// Unit `i` ended with `exit`: the root decides what restarts.
fn fail(tree: &mut SupervisorTree, i: usize, exit: Exit, config: &SupervisionConfig, now: Duration) {
    let policies: Vec<RestartPolicy> = tree.units.iter().map(|u| u.policy).collect();
    tree.units[i].lifecycle = Lifecycle::Stopped;
    tree.units[i].status = SupervisorStatus::Zombie;
    match tree.root.child_exited(i, exit, &policies, now) {
        Decision::Restart { restart, stop } => {
            // The group starts together, after the failed unit's back-off.
            let failed = &tree.units[i];
            let delay = config
                .backoff_base
                .saturating_mul(1 << failed.backoff_level.min(16))
                .min(config.backoff_max);
            for j in restart {
                let unit = &mut tree.units[j];
                // A bystander the operator killed or paused stays so.
                if j != i && !matches!(unit.lifecycle, Lifecycle::Running | Lifecycle::Restarting) {
                    continue;
                }
                unit.lifecycle = Lifecycle::Restarting;
                unit.restart_at = now + delay;
                unit.restarts += 1;
                unit.backoff_level += 1;
            }
            for j in stop {
                tree.units[j].lifecycle = Lifecycle::Stopped;
            }
            info!(
                "unit {} {exit:?}: restarting after {delay:?} ({:?})",
                tree.units[i].unit, tree.root.strategy
            );
        }
        Decision::Stop => info!(
            "unit {} {exit:?}: not restarted ({:?})",
            tree.units[i].unit, tree.units[i].policy
        ),
        Decision::Escalate => {
            error!(
                "unit {} {exit:?}: more than {} restarts in {:?}; the root supervisor stops every unit",
                tree.units[i].unit, tree.root.intensity.max_restarts, tree.root.intensity.period
            );
            for unit in &mut tree.units {
                unit.lifecycle = Lifecycle::Stopped;
            }
            tree.escalated = true;
            tree.escalations += 1;
        }
    }
}

fn header_of(unit: &UnitSupervisor, runs: u32, silence: Option<u32>, heartbeat_limit: u32) -> SupervisorHeader {
    let mut header = SupervisorHeader {
        supervisor_id: unit.slot.id_hash,
        epoch_index: unit.slot.epoch.get() as u8,
        status: unit.status as u8,
        breaker: unit.breaker.state as u8,
        lifecycle: unit.lifecycle as u8,
        jobs_processed: unit.jobs_processed,
        jobs_failed: unit.jobs_failed,
        avg_job_time_us: unit.avg_job_time_us,
        restarts: unit.restarts,
        health_score: unit.health_score,
        runs,
        last_heartbeat_ms: now_ms(),
        role: ROLE_UNIT,
        unit_hash: unit.unit_hash,
        silent_pulses: silence.unwrap_or(NO_BEAT_PROMISED),
        heartbeat_limit,
        ..SupervisorHeader::default()
    };
    header.set_name(&unit.unit);
    header
}

/// Every supervisor rewrites its header and signals its epoch.
fn write_headers(sab: &Sab, tree: &SupervisorTree, pulse: u32, heartbeat_limit: u32) {
    let table = sab.supervisors();
    for unit in &tree.units {
        let header = header_of(unit, tree.runs, unit.pulses_without_beat(sab, pulse), heartbeat_limit);
        if let Err(e) = table.write_header(unit.slot.slot, &header) {
            error!("supervisor of {} cannot write its header: {e}", unit.unit);
        }
        sab.epochs().signal(unit.slot.epoch);
    }
    if let Some(root) = tree.root_slot {
        let mut header = SupervisorHeader {
            supervisor_id: root.id_hash,
            epoch_index: root.epoch.get() as u8,
            status: if tree.escalated {
                SupervisorStatus::Zombie
            } else {
                SupervisorStatus::Healthy
            } as u8,
            restarts: tree.units.iter().map(|u| u.restarts).sum(),
            jobs_processed: tree.units.iter().map(|u| u.jobs_processed).sum(),
            jobs_failed: tree.units.iter().map(|u| u.jobs_failed).sum(),
            queue_depth: tree.root.recent_restarts() as u32,
            health_score: if tree.escalated { 0.0 } else { 1.0 },
            runs: tree.runs,
            last_heartbeat_ms: now_ms(),
            ..SupervisorHeader::default()
        };
        header.set_name("root");
        if let Err(e) = table.write_header(root.slot, &header) {
            error!("the root supervisor cannot write its header: {e}");
        }
        sab.epochs().signal(root.epoch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RestartPolicy = RestartPolicy::Permanent;
    const T: RestartPolicy = RestartPolicy::Temporary;

    fn supervision(strategy: Strategy, max_restarts: u32) -> Supervision {
        Supervision::new(
            strategy,
            Intensity {
                max_restarts,
                period: Duration::from_secs(5),
            },
        )
    }

    fn restart(restart: &[usize], stop: &[usize]) -> Decision {
        Decision::Restart {
            restart: restart.to_vec(),
            stop: stop.to_vec(),
        }
    }

    #[test]
    fn strategies_pick_the_children_that_restart() {
        let s = |t: u64| Duration::from_secs(t);
        let mut one = supervision(Strategy::OneForOne, 10);
        assert_eq!(one.child_exited(1, Exit::Crashed, &[P, P, P], s(0)), restart(&[1], &[]));
        let mut all = supervision(Strategy::OneForAll, 10);
        assert_eq!(all.child_exited(1, Exit::Crashed, &[P, T, P, P], s(0)), Decision::Stop);
        assert_eq!(
            all.child_exited(2, Exit::Hung, &[P, T, P, P], s(0)),
            restart(&[0, 2, 3], &[1])
        );
        let mut rest = supervision(Strategy::RestForOne, 10);
        assert_eq!(
            rest.child_exited(1, Exit::Crashed, &[P, P, T, P], s(0)),
            restart(&[1, 3], &[2])
        );
        assert_eq!(
            rest.child_exited(3, Exit::Crashed, &[P, P, P, P], s(0)),
            restart(&[3], &[])
        );
        assert_eq!(
            rest.child_exited(0, Exit::Crashed, &[P, P], s(0)),
            restart(&[0, 1], &[])
        );
    }

    #[test]
    fn policies_decide_whether_the_failed_child_restarts() {
        let mut sup = supervision(Strategy::OneForAll, 10);
        let now = Duration::ZERO;
        let transient = [RestartPolicy::Transient, P];
        assert_eq!(sup.child_exited(0, Exit::Normal, &transient, now), Decision::Stop);
        assert_eq!(
            sup.child_exited(0, Exit::Crashed, &transient, now),
            restart(&[0, 1], &[])
        );
        assert_eq!(sup.child_exited(0, Exit::Crashed, &[T, P], now), Decision::Stop);
        assert_eq!(sup.child_exited(1, Exit::Normal, &[T, P], now), restart(&[1], &[0]));
        // Only the two real restarts counted.
        assert_eq!(sup.recent_restarts(), 2);
    }

    #[test]
    fn more_restarts_than_the_intensity_within_the_period_escalate() {
        let ms = Duration::from_millis;
        let mut sup = supervision(Strategy::OneForOne, 2);
        assert_eq!(sup.child_exited(0, Exit::Crashed, &[P], ms(0)), restart(&[0], &[]));
        assert_eq!(sup.child_exited(0, Exit::Crashed, &[P], ms(4_000)), restart(&[0], &[]));
        // The first restart is 5 s old at 5 000 ms: out of the period, so this is the second.
        assert_eq!(sup.child_exited(0, Exit::Crashed, &[P], ms(5_000)), restart(&[0], &[]));
        // Three within 5 s (4 000, 5 000, 8 999): escalate.
        assert_eq!(sup.child_exited(0, Exit::Crashed, &[P], ms(8_999)), Decision::Escalate);
        // Escalating ends the history: a restarted tree starts counting afresh.
        assert_eq!(sup.recent_restarts(), 0);
        assert_eq!(sup.child_exited(0, Exit::Crashed, &[P], ms(9_000)), restart(&[0], &[]));
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_half_opens_after_the_cooldown_and_a_probe_decides() {
        let ms = Duration::from_millis;
        let cooldown = ms(1_000);
        let mut breaker = Breaker::default();
        for t in 0..2 {
            breaker.record(true, 3, ms(t));
        }
        breaker.record(false, 3, ms(2));
        assert_eq!((breaker.state, breaker.consecutive_failures), (BreakerState::Closed, 0));
        for t in 3..6 {
            breaker.record(true, 3, ms(t));
        }
        assert_eq!(breaker.state, BreakerState::Open);
        breaker.tick(cooldown, ms(1_004));
        assert_eq!(breaker.state, BreakerState::Open);
        breaker.tick(cooldown, ms(1_005));
        assert_eq!(breaker.state, BreakerState::HalfOpen);
        // A failed probe opens it again, with a fresh cooldown.
        breaker.record(true, 3, ms(1_100));
        assert_eq!(breaker.state, BreakerState::Open);
        breaker.tick(cooldown, ms(2_099));
        assert_eq!(breaker.state, BreakerState::Open);
        breaker.tick(cooldown, ms(2_100));
        breaker.record(false, 3, ms(2_150));
        assert_eq!(breaker, Breaker::default());
    }
}
