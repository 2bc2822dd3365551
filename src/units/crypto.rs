//! The crypto unit: BLAKE3 over a job's input, inline or a range of the arena's data pages.
//!
//! Methods:
//! - `hash`: the 32-byte BLAKE3 digest;
//! - `keyed_hash`: the keyed digest (`CryptoParams.key`, exactly 32 bytes);
//! - `verify`: compares the digest (keyed if a key is given) with `CryptoParams.expected` in
//!   constant time; the output is one byte, 1 for a match and 0 otherwise.
//!
//! Bad input (an unknown method, a key or expected digest of the wrong size, a range outside the
//! arena's data pages) gives `InvalidParams` with the reason; the SAB is only read.

use bevy::platform::time::Instant;

use crate::protocol::{Job, JobOutcome, JobParams, JobStatus, Payload};
use crate::sab::{ModuleSpec, Sab};
use crate::units::RegisterUnitExt;

/// Registers the unit and its job entry point with the job host.
pub struct CryptoPlugin;

impl bevy::prelude::Plugin for CryptoPlugin {
    fn build(&self, app: &mut bevy::prelude::App) {
        app.register_job_unit(spec(), execute);
    }
}

pub fn spec() -> ModuleSpec {
    ModuleSpec::cpu_unit("crypto", 4, &["crypto:hash", "crypto:keyed_hash", "crypto:verify"])
}

/// Runs one crypto job.
pub fn execute(sab: &Sab, job: &Job) -> JobOutcome {
    let start = Instant::now();
    let result = job
        .input
        .bytes(sab)
        .map_err(|e| e.to_string())
        .and_then(|input| run(job, &input).map(|out| (input.len(), out)));
    let mut outcome = match result {
        Ok((input_len, output)) => {
            let mut o = JobOutcome::new(job.id, JobStatus::Success, Payload::Inline(output));
            o.input_bytes = input_len as u64;
            o
        }
        Err(reason) => JobOutcome::failed(job.id, JobStatus::InvalidParams, reason),
    };
    if let Payload::Inline(out) = &outcome.output {
        outcome.output_bytes = out.len() as u64;
    }
    outcome.execution_time_ns = start.elapsed().as_nanos() as u64;
    outcome
}

fn key(params: &JobParams) -> Result<Option<[u8; 32]>, String> {
    match params {
        JobParams::Crypto { key, .. } if key.is_empty() => Ok(None),
        JobParams::Crypto { key, .. } => key
            .as_slice()
            .try_into()
            .map(Some)
            .map_err(|_| format!("a BLAKE3 key is 32 bytes, not {}", key.len())),
        _ => Ok(None),
    }
}

fn run(job: &Job, input: &[u8]) -> Result<Vec<u8>, String> {
    let digest = |key: Option<[u8; 32]>| match key {
        Some(k) => blake3::keyed_hash(&k, input),
        None => blake3::hash(input),
    };
    match job.method.as_str() {
        "hash" => Ok(digest(None).as_bytes().to_vec()),
        "keyed_hash" => match key(&job.params)? {
            Some(k) => Ok(digest(Some(k)).as_bytes().to_vec()),
            None => Err("keyed_hash needs a 32-byte key in the crypto parameters".into()),
        },
        "verify" => {
            let JobParams::Crypto { expected, .. } = &job.params else {
                return Err("verify needs the expected digest in the crypto parameters".into());
            };
            let expected: [u8; 32] = expected
                .as_slice()
                .try_into()
                .map_err(|_| format!("an expected BLAKE3 digest is 32 bytes, not {}", expected.len()))?;
            // `blake3::Hash` compares in constant time.
            Ok(vec![u8::from(
                digest(key(&job.params)?) == blake3::Hash::from_bytes(expected),
            )])
        }
        other => Err(format!(
            "the crypto unit has no method {other:?} (hash, keyed_hash, verify)"
        )),
    }
}
