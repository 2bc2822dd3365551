//! The health engine: per unit, a CUSUM on job latency and a hazard rate, fed by measured values
//! (reference §7.3, with its placeholders replaced).
//!
//! - **CUSUM** on the execution time of a unit's successful jobs, as the job host measured it
//!   (time spent queued is the scheduler's business), in units of its own baseline b: the mean of
//!   the first `CUSUM_WARMUP` jobs (the original took the first sample alone). Each job adds
//!   min(x, 3b) − b − 0.5·b to S = max(0, S + …), and S > 5·b is a degradation. The original's
//!   alarm was an absolute 5 ms, which one preemption of a microsecond unit crosses; scaled and
//!   capped, one job adds at most 1.5·b, so only a run of slow jobs raises the alarm (four at 3·b
//!   or more, eleven at 2·b), whatever the unit's speed, and the delay is exact and testable.
//! - **Hazard** h = 0.5 if the unit's error rate (exponentially weighted) is over 5 %, + 0.3 if its
//!   mean latency is over 4 times its CUSUM baseline, + 0.7 if it is overdue on its heartbeat (more
//!   than half the tree's timeout); P(fail) = 1 − e^(−h), unhealthy above 0.65: a unit whose jobs
//!   fail while it has stopped beating (h ≥ 1.2, a hung unit whose jobs time out), caught halfway
//!   to the tree's own heartbeat timeout. One term alone, or slowness with either other term, is
//!   not enough. The original's CPU (0.3) and memory (0.4) terms had placeholder inputs; the
//!   overdue heartbeat, a unit starved of either, takes their combined weight. Its latency term was
//!   an absolute second, which a unit that runs in microseconds never reached.
//! - **Remediation.** A degradation or an unhealthy hazard asks the unit's supervisor for a restart
//!   (a `LifecycleAction::Restart` request on the SAB's lifecycle ring), and the unit's CUSUM starts
//!   again.
//!
//! Its per-unit state (CUSUM, rates, hazard) and counters live in its area of the SAB's kernel
//! state. It reads the SAB alone: the job history from its own cursor, and the unit supervisors' headers
//! (status, pulses since the unit's last beat, the tree's heartbeat timeout). It runs on every pulse
//! (heartbeats age by pulses), publishes its state record and signals `EPOCH_HEALTH`.

use bevy::prelude::*;

use super::EngineSystems;

use crate::protocol::JobStatus;
use crate::sab::engines::Engine;
use crate::sab::generated as g;
use crate::sab::kernel_state::AREA_HEADER;
use crate::sab::lifecycle::{LifecycleAction, LifecycleRequest};
use crate::sab::supervisors::{NO_BEAT_PROMISED, ROLE_UNIT, SupervisorHeader};
use crate::sab::table::KeyedTable;
use crate::sab::{
    EpochIndex, HistoryCursor, HistoryReader, JobRecord, KernelArea, Owner, Sab, SupervisorStatus, epoch_changed,
};

/// Jobs whose mean latency is the CUSUM baseline.
pub const CUSUM_WARMUP: u32 = 8;
/// The CUSUM's alarm level, in baselines of accumulated excess.
pub const CUSUM_THRESHOLD: f64 = 5.0;
/// The CUSUM's allowance per job (excess below it does not accumulate), in baselines.
pub const CUSUM_SLACK: f64 = 0.5;
/// The most one job counts for, in baselines: a single outlier cannot raise the alarm.
pub const CUSUM_CAP: f64 = 3.0;
/// P(fail) above which a unit is unhealthy.
pub const UNHEALTHY: f64 = 0.65;
/// Mean latency, in CUSUM baselines, above which a unit counts as slow for the hazard.
pub const SLOW: f64 = 4.0;

/// A one-sided CUSUM on latency.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Cusum {
    warmup_sum: f64,
    /// Valid once `warm` is 1.
    baseline: f64,
    pub s: f64,
    warmup_count: u32,
    warm: u32,
}

impl Cusum {
    /// The mean of the first `CUSUM_WARMUP` latencies, once there were that many.
    pub fn baseline(&self) -> Option<f64> {
        (self.warm != 0).then_some(self.baseline)
    }

    /// Folds in a latency (ms); true when it raises the alarm (S is then reset).
    pub fn observe(&mut self, x: f64) -> bool {
        let Some(b) = self.baseline() else {
            self.warmup_sum += x;
            self.warmup_count += 1;
            if self.warmup_count == CUSUM_WARMUP {
                self.baseline = self.warmup_sum / f64::from(CUSUM_WARMUP);
                self.warm = 1;
            }
            return false;
        };
        self.s = (self.s + (x.min(CUSUM_CAP * b) - b) - CUSUM_SLACK * b).max(0.0);
        if self.s > CUSUM_THRESHOLD * b {
            self.s = 0.0;
            return true;
        }
        false
    }
}

