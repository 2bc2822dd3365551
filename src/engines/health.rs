//! The health engine: per unit, a CUSUM on job latency and a hazard rate, fed by measured values
//! (reference §7.3, with its placeholders replaced).
//!
//! - **CUSUM** on the execution time (ms) of a unit's successful jobs, as the job host measured
//!   it (time spent queued is the scheduler's business): the baseline is the mean of the first
//!   `CUSUM_WARMUP` jobs
//!   (the original took the first sample alone); then S = max(0, S + (x − b) − 0.5·b), and
//!   S > 5 is a degradation. A job twice as slow as the baseline adds 0.5·b per job, so the
//!   detection delay is exact and testable.
//! - **Hazard** h = 0.5 if the unit's error rate (exponentially weighted) is over 5 %, + 0.3 if its
//!   mean latency is over 1 s, + 0.7 if it is overdue on its heartbeat (more than half the tree's
//!   timeout); P(fail) = 1 − e^(−h), unhealthy above 0.7, i.e. when all three hold. The
//!   original's CPU (0.3) and memory (0.4) terms had placeholder inputs; the overdue heartbeat, a
//!   unit starved of either, takes their combined weight.
//! - **Remediation.** A degradation or an unhealthy hazard restarts the unit through its
//!   supervisor (`LifecycleAction::Restart`), and the unit's CUSUM starts again.
//!
//! It runs on every pulse (heartbeats age by pulses), publishes its state record and signals
//! `EPOCH_HEALTH`.

use bevy::platform::collections::HashMap;

use bevy::prelude::*;

use crate::protocol::JobStatus;
use crate::sab::engines::Engine;
use crate::sab::{EpochIndex, Sab, SupervisorStatus};
use crate::supervisors::jobs::JobFinished;
use crate::supervisors::tree::{LifecycleAction, SupervisionConfig, SupervisorCommand, SupervisorTree};

/// Jobs whose mean latency is the CUSUM baseline.
pub const CUSUM_WARMUP: u32 = 8;
/// The CUSUM's alarm level (ms of accumulated excess).
pub const CUSUM_THRESHOLD: f64 = 5.0;
/// P(fail) above which a unit is unhealthy.
pub const UNHEALTHY: f64 = 0.7;

/// A one-sided CUSUM on latency.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cusum {
    warmup_sum: f64,
    warmup_count: u32,
    pub baseline: Option<f64>,
    pub s: f64,
}

impl Cusum {
    /// Folds in a latency (ms); true when it raises the alarm (S is then reset).
    pub fn observe(&mut self, x: f64) -> bool {
        let Some(b) = self.baseline else {
            self.warmup_sum += x;
            self.warmup_count += 1;
            if self.warmup_count == CUSUM_WARMUP {
                self.baseline = Some(self.warmup_sum / f64::from(CUSUM_WARMUP));
            }
            return false;
        };
        self.s = (self.s + (x - b) - 0.5 * b).max(0.0);
        if self.s > CUSUM_THRESHOLD {
            self.s = 0.0;
            return true;
        }
        false
    }
}

/// The hazard rate from measured values, and P(fail) = 1 − e^(−h).
pub fn hazard(error_rate: f64, latency_ms: f64, heartbeat_overdue: bool) -> (f64, f64) {
    let h = 0.5 * f64::from(u8::from(error_rate > 0.05))
        + 0.3 * f64::from(u8::from(latency_ms > 1000.0))
        + 0.7 * f64::from(u8::from(heartbeat_overdue));
    (h, 1.0 - (-h).exp())
}

#[derive(Clone, Copy, Debug, Default)]
struct UnitHealth {
    cusum: Cusum,
    error_rate: f64,
    latency_ms: f64,
    hazard: f64,
}

#[derive(Resource, Default, Debug)]
pub struct HealthEngine {
    units: HashMap<u32, UnitHealth>,
    pub degradations: u64,
    pub remediations: u64,
}

impl HealthEngine {
    /// Folds in a finished job; true when its unit has just degraded.
    pub fn observe(&mut self, job: &JobFinished) -> bool {
        if job.status == JobStatus::Rejected {
            return false; // refused before running: says nothing about the unit
        }
        let unit = self.units.entry(job.record.unit_hash).or_default();
        let failed = !matches!(job.status, JobStatus::Success | JobStatus::InvalidParams);
        unit.error_rate += 0.1 * (f64::from(u8::from(failed)) - unit.error_rate);
        if failed {
            return false;
        }
        let ms = f64::from(job.execution_us) / 1000.0;
        unit.latency_ms += 0.1 * (ms - unit.latency_ms);
        let degraded = unit.cusum.observe(ms);
        self.degradations += u64::from(degraded);
        degraded
    }
}

