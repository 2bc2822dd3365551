//! The learning engine: an online model of job latency, and the job sequences it sees.
//!
//! - **Latency.** For each (unit, method) a line `CPU time ≈ a + b · input bytes` (the job host's
//!   measurement of the thread's CPU time, in nanoseconds: what the job needs, which a preemption
//!   does not inflate), fitted by weighted least squares with Huber's weights (a
//!   job more than `HUBER` of the prediction off counts proportionally less) and exponential
//!   forgetting (each older job weighs `FORGET` times less), so the
//!   model follows a unit whose speed changes. Before it learns from a finished job it predicts
//!   that job's duration and scores itself: the mean absolute percentage error over recent jobs
//!   and the share of predictions within 20 % (the seed's target).
//! - **Sequences.** When one source's job on A is followed by its job on B, the transition A → B
//!   is counted; a transition seen `SEQUENCE_MIN` times is written to the pattern exchange (kind
//!   `SEQUENCE_KIND`, id = A's key in the high half and B's in the low half, weight = count,
//!   confidence = P(B after A) in 1/255, success rate of B).
//!
//! Only jobs that succeeded teach latency (a refused or failed job says nothing about how long the
//! work takes). Every table has a fixed capacity (`MAX_MODELS`, `MAX_TRANSITIONS`) and forgets the
//! entry used longest ago when a new one needs room, so no stream of jobs grows it without limit;
//! the job queue already refuses methods a unit does not declare.
//!
//! It runs when jobs finish and publishes its state record, signalling `EPOCH_LEARNING`.

use bevy::platform::collections::HashMap;
use bevy::platform::collections::hash_map::Entry;

use bevy::prelude::*;

use crate::protocol::{JobStatus, MAX_SOURCES};
use crate::sab::engines::Engine;
use crate::sab::{EpochIndex, HistoryReader, JobRecord, Owner, PatternRecord, Sab};

/// Weight of the previous fit after each job.
pub const FORGET: f64 = 0.98;
/// Transitions seen before a sequence is published.
pub const SEQUENCE_MIN: u32 = 3;
/// The pattern kind of job sequences.
pub const SEQUENCE_KIND: u16 = 2;
/// Residuals beyond this share of the prediction count less (Huber's weight), so that a job
/// preempted mid-run does not drag the line.
pub const HUBER: f64 = 0.5;
/// Latency models kept: (unit, method) pairs.
pub const MAX_MODELS: usize = 1024;
/// Transitions A → B kept (and as many "A was followed" counts).
pub const MAX_TRANSITIONS: usize = 4096;

/// A map of at most `capacity` entries that, when full, forgets the entry used longest ago.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, (V, u64)>,
    capacity: usize,
    clock: u64,
    evicted: u64,
}

impl<K: std::hash::Hash + Eq + Copy, V: Default> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::default(),
            capacity,
            clock: 0,
            evicted: 0,
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(value, _)| value)
    }

    /// The entry of `key`, made (default) if absent, and marked as used now.
    fn touch(&mut self, key: K) -> &mut V {
        self.clock += 1;
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            let oldest = self.map.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
                self.evicted += 1;
            }
        }
        let entry = self.map.entry(key).or_insert_with(|| (V::default(), 0));
        entry.1 = self.clock;
        &mut entry.0
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Weighted least squares of y on x with forgetting.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LineFit {
    w: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
}

impl LineFit {
    pub fn update(&mut self, x: f64, y: f64) {
        self.update_weighted(x, y, 1.0);
    }

    /// Folds in a sample that counts `weight` times (0..=1) as much as a full one.
    pub fn update_weighted(&mut self, x: f64, y: f64, weight: f64) {
        let f = FORGET;
        self.w = f * self.w + weight;
        self.x = f * self.x + weight * x;
        self.y = f * self.y + weight * y;
        self.xx = f * self.xx + weight * x * x;
        self.xy = f * self.xy + weight * x * y;
    }

