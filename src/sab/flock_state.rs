//! The flock's state (the schema's `birdState` region, reserved in v2.2; DEVIATION, layout 6): what
//! the boids unit simulates, what a host asks of it, and the evolution's figures, so that the
//! renderer, the inspector and the browser host see the flock and steer it through the SAB alone.
//!
//! - **Info** (the boids unit writes it whenever its flock changes): the world's bounds, the bird
//!   count and whether the faithful arithmetic is on.
//! - **Control** (a host writes it: the inspector, the browser): a respawn with a bird count, the
//!   faithful switch, an evolution restart with a seed. Each request writes its argument, then
//!   bumps its sequence number (release), then signals `EpochIndex::SENSOR` ("host input → units");
//!   the unit acts when a number it reads (acquire) has moved, so two clicks in one tick give the
//!   later request, never a torn one.
//! - **Evolution** (the boids supervisor writes it): generations since its last (re)start, the
//!   newest `EVOLUTION_HISTORY` generations' mean and best fitness, and what it needs to carry on
//!   after a resume (its random state, bird epochs since the last generation).
//!
//! Readers of the info and the evolution figures copy whole words; a copy taken mid-update may mix
//! two updates, which only a display reads.

use std::sync::atomic::{AtomicU32, Ordering};

use bevy::math::Vec3;
use serde::Serialize;

use super::Sab;
use super::epochs::EpochIndex;
use super::generated as g;
use super::layout::regions;

/// Generations whose figures the region keeps.
pub const EVOLUTION_HISTORY: usize = 256;

const INFO: usize = 0;
const CONTROL: usize = 0x40;
const EVOLUTION: usize = 0x80;
const _: () = assert!(EVOLUTION + size_of::<EvolutionRecord>() <= g::BIRD_STATE_SIZE as usize);

/// What the boids unit simulates.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct FlockInfo {
    /// Half extents of the world the birds fly in (m); zero before the unit has started.
    pub bounds: [f32; 3],
    pub birds: u32,
    /// 1 with the original's in-place arithmetic.
    pub faithful: u32,
    pub reserved: [u32; 3],
}

/// A host's requests to the flock (words: respawn sequence, respawn birds, faithful sequence,
/// faithful, evolution sequence, reserved, evolution seed low, high).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlockControl {
    pub respawn: u32,
    pub respawn_birds: u32,
    pub faithful_request: u32,
    pub faithful: bool,
    pub evolution_restart: u32,
    pub evolution_seed: u64,
}

const RESPAWN: usize = 0;
const RESPAWN_BIRDS: usize = 1;
const FAITHFUL_SEQ: usize = 2;
const FAITHFUL: usize = 3;
const EVOLUTION_SEQ: usize = 4;
const SEED_LOW: usize = 6;
const SEED_HIGH: usize = 7;

/// The evolution's figures.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct EvolutionRecord {
    generation: u32,
    /// Entries in `history` (at most `EVOLUTION_HISTORY`), and where the next goes.
    count: u32,
    next: u32,
    /// Bird epochs since the last generation, and the GA's random state: the supervisor carries on
    /// from them after a resume.
    bird_epochs: u32,
    rng: u64,
    /// 1 once the supervisor has written here.
    started: u32,
    reserved: u32,
    /// (mean, best) fitness per generation, a ring.
    history: [[f32; 2]; EVOLUTION_HISTORY],
}

/// The flock-state region of one SAB.
pub struct FlockState<'a> {
    sab: &'a Sab,
}

