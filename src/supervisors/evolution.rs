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

use crate::sab::genes::GeneRecord;
use crate::sab::{BirdRecord, EpochIndex, Owner, Sab, StreamId, epoch_changed};

/// SplitMix64: small, fast and good enough for a GA; reproducible from its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn gaussian(&mut self) -> f32 {
        let u1 = self.unit().max(f32::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

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

/// How many of `n` birds are kept as elites: the top 25 %, at least 2.
pub fn elite_count(n: usize) -> usize {
    (n / 4).max(2).min(n)
}

/// Breeds the next generation's genomes from `population` (any order).
pub fn breed(population: &[BirdRecord], rng: &mut SplitMix64) -> Vec<[f32; 44]> {
    let mut ranked: Vec<&BirdRecord> = population.iter().collect();
    ranked.sort_by(|a, b| b.fitness.total_cmp(&a.fitness));
    let n = ranked.len();
    let elites = elite_count(n);
    let mut next: Vec<[f32; 44]> = ranked[..elites].iter().map(|b| b.genes).collect();
    let survivors = &ranked[..elites];
    let top = (survivors.len() / 10).max(1);
    let pick = |rng: &mut SplitMix64| -> &BirdRecord {
        if survivors.len() > 20 && rng.unit() < 0.3 {
            survivors[rng.below(top)]
        } else {
            (0..3)
                .map(|_| survivors[rng.below(survivors.len())])
                .max_by(|a, b| a.fitness.total_cmp(&b.fitness))
                .expect("a tournament has entrants")
        }
    };
    while next.len() < n {
        let (a, b) = (pick(rng).genes, pick(rng).genes);
        let mut child: [f32; 44] = std::array::from_fn(|g| if rng.unit() < 0.7 { a[g] } else { b[g] });
        let roll = rng.unit();
        if roll < 0.10 {
            child.iter_mut().for_each(|g| *g = rng.range(-10.0, 10.0));
        } else if roll < 0.10 + 0.90 * 0.15 {
            let g = rng.below(44);
            child[g] = rng.range(-8.0, 8.0);
        } else {
            for g in &mut child {
                if rng.unit() < 0.6 {
                    *g = (*g + 0.8 * rng.gaussian()).clamp(-10.0, 10.0);
                }
            }
        }
        next.push(child);
    }
    next
}

/// The supervisor's state between generations.
#[derive(Resource)]
pub struct Evolution {
    pub every: u32,
    rng: SplitMix64,
    bird_epochs: u32,
    birds: Vec<BirdRecord>,
    records: Vec<GeneRecord>,
    /// Generations bred since the last restart.
    generations: u32,
    /// The newest [`HISTORY`] generations' figures, oldest first.
    pub history: Vec<GenerationStats>,
}

/// Generations whose figures are kept (about 50 minutes at the default cadence); older ones are
/// dropped, so a run of any length holds a fixed amount of memory.
pub const HISTORY: usize = 1024;

impl Evolution {
    /// Starts over with a new seed: the next generation is bred `every` bird epochs from now,
    /// and the history is cleared.
    pub fn restart(&mut self, seed: u64) {
        self.rng = SplitMix64::new(seed);
        self.bird_epochs = 0;
        self.generations = 0;
        self.history.clear();
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
        let capacity = app.world().resource::<Sab>().stream(StreamId::Birds).capacity();
        app.insert_resource(Evolution {
            every: self.every,
            rng: SplitMix64::new(self.seed),
            bird_epochs: 0,
            birds: vec![bytemuck::Zeroable::zeroed(); capacity],
            records: Vec::with_capacity(capacity),
            generations: 0,
            history: Vec::new(),
        })
        .add_systems(
            FixedUpdate,
            evolve.in_set(EvolutionSystems).run_if(epoch_changed(EpochIndex::BIRD)),
        );
    }
}

fn evolve(sab: Res<Sab>, mut evolution: ResMut<Evolution>) {
    let ev = &mut *evolution;
    ev.bird_epochs += 1;
    if ev.every == 0 || !ev.bird_epochs.is_multiple_of(ev.every) {
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
}
