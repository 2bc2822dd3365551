//! The optimisation engine: tunes a real parameter against measured time. The parameter is the
//! boids unit's work items per thread (`FlockParams::chunks_per_thread`): more items balance the
//! two cores better, fewer cost less to hand out. The cost of a value is the median boids step time
//! over `EVAL_STEPS` steps run with it.
//!
//! The search is a small genetic algorithm in log₂ space over 1 ..= 64: a first population of the
//! current value and powers of two, then `GENERATIONS` rounds that keep the two best and breed
//! four children (the mean of two parents' log₂ values plus Gaussian noise, rounded), values
//! already measured keeping their cost. The cheapest of many noisy medians is biased low (it is
//! the luckiest), so the search's figures are not the gain: after it, the starting value and the
//! best one are measured again, interleaved (A B B A, `VERIFY_ROUNDS` times each), and the gain is
//! the difference of those means, which noise makes negative as often as positive. The engine
//! settles on the best value only if it stays faster there, and on the starting value otherwise.
//! It hands each value to the unit through its state record and `EPOCH_OPTIMIZATION` (the unit
//! reads it before its next step), so the engine and the unit meet only in the SAB. The search
//! itself (costs, population, random state, phase) is kept in the engine's area of the SAB's kernel
//! state after every run, so a resumed snapshot carries it on.

use std::collections::BTreeMap;

use bevy::prelude::*;

use super::EngineSystems;

use crate::sab::engines::{DEFAULT_CHUNKS_PER_THREAD, Engine};
use crate::sab::generated as g;
use crate::sab::genes::SplitMix64;
use crate::sab::{EpochIndex, KernelArea, Sab, epoch_changed};
use crate::timing::{StageTimes, quantile};

/// Boids steps measured per value (the first step after a change is not counted).
pub const EVAL_STEPS: usize = 24;
/// Rounds of breeding after the first population.
pub const GENERATIONS: u32 = 3;
/// Interleaved re-measurements of the starting and of the best value, each, after the search.
pub const VERIFY_ROUNDS: usize = 4;
/// The parameter's range.
pub const MIN_VALUE: usize = 1;
pub const MAX_VALUE: usize = 64;

/// The GA over one integer parameter.
#[derive(Clone, Debug)]
pub struct Tuner {
    initial: usize,
    /// Measured cost per value (during the search).
    costs: BTreeMap<usize, f64>,
    /// Values of the current generation, in measuring order.
    population: Vec<usize>,
    generation: u32,
    rng: SplitMix64,
    phase: Phase,
}

#[derive(Clone, Debug)]
enum Phase {
    Search,
    /// Values still to re-measure, in order, and the costs measured so far of the starting value
    /// and of the best.
    Verify {
        queue: Vec<usize>,
        baseline: Vec<f64>,
        best: Vec<f64>,
    },
    Done(Verdict),
}

/// The starting value against the search's best, measured side by side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    /// Mean cost of the starting value over the verification rounds.
    pub baseline: f64,
    /// Mean cost of the search's best value over the same rounds.
    pub best: f64,
    /// `100 · (baseline − best) / baseline`: negative when the best was only lucky.
    pub gain_pct: f64,
    /// The value kept: the best if it stayed faster, the starting value otherwise.
    pub settled: usize,
}

impl Tuner {
    pub fn new(initial: usize, seed: u64) -> Self {
        let initial = initial.clamp(MIN_VALUE, MAX_VALUE);
        let mut population = vec![initial];
        for v in [1, 2, 8, 16, 32] {
            if !population.contains(&v) {
                population.push(v);
            }
        }
        Self {
            initial,
            costs: BTreeMap::new(),
            population,
            generation: 0,
            rng: SplitMix64::new(seed),
            phase: Phase::Search,
        }
    }

    /// The value to measure next, or `None` once the search and its verification are over.
    pub fn next(&self) -> Option<usize> {
        match &self.phase {
            Phase::Search => self.unmeasured(),
            Phase::Verify { queue, .. } => queue.first().copied(),
            Phase::Done(_) => None,
        }
    }

    fn unmeasured(&self) -> Option<usize> {
        self.population.iter().copied().find(|v| !self.costs.contains_key(v))
    }

