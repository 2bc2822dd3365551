//! INOS on Bevy: a shared-memory operating system whose parts talk only through one byte arena
//! (the SAB, `sab`) and atomic epoch counters.
//!
//! - `CorePlugins`: the headless core (the SAB and the pulse); runs anywhere, no window or GPU.
//! - `render::VisualPlugins` (feature `render`): the window and what is drawn in it.
//! - `cli`, `bench` and `inspect` assemble these into the `inos` command.

pub mod bench;
pub mod cli;
pub mod headless;
pub mod inspect;
pub mod pulse;
#[cfg(feature = "render")]
pub mod render;
pub mod sab;
pub mod supervisors;
pub mod timing;
pub mod units;

use bevy::app::{PluginGroup, PluginGroupBuilder};

use crate::pulse::PulsePlugin;
use crate::sab::{SabLayout, SabPlugin};
use crate::supervisors::DiscoveryPlugin;
use crate::units::boids::{BoidsPlugin, FlockParams};
use crate::units::matrices::MatricesPlugin;

/// The headless core of INOS: the SAB resource, the pulse that drives everything else, and the
/// supervisors' discovery of registered units.
pub struct CorePlugins {
    pub layout: SabLayout,
    /// Pulse rate in Hz (the fixed timestep).
    pub pulse_hz: f64,
}

impl PluginGroup for CorePlugins {
    fn build(self) -> PluginGroupBuilder {
        PluginGroupBuilder::start::<Self>()
            .add(SabPlugin { layout: self.layout })
            .add(PulsePlugin { hz: self.pulse_hz })
            .add(DiscoveryPlugin)
    }
}

/// The flock: the boids unit and the matrix unit, stepping on the pulse.
pub struct FlockPlugins {
    pub birds: usize,
    pub params: FlockParams,
}

impl PluginGroup for FlockPlugins {
    fn build(self) -> PluginGroupBuilder {
        PluginGroupBuilder::start::<Self>()
            .add(BoidsPlugin {
                birds: self.birds,
                params: self.params,
            })
            .add(MatricesPlugin)
    }
}