    /// The fitted value at `x`: the line, or the mean while all inputs had one size. `None`
    /// before the first sample.
    pub fn predict(&self, x: f64) -> Option<f64> {
        if self.w == 0.0 {
            return None;
        }
        let (mx, my) = (self.x / self.w, self.y / self.w);
        let var = self.xx / self.w - mx * mx;
        if var <= 1e-9 * (1.0 + mx * mx) {
            return Some(my);
        }
        let slope = (self.xy / self.w - mx * my) / var;
        Some(my + slope * (x - mx))
    }
}

/// A job's kind: (unit hash, method hash).
type Key = (u32, u32);

fn key_bits((unit, method): Key) -> u32 {
    unit ^ method.rotate_left(16)
}

#[derive(Clone, Copy, Debug, Default)]
struct Transitions {
    count: u32,
    succeeded: u32,
}

/// The engine's models and scores.
#[derive(Resource, Debug)]
pub struct LearningEngine {
    models: Bounded<Key, LineFit>,
    /// The last job's key per source.
    last: HashMap<u32, Key>,
    /// Transitions A → B, and how often each A was followed by anything.
    transitions: Bounded<(Key, Key), Transitions>,
    followed: Bounded<Key, u32>,
    pub jobs_learned: u64,
    /// Exponentially weighted mean absolute percentage error of the predictions.
    pub mean_abs_error_pct: f64,
    /// Exponentially weighted share of predictions within 20 %.
    pub within_20pct: f64,
    pub last_prediction_us: f64,
    pub last_actual_us: f64,
    /// Sequence records written to the pattern exchange (each sequence at most once per batch).
    pub sequences_written: u64,
    scored: u64,
}

impl Default for LearningEngine {
    fn default() -> Self {
        Self {
            models: Bounded::new(MAX_MODELS),
            last: HashMap::default(),
            transitions: Bounded::new(MAX_TRANSITIONS),
            followed: Bounded::new(MAX_TRANSITIONS),
            jobs_learned: 0,
            mean_abs_error_pct: 0.0,
            within_20pct: 0.0,
            last_prediction_us: 0.0,
            last_actual_us: 0.0,
            sequences_written: 0,
            scored: 0,
        }
    }
}

impl LearningEngine {
    /// Entries in the engine's tables: latency models, transitions, and "followed" counts.
    pub fn table_sizes(&self) -> [usize; 3] {
        [self.models.len(), self.transitions.len(), self.followed.len()]
    }

    /// Entries forgotten to make room, over all tables.
    pub fn evicted(&self) -> u64 {
        self.models.evicted + self.transitions.evicted + self.followed.evicted
    }

    /// The predicted duration (µs) of a job of `unit`/`method` hashes with `input_bytes`.
    pub fn predict(&self, unit_hash: u32, method_hash: u32, input_bytes: u64) -> Option<f64> {
        self.models.get(&(unit_hash, method_hash))?.predict(input_bytes as f64)
    }

