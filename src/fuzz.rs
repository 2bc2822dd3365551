//! The harnesses of the fuzz targets (`fuzz/`, `cargo +nightly fuzz run TARGET`): every decoder of
//! untrusted bytes, driven with arbitrary input. Each harness panics only on a real finding: a
//! decoder that panics or hangs, a decoded value that does not survive its own encoding, a reader
//! that accepts what it must refuse, or bad bytes that reach the flock.
//!
//! They live in the crate (not in `fuzz/`) so that `cargo test` replays the checked-in corpus
//! (`fuzz/corpus/TARGET/`) through them on the stable toolchain, and so that the corpus is written
//! by the same code that reads it (`Target::seeds`).
//!
//! Input formats: the protocol targets take a frame as it would arrive on a ring. The SAB targets
//! take a list of patches, each `[offset u32 LE][length u8][bytes]`, applied to a SAB that a
//! running kernel could have left (modules registered, supervisors allocated, engines and audit
//! records written, a generation of genes published): the offsets fall inside the patched region
//! (modulo its size), so every input lands in bytes a reader interprets.

use std::path::Path;
use std::sync::OnceLock;

use crate::inspect::SabReport;
use crate::protocol::{Job, JobOutcome, OutboxFrame, Syscall, SyscallResponse};
use crate::sab::engines::{AuditKind, AuditRecord, Engine};
use crate::sab::generated as g;
use crate::sab::genes::GeneRecord;
use crate::sab::snapshot::SNAPSHOT_HEADER_SIZE;
use crate::sab::{JobRecord, ModuleSpec, Owner, PatternRecord, Sab, SabLayout, Tier};
use crate::units::boids::{Flock, FlockParams, check_records};

/// The fuzz targets, by the name of their file in `fuzz/fuzz_targets/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A job frame on the inbox ring (`Job::decode`).
    JobFrame,
    /// A frame on the outbox-kernel ring: a job outcome or a syscall envelope (`OutboxFrame`).
    OutboxFrame,
    /// A syscall response on the outbox-host ring (`SyscallResponse::decode`).
    SyscallResponse,
    /// A snapshot file, through `inos inspect`'s path: the header checks, and for bodies that
    /// pass them, the report of every region.
    Snapshot,
    /// The records readers interpret in a SAB: registry entries, supervisor headers, engine
    /// records, the audit log, the pattern exchange and the job history.
    SabRecords,
    /// The gene buffer, merged into a live flock.
    GeneRecords,
}

impl Target {
    pub const ALL: [Self; 6] = [
        Self::JobFrame,
        Self::OutboxFrame,
        Self::SyscallResponse,
        Self::Snapshot,
        Self::SabRecords,
        Self::GeneRecords,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::JobFrame => "job_frame",
            Self::OutboxFrame => "outbox_frame",
            Self::SyscallResponse => "syscall_response",
            Self::Snapshot => "snapshot",
            Self::SabRecords => "sab_records",
            Self::GeneRecords => "gene_records",
        }
    }

    /// Runs the harness on one input.
    pub fn run(self, data: &[u8]) {
        match self {
            Self::JobFrame => job_frame(data),
            Self::OutboxFrame => outbox_frame(data),
            Self::SyscallResponse => syscall_response(data),
            Self::Snapshot => snapshot(data),
            Self::SabRecords => sab_records(data),
            Self::GeneRecords => gene_records(data),
        }
    }

    /// The seed corpus: real frames and real SAB bytes, as the running system makes them.
    pub fn seeds(self) -> Vec<Vec<u8>> {
        match self {
            Self::JobFrame => seed_jobs().iter().map(Job::encode).collect(),
            Self::OutboxFrame => seed_outcomes()
                .iter()
                .map(JobOutcome::encode)
                .chain(seed_syscalls().iter().map(Syscall::encode))
                .collect(),
            Self::SyscallResponse => seed_responses().iter().map(SyscallResponse::encode).collect(),
            Self::Snapshot => {
                let header = baseline_header().to_vec();
                let mut short = header.clone();
                short.extend_from_slice(&[0; 64]);
                vec![[header.as_slice(), &[1]].concat(), short, header]
            }
            Self::SabRecords => {
                let metrics = std::mem::offset_of!(crate::sab::engines::EngineRecord, metric_count) as u32;
                vec![
                    patch(g::REGISTRY_OFFSET, &[1; 8]),
                    patch(g::SUPERVISOR_HEADERS_OFFSET, &[0xff; 16]),
                    patch(g::AUDIT_LOG_OFFSET, &[3, 0, 0, 0]),
                    patch(g::ENGINE_STATE_OFFSET + metrics, &[200, 0, 0, 0]),
                    patch(g::OBSTACLE_TABLE_OFFSET, &[7; 32]),
                ]
            }
            Self::GeneRecords => {
                let record = GeneRecord {
                    bird_id: 3,
                    fitness: 0.5,
                    genes: [0.25; 44],
                };
                let mut nan = record;
                nan.genes[7] = f32::NAN;
                vec![
                    patch(0, bytemuck::bytes_of(&record)),
                    patch(2 * g::GENE_RECORD_SIZE, bytemuck::bytes_of(&nan)),
                    patch(5, &[0x7f; 40]),
                ]
            }
        }
    }
}

