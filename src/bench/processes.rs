//! Figures across processes, each beside the same measurement between two threads of this process
//! in the same run: the epoch signal-to-wake latency (the waiter spinning, and parked on its
//! futex), 64-byte frames through the inbox ring, and echo jobs from an outside client (`inos
//! submit` through a client lane) against the same load submitted inside the kernel's process.
//!
//! The measurements are the `kernel` ones (`wake`, `ring`), whose peer runs in a thread on a private
//! SAB and, here, as this binary (`inos bench-peer`, a hidden subcommand) on a SAB in /dev/shm; and
//! the echo load from `inos submit`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::kernel::{ChildGuard, PeerRole, echo_run, flood_app, peer, ring, wake};
use super::{Latency, Throughput};
use crate::sab::{Sab, SabLayout, Tier};
use crate::units::host::JobHostMode;

#[derive(Debug, Serialize)]
pub struct CrossProcess {
    /// One way, signal to wake, waiter spinning: between two threads, between two processes.
    pub epoch_wake_spin_threads: Latency,
    pub epoch_wake_spin_processes: Latency,
    /// The same with the waiter parked on the epoch's futex.
    pub epoch_wake_parked_threads: Latency,
    pub epoch_wake_parked_processes: Latency,
    /// 64-byte frames through the inbox ring, producer to consumer.
    pub ring_64b_threads: Throughput,
    pub ring_64b_processes: Throughput,
    /// ring_64b_processes / ring_64b_threads.
    pub ring_processes_vs_threads: f64,
    /// The same echo load (host in the tick, `echo_window` in flight): submitted in the
    /// kernel's process, and by an `inos submit` process through its client lane.
    pub echo_in_kernel: Throughput,
    pub echo_from_client: Throughput,
    pub echo_window: u64,
}

/// A SAB in /dev/shm for one measurement, its file removed when it drops.
fn shared_sab(what: &str) -> Sab {
    let path = PathBuf::from(format!("/dev/shm/inos-bench-{}-{what}.sab", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sab = Sab::create_shared(SabLayout::for_tier(Tier::Light), &path).expect("a SAB in /dev/shm for the bench");
    // Held, so that `inos shm --clean` sees the file in use.
    sab.processes().claim_kernel().expect("a new SAB's kernel lock is free");
    sab
}

/// `jobs` echo jobs sent by an `inos submit` process with `window` in flight, served by a kernel
/// app in this process (host in the tick, the rate limit lifted as in the other job figures).
fn echo_from_client(jobs: u64, window: u64) -> Throughput {
    let sab = shared_sab("echo");
    let path = sab.path().expect("a shared SAB").to_owned();
    let mut app = flood_app(Some(sab), |app| {
        app.insert_resource(JobHostMode::Tick);
    });
    let mut client = ChildGuard::spawn(
        Command::new(std::env::current_exe().expect("this binary"))
            .args([
                "submit",
                "--json",
                "--echo",
                &jobs.to_string(),
                "--in-flight",
                &window.to_string(),
            ])
            .arg("--sab")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let limit = Instant::now() + Duration::from_secs(300);
    crate::headless::serve_while(&mut app, 64.0, |next| {
        let running = client.running();
        assert!(Instant::now() < limit, "inos submit ran past 300 s");
        running.then_some(next.min(Instant::now() + Duration::from_millis(1)))
    });
    let out = client.wait();
    assert!(
        out.status.success(),
        "inos submit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inos submit's JSON report");
    assert_eq!(
        report["answered"].as_u64(),
        Some(jobs),
        "every echo job is answered: {report}"
    );
    Throughput {
        items: jobs,
        seconds: report["seconds"].as_f64().expect("seconds"),
        per_second: report["per_second"].as_f64().expect("per_second"),
    }
}

pub(super) fn cross_process(samples: usize, frames: u64, jobs: u64) -> CrossProcess {
    let threads = Sab::for_tier(Tier::Light);
    let (spin_settle, park_settle) = (Duration::from_micros(2), Duration::from_micros(300));
    let ring_threads = ring(&Sab::for_tier(Tier::Light), frames);
    let ring_processes = ring(&shared_sab("ring"), frames);
    let window = 4096;
    CrossProcess {
        epoch_wake_spin_threads: wake(&threads, samples, u32::MAX, spin_settle),
        epoch_wake_spin_processes: wake(&shared_sab("wake-spin"), samples, u32::MAX, spin_settle),
        epoch_wake_parked_threads: wake(&threads, samples, 0, park_settle),
        epoch_wake_parked_processes: wake(&shared_sab("wake-park"), samples, 0, park_settle),
        ring_processes_vs_threads: ring_processes.per_second / ring_threads.per_second,
        ring_64b_threads: ring_threads,
        ring_64b_processes: ring_processes,
        echo_in_kernel: echo_run(JobHostMode::Tick, jobs, 1, window).steady,
        echo_from_client: echo_from_client(jobs, window),
        echo_window: window,
    }
}

/// `inos bench-peer`: the peer process of a measurement, on the SAB at `path`.
pub fn run_peer(path: &Path, role: PeerRole, count: u64, spins: u32) -> Result<(), crate::RunError> {
    let sab = Sab::attach(path)?;
    peer(&sab, role, count, spins).map_err(crate::RunError::Usage)
}
