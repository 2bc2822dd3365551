//! The engines' state and the security engine's audit log, in the coordination region.
//!
//! Each engine owns one 256-byte record that it rewrites under the record's own seqlock word after
//! every run: its run count, the time of the run, and up to 56 named metrics (`Engine::metrics`
//! names them, so the inspector and `inos inspect` can show them without knowing the engine).
//! The audit log is a FIFO of 64-byte records under one seqlock word; its only writer is the
//! security engine.

use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use super::Sab;
use super::generated as g;
use super::memory::{copy_words_in, copy_words_out};
use super::seqlock::{self, BeingWritten};

/// The kernel's engines, in the order of their state records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Engine {
    Learning = 0,
    Scheduling = 1,
    Security = 2,
    Health = 3,
    Optimisation = 4,
}

impl Engine {
    pub const ALL: [Engine; g::ENGINE_COUNT as usize] = [
        Engine::Learning,
        Engine::Scheduling,
        Engine::Security,
        Engine::Health,
        Engine::Optimisation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Learning => "learning",
            Engine::Scheduling => "scheduling",
            Engine::Security => "security",
            Engine::Health => "health",
            Engine::Optimisation => "optimisation",
        }
    }

    /// The names of the engine's metrics, by slot.
    pub fn metrics(self) -> &'static [&'static str] {
        match self {
            Engine::Learning => &[
                "jobs_learned",
                "models",
                "evicted",
                "mean_abs_error_pct",
                "within_20pct_share",
                "last_prediction_us",
                "last_actual_us",
                "sequences_written",
                "history_lost",
            ],
            Engine::Scheduling => &[
                "dispatched",
                "with_deadline",
                "deadline_met",
                "deadline_hit_rate",
                "queue_depth",
                "mean_wait_us",
                "history_lost",
            ],
            Engine::Security => &[
                "admitted",
                "rate_limited",
                "too_large",
                "duration_anomalies",
                "ratio_anomalies",
                "audit_records",
                "history_lost",
                "malformed",
                "sources",
            ],
            Engine::Health => &[
                "units_healthy",
                "units_degraded",
                "units_zombie",
                "max_hazard",
                "max_cusum",
                "degradations",
                "remediations",
                "history_lost",
            ],
            Engine::Optimisation => &[
                "trials",
                "current_value",
                "best_value",
                "baseline_ms",
                "best_ms",
                "gain_pct",
            ],
        }
    }
}

/// The boids unit's work items per thread before the optimisation engine has tuned them: the
/// parameter the engine hands the unit in its record's `current_value`.
pub const DEFAULT_CHUNKS_PER_THREAD: usize = 4;

/// Metric slots per engine record.
pub const METRIC_SLOTS: usize = g::ENGINE_METRIC_SLOTS as usize;

/// One engine's state record, as stored.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct EngineRecord {
    /// The record's seqlock word (reads as 0 in a copy).
    pub seq: u32,
    /// `Engine as u32 + 1` once written (0: the engine has not run).
    pub engine: u32,
    pub runs: u32,
    pub metric_count: u32,
    pub last_run_ms: u64,
    pub reserved: [u32; 2],
    #[serde(with = "serde_metrics")]
    pub metrics: [f32; METRIC_SLOTS],
}
const _: () = assert!(size_of::<EngineRecord>() == g::ENGINE_RECORD_SIZE as usize);
const _: () = assert!(g::ENGINE_COUNT * g::ENGINE_RECORD_SIZE <= g::ENGINE_STATE_SIZE);
const RECORD_SEQ: usize = offset_of!(EngineRecord, seq) / 4;

mod serde_metrics {
    pub fn serialize<S: serde::Serializer>(metrics: &[f32; super::METRIC_SLOTS], s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&metrics[..], s)
    }
}

impl EngineRecord {
    /// The value of metric `name` of `engine`, if it has one by that name.
    pub fn metric(&self, engine: Engine, name: &str) -> Option<f32> {
        let slot = engine.metrics().iter().position(|n| *n == name)?;
        Some(self.metrics[slot])
    }

