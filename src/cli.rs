//! The `inos` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::sab::{Sab, SabLayout, Tier};
use crate::units::boids::{FlockParams, birds_in, check_capacity};
use crate::units::host::JobHostMode;
use crate::{FlockPlugins, RunConfig, RunError};

#[derive(Parser, Debug)]
#[command(
    name = "inos",
    version,
    about = "INOS on Bevy: a shared-memory OS whose parts talk only through one byte arena and epochs",
    after_help = "Without a subcommand, runs the visual simulator (or, with --headless, a headless run)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print what a snapshot file, or a running kernel's SAB (--live), holds: epochs, region map,
    /// rings, streams, guards, processes.
    Inspect {
        /// A file written with --snapshot; with --live, a running kernel's SAB (default: the one
        /// in /dev/shm).
        file: Option<PathBuf>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Read a running kernel's SAB through its seqlocks, without stopping or disturbing it.
        #[arg(long)]
        live: bool,
        /// With --live: refresh every SECONDS like `top`, with the epochs' rates (Ctrl-C ends it).
        #[arg(long, value_name = "SECONDS", requires = "live", num_args = 0..=1, default_missing_value = "1", value_parser = parse_interval)]
        watch: Option<f64>,
        /// With --watch: stop after this many refreshes.
        #[arg(long, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Send jobs to a running kernel from outside it, through a client lane of its SAB: files
    /// (one job each, results printed like `b3sum`), or generated echo load (throughput printed).
    Submit(crate::submit::SubmitArgs),
    /// List the SAB files in /dev/shm with their kernels; --clean removes those no running
    /// process uses (left by kernels that were killed).
    Shm {
        /// Remove the SAB files whose processes are all gone.
        #[arg(long)]
        clean: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the benchmark suite (build with --release for meaningful numbers).
    Bench {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Fewer samples, for a quick look.
        #[arg(long)]
        quick: bool,
        /// Run only these sections (comma-separated; all when absent).
        #[arg(long, value_enum, value_delimiter = ',', value_name = "SECTIONS")]
        only: Vec<crate::bench::Section>,
    },
    /// The other process of `inos bench`'s cross-process measurements.
    #[command(hide = true)]
    BenchPeer {
        #[arg(long, value_enum)]
        role: crate::bench::PeerRole,
        #[arg(long)]
        sab: PathBuf,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 0)]
        spins: u32,
    },
    /// Run the flock, a steady job load, workflows and evolution together in real time, report
    /// resident memory every minute, and fail if a job is lost or memory grows by more than 5 %.
    Soak {
        /// Wall-clock minutes to run (fractions allowed).
        #[arg(long, default_value_t = 30.0, value_parser = parse_minutes)]
        minutes: f64,
        /// Birds in the flock.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(2..=4999))]
        birds: u16,
        /// Print only a JSON report at the end.
        #[arg(long)]
        json: bool,
    },
}

fn parse_interval(s: &str) -> Result<f64, String> {
    number_in(s, 0.01..=86_400.0, "the interval", " seconds")
}

