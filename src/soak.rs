//! `inos soak --minutes M`: the whole system under a steady load for a long time, to show that
//! nothing grows and nothing is lost.
//!
//! A headless app with the flock (its obstacles and evolution), paced at the pulse rate in wall
//! time, takes every tick a few echo and BLAKE3 jobs from two sources and, every second, a
//! workflow (a diamond across echo and crypto with data passed through the arena). Every result
//! and every workflow outcome is taken as it arrives. Each minute the run prints its resident
//! memory (`VmRSS` of `/proc/self/status`) and counts; at the end it waits for what is in flight and checks
//! that every job and every workflow was answered, and that resident memory stayed within
//! `RSS_TOLERANCE` of its value after the first minute (runs of two minutes or more).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bevy::prelude::App;
use serde::Serialize;

use crate::headless::{HeadlessConfig, build_app};
use crate::protocol::{Job, JobStatus, Payload, SOURCE_KEY};
use crate::sab::{Sab, SabLayout, Tier};
use crate::supervisors::jobs::JobQueue;
use crate::supervisors::workflows::{Step, StepInput, Workflow, WorkflowEngine};
use crate::units::boids::FlockParams;
use crate::{FlockPlugins, RunError};

/// Largest growth of resident memory over its value after the first minute.
pub const RSS_TOLERANCE: f64 = 0.05;
/// Jobs submitted per tick (half echo, half BLAKE3 of 1–16 KiB).
const JOBS_PER_TICK: u64 = 4;

/// One minute's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSample {
    pub minute: f64,
    pub ticks: u64,
    pub rss_mib: f64,
    pub jobs_submitted: u64,
    pub jobs_answered: u64,
    pub workflows_finished: u64,
    pub generations: u32,
}

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub minutes: f64,
    pub birds: usize,
    pub samples: Vec<SoakSample>,
    pub jobs_submitted: u64,
    pub jobs_answered: u64,
    pub jobs_failed: u64,
    pub workflows_submitted: u64,
    pub workflows_finished: u64,
    pub workflows_failed: u64,
    /// Resident memory at the end against its value after the first minute, when there is one.
    pub rss_growth: Option<f64>,
    pub passed: bool,
}

/// Resident memory of this process in MiB (Linux: `VmRSS`, in kB, with no page size assumed), or
/// `None` elsewhere.
pub fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// What is submitted and not yet answered.
#[derive(Default)]
struct Load {
    next_job: u64,
    jobs: BTreeSet<u64>,
    next_workflow: u64,
    workflows: BTreeSet<u64>,
    jobs_submitted: u64,
    jobs_answered: u64,
    jobs_failed: u64,
    workflows_submitted: u64,
    workflows_finished: u64,
    workflows_failed: u64,
}

impl Load {
    fn submit_jobs(&mut self, app: &mut App, sab: &Sab) {
        let data = [0x5au8; 16 << 10];
        for k in 0..JOBS_PER_TICK {
            self.next_job += 1;
            let id = self.next_job;
            let job = if k % 2 == 0 {
                Job::new(id, "echo", "echo", Payload::Inline(data[..64].to_vec()))
            } else {
                let size = 1024 * (1 + (id as usize % 16));
                Job::new(id, "crypto", "hash", Payload::Inline(data[..size].to_vec()))
            };
            let job = Job {
                metadata: vec![(SOURCE_KEY.into(), ["soak-a", "soak-b"][k as usize % 2].into())],
                ..job
            };
            match app.world_mut().resource_mut::<JobQueue>().submit(sab, &job) {
                Ok(()) => {
                    self.jobs.insert(id);
                    self.jobs_submitted += 1;
                }
                Err(e) => bevy::log::warn!("soak: job {id} refused: {e}"),
            }
        }
    }

    fn submit_workflow(&mut self, app: &mut App, sab: &Sab) {
        self.next_workflow += 1;
        let id = self.next_workflow;
        // A diamond: one input, hashed and echoed side by side, then both joined by echo.
        let steps = vec![
            Step::new("source", "echo", "echo", StepInput::Inline(vec![id as u8; 4096])),
            Step::new("hash", "crypto", "hash", StepInput::Output(0)),
            Step::new("copy", "echo", "echo", StepInput::Output(0)),
            Step::new("join", "echo", "echo", StepInput::Output(2)).after(&[1]),
        ];
        match app
            .world_mut()
            .resource_mut::<WorkflowEngine>()
            .submit(sab, Workflow { id, steps })
        {
            Ok(()) => {
                self.workflows.insert(id);
                self.workflows_submitted += 1;
            }
            Err(e) => bevy::log::warn!("soak: workflow {id} refused: {e}"),
        }
    }

    /// Takes every result and outcome that has arrived.
    fn collect(&mut self, app: &mut App) {
        let mut queue = app.world_mut().resource_mut::<JobQueue>();
        self.jobs.retain(|&id| match queue.take_result(id) {
            Some(outcome) => {
                self.jobs_answered += 1;
                self.jobs_failed += u64::from(outcome.status != JobStatus::Success);
                false
            }
            None => true,
        });
        let mut engine = app.world_mut().resource_mut::<WorkflowEngine>();
        self.workflows.retain(|&id| match engine.take_outcome(id) {
            Some(outcome) => {
                self.workflows_finished += 1;
                self.workflows_failed += u64::from(!outcome.succeeded());
                false
            }
            None => true,
        });
    }
}