    /// (name, value) of every named metric.
    pub fn named(&self, engine: Engine) -> Vec<(&'static str, f32)> {
        engine.metrics().iter().copied().zip(self.metrics).collect()
    }
}

/// The engine records of one SAB.
pub struct EngineTable<'a> {
    sab: &'a Sab,
}

impl<'a> EngineTable<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    fn words(&self, engine: Engine) -> &'a [AtomicU32] {
        let size = g::ENGINE_RECORD_SIZE as usize;
        self.sab
            .memory()
            .u32_words(g::ENGINE_STATE_OFFSET as usize + engine as usize * size, size / 4)
            .expect("the engine records lie inside every SAB")
    }

    /// Rewrites the engine's record: one more run, now, and `metrics` by slot. The engine must be
    /// the record's only writer.
    pub fn publish(&self, engine: Engine, metrics: &[f32]) {
        // A record left half-written (a restored snapshot of a writer that died) starts again.
        let previous = self.read(engine).unwrap_or_else(|_| bytemuck::Zeroable::zeroed());
        let mut record = EngineRecord {
            seq: 0,
            engine: engine as u32 + 1,
            runs: previous.runs.wrapping_add(1),
            metric_count: metrics.len().min(METRIC_SLOTS) as u32,
            last_run_ms: super::now_ms(),
            reserved: [0; 2],
            metrics: [0.0; METRIC_SLOTS],
        };
        for (slot, value) in record.metrics.iter_mut().zip(metrics) {
            *slot = *value;
        }
        seqlock::write_record(self.words(engine), RECORD_SEQ, &record);
    }

    /// A consistent copy of the engine's record, or why there is none.
    pub fn read(&self, engine: Engine) -> Result<EngineRecord, BeingWritten> {
        seqlock::read_record(self.words(engine), RECORD_SEQ)
    }
}

/// Why an audit record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AuditKind {
    RateLimited = 1,
    TooLarge = 2,
    Malformed = 3,
    DurationAnomaly = 4,
    RatioAnomaly = 5,
}

impl AuditKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        [
            Self::RateLimited,
            Self::TooLarge,
            Self::Malformed,
            Self::DurationAnomaly,
            Self::RatioAnomaly,
        ]
        .into_iter()
        .find(|k| *k as u32 == v)
    }
}

/// One audit record, as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct AuditRecord {
    pub time_ms: u64,
    pub job_id: u64,
    /// An `AuditKind`.
    pub kind: u32,
    /// CRC32C of the source (the job's `source` metadata) and of the unit.
    pub source_hash: u32,
    pub unit_hash: u32,
    /// What was measured (bytes, µs, a z-score) and the limit it broke.
    pub value: f32,
    pub limit: f32,
    pub reserved: [u32; 7],
}
const _: () = assert!(size_of::<AuditRecord>() == g::AUDIT_RECORD_SIZE as usize);

/// Records the audit log holds.
pub const AUDIT_CAPACITY: usize = (g::AUDIT_LOG_SIZE / g::AUDIT_RECORD_SIZE - 1) as usize;
/// Header words: seq, head, count, total (low, high).
const SEQ: usize = 0;
const HEAD: usize = 1;
const COUNT: usize = 2;
const TOTAL_LO: usize = 3;
const TOTAL_HI: usize = 4;

/// The audit log of one SAB.
pub struct AuditLog<'a> {
    sab: &'a Sab,
}

