//! The boids supervisor's genetic algorithm (reference §4.10), every `every` bird epochs (180 by
//! default, about 3 s at the pulse; 0 turns it off).
//!
//! Each generation reads the flock from the bird stream, sorts it by fitness, keeps the top 25 %
//! (at least 2) as elites in slots 0..k, breeds the rest (parents: 30 % of the time, when there are
//! more than 20 survivors, uniformly from the top 10 %; otherwise a tournament of 3; uniform
//! crossover taking each gene from the first parent with probability 0.7; mutation: 10 % chaos,
//! all genes uniform in ±10; else 15 % focus, one gene uniform in ±8; else Gaussian σ 0.8 on each
//! gene with probability 0.6, clamped to ±10), and publishes the generation as 188-byte gene
//! records in the gene buffer. The boids unit merges them before its next step.
//!
//! The random numbers come from a SplitMix64 seeded by `--seed`, so a run is reproducible.

use bevy::prelude::*;
use serde::Serialize;

use crate::sab::genes::{GeneRecord, SplitMix64, breed, elite_count};
use crate::sab::{BirdRecord, EpochIndex, Owner, Sab, StreamId, epoch_changed};

/// One generation's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GenerationStats {
    pub generation: u32,
    /// Mean and best fitness of the population that was bred from.
    pub mean_fitness: f32,
    pub best_fitness: f32,
    pub elites: usize,
    pub micros: f32,
}

/// The supervisor's state between generations. Its progress (random state, bird epochs since
/// the last generation, generation count and figures) is also in the SAB's flock state
/// (`sab::flock_state`), which it carries on from after a resume and where the inspector reads it.
#[derive(Resource)]
pub struct Evolution {
    pub every: u32,
    rng: SplitMix64,
    bird_epochs: u32,
    birds: Vec<BirdRecord>,
    records: Vec<GeneRecord>,
    /// Generations bred since the last restart.
    generations: u32,
    /// The newest [`HISTORY`] generations' figures (of this process), oldest first.
    pub history: Vec<GenerationStats>,
    /// The hosts' evolution-restart requests acted on (a sequence number).
    restarts_seen: u32,
}

/// Generations whose figures are kept (about 50 minutes at the default cadence); older ones are
/// dropped, so a run of any length holds a fixed amount of memory.
pub const HISTORY: usize = 1024;

impl Evolution {
    /// Starts over with a new seed: the next generation is bred `every` bird epochs from now,
    /// and the history is cleared.
    fn restart(&mut self, sab: &Sab, seed: u64) {
        self.rng = SplitMix64::new(seed);
        self.bird_epochs = 0;
        self.generations = 0;
        self.history.clear();
        sab.flock_state().clear_evolution(self.rng.state());
    }

    /// Generations bred since the last restart.
    pub fn generation(&self) -> u32 {
        self.generations
    }
}

/// Runs the GA every `every` bird epochs.
pub struct EvolutionPlugin {
    pub seed: u64,
    pub every: u32,
}

/// After the flock stages of the same tick.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct EvolutionSystems;

impl Plugin for EvolutionPlugin {
    fn build(&self, app: &mut App) {
        let sab = app.world().resource::<Sab>();
        let capacity = sab.stream(StreamId::Birds).capacity();
        let state = sab.flock_state();
        // A resumed SAB's evolution carries on; a new one starts from the seed.
        let (rng, bird_epochs) = state.evolution_progress().unwrap_or((self.seed, 0));
        app.insert_resource(Evolution {
            every: self.every,
            rng: SplitMix64::new(rng),
            bird_epochs,
            birds: vec![bytemuck::Zeroable::zeroed(); capacity],
            records: Vec::with_capacity(capacity),
            generations: state.evolution().0,
            history: Vec::new(),
            restarts_seen: state.control().evolution_restart,
        })
        .add_systems(
            FixedUpdate,
            (
                restart_on_request.run_if(epoch_changed(EpochIndex::SENSOR)),
                evolve.run_if(epoch_changed(EpochIndex::BIRD)),
            )
                .chain()
                .in_set(EvolutionSystems),
        );
    }
}

/// A host asked for a restart (`sab::flock_state`): start over with its seed.
fn restart_on_request(sab: Res<Sab>, mut evolution: ResMut<Evolution>) {
    let asked = sab.flock_state().control();
    if asked.evolution_restart != evolution.restarts_seen {
        evolution.restarts_seen = asked.evolution_restart;
        evolution.restart(&sab, asked.evolution_seed);
    }
}

fn evolve(sab: Res<Sab>, mut evolution: ResMut<Evolution>) {
    let ev = &mut *evolution;
    ev.bird_epochs += 1;
    if ev.every == 0 || !ev.bird_epochs.is_multiple_of(ev.every) {
        sab.flock_state().record_progress(ev.rng.state(), ev.bird_epochs, None);
        return;
    }
    let _span = info_span!("evolution").entered();
    let start = bevy::platform::time::Instant::now();
    let count = match sab.stream(StreamId::Birds).read_into(&mut ev.birds) {
        Ok(read) if read.count >= 2 => read.count,
        Ok(_) => return,
        Err(e) => {
            error!("the boids supervisor could not read the flock: {e}");
            return;
        }
    };
    let population = &ev.birds[..count];
    let mean = population.iter().map(|b| b.fitness).sum::<f32>() / count as f32;
    let best = population.iter().map(|b| b.fitness).fold(0.0, f32::max);
    let genomes = breed(population, &mut ev.rng);
    ev.records.clear();
    ev.records
        .extend(genomes.iter().enumerate().map(|(i, genes)| GeneRecord {
            bird_id: i as u32,
            fitness: 0.0,
            genes: *genes,
        }));
    if let Err(e) = sab.genes().publish(&ev.records, Owner::Kernel) {
        error!("the gene buffer refused a generation: {e}");
        return;
    }
    ev.generations += 1;
    let stats = GenerationStats {
        generation: ev.generations,
        mean_fitness: mean,
        best_fitness: best,
        elites: elite_count(count),
        micros: start.elapsed().as_secs_f32() * 1e6,
    };
    debug!(
        "generation {}: mean fitness {:.4}, best {:.4}",
        stats.generation, mean, best
    );
    if ev.history.len() == HISTORY {
        ev.history.remove(0);
    }
    ev.history.push(stats);
    sab.flock_state()
        .record_progress(ev.rng.state(), ev.bird_epochs, Some((ev.generations, mean, best)));
}
