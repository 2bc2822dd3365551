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
//! work takes). The models live in the engine's area of the SAB's kernel state (`sab::table`), so a
//! resumed snapshot carries on learning where it stopped. Every table has a fixed capacity
//! (`MAX_MODELS`, `MAX_TRANSITIONS`, `MAX_SOURCES`) and forgets an entry used long ago when a new
//! one needs room (the least recently used of the slots the new key may take), so no stream of
//! jobs grows it without limit; the job queue already refuses methods a unit does not declare.
//!
//! It runs when jobs finish and publishes its state record, signalling `EPOCH_LEARNING`.

use bevy::platform::collections::HashMap;
use bevy::platform::collections::hash_map::Entry;

use bevy::prelude::*;

use super::EngineSystems;

use crate::protocol::{JobStatus, MAX_SOURCES};
use crate::sab::engines::Engine;
use crate::sab::generated as g;
use crate::sab::kernel_state::{AREA_HEADER, KernelState};
use crate::sab::table::KeyedTable;
use crate::sab::{
    EpochIndex, HistoryCursor, HistoryReader, JobRecord, KernelArea, Owner, PatternRecord, Sab, epoch_changed,
};

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

/// Weighted least squares of y on x with forgetting.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
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
type Key = [u32; 2];

fn key_bits([unit, method]: Key) -> u32 {
    unit ^ method.rotate_left(16)
}

#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Transitions {
    count: u32,
    succeeded: u32,
}

/// The engine's header in its kernel-state area: its place in the job history and its scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct LearningState {
    pub cursor: HistoryCursor,
    pub jobs_learned: u64,
    /// Exponentially weighted mean absolute percentage error of the predictions.
    pub mean_abs_error_pct: f64,
    /// Exponentially weighted share of predictions within 20 %.
    pub within_20pct: f64,
    pub last_prediction_us: f64,
    pub last_actual_us: f64,
    /// Sequence records written to the pattern exchange (each sequence at most once per batch).
    pub sequences_written: u64,
    pub scored: u64,
}

// The tables, end to end after the header: latency models by (unit, method); transitions
// A → B; how often each A was followed by anything; the last job's kind per source.
const MODELS_AT: usize = 0;
const TRANSITIONS_AT: usize = MODELS_AT + KeyedTable::<Key, LineFit>::bytes(MAX_MODELS);
const FOLLOWED_AT: usize = TRANSITIONS_AT + KeyedTable::<[Key; 2], Transitions>::bytes(MAX_TRANSITIONS);
const LAST_AT: usize = FOLLOWED_AT + KeyedTable::<Key, u32>::bytes(MAX_TRANSITIONS);
const _: () =
    assert!(AREA_HEADER + LAST_AT + KeyedTable::<u32, Key>::bytes(MAX_SOURCES) <= g::LEARNING_STATE_SIZE as usize);

/// The engine: its header, and its models in its area of the SAB's kernel state.
#[derive(Resource, Debug)]
pub struct LearningEngine {
    sab: Sab,
    pub state: LearningState,
}

impl LearningEngine {
    /// The engine as `sab` holds it (a new one in a new SAB).
    pub fn new(sab: &Sab) -> Self {
        Self {
            state: sab.kernel_state(KernelArea::LearningState).header(),
            sab: sab.clone(),
        }
    }

