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

fn gene_batch(n: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let record = inos::sab::genes::GeneRecord {
                bird_id: 100 + i,
                fitness: f64::from(i),
                genes: [i as f32; 44],
            };
            bytemuck::bytes_of(&record).to_vec()
        })
        .collect()
}

fn evolve(input: Vec<u8>, params: JobParams) -> JobOutcome {
    let sab = Sab::for_tier(Tier::Light);
    let job = Job {
        params,
        ..Job::new(5, "boids", "evolve_batch", Payload::Inline(input))
    };
    run(&sab, &job, inos::units::boids::evolve_batch)
}

#[test]
fn evolve_batch_breeds_one_generation_keeping_the_elites_and_the_ids() {
    let seed = |s: u64| JobParams::Binary(s.to_le_bytes().to_vec());
    let outcome = evolve(gene_batch(8), seed(1));
    assert_eq!(outcome.status, JobStatus::Success, "{}", outcome.error);
    let out = output(&outcome);
    assert_eq!(out.len(), 8 * 188);
    let records: Vec<inos::sab::genes::GeneRecord> = out.chunks_exact(188).map(bytemuck::pod_read_unaligned).collect();
    // Ids in input order, fitness not yet evaluated, the two elites (25 %, at least 2) first.
    assert_eq!(
        records.iter().map(|r| r.bird_id).collect::<Vec<_>>(),
        (100..108).collect::<Vec<_>>()
    );
    assert!(records.iter().all(|r| { r.fitness } == 0.0));
    assert_eq!({ records[0].genes }, [7.0; 44]);
    assert_eq!({ records[1].genes }, [6.0; 44]);
    // Children come from the elites: crossover of 7s and 6s, or mutation within [-10, 10].
    assert!(
        records[2..]
            .iter()
            .all(|r| { r.genes }.iter().all(|g| (-10.0..=10.0).contains(g)))
    );
    // The same seed breeds the same generation; another seed another one.
    assert_eq!(evolve(gene_batch(8), seed(1)).output, outcome.output);
    assert_ne!(evolve(gene_batch(8), seed(2)).output, outcome.output);
}

#[test]
fn evolve_batch_refuses_malformed_batches() {
    let mut nan = gene_batch(4);
    nan[4..12].copy_from_slice(&f64::NAN.to_le_bytes());
    for (input, params) in [
        (gene_batch(4)[..187].to_vec(), JobParams::None),
        (gene_batch(1), JobParams::None),
        (nan, JobParams::None),
        (gene_batch(4), JobParams::Binary(vec![1, 2, 3])),
    ] {
        let outcome = evolve(input, params);
        assert_eq!(outcome.status, JobStatus::InvalidParams);
        assert!(!outcome.error.is_empty());
    }
}
