//! `inos submit`: a client outside the kernel. It attaches to a running kernel's SAB, takes a client
//! lane (`sab::clients`), sends jobs through it (files, or generated echo load) with at most
//! `--in-flight` unanswered, and reads the results from its lane: each file's result printed like
//! `b3sum` prints a hash, or the throughput of the load.

use std::path::PathBuf;

use clap::Args;

/// `inos submit`'s options.
#[derive(Args, Debug, Clone)]
pub struct SubmitArgs {
    /// Files to send, one job each, with --library and --method.
    #[arg(required_unless_present = "echo", requires_all = ["library", "method"])]
    pub files: Vec<PathBuf>,
    /// The unit that runs the files' jobs (e.g. crypto).
    #[arg(long)]
    pub library: Option<String>,
    /// The method of the unit (e.g. hash).
    #[arg(long)]
    pub method: Option<String>,
    /// Instead of files: send N echo jobs of 16 bytes and report the throughput.
    #[arg(long, value_name = "N", conflicts_with = "files", value_parser = clap::value_parser!(u64).range(1..))]
    pub echo: Option<u64>,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=16_384))]
    pub in_flight: u64,
    /// The running kernel's SAB (default: the only one in /dev/shm).
    #[arg(long, value_name = "PATH")]
    pub sab: Option<PathBuf>,
    /// Give up when the kernel answers nothing for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// Print a JSON report: jobs sent, answered, failed, throughput (and each file's result).
    #[arg(long)]
    pub json: bool,
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::run;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::io::IsTerminal;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use serde::Serialize;

    use super::SubmitArgs;
    use crate::RunError;
    use crate::protocol::{Job, JobOutcome, JobStatus, Payload};
    use crate::sab::clients::Client;
    use crate::sab::processes::Role;
    use crate::sab::{RingError, Sab, Wake};

    /// What `inos submit --json` prints.
    #[derive(Debug, Serialize)]
    pub struct SubmitReport {
        pub sab: PathBuf,
        pub lane: usize,
        pub sent: u64,
        pub answered: u64,
        pub failed: u64,
        /// Results for ids this client did not send, or sent once and got twice (always 0 unless
        /// something is wrong).
        pub unexpected: u64,
        pub seconds: f64,
        pub per_second: f64,
        /// Each file's result (files mode).
        pub results: Vec<FileResult>,
    }

    #[derive(Debug, Serialize)]
    pub struct FileResult {
        pub file: PathBuf,
        pub status: String,
        pub output_hex: String,
        pub error: String,
    }

    /// Spins before parking while waiting for results: a few microseconds, since the kernel usually
    /// answers within a tick.
    const WAIT_SPINS: u32 = 2048;

    /// How often the client marks itself alive in the process table, and looks whether the kernel
    /// still is, while it waits.
    const HEARTBEAT: Duration = Duration::from_millis(100);

    pub fn run(args: &SubmitArgs) -> Result<(), RunError> {
        let path = match &args.sab {
            Some(path) => path.clone(),
            None => crate::sab::shared::running(Path::new(crate::sab::shared::SHM_DIR))?,
        };
        let sab = Sab::attach(&path)?;
        sab.processes().check_kernel()?;
        let client = Client::connect(&sab)?;
        let process = sab
            .processes()
            .register(Role::Client, "inos submit", Some(client.lane()))?;
        let jobs = Jobs::new(args, client.max_frame())?;
        let outcome = exchange(&sab, &path, (&client, process), &jobs, args);
        sab.processes().unregister(process);
        drop(client);
        let report = outcome?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            for r in &report.results {
                if r.error.is_empty() {
                    println!("{}  {}", r.output_hex, r.file.display());
                } else {
                    eprintln!("{}: {}: {}", r.file.display(), r.status, r.error);
                }
            }
            eprintln!(
                "{} jobs sent, {} answered, {} failed in {:.3} s ({:.3} M jobs/s) through lane {} of {}",
                report.sent,
                report.answered,
                report.failed,
                report.seconds,
                report.per_second / 1e6,
                report.lane,
                path.display()
            );
        }
        if report.failed > 0 || report.answered < report.sent || report.unexpected > 0 {
            return Err(RunError::Usage(format!(
                "{} of {} jobs failed or went unanswered",
                report.sent - (report.answered - report.failed),
                report.sent
            )));
        }
        Ok(())
    }

    /// The jobs to send: one per file, or `n` echo jobs. Job `k` has id `k + 1`.
    enum Jobs {
        Files { paths: Vec<PathBuf>, jobs: Vec<Job> },
        Echo { count: u64, job: Job },
    }

    impl Jobs {
        fn new(args: &SubmitArgs, max_frame: usize) -> Result<Jobs, RunError> {
            if let Some(count) = args.echo {
                return Ok(Jobs::Echo {
                    count,
                    job: Job::new(0, "echo", "echo", Payload::Inline(vec![7; 16])),
                });
            }
            let (library, method) = (
                args.library.as_deref().unwrap_or_default(),
                args.method.as_deref().unwrap_or_default(),
            );
            let mut jobs = Vec::with_capacity(args.files.len());
            for (k, path) in args.files.iter().enumerate() {
                let bytes =
                    std::fs::read(path).map_err(|e| RunError::Usage(format!("cannot read {}: {e}", path.display())))?;
                let job = Job::new(k as u64 + 1, library, method, Payload::Inline(bytes));
                let len = job.encode().len();
                if len > max_frame {
                    return Err(RunError::Usage(format!(
                        "{} is too large for a client lane: its job frame is {len} bytes, a lane carries at most {max_frame}",
                        path.display()
                    )));
                }
                jobs.push(job);
            }
            Ok(Jobs::Files {
                paths: args.files.clone(),
                jobs,
            })
        }

        fn count(&self) -> u64 {
            match self {
                Jobs::Files { jobs, .. } => jobs.len() as u64,
                Jobs::Echo { count, .. } => *count,
            }
        }

        /// The frame of job `k` (id `k + 1`).
        fn encode(&self, k: u64, out: &mut Vec<u8>) {
            match self {
                Jobs::Files { jobs, .. } => jobs[k as usize].encode_into(k + 1, out),
                Jobs::Echo { job, .. } => job.encode_into(k + 1, out),
            }
        }
    }

    /// Sends every job with at most `--in-flight` unanswered and collects the results.
    fn exchange(
        sab: &Sab,
        path: &Path,
        (client, process): (&Client, usize),
        jobs: &Jobs,
        args: &SubmitArgs,
    ) -> Result<SubmitReport, RunError> {
        let total = jobs.count();
        let mut answered_ids = vec![false; total as usize];
        let mut outcomes: Vec<Option<JobOutcome>> = match jobs {
            Jobs::Files { jobs, .. } => vec![None; jobs.len()],
            Jobs::Echo { .. } => Vec::new(),
        };
        let (mut sent, mut answered, mut failed, mut unexpected) = (0u64, 0u64, 0u64, 0u64);
        let mut frame = Vec::new();
        let mut buf = vec![0u8; client.max_frame()];
        let patience = Duration::from_secs(args.timeout);
        let bar = (std::io::stderr().is_terminal() && !args.json).then(|| {
            indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} jobs answered {per_sec} eta {eta}")
                    .expect("the progress template is valid"),
            )
        });
        let start = Instant::now();
        let (mut last_answer, mut last_beat) = (start, start);
        while answered < total {
            let mut pushed = false;
            while sent < total && sent - answered < args.in_flight {
                jobs.encode(sent, &mut frame);
                match client.push(&frame) {
                    Ok(()) => {
                        sent += 1;
                        pushed = true;
                    }
                    Err(RingError::Full { .. }) => break,
                    Err(e) => return Err(RunError::Usage(format!("cannot send job {}: {e}", sent + 1))),
                }
            }
            if pushed {
                client.notify();
            }
            let seen = client.results_seen();
            let before = answered;
            while let Some(len) = client
                .pop(&mut buf)
                .map_err(|e| RunError::Usage(format!("the client lane's results are corrupt: {e}")))?
            {
                let outcome = JobOutcome::decode(&buf[..len])
                    .map_err(|e| RunError::Usage(format!("a result from the kernel does not decode: {e}")))?;
                let Some(first) = outcome
                    .id
                    .checked_sub(1)
                    .and_then(|k| answered_ids.get_mut(k as usize))
                    .filter(|seen| !**seen)
                else {
                    unexpected += 1;
                    continue;
                };
                *first = true;
                answered += 1;
                if outcome.status != JobStatus::Success {
                    failed += 1;
                }
                if let Some(slot) = outcomes.get_mut(outcome.id as usize - 1) {
                    *slot = Some(outcome);
                }
            }
            if last_beat.elapsed() >= HEARTBEAT {
                sab.processes().beat(process);
                last_beat = Instant::now();
            }
            if answered > before {
                last_answer = Instant::now();
                if let Some(bar) = &bar {
                    bar.set_position(answered);
                }
                continue;
            }
            if let Wake::TimedOut = client.wait(seen, HEARTBEAT, WAIT_SPINS) {
                if let Err(e) = sab.processes().check_kernel() {
                    return Err(RunError::Usage(format!(
                        "the kernel stopped during the run ({e}): {answered} of {total} jobs answered, {} sent and not answered",
                        sent - answered
                    )));
                }
                if last_answer.elapsed() > patience {
                    return Err(RunError::Usage(format!(
                        "the kernel answered nothing for {} s ({answered} of {total} jobs answered)",
                        args.timeout
                    )));
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let seconds = start.elapsed().as_secs_f64();
        let results = match jobs {
            Jobs::Files { paths, .. } => paths
                .iter()
                .zip(outcomes)
                .map(|(file, outcome)| {
                    let outcome = outcome.expect("every job was answered");
                    let output = match &outcome.output {
                        Payload::Inline(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
                        Payload::Sab(range) => format!("(SAB range {:#x}+{})", range.offset, range.length),
                    };
                    FileResult {
                        file: file.clone(),
                        status: format!("{:?}", outcome.status),
                        output_hex: output,
                        error: outcome.error,
                    }
                })
                .collect(),
            Jobs::Echo { .. } => Vec::new(),
        };
        Ok(SubmitReport {
            sab: path.to_owned(),
            lane: client.lane(),
            sent,
            answered,
            failed,
            unexpected,
            seconds,
            per_second: answered as f64 / seconds.max(f64::MIN_POSITIVE),
            results,
        })
    }
}
