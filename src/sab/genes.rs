//! The gene buffer: one 188-byte gene record per bird (reference §2.14: u32 bird id, f64 fitness,
//! 44 × f32 genes), sized by the tier. The boids supervisor writes a GA generation here under the
//! gene-buffer guard and signals `EpochIndex::EVOLUTION`; the boids unit reads it consistently and
//! merges the genes into its live flock before its next step, so evolution takes effect (in the
//! original it never did).

use super::generated as g;
use super::guard::{GuardError, GuardRegion, Owner};
use super::{EpochIndex, Sab};

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
