//! The echo unit: returns its job's input unchanged (inline or read from the arena's data pages), for
//! measuring the job pipeline itself.

use crate::protocol::{Job, JobOutcome, JobStatus, Payload};
use crate::sab::{ModuleSpec, Sab};
use crate::units::RegisterUnitExt;

/// Registers the unit and its job entry point with the job host.
pub struct EchoPlugin;

impl bevy::prelude::Plugin for EchoPlugin {
    fn build(&self, app: &mut bevy::prelude::App) {
        app.register_job_unit(spec(), execute);
    }
}

pub fn spec() -> ModuleSpec {
    ModuleSpec::cpu_unit("echo", 1, &["echo:echo"])
}

/// Runs one echo job: the output is the input's bytes.
pub fn execute(sab: &Sab, job: &Job) -> JobOutcome {
    match job.input.bytes(sab) {
        Ok(bytes) => {
            let len = bytes.len() as u64;
            let mut outcome = JobOutcome::new(job.id, JobStatus::Success, Payload::Inline(bytes));
            (outcome.input_bytes, outcome.output_bytes) = (len, len);
            outcome
        }
        Err(e) => JobOutcome::failed(job.id, JobStatus::InvalidParams, e.to_string()),
    }
}
