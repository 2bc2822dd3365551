//! The security engine.
//!
//! - **Admission** (`sab::admission`): the engine's settings, a per-unit input size limit and a
//!   token-bucket rate limit per source (the job's `source` metadata), live in the SAB's admission
//!   table, with the buckets. The kernel checks every submitted job there, so the gate is not a
//!   call into this engine; the engine sets the defaults on a new SAB (`DEFAULT_BURST`,
//!   `DEFAULT_PER_SECOND`) and leaves a resumed one's settings alone.
//! - **Anomaly detection** on finished jobs, per unit, read from the job history: an exponentially
//!   weighted mean and variance of the log of the execution time and of the log of the output/input
//!   size ratio; after a warm-up, a z-score beyond the limit is an anomaly (a unit that suddenly
//!   answers 1 000 bytes per input byte, a decompression bomb, is one). Anomalies do not move the
//!   baseline. The baselines and counters live in the engine's area of the SAB's kernel state, so a
//!   resumed snapshot keeps them.
//! - **Audit**: refusals (history records the kernel marked refused) and anomalies become 64-byte
//!   records in the SAB's audit log; the admission counters and the engine's go to its state
//!   record, and it signals `EPOCH_SECURITY`.

use bevy::prelude::*;

use super::EngineSystems;

use crate::protocol::{DEFAULT_BURST, DEFAULT_PER_SECOND, JobStatus};
use crate::sab::engines::{AuditKind, AuditRecord, Engine};
use crate::sab::generated as g;
use crate::sab::kernel_state::AREA_HEADER;
use crate::sab::patterns::Refused;
use crate::sab::table::KeyedTable;
use crate::sab::{EpochIndex, HistoryCursor, HistoryReader, JobRecord, KernelArea, Sab, epoch_changed, now_ms};

/// A streaming mean and variance with exponential forgetting, for z-scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Ewma {
    pub mean: f64,
    pub variance: f64,
    pub samples: u32,
    reserved: u32,
}

impl Ewma {
    /// Folds in `x` with weight `alpha` (the first sample sets the mean).
    pub fn update(&mut self, x: f64, alpha: f64) {
        if self.samples == 0 {
            self.mean = x;
        } else {
            let delta = x - self.mean;
            self.mean += alpha * delta;
            self.variance = (1.0 - alpha) * (self.variance + alpha * delta * delta);
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// How many (floored) standard deviations `x` lies from the mean.
    pub fn z(&self, x: f64, min_std: f64) -> f64 {
        (x - self.mean) / self.variance.sqrt().max(min_std)
    }
}

/// The anomaly detector's settings (`SecurityEngine::config`).
#[derive(Clone, Debug)]
pub struct DetectorConfig {
    /// A |z| beyond this is an anomaly.
    pub z_limit: f64,
    /// Jobs of a unit before its anomalies count.
    pub warmup: u32,
    pub alpha: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            z_limit: 6.0,
            warmup: 32,
            alpha: 0.05,
        }
    }
}

/// The per-unit baselines of the anomaly detector.
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Baseline {
    log_duration: Ewma,
    log_ratio: Ewma,
}

/// Units with a baseline (a table in the engine's kernel-state area; the least recently used one
/// makes room).
pub const MAX_BASELINES: usize = 512;
const _: () =
    assert!(AREA_HEADER + KeyedTable::<u32, Baseline>::bytes(MAX_BASELINES) <= g::SECURITY_STATE_SIZE as usize);

/// The engine's header in its kernel-state area.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct SecurityState {
    pub cursor: HistoryCursor,
    pub duration_anomalies: u64,
    pub ratio_anomalies: u64,
}

/// The detector: its settings, and its header and baselines in the SAB.
#[derive(Resource, Debug)]
pub struct SecurityEngine {
    pub config: DetectorConfig,
    pub state: SecurityState,
    sab: Sab,
}

impl SecurityEngine {
    /// The detector as `sab` holds it, with the default settings.
    pub fn new(sab: &Sab) -> Self {
        Self {
            config: DetectorConfig::default(),
            state: sab.kernel_state(KernelArea::SecurityState).header(),
            sab: sab.clone(),
        }
    }