/// Runs the soak for `minutes` of wall time with `birds` birds, printing a line a minute (or
/// only the JSON report at the end).
pub fn soak(minutes: f64, birds: usize, json: bool) -> SoakReport {
    let mut app = build_app(HeadlessConfig {
        sab: None,
        layout: SabLayout::for_tier(Tier::Light),
        pulse_hz: crate::pulse::DEFAULT_PULSE_HZ,
        flock: Some(FlockPlugins {
            birds,
            params: FlockParams::default(),
            seed: 1,
            evolve_every: crate::EVOLVE_EVERY,
            obstacles: true,
        }),
    });
    let sab = app.world().resource::<Sab>().clone();
    let tick = Duration::from_secs_f64(1.0 / crate::pulse::DEFAULT_PULSE_HZ);
    let ticks_per_second = crate::pulse::DEFAULT_PULSE_HZ.round() as u64;
    let total = Duration::from_secs_f64(minutes * 60.0);
    let (start, mut ticks) = (Instant::now(), 0u64);
    let mut load = Load::default();
    let mut samples = Vec::new();
    let mut next_sample = Duration::from_secs(60).min(total);
    let sample = |load: &Load, app: &App, ticks: u64, elapsed: Duration| SoakSample {
        minute: elapsed.as_secs_f64() / 60.0,
        ticks,
        rss_mib: resident_mib().unwrap_or(f64::NAN),
        jobs_submitted: load.jobs_submitted,
        jobs_answered: load.jobs_answered,
        workflows_finished: load.workflows_finished,
        generations: app
            .world()
            .resource::<crate::supervisors::evolution::Evolution>()
            .generation(),
    };
    if !json {
        println!("soak: {minutes} min, {birds} birds, {JOBS_PER_TICK} jobs a tick at 64 Hz, a workflow a second");
        println!(
            "  {:>6} {:>8} {:>9} {:>10} {:>10} {:>9} {:>11}",
            "minute", "ticks", "RSS MiB", "jobs in", "answered", "workflows", "generations"
        );
    }
    while start.elapsed() < total {
        ticks += 1;
        load.submit_jobs(&mut app, &sab);
        if ticks % ticks_per_second == 0 {
            load.submit_workflow(&mut app, &sab);
        }
        app.update();
        load.collect(&mut app);
        if start.elapsed() >= next_sample {
            let s = sample(&load, &app, ticks, start.elapsed());
            if !json {
                println!(
                    "  {:>6.1} {:>8} {:>9.1} {:>10} {:>10} {:>9} {:>11}",
                    s.minute,
                    s.ticks,
                    s.rss_mib,
                    s.jobs_submitted,
                    s.jobs_answered,
                    s.workflows_finished,
                    s.generations
                );
            }
            samples.push(s);
            next_sample += Duration::from_secs(60);
        }
        if let Some(wait) = (start + tick * ticks as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    // Drain: what is in flight gets ten seconds of ticks to be answered.
    for _ in 0..10 * ticks_per_second {
        if load.jobs.is_empty() && load.workflows.is_empty() {
            break;
        }
        app.update();
        load.collect(&mut app);
    }
    // The end, unless a minute's sample has just been taken.
    let end = sample(&load, &app, ticks, start.elapsed());
    if samples
        .last()
        .is_none_or(|last: &SoakSample| end.minute - last.minute > 1.0 / 60.0)
    {
        if !json {
            println!(
                "  {:>6.1} {:>8} {:>9.1} {:>10} {:>10} {:>9} {:>11}  (end)",
                end.minute,
                end.ticks,
                end.rss_mib,
                end.jobs_submitted,
                end.jobs_answered,
                end.workflows_finished,
                end.generations
            );
        }
        samples.push(end);
    }
    // Against the first minute's sample, when the run went on past it.
    let rss_growth = (samples.len() >= 2).then(|| samples[samples.len() - 1].rss_mib / samples[0].rss_mib - 1.0);
    let passed = load.jobs.is_empty()
        && load.workflows.is_empty()
        && load.jobs_failed == 0
        && load.workflows_failed == 0
        && rss_growth.is_none_or(|g| g <= RSS_TOLERANCE);
    SoakReport {
        minutes,
        birds,
        samples,
        jobs_submitted: load.jobs_submitted,
        jobs_answered: load.jobs_answered,
        jobs_failed: load.jobs_failed,
        workflows_submitted: load.workflows_submitted,
        workflows_finished: load.workflows_finished,
        workflows_failed: load.workflows_failed,
        rss_growth,
        passed,
    }
}

/// `inos soak`: runs, reports, and fails when a job was lost or memory grew.
pub fn run(minutes: f64, birds: usize, json: bool) -> Result<(), RunError> {
    let report = soak(minutes, birds, json);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "jobs: {} submitted, {} answered ({} failed); workflows: {} submitted, {} finished ({} failed)",
            report.jobs_submitted,
            report.jobs_answered,
            report.jobs_failed,
            report.workflows_submitted,
            report.workflows_finished,
            report.workflows_failed
        );
        match report.rss_growth {
            Some(g) => println!(
                "resident memory: {:+.2} % since the first minute (limit {:+.0} %)",
                100.0 * g,
                100.0 * RSS_TOLERANCE
            ),
            None => println!("resident memory: the run is too short to compare with its first minute"),
        }
    }
    if report.passed { Ok(()) } else { Err(RunError::Soak) }
}
