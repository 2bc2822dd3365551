//! The scheduling engine's report: how the job queue's order served deadlines.
//!
//! The order itself is the job queue's priority queue (`JobQueue`: a B-tree of first-in-first-out
//! runs, one per score and deadline), popped on every pulse: the scheduling
//! score first (`SchedulingPolicy`: priority plus deadline urgency, times the source's credit
//! multiplier), then earliest deadline (EDF), then submission order. This engine measures it from the
//! SAB alone: from the job history (read from its own cursor), jobs with a deadline and how many
//! finished by it (the deadline-hit rate; the target is ≥ 95 % under admissible load) and the mean
//! time from submission to result; from the pipeline record, jobs dispatched and the queue's depth.
//! It publishes its state record and signals `EPOCH_SCHEDULING`.

use bevy::prelude::*;

use super::EngineSystems;

use crate::protocol::JobStatus;
use crate::sab::engines::Engine;
use crate::sab::{EpochIndex, HistoryCursor, HistoryReader, JobRecord, KernelArea, Sab, epoch_changed};

/// The engine's figures, kept in its kernel-state area (its header) so a resumed snapshot carries
/// them on.
#[derive(Resource, Default, Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct SchedulingEngine {
    pub cursor: HistoryCursor,
    pub finished: u64,
    pub with_deadline: u64,
    pub deadline_met: u64,
    /// Exponentially weighted mean submission-to-result time.
    pub mean_wait_us: f64,
}

impl SchedulingEngine {
    /// The engine as `sab` holds it.
    pub fn load(sab: &Sab) -> Self {
        sab.kernel_state(KernelArea::SchedulingState).header()
    }

    pub fn observe(&mut self, r: &JobRecord) {
        if r.refusal != 0 {
            return; // refused at submission: never queued
        }
        self.finished += 1;
        self.mean_wait_us += (f64::from(r.duration_us) - self.mean_wait_us) / (self.finished.min(100) as f64);
        // `deadline_ms` is relative to submission; 0 = none.
        if r.deadline_ms > 0 {
            self.with_deadline += 1;
            let on_time = u64::from(r.duration_us) <= u64::from(r.deadline_ms) * 1000;
            self.deadline_met += u64::from(on_time && r.status == JobStatus::Success.code());
        }
    }

    /// The share of jobs with a deadline that succeeded by it (1 when none had one).
    pub fn hit_rate(&self) -> f64 {
        if self.with_deadline == 0 {
            1.0
        } else {
            self.deadline_met as f64 / self.with_deadline as f64
        }
    }
}

/// The scheduling engine's report, on the job history.
pub struct SchedulingPlugin;

impl Plugin for SchedulingPlugin {
    fn build(&self, app: &mut App) {
        let engine = SchedulingEngine::load(app.world().resource::<Sab>());
        app.insert_resource(engine).add_systems(
            FixedUpdate,
            run_scheduling
                .in_set(EngineSystems)
                .run_if(epoch_changed(EpochIndex::JOB_HISTORY)),
        );
    }
}

fn run_scheduling(sab: Res<Sab>, mut engine: ResMut<SchedulingEngine>, mut history: Local<HistoryReader>) {
    let mut cursor = engine.cursor;
    for job in history.read(&sab, &mut cursor) {
        engine.observe(job);
    }
    engine.cursor = cursor;
    sab.kernel_state(KernelArea::SchedulingState).set_header(&*engine);
    // The pipeline's counters as the kernel last published them (zero until it has).
    let pipeline = sab.pipeline().read().unwrap_or_default();
    sab.engines().publish(
        Engine::Scheduling,
        &[
            pipeline.dispatched as f32,
            engine.with_deadline as f32,
            engine.deadline_met as f32,
            engine.hit_rate() as f32,
            pipeline.queued as f32,
            engine.mean_wait_us as f32,
            engine.cursor.lost as f32,
        ],
    );
    sab.epochs().signal(EpochIndex::SCHEDULING);
}