    /// Records the cost of `value`: breeds the next generation when this one is measured, starts
    /// the verification when the last one is, and decides when that is over.
    pub fn report(&mut self, value: usize, cost: f64) {
        let best_value = self.best().map_or(self.initial, |(v, _)| v);
        if let Phase::Verify { queue, baseline, best } = &mut self.phase {
            if queue.first() == Some(&value) {
                queue.remove(0);
                if value == self.initial {
                    &mut *baseline
                } else {
                    &mut *best
                }
                .push(cost);
            }
            if queue.is_empty() {
                let mean = |costs: &[f64]| costs.iter().sum::<f64>() / costs.len() as f64;
                let (baseline, best) = (mean(baseline), mean(best));
                self.phase = Phase::Done(Verdict {
                    baseline,
                    best,
                    gain_pct: 100.0 * (baseline - best) / baseline,
                    settled: if best < baseline { best_value } else { self.initial },
                });
            }
            return;
        }
        if !matches!(self.phase, Phase::Search) {
            return;
        }
        self.costs.insert(value, cost);
        // A generation whose children were all measured before needs no measuring: breed on.
        while self.unmeasured().is_none() {
            if self.generation >= GENERATIONS {
                self.verify();
                return;
            }
            self.breed();
        }
    }

    /// The next generation: the two cheapest values and up to four children of theirs.
    fn breed(&mut self) {
        self.generation += 1;
        let mut ranked = self.population.clone();
        ranked.sort_by(|a, b| self.costs[a].total_cmp(&self.costs[b]));
        let parents = [ranked[0], ranked[1.min(ranked.len() - 1)]];
        let mut next = parents.to_vec();
        for _ in 0..4 {
            let mean = (parents[0] as f64).log2() * 0.5 + (parents[1] as f64).log2() * 0.5;
            let log = mean + f64::from(self.rng.gaussian());
            let child = (log.exp2().round() as usize).clamp(MIN_VALUE, MAX_VALUE);
            if !next.contains(&child) {
                next.push(child);
            }
        }
        self.population = next;
    }

    /// After the search: the starting and the best value, A B B A, `VERIFY_ROUNDS` times each.
    fn verify(&mut self) {
        let best = self.best().map_or(self.initial, |(v, _)| v);
        if best == self.initial {
            let cost = self.costs[&best];
            self.phase = Phase::Done(Verdict {
                baseline: cost,
                best: cost,
                gain_pct: 0.0,
                settled: best,
            });
            return;
        }
        let queue = (0..VERIFY_ROUNDS)
            .flat_map(|round| {
                if round % 2 == 0 {
                    [self.initial, best]
                } else {
                    [best, self.initial]
                }
            })
            .collect();
        self.phase = Phase::Verify {
            queue,
            baseline: Vec::new(),
            best: Vec::new(),
        };
    }

    /// The value in force: the one being measured, or the settled one once all is over.
    pub fn current(&self) -> usize {
        self.next()
            .unwrap_or_else(|| self.verdict().map_or(self.initial, |v| v.settled))
    }

    /// The verification's outcome, once it is over.
    pub fn verdict(&self) -> Option<Verdict> {
        match self.phase {
            Phase::Done(verdict) => Some(verdict),
            _ => None,
        }
    }

    /// The cheapest value the search measured, with its (optimistic) cost.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.costs
            .iter()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(&v, &c)| (v, c))
    }

    pub fn baseline(&self) -> Option<f64> {
        self.costs.get(&self.initial).copied()
    }

    /// Values the search measured.
    pub fn trials(&self) -> usize {
        self.costs.len()
    }

    pub fn done(&self) -> bool {
        self.next().is_none()
    }
}

#[derive(Resource, Debug)]
pub struct OptimisationEngine {
    pub tuner: Tuner,
    /// The value the unit was last told.
    published: Option<usize>,
    /// Step-time samples (µs) recorded so far, and those taken with the value in force.
    seen: u64,
    samples: Vec<f32>,
    /// Whether the next sample may still have run with the previous value.
    settling: bool,
}

impl Default for OptimisationEngine {
    fn default() -> Self {
        Self {
            tuner: Tuner::new(DEFAULT_CHUNKS_PER_THREAD, 0x0971),
            published: None,
            seen: 0,
            samples: Vec::new(),
            settling: true,
        }
    }
}

