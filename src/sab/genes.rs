//! The gene buffer: one 188-byte gene record per bird (reference §2.14: u32 bird id, f64 fitness,
//! 44 × f32 genes), sized by the tier. The boids supervisor writes a GA generation here under the
//! gene-buffer guard and signals `EpochIndex::EVOLUTION`; the boids unit reads it consistently and
//! merges the genes into its live flock before its next step, so evolution takes effect (in the
//! original it never did).
//!
//! The GA's breeding (reference §4.10) and its random numbers are here too, below the parts that
//! use them: the boids supervisor breeds generations, the boids unit's `evolve` job breeds a batch
//! it is sent, and the optimisation engine draws from the same generator.

use super::generated as g;
use super::guard::{GuardError, GuardRegion, Owner};
use super::{BirdRecord, EpochIndex, Sab};

/// One gene record, byte for byte (its f64 is unaligned, hence `packed`; read fields by value).
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, packed)]
pub struct GeneRecord {
    pub bird_id: u32,
    pub fitness: f64,
    pub genes: [f32; 44],
}
const _: () = assert!(size_of::<GeneRecord>() == g::GENE_RECORD_SIZE as usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GeneError {
    #[error("{count} gene records exceed the gene buffer's {capacity}")]
    TooMany { count: usize, capacity: usize },
    #[error("the gene buffer kept changing while it was read")]
    Contended,
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error(
        "gene record {index} is not a generation's: a gene outside ±{GENE_LIMIT} or not a number, or a fitness that is not finite"
    )]
    Invalid { index: usize },
}

/// The bound the GA keeps every gene within.
pub const GENE_LIMIT: f32 = 10.0;

impl GeneRecord {
    /// Whether the record could come from the GA: every gene a number within ±[`GENE_LIMIT`] and a
    /// finite fitness. Bytes from elsewhere (a snapshot, a buggy writer) are checked with it
    /// before they reach the flock, where one NaN would spread to every neighbour.
    pub fn is_valid(&self) -> bool {
        let (genes, fitness) = (self.genes, self.fitness);
        fitness.is_finite() && genes.iter().all(|g| g.abs() <= GENE_LIMIT)
    }
}

/// The gene buffer of one SAB.
pub struct GeneBuffer<'a> {
    sab: &'a Sab,
}

impl<'a> GeneBuffer<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    pub fn capacity(&self) -> usize {
        self.sab.layout().spec().max_birds as usize
    }

    /// Writes a generation's records (record k at slot k) and signals the evolution epoch.
    pub fn publish(&self, records: &[GeneRecord], owner: Owner) -> Result<u32, GeneError> {
        if records.len() > self.capacity() {
            return Err(GeneError::TooMany {
                count: records.len(),
                capacity: self.capacity(),
            });
        }
        let mut session = self.sab.guards().begin(GuardRegion::GeneBuffer, owner)?;
        self.sab
            .write(self.sab.layout().spec().gene_buffer.offset, records)
            .expect("the gene buffer holds the tier's maximum bird count");
        let generation = self.sab.epochs().signal(EpochIndex::EVOLUTION);
        session.check_advanced()?;
        Ok(generation)
    }

    /// A consistent copy of the first `out.len()` records.
    pub fn read_into(&self, out: &mut [GeneRecord]) -> Result<(), GeneError> {
        if out.len() > self.capacity() {
            return Err(GeneError::TooMany {
                count: out.len(),
                capacity: self.capacity(),
            });
        }
        let offset = self.sab.layout().spec().gene_buffer.offset;
        self.sab
            .guards()
            .read_consistent(GuardRegion::GeneBuffer, 1024, || {
                self.sab
                    .read_into(offset, out)
                    .expect("the gene buffer holds the tier's maximum bird count")
            })
            .ok_or(GeneError::Contended)
    }
}

/// SplitMix64: small, fast and good enough for a GA; reproducible from its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The generator's state (to save it and carry on with [`SplitMix64::new`]).
    pub fn state(&self) -> u64 {
        self.0
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
