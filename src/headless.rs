//! Headless runs: the core plugins without a window or GPU, driven for a fixed number of ticks as
//! fast as the machine allows, then a report (and optionally a snapshot).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bevy::ecs::schedule::{Schedules, SingleThreadedExecutor};
use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use serde::Serialize;

use crate::sab::{EpochIndex, Sab, SabLayout, Tier, Wake};
use crate::supervisors::evolution::{Evolution, GenerationStats};
use crate::timing::{StageSummary, StageTimes};
use crate::units::boids::{Flock, birds_in};
use crate::{CorePlugins, FlockPlugins, RunConfig};

/// What a headless app runs.
#[derive(Clone, Debug)]
pub struct HeadlessConfig {
    pub layout: SabLayout,
    pub pulse_hz: f64,
    /// The flock, if any.
    pub flock: Option<FlockPlugins>,
    /// The SAB to run on (a resumed snapshot, a shared mapping) instead of a new private one of
    /// `layout`.
    pub sab: Option<Sab>,
}

impl HeadlessConfig {
    /// The core alone: the light tier's SAB, a 64 Hz pulse, no flock.
    pub fn kernel() -> Self {
        Self {
            layout: SabLayout::for_tier(Tier::Light),
            pulse_hz: 64.0,
            flock: None,
            sab: None,
        }
    }
}

/// A headless app, started: `MinimalPlugins`, the core plugins, the flock, and exactly one fixed
/// tick per further `update`.
pub fn build_app(config: HeadlessConfig) -> App {
    build_app_with(config, |_| {})
}

/// `build_app`, with `setup` adding more (units, resources, systems) before the app starts.
pub fn build_app_with(config: HeadlessConfig, setup: impl FnOnce(&mut App)) -> App {
    let mut app = App::new();
    if let Some(sab) = config.sab {
        app.insert_resource(sab);
    }
    app.add_plugins(MinimalPlugins)
        .add_plugins(CorePlugins {
            layout: config.layout,
            pulse_hz: config.pulse_hz,
        })
        .insert_resource(TimeUpdateStrategy::FixedTimesteps(1));
    if let Some(flock) = config.flock {
        app.add_plugins(flock);
    }
    setup(&mut app);
    app.finish();
    app.cleanup();
    // One thread runs the systems: the heavy units use their own threads, and on a small machine
    // waking the task pool for each system costs far more than the systems (on 2 cores an idle
    // update takes ~340 µs with the multi-threaded executor and ~6 µs without).
    for (_, schedule) in app.world_mut().resource_mut::<Schedules>().iter_mut() {
        schedule.set_executor(SingleThreadedExecutor::new());
    }
    // The first update runs the startup schedules and primes the clock (no fixed step yet); from
    // then on every update is exactly one tick.
    app.update();
    app
}

#[derive(Debug, Serialize)]
pub struct EpochValue {
    pub name: &'static str,
    pub index: u32,
    pub value: u32,
}

#[derive(Debug, Serialize)]
pub struct HeadlessReport {
    pub tier: Tier,
    pub sab_size: usize,
    pub ticks: u64,
    pub pulse_hz: f64,
    pub birds: usize,
    pub faithful: bool,
    pub threads: usize,
    pub wall_seconds: f64,
    pub ticks_per_second: f64,
    pub bird_updates_per_second: f64,
    pub stages: Vec<StageSummary>,
    pub mean_fitness: f32,
    pub best_fitness: f32,
    /// BLAKE3 of the bird stream's published records (count x 236 bytes).
    pub bird_stream_blake3: String,
    pub seed: u64,
    /// One entry per GA generation.
    pub generations: Vec<GenerationStats>,
    /// Named epochs with a non-zero value.
    pub epochs: Vec<EpochValue>,
    pub snapshot: Option<SnapshotInfo>,
}

#[derive(Debug, Serialize)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub blake3: String,
}