/// One patch of the SAB targets' input format.
pub fn patch(offset: u32, bytes: &[u8]) -> Vec<u8> {
    let len = u8::try_from(bytes.len()).expect("a patch is at most 255 bytes");
    [&offset.to_le_bytes()[..], &[len], bytes].concat()
}

/// Applies `data`'s patches to `bytes` (each offset taken modulo its length).
fn apply_patches(bytes: &mut [u8], mut data: &[u8]) {
    while data.len() >= 5 {
        let at = u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) as usize % bytes.len();
        let len = usize::from(data[4]).min(data.len() - 5).min(bytes.len() - at);
        bytes[at..at + len].copy_from_slice(&data[5..5 + len]);
        data = &data[5 + len..];
    }
}

/// Decoding, then encoding what was decoded, must reach a fixed point: the encoding of a decoded
/// value decodes to a value with the same encoding. (Bytes are compared, not values: a NaN in a
/// parameter is a legitimate value that is not equal to itself.)
fn round_trip<T>(first: &T, encode: impl Fn(&T) -> Vec<u8>, decode: impl Fn(&[u8]) -> Option<T>) {
    let bytes = encode(first);
    let again = decode(&bytes).expect("an encoded value decodes");
    assert_eq!(encode(&again), bytes, "the encoding is not a fixed point");
}

fn job_frame(data: &[u8]) {
    if let Ok(job) = Job::decode(data) {
        // What the kernel would have refused, the host must not be asked to run; what it accepts
        // comes out of the host's decoder the same.
        if job.check().is_ok() {
            round_trip(&job, Job::encode, |b| Job::decode(b).ok());
        }
    }
}

fn outbox_frame(data: &[u8]) {
    match OutboxFrame::decode(data) {
        Ok(OutboxFrame::Result(outcome)) => round_trip(&outcome, JobOutcome::encode, |b| JobOutcome::decode(b).ok()),
        Ok(OutboxFrame::Syscall(call)) => round_trip(&call, Syscall::encode, |b| Syscall::decode(b).ok()),
        Err(_) => {}
    }
}

fn syscall_response(data: &[u8]) {
    if let Ok(response) = SyscallResponse::decode(data) {
        round_trip(&response, SyscallResponse::encode, |b| SyscallResponse::decode(b).ok());
    }
}

/// The snapshot target: the first byte chooses the body. Odd: the rest is the file itself
/// (header, then whatever body), read as `inos inspect` reads a file. Even: the rest is patches
/// to the baseline SAB, which is then written out as a valid snapshot (header and hash right) and
/// read back and reported on, as `inos inspect` would.
fn snapshot(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz.snap");
    if mode & 1 == 1 {
        let _ = Sab::read_snapshot_from(path, rest, rest.len() as u64);
        return;
    }
    let sab = patched_baseline(rest);
    let mut file = baseline_header().to_vec();
    let body_start = file.len();
    file.resize(body_start + sab.len(), 0);
    sab.copy_out(0, &mut file[body_start..]).expect("the whole SAB");
    let hash = blake3::hash(&file[body_start..]);
    file[body_hash_range()].copy_from_slice(hash.as_bytes());
    if let Ok((read, header)) = Sab::read_snapshot_from(path, file.as_slice(), file.len() as u64) {
        let report = SabReport::new(&read, Some(&header));
        let _ = report.to_text();
    }
}

