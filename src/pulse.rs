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

/// Pausing and single-stepping: while paused, a fixed tick emits a pulse only if a step is
/// pending, so everything gated on the pulse (and on what the pulse causes) stands still.
#[derive(Resource, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PulseControl {
    pub paused: bool,
    /// Pulses still to emit while paused.
    pub pending_steps: u32,
}

impl Plugin for PulsePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Time::<Fixed>::from_hz(self.hz))
            .init_resource::<PulseControl>()
            .add_systems(FixedUpdate, emit_pulse.in_set(PulseSystems));
    }
}

fn emit_pulse(sab: Res<Sab>, mut control: ResMut<PulseControl>) {
    if control.paused {
        if control.pending_steps == 0 {
            return;
        }
        control.pending_steps -= 1;
    } else if control.pending_steps != 0 {
        // Steps asked for while paused do not carry over into the next pause.
        control.pending_steps = 0;
    }
    sab.epochs().signal(EpochIndex::SYSTEM_PULSE);
}