/// The named epochs of `sab` whose value is not zero.
pub fn nonzero_epochs(sab: &Sab) -> Vec<EpochValue> {
    let epochs = sab.epochs();
    EpochIndex::NAMED
        .iter()
        .map(|&(index, name, _)| EpochValue {
            name,
            index: index.get(),
            value: epochs.load(index),
        })
        .filter(|e| e.value != 0)
        .collect()
}

/// Set by Ctrl-C during a headless run (`stop_on_ctrl_c`): the run ends after the tick in
/// progress, prints its report and removes its SAB file, as at its planned end.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Makes Ctrl-C end a headless run cleanly (a second Ctrl-C ends the process at once).
#[cfg(not(target_arch = "wasm32"))]
fn stop_on_ctrl_c() {
    let installed = bevy::app::ctrlc::try_set_handler(|| {
        if INTERRUPTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            std::process::exit(130);
        }
    });
    if let Err(e) = installed {
        warn!("Ctrl-C will not end the run cleanly: {e}");
    }
}

/// Runs `ticks` fixed ticks (fewer if Ctrl-C ends the run); shows a progress bar on a terminal for
/// runs longer than a moment. Returns the time taken and the ticks run.
pub fn run_ticks(app: &mut App, ticks: u64) -> (Duration, u64) {
    let bar = indicatif::ProgressBar::new(ticks).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} ticks {per_sec} eta {eta}")
            .expect("the progress template is valid"),
    );
    let start = Instant::now();
    let mut done = 0;
    while done < ticks && !interrupted() {
        app.update();
        done += 1;
        if done % 64 == 1 && start.elapsed() > Duration::from_millis(500) {
            bar.set_position(done);
        }
    }
    bar.finish_and_clear();
    (start.elapsed(), done)
}

/// Serves outside clients (`--serve`) for `length` of wall time: a tick every pulse period, and one
/// at once whenever a client signals that it submitted jobs (`USER_JOB`). Returns the time taken
/// and the ticks run.
pub fn serve(app: &mut App, length: Duration, hz: f64) -> (Duration, u64) {
    let sab = app.world().resource::<Sab>().clone();
    let where_ = sab.path().map_or_else(
        || "a private SAB (no client can attach)".to_owned(),
        |p| p.display().to_string(),
    );
    eprintln!(
        "serving clients on {where_} for {:.0} s (kernel pid {}); `inos submit --sab {where_} ...` sends jobs",
        length.as_secs_f64(),
        std::process::id()
    );
    let end = Instant::now() + length;
    serve_while(app, hz, |next| (next < end).then_some(next.min(end)))
}

/// Ticks `app` at `hz`, and at once whenever a client signals `USER_JOB`, while `until` gives the
/// instant to wait for the next signal until (it is given the next pulse tick's; `None` ends).
pub fn serve_while(app: &mut App, hz: f64, mut until: impl FnMut(Instant) -> Option<Instant>) -> (Duration, u64) {
    let sab = app.world().resource::<Sab>().clone();
    let period = Duration::from_secs_f64(1.0 / hz);
    let start = Instant::now();
    let mut next = start + period;
    let mut seen = sab.epochs().load(EpochIndex::USER_JOB);
    let mut ticks = 0;
    while let Some(wait_until) = until(next).filter(|_| !interrupted()) {
        let left = wait_until.saturating_duration_since(Instant::now());
        match sab.epochs().wait(EpochIndex::USER_JOB, seen, left) {
            Wake::Changed(value) => seen = value,
            // A pulse tick; after a busy stretch, the next one is a period from now, not a burst.
            Wake::TimedOut => next = (next + period).max(Instant::now()),
        }
        app.update();
        ticks += 1;
    }
    (start.elapsed(), ticks)
}

/// BLAKE3 of the records the bird stream publishes now.
pub fn bird_stream_hash(sab: &Sab) -> String {
    let birds = birds_in(sab).unwrap_or_default();
    blake3::hash(bytemuck::cast_slice(&birds)).to_hex().to_string()
}

