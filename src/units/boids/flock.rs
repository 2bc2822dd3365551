//! The [`Flock`] resource and its step (Jacobi or faithful), and the checks a flock's records
//! and bird count pass before they become the flock (also when loaded from a snapshot).

use bevy::math::Vec3;
use bevy::prelude::Resource;

use super::grid::{Grid, Group, NeighbourSums, StagedBirds};
use super::step::{BirdPhases, StepClock, forces, initial_population, steer, step_into};
use super::{FlockParams, World};
use crate::sab::genes::{GeneError, GeneRecord};
use crate::sab::{BirdRecord, ObstacleRecord, Sab, SabLayout, StreamId};
use crate::units::run_scoped;

/// The flock: its state between steps, and the buffers a step reuses.
#[derive(Resource)]
pub struct Flock {
    pub params: FlockParams,
    pub world: World,
    /// The state as last published (read-only outside: the step keeps two buffers in step).
    birds: Vec<BirdRecord>,
    next: Vec<BirdRecord>,
    /// Private trick intensities (reference §4.5: not in the SAB).
    pub intensity: Vec<f32>,
    /// Each bird's [`BirdPhases`], by index.
    phases: Vec<BirdPhases>,
    grid: Grid,
    /// The Jacobi step's neighbour sums, by slot.
    sums: Vec<NeighbourSums>,
    /// Each worker thread's list of groups.
    workers: Vec<Vec<Group>>,
    /// The grid's input for the next step (each bird's cell, position and velocity), written by
    /// a Jacobi step with its birds; `staged_ready` until the birds change otherwise.
    next_staged: StagedBirds,
    staged_ready: bool,
    /// Faithful mode's candidate list, reused.
    candidates: Vec<usize>,
    genes: Vec<GeneRecord>,
    /// Jacobi steps still to copy the genes into their output buffer: 2 after new genes (one
    /// per buffer), so steady steps write only what moves.
    stale_genes: u8,
    pub t: f32,
    pub steps: u32,
}

impl Flock {
    /// The reference's initial population of `count` birds.
    pub fn new(count: usize, params: FlockParams) -> Self {
        Self::from_records(initial_population(count), params)
    }

    /// A flock that continues from `birds` (for example a snapshot's bird stream).
    pub fn from_records(birds: Vec<BirdRecord>, params: FlockParams) -> Self {
        let count = birds.len();
        Self {
            world: World::new(count, params.world_scale),
            params,
            birds,
            next: Vec::with_capacity(count),
            intensity: vec![0.0; count],
            phases: (0..count).map(BirdPhases::of).collect(),
            grid: Grid::default(),
            sums: Vec::new(),
            workers: Vec::new(),
            next_staged: Default::default(),
            staged_ready: false,
            candidates: Vec::new(),
            genes: Vec::new(),
            stale_genes: 2,
            t: 0.0,
            steps: 0,
        }
    }

    /// One physics step of `dt` seconds among `obstacles`.
    pub fn step(&mut self, dt: f32, obstacles: &[ObstacleRecord]) {
        self.t += dt;
        let clock = StepClock::new(self.t, dt, self.steps);
        self.steps += 1;
        let threads = self.params.threads.clamp(1, 64);
        if std::mem::take(&mut self.staged_ready) {
            std::mem::swap(&mut self.grid.cell_of_bird, &mut self.next_staged.0);
            std::mem::swap(&mut self.grid.staged, &mut self.next_staged.1);
            self.grid.sort(&self.world, threads);
        } else {
            self.grid.build_threads(&self.world, &self.birds, threads);
        }
        let (world, grid) = (&self.world, &self.grid);
        if self.params.faithful {
            // In place, in index order: later birds see earlier birds' new state.
            let candidates = &mut self.candidates;
            for i in 0..self.birds.len() {
                // The grid's candidates, but their current records (already moved if j < i).
                candidates.clear();
                grid.visit_near_indices(world, grid.cell_of_bird[i] as usize, |j| candidates.push(j));
                let mut f = forces(i, &self.birds, candidates.iter().copied(), world);
                let me = self.birds[i];
                f.avoidance = steer(obstacles, Vec3::from(me.position));
                step_into(
                    i,
                    &me,
                    &self.phases[i],
                    &f,
                    &mut self.intensity[i],
                    clock,
                    true,
                    false,
                    &mut self.birds[i],
                );
            }
            return;
        }
        let (birds, phases) = (&self.birds, &self.phases);
        // Every record is rewritten; its genes only while that buffer's are stale.
        self.next.resize(birds.len(), bytemuck::Zeroable::zeroed());
        let copy_genes = self.stale_genes > 0;
        self.stale_genes = self.stale_genes.saturating_sub(1);
        self.sums.resize(birds.len(), NeighbourSums::default());
        let threads = if birds.len() < 256 { 1 } else { threads };
        self.workers.resize_with(threads, Vec::new);
        let workers = &mut self.workers[..threads];
        let chunk = birds
            .len()
            .div_ceil(threads * self.params.chunks_per_thread.clamp(1, 256))
            .max(1);
        // The neighbour sums in slot order, cell by cell; then each bird's step in index order.
        run_queued(self.sums.chunks_mut(chunk).enumerate(), workers, |groups, (n, out)| {
            grid.sums_for_slots(world, n * chunk, out, groups);
        });
        let sums = &self.sums;
        let (cells, staged) = &mut self.next_staged;
        cells.resize(birds.len(), 0);
        staged.resize(birds.len(), Default::default());
        let items = self
            .next
            .chunks_mut(chunk)
            .zip(self.intensity.chunks_mut(chunk))
            .zip(cells.chunks_mut(chunk).zip(staged.chunks_mut(chunk)))
            .enumerate();
        run_queued(items, workers, |_, (n, ((out, intensity), (cells, staged)))| {
            let next = out.iter_mut().zip(intensity).zip(cells.iter_mut().zip(staged));
            for (i, ((slot, ease), (cell, staged))) in (n * chunk..).zip(next) {
                let me = &birds[i];
                let mut f = grid.finish(i, &sums[grid.slot_of_bird[i] as usize], world);
                f.avoidance = steer(obstacles, Vec3::from(me.position));
                step_into(i, me, &phases[i], &f, ease, clock, false, copy_genes, slot);
                *cell = world.cell_of(Vec3::from(slot.position)) as u32;
                *staged = [slot.position, slot.velocity];
            }
        });
        self.staged_ready = true;
        std::mem::swap(&mut self.birds, &mut self.next);
    }

