//! The unit's `evolve_batch` job: one generation of the genetic algorithm over a batch of gene
//! records.

use crate::sab::genes::{GENE_LIMIT, GeneRecord};
use crate::sab::genes::{SplitMix64, breed};
use crate::sab::{BirdRecord, Sab};

/// The most gene records one `evolve_batch` job may carry.
pub const MAX_BATCH: usize = 100_000;

/// The `evolve_batch` job: one generation of the genetic algorithm (reference §4.10, the same as
/// the boids supervisor's) over a batch of 188-byte gene records (u32 id, f64 fitness, 44 × f32
/// genes; inline or a SAB range). The output is one record per input record, in the input's
/// order of ids: the elites' genes first, then the children's, fitness 0 (not yet evaluated).
/// The seed is the 8-byte little-endian `Binary` parameter, or the job id.
pub fn evolve_batch(sab: &Sab, job: &crate::protocol::Job) -> crate::protocol::JobOutcome {
    use crate::protocol::{JobOutcome, JobParams, JobStatus, Payload};
    let invalid = |reason: String| JobOutcome::failed(job.id, JobStatus::InvalidParams, reason);
    if job.method != "evolve_batch" {
        return invalid(format!("boids takes evolve_batch jobs, not {:?}", job.method));
    }
    let bytes = match job.input.bytes(sab) {
        Ok(bytes) => bytes,
        Err(e) => return invalid(e.to_string()),
    };
    let size = size_of::<GeneRecord>();
    let n = bytes.len() / size;
    if !bytes.len().is_multiple_of(size) || !(2..=MAX_BATCH).contains(&n) {
        return invalid(format!(
            "the input is {} bytes: 2 to {MAX_BATCH} gene records of {size} bytes expected",
            bytes.len()
        ));
    }
    // Packed records (alignment 1): the bytes are the records.
    let records: &[GeneRecord] = bytemuck::cast_slice(&bytes);
    if let Some(i) = records.iter().position(|r| !r.is_valid()) {
        return invalid(format!(
            "gene record {i} holds a gene outside ±{GENE_LIMIT} or a value that is not finite"
        ));
    }
    let seed = match &job.params {
        JobParams::Binary(b) if b.len() == 8 => u64::from_le_bytes(b[..].try_into().expect("8 bytes")),
        JobParams::None => job.id,
        other => return invalid(format!("the seed is an 8-byte Binary parameter, not {other:?}")),
    };
    let population: Vec<BirdRecord> = records
        .iter()
        .map(|r| BirdRecord {
            fitness: r.fitness as f32,
            genes: r.genes,
            ..bytemuck::Zeroable::zeroed()
        })
        .collect();
    let next = breed(&population, &mut SplitMix64::new(seed));
    let next: Vec<GeneRecord> = records
        .iter()
        .zip(next)
        .map(|(r, genes)| GeneRecord {
            bird_id: r.bird_id,
            fitness: 0.0,
            genes,
        })
        .collect();
    let output = bytemuck::cast_slice(&next).to_vec();
    let mut outcome = JobOutcome::new(job.id, JobStatus::Success, Payload::Inline(output));
    (outcome.input_bytes, outcome.output_bytes) = (bytes.len() as u64, bytes.len() as u64);
    outcome
}
