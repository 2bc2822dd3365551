//! The flock's measurements: physics and matrices per tick at 1k, 10k and 100k birds in two
//! layouts, the grid step against an O(n²) step of the same model, and the headless app at 10 000
//! birds.

use std::sync::atomic::AtomicU32;

use super::{FlockAppTiming, FlockLayout, FlockScaling, FlockTiming, NaiveComparison, median, median_and_p99, time_ms};
use crate::headless::{HeadlessConfig, build_app};
use crate::sab::{BirdRecord, SabLayout, Tier};
use crate::units::boids::{Flock, FlockParams, StepClock, World, forces, step_bird};
use crate::units::matrices::{MATRIX_WORDS, PARTS, write_part_major_words};

/// Neighbours per bird within the perception radius.
fn mean_neighbours(world: &World, birds: &[BirdRecord]) -> f64 {
    let mut grid = crate::units::boids::Grid::default();
    grid.build(world, birds);
    let total: u64 = (0..birds.len())
        .map(|i| u64::from(grid.forces(i, world).neighbours))
        .sum();
    total as f64 / birds.len().max(1) as f64
}

/// Physics and matrices per tick, after a short warm-up.
fn flock_timing(birds: usize, layout: FlockLayout, ticks: usize) -> FlockTiming {
    let mut flock = Flock::from_records(layout.birds(birds), FlockParams::default());
    // The matrices go where the matrix unit writes them: words, as in the SAB.
    let words: Vec<AtomicU32> = (0..PARTS * MATRIX_WORDS * birds).map(|_| AtomicU32::new(0)).collect();
    for _ in 0..3 {
        flock.step(1.0 / 64.0, &[]);
    }
    let first_neighbours = mean_neighbours(&flock.world, flock.birds());
    let (mut physics, mut matrices) = (Vec::with_capacity(ticks), Vec::with_capacity(ticks));
    for _ in 0..ticks {
        physics.push(time_ms(|| flock.step(1.0 / 64.0, &[])));
        matrices.push(time_ms(|| {
            write_part_major_words(flock.birds(), &words, flock.params.threads)
        }));
    }
    let last_neighbours = mean_neighbours(&flock.world, flock.birds());
    let total: Vec<f64> = physics.iter().zip(&matrices).map(|(p, m)| p + m).collect();
    let (median_ms, p99_ms) = median_and_p99(total);
    FlockTiming {
        birds,
        layout,
        threads: flock.params.threads,
        ticks,
        mean_neighbours: (first_neighbours + last_neighbours) / 2.0,
        physics_median_ms: median(physics),
        matrices_median_ms: median(matrices),
        median_ms,
        p99_ms,
    }
}

/// The grid step and the naive step from the same birds, alternating tick by tick.
fn naive_comparison(birds: usize, layout: FlockLayout, ticks: usize) -> NaiveComparison {
    let start = layout.birds(birds);
    let params = FlockParams::default();
    let threads = params.threads.max(1);
    let mut flock = Flock::from_records(start.clone(), params);
    let world = flock.world;
    let mut naive = start;
    let mut intensity = vec![0.0; birds];
    let mut next = naive.clone();
    let mean_neighbours = mean_neighbours(&world, &naive);
    let (mut grid_ms, mut naive_ms) = (Vec::with_capacity(ticks), Vec::with_capacity(ticks));
    for k in 1..=ticks {
        grid_ms.push(time_ms(|| flock.step(1.0 / 64.0, &[])));
        naive_ms.push(time_ms(|| {
            let clock = StepClock::new(k as f32 / 64.0, 1.0 / 64.0, k as u32 - 1);
            let chunk = birds.div_ceil(threads);
            let current = &naive;
            std::thread::scope(|scope| {
                for (c, (out, intensity)) in next.chunks_mut(chunk).zip(intensity.chunks_mut(chunk)).enumerate() {
                    scope.spawn(move || {
                        for (j, (out, intensity)) in out.iter_mut().zip(intensity).enumerate() {
                            let i = c * chunk + j;
                            let f = forces(i, current, 0..birds, &world);
                            *out = step_bird(i, &current[i], &f, intensity, clock, false);
                        }
                    });
                }
            });
            std::mem::swap(&mut naive, &mut next);
        }));
    }
    let (grid_median_ms, naive_median_ms) = (median(grid_ms), median(naive_ms));
    NaiveComparison {
        birds,
        layout,
        threads,
        ticks,
        mean_neighbours,
        grid_median_ms,
        naive_median_ms,
        speedup: naive_median_ms / grid_median_ms,
    }
}

pub(super) fn flock_scaling(quick: bool) -> FlockScaling {
    let flock = [(1_000, 200), (10_000, 60), (100_000, 10)]
        .into_iter()
        .flat_map(|(birds, ticks)| {
            let ticks = if quick { ticks / 5 } else { ticks };
            FlockLayout::ALL.map(|layout| flock_timing(birds, layout, ticks))
        })
        .collect();
    let flock_vs_naive = [(1_000, 20), (10_000, 6)]
        .into_iter()
        .flat_map(|(birds, ticks)| {
            let ticks = if quick { ticks / 2 } else { ticks };
            FlockLayout::ALL.map(|layout| naive_comparison(birds, layout, ticks))
        })
        .collect();
    FlockScaling {
        flock,
        flock_vs_naive,
        flock_app: flock_app_timing(10_000, if quick { 20 } else { 300 }),
    }
}

fn flock_app_timing(birds: usize, ticks: u64) -> FlockAppTiming {
    let mut app = build_app(HeadlessConfig {
        sab: None,
        layout: SabLayout::for_tier(Tier::Dedicated),
        pulse_hz: crate::pulse::DEFAULT_PULSE_HZ,
        flock: Some(crate::FlockPlugins {
            birds,
            params: FlockParams::default(),
            seed: 1,
            evolve_every: crate::EVOLVE_EVERY,
            obstacles: true,
        }),
    });
    for _ in 0..ticks {
        app.update();
    }
    let stages = app.world().resource::<crate::timing::StageTimes>().summaries();
    let median_ms = |name: &str| {
        stages
            .iter()
            .find(|s| s.stage == name)
            .map_or(f64::NAN, |s| f64::from(s.median_us) / 1e3)
    };
    FlockAppTiming {
        birds,
        ticks,
        physics_median_ms: median_ms("physics"),
        matrices_median_ms: median_ms("matrices"),
    }
}
