//! Figures across processes, each beside the same measurement between two threads of this process
//! in the same run: the epoch signal-to-wake latency (the waiter spinning, and parked on its
//! futex), 64-byte frames through the inbox ring, and echo jobs from an outside client (`inos
//! submit` through a client lane) against the same load submitted inside the kernel's process.
//!
//! The other process is this binary, run as `inos bench-peer` (a hidden subcommand) on a SAB in
//! /dev/shm, or `inos submit`. Both sides stamp times with the wall clock (the one clock two
//! processes share; read through the vDSO like the monotonic one).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::kernel::{echo_run, flood_app};
use super::{Latency, Throughput};
use crate::sab::generated as g;
use crate::sab::{EpochIndex, Owner, RingError, RingId, Sab, SabLayout, Tier, Wake};
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

/// What the peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerRole {
    /// Waits on PING (spinning `spins` times first), stamps its wake time, announces on PONG.
    Waiter,
    /// Waits for PING, then pushes `count` 64-byte frames into the inbox ring.
    Producer,
}

const PING: EpochIndex = EpochIndex::new(g::EPOCH_RESERVED_FIRST + 2).expect("in range");
const PONG: EpochIndex = EpochIndex::new(g::EPOCH_RESERVED_FIRST + 3).expect("in range");
/// The waiter's wake time (ns since the Unix epoch), low and high words.
const WAKE_LO: EpochIndex = EpochIndex::new(g::EPOCH_RESERVED_FIRST + 4).expect("in range");
const WAKE_HI: EpochIndex = EpochIndex::new(g::EPOCH_RESERVED_FIRST + 5).expect("in range");
const TIMEOUT: Duration = Duration::from_secs(10);

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn busy_wait(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The peer's side of a measurement, in a thread of this process or in `inos bench-peer`.
pub fn peer(sab: &Sab, role: PeerRole, count: u64, spins: u32) -> Result<(), String> {
    let epochs = sab.epochs();
    let mut ping = epochs.load(PING);
    match role {
        PeerRole::Waiter => {
            for _ in 0..count {
                epochs.signal(PONG);
                match epochs.wait_with(PING, ping, TIMEOUT, spins) {
                    Wake::Changed(value) => ping = value,
                    Wake::TimedOut => return Err("the signaller stopped".into()),
                }
                let woke = now_ns();
                epochs.store(WAKE_LO, woke as u32);
                epochs.store(WAKE_HI, (woke >> 32) as u32);
            }
            epochs.signal(PONG);
        }
        PeerRole::Producer => {
            let producer = sab
                .ring(RingId::Inbox)
                .producer(Owner::Kernel)
                .map_err(|e| e.to_string())?;
            epochs.signal(PONG);
            if epochs.wait(PING, ping, TIMEOUT) == Wake::TimedOut {
                return Err("the consumer did not start".into());
            }
            let mut frame = [0u8; 64];
            for i in 0..count {
                frame[..8].copy_from_slice(&i.to_le_bytes());
                loop {
                    match producer.push(&frame) {
                        Ok(()) => break,
                        Err(RingError::Full { .. }) => std::hint::spin_loop(),
                        Err(e) => return Err(format!("ring push failed: {e}")),
                    }
                }
            }
        }
    }
    Ok(())
}

/// Where a peer runs.
enum Peer {
    Thread(std::thread::JoinHandle<Result<(), String>>),
    Process(ChildGuard),
}

/// A child process, killed if it is still running when this drops.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn spawn(command: &mut Command) -> ChildGuard {
        ChildGuard(Some(command.spawn().expect("start the bench's peer process")))
    }

    fn running(&mut self) -> bool {
        let child = self.0.as_mut().expect("not waited for yet");
        child.try_wait().expect("wait for the peer process").is_none()
    }

    /// Waits for it to end; its output.
    fn wait(mut self) -> std::process::Output {
        let child = self.0.take().expect("not waited for yet");
        child.wait_with_output().expect("wait for the peer process")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Peer {
    fn start(sab: &Sab, role: PeerRole, count: u64, spins: u32) -> Peer {
        match sab.path() {
            None => {
                let sab = sab.clone();
                Peer::Thread(std::thread::spawn(move || peer(&sab, role, count, spins)))
            }
            Some(path) => Peer::Process(ChildGuard::spawn(
                Command::new(std::env::current_exe().expect("this binary"))
                    .args(["bench-peer", "--role", role_name(role), "--sab"])
                    .arg(path)
                    .args(["--count", &count.to_string(), "--spins", &spins.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )),
        }
    }

    fn finish(self) {
        match self {
            Peer::Thread(thread) => thread
                .join()
                .expect("the peer thread")
                .expect("the peer thread's measurement"),
            Peer::Process(child) => {
                let out = child.wait();
                assert!(
                    out.status.success(),
                    "the bench's peer process failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

fn role_name(role: PeerRole) -> &'static str {
    match role {
        PeerRole::Waiter => "waiter",
        PeerRole::Producer => "producer",
    }
}

fn wait_pong(sab: &Sab, seen: &mut u32) {
    match sab.epochs().wait_with(PONG, *seen, TIMEOUT, u32::MAX) {
        Wake::Changed(value) => *seen = value,
        Wake::TimedOut => panic!("the bench's peer did not answer within {TIMEOUT:?}"),
    }
}

/// One-way signal-to-wake latency: the peer announces on PONG that it is about to wait, this side
/// lets `settle` pass (the peer is then spinning or parked), stamps the time and signals PING; the
/// peer stamps its wake.
fn wake(sab: &Sab, samples: usize, waiter_spins: u32, settle: Duration) -> Latency {
    let epochs = sab.epochs();
    let mut pong = epochs.load(PONG);
    let peer = Peer::start(sab, PeerRole::Waiter, samples as u64, waiter_spins);
    let mut ns = Vec::with_capacity(samples);
    let mut sent = 0;
    for sample in 0..=samples {
        wait_pong(sab, &mut pong);
        if sample > 0 {
            let woke = u64::from(epochs.load(WAKE_LO)) | u64::from(epochs.load(WAKE_HI)) << 32;
            ns.push(woke.saturating_sub(sent));
        }
        if sample == samples {
            break;
        }
        busy_wait(settle);
        sent = now_ns();
        epochs.signal(PING);
    }
    peer.finish();
    Latency::from_samples(ns)
}

/// `frames` frames of 64 bytes from the peer to this side through the inbox ring.
fn ring(sab: &Sab, frames: u64) -> Throughput {
    let mut consumer = sab
        .ring(RingId::Inbox)
        .consumer()
        .expect("a fresh ring has no consumer");
    let mut pong = sab.epochs().load(PONG);
    let peer = Peer::start(sab, PeerRole::Producer, frames, 0);
    wait_pong(sab, &mut pong);
    let start = Instant::now();
    sab.epochs().signal(PING);
    let mut buf = [0u8; 64];
    let mut received = 0;
    while received < frames {
        match consumer.read_into(&mut buf) {
            Ok(Some(_)) => {
                debug_assert_eq!(u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")), received);
                received += 1;
            }
            Ok(None) => {
                assert!(
                    start.elapsed() < TIMEOUT * 6,
                    "the producer stopped at frame {received}"
                );
                std::hint::spin_loop();
            }
            Err(e) => panic!("ring read failed: {e}"),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    peer.finish();
    Throughput {
        items: frames,
        seconds,
        per_second: frames as f64 / seconds,
    }
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
