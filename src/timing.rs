//! Per-stage tick times: each stage records how long it took on every tick it ran, so a headless
//! run (and the inspector) can report min, median and p99 per stage.

use std::time::Duration;

use bevy::prelude::*;
use serde::Serialize;

/// The `q` quantile (0..=1) of sorted, non-empty samples: the nearest-rank sample.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Durations in microseconds, per stage, in recording order.
#[derive(Resource, Default, Debug)]
pub struct StageTimes {
    stages: Vec<(&'static str, Vec<f32>)>,
}

/// min, median and p99 of one stage, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub stage: &'static str,
    pub ticks: usize,
    pub min_us: f32,
    pub median_us: f32,
    pub p99_us: f32,
}

impl StageTimes {
    pub fn record(&mut self, stage: &'static str, took: Duration) {
        let us = took.as_secs_f32() * 1e6;
        match self.stages.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, v)) => v.push(us),
            None => self.stages.push((stage, vec![us])),
        }
    }

    /// Every stage's samples in recording order (µs).
    pub fn series(&self) -> impl Iterator<Item = (&'static str, &[f32])> {
        self.stages.iter().map(|(stage, v)| (*stage, v.as_slice()))
    }

    pub fn summaries(&self) -> Vec<StageSummary> {
        self.stages
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(stage, v)| {
                let mut sorted = v.clone();
                sorted.sort_by(f32::total_cmp);
                StageSummary {
                    stage,
                    ticks: sorted.len(),
                    min_us: sorted[0],
                    median_us: quantile(&sorted, 0.5),
                    p99_us: quantile(&sorted, 0.99),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_order_statistics() {
        let mut t = StageTimes::default();
        for us in [5u64, 1, 3, 2, 4] {
            t.record("physics", Duration::from_micros(us));
        }
        let s = &t.summaries()[0];
        assert_eq!((s.ticks, s.min_us, s.median_us, s.p99_us), (5, 1.0, 3.0, 5.0));
    }
}