fn parse_minutes(s: &str) -> Result<f64, String> {
    number_in(s, 0.01..=10_080.0, "the soak's length", " minutes")
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Run without a window or GPU, for --ticks fixed ticks, as fast as possible.
    #[arg(long)]
    pub headless: bool,
    /// Device tier: light (32 MiB), moderate (64 MiB), heavy (128 MiB) or dedicated (256 MiB).
    #[arg(long, default_value = "light")]
    pub tier: Tier,
    /// SAB size in MiB, from the tier's size up to 1024; the extra space grows the arena heap.
    #[arg(long, value_name = "MIB")]
    pub sab_mib: Option<u32>,
    /// Number of birds (default: the tier's recommended count; at most the tier's maximum).
    #[arg(long)]
    pub birds: Option<usize>,
    /// Reproduce the original's in-place update and world-Z bank instead of the correct Jacobi step.
    #[arg(long)]
    pub faithful: bool,
    /// Worker threads for the physics step (default: the machine's cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: Option<u16>,
    /// Fix the world at this multiple of the original's 80 x 60 x 80 instead of scaling it with the
    /// bird count.
    #[arg(long, value_parser = parse_scale)]
    pub world_scale: Option<f32>,
    /// Seed of the evolution's random numbers (the same seed, birds and ticks give the same run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bird epochs between two GA generations (0 turns evolution off).
    #[arg(long, default_value_t = crate::EVOLVE_EVERY)]
    pub evolve_every: u32,
    /// Number of fixed ticks of a headless run.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub ticks: u64,
    /// Pulse rate in Hz (the fixed timestep).
    #[arg(long, default_value_t = crate::pulse::DEFAULT_PULSE_HZ, value_parser = parse_hz)]
    pub hz: f64,
    /// Write a snapshot of the whole SAB to FILE when the run ends (headless or visual).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// The shared SAB's file, which other processes attach to (`inos submit`, `inos inspect
    /// --live`); it must not exist. Default: /dev/shm/inos-<pid>.sab, removed when the run ends.
    #[arg(long, value_name = "PATH")]
    pub sab: Option<PathBuf>,
    /// Jobs a second each job source may submit (outside clients are a source each), or
    /// `unlimited`. Default: a burst of 4 096, then 1 000 a second.
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate_limit)]
    pub rate_limit: Option<RateLimit>,
    /// Open the window and the inspector on a running kernel's SAB instead of running one:
    /// read-only, the kernel's flock drawn from its streams.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["headless", "resume", "sab", "tier", "sab_mib", "birds", "snapshot"])]
    pub attach: Option<PathBuf>,
    /// Serve outside clients for SECONDS of wall time: a headless run whose ticks come at the
    /// pulse rate, and at once when a client submits jobs (--ticks is ignored).
    #[arg(long, value_name = "SECONDS", requires = "headless", value_parser = parse_interval)]
    pub serve: Option<f64>,
    /// Carry on the system a snapshot holds: its queued and running jobs, workflows, chunks,
    /// supervisors, the engines' models and the flock (its tier, size and birds are the snapshot's).
    #[arg(long, value_name = "SNAPSHOT", conflicts_with_all = ["tier", "sab_mib", "birds"])]
    pub resume: Option<PathBuf>,
    /// Leave out the physics unit's Rapier scene (floor, pillars, orbiting and bouncing balls).
    #[arg(long)]
    pub no_obstacles: bool,
    /// Run the job host on a thread of its own, beside the kernel's tick (native builds), instead
    /// of inside the tick.
    #[arg(long)]
    pub job_host_thread: bool,
    /// Print the headless report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Visual mode: render --frames frames, save a PNG screenshot to FILE, and exit.
    #[arg(long, value_name = "FILE")]
    pub screenshot: Option<PathBuf>,
    /// Frames to render before the screenshot.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub frames: u32,
}

fn parse_scale(s: &str) -> Result<f32, String> {
    number_in(s, 0.1..=100.0, "the world scale", "").map(|scale| scale as f32)
}

fn parse_hz(s: &str) -> Result<f64, String> {
    number_in(s, 1.0..=10_000.0, "the pulse rate", " Hz")
}

/// A finite number within `range`, or a message naming `what` and the range (with its `unit`).
fn number_in(s: &str, range: std::ops::RangeInclusive<f64>, what: &str, unit: &str) -> Result<f64, String> {
    let value: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if value.is_finite() && range.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{what} must be between {} and {}{unit}, not {s}",
            range.start(),
            range.end()
        ))
    }
}

impl RunArgs {
    /// The run these arguments ask for: the SAB's layout, the flock (its bird count checked
    /// against the tier) and the rest.
    pub fn config(&self) -> Result<RunConfig, RunError> {
        let resume = self.resume.as_deref().map(Sab::resume).transpose()?;
        let layout = match (&resume, self.sab_mib) {
            (Some(sab), _) => *sab.layout(),
            (None, None) => SabLayout::for_tier(self.tier),
            (None, Some(mib)) => SabLayout::with_size(self.tier, mib as usize * (1 << 20))?,
        };
        let birds = match &resume {
            Some(sab) => birds_in(sab)
                .map_err(|e| RunError::Usage(format!("the snapshot's bird stream cannot be read: {e}")))?
                .len(),
            None => self.birds.unwrap_or(layout.spec().recommended_birds as usize),
        };
        check_capacity(&layout, birds)?;
        let mut params = FlockParams {
            faithful: self.faithful,
            world_scale: self.world_scale,
            ..FlockParams::default()
        };
        if let Some(threads) = self.threads {
            params.threads = usize::from(threads);
        }
        Ok(RunConfig {
            layout,
            pulse_hz: self.hz,
            flock: FlockPlugins {
                birds,
                params,
                seed: self.seed,
                evolve_every: self.evolve_every,
                obstacles: !self.no_obstacles,
            },
            job_host: if self.job_host_thread {
                JobHostMode::Thread
            } else {
                JobHostMode::Tick
            },
            ticks: self.ticks,
            serve: self.serve.map(std::time::Duration::from_secs_f64),
            snapshot: self.snapshot.clone(),
            sab: Some(self.place(resume, layout)?),
            json: self.json,
            screenshot: self.screenshot.clone().map(|path| (path, self.frames)),
        })
    }
}