    /// Takes the genes of the latest generation from the gene buffer (record k for bird k); the
    /// children start with fitness 0.
    pub fn merge_genes(&mut self, sab: &Sab) -> Result<(), GeneError> {
        let count = self.birds.len();
        self.genes.resize(count, bytemuck::Zeroable::zeroed());
        sab.genes().read_into(&mut self.genes)?;
        // All or nothing: a generation with one impossible record is not merged at all.
        if let Some(index) = self.genes.iter().position(|r| !r.is_valid()) {
            return Err(GeneError::Invalid { index });
        }
        self.stale_genes = 2;
        for record in &self.genes {
            if let Some(bird) = self.birds.get_mut(record.bird_id as usize) {
                bird.genes = record.genes;
                bird.fitness = record.fitness as f32;
            }
        }
        Ok(())
    }

    /// The state as last published.
    pub fn birds(&self) -> &[BirdRecord] {
        &self.birds
    }

    pub fn into_birds(self) -> Vec<BirdRecord> {
        self.birds
    }

    pub fn mean_fitness(&self) -> f32 {
        self.birds.iter().map(|b| b.fitness).sum::<f32>() / self.birds.len().max(1) as f32
    }

    pub fn best_fitness(&self) -> f32 {
        self.birds.iter().map(|b| b.fitness).fold(0.0, f32::max)
    }
}

/// Runs `work` on every item, on as many threads as there are `workers` (this one among them),
/// each taking items from a shared queue with its own worker state: more items than threads
/// balance the load.
fn run_queued<T: Send, W: Send>(items: impl Iterator<Item = T>, workers: &mut [W], work: impl Fn(&mut W, T) + Sync) {
    if let [worker] = workers {
        items.for_each(|item| work(worker, item));
        return;
    }
    let queue = crossbeam::queue::SegQueue::new();
    items.for_each(|item| queue.push(item));
    let (queue, work) = (&queue, &work);
    run_scoped(workers.iter_mut().map(|worker| {
        move || {
            while let Some(item) = queue.pop() {
                work(worker, item);
            }
        }
    }));
}

/// Why a flock cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlockError {
    #[error("{birds} birds exceed the {tier} tier's maximum of {max}; choose a larger --tier")]
    TooManyBirds { birds: usize, tier: String, max: u32 },
    #[error("bird {index} has a position, velocity or orientation that is not a finite number")]
    NotFinite { index: usize },
}

/// Checks records from outside (a snapshot) before they become the flock: one non-finite
/// coordinate would spread through every neighbour sum it takes part in.
pub fn check_records(birds: &[BirdRecord]) -> Result<(), FlockError> {
    match birds.iter().position(|b| {
        !b.position
            .iter()
            .chain(&b.velocity)
            .chain(&b.orientation)
            .all(|v| v.is_finite())
    }) {
        Some(index) => Err(FlockError::NotFinite { index }),
        None => Ok(()),
    }
}

/// Checks a bird count against a layout's tier.
pub fn check_capacity(layout: &SabLayout, birds: usize) -> Result<(), FlockError> {
    let spec = layout.spec();
    if birds > spec.max_birds as usize {
        return Err(FlockError::TooManyBirds {
            birds,
            tier: layout.tier.to_string(),
            max: spec.max_birds,
        });
    }
    Ok(())
}

/// Why a snapshot's birds cannot become the flock.
/// The birds `sab`'s bird stream publishes (none in a new SAB).
pub fn birds_in(sab: &Sab) -> Result<Vec<BirdRecord>, crate::sab::StreamError> {
    let stream = sab.stream(StreamId::Birds);
    let mut birds = vec![bytemuck::Zeroable::zeroed(); stream.capacity()];
    let read = stream.read_into(&mut birds)?;
    birds.truncate(read.count);
    Ok(birds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grid input a Jacobi step stages with its birds is exactly what staging the published
    /// birds gives; genes set before the first steps survive both ping-pong buffers.
    #[test]
    fn a_step_stages_the_next_grid_and_keeps_the_genes() {
        let mut birds = initial_population(3000);
        for (k, b) in birds.iter_mut().enumerate() {
            b.genes[5] = k as f32;
        }
        let mut flock = Flock::from_records(
            birds,
            FlockParams {
                threads: 2,
                ..FlockParams::default()
            },
        );
        for _ in 0..5 {
            flock.step(1.0 / 64.0, &[]);
            assert!(flock.staged_ready, "a Jacobi step stages");
            let (cells, staged) = &flock.next_staged;
            let mut grid = Grid::default();
            grid.build(&flock.world, flock.birds());
            assert!(cells == &grid.cell_of_bird && staged == &grid.staged);
            assert!(flock.birds().iter().enumerate().all(|(k, b)| b.genes[5] == k as f32));
        }
        flock.params.faithful = true;
        flock.step(1.0 / 64.0, &[]);
        assert!(!flock.staged_ready, "an in-place step stages nothing");
    }
}
