//! The security engine.
//!
//! - **The gate** every job passes at submission (`JobQueue::submit` calls `SecurityGate::admit`
//!   after the frame has been validated): a per-unit input size limit and a token-bucket rate
//!   limit per source (the job's `source` metadata). The bucket counts in token-nanoseconds with
//!   integer arithmetic, so it is exact at the boundary: with rate r, a token comes back exactly
//!   1/r seconds after the bucket ran dry, not a nanosecond earlier.
//! - **Anomaly detection** on finished jobs, per unit: an exponentially weighted mean and variance
//!   of the log of the execution time and of the log of the output/input size ratio; after a warm-up, a
//!   z-score beyond the limit is an anomaly (a unit that suddenly answers 1 000 bytes per input
//!   byte, a decompression bomb, is one). Anomalies do not move the baseline.
//! - **Audit**: refusals and anomalies become 64-byte records in the SAB's audit log; the engine's
//!   counters go to its state record, and it signals `EPOCH_SECURITY`.

use bevy::platform::collections::HashMap;

use bevy::prelude::*;

use crate::protocol::{Job, JobStatus, MAX_SOURCES, source_of};
use crate::sab::engines::{AuditKind, AuditRecord, Engine};
use crate::sab::{EpochIndex, HistoryReader, JobRecord, Sab, now_ms};
use crate::supervisors::jobs::JobQueue;

const NANOS: u64 = 1_000_000_000;

/// A token bucket: `capacity` tokens, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    capacity: u64,
    per_second: u64,
    /// Tokens × 10⁹.
    level: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket at time 0.
    pub fn new(capacity: u32, per_second: u32) -> Self {
        Self {
            capacity: u64::from(capacity),
            per_second: u64::from(per_second),
            level: u64::from(capacity) * NANOS,
            last_ns: 0,
        }
    }

    /// Takes one token at `now_ns` (a monotonic clock), if there is one.
    pub fn try_take(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        self.level = self
            .level
            .saturating_add(elapsed.saturating_mul(self.per_second))
            .min(self.capacity * NANOS);
        if self.level >= NANOS {
            self.level -= NANOS;
            true
        } else {
            false
        }
    }
}

/// A streaming mean and variance with exponential forgetting, for z-scores.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ewma {
    pub mean: f64,
    pub variance: f64,
    pub samples: u32,
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

/// The bucket that sources beyond `MAX_SOURCES` share.
pub const OVERFLOW_SOURCE: &str = "(other sources)";

/// The gate's and the detector's settings (`JobQueue::gate_mut().config`).
#[derive(Clone, Debug)]
pub struct SecurityConfig {
    /// Tokens per source: the burst, and the refill per second.
    pub burst: u32,
    pub per_second: u32,
    /// Input size limits per unit id (bytes); units not listed take what the inbox takes.
    pub input_limits: Vec<(String, u64)>,
    /// A |z| beyond this is an anomaly.
    pub z_limit: f64,
    /// Jobs of a unit before its anomalies count.
    pub warmup: u32,
    pub alpha: f64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            // One source may submit a burst of 4 096 jobs (the pipeline's in-flight window), then
            // 1 000 jobs a second: well above what the node's own parts submit (a GA generation
            // every few seconds, workflow steps, an operator's jobs), well below what would let
            // one caller starve the others. The benchmark, which floods the pipeline on purpose,
            // sets its own.
            burst: 4_096,
            per_second: 1_000,
            input_limits: Vec::new(),
            z_limit: 6.0,
            warmup: 32,
            alpha: 0.05,
        }
    }
}

/// Why the gate refused a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    #[error("source {0:?} is over its rate limit")]
    RateLimited(String),
    #[error("the job's input is {len} bytes; unit {unit:?} takes at most {max}")]
    InputTooLarge { unit: String, len: u64, max: u64 },
}

/// The per-unit baselines of the anomaly detector.
#[derive(Clone, Copy, Debug, Default)]
struct Baseline {
    log_duration: Ewma,
    log_ratio: Ewma,
}

/// The gate's state and counters; owned by the job queue (the gate runs inside `submit`).
#[derive(Debug, Default)]
pub struct SecurityGate {
    pub config: SecurityConfig,
    buckets: HashMap<String, TokenBucket>,
    pending: Vec<AuditRecord>,
    pub admitted: u64,
    pub rate_limited: u64,
    pub too_large: u64,
}