    /// Learns from one finished job; returns a sequence pattern to publish, if one is due.
    pub fn learn(&mut self, r: &JobRecord) -> Option<PatternRecord> {
        let status = JobStatus::from_code(r.status)?;
        if status == JobStatus::Rejected {
            return None; // never ran: nothing to learn about its latency
        }
        let key = (r.unit_hash, r.method_hash);
        if status == JobStatus::Success {
            // The CPU time the job took, which a preemption does not inflate (the resource it
            // needs), in µs with the nanoseconds kept: whole microseconds would be a third off
            // for a 3 µs job.
            let (x, actual) = (f64::from(r.input_bytes), (r.cpu_ns as f64 / 1e3).max(0.1));
            let fit = self.models.touch(key);
            // Huber's weight: a job far off the line (a preempted one, typically) moves it less.
            let mut weight = 1.0;
            if let Some(predicted) = fit.predict(x) {
                let error = (predicted - actual).abs() / actual;
                let alpha = (1.0 / (self.scored as f64 + 1.0)).max(0.02);
                self.mean_abs_error_pct += alpha * (100.0 * error - self.mean_abs_error_pct);
                self.within_20pct += alpha * (f64::from(u8::from(error <= 0.2)) - self.within_20pct);
                self.scored += 1;
                (self.last_prediction_us, self.last_actual_us) = (predicted, actual);
                let reach = HUBER * predicted.abs();
                let off = (actual - predicted).abs();
                if off > reach && reach > 0.0 {
                    weight = reach / off;
                }
            }
            fit.update_weighted(x, actual, weight);
            self.jobs_learned += 1;
        }

        // Sources name themselves: bound what is kept per source.
        if self.last.len() >= MAX_SOURCES && !self.last.contains_key(&r.source_hash) {
            self.last.clear();
        }
        let previous = self.last.insert(r.source_hash, key)?;
        let followed = self.followed.touch(previous);
        *followed += 1;
        let followed = *followed;
        let t = self.transitions.touch((previous, key));
        t.count += 1;
        t.succeeded += u32::from(status == JobStatus::Success);
        let t = *t;
        // `followed` may have been forgotten and started again after the transition: the
        // confidence is at most 1.
        let followed = followed.max(t.count);
        if t.count < SEQUENCE_MIN {
            return None;
        }
        let mut pattern = PatternRecord::new(
            (u64::from(key_bits(previous)) << 32) | u64::from(key_bits(key)),
            SEQUENCE_KIND,
        );
        pattern.source_hash = r.source_hash;
        pattern.weight = t.count as f32;
        pattern.access_count = t.count;
        pattern.success_rate = t.succeeded as f32 / t.count as f32;
        pattern.confidence = (255.0 * t.count as f32 / followed as f32).round() as u8;
        Some(pattern)
    }
}

