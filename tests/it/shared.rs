//! One SAB shared by processes: attach refusals, the kernel lock, epochs, seqlocks and rings
//! across processes, outside clients (`inos submit`), a client killed mid-frame, live inspection.
//!
//! Child processes are the `inos` binary, or this test binary running one of the `child_*`
//! functions below (ignored tests that only run when a test starts them, with the SAB's path in
//! `INOS_TEST_SAB`). Every child is killed by pid when its guard drops, and every SAB file is
//! removed, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inos::protocol::{Job, Payload};
use inos::sab::clients::Client;
use inos::sab::generated as g;
use inos::sab::processes::KernelClaim;
use inos::sab::shared::SharedError;
use inos::sab::{BirdRecord, EpochIndex, Owner, RingId, Sab, SabHeader, SabLayout, StreamId, Tier, Wake};

/// A SAB file of this test, removed on drop.
pub(crate) struct ShmFile(PathBuf);

impl ShmFile {
    pub(crate) fn new(tag: &str) -> Self {
        let path = PathBuf::from(format!("/dev/shm/inos-test-{}-{tag}.sab", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    pub(crate) fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 path")
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A child process, killed (SIGKILL) and reaped on drop.
pub(crate) struct ChildGuard(Option<std::process::Child>);

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }
    /// Waits for the child to end by itself within `limit`; its output.
    fn finish(mut self, limit: Duration) -> std::process::Output {
        let mut child = self.0.take().expect("a running child");
        let start = Instant::now();
        while child.try_wait().expect("wait for the child").is_none() {
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("a child process ran past {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().expect("the child's output")
    }
    fn kill(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn inos(args: &[&str]) -> ChildGuard {
    ChildGuard(Some(
        Command::new(env!("CARGO_BIN_EXE_inos"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run inos"),
    ))
}

/// This test binary running `child_<name>` on the SAB at `sab`.
fn child(name: &str, sab: &Path, env: &[(&str, String)]) -> ChildGuard {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            &format!("shared::child_{name}"),
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env("INOS_TEST_SAB", sab)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    ChildGuard(Some(command.spawn().expect("run the test binary as a child")))
}

/// The SAB a child was given.
fn child_sab() -> Sab {
    let path = std::env::var("INOS_TEST_SAB").expect("child_* functions are started by the shared-SAB tests");
    Sab::attach(Path::new(&path)).expect("the child attaches to the test's SAB")
}

fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A headless kernel serving clients on `shm` for at most five minutes (with `flock` options; 50
/// birds without obstacles when empty), once it is ready.
pub(crate) fn kernel(shm: &ShmFile, flock: &[&str]) -> (ChildGuard, Sab) {
    let flock: &[&str] = if flock.is_empty() {
        &["--birds", "50", "--no-obstacles"]
    } else {
        flock
    };
    let child = ChildGuard(Some(
        Command::new(env!("CARGO_BIN_EXE_inos"))
            .args([
                "--headless",
                "--serve",
                "300",
                "--sab",
                shm.arg(),
                "--rate-limit",
                "unlimited",
            ])
            .args(flock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run the kernel"),
    ));
    let mut sab = None;
    until("the kernel's SAB is ready", Duration::from_secs(30), || {
        sab = Sab::attach(shm.path()).ok().filter(|s| {
            s.epochs().load(EpochIndex::KERNEL_READY) == 1 && s.processes().header().kernel_pid == child.pid()
        });
        sab.is_some()
    });
    (child, sab.expect("attached"))
}

/// A SAB of this test process in a shared file, which holds its kernel lock (so that `inos shm
/// --clean`, run by another test at the same time, sees it in use).
fn shared_sab(file: &ShmFile) -> Sab {
    let sab = Sab::create_shared(SabLayout::for_tier(Tier::Light), file.path()).unwrap();
    sab.processes().claim_kernel().unwrap();
    sab
}

fn write_header(path: &Path, len: usize, edit: impl FnOnce(&mut SabHeader)) {
    let mut header = SabHeader {
        magic: g::SAB_MAGIC,
        layout_version: g::LAYOUT_VERSION,
        tier: Tier::Light.id(),
        sab_size: len as u64,
        bird_capacity: SabLayout::for_tier(Tier::Light).spec().max_birds,
        reserved: [0; 9],
    };
    edit(&mut header);
    let mut bytes = vec![0u8; len];
    let at = g::SAB_HEADER_OFFSET as usize;
    bytes[at..at + size_of::<SabHeader>()].copy_from_slice(bytemuck::bytes_of(&header));
    std::fs::write(path, bytes).expect("write the test file");
}

#[test]
fn attach_refuses_a_file_whose_header_differs_and_names_what_differs() {
    let file = ShmFile::new("refusals");
    let light = SabLayout::for_tier(Tier::Light).sab_size;
    let refusal = |len: usize, edit: fn(&mut SabHeader)| {
        write_header(file.path(), len, edit);
        Sab::attach(file.path()).expect_err("refused").to_string()
    };
    let message = refusal(light, |h| h.magic = 0x1234);
    assert!(
        message.contains("is not a SAB: its magic is 0x0000000000001234"),
        "{message}"
    );
    let message = refusal(light, |h| h.layout_version = 3);
    assert!(message.contains("layout version is 3, this build's is"), "{message}");
    let message = refusal(light, |h| h.tier = 9);
    assert!(message.contains("tier id 9 is not a tier"), "{message}");
    let message = refusal(1 << 20, |h| h.sab_size = 33_554_432);
    assert!(
        message.contains("says 33554432 bytes, but the file holds 1048576"),
        "{message}"
    );
    let message = refusal(1 << 20, |_| {});
    assert!(message.contains("does not fit the light tier"), "{message}");
    let message = refusal(light, |h| h.bird_capacity = 7);
    assert!(message.contains("bird capacity is 7"), "{message}");
    let message = refusal(light + 100, |h| h.sab_size += 100);
    assert!(message.contains("not a non-zero multiple of 64"), "{message}");
    // The header as it should be: attached, and nothing changed.
    write_header(file.path(), light, |_| {});
    let sab = Sab::attach(file.path()).expect("a good header attaches");
    assert_eq!(sab.path(), Some(file.path()));
    assert_eq!(sab.check_header(), Ok(()));
    assert!(matches!(
        Sab::attach(Path::new("/dev/shm/inos-test-none.sab")),
        Err(SharedError::Open { .. })
    ));
}

#[test]
fn a_shared_sab_is_one_memory_and_its_file_goes_with_its_creator() {
    let file = ShmFile::new("one-memory");
    let created = shared_sab(&file);
    let attached = Sab::attach(file.path()).unwrap();
    created.epochs().store(EpochIndex::BIRD_COUNT, 77);
    assert_eq!(
        attached.epochs().load(EpochIndex::BIRD_COUNT),
        77,
        "two mappings, one memory"
    );
    assert!(matches!(
        Sab::create_shared(SabLayout::for_tier(Tier::Light), file.path()),
        Err(SharedError::Exists { .. })
    ));
    drop(attached);
    assert!(file.path().exists(), "an attached handle leaves the file");
    drop(created);
    assert!(!file.path().exists(), "the creator removes it");
}

/// Waits (parked at once, no spinning) for `BIRD_COUNT` to leave 0, and exits 0 if it saw it change.
#[test]
#[ignore = "a child process of the shared-SAB tests"]
fn child_epoch_waiter() {
    let sab = child_sab();
    let wake = sab
        .epochs()
        .wait_with(EpochIndex::BIRD_COUNT, 0, Duration::from_secs(20), 0);
    assert_eq!(wake, Wake::Changed(5));
}

#[test]
fn a_signal_wakes_a_waiter_parked_in_another_process() {
    let _cores = crate::exclusive_cores();
    let file = ShmFile::new("epochs");
    let sab = shared_sab(&file);
    let waiter = child("epoch_waiter", file.path(), &[]);
    let waiters = || sab.epochs().signal_word(EpochIndex::BIRD_COUNT).waiters();
    until("the child parks", Duration::from_secs(20), || waiters() == 1);
    let signalled = Instant::now();
    sab.epochs().store(EpochIndex::BIRD_COUNT, 5);
    let out = waiter.finish(Duration::from_secs(5));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(signalled.elapsed() < Duration::from_secs(5), "woken, not timed out");
    assert_eq!(waiters(), 0);
}

fn bird(value: f32) -> BirdRecord {
    let mut b: BirdRecord = bytemuck::Zeroable::zeroed();
    bytemuck::cast_slice_mut::<BirdRecord, f32>(std::slice::from_mut(&mut b)).fill(value);
    b
}

/// The epoch (a user-defined index) by which a test tells its child to stop.
const STOP: EpochIndex = EpochIndex::new(200).expect("a user-defined epoch");

/// Publishes bird generations (every float of every bird the generation number), one every few
/// microseconds, until the test signals `STOP`, or 60 s.
#[test]
#[ignore = "a child process of the shared-SAB tests"]
fn child_stream_writer() {
    let sab = child_sab();
    let mut writer = sab.stream(StreamId::Birds).writer(Owner::Module).unwrap();
    let start = Instant::now();
    let mut generation = 1u32;
    let mut birds = vec![bird(0.0); 2];
    while sab.epochs().load(STOP) == 0 && start.elapsed() < Duration::from_secs(60) {
        birds.fill(bird(generation as f32));
        writer.publish(&birds).unwrap();
        generation += 1;
        // A few microseconds between generations: the reader still races every write, without
        // the two cores fighting over the lines word by word all the time (which makes both
        // sides 20 times slower).
        let pause = Instant::now();
        while pause.elapsed() < Duration::from_micros(5) {
            std::hint::spin_loop();
        }
    }
}

#[test]
fn a_stream_read_in_one_process_while_another_writes_is_never_torn() {
    let _cores = crate::exclusive_cores();
    const READS: u64 = 1_000_000;
    let file = ShmFile::new("seqlock");
    let sab = shared_sab(&file);
    let writer = child("stream_writer", file.path(), &[]);
    let stream = sab.stream(StreamId::Birds);
    until("the writer publishes", Duration::from_secs(20), || {
        stream.control().generation > 0
    });
    let mut out = vec![bird(0.0); 2];
    let (mut reads, mut torn) = (0u64, 0u64);
    let mut generations = std::collections::HashSet::new();
    let start = Instant::now();
    // At least a million reads, and until they raced the writer through a thousand generations
    // (a busy machine may give the writer little time).
    while reads < READS || generations.len() < 1_000 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{reads} reads and {} generations in 120 s",
            generations.len()
        );
        match stream.read_into(&mut out) {
            Ok(read) if read.count == 2 => {
                reads += 1;
                let floats: &[f32] = bytemuck::cast_slice(&out);
                let first = floats[0];
                if floats.iter().any(|&f| f != first) {
                    torn += 1;
                }
                generations.insert(first.to_bits());
            }
            _ => {}
        }
    }
    sab.epochs().signal(STOP);
    let out = writer.finish(Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(torn, 0, "{torn} torn reads of {reads}");
}

/// Pushes `FRAMES` frames [producer u32][sequence u32] into the outbox-kernel ring (many
/// producers may), waiting while it is full, for at most 60 s.
#[test]
#[ignore = "a child process of the shared-SAB tests"]
fn child_ring_producer() {
    let sab = child_sab();
    let id: u32 = std::env::var("INOS_TEST_PRODUCER").unwrap().parse().unwrap();
    let frames: u32 = std::env::var("INOS_TEST_FRAMES").unwrap().parse().unwrap();
    let producer = sab.ring(RingId::OutboxKernel).producer(Owner::Module).unwrap();
    let start = Instant::now();
    let mut frame = [0u8; 8];
    frame[..4].copy_from_slice(&id.to_le_bytes());
    for sequence in 0..frames {
        frame[4..].copy_from_slice(&sequence.to_le_bytes());
        while producer.push(&frame).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the consumer stopped taking frames"
            );
            std::hint::spin_loop();
        }
    }
}

#[test]
fn two_producer_processes_and_one_consumer_lose_duplicate_and_reorder_nothing() {
    let _cores = crate::exclusive_cores();
    const PER_PRODUCER: u32 = 500_000;
    let file = ShmFile::new("ring");
    let sab = shared_sab(&file);
    let mut consumer = sab.ring(RingId::OutboxKernel).consumer().unwrap();
    let producers: Vec<ChildGuard> = (0..2u32)
        .map(|id| {
            child(
                "ring_producer",
                file.path(),
                &[
                    ("INOS_TEST_PRODUCER", id.to_string()),
                    ("INOS_TEST_FRAMES", PER_PRODUCER.to_string()),
                ],
            )
        })
        .collect();
    let mut next = [0u32; 2];
    let mut buf = [0u8; 16];
    let start = Instant::now();
    while next.iter().any(|&n| n < PER_PRODUCER) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "frames stopped coming: {next:?}"
        );
        match consumer.read_into(&mut buf).unwrap() {
            Some(8) => {
                let id = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
                let sequence = u32::from_le_bytes(buf[4..8].try_into().unwrap());
                assert_eq!(sequence, next[id], "producer {id}'s frames arrive once each, in order");
                next[id] += 1;
            }
            Some(len) => panic!("a {len}-byte frame"),
            None => std::hint::spin_loop(),
        }
    }
    for producer in producers {
        let out = producer.finish(Duration::from_secs(30));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(consumer.read_into(&mut buf).unwrap(), None, "nothing more");
}

#[test]
fn a_second_kernel_is_refused_and_a_dead_kernels_lock_and_file_are_recovered() {
    let file = ShmFile::new("kernel-lock");
    let (mut kernel, sab) = kernel(&file, &[]);
    let pid = kernel.pid();
    // A second kernel on the same file, and a claim of its lock, are refused.
    let out = inos(&["--headless", "--ticks", "1", "--sab", file.arg()]).finish(Duration::from_secs(60));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let refusal = sab.processes().claim_kernel().unwrap_err().to_string();
    assert!(refusal.contains(&format!("pid {pid}, which is running")), "{refusal}");
    // Killed: its file stays, stale once it is older than a starting kernel's; its lock is taken
    // over.
    kernel.kill();
    let a_minute_ago = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(file.path())
        .and_then(|f| f.set_modified(a_minute_ago))
        .unwrap();
    let listed = inos(&["shm", "--json"]).finish(Duration::from_secs(30));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let entry = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == file.arg())
        .expect("inos shm lists the file");
    assert_eq!(entry["live_processes"], 0, "{entry}");
    assert_eq!(
        sab.processes().claim_kernel(),
        Ok(KernelClaim::Recovered { dead_pid: pid })
    );
    assert_eq!(sab.processes().header().locks_recovered, 1);
    sab.processes().leave();
    drop(sab);
    let out = inos(&["shm", "--clean"]).finish(Duration::from_secs(30));
    assert!(out.status.success());
    assert!(!file.path().exists(), "the stale file is removed");
}

#[test]
fn four_client_processes_each_get_every_answer_once() {
    let _cores = crate::exclusive_cores();
    let file = ShmFile::new("clients");
    let (_kernel, sab) = kernel(&file, &[]);
    let clients: Vec<ChildGuard> = (0..4)
        .map(|_| {
            inos(&[
                "submit",
                "--sab",
                file.arg(),
                "--echo",
                "2500",
                "--in-flight",
                "512",
                "--json",
            ])
        })
        .collect();
    for client in clients {
        let out = client.finish(Duration::from_secs(120));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (
                &report["sent"],
                &report["answered"],
                &report["failed"],
                &report["unexpected"]
            ),
            (&2500.into(), &2500.into(), &0.into(), &0.into()),
            "{report}"
        );
    }
    // Each client closed its lane; the kernel frees them.
    until("the lanes are reclaimed", Duration::from_secs(10), || {
        sab.clients().states().iter().all(|l| l.owner == 0)
    });
    // Files: results printed like b3sum.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hello.txt");
    std::fs::write(&input, b"hello").unwrap();
    let out = inos(&[
        "submit",
        "--sab",
        file.arg(),
        "--library",
        "crypto",
        "--method",
        "hash",
        input.to_str().unwrap(),
    ])
    .finish(Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = format!("{}  {}\n", blake3::hash(b"hello").to_hex(), input.display());
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    // A method the unit does not have is refused, by name.
    let out = inos(&[
        "submit",
        "--sab",
        file.arg(),
        "--library",
        "crypto",
        "--method",
        "nope",
        input.to_str().unwrap(),
    ])
    .finish(Duration::from_secs(60));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no method \"nope\""));
}

/// A client whose kernel is killed under it stops within seconds, and says how far it got.
#[test]
fn a_client_whose_kernel_dies_stops_and_says_how_far_it_got() {
    let file = ShmFile::new("kernel-dies");
    let (mut kernel, sab) = kernel(&file, &[]);
    let client = inos(&[
        "submit",
        "--sab",
        file.arg(),
        "--echo",
        "100000000",
        "--in-flight",
        "64",
    ]);
    until("the client's first results", Duration::from_secs(30), || {
        sab.clients().states().iter().any(|l| l.results_sent > 0)
    });
    kernel.kill();
    let out = client.finish(Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the kernel stopped during the run")
            && stderr.contains("of 100000000 jobs answered")
            && stderr.contains("is gone"),
        "{stderr}"
    );
}

/// Pushes echo jobs 1 to `count` through `client`'s lane as room allows; whether all went within
/// 60 s.
fn send_echo_jobs(client: &Client, count: u64) -> bool {
    let start = Instant::now();
    for id in 1..=count {
        let frame = Job::new(id, "echo", "echo", Payload::Inline(vec![1; 8])).encode();
        while client.push(&frame).is_err() {
            if start.elapsed() > Duration::from_secs(60) {
                return false;
            }
            client.notify();
            std::thread::yield_now();
        }
    }
    true
}

/// Jobs the stalling child sends: more than its result ring holds, so that the kernel keeps some
/// answered results waiting for room when the child is killed.
const STALLED_JOBS: u64 = 3_000;

/// Takes a client lane, sends `STALLED_JOBS` echo jobs and never reads a result, reserves a frame
/// it never commits, and sleeps until it is killed (at most 60 s).
#[test]
#[ignore = "a child process of the shared-SAB tests"]
fn child_client_stalls_mid_frame() {
    let sab = child_sab();
    let client = Client::connect(&sab).unwrap();
    assert!(send_echo_jobs(&client, STALLED_JOBS), "the kernel stopped taking jobs");
    client.reserve_without_commit(100).unwrap();
    client.notify();
    println!("stalled in lane {}", client.lane());
    std::thread::sleep(Duration::from_secs(60));
    std::mem::forget(client);
}

#[test]
fn a_client_killed_mid_frame_wedges_nothing_and_its_lane_is_reclaimed() {
    let _cores = crate::exclusive_cores();
    let file = ShmFile::new("mid-frame");
    let (_kernel, sab) = kernel(&file, &[]);
    let mut stalled = child("client_stalls_mid_frame", file.path(), &[]);
    until("the child's jobs are all taken", Duration::from_secs(60), || {
        sab.clients()
            .states()
            .iter()
            .any(|l| l.owner == stalled.pid() && l.frames_taken == STALLED_JOBS)
    });
    // Its result ring is full: the kernel holds answered jobs for it in the job table.
    until(
        "the kernel holds results for the child",
        Duration::from_secs(20),
        || sab.kernel_summary().0.answered > 0,
    );
    let others: Vec<ChildGuard> = (0..2)
        .map(|_| {
            inos(&[
                "submit",
                "--sab",
                file.arg(),
                "--echo",
                "2000",
                "--in-flight",
                "256",
                "--json",
            ])
        })
        .collect();
    stalled.kill();
    for client in others {
        let out = client.finish(Duration::from_secs(120));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["answered"], 2000, "{report}");
    }
    until("the dead client's lane is reclaimed", Duration::from_secs(20), || {
        let header = sab.processes().header();
        header.lanes_reclaimed >= 3 && header.frames_abandoned == 1
    });
    // Nothing of the dead client's stays in the job table: the results it never took are dropped.
    until("the job table empties", Duration::from_secs(20), || {
        let (jobs, _) = sab.kernel_summary();
        (jobs.queued, jobs.sent, jobs.answered) == (0, 0, 0)
    });
    assert!(sab.clients().states().iter().all(|l| l.owner == 0));
}

/// Jobs the child with a broken result ring tries to send: far more than the kernel takes before
/// its results pass the ring's end, where it reads the head the child broke.
const BROKEN_RING_JOBS: u64 = 20_000;

/// Takes a client lane, writes its result ring's head past the tail, sends `BROKEN_RING_JOBS`
/// echo jobs and sleeps until it is killed (at most 60 s).
#[test]
#[ignore = "a child process of the shared-SAB tests"]
fn child_client_breaks_its_result_ring() {
    let sab = child_sab();
    let client = Client::connect(&sab).unwrap();
    client.corrupt_result_head();
    // The kernel stops taking them once it finds the ring broken.
    send_echo_jobs(&client, BROKEN_RING_JOBS);
    client.notify();
    std::thread::sleep(Duration::from_secs(60));
    std::mem::forget(client);
}

/// A client that breaks its own result ring loses its lane, and nothing else: the kernel neither
/// stalls on it nor keeps its results.
#[test]
fn a_client_that_breaks_its_result_ring_breaks_only_its_lane() {
    let _cores = crate::exclusive_cores();
    let file = ShmFile::new("broken-results");
    let (_kernel, sab) = kernel(&file, &[]);
    let mut broken = child("client_breaks_its_result_ring", file.path(), &[]);
    until(
        "the broken client's requests are taken",
        Duration::from_secs(60),
        || {
            sab.clients()
                .states()
                .iter()
                .any(|l| l.owner == broken.pid() && l.frames_taken > 0)
        },
    );
    let out = inos(&[
        "submit",
        "--sab",
        file.arg(),
        "--echo",
        "1000",
        "--in-flight",
        "64",
        "--json",
    ])
    .finish(Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["answered"], 1000, "{report}");
    // The broken lane was refused: nothing more is taken from it, and none of its results waits
    // in the job table.
    let taken = || {
        let lanes = sab.clients().states();
        lanes.iter().find(|l| l.owner == broken.pid()).unwrap().frames_taken
    };
    let before = taken();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(taken(), before);
    assert!(before < BROKEN_RING_JOBS, "{before}");
    until("the job table empties", Duration::from_secs(20), || {
        let (jobs, _) = sab.kernel_summary();
        (jobs.queued, jobs.sent, jobs.answered) == (0, 0, 0)
    });
    broken.kill();
    until("the broken lane is reclaimed", Duration::from_secs(20), || {
        sab.clients().states().iter().all(|l| l.owner == 0)
    });
}

#[test]
fn live_inspect_shows_the_epochs_of_a_running_kernel_moving() {
    let _cores = crate::exclusive_cores();
    let file = ShmFile::new("inspect");
    let (_kernel, _sab) = kernel(&file, &[]);
    let out = inos(&[
        "inspect",
        "--live",
        file.arg(),
        "--watch",
        "0.3",
        "--count",
        "2",
        "--json",
    ])
    .finish(Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let frames: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(frames.len(), 2);
    let pulse = frames[1]["epoch_rates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SYSTEM_PULSE")
        .expect("the pulse moved between the two looks");
    assert!(pulse["per_second"].as_f64().unwrap() > 10.0, "{pulse}");
    let processes = frames[1]["report"]["processes"].as_array().unwrap();
    assert!(processes.iter().any(|p| p["role"] == "kernel"));
    assert!(processes.iter().any(|p| p["role"] == "inspector"));
    // The text view, once.
    let out = inos(&["inspect", "--live", file.arg()]).finish(Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PROCESSES") && text.contains("kernel lock: pid"),
        "{text}"
    );
}