/// Samples kept between two runs (a value is scored after `EVAL_STEPS`).
const MAX_SAMPLES: usize = 32;
/// Values the parameter can take (1 ..= 64), each with a cost slot.
const VALUES: usize = MAX_VALUE;

/// The engine in its kernel-state area: the tuner (costs per value, population, generation, random
/// state, phase) and the engine's own bookkeeping, so a resumed snapshot carries on the search.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct OptimisationRecord {
    /// 1 once an engine saved itself here (a new SAB holds zeroes).
    saved: u32,
    initial: u32,
    generation: u32,
    /// 0 search, 1 verify, 2 done.
    phase: u32,
    rng: u64,
    /// Bit v − 1: the cost of value v was measured.
    measured: u64,
    costs: [f64; VALUES],
    population: [u8; 8],
    population_len: u32,
    queue_len: u32,
    queue: [u8; 2 * VERIFY_ROUNDS],
    baseline: [f64; VERIFY_ROUNDS],
    best: [f64; VERIFY_ROUNDS],
    baseline_len: u32,
    best_len: u32,
    /// The verdict: baseline, best, gain; and the settled value.
    verdict: [f64; 3],
    settled: u32,
    /// The value last published, 0 for none.
    published: u32,
    seen: u64,
    samples: [f32; MAX_SAMPLES],
    samples_len: u32,
    settling: u32,
}
const _: () = assert!(size_of::<OptimisationRecord>() <= g::OPTIMISATION_STATE_SIZE as usize);

impl OptimisationEngine {
    /// The engine as `sab` holds it (a new one in a new SAB).
    pub fn load(sab: &Sab) -> Self {
        let r: OptimisationRecord = sab.kernel_state(KernelArea::OptimisationState).header();
        if r.saved == 0 {
            return Self::default();
        }
        let values = |list: &[u8], len: u32| {
            list[..(len as usize).min(list.len())]
                .iter()
                .map(|&v| usize::from(v))
                .collect::<Vec<_>>()
        };
        let costs = |list: &[f64], len: u32| list[..(len as usize).min(list.len())].to_vec();
        let phase = match r.phase {
            0 => Phase::Search,
            1 => Phase::Verify {
                queue: values(&r.queue, r.queue_len),
                baseline: costs(&r.baseline, r.baseline_len),
                best: costs(&r.best, r.best_len),
            },
            _ => Phase::Done(Verdict {
                baseline: r.verdict[0],
                best: r.verdict[1],
                gain_pct: r.verdict[2],
                settled: r.settled as usize,
            }),
        };
        Self {
            tuner: Tuner {
                initial: r.initial as usize,
                costs: (1..=VALUES)
                    .filter(|v| r.measured & (1 << (v - 1)) != 0)
                    .map(|v| (v, r.costs[v - 1]))
                    .collect(),
                population: values(&r.population, r.population_len),
                generation: r.generation,
                rng: SplitMix64::new(r.rng),
                phase,
            },
            published: (r.published != 0).then_some(r.published as usize),
            seen: r.seen,
            samples: r.samples[..(r.samples_len as usize).min(MAX_SAMPLES)].to_vec(),
            settling: r.settling != 0,
        }
    }

    /// Writes the engine to its kernel-state area.
    fn save(&self, sab: &Sab) {
        let t = &self.tuner;
        let mut r: OptimisationRecord = bytemuck::Zeroable::zeroed();
        r.saved = 1;
        r.initial = t.initial as u32;
        r.generation = t.generation;
        r.rng = t.rng.state();
        for (&v, &cost) in &t.costs {
            r.measured |= 1 << (v - 1);
            r.costs[v - 1] = cost;
        }
        let fill = |dst: &mut [u8], src: &[usize]| {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s as u8;
            }
            src.len().min(dst.len()) as u32
        };
        r.population_len = fill(&mut r.population, &t.population);
        match &t.phase {
            Phase::Search => r.phase = 0,
            Phase::Verify { queue, baseline, best } => {
                r.phase = 1;
                r.queue_len = fill(&mut r.queue, queue);
                for (dst, src, len) in [
                    (&mut r.baseline, baseline, &mut r.baseline_len),
                    (&mut r.best, best, &mut r.best_len),
                ] {
                    let n = src.len().min(VERIFY_ROUNDS);
                    dst[..n].copy_from_slice(&src[..n]);
                    *len = n as u32;
                }
            }
            Phase::Done(v) => {
                r.phase = 2;
                r.verdict = [v.baseline, v.best, v.gain_pct];
                r.settled = v.settled as u32;
            }
        }
        r.published = self.published.unwrap_or(0) as u32;
        r.seen = self.seen;
        let n = self.samples.len().min(MAX_SAMPLES);
        r.samples[..n].copy_from_slice(&self.samples[..n]);
        r.samples_len = n as u32;
        r.settling = u32::from(self.settling);
        sab.kernel_state(KernelArea::OptimisationState).set_header(&r);
    }
}