pub(crate) fn run_learning(sab: Res<Sab>, mut engine: ResMut<LearningEngine>, mut history: Local<HistoryReader>) {
    let jobs = history.read(&sab);
    if jobs.is_empty() {
        return;
    }
    // A batch repeats its sequences (a stream of A→B jobs updates one record once per job): only
    // each sequence's last state, which holds its counts so far, goes to the exchange.
    let mut patterns: Vec<PatternRecord> = Vec::new();
    let mut index = HashMap::<u64, usize>::new();
    for pattern in jobs.iter().filter_map(|job| engine.learn(job)) {
        match index.entry(pattern.pattern_id) {
            Entry::Occupied(k) => patterns[*k.get()] = pattern,
            Entry::Vacant(k) => {
                k.insert(patterns.len());
                patterns.push(pattern);
            }
        }
    }
    if !patterns.is_empty() {
        match sab.patterns().writer(Owner::Kernel) {
            Ok(mut writer) => {
                for pattern in patterns {
                    match writer.upsert(pattern) {
                        Ok(_) => engine.sequences_written += 1,
                        Err(e) => warn!("the learning engine could not write a sequence: {e}"),
                    }
                }
            }
            Err(e) => warn!("the learning engine cannot write patterns: {e}"),
        }
    }
    sab.engines().publish(
        Engine::Learning,
        &[
            engine.jobs_learned as f32,
            engine.models.len() as f32,
            engine.evicted() as f32,
            engine.mean_abs_error_pct as f32,
            engine.within_20pct as f32,
            engine.last_prediction_us as f32,
            engine.last_actual_us as f32,
            engine.sequences_written as f32,
            history.cursor.lost as f32,
        ],
    );
    sab.epochs().signal(EpochIndex::LEARNING);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(source: u32, unit: u32, input: u32, duration: u32) -> JobRecord {
        JobRecord {
            unit_hash: unit,
            method_hash: 7,
            duration_us: duration,
            input_bytes: input,
            status: JobStatus::Success.code(),
            source_hash: source,
            execution_ns: u64::from(duration) * 1000,
            cpu_ns: u64::from(duration) * 1000,
            ..JobRecord::default()
        }
    }

    #[test]
    fn a_line_is_fitted_exactly_from_noise_free_jobs() {
        let mut fit = LineFit::default();
        assert_eq!(fit.predict(5.0), None);
        fit.update(100.0, 50.0);
        assert_eq!(fit.predict(1e6), Some(50.0), "one size: the mean");
        for x in [200.0, 400.0, 800.0] {
            fit.update(x, 10.0 + 0.2 * x);
        }
        fit.update(100.0, 30.0);
        // 50 at x = 100 was off the line 10 + 0.2x; after more points the fit sits between.
        let mut exact = LineFit::default();
        for x in [100.0, 200.0, 400.0, 800.0] {
            exact.update(x, 10.0 + 0.2 * x);
        }
        assert!((exact.predict(1000.0).unwrap() - 210.0).abs() < 1e-6);
        assert!((exact.predict(0.0).unwrap() - 10.0).abs() < 1e-6);
    }

    #[test]
    fn predictions_converge_and_are_scored() {
        let mut engine = LearningEngine::default();
        // 40 µs + 0.01 µs per byte, for sizes cycling through 1–8 KiB.
        for i in 0..200u32 {
            let input = 1024 * (i % 8 + 1);
            engine.learn(&finished(1, 5, input, 40 + input / 100));
        }
        let predicted = engine.predict(5, 7, 6000).unwrap();
        assert!((predicted - 100.0).abs() < 1.0, "{predicted}");
        assert!(engine.mean_abs_error_pct < 5.0, "{}", engine.mean_abs_error_pct);
        assert!(engine.within_20pct > 0.95, "{}", engine.within_20pct);
        assert_eq!(engine.jobs_learned, 200);
    }

    /// A flood of jobs of ever new units and methods from ever new sources leaves every table at
    /// its capacity, forgetting the entries used longest ago, while a pair still in use keeps its
    /// model.
    #[test]
    fn a_flood_of_new_kinds_leaves_every_table_at_its_capacity() {
        let mut engine = LearningEngine::default();
        for i in 0..6_000u32 {
            engine.learn(&finished(i % 3, 0x1000 + i, 100, 50));
            engine.learn(&finished(i % 3, 5, 100, 50));
        }
        let [models, transitions, followed] = engine.table_sizes();
        assert_eq!(
            (models, transitions, followed),
            (MAX_MODELS, MAX_TRANSITIONS, MAX_TRANSITIONS)
        );
        assert!(engine.evicted() > 10_000, "{}", engine.evicted());
        let kept = engine.predict(5, 7, 100).expect("the pair in use is kept");
        assert!((kept - 50.0).abs() < 1e-9, "{kept}");
        assert_eq!(engine.predict(0x1000, 7, 100), None, "the oldest is forgotten");
    }

    /// Only successful jobs teach latency: refused and failed ones are not modelled.
    #[test]
    fn failed_jobs_teach_no_latency() {
        let mut engine = LearningEngine::default();
        for status in [JobStatus::InvalidParams, JobStatus::Failed, JobStatus::Rejected] {
            engine.learn(&JobRecord {
                status: status.code(),
                ..finished(1, 9, 10, 10)
            });
        }
        assert_eq!((engine.jobs_learned, engine.table_sizes()[0]), (0, 0));
    }

    #[test]
    fn a_repeated_sequence_becomes_a_pattern_with_its_confidence() {
        let mut engine = LearningEngine::default();
        // Source 1 runs A then B three times; source 2's jobs are interleaved and do not count.
        let mut patterns = Vec::new();
        for _ in 0..3 {
            patterns.extend(engine.learn(&finished(1, 0xA, 10, 10)));
            patterns.extend(engine.learn(&finished(2, 0xC, 10, 10)));
            patterns.extend(engine.learn(&finished(1, 0xB, 10, 10)));
        }
        // A→B three times (the third publishes); B→A twice; C→C twice.
        assert_eq!(patterns.len(), 1);
        let p = patterns[0];
        let a = key_bits((0xA, 7));
        let b = key_bits((0xB, 7));
        assert_eq!({ p.pattern_id }, (u64::from(a) << 32) | u64::from(b));
        assert_eq!(
            ({ p.weight }, { p.access_count }, p.confidence, p.kind),
            (3.0, 3, 255, SEQUENCE_KIND)
        );
    }
}