impl<'a> FlockState<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    fn at(&self, offset: usize) -> usize {
        regions::BIRD_STATE.offset + offset
    }

    fn control_words(&self) -> &'a [AtomicU32] {
        self.sab
            .memory()
            .u32_words(self.at(CONTROL), 8)
            .expect("the flock state lies inside every SAB")
    }

    pub fn info(&self) -> FlockInfo {
        self.sab
            .read(self.at(INFO))
            .expect("the flock state lies inside every SAB")
    }

    /// The boids unit's bounds, or `None` before it has started.
    pub fn bounds(&self) -> Option<Vec3> {
        let bounds = Vec3::from(self.info().bounds);
        (bounds.is_finite() && bounds.cmpgt(Vec3::ZERO).all()).then_some(bounds)
    }

    /// Written by the boids unit.
    pub fn publish_info(&self, info: &FlockInfo) {
        self.sab
            .write(self.at(INFO), std::slice::from_ref(info))
            .expect("the flock state lies inside every SAB");
    }

    /// The requests as they stand.
    pub fn control(&self) -> FlockControl {
        let w = self.control_words();
        // Sequence numbers first (acquire): the arguments read after them are at least as new.
        let (respawn, faithful_request, evolution_restart) = (
            w[RESPAWN].load(Ordering::Acquire),
            w[FAITHFUL_SEQ].load(Ordering::Acquire),
            w[EVOLUTION_SEQ].load(Ordering::Acquire),
        );
        FlockControl {
            respawn,
            respawn_birds: w[RESPAWN_BIRDS].load(Ordering::Relaxed),
            faithful_request,
            faithful: w[FAITHFUL].load(Ordering::Relaxed) != 0,
            evolution_restart,
            evolution_seed: u64::from(w[SEED_LOW].load(Ordering::Relaxed))
                | (u64::from(w[SEED_HIGH].load(Ordering::Relaxed)) << 32),
        }
    }

    fn request(&self, sequence: usize, arguments: &[(usize, u32)]) {
        let w = self.control_words();
        for &(word, value) in arguments {
            w[word].store(value, Ordering::Relaxed);
        }
        w[sequence].fetch_add(1, Ordering::Release);
        self.sab.epochs().signal(EpochIndex::SENSOR);
    }

    /// Asks the boids unit for a new start disk of `birds` birds.
    pub fn request_respawn(&self, birds: u32) {
        self.request(RESPAWN, &[(RESPAWN_BIRDS, birds)]);
    }

    /// Asks the boids unit to switch the faithful arithmetic on or off.
    pub fn request_faithful(&self, faithful: bool) {
        self.request(FAITHFUL_SEQ, &[(FAITHFUL, u32::from(faithful))]);
    }

    /// Asks the boids supervisor to start its evolution over with `seed`.
    pub fn request_evolution_restart(&self, seed: u64) {
        self.request(
            EVOLUTION_SEQ,
            &[(SEED_LOW, seed as u32), (SEED_HIGH, (seed >> 32) as u32)],
        );
    }

    fn evolution_record(&self) -> EvolutionRecord {
        self.sab
            .read(self.at(EVOLUTION))
            .expect("the flock state lies inside every SAB")
    }

    /// Generations since the evolution's last (re)start, and the newest generations' (mean, best)
    /// fitness, oldest first.
    pub fn evolution(&self) -> (u32, Vec<[f32; 2]>) {
        let r = self.evolution_record();
        let count = (r.count as usize).min(EVOLUTION_HISTORY);
        let start = (r.next as usize + EVOLUTION_HISTORY - count) % EVOLUTION_HISTORY;
        let history = (0..count).map(|k| r.history[(start + k) % EVOLUTION_HISTORY]).collect();
        (r.generation, history)
    }

    /// The supervisor's saved progress: (random state, bird epochs since the last generation), if
    /// a supervisor has written here.
    pub fn evolution_progress(&self) -> Option<(u64, u32)> {
        let r = self.evolution_record();
        (r.started != 0).then_some((r.rng, r.bird_epochs))
    }

    fn write_evolution(&self, r: &EvolutionRecord) {
        self.sab
            .write(self.at(EVOLUTION), std::slice::from_ref(r))
            .expect("the flock state lies inside every SAB");
    }

    /// Written by the boids supervisor on every bird epoch, and after generation `generation` with
    /// its figures (1 after a restart starts the history again).
    pub fn record_progress(&self, rng: u64, bird_epochs: u32, generation: Option<(u32, f32, f32)>) {
        let Some((generation, mean, best)) = generation else {
            // Only the progress words, which follow one another: bird epochs, rng, started.
            use std::mem::offset_of;
            const AT: usize = offset_of!(EvolutionRecord, bird_epochs);
            const _: () = assert!(offset_of!(EvolutionRecord, rng) == AT + 4);
            const _: () = assert!(offset_of!(EvolutionRecord, started) == AT + 12);
            let at = self.at(EVOLUTION) + AT;
            let words = [bird_epochs, rng as u32, (rng >> 32) as u32, 1];
            self.sab
                .write(at, &words)
                .expect("the flock state lies inside every SAB");
            return;
        };
        let mut r = self.evolution_record();
        if generation <= 1 {
            r = bytemuck::Zeroable::zeroed();
        }
        let next = (r.next as usize) % EVOLUTION_HISTORY;
        r.history[next] = [mean, best];
        r.next = ((next + 1) % EVOLUTION_HISTORY) as u32;
        r.count = (r.count + 1).min(EVOLUTION_HISTORY as u32);
        r.generation = generation;
        (r.rng, r.bird_epochs, r.started) = (rng, bird_epochs, 1);
        self.write_evolution(&r);
    }

    /// Written by the boids supervisor when it starts over.
    pub fn clear_evolution(&self, rng: u64) {
        let mut r: EvolutionRecord = bytemuck::Zeroable::zeroed();
        (r.rng, r.started) = (rng, 1);
        self.write_evolution(&r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sab::{SabLayout, Tier};

    #[test]
    fn requests_move_their_sequence_and_carry_their_argument() {
        let sab = Sab::new(SabLayout::for_tier(Tier::Light));
        let state = sab.flock_state();
        let before = state.control();
        let sensor = sab.epochs().load(EpochIndex::SENSOR);
        state.request_respawn(3000);
        state.request_faithful(true);
        state.request_evolution_restart(0x1_0000_0007);
        let after = state.control();
        assert_eq!(
            (after.respawn, after.faithful_request, after.evolution_restart),
            (
                before.respawn + 1,
                before.faithful_request + 1,
                before.evolution_restart + 1
            )
        );
        assert_eq!(
            (after.respawn_birds, after.faithful, after.evolution_seed),
            (3000, true, 0x1_0000_0007)
        );
        assert_eq!(sab.epochs().load(EpochIndex::SENSOR), sensor.wrapping_add(3));
    }

    #[test]
    fn the_evolution_history_keeps_the_newest_generations_in_order() {
        let sab = Sab::new(SabLayout::for_tier(Tier::Light));
        let state = sab.flock_state();
        assert_eq!(state.evolution(), (0, Vec::new()));
        let total = EVOLUTION_HISTORY as u32 + 10;
        for g in 1..=total {
            state.record_progress(u64::from(g), 0, Some((g, g as f32, 2.0 * g as f32)));
        }
        state.record_progress(99, 7, None);
        assert_eq!(state.evolution_progress(), Some((99, 7)));
        let (generation, history) = state.evolution();
        assert_eq!(generation, total);
        assert_eq!(history.len(), EVOLUTION_HISTORY);
        assert_eq!(history[0], [11.0, 22.0]);
        assert_eq!(history[EVOLUTION_HISTORY - 1], [total as f32, 2.0 * total as f32]);
        // A restart starts the history again.
        state.clear_evolution(5);
        assert_eq!(
            (state.evolution(), state.evolution_progress()),
            ((0, Vec::new()), Some((5, 0)))
        );
        state.record_progress(6, 0, Some((1, 5.0, 6.0)));
        assert_eq!(state.evolution(), (1, vec![[5.0, 6.0]]));
    }
}
