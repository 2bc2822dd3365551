//! The crypto and echo units' job execution: BLAKE3 golden digests, keyed hashes, constant-time
//! verification, inputs from the arena's data pages, and every bad input refused with its reason.

use inos::protocol::{Job, JobOutcome, JobParams, JobStatus, Payload, SabRange};
use inos::sab::{Sab, Tier};
use inos::units::{crypto, echo};

fn job(method: &str, input: Payload, params: JobParams) -> Job {
    Job {
        params,
        ..Job::new(9, "crypto", method, input)
    }
}

/// Through frames both ways, as the pipeline carries them.
fn run(sab: &Sab, job: &Job, execute: fn(&Sab, &Job) -> JobOutcome) -> JobOutcome {
    let outcome = execute(sab, &Job::decode(&job.encode()).unwrap());
    JobOutcome::decode(&outcome.encode()).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn output(o: &JobOutcome) -> &[u8] {
    match &o.output {
        Payload::Inline(bytes) => bytes,
        Payload::Sab(_) => panic!("inline output expected"),
    }
}

#[test]
fn hashes_match_the_blake3_test_vectors() {
    let sab = Sab::for_tier(Tier::Light);
    for (input, digest) in [
        (
            &b""[..],
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        ),
        (
            &b"abc"[..],
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
        ),
    ] {
        let o = run(
            &sab,
            &job("hash", Payload::Inline(input.to_vec()), JobParams::None),
            crypto::execute,
        );
        assert_eq!(o.status, JobStatus::Success, "{}", o.error);
        assert_eq!(hex(output(&o)), digest);
        assert_eq!((o.id, o.input_bytes, o.output_bytes), (9, input.len() as u64, 32));
    }
}

#[test]
fn keyed_hashes_and_verification() {
    let sab = Sab::for_tier(Tier::Light);
    let key = vec![7u8; 32];
    let data = b"the flock".to_vec();
    let keyed = run(
        &sab,
        &job(
            "keyed_hash",
            Payload::Inline(data.clone()),
            JobParams::Crypto {
                key: key.clone(),
                expected: vec![],
            },
        ),
        crypto::execute,
    );
    assert_eq!(output(&keyed), blake3::keyed_hash(&[7; 32], &data).as_bytes());
    assert_ne!(output(&keyed), blake3::hash(&data).as_bytes());

    let verify = |key: Vec<u8>, expected: Vec<u8>| {
        run(
            &sab,
            &job(
                "verify",
                Payload::Inline(data.clone()),
                JobParams::Crypto { key, expected },
            ),
            crypto::execute,
        )
    };
    assert_eq!(output(&verify(key.clone(), output(&keyed).to_vec())), [1]);
    assert_eq!(output(&verify(vec![], blake3::hash(&data).as_bytes().to_vec())), [1]);
    assert_eq!(
        output(&verify(vec![], output(&keyed).to_vec())),
        [0],
        "unkeyed against a keyed digest"
    );
    let mut wrong = output(&keyed).to_vec();
    wrong[31] ^= 1;
    assert_eq!(output(&verify(key.clone(), wrong)), [0]);

    for (o, why) in [
        (verify(key.clone(), vec![0; 31]), "32 bytes, not 31"),
        (verify(vec![1; 16], vec![0; 32]), "32 bytes, not 16"),
        (
            run(
                &sab,
                &job("keyed_hash", Payload::Inline(data.clone()), JobParams::None),
                crypto::execute,
            ),
            "needs a 32-byte key",
        ),
        (
            run(
                &sab,
                &job("sign", Payload::Inline(data.clone()), JobParams::None),
                crypto::execute,
            ),
            "no method \"sign\"",
        ),
    ] {
        assert_eq!(o.status, JobStatus::InvalidParams);
        assert!(o.error.contains(why), "{:?} should say {why:?}", o.error);
    }
}

#[test]
fn inputs_come_from_the_arena_data_pages_checked_at_both_ends() {
    let sab = Sab::for_tier(Tier::Light);
    let heap = sab.arena().data_range();
    let data: Vec<u8> = (0..1024u32).map(|i| (i % 253) as u8).collect();
    sab.write(heap.offset, &data).unwrap();
    let range = |offset: usize, length: u32| {
        Payload::Sab(SabRange {
            offset: offset as u64,
            length,
        })
    };
    let o = run(
        &sab,
        &job("hash", range(heap.offset, 1024), JobParams::None),
        crypto::execute,
    );
    assert_eq!(output(&o), blake3::hash(&data).as_bytes());
    let e = run(
        &sab,
        &job("echo", range(heap.offset, 1024), JobParams::None),
        echo::execute,
    );
    assert_eq!((e.status, output(&e)), (JobStatus::Success, &data[..]));

    for (payload, why) in [
        (range(0x6C0, 96), "not inside the arena's data pages"),
        // The allocator's own header and tables, at the start of the arena heap.
        (
            range(sab.layout().arena_heap().offset, 64),
            "not inside the arena's data pages",
        ),
        (
            range(heap.offset + heap.size - 8, 16),
            "not inside the arena's data pages",
        ),
        (range(heap.offset + 2, 16), "not whole 4-byte words"),
    ] {
        for o in [
            run(&sab, &job("hash", payload.clone(), JobParams::None), crypto::execute),
            run(&sab, &job("echo", payload.clone(), JobParams::None), echo::execute),
        ] {
            assert_eq!(o.status, JobStatus::InvalidParams);
            assert!(o.error.contains(why), "{:?} should say {why:?}", o.error);
        }
    }
}