    fn area(&self) -> KernelState<'_> {
        self.sab.kernel_state(KernelArea::LearningState)
    }

    fn models(&self) -> KeyedTable<'_, Key, LineFit> {
        self.area().table(MODELS_AT, MAX_MODELS, true)
    }

    fn transitions(&self) -> KeyedTable<'_, [Key; 2], Transitions> {
        self.area().table(TRANSITIONS_AT, MAX_TRANSITIONS, true)
    }

    fn followed(&self) -> KeyedTable<'_, Key, u32> {
        self.area().table(FOLLOWED_AT, MAX_TRANSITIONS, true)
    }

    fn last(&self) -> KeyedTable<'_, u32, Key> {
        self.area().table(LAST_AT, MAX_SOURCES, true)
    }

    /// Writes the header back to the SAB.
    pub fn save(&self) {
        self.area().set_header(&self.state);
    }

    /// Entries in the engine's tables: latency models, transitions, and "followed" counts.
    pub fn table_sizes(&self) -> [usize; 3] {
        [self.models().len(), self.transitions().len(), self.followed().len()]
    }

    /// Entries forgotten to make room, over all tables.
    pub fn evicted(&self) -> u64 {
        self.models().evicted() + self.transitions().evicted() + self.followed().evicted()
    }

    /// The predicted duration (µs) of a job of `unit`/`method` hashes with `input_bytes`.
    pub fn predict(&self, unit_hash: u32, method_hash: u32, input_bytes: u64) -> Option<f64> {
        self.models()
            .get(&[unit_hash, method_hash])?
            .predict(input_bytes as f64)
    }

    /// Learns from one finished job; returns a sequence pattern to publish, if one is due.
    pub fn learn(&mut self, r: &JobRecord) -> Option<PatternRecord> {
        let status = JobStatus::from_code(r.status)?;
        if status == JobStatus::Rejected {
            return None; // never ran: nothing to learn about its latency
        }
        let key = [r.unit_hash, r.method_hash];
        const TAKES: &str = "an evicting table takes every key";
        if status == JobStatus::Success {
            // The CPU time the job took, which a preemption does not inflate (the resource it
            // needs), in µs with the nanoseconds kept: whole microseconds would be a third off
            // for a 3 µs job.
            let (x, actual) = (f64::from(r.input_bytes), (r.cpu_ns as f64 / 1e3).max(0.1));
            let state = &mut self.state;
            self.sab
                .kernel_state(KernelArea::LearningState)
                .table::<Key, LineFit>(MODELS_AT, MAX_MODELS, true)
                .upsert(key, |fit| {
                    // Huber's weight: a job far off the line (a preempted one, typically) moves it less.
                    let mut weight = 1.0;
                    if let Some(predicted) = fit.predict(x) {
                        let error = (predicted - actual).abs() / actual;
                        let alpha = (1.0 / (state.scored as f64 + 1.0)).max(0.02);
                        state.mean_abs_error_pct += alpha * (100.0 * error - state.mean_abs_error_pct);
                        state.within_20pct += alpha * (f64::from(u8::from(error <= 0.2)) - state.within_20pct);
                        state.scored += 1;
                        (state.last_prediction_us, state.last_actual_us) = (predicted, actual);
                        let reach = HUBER * predicted.abs();
                        let off = (actual - predicted).abs();
                        if off > reach && reach > 0.0 {
                            weight = reach / off;
                        }
                    }
                    fit.update_weighted(x, actual, weight);
                })
                .expect(TAKES);
            self.state.jobs_learned += 1;
        }

        // Sources name themselves: the table of last kinds is bounded like the others.
        let last = self.last();
        let previous = last.get(&r.source_hash);
        last.insert(r.source_hash, key).expect(TAKES);
        let previous = previous?;
        let followed = self.followed().upsert(previous, |n| *n += 1).expect(TAKES);
        let t = self
            .transitions()
            .upsert([previous, key], |t| {
                t.count += 1;
                t.succeeded += u32::from(status == JobStatus::Success);
            })
            .expect(TAKES);
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

/// The learning engine, on the job history.
pub struct LearningPlugin;

impl Plugin for LearningPlugin {
    fn build(&self, app: &mut App) {
        let engine = LearningEngine::new(app.world().resource::<Sab>());
        app.insert_resource(engine).add_systems(
            FixedUpdate,
            run_learning
                .in_set(EngineSystems)
                .run_if(epoch_changed(EpochIndex::JOB_HISTORY)),
        );
    }
}

fn run_learning(sab: Res<Sab>, mut engine: ResMut<LearningEngine>, mut history: Local<HistoryReader>) {
    let jobs = history.read(&sab, &mut engine.state.cursor);
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
                        Ok(_) => engine.state.sequences_written += 1,
                        Err(e) => warn!("the learning engine could not write a sequence: {e}"),
                    }
                }
            }
            Err(e) => warn!("the learning engine cannot write patterns: {e}"),
        }
    }
    engine.save();
    let state = engine.state;
    sab.engines().publish(
        Engine::Learning,
        &[
            state.jobs_learned as f32,
            engine.table_sizes()[0] as f32,
            engine.evicted() as f32,
            state.mean_abs_error_pct as f32,
            state.within_20pct as f32,
            state.last_prediction_us as f32,
            state.last_actual_us as f32,
            state.sequences_written as f32,
            state.cursor.lost as f32,
        ],
    );
    sab.epochs().signal(EpochIndex::LEARNING);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sab::{SabLayout, Tier};

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
        let mut engine = LearningEngine::new(&Sab::new(SabLayout::for_tier(Tier::Light)));
        // 40 µs + 0.01 µs per byte, for sizes cycling through 1–8 KiB.
        for i in 0..200u32 {
            let input = 1024 * (i % 8 + 1);
            engine.learn(&finished(1, 5, input, 40 + input / 100));
        }
        let predicted = engine.predict(5, 7, 6000).unwrap();
        assert!((predicted - 100.0).abs() < 1.0, "{predicted}");
        let state = engine.state;
        assert!(state.mean_abs_error_pct < 5.0, "{}", state.mean_abs_error_pct);
        assert!(state.within_20pct > 0.95, "{}", state.within_20pct);
        assert_eq!(state.jobs_learned, 200);
    }

    /// A flood of jobs of ever new units and methods from ever new sources leaves every table at
    /// its capacity, forgetting the entries used longest ago, while a pair still in use keeps its
    /// model.
    #[test]
    fn a_flood_of_new_kinds_leaves_every_table_at_its_capacity() {
        let mut engine = LearningEngine::new(&Sab::new(SabLayout::for_tier(Tier::Light)));
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
        let mut engine = LearningEngine::new(&Sab::new(SabLayout::for_tier(Tier::Light)));
        for status in [JobStatus::InvalidParams, JobStatus::Failed, JobStatus::Rejected] {
            engine.learn(&JobRecord {
                status: status.code(),
                ..finished(1, 9, 10, 10)
            });
        }
        assert_eq!((engine.state.jobs_learned, engine.table_sizes()[0]), (0, 0));
    }

    #[test]
    fn a_repeated_sequence_becomes_a_pattern_with_its_confidence() {
        let mut engine = LearningEngine::new(&Sab::new(SabLayout::for_tier(Tier::Light)));
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
        let a = key_bits([0xA, 7]);
        let b = key_bits([0xB, 7]);
        assert_eq!({ p.pattern_id }, (u64::from(a) << 32) | u64::from(b));
        assert_eq!(
            ({ p.weight }, { p.access_count }, p.confidence, p.kind),
            (3.0, 3, 255, SEQUENCE_KIND)
        );
    }
}