/// `inos --headless`: runs `config.ticks` fixed ticks as fast as possible (or serves clients,
/// `--serve`) and prints a report; Ctrl-C ends it early, with the report.
pub fn run(config: &RunConfig) -> Result<(), crate::RunError> {
    #[cfg(not(target_arch = "wasm32"))]
    stop_on_ctrl_c();
    let (layout, flock) = (config.layout, config.flock);
    let (birds, params) = (flock.birds, flock.params);
    let headless = HeadlessConfig {
        layout,
        pulse_hz: config.pulse_hz,
        flock: Some(flock),
        sab: config.sab.clone(),
    };
    let mut app = build_app_with(headless, |app| {
        app.insert_resource(config.job_host);
    });
    let (wall, ticks) = match config.serve {
        Some(length) => serve(&mut app, length, config.pulse_hz),
        None => run_ticks(&mut app, config.ticks),
    };
    let sab = app.world().resource::<Sab>().clone();
    let flock = app.world().resource::<Flock>();
    let (mean_fitness, best_fitness) = (flock.mean_fitness(), flock.best_fitness());
    let stages = app.world().resource::<StageTimes>().summaries();
    let generations = app.world().resource::<Evolution>().history.clone();

    let snapshot = match &config.snapshot {
        Some(path) => {
            let header = sab.write_snapshot(path)?;
            Some(SnapshotInfo {
                path: path.clone(),
                blake3: blake3::Hash::from_bytes(header.body_hash).to_hex().to_string(),
            })
        }
        None => None,
    };
    let seconds = wall.as_secs_f64();
    let report = HeadlessReport {
        tier: layout.tier,
        sab_size: layout.sab_size,
        ticks,
        pulse_hz: config.pulse_hz,
        birds,
        faithful: params.faithful,
        threads: params.threads,
        wall_seconds: seconds,
        ticks_per_second: ticks as f64 / seconds.max(f64::MIN_POSITIVE),
        bird_updates_per_second: (ticks as f64 * birds as f64) / seconds.max(f64::MIN_POSITIVE),
        stages,
        mean_fitness,
        best_fitness,
        bird_stream_blake3: bird_stream_hash(&sab),
        seed: config.flock.seed,
        generations,
        epochs: nonzero_epochs(&sab),
        snapshot,
    };
    if config.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &HeadlessReport) {
    println!(
        "headless run: tier {} ({} MiB), {} birds ({}, {} threads), {} ticks at {} Hz in {:.3} s",
        r.tier,
        r.sab_size >> 20,
        r.birds,
        if r.faithful { "faithful" } else { "correct" },
        r.threads,
        r.ticks,
        r.pulse_hz,
        r.wall_seconds,
    );
    println!(
        "  {:.0} ticks/s, {:.3} M bird-updates/s",
        r.ticks_per_second,
        r.bird_updates_per_second / 1e6
    );
    println!(
        "stage times (µs):\n  {:<10} {:>8} {:>10} {:>10}",
        "stage", "min", "median", "p99"
    );
    for s in &r.stages {
        println!(
            "  {:<10} {:>8.1} {:>10.1} {:>10.1}",
            s.stage, s.min_us, s.median_us, s.p99_us
        );
    }
    println!("fitness: mean {:.4}, best {:.4}", r.mean_fitness, r.best_fitness);
    if !r.generations.is_empty() {
        let means: Vec<String> = r.generations.iter().map(|g| format!("{:.3}", g.mean_fitness)).collect();
        println!(
            "evolution (seed {}): {} generations, mean fitness {}",
            r.seed,
            r.generations.len(),
            means.join(" ")
        );
    }
    println!("bird stream blake3: {}", r.bird_stream_blake3);
    println!("epochs:");
    for e in &r.epochs {
        println!("  {:>3} {:<20} {}", e.index, e.name, e.value);
    }
    if let Some(s) = &r.snapshot {
        println!("snapshot: {} (body blake3 {})", s.path.display(), s.blake3);
    }
}
