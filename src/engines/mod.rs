//! The kernel's engines, each a plugin in its file: a system gated on an epoch that publishes its
//! figures to the SAB (its record in the coordination region, `Sab::engines`), where the inspector
//! and `inos inspect` read them. They learn what happened from the SAB alone: the job history, each engine from its
//! own cursor (an engine that falls behind the ring counts what it lost, its `history_lost`
//! metric), and the pipeline's record; they act through it too (the admission table,
//! lifecycle requests).
//!
//! - `security`: the settings of the SAB's admission table, which the kernel checks every job
//!   against (per-unit input limits, token buckets per source), anomaly detection on finished jobs,
//!   the audit log of refusals and anomalies;
//! - `learning`: an online latency model per unit and method, scored on every job, and job
//!   sequences written to the pattern exchange;
//! - `scheduling`: the deadline-hit rate and waiting times of the job queue's order (score, then
//!   earliest deadline);
//! - `health`: CUSUM and hazard rate per unit, remediation by lifecycle requests to the tree;
//! - `optimisation`: a small GA tuning the boids unit's work split against its measured step time.
//!
//! They run after the supervisor tree, so the jobs the pipeline resolved in a tick reach them in
//! the same tick.
//!
//! Their models, counters and history cursors live in their areas of the SAB's kernel state
//! (`sab::kernel_state`): each engine's resource is a cache of its area, loaded when the app is
//! built, so an engine on a resumed snapshot carries on from its saved state.

pub mod health;
pub mod learning;
pub mod optimisation;
pub mod scheduling;
pub mod security;

use bevy::prelude::*;

/// The five engines, each its own plugin.
pub struct EnginesPlugin;

/// The engines' place in `FixedUpdate` (after the supervisor tree: `CorePlugins` orders them).
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineSystems;

impl Plugin for EnginesPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins((
            security::SecurityPlugin,
            learning::LearningPlugin,
            scheduling::SchedulingPlugin,
            health::HealthPlugin,
            optimisation::OptimisationPlugin,
        ));
    }
}