impl RunArgs {
    /// The run's SAB, with `--rate-limit` applied to its admission table. Natively it is a shared
    /// mapping (`--sab`, or the default file in /dev/shm; a resumed snapshot is copied into it), so
    /// that other processes can attach; where /dev/shm does not exist and no `--sab` was given, a
    /// private SAB, with a warning.
    fn place(&self, resumed: Option<Sab>, layout: SabLayout) -> Result<Sab, RunError> {
        let sab = self.share(resumed, layout)?;
        if let Some(RateLimit { burst, per_second }) = self.rate_limit {
            sab.admission().configure(burst, per_second);
        }
        Ok(sab)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn share(&self, resumed: Option<Sab>, layout: SabLayout) -> Result<Sab, RunError> {
        use crate::sab::shared;
        let path = self.sab.clone().unwrap_or_else(shared::default_path);
        let placed = match &resumed {
            Some(sab) => sab.share(&path),
            None => Sab::create_shared(layout, &path),
        };
        match placed {
            Ok(sab) => {
                sab.processes().claim_kernel()?;
                Ok(sab)
            }
            Err(e) if self.sab.is_none() && !std::path::Path::new(shared::SHM_DIR).is_dir() => {
                eprintln!("warning: {e}; running on a private SAB that no other process can attach to");
                Ok(resumed.unwrap_or_else(|| Sab::new(layout)))
            }
            Err(e) => Err(e.into()),
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn share(&self, resumed: Option<Sab>, layout: SabLayout) -> Result<Sab, RunError> {
        Ok(resumed.unwrap_or_else(|| Sab::new(layout)))
    }
}

/// `--rate-limit`: the admission table's token bucket per job source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_second: u32,
}

/// `unlimited`, or jobs per second per source (the burst is the larger of that and the default
/// burst).
fn parse_rate_limit(s: &str) -> Result<RateLimit, String> {
    if s == "unlimited" {
        return Ok(RateLimit {
            burst: u32::MAX,
            per_second: u32::MAX,
        });
    }
    match s.parse::<u32>() {
        Ok(per_second) if per_second > 0 => Ok(RateLimit {
            burst: per_second.max(crate::protocol::DEFAULT_BURST),
            per_second,
        }),
        _ => Err(format!(
            "{s:?} is neither a positive number of jobs per second nor `unlimited`"
        )),
    }
}

/// Parses the command line and runs it; errors are printed with a non-zero exit code.
#[cfg(not(target_arch = "wasm32"))]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Inspect {
            file,
            json,
            live,
            watch,
            count,
        }) => match (live, file) {
            (true, file) => crate::inspect::run_live(file.as_deref(), json, watch, count),
            (false, Some(file)) => crate::inspect::run(&file, json),
            (false, None) => Err(RunError::Usage(
                "inos inspect needs a snapshot FILE, or --live for a running kernel".into(),
            )),
        },
        Some(Command::Submit(args)) => crate::submit::run(&args),
        Some(Command::Shm { clean, json }) => crate::inspect::run_shm(clean, json),
        Some(Command::BenchPeer {
            role,
            sab,
            count,
            spins,
        }) => crate::bench::processes::run_peer(&sab, role, count, spins),
        Some(Command::Bench { json, quick, only }) => crate::bench::run(json, quick, &only),
        Some(Command::Soak { minutes, birds, json }) => crate::soak::run(minutes, usize::from(birds), json),
        None if let Some(path) = &cli.run.attach => {
            run_attached(path, cli.run.screenshot.clone().map(|p| (p, cli.run.frames)))
        }
        None => cli.run.config().and_then(|config| {
            let sab = config.sab.clone();
            let run = if cli.run.headless {
                crate::headless::run(&config)
            } else {
                run_visual(config)
            };
            // A clean end: the lock and the record go (the file too, when its last handle drops).
            if let Some(sab) = sab {
                sab.processes().leave();
            }
            run
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The browser build: the options come from the page's query string (see [`args_from_query`]),
/// only the simulator runs, and errors are shown on the page.
#[cfg(target_arch = "wasm32")]
pub fn main() -> ExitCode {
    let args = args_from_query(&crate::web::query_string());
    let result = Cli::try_parse_from(args)
        .map_err(|e| RunError::Usage(e.to_string()))
        .and_then(|cli| match cli.command {
            Some(_) => Err(RunError::Usage(
                "the browser build runs only the simulator (no subcommands)".into(),
            )),
            None if cli.run.headless
                || cli.run.screenshot.is_some()
                || cli.run.snapshot.is_some()
                || cli.run.resume.is_some()
                || cli.run.sab.is_some()
                || cli.run.attach.is_some() =>
            {
                Err(RunError::Usage(
                    "--headless, --screenshot, --snapshot, --resume, --sab and --attach need the native build".into(),
                ))
            }
            None if !crate::web::has_webgl2() => Err(RunError::NoWebGl2),
            None => cli.run.config().and_then(run_visual),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            crate::web::show_error(&message.to_string());
            ExitCode::FAILURE
        }
    }
}

/// The browser build's command line: the query string `?birds=3000&tier=heavy&faithful` becomes
/// `inos --birds=3000 --tier=heavy --faithful` (`+` and `%XX` escapes decoded).
pub fn args_from_query(query: &str) -> Vec<String> {
    let pairs = query.strip_prefix('?').unwrap_or(query).split('&');
    let options = pairs
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !value.is_empty() => format!("--{}={}", url_decode(key), url_decode(value)),
            Some((key, _)) => format!("--{}", url_decode(key)),
            None => format!("--{}", url_decode(pair)),
        });
    std::iter::once("inos".to_owned()).chain(options).collect()
}

