//! The optimisation engine: tunes a real parameter against measured time. The parameter is the
//! boids unit's work items per thread (`FlockParams::chunks_per_thread`): more items balance the
//! two cores better, fewer cost less to hand out. The cost of a value is the median boids step time
//! over `EVAL_STEPS` steps run with it.
//!
//! The search is a small genetic algorithm in log₂ space over 1 ..= 64: a first population of the
//! current value and powers of two, then `GENERATIONS` rounds that keep the two best and breed
//! four children (the mean of two parents' log₂ values plus Gaussian noise, rounded), values
//! already measured keeping their cost. The engine then settles on the best value and reports the
//! gain against the starting value. It hands each value to the unit through its state record and
//! `EPOCH_OPTIMIZATION` (the unit reads it before its next step), so the engine and the unit
//! meet only in the SAB.

use std::collections::BTreeMap;

use bevy::prelude::*;

use crate::sab::engines::Engine;
use crate::sab::{EpochIndex, Sab};
use crate::supervisors::evolution::SplitMix64;
use crate::timing::{StageTimes, quantile};

/// Boids steps measured per value (the first step after a change is not counted).
pub const EVAL_STEPS: usize = 24;
/// Rounds of breeding after the first population.
pub const GENERATIONS: u32 = 3;
/// The parameter's range.
pub const MIN_VALUE: usize = 1;
pub const MAX_VALUE: usize = 64;

/// The GA over one integer parameter.
#[derive(Clone, Debug)]
pub struct Tuner {
    initial: usize,
    /// Measured cost per value.
    costs: BTreeMap<usize, f64>,
    /// Values of the current generation, in measuring order.
    population: Vec<usize>,
    generation: u32,
    rng: SplitMix64,
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
        }
    }

    /// The value to measure next, or `None` once the search is over.
    pub fn next(&self) -> Option<usize> {
        self.population.iter().copied().find(|v| !self.costs.contains_key(v))
    }

    /// Records the cost of `value`, and breeds the next generation when this one is measured.
    pub fn report(&mut self, value: usize, cost: f64) {
        self.costs.insert(value, cost);
        if self.next().is_some() || self.generation >= GENERATIONS {
            return;
        }
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

    /// The value in force: the one being measured, or the best once the search is over.
    pub fn current(&self) -> usize {
        self.next()
            .unwrap_or_else(|| self.best().map_or(self.initial, |(v, _)| v))
    }

    /// The cheapest value measured, with its cost.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.costs
            .iter()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(&v, &c)| (v, c))
    }

    pub fn baseline(&self) -> Option<f64> {
        self.costs.get(&self.initial).copied()
    }

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
    /// Step-time samples (µs) seen so far, and those taken with the value in force.
    seen: usize,
    samples: Vec<f32>,
    /// Whether the next sample may still have run with the previous value.
    settling: bool,
}

impl Default for OptimisationEngine {
    fn default() -> Self {
        Self {
            tuner: Tuner::new(crate::units::boids::DEFAULT_CHUNKS_PER_THREAD, 0x0971),
            published: None,
            seen: 0,
            samples: Vec::new(),
            settling: true,
        }
    }
}

/// Runs on the bird epoch: takes the newest boids step times, scores the value in force once it
/// has enough of them, and publishes the next value.
pub(crate) fn run_optimisation(sab: Res<Sab>, times: Option<Res<StageTimes>>, mut engine: ResMut<OptimisationEngine>) {
    let Some(times) = times else {
        return;
    };
    let Some((_, steps)) = times.series().find(|(stage, _)| *stage == "physics") else {
        return;
    };
    let engine = &mut *engine;
    let fresh = &steps[engine.seen.min(steps.len())..];
    engine.seen = steps.len();
    if engine.published.is_some() && !engine.tuner.done() {
        // The first step after a change may still have run with the old value.
        let skip = usize::from(engine.settling).min(fresh.len());
        engine.settling &= skip == 0;
        engine.samples.extend(&fresh[skip..]);
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
    let (best_value, best_us) = engine.tuner.best().unwrap_or((value, 0.0));
    let baseline_us = engine.tuner.baseline().unwrap_or(0.0);
    let gain = if baseline_us > 0.0 && best_us > 0.0 {
        100.0 * (baseline_us - best_us) / baseline_us
    } else {
        0.0
    };
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
        assert!(measured <= 6 + 4 * GENERATIONS as usize, "{measured} measurements");
        let (best, best_cost) = tuner.best().unwrap();
        assert!((8..=16).contains(&best), "best {best}");
        assert_eq!(tuner.current(), best);
        assert!(best_cost < cost(4) && best_cost < cost(32));
        assert_eq!(tuner.baseline(), Some(cost(4)));
    }
}