/// The optimisation engine, on the bird epoch (each boids step is a sample).
pub struct OptimisationPlugin;

impl Plugin for OptimisationPlugin {
    fn build(&self, app: &mut App) {
        let engine = OptimisationEngine::load(app.world().resource::<Sab>());
        app.insert_resource(engine).add_systems(
            FixedUpdate,
            run_optimisation
                .in_set(EngineSystems)
                .run_if(epoch_changed(EpochIndex::BIRD)),
        );
    }
}

/// Runs on the bird epoch: takes the newest boids step times, scores the value in force once it
/// has enough of them, and publishes the next value.
fn run_optimisation(sab: Res<Sab>, times: Option<Res<StageTimes>>, mut engine: ResMut<OptimisationEngine>) {
    let Some(times) = times else {
        return;
    };
    let Some((_, steps)) = times.series().find(|(stage, _)| *stage == "physics") else {
        return;
    };
    let engine = &mut *engine;
    let fresh: Vec<f32> = steps.since(engine.seen).collect();
    engine.seen = steps.recorded();
    if engine.published.is_some() && !engine.tuner.done() {
        // The first step after a change may still have run with the old value.
        let skip = usize::from(engine.settling).min(fresh.len());
        engine.settling &= skip == 0;
        let room = MAX_SAMPLES.saturating_sub(engine.samples.len());
        engine.samples.extend(fresh[skip..].iter().take(room));
        if engine.samples.len() >= EVAL_STEPS {
            engine.samples.sort_by(f32::total_cmp);
            let median = f64::from(quantile(&engine.samples, 0.5));
            let value = engine.tuner.current();
            engine.tuner.report(value, median);
            engine.samples.clear();
        }
    }
    let value = engine.tuner.current();
    let changed = engine.published != Some(value);
    engine.published = Some(value);
    engine.settling |= changed;
    let best_value = engine.tuner.best().map_or(value, |(v, _)| v);
    // Until the verification is over there is no honest gain to report.
    let (baseline_us, best_us, gain) = engine
        .tuner
        .verdict()
        .map_or((0.0, 0.0, 0.0), |v| (v.baseline, v.best, v.gain_pct));
    sab.engines().publish(
        Engine::Optimisation,
        &[
            engine.tuner.trials() as f32,
            value as f32,
            best_value as f32,
            (baseline_us / 1000.0) as f32,
            (best_us / 1000.0) as f32,
            gain as f32,
        ],
    );
    engine.save(&sab);
    if changed {
        sab.epochs().signal(EpochIndex::OPTIMIZATION);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tuner_finds_the_minimum_of_a_known_cost() {
        // Cheapest at 12, rising on both sides in log space.
        let cost = |v: usize| ((v as f64).log2() - 12f64.log2()).powi(2) + 1.0;
        let mut tuner = Tuner::new(4, 7);
        let mut measured = 0;
        while let Some(v) = tuner.next() {
            assert!((MIN_VALUE..=MAX_VALUE).contains(&v));
            tuner.report(v, cost(v));
            measured += 1;
        }
        assert!(
            measured <= 6 + 4 * GENERATIONS as usize + 2 * VERIFY_ROUNDS,
            "{measured} measurements"
        );
        let (best, best_cost) = tuner.best().unwrap();
        assert!((8..=16).contains(&best), "best {best}");
        assert_eq!(tuner.current(), best);
        assert!(best_cost < cost(4) && best_cost < cost(32));
        assert_eq!(tuner.baseline(), Some(cost(4)));
        // Without noise the verification measures the same costs again.
        let verdict = tuner.verdict().unwrap();
        assert_eq!(
            (verdict.baseline, verdict.best, verdict.settled),
            (cost(4), best_cost, best)
        );
        assert!((verdict.gain_pct - 100.0 * (cost(4) - best_cost) / cost(4)).abs() < 1e-9);
    }

    /// Runs a whole search and verification over `cost`, which may draw noise from `rng`.
    fn tune(seed: u64, mut cost: impl FnMut(usize) -> f64) -> Verdict {
        let mut tuner = Tuner::new(4, seed);
        while let Some(v) = tuner.next() {
            tuner.report(v, cost(v));
        }
        tuner.verdict().unwrap()
    }

    /// Where every value costs the same and only noise differs, the search's cheapest median is
    /// the luckiest one; the verified gain is not: it is as often negative as positive, centred on
    /// zero, and a value that was only lucky is not kept.
    #[test]
    fn on_pure_noise_the_gain_is_centred_on_zero_and_nothing_is_kept() {
        let mut rng = SplitMix64::new(99);
        let verdicts: Vec<Verdict> = (0..200)
            .map(|seed| tune(seed, |_| 100.0 + 5.0 * f64::from(rng.gaussian())))
            .collect();
        let negative = verdicts.iter().filter(|v| v.gain_pct < 0.0).count();
        let mean = verdicts.iter().map(|v| v.gain_pct).sum::<f64>() / verdicts.len() as f64;
        assert!((60..=140).contains(&negative), "{negative} of 200 negative");
        assert!(mean.abs() < 1.5, "mean gain {mean:.2} %");
        for v in &verdicts {
            if v.gain_pct <= 0.0 {
                assert_eq!(v.settled, 4, "{v:?}");
            }
        }
    }

    /// A real difference under noise: the verified gain is near the true one, and the best value
    /// is kept.
    #[test]
    fn a_real_gain_is_measured_within_the_noise_and_kept() {
        let mut rng = SplitMix64::new(5);
        let truth = |v: usize| 100.0 + 8.0 * ((v as f64).log2() - 12f64.log2()).powi(2);
        for seed in 0..20 {
            let verdict = tune(seed, |v| truth(v) + f64::from(rng.gaussian()));
            assert!((8..=16).contains(&verdict.settled), "{verdict:?}");
            let true_gain = 100.0 * (truth(4) - truth(verdict.settled)) / truth(4);
            assert!(
                (verdict.gain_pct - true_gain).abs() < 2.0,
                "{verdict:?} vs {true_gain:.2} %"
            );
        }
    }

    /// The search is kept in the SAB: an engine loaded from it, at any phase, continues with the
    /// same values, costs and random state as the one that saved it.
    #[test]
    fn a_saved_search_carries_on_from_the_sab() {
        use crate::sab::{SabLayout, Tier};
        let sab = Sab::new(SabLayout::for_tier(Tier::Light));
        let cost = |v: usize| ((v as f64).log2() - 12f64.log2()).powi(2) + 1.0;
        let mut engine = OptimisationEngine::default();
        assert_eq!(
            OptimisationEngine::load(&sab).tuner.next(),
            engine.tuner.next(),
            "a new SAB: a new search"
        );
        (engine.published, engine.seen, engine.samples, engine.settling) = (Some(4), 77, vec![1.5, 2.5], false);
        let mut rounds = 0;
        while let Some(v) = engine.tuner.next() {
            engine.save(&sab);
            let mut loaded = OptimisationEngine::load(&sab);
            assert_eq!(loaded.tuner.next(), Some(v), "round {rounds}");
            assert_eq!(
                (loaded.tuner.trials(), loaded.tuner.best()),
                (engine.tuner.trials(), engine.tuner.best())
            );
            assert_eq!(
                (loaded.published, loaded.seen, &loaded.samples, loaded.settling),
                (Some(4), 77, &engine.samples, false)
            );
            // Both go on alike: the loaded one's next report breeds what the original's does.
            loaded.tuner.report(v, cost(v));
            engine.tuner.report(v, cost(v));
            assert_eq!(loaded.tuner.next(), engine.tuner.next());
            rounds += 1;
        }
        engine.save(&sab);
        let done = OptimisationEngine::load(&sab);
        assert_eq!(done.tuner.verdict(), engine.tuner.verdict());
        assert!(rounds > 10, "{rounds} rounds");
    }
}
