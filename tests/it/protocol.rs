//! The wire protocol: jobs and syscalls round-trip through framed, unpacked Cap'n Proto (and
//! through a SAB ring); untrusted frames of any shape decode to a typed error, never a panic.

use capnp::message::Builder;
use inos::protocol::generated::syscall_capnp::{self as sc, message};
use inos::protocol::{
    FrameError, Job, JobOutcome, JobParams, JobStatus, MAX_FRAME_BYTES, Opcode, Payload, PhysicsCall, SabRange,
    Syscall, SyscallBody, SyscallResponse, SyscallResult, SyscallStatus,
};
use inos::sab::{Owner, RingId, Sab, Tier};
use proptest::prelude::*;

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Payload::Inline),
        (any::<u64>(), any::<u32>()).prop_map(|(offset, length)| Payload::Sab(SabRange { offset, length })),
    ]
}

fn floats() -> impl Strategy<Value = [f32; 3]> {
    proptest::array::uniform3(-1e6f32..1e6)
}

fn params() -> impl Strategy<Value = JobParams> {
    prop_oneof![
        Just(JobParams::None),
        (
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(key, expected)| JobParams::Crypto { key, expected }),
        (any::<bool>(), floats(), floats(), any::<bool>()).prop_map(|(cuboid, size, at, dynamic)| {
            JobParams::Physics(PhysicsCall::SpawnBody {
                cuboid,
                size,
                at,
                dynamic,
            })
        }),
        any::<u32>().prop_map(|steps| JobParams::Physics(PhysicsCall::Step { steps })),
        (floats(), floats(), 0f32..1e4).prop_map(|(origin, direction, max_distance)| {
            JobParams::Physics(PhysicsCall::Raycast {
                origin,
                direction,
                max_distance,
            })
        }),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(JobParams::Binary),
    ]
}

prop_compose! {
    fn job()(
        id in any::<u64>(),
        library in "[a-z]{1,11}",
        method in "[a-z_]{0,20}",
        input in payload(),
        params in params(),
        budget in any::<u64>(),
        priority in any::<u8>(),
        timeout_ms in any::<u64>(),
        deadline_ms in any::<u64>(),
        metadata in proptest::collection::vec(("[a-z]{1,8}", "\\PC{0,12}"), 0..4),
    ) -> Job {
        Job { id, library, method, input, params, budget, priority, timeout_ms, deadline_ms, metadata }
    }
}

