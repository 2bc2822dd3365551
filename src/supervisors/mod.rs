//! Supervisors: systems that watch the units through the SAB.
//!
//! `DiscoveryPlugin` keeps `DiscoveredModules` in step with the module registry. It runs only when
//! the registry epoch moves, so a unit that registers after startup (from any thread or process
//! sharing the SAB) is discovered on the next frame, and nothing is re-read otherwise.

pub mod chunks;
pub mod clients;
pub mod evolution;
pub mod jobs;
pub mod syscalls;
pub mod tree;
pub mod workflows;

use bevy::prelude::*;

use crate::sab::registry::ModuleRecord;
use crate::sab::{EpochIndex, Sab, epoch_changed};

/// The registered modules as last read from the registry, in slot order.
#[derive(Resource, Default, Debug)]
pub struct DiscoveredModules(pub Vec<ModuleRecord>);

/// The supervisors' place in the frame.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum SupervisorSystems {
    Discover,
}

pub struct DiscoveryPlugin;

impl Plugin for DiscoveryPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<DiscoveredModules>().add_systems(
            PreUpdate,
            discover
                .in_set(SupervisorSystems::Discover)
                .run_if(epoch_changed(EpochIndex::REGISTRY)),
        );
    }
}

fn discover(sab: Res<Sab>, mut discovered: ResMut<DiscoveredModules>) {
    discovered.0 = sab.registry().modules();
    debug!("registry changed: {} modules", discovered.0.len());
}