impl SecurityGate {
    /// Checks `job` (input `input_len` bytes) at `now_ns`; counts and audits a refusal.
    pub fn admit(&mut self, job: &Job, input_len: u64, now_ns: u64) -> Result<(), GateError> {
        let config = &self.config;
        let limit = config.input_limits.iter().find(|(unit, _)| *unit == job.library);
        let (limit, burst, rate) = (limit.map(|(_, max)| *max), config.burst, config.per_second);
        if let Some(max) = limit
            && input_len > max
        {
            self.too_large += 1;
            self.audit(job, AuditKind::TooLarge, input_len as f32, max as f32);
            return Err(GateError::InputTooLarge {
                unit: job.library.clone(),
                len: input_len,
                max,
            });
        }
        // Sources name themselves, so past `MAX_SOURCES` the newcomers share one bucket.
        let name = source_of(job);
        let source = if self.buckets.len() < MAX_SOURCES || self.buckets.contains_key(name) {
            name
        } else {
            OVERFLOW_SOURCE
        };
        let bucket = self.buckets.entry_ref(source).or_insert_with(|| {
            let mut bucket = TokenBucket::new(burst, rate);
            bucket.last_ns = now_ns;
            bucket
        });
        if !bucket.try_take(now_ns) {
            self.rate_limited += 1;
            self.audit(job, AuditKind::RateLimited, 1.0, burst as f32);
            return Err(GateError::RateLimited(source.to_owned()));
        }
        self.admitted += 1;
        Ok(())
    }

    /// Whether refusals wait to be written to the audit log.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Audits a job whose frame did not validate.
    pub fn malformed(&mut self, job: &Job) {
        self.audit(job, AuditKind::Malformed, 0.0, 0.0);
    }

    fn audit(&mut self, job: &Job, kind: AuditKind, value: f32, limit: f32) {
        self.pending.push(AuditRecord {
            time_ms: now_ms(),
            job_id: job.id,
            kind: kind as u32,
            source_hash: crc32c::crc32c(source_of(job).as_bytes()),
            unit_hash: crc32c::crc32c(job.library.as_bytes()),
            value,
            limit,
            ..AuditRecord::default()
        });
    }
}

/// The detector's state and counters.
#[derive(Resource, Default, Debug)]
pub struct SecurityEngine {
    /// Where the engine stands in the job history.
    pub history: HistoryReader,
    baselines: HashMap<u32, Baseline>,
    pub duration_anomalies: u64,
    pub ratio_anomalies: u64,
}

impl SecurityEngine {
    /// Checks one finished job against its unit's baselines; returns the anomalies found.
    pub fn observe(&mut self, record: &JobRecord, config: &SecurityConfig) -> Vec<AuditRecord> {
        // A job that never ran (refused, timed out) has no execution to judge.
        if JobStatus::from_code(record.status).is_none_or(|s| matches!(s, JobStatus::Rejected | JobStatus::Timeout)) {
            return Vec::new();
        }
        let baseline = self.baselines.entry(record.unit_hash).or_default();
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
            self.duration_anomalies += 1;
            anomalies.push(audit(AuditKind::DurationAnomaly, z_duration));
        } else {
            baseline.log_duration.update(log_duration, config.alpha);
        }
        if warm && z_ratio.abs() > config.z_limit {
            self.ratio_anomalies += 1;
            anomalies.push(audit(AuditKind::RatioAnomaly, z_ratio));
        } else {
            baseline.log_ratio.update(log_ratio, config.alpha);
        }
        anomalies
    }
}

/// Runs the detector over the tick's finished jobs, writes the audit log and the engine record.
pub(crate) fn run_security(sab: Res<Sab>, mut engine: ResMut<SecurityEngine>, mut queue: ResMut<JobQueue>) {
    let gate = queue.gate_mut();
    let mut records = std::mem::take(&mut gate.pending);
    let mut history = std::mem::take(&mut engine.history);
    for job in history.read(&sab) {
        records.extend(engine.observe(job, &gate.config));
    }
    engine.history = history;
    let log = sab.audit_log();
    if !records.is_empty() {
        log.append(&records);
    }
    sab.engines().publish(
        Engine::Security,
        &[
            gate.admitted as f32,
            gate.rate_limited as f32,
            gate.too_large as f32,
            engine.duration_anomalies as f32,
            engine.ratio_anomalies as f32,
            log.total() as f32,
            engine.history.cursor.lost as f32,
        ],
    );
    sab.epochs().signal(EpochIndex::SECURITY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_bucket_is_exact_at_the_boundary() {
        // 3 tokens, 2 per second: a token every 500 ms.
        let mut bucket = TokenBucket::new(3, 2);
        assert!((0..3).all(|_| bucket.try_take(0)));
        assert!(!bucket.try_take(0));
        assert!(!bucket.try_take(500_000_000 - 1));
        assert!(bucket.try_take(500_000_000));
        assert!(!bucket.try_take(500_000_000));
        // A long idle time refills to the burst and no further.
        assert!((0..3).all(|_| bucket.try_take(60 * NANOS)));
        assert!(!bucket.try_take(60 * NANOS));
        // A clock that goes backwards does not mint tokens.
        assert!(!bucket.try_take(NANOS));
        assert!(!bucket.try_take(60 * NANOS + 499_999_999));
        assert!(bucket.try_take(60 * NANOS + 500_000_000));
    }

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