fn syscall_body() -> impl Strategy<Value = SyscallBody> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
    let range = || (any::<u64>(), any::<u32>()).prop_map(|(offset, length)| SabRange { offset, length });
    prop_oneof![
        Just(SyscallBody::Noop),
        (bytes(), any::<u8>(), range()).prop_map(|(hash, priority, destination)| SyscallBody::FetchChunk {
            hash,
            priority,
            destination
        }),
        (bytes(), range(), any::<u32>()).prop_map(|(hash, source, ttl)| SyscallBody::StoreChunk { hash, source, ttl }),
        (any::<u32>(), bytes(), any::<u8>()).prop_map(|(target, payload, priority)| SyscallBody::SendMessage {
            target,
            payload,
            priority
        }),
        "[a-z]{1,11}".prop_map(|unit| SyscallBody::SpawnThread { unit }),
        "[a-z]{1,11}".prop_map(|unit| SyscallBody::KillThread { unit }),
        ("[a-z.]{1,20}", bytes()).prop_map(|(service, payload)| SyscallBody::HostCall { service, payload }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn jobs_round_trip(job in job()) {
        let frame = job.encode();
        // One segment: the builder's first segment is sized to the job.
        prop_assert_eq!(&frame[..4], &[0u8; 4]);
        prop_assert_eq!(Job::decode(&frame).unwrap(), job);
    }

    /// Jobs encoded one after another into one buffer (through the thread's reused scratch
    /// segment, or a heap segment for one too large for it) and decoded into one reused job each
    /// come back exactly, in one segment: nothing of an earlier job leaks into a later one.
    #[test]
    fn reused_buffers_encode_and_decode_exactly(jobs in proptest::collection::vec((job(), any::<bool>()), 1..6)) {
        let mut frame = Vec::new();
        let mut decoded = Job::new(0, "stale", "stale", Payload::Inline(vec![1, 2, 3]));
        for (mut job, large) in jobs {
            if large {
                job.input = Payload::Inline(vec![0xA5; 20_000]);
            }
            job.encode_into(job.id, &mut frame);
            prop_assert_eq!(&frame[..4], &[0u8; 4]);
            Job::decode_into(&frame, &mut decoded).unwrap();
            prop_assert_eq!(&decoded, &job);
        }
    }

    /// `Job::check` (what `submit` runs instead of decoding its own frame) agrees with the decoder.
    #[test]
    fn job_check_agrees_with_decode(mut job in job(), entries in 0usize..80) {
        job.metadata = (0..entries).map(|k| (format!("k{k}"), String::new())).collect();
        prop_assert_eq!(job.check(), Job::decode(&job.encode()).map(drop));
    }

    #[test]
    fn job_results_round_trip(
        id in any::<u64>(),
        status in 0usize..7,
        output in payload(),
        numbers in proptest::array::uniform6(any::<u64>()),
        error in "\\PC{0,30}",
        retryable in any::<bool>(),
    ) {
        let statuses = [
            JobStatus::Success, JobStatus::Failed, JobStatus::BudgetExceeded,
            JobStatus::Timeout, JobStatus::InvalidParams, JobStatus::Rejected, JobStatus::Crashed,
        ];
        let outcome = JobOutcome {
            id,
            status: statuses[status],
            output,
            cost: numbers[0],
            execution_time_ns: numbers[1],
            error,
            retryable,
            cpu_ns: numbers[2],
            peak_memory_bytes: numbers[3],
            input_bytes: numbers[4],
            output_bytes: numbers[5],
        };
        prop_assert_eq!(JobOutcome::decode(&outcome.encode()).unwrap(), outcome);
    }

    #[test]
    fn syscalls_round_trip(flags in any::<u8>(), source_module in any::<u32>(), call_id in any::<u64>(), body in syscall_body()) {
        let call = Syscall { flags, source_module, call_id, body };
        prop_assert_eq!(Syscall::decode(&call.encode()).unwrap(), call);
    }

    /// Arbitrary bytes, and every prefix of a valid frame, decode to an error or a value, never a
    /// panic; a strict prefix is always an error.
    #[test]
    fn untrusted_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), job in job()) {
        let _ = Job::decode(&bytes);
        let _ = JobOutcome::decode(&bytes);
        let _ = Syscall::decode(&bytes);
        let _ = SyscallResponse::decode(&bytes);
        let frame = job.encode();
        for cut in [0, 1, 4, 7, 8, frame.len() / 2, frame.len() - 1] {
            prop_assert!(Job::decode(&frame[..cut]).is_err(), "a {}-byte prefix of {} decoded", cut, frame.len());
        }
    }
}

#[test]
fn responses_round_trip() {
    for result in [
        SyscallResult::None,
        SyscallResult::FetchChunk {
            bytes: 4096,
            hash_verified: true,
        },
        SyscallResult::StoreChunk {
            hash: vec![7; 32],
            replicas: 1,
        },
        SyscallResult::SendMessage { delivered: false },
        SyscallResult::HostCall {
            payload: b"ok".to_vec(),
        },
    ] {
        let response = SyscallResponse {
            call_id: 42,
            status: SyscallStatus::OutOfBounds,
            result,
            error: "destination [0x10, +4096) runs past the SAB".into(),
        };
        assert_eq!(SyscallResponse::decode(&response.encode()).unwrap(), response);
    }
}