pub(crate) fn run_health(
    sab: Res<Sab>,
    tree: Res<SupervisorTree>,
    config: Res<SupervisionConfig>,
    mut engine: ResMut<HealthEngine>,
    mut finished: MessageReader<JobFinished>,
    mut commands: MessageWriter<SupervisorCommand>,
) {
    let mut remediate: Vec<u32> = finished
        .read()
        .filter(|job| engine.observe(job))
        .map(|job| job.record.unit_hash)
        .collect();
    let pulse = sab.epochs().load(EpochIndex::SYSTEM_PULSE);
    let (mut healthy, mut degraded, mut zombie) = (0u32, 0u32, 0u32);
    for unit in &tree.units {
        match unit.status {
            SupervisorStatus::Healthy => healthy += 1,
            SupervisorStatus::Zombie => zombie += 1,
            _ => degraded += 1,
        }
        let overdue = unit
            .pulses_without_beat(&sab, pulse)
            .is_some_and(|silent| silent > config.heartbeat_timeout / 2);
        let health = engine.units.entry(unit.unit_hash).or_default();
        let (h, p_fail) = hazard(health.error_rate, health.latency_ms, overdue);
        health.hazard = h;
        if p_fail > UNHEALTHY && !remediate.contains(&unit.unit_hash) {
            remediate.push(unit.unit_hash);
        }
    }
    for unit_hash in remediate {
        let Some(unit) = tree.index_of_hash(unit_hash).map(|i| &tree.units[i]) else {
            continue;
        };
        if let Some(health) = engine.units.get_mut(&unit_hash) {
            health.cusum.s = 0.0;
            health.error_rate = 0.0;
        }
        warn!("health: unit {} is degraded; restarting it", unit.unit);
        engine.remediations += 1;
        commands.write(SupervisorCommand {
            unit: unit.unit.clone(),
            action: LifecycleAction::Restart,
        });
    }
    let max_hazard = engine.units.values().map(|u| u.hazard).fold(0.0, f64::max);
    let max_cusum = engine.units.values().map(|u| u.cusum.s).fold(0.0, f64::max);
    sab.engines().publish(
        Engine::Health,
        &[
            healthy as f32,
            degraded as f32,
            zombie as f32,
            max_hazard as f32,
            max_cusum as f32,
            engine.degradations as f32,
            engine.remediations as f32,
        ],
    );
    sab.epochs().signal(EpochIndex::HEALTH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cusum_detects_a_doubled_latency_after_exactly_three_jobs() {
        let mut cusum = Cusum::default();
        for _ in 0..CUSUM_WARMUP {
            assert!(!cusum.observe(4.0));
        }
        assert_eq!(cusum.baseline, Some(4.0));
        // At the baseline S stays 0; each job at 8 ms adds 8 − 4 − 2 = 2: 2, 4, 6 > 5.
        assert!(!cusum.observe(4.0));
        assert_eq!(cusum.s, 0.0);
        assert!(!cusum.observe(8.0));
        assert!(!cusum.observe(8.0));
        assert_eq!(cusum.s, 4.0);
        assert!(cusum.observe(8.0));
        assert_eq!(cusum.s, 0.0, "reset after the alarm");
        // Noise within half the baseline never accumulates.
        for x in [5.9, 2.0, 5.9, 5.9, 3.0] {
            assert!(!cusum.observe(x));
        }
    }

    #[test]
    fn hazard_terms_add_up_and_only_all_three_are_unhealthy() {
        assert_eq!(hazard(0.0, 10.0, false), (0.0, 0.0));
        let (h, p) = hazard(0.06, 10.0, false);
        assert_eq!(h, 0.5);
        assert!((p - (1.0 - (-0.5f64).exp())).abs() < 1e-12 && p < UNHEALTHY);
        let (h, p) = hazard(0.5, 1500.0, true);
        assert!((h - 1.5).abs() < 1e-12);
        assert!(p > UNHEALTHY, "{p}");
        assert!(hazard(0.5, 10.0, true).1 < UNHEALTHY);
        assert!(hazard(0.5, 1500.0, false).1 < UNHEALTHY);
    }
}
