//! The fuzz targets' corpus (`fuzz/corpus/TARGET/`), replayed through their harnesses on the
//! stable toolchain: every input the fuzzer kept, and the seeds (real frames and SAB bytes, made
//! by `Target::seeds`), must run without a finding. `INOS_REGENERATE=1` rewrites the seeds.

use std::path::PathBuf;

use inos::fuzz::Target;

fn corpus(target: Target) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target.name())
}

#[test]
fn the_seeds_are_checked_in_and_every_corpus_input_runs_clean() {
    for target in Target::ALL {
        let dir = corpus(target);
        let seeds = target.seeds();
        assert!(!seeds.is_empty(), "{}", target.name());
        if std::env::var_os("INOS_REGENERATE").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
            }
        }
        for (i, seed) in seeds.iter().enumerate() {
            let path = dir.join(format!("seed-{i}"));
            let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                stored == *seed,
                "{} is stale: run `INOS_REGENERATE=1 cargo test --test it fuzz_corpus` and commit the result",
                path.display()
            );
        }
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let finding = std::panic::catch_unwind(|| target.run(&data));
            assert!(finding.is_ok(), "{} fails on {}", target.name(), path.display());
            inputs += 1;
        }
        assert!(inputs >= seeds.len(), "{}", target.name());
    }
}

/// The harnesses find what they must: a frame the decoder accepts that does not re-encode to
/// itself would panic, and so would a NaN gene that reached the flock. Here, the fixed decoders
/// and the gene check hold on inputs built to tempt them.
#[test]
fn the_harnesses_reject_what_must_be_refused() {
    use inos::sab::genes::GeneRecord;
    // Genes out of range or not numbers are refused whole; the flock never sees them.
    for bad in [f32::NAN, f32::INFINITY, 10.5, -1e30] {
        let mut record = GeneRecord {
            bird_id: 1,
            fitness: 0.0,
            genes: [0.0; 44],
        };
        record.genes[3] = bad;
        Target::GeneRecords.run(&inos::fuzz::patch(188, bytemuck::bytes_of(&record)));
    }
    // Truncations of every seed decode or fail cleanly.
    for target in [Target::JobFrame, Target::OutboxFrame, Target::SyscallResponse] {
        for seed in target.seeds() {
            for end in 0..seed.len() {
                target.run(&seed[..end]);
            }
        }
    }
}