/// The hazard rate from measured values, and P(fail) = 1 − e^(−h).
pub fn hazard(error_rate: f64, slow: bool, heartbeat_overdue: bool) -> (f64, f64) {
    let h = 0.5 * f64::from(u8::from(error_rate > 0.05))
        + 0.3 * f64::from(u8::from(slow))
        + 0.7 * f64::from(u8::from(heartbeat_overdue));
    (h, 1.0 - (-h).exp())
}

#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct UnitHealth {
    cusum: Cusum,
    error_rate: f64,
    latency_ms: f64,
    hazard: f64,
}

/// Units the engine follows (a table in its kernel-state area; the least recently used one makes
/// room).
pub const MAX_UNITS: usize = 128;
const _: () = assert!(AREA_HEADER + KeyedTable::<u32, UnitHealth>::bytes(MAX_UNITS) <= g::HEALTH_STATE_SIZE as usize);

fn units(sab: &Sab) -> KeyedTable<'_, u32, UnitHealth> {
    sab.kernel_state(KernelArea::HealthState).table(0, MAX_UNITS, true)
}

/// The engine's header in its kernel-state area.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct HealthState {
    pub cursor: HistoryCursor,
    pub degradations: u64,
    pub remediations: u64,
}

/// The engine: its header, and each unit's CUSUM and rates in the SAB.
#[derive(Resource, Debug)]
pub struct HealthEngine {
    pub state: HealthState,
    sab: Sab,
}

impl HealthEngine {
    /// The engine as `sab` holds it.
    pub fn new(sab: &Sab) -> Self {
        Self {
            state: sab.kernel_state(KernelArea::HealthState).header(),
            sab: sab.clone(),
        }
    }

    /// Folds in a finished job; true when its unit has just degraded.
    pub fn observe(&mut self, job: &JobRecord) -> bool {
        let Some(status) = JobStatus::from_code(job.status) else {
            return false;
        };
        if status == JobStatus::Rejected {
            return false; // refused before running: says nothing about the unit
        }
        let failed = !matches!(status, JobStatus::Success | JobStatus::InvalidParams);
        let ms = job.execution_ns as f64 / 1e6;
        let mut degraded = false;
        units(&self.sab)
            .upsert(job.unit_hash, |unit| {
                unit.error_rate += 0.1 * (f64::from(u8::from(failed)) - unit.error_rate);
                if !failed {
                    unit.latency_ms += 0.1 * (ms - unit.latency_ms);
                    degraded = unit.cusum.observe(ms);
                }
            })
            .expect("an evicting table takes every key");
        self.state.degradations += u64::from(degraded);
        degraded
    }
}

/// The health engine, on every pulse (heartbeats age by pulses).
pub struct HealthPlugin;

impl Plugin for HealthPlugin {
    fn build(&self, app: &mut App) {
        let engine = HealthEngine::new(app.world().resource::<Sab>());
        app.insert_resource(engine).add_systems(
            FixedUpdate,
            run_health
                .in_set(EngineSystems)
                .run_if(epoch_changed(EpochIndex::SYSTEM_PULSE)),
        );
    }
}