/// The header `write_snapshot` gives the baseline, its body hash zeroed (the harness writes the
/// hash of the body it makes; the baseline's own changes with the clock it stamps records with).
fn baseline_header() -> &'static [u8] {
    static HEADER: OnceLock<Vec<u8>> = OnceLock::new();
    HEADER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("inos-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("baseline.snap");
        baseline().write_snapshot(&path).expect("a snapshot of the baseline");
        let mut header = vec![0u8; SNAPSHOT_HEADER_SIZE];
        std::io::Read::read_exact(&mut std::fs::File::open(&path).expect("just written"), &mut header)
            .expect("a whole header");
        let _ = std::fs::remove_dir_all(&dir);
        header[body_hash_range()].fill(0);
        header
    })
}

fn body_hash_range() -> std::ops::Range<usize> {
    let start = std::mem::offset_of!(crate::sab::snapshot::SnapshotHeader, body_hash);
    start..start + 32
}

/// Everything a reader of the SAB interprets, read after `data`'s patches over the fixed regions
/// (everything before the streams), and written again through the writers.
fn sab_records(data: &[u8]) {
    let sab = patched_baseline(data);
    let report = SabReport::new(&sab, None);
    let _ = report.to_text();
    let registry = sab.registry();
    let _ = registry.lookup("crypto");
    let _ = registry.dependency_order();
    let _ = registry.register(&ModuleSpec::cpu_unit("newcomer", 1, &["newcomer:run"]), Owner::Kernel);
    let _ = sab.supervisors().allocate("newcomer", Owner::Kernel);
    let _ = sab.patterns().live();
    if let Ok(mut writer) = sab.patterns().writer(Owner::Kernel) {
        let _ = writer.upsert(PatternRecord::new(99, 1));
    }
    let _ = sab.job_history().records();
    let _ = crate::sab::HistoryReader::default()
        .read(&sab, &mut crate::sab::HistoryCursor::default())
        .len();
    let _ = sab.job_history().append(&[JobRecord::default()], Owner::Kernel);
    sab.engines().publish(Engine::Health, &[1.0, 2.0]);
    sab.audit_log().append(&[AuditRecord::default()]);
    let mut table = Vec::new();
    let _ = sab.obstacles().read_into(&mut table);
}

/// The gene buffer after `data`'s patches, merged into a flock: refused whole, or merged and the
/// flock stays finite.
fn gene_records(data: &[u8]) {
    let sab = Sab::for_tier(Tier::Light);
    let birds = 64;
    let mut genes = bytemuck::cast_slice::<GeneRecord, u8>(&baseline_genes(birds)).to_vec();
    apply_patches(&mut genes, data);
    sab.write(sab.layout().spec().gene_buffer.offset, &genes)
        .expect("the gene buffer");
    let mut flock = Flock::new(
        birds,
        FlockParams {
            threads: 1,
            ..FlockParams::default()
        },
    );
    if flock.merge_genes(&sab).is_ok() {
        for _ in 0..2 {
            flock.step(1.0 / 64.0, &[]);
        }
        if let Err(e) = check_records(flock.birds()) {
            panic!("merged genes made the flock diverge: {e}");
        }
    }
}

fn baseline_genes(birds: usize) -> Vec<GeneRecord> {
    (0..birds)
        .map(|i| GeneRecord {
            bird_id: i as u32,
            fitness: 0.0,
            genes: std::array::from_fn(|g| ((i * 7 + g) % 20) as f32 * 0.5 - 5.0),
        })
        .collect()
}