/// A header written by hand, with any magic, version and opcode, over a noop body.
fn envelope(magic: u32, version: u8, opcode: sc::Opcode) -> Vec<u8> {
    let mut builder = Builder::new_default();
    let mut m = builder.init_root::<message::Builder>();
    let mut h = m.reborrow().init_header();
    h.set_magic(magic);
    h.set_version(version);
    h.set_opcode(opcode);
    m.init_body().set_noop(());
    capnp::serialize::write_message_to_words(&builder)
}

#[test]
fn envelopes_are_checked_for_magic_version_and_opcode() {
    assert_eq!(
        Syscall::decode(&envelope(sc::MAGIC, sc::VERSION, sc::Opcode::Noop))
            .unwrap()
            .body,
        SyscallBody::Noop
    );
    assert_eq!(
        Syscall::decode(&envelope(0x1234_5678, sc::VERSION, sc::Opcode::Noop)),
        Err(FrameError::BadMagic { found: 0x1234_5678 })
    );
    assert_eq!(
        Syscall::decode(&envelope(sc::MAGIC, 9, sc::Opcode::Noop)),
        Err(FrameError::UnsupportedVersion { found: 9 })
    );
    assert_eq!(
        Syscall::decode(&envelope(sc::MAGIC, sc::VERSION, sc::Opcode::KillThread)),
        Err(FrameError::OpcodeMismatch {
            header: Opcode::KillThread,
            body: Opcode::Noop
        })
    );
}

#[test]
fn oversized_trailing_and_hostile_frames_are_typed_errors() {
    let job = Job::new(1, "echo", "echo", Payload::Inline(vec![1, 2, 3]));
    let mut frame = job.encode();
    let huge = vec![0u8; MAX_FRAME_BYTES + 8];
    assert_eq!(
        Job::decode(&huge),
        Err(FrameError::TooLarge {
            len: MAX_FRAME_BYTES + 8,
            max: MAX_FRAME_BYTES
        })
    );
    frame.extend_from_slice(&[0; 8]);
    assert_eq!(Job::decode(&frame), Err(FrameError::TrailingBytes { len: 8 }));
    // A segment table that claims 2^31 segments, and one that claims a 4 GiB segment.
    for hostile in [
        [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0],
        [0, 0, 0, 0, 0xff, 0xff, 0xff, 0x1f],
    ] {
        assert!(
            matches!(Job::decode(&hostile), Err(FrameError::Malformed(_))),
            "{hostile:?}"
        );
    }
    // A valid message of another type: its fields read as garbage or defaults, never a panic.
    let response = SyscallResponse {
        call_id: 1,
        status: SyscallStatus::Success,
        result: SyscallResult::None,
        error: String::new(),
    }
    .encode();
    let _ = Job::decode(&response);
}

#[test]
fn a_job_frame_crosses_the_inbox_ring_intact() {
    let sab = Sab::for_tier(Tier::Light);
    let ring = sab.ring(RingId::Inbox);
    let producer = ring.producer(Owner::Kernel).unwrap();
    let mut consumer = ring.consumer().unwrap();
    let mut job = Job::new(
        77,
        "crypto",
        "hash",
        Payload::Sab(SabRange {
            offset: 0x150000,
            length: 4096,
        }),
    );
    job.priority = 200;
    job.deadline_ms = 1_800_000_000_000;
    job.metadata = vec![("workflow".into(), "w1".into())];
    producer.push(&job.encode()).unwrap();
    let mut buf = vec![0u8; ring.max_payload()];
    let n = consumer.read_into(&mut buf).unwrap().expect("one frame");
    assert_eq!(Job::decode(&buf[..n]).unwrap(), job);
}

#[test]
fn a_job_with_too_much_metadata_is_refused() {
    let mut job = Job::new(1, "echo", "echo", Payload::Inline(vec![]));
    job.metadata = vec![(String::new(), String::new()); 65];
    assert_eq!(
        Job::decode(&job.encode()),
        Err(FrameError::TooMany {
            field: "metadata",
            len: 65,
            max: 64
        })
    );
    job.metadata.truncate(64);
    assert_eq!(Job::decode(&job.encode()).unwrap(), job);
}
