//! Per-module heartbeat slots in the diagnostics region: for each registry slot, the pulse the
//! module last ran on and how many times it has beaten. A unit beats from its own systems each time
//! it really runs; its supervisor compares the last pulse with the current one, so a paused pulse
//! never makes a unit look hung.
//!
//! Each slot has one writer (its unit). The two words are written last-pulse first and read
//! beat-count first, each monotonic, so a reader that races a beat sees either the old or the new
//! beat and never a pulse older than the count it read implies.

use std::sync::atomic::Ordering;

use super::generated as g;
use super::layout::regions;
use super::{AccessError, Sab};

/// The capability of a unit that beats its heartbeat on every pulse it runs. A unit driven by
/// another epoch (the matrices unit runs on the bird epoch) does not promise it, since it is idle
/// whenever its input is.
pub const PULSE_HEARTBEAT: &str = "heartbeat:pulse";

/// Slots in the region: one per registry slot.
pub const HEARTBEAT_SLOTS: usize = (g::DIAGNOSTICS_SIZE / g::HEARTBEAT_SLOT_SIZE) as usize;

/// One module's heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// The `SYSTEM_PULSE` value of the last beat.
    pub last_pulse: u32,
    /// Beats so far (0: the module has never beaten).
    pub beats: u32,
}

/// The heartbeat slots of one SAB.
pub struct Heartbeats<'a> {
    sab: &'a Sab,
}

impl<'a> Heartbeats<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    fn words(&self, slot: usize) -> Result<&'a [std::sync::atomic::AtomicU32], AccessError> {
        let len = g::HEARTBEAT_SLOT_SIZE as usize;
        let offset = regions::DIAGNOSTICS.offset + slot * len;
        if slot >= HEARTBEAT_SLOTS {
            // Inside the SAB, but past the region: another region's bytes.
            return Err(AccessError::OutOfBounds {
                offset,
                len,
                sab_len: regions::DIAGNOSTICS.offset + regions::DIAGNOSTICS.size,
            });
        }
        self.sab.memory().u32_words(offset, 2)
    }

    /// Records a beat of the module in registry slot `slot` on pulse `pulse`.
    pub fn beat(&self, slot: usize, pulse: u32) -> Result<(), AccessError> {
        let words = self.words(slot)?;
        words[0].store(pulse, Ordering::Relaxed);
        words[1].fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The heartbeat of the module in registry slot `slot`.
    pub fn read(&self, slot: usize) -> Result<Heartbeat, AccessError> {
        let words = self.words(slot)?;
        let beats = words[1].load(Ordering::Acquire);
        Ok(Heartbeat {
            last_pulse: words[0].load(Ordering::Relaxed),
            beats,
        })
    }

    /// Beats the heartbeat of registered module `unit` on the current pulse (a unit calls this
    /// each time it really runs). Does nothing for a module that is not registered.
    pub fn beat_unit(&self, unit: &str) {
        if let Some((slot, _)) = self.sab.registry().lookup(unit) {
            let pulse = self.sab.epochs().load(super::EpochIndex::SYSTEM_PULSE);
            let _ = self.beat(slot, pulse);
        }
    }

    /// Clears the slot (a module registered into a slot starts without beats).
    pub fn clear(&self, slot: usize) -> Result<(), AccessError> {
        let words = self.words(slot)?;
        words[1].store(0, Ordering::Release);
        words[0].store(0, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sab::Tier;

    #[test]
    fn beats_are_counted_per_slot_and_bounds_are_checked() {
        let sab = Sab::for_tier(Tier::Light);
        let beats = sab.heartbeats();
        assert_eq!(HEARTBEAT_SLOTS, 256);
        beats.beat(3, 10).unwrap();
        beats.beat(3, 12).unwrap();
        assert_eq!(
            beats.read(3).unwrap(),
            Heartbeat {
                last_pulse: 12,
                beats: 2
            }
        );
        assert_eq!(beats.read(4).unwrap(), Heartbeat::default());
        assert!(beats.beat(HEARTBEAT_SLOTS, 1).is_err());
        beats.clear(3).unwrap();
        assert_eq!(beats.read(3).unwrap(), Heartbeat::default());
    }
}
