//! Per-stage tick times: each stage records how long it took on every tick it ran, so a headless
//! run (and the inspector) can report min, median and p99 per stage.

use std::collections::VecDeque;
use std::time::Duration;

use bevy::prelude::*;
use serde::Serialize;

/// The `q` quantile (0..=1) of sorted, non-empty samples: the nearest-rank sample.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Samples kept per stage: the newest this many ticks (about four minutes at 64 Hz). Older ones are
/// dropped, so a run of any length holds a fixed amount of memory.
pub const STAGE_WINDOW: usize = 16_384;

/// Durations in microseconds, per stage: the newest [`STAGE_WINDOW`] in recording order, and how
/// many were ever recorded.
#[derive(Resource, Default, Debug)]
pub struct StageTimes {
    stages: Vec<(&'static str, StageSeries)>,
}

#[derive(Default, Debug)]
pub struct StageSeries {
    samples: VecDeque<f32>,
    recorded: u64,
}

impl StageSeries {
    /// Samples ever recorded (the window keeps the newest [`STAGE_WINDOW`]).
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    /// The kept samples, oldest first (µs).
    pub fn samples(&self) -> &VecDeque<f32> {
        &self.samples
    }

    /// The samples recorded after the first `seen` ever recorded (as many as are still kept).
    pub fn since(&self, seen: u64) -> impl Iterator<Item = f32> + '_ {
        let fresh = self.recorded.saturating_sub(seen).min(self.samples.len() as u64) as usize;
        self.samples.iter().copied().skip(self.samples.len() - fresh)
    }
}

/// min, median and p99 of one stage over its window, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub stage: &'static str,
    /// Ticks the stage ran.
    pub ticks: u64,
    /// The newest ticks the figures are over (at most [`STAGE_WINDOW`]).
    pub window: usize,
    pub min_us: f32,
    pub median_us: f32,
    pub p99_us: f32,
}

impl StageTimes {
    pub fn record(&mut self, stage: &'static str, took: Duration) {
        let us = took.as_secs_f32() * 1e6;
        let series = match self.stages.iter().position(|(s, _)| *s == stage) {
            Some(i) => &mut self.stages[i].1,
            None => {
                self.stages.push((stage, StageSeries::default()));
                &mut self.stages.last_mut().expect("just pushed").1
            }
        };
        if series.samples.len() == STAGE_WINDOW {
            series.samples.pop_front();
        }
        series.samples.push_back(us);
        series.recorded += 1;
    }

    /// Every stage's series.
    pub fn series(&self) -> impl Iterator<Item = (&'static str, &StageSeries)> {
        self.stages.iter().map(|(stage, v)| (*stage, v))
    }

    pub fn summaries(&self) -> Vec<StageSummary> {
        self.stages
            .iter()
            .filter(|(_, v)| !v.samples.is_empty())
            .map(|(stage, v)| {
                let mut sorted: Vec<f32> = v.samples.iter().copied().collect();
                sorted.sort_by(f32::total_cmp);
                StageSummary {
                    stage,
                    ticks: v.recorded,
                    window: sorted.len(),
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
        assert_eq!(
            (s.ticks, s.window, s.min_us, s.median_us, s.p99_us),
            (5, 5, 1.0, 3.0, 5.0)
        );
    }

    #[test]
    fn a_long_run_keeps_a_fixed_window_of_the_newest_samples() {
        let mut t = StageTimes::default();
        let extra = 1000;
        for us in 0..(STAGE_WINDOW + extra) as u64 {
            t.record("matrices", Duration::from_micros(us));
        }
        let (_, series) = t.series().next().unwrap();
        assert_eq!(series.recorded(), (STAGE_WINDOW + extra) as u64);
        assert_eq!(series.samples().len(), STAGE_WINDOW);
        // (Samples are µs through f32 seconds: compare them rounded.)
        assert_eq!(series.samples()[0].round(), extra as f32, "the oldest kept sample");
        // What came after the first `seen`: the newest, oldest first.
        let seen = (STAGE_WINDOW + extra - 3) as u64;
        let fresh: Vec<f32> = series.since(seen).map(f32::round).collect();
        assert_eq!(fresh, [seen as f32, (seen + 1) as f32, (seen + 2) as f32]);
        // A reader that fell further behind than the window gets what is kept.
        assert_eq!(series.since(0).count(), STAGE_WINDOW);
        let s = &t.summaries()[0];
        assert_eq!((s.ticks, s.window), ((STAGE_WINDOW + extra) as u64, STAGE_WINDOW));
        assert_eq!(s.min_us.round(), extra as f32);
    }
}
