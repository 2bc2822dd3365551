//! The system pulse: a fixed-rate tick (Bevy's `FixedUpdate`) that bumps `SYSTEM_PULSE`. Every
//! unit that runs "once per tick" is gated on this epoch.

use bevy::prelude::*;

use crate::sab::{EpochIndex, Sab};

/// The pulse rate of the original's visible tab is 60 Hz; Bevy's fixed default is 64 Hz.
pub const DEFAULT_PULSE_HZ: f64 = 64.0;

/// Ticks the pulse epoch once per fixed step at `hz`.
pub struct PulsePlugin {
    pub hz: f64,
}

/// The pulse's place in `FixedUpdate`: everything gated on the pulse runs after it.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct PulseSystems;

impl Plugin for PulsePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Time::<Fixed>::from_hz(self.hz))
            .add_systems(FixedUpdate, emit_pulse.in_set(PulseSystems));
    }
}

fn emit_pulse(sab: Res<Sab>) {
    sab.epochs().signal(EpochIndex::SYSTEM_PULSE);
}