/// The SAB of a kernel that has run a while: modules and their tables, supervisors, engine and
/// audit records, patterns, job history, a generation of genes and a published flock.
pub fn baseline() -> &'static Sab {
    static BASELINE: OnceLock<Sab> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let sab = Sab::for_tier(Tier::Light);
        let registry = sab.registry();
        for (id, caps) in [
            ("crypto", &["crypto:hash", "crypto:verify"][..]),
            ("echo", &["echo:echo"]),
            ("boids", &["boids:evolve_batch", "heartbeat:pulse"]),
        ] {
            registry
                .register(&ModuleSpec::cpu_unit(id, 4, caps), Owner::Kernel)
                .expect("the baseline's modules register");
        }
        for id in ["root", "crypto", "echo", "boids"] {
            sab.supervisors()
                .allocate(id, Owner::Kernel)
                .expect("the pool has room");
        }
        for engine in Engine::ALL {
            sab.engines().publish(engine, &[1.0, 2.0, 3.0]);
        }
        let audit = AuditRecord {
            kind: AuditKind::RateLimited as u32,
            job_id: 7,
            ..AuditRecord::default()
        };
        sab.audit_log().append(&[audit; 3]);
        if let Ok(mut writer) = sab.patterns().writer(Owner::Kernel) {
            let _ = writer.upsert(PatternRecord::new(0x1234, 2));
        }
        let _ = sab.job_history().append(&[JobRecord::default(); 4], Owner::Kernel);
        let _ = sab.genes().publish(&baseline_genes(16), Owner::Kernel);
        let flock = Flock::new(16, FlockParams::default());
        if let Ok(mut writer) = sab.stream(crate::sab::StreamId::Birds).writer(Owner::Module) {
            let _ = writer.publish(flock.birds());
        }
        sab
    })
}

/// A copy of the baseline with `data`'s patches over its fixed regions (everything before the
/// streams: header, epochs, tables, registry, supervisors, engine records, rings' control blocks,
/// arena metadata, guards, stream control and the obstacle table).
fn patched_baseline(data: &[u8]) -> Sab {
    let base = baseline();
    let fixed = SabLayout::for_tier(Tier::Light).spec().bird_buffers[0].offset;
    let mut bytes = vec![0u8; fixed];
    base.copy_out(0, &mut bytes).expect("the fixed regions");
    apply_patches(&mut bytes, data);
    let sab = Sab::for_tier(Tier::Light);
    sab.write(0, &bytes).expect("the fixed regions");
    sab
}

fn seed_jobs() -> Vec<Job> {
    use crate::protocol::{JobParams, Payload, SabRange};
    let mut hash = Job::new(1, "crypto", "hash", Payload::Inline(b"hello".to_vec()));
    hash.metadata = vec![("source".into(), "inspector".into())];
    hash.deadline_ms = 1_700_000_000_000;
    let mut verify = Job::new(
        2,
        "crypto",
        "verify",
        Payload::Sab(SabRange {
            offset: 0x4A_0000,
            length: 64,
        }),
    );
    verify.params = JobParams::Crypto {
        key: vec![7; 32],
        expected: vec![1; 32],
    };
    let mut evolve = Job::new(3, "boids", "evolve_batch", Payload::Inline(vec![0; 188 * 2]));
    evolve.params = JobParams::Binary(42u64.to_le_bytes().to_vec());
    vec![
        hash,
        verify,
        evolve,
        Job::new(4, "echo", "echo", Payload::Inline(vec![])),
    ]
}

fn seed_outcomes() -> Vec<JobOutcome> {
    use crate::protocol::{JobStatus, Payload};
    vec![
        JobOutcome::new(1, JobStatus::Success, Payload::Inline(vec![9; 32])),
        JobOutcome::failed(
            2,
            JobStatus::InvalidParams,
            "gene record 0 holds a value that is not finite",
        ),
    ]
}

fn seed_syscalls() -> Vec<Syscall> {
    use crate::protocol::SyscallBody;
    [
        SyscallBody::Noop,
        SyscallBody::SpawnThread { unit: "echo".into() },
        SyscallBody::SendMessage {
            target: 7,
            payload: b"ping".to_vec(),
            priority: 1,
        },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, body)| Syscall {
        flags: 0,
        source_module: crate::sab::registry::id_hash("echo"),
        call_id: i as u64 + 1,
        body,
    })
    .collect()
}

fn seed_responses() -> Vec<SyscallResponse> {
    use crate::protocol::{SyscallResult, SyscallStatus};
    vec![
        SyscallResponse {
            call_id: 1,
            status: SyscallStatus::Success,
            result: SyscallResult::None,
            error: String::new(),
        },
        SyscallResponse {
            call_id: 2,
            status: SyscallStatus::NotFound,
            result: SyscallResult::SendMessage { delivered: true },
            error: String::new(),
        },
    ]
}