fn run_health(sab: Res<Sab>, mut engine: ResMut<HealthEngine>, mut history: Local<HistoryReader>) {
    let engine = &mut *engine;
    let mut cursor = engine.state.cursor;
    let mut remediate: Vec<u32> = history
        .read(&sab, &mut cursor)
        .iter()
        .filter(|job| engine.observe(job))
        .map(|job| job.unit_hash)
        .collect();
    engine.state.cursor = cursor;
    let units_table = units(&sab);
    // The unit supervisors' headers: status, and pulses since the unit's last beat. One being
    // written is read on the next pulse.
    let table = sab.supervisors();
    let units: Vec<SupervisorHeader> = table
        .allocated()
        .into_iter()
        .filter_map(|slot| table.header(slot.slot).ok())
        .filter(|header| header.role == ROLE_UNIT)
        .collect();
    let (mut healthy, mut degraded, mut zombie) = (0u32, 0u32, 0u32);
    for unit in &units {
        match SupervisorStatus::from_u8(unit.status) {
            Some(SupervisorStatus::Healthy) => healthy += 1,
            Some(SupervisorStatus::Zombie) => zombie += 1,
            _ => degraded += 1,
        }
        let overdue = unit.silent_pulses != NO_BEAT_PROMISED && unit.silent_pulses > unit.heartbeat_limit / 2;
        let mut p_fail = 0.0;
        units_table
            .upsert(unit.unit_hash, |health| {
                let slow = health.cusum.baseline().is_some_and(|b| health.latency_ms > SLOW * b);
                let (h, p) = hazard(health.error_rate, slow, overdue);
                health.hazard = h;
                p_fail = p;
            })
            .expect("an evicting table takes every key");
        if p_fail > UNHEALTHY && !remediate.contains(&unit.unit_hash) {
            remediate.push(unit.unit_hash);
        }
    }
    for unit_hash in remediate {
        // Only units with a supervisor can be restarted.
        let Some(unit) = units.iter().find(|u| u.unit_hash == unit_hash) else {
            continue;
        };
        if let Some(mut health) = units_table.get(&unit_hash) {
            health.cusum.s = 0.0;
            health.error_rate = 0.0;
            units_table.insert(unit_hash, health).expect("the unit is in the table");
        }
        warn!(
            "health: unit {} is degraded; asking its supervisor to restart it",
            unit.name()
        );
        let request = LifecycleRequest::for_hash(unit_hash, LifecycleAction::Restart);
        match sab.request_lifecycle(Owner::Kernel, request) {
            Ok(()) => engine.state.remediations += 1,
            Err(e) => error!("health: the restart of {} was not requested: {e}", unit.name()),
        }
    }
    let (max_hazard, max_cusum) = units_table
        .entries()
        .fold((0.0, 0.0), |(h, s), (_, u)| (u.hazard.max(h), u.cusum.s.max(s)));
    sab.kernel_state(KernelArea::HealthState).set_header(&engine.state);
    sab.engines().publish(
        Engine::Health,
        &[
            healthy as f32,
            degraded as f32,
            zombie as f32,
            max_hazard as f32,
            max_cusum as f32,
            engine.state.degradations as f32,
            engine.state.remediations as f32,
            engine.state.cursor.lost as f32,
        ],
    );
    sab.epochs().signal(EpochIndex::HEALTH);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warmed(baseline: f64) -> Cusum {
        let mut cusum = Cusum::default();
        for _ in 0..CUSUM_WARMUP {
            assert!(!cusum.observe(baseline));
        }
        assert_eq!(cusum.baseline(), Some(baseline));
        cusum
    }

    /// The number of jobs at `x` that raise the alarm on a fresh baseline `b`.
    fn jobs_to_alarm(b: f64, x: f64) -> Option<u32> {
        let mut cusum = warmed(b);
        (1..=100).find(|_| cusum.observe(x))
    }

    #[test]
    fn the_cusum_detects_a_doubled_latency_after_exactly_eleven_jobs() {
        let mut cusum = warmed(4.0);
        // At the baseline S stays 0; each job at 8 ms adds 8 − 4 − 2 = 2: after 10 jobs S = 20,
        // which is not above 5 × 4; the eleventh raises the alarm.
        assert!(!cusum.observe(4.0));
        assert_eq!(cusum.s, 0.0);
        for _ in 0..10 {
            assert!(!cusum.observe(8.0));
        }
        assert_eq!(cusum.s, 20.0);
        assert!(cusum.observe(8.0));
        assert_eq!(cusum.s, 0.0, "reset after the alarm");
        // Noise within half the baseline never accumulates.
        for x in [5.9, 2.0, 5.9, 5.9, 3.0] {
            assert!(!cusum.observe(x));
        }
    }

    /// The alarm scales with the unit: the same relative slowdown takes the same number of jobs
    /// for an 8 µs unit as for a 64 ms one, and far slower jobs take four. (Baselines are powers
    /// of two, so the sums are exact.)
    #[test]
    fn the_alarm_is_relative_to_the_units_own_baseline() {
        for b in [0.0078125, 0.25, 64.0] {
            assert_eq!(jobs_to_alarm(b, 2.0 * b), Some(11), "baseline {b} ms");
            assert_eq!(jobs_to_alarm(b, 3.0 * b), Some(4), "baseline {b} ms");
            assert_eq!(jobs_to_alarm(b, 1000.0 * b), Some(4), "baseline {b} ms");
            assert_eq!(jobs_to_alarm(b, 1.4 * b), None, "baseline {b} ms");
        }
    }

    /// A microsecond unit preempted now and then (one job in eight takes 6 ms instead of 5 µs)
    /// is never taken for a degraded one; under the original's absolute 5 ms alarm the first
    /// preemption restarted it.
    #[test]
    fn preemptions_of_a_fast_unit_raise_no_alarm() {
        let mut cusum = warmed(0.005);
        for job in 0..10_000 {
            let x = if job % 8 == 7 { 6.0 } else { 0.005 };
            assert!(!cusum.observe(x), "job {job}");
        }
    }

    #[test]
    fn hazard_terms_add_up_and_failing_while_silent_is_unhealthy() {
        assert_eq!(hazard(0.0, false, false), (0.0, 0.0));
        let (h, p) = hazard(0.06, false, false);
        assert_eq!(h, 0.5);
        assert!((p - (1.0 - (-0.5f64).exp())).abs() < 1e-12 && p < UNHEALTHY);
        let (h, p) = hazard(0.5, true, true);
        assert!((h - 1.5).abs() < 1e-12);
        assert!(p > UNHEALTHY, "{p}");
        // Errors while silent: unhealthy; any other pair, or one term alone: not.
        assert!(hazard(0.5, false, true).1 > UNHEALTHY);
        for (errors, slow, silent) in [
            (0.5, true, false),
            (0.0, true, true),
            (0.0, false, true),
            (0.0, true, false),
        ] {
            assert!(hazard(errors, slow, silent).1 < UNHEALTHY, "{errors} {slow} {silent}");
        }
    }
}