impl<'a> AuditLog<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    fn header(&self) -> &'a [AtomicU32] {
        self.sab
            .memory()
            .u32_words(g::AUDIT_LOG_OFFSET as usize, 16)
            .expect("the audit log lies inside every SAB")
    }

    fn record_words(&self, index: usize) -> &'a [AtomicU32] {
        let size = g::AUDIT_RECORD_SIZE as usize;
        self.sab
            .memory()
            .u32_words(g::AUDIT_LOG_OFFSET as usize + size * (index + 1), size / 4)
            .expect("audit records lie inside every SAB")
    }

    /// Appends records, overwriting the oldest when full. The caller is the log's only writer.
    pub fn append(&self, records: &[AuditRecord]) {
        let h = self.header();
        seqlock::write(&h[SEQ], || {
            let (mut head, mut count) = (
                h[HEAD].load(Ordering::Relaxed) as usize,
                h[COUNT].load(Ordering::Relaxed) as usize,
            );
            for record in records {
                let words = self.record_words((head + count) % AUDIT_CAPACITY);
                copy_words_in(words, bytemuck::bytes_of(record));
                if count == AUDIT_CAPACITY {
                    head = (head + 1) % AUDIT_CAPACITY;
                } else {
                    count += 1;
                }
            }
            let total = self.total() + records.len() as u64;
            h[HEAD].store(head as u32, Ordering::Relaxed);
            h[COUNT].store(count as u32, Ordering::Relaxed);
            h[TOTAL_LO].store(total as u32, Ordering::Relaxed);
            h[TOTAL_HI].store((total >> 32) as u32, Ordering::Relaxed);
        });
    }

    /// Records ever appended.
    pub fn total(&self) -> u64 {
        let h = self.header();
        u64::from(h[TOTAL_LO].load(Ordering::Relaxed)) | (u64::from(h[TOTAL_HI].load(Ordering::Relaxed)) << 32)
    }

    /// A consistent copy of the log, oldest first, or why there is none.
    pub fn records(&self) -> Result<Vec<AuditRecord>, BeingWritten> {
        let h = self.header();
        seqlock::read(&h[SEQ], seqlock::READ_ATTEMPTS, || {
            let (head, count) = (
                h[HEAD].load(Ordering::Relaxed) as usize,
                h[COUNT].load(Ordering::Relaxed) as usize,
            );
            (0..count.min(AUDIT_CAPACITY))
                .map(|i| {
                    let mut record = AuditRecord::default();
                    let words = self.record_words((head + i) % AUDIT_CAPACITY);
                    copy_words_out(words, bytemuck::bytes_of_mut(&mut record));
                    record
                })
                .collect()
        })
        .map(|(records, _)| records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sab::Tier;

    #[test]
    fn engine_records_round_trip_and_count_runs() {
        let sab = Sab::for_tier(Tier::Light);
        let engines = sab.engines();
        assert_eq!(engines.read(Engine::Health).unwrap().runs, 0);
        engines.publish(Engine::Health, &[1.0, 2.5, 3.0]);
        engines.publish(Engine::Health, &[4.0, 5.0]);
        let record = engines.read(Engine::Health).unwrap();
        assert_eq!(
            (record.engine, record.runs, record.metric_count),
            (Engine::Health as u32 + 1, 2, 2)
        );
        assert_eq!(&record.metrics[..3], &[4.0, 5.0, 0.0]);
        assert_eq!(record.named(Engine::Health)[1], ("units_degraded", 5.0));
        assert_eq!(engines.read(Engine::Security).unwrap().runs, 0, "records are separate");
        for engine in Engine::ALL {
            assert!(engine.metrics().len() <= METRIC_SLOTS);
        }
    }

    #[test]
    fn the_audit_log_keeps_the_newest_records_oldest_first() {
        let sab = Sab::for_tier(Tier::Light);
        let log = sab.audit_log();
        assert_eq!(AUDIT_CAPACITY, 127);
        let record = |id: u64| AuditRecord {
            job_id: id,
            kind: AuditKind::RateLimited as u32,
            ..AuditRecord::default()
        };
        log.append(&(0..100).map(record).collect::<Vec<_>>());
        log.append(&(100..200).map(record).collect::<Vec<_>>());
        let records = log.records().unwrap();
        assert_eq!(records.len(), 127);
        assert_eq!(records.first().unwrap().job_id, 73);
        assert_eq!(records.last().unwrap().job_id, 199);
        assert_eq!(log.total(), 200);
        assert_eq!(AuditKind::from_u32(records[0].kind), Some(AuditKind::RateLimited));
    }
}
