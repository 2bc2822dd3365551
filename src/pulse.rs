//! The system pulse: a fixed-rate tick (Bevy's `FixedUpdate`) that bumps `SYSTEM_PULSE`. Every
//! unit that runs "once per tick" is gated on this epoch.

use bevy::prelude::*;

use crate::sab::{EpochIndex, Sab};

/// The pulse rate of the original's visible tab is 60 Hz; Bevy's fixed default is 64 Hz.
pub const DEFAULT_PULSE_HZ: f64 = 64.0;

/// The pulse rate while the page is hidden (`SYSTEM_VISIBILITY` = 0), as in the original.
pub const HIDDEN_PULSE_HZ: f64 = 30.0;

/// Ticks the pulse epoch once per fixed step at `hz`, or at most [`HIDDEN_PULSE_HZ`] while the
/// `SYSTEM_VISIBILITY` word says the page is hidden (the browser build's JS host writes it).
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

/// The pulse rate asked for on the command line, used while the page is visible.
#[derive(Resource, Debug, Clone, Copy, PartialEq)]
pub struct VisiblePulseHz(pub f64);

impl Plugin for PulsePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Time::<Fixed>::from_hz(self.hz))
            .insert_resource(VisiblePulseHz(self.hz))
            .init_resource::<PulseControl>()
            // Before the clocks advance, so that this frame's time already counts in the new step.
            .add_systems(
                First,
                follow_visibility
                    .before(bevy::time::TimeSystems)
                    .before(bevy::ecs::message::MessageUpdateSystems),
            )
            .add_systems(FixedUpdate, emit_pulse.in_set(PulseSystems));
    }
}

/// The pulse rate for a `SYSTEM_VISIBILITY` value: the visible rate, or at most 30 Hz when hidden.
pub fn pulse_hz(visible_hz: f64, visibility: u32) -> f64 {
    if visibility == 0 {
        visible_hz.min(HIDDEN_PULSE_HZ)
    } else {
        visible_hz
    }
}

/// Retimes the fixed step when the visibility word changes (before `FixedUpdate` runs).
fn follow_visibility(
    sab: Res<Sab>,
    visible_hz: Res<VisiblePulseHz>,
    mut time: ResMut<Time<Fixed>>,
    mut last: Local<Option<u32>>,
) {
    let visibility = sab.epochs().load(EpochIndex::SYSTEM_VISIBILITY);
    if *last != Some(visibility) {
        *last = Some(visibility);
        time.set_timestep_hz(pulse_hz(visible_hz.0, visibility));
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