    fn baselines(&self) -> KeyedTable<'_, u32, Baseline> {
        self.sab
            .kernel_state(KernelArea::SecurityState)
            .table(0, MAX_BASELINES, true)
    }

    /// Checks one finished job against its unit's baselines; returns the anomalies found.
    pub fn observe(&mut self, record: &JobRecord) -> Vec<AuditRecord> {
        let config = &self.config;
        // A job that never ran (refused, timed out) has no execution to judge.
        if JobStatus::from_code(record.status).is_none_or(|s| matches!(s, JobStatus::Rejected | JobStatus::Timeout)) {
            return Vec::new();
        }
        let mut baseline = self.baselines().get(&record.unit_hash).unwrap_or_default();
        let log_duration = (record.execution_ns as f64 / 1e3).max(1.0).ln();
        let log_ratio = ((f64::from(record.output_bytes) + 1.0) / (f64::from(record.input_bytes) + 1.0)).log2();
        let audit = |kind: AuditKind, z: f64| AuditRecord {
            time_ms: now_ms(),
            job_id: record.job_id,
            kind: kind as u32,
            source_hash: record.source_hash,
            unit_hash: record.unit_hash,
            value: z as f32,
            limit: config.z_limit as f32,
            ..AuditRecord::default()
        };
        let mut anomalies = Vec::new();
        let warm = baseline.log_duration.samples >= config.warmup;
        // Durations jitter: at least a factor of e^0.5 per standard deviation. Ratios are usually
        // exact: a quarter of a doubling.
        let z_duration = baseline.log_duration.z(log_duration, 0.5);
        let z_ratio = baseline.log_ratio.z(log_ratio, 0.25);
        if warm && z_duration.abs() > config.z_limit {
            self.state.duration_anomalies += 1;
            anomalies.push(audit(AuditKind::DurationAnomaly, z_duration));
        } else {
            baseline.log_duration.update(log_duration, config.alpha);
        }
        if warm && z_ratio.abs() > config.z_limit {
            self.state.ratio_anomalies += 1;
            anomalies.push(audit(AuditKind::RatioAnomaly, z_ratio));
        } else {
            baseline.log_ratio.update(log_ratio, config.alpha);
        }
        self.baselines()
            .insert(record.unit_hash, baseline)
            .expect("an evicting table takes every key");
        anomalies
    }
}

/// Sets the admission table's rate limit on a new SAB (a resumed one keeps its own).
pub(crate) fn configure_admission(sab: &Sab) {
    let admission = sab.admission();
    if !admission.is_configured() {
        admission.configure(DEFAULT_BURST, DEFAULT_PER_SECOND);
    }
}

/// The audit record of a job the kernel refused at submission, if `record` is one.
fn refusal_audit(sab: &Sab, record: &JobRecord) -> Option<AuditRecord> {
    let (kind, value, limit) = match Refused::from_u8(record.refusal)? {
        Refused::RateLimited => (AuditKind::RateLimited, 1.0, sab.admission().stats().burst as f32),
        Refused::TooLarge => (
            AuditKind::TooLarge,
            record.input_bytes as f32,
            sab.admission().input_limit(record.unit_hash).unwrap_or(0) as f32,
        ),
        Refused::Malformed => (AuditKind::Malformed, 0.0, 0.0),
    };
    Some(AuditRecord {
        time_ms: record.submitted_ms,
        job_id: record.job_id,
        kind: kind as u32,
        source_hash: record.source_hash,
        unit_hash: record.unit_hash,
        value,
        limit,
        ..AuditRecord::default()
    })
}

/// The security engine: sets a new SAB's admission table, then audits the job history.
pub struct SecurityPlugin;

impl Plugin for SecurityPlugin {
    fn build(&self, app: &mut App) {
        configure_admission(app.world().resource::<Sab>());
        let engine = SecurityEngine::new(app.world().resource::<Sab>());
        app.insert_resource(engine).add_systems(
            FixedUpdate,
            run_security
                .in_set(EngineSystems)
                .run_if(epoch_changed(EpochIndex::JOB_HISTORY)),
        );
    }
}

/// Reads the job history from the engine's cursor: audits the refusals, runs the detector over the
/// finished jobs, and writes the audit log and the engine record.
fn run_security(sab: Res<Sab>, mut engine: ResMut<SecurityEngine>, mut history: Local<HistoryReader>) {
    let mut records = Vec::new();
    let engine = &mut *engine;
    for job in history.read(&sab, &mut engine.state.cursor) {
        match refusal_audit(&sab, job) {
            Some(audit) => records.push(audit),
            None => records.extend(engine.observe(job)),
        }
    }
    let log = sab.audit_log();
    if !records.is_empty() {
        log.append(&records);
    }
    engine
        .sab
        .kernel_state(KernelArea::SecurityState)
        .set_header(&engine.state);
    let admission = sab.admission().stats();
    sab.engines().publish(
        Engine::Security,
        &[
            admission.admitted as f32,
            admission.rate_limited as f32,
            admission.too_large as f32,
            engine.state.duration_anomalies as f32,
            engine.state.ratio_anomalies as f32,
            log.total() as f32,
            engine.state.cursor.lost as f32,
            admission.malformed as f32,
            admission.sources as f32,
        ],
    );
    sab.epochs().signal(EpochIndex::SECURITY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ewma_tracks_mean_and_variance() {
        let mut e = Ewma::default();
        for x in [10.0, 10.0, 10.0] {
            e.update(x, 0.5);
        }
        assert_eq!((e.mean, e.variance, e.samples), (10.0, 0.0, 3));
        e.update(14.0, 0.5);
        // mean 10 + 0.5 × 4 = 12; variance (1 − 0.5)(0 + 0.5 × 16) = 4.
        assert_eq!((e.mean, e.variance), (12.0, 4.0));
        assert_eq!(e.z(16.0, 0.1), 2.0);
        assert_eq!(e.z(12.5, 1.0), 0.25);
        assert_eq!(Ewma::default().z(1.0, 0.5), 2.0);
    }
}