/// Decodes `+` as a space and `%XX` as a byte; a malformed escape is kept as written.
fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(feature = "render")]
fn run_visual(config: RunConfig) -> Result<(), RunError> {
    crate::window::run(config)
}

#[cfg(not(feature = "render"))]
fn run_visual(_config: RunConfig) -> Result<(), RunError> {
    Err(RunError::NoRenderer)
}

#[cfg(all(feature = "render", not(target_arch = "wasm32")))]
fn run_attached(path: &std::path::Path, screenshot: Option<(PathBuf, u32)>) -> Result<(), RunError> {
    crate::window::run_attached(path, screenshot)
}

#[cfg(all(not(feature = "render"), not(target_arch = "wasm32")))]
fn run_attached(_path: &std::path::Path, _screenshot: Option<(PathBuf, u32)>) -> Result<(), RunError> {
    Err(RunError::NoRenderer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_becomes_the_command_line() {
        assert_eq!(
            args_from_query("?birds=3000&tier=heavy&faithful&seed=%37&world-scale=1.5"),
            [
                "inos",
                "--birds=3000",
                "--tier=heavy",
                "--faithful",
                "--seed=7",
                "--world-scale=1.5"
            ]
        );
        assert_eq!(args_from_query(""), ["inos"]);
        assert_eq!(args_from_query("?&&x=&a+b=%zz"), ["inos", "--x", "--a b=%zz"]);
        // `%+5` is no escape (the `+` still means a space), a trailing `%4` neither.
        assert_eq!(args_from_query("?seed=%+5%4"), ["inos", "--seed=% 5%4"]);
        let cli = Cli::try_parse_from(args_from_query("?birds=3000&faithful&evolve-every=0")).unwrap();
        assert_eq!(
            (cli.run.birds, cli.run.faithful, cli.run.evolve_every),
            (Some(3000), true, 0)
        );
        assert!(Cli::try_parse_from(args_from_query("?birds=lots")).is_err());
    }
}
