//! The chunk store syscalls: store and fetch round-trip bytes through the store under their
//! BLAKE3 hash, in frames, and every bad range, hash or size gets its status with the SAB left as
//! it was.

use inos::protocol::{SabRange, Syscall, SyscallBody, SyscallResponse, SyscallResult, SyscallStatus};
use inos::sab::{Owner, Sab, Tier};
use inos::supervisors::chunks::ChunkStore;

fn call(call_id: u64, body: SyscallBody) -> Syscall {
    Syscall {
        flags: 0,
        source_module: 7,
        call_id,
        body,
    }
}

fn store(hash: Vec<u8>, offset: u64, length: u32, ttl: u32) -> SyscallBody {
    SyscallBody::StoreChunk {
        hash,
        source: SabRange { offset, length },
        ttl,
    }
}

fn fetch(hash: Vec<u8>, offset: u64, length: u32) -> SyscallBody {
    SyscallBody::FetchChunk {
        hash,
        priority: 0,
        destination: SabRange { offset, length },
    }
}

/// Through frames, as a module would send it and read the answer.
fn syscall(store: &mut ChunkStore, sab: &Sab, c: Syscall, now_ms: u64) -> SyscallResponse {
    let decoded = Syscall::decode(&c.encode()).unwrap();
    SyscallResponse::decode(&store.handle(sab, &decoded, now_ms).encode()).unwrap()
}

fn bytes_at(sab: &Sab, offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    sab.copy_out(offset as usize, &mut out).unwrap();
    out
}

#[test]
fn chunks_round_trip_through_the_store_by_hash() {
    let sab = Sab::for_tier(Tier::Light);
    let block = |len| sab.arena().alloc(len, Owner::Kernel).unwrap().offset as u64;
    let (a, b) = (block(4096), block(8192));
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
    sab.write(a as usize, &data).unwrap();
    let mut chunks = ChunkStore::new(&sab);

    let stored = syscall(&mut chunks, &sab, call(1, store(vec![], a, 4096, 0)), 0);
    assert_eq!(stored.call_id, 1);
    assert_eq!(stored.status, SyscallStatus::Success, "{}", stored.error);
    let hash = blake3::hash(&data).as_bytes().to_vec();
    assert_eq!(
        stored.result,
        SyscallResult::StoreChunk {
            hash: hash.clone(),
            replicas: 1
        }
    );
    // Storing the same bytes again (with their hash claimed) keeps one copy.
    let again = syscall(&mut chunks, &sab, call(2, store(hash.clone(), a, 4096, 0)), 0);
    assert_eq!(again.status, SyscallStatus::Success);
    assert_eq!((chunks.len(), chunks.bytes()), (1, 4096));

    let fetched = syscall(&mut chunks, &sab, call(3, fetch(hash, b, 8192)), 0);
    assert_eq!(fetched.status, SyscallStatus::Success, "{}", fetched.error);
    assert_eq!(
        fetched.result,
        SyscallResult::FetchChunk {
            bytes: 4096,
            hash_verified: true
        }
    );
    assert_eq!(bytes_at(&sab, b, 4096), data);
}

#[test]
fn bad_ranges_hashes_and_sizes_get_their_status_and_leave_the_sab_alone() {
    let sab = Sab::for_tier(Tier::Light);
    let heap = sab.arena().data_range();
    // The test's own block (the store allocates the chunks' blocks from the same heap).
    let start = sab.arena().alloc(4096, Owner::Kernel).unwrap().offset as u64;
    let end = (heap.offset + heap.size) as u64;
    sab.write(start as usize, &[7u8; 64]).unwrap();
    let mut chunks = ChunkStore::new(&sab);
    let hash = match syscall(&mut chunks, &sab, call(1, store(vec![], start, 64, 0)), 0).result {
        SyscallResult::StoreChunk { hash, .. } => hash,
        other => panic!("{other:?}"),
    };
    let registry = sab.layout().regions()[0].region;
    assert!(registry.offset + registry.size <= heap.offset);
    let before = bytes_at(&sab, 0, 0x2000);

    let cases = [
        // Below the heap (the epochs, the registry), past its end, and overflowing u64.
        (store(vec![], registry.offset as u64, 64, 0), SyscallStatus::OutOfBounds),
        (fetch(hash.clone(), 0x680, 64), SyscallStatus::OutOfBounds),
        (fetch(hash.clone(), end - 32, 64), SyscallStatus::OutOfBounds),
        // The allocator's header and tables, before its data pages.
        (
            fetch(hash.clone(), sab.layout().arena_heap().offset as u64, 64),
            SyscallStatus::OutOfBounds,
        ),
        (store(vec![], u64::MAX - 3, 64, 0), SyscallStatus::OutOfBounds),
        // Not whole words.
        (store(vec![], start + 2, 64, 0), SyscallStatus::InvalidRequest),
        (store(vec![], start, 63, 0), SyscallStatus::InvalidRequest),
        // A claimed hash that is not the data's.
        (store(vec![1; 32], start, 64, 0), SyscallStatus::InvalidRequest),
        // A hash of the wrong size, an unknown hash, and a destination too small.
        (fetch(vec![1; 31], start + 64, 64), SyscallStatus::InvalidRequest),
        (fetch(vec![1; 32], start + 64, 64), SyscallStatus::NotFound),
        (fetch(hash.clone(), start + 64, 60), SyscallStatus::OutOfBounds),
        // Not a chunk call at all.
        (
            SyscallBody::KillThread { unit: "boids".into() },
            SyscallStatus::InvalidRequest,
        ),
    ];
    for (k, (body, status)) in cases.into_iter().enumerate() {
        let response = syscall(&mut chunks, &sab, call(10 + k as u64, body.clone()), 0);
        assert_eq!(response.status, status, "{body:?}: {}", response.error);
        assert_eq!(response.call_id, 10 + k as u64);
        assert!(!response.error.is_empty(), "{body:?} says why");
    }
    assert_eq!(bytes_at(&sab, 0, 0x2000), before, "nothing below the heap was written");
    assert_eq!(
        bytes_at(&sab, start + 64, 64),
        vec![0; 64],
        "no partial fetch was written"
    );
    assert_eq!(chunks.len(), 1);
    assert!(sab.arena().stats().consistent, "the allocator's tables are untouched");
}

#[test]
fn chunks_expire_after_their_ttl_and_the_store_has_a_capacity() {
    let sab = Sab::for_tier(Tier::Light);
    let start = sab.arena().alloc(4096, Owner::Kernel).unwrap().offset as u64;
    sab.write(start as usize, &[1u8; 128]).unwrap();
    let mut chunks = ChunkStore::with_capacity(&sab, 100);
    let stored = syscall(&mut chunks, &sab, call(1, store(vec![], start, 64, 2)), 1_000);
    let SyscallResult::StoreChunk { hash, .. } = stored.result else {
        panic!("{stored:?}");
    };
    // 64 + 64 other bytes exceed a 100-byte store.
    sab.write(start as usize + 64, &[2u8; 64]).unwrap();
    let full = syscall(&mut chunks, &sab, call(2, store(vec![], start + 64, 64, 0)), 1_000);
    assert_eq!(full.status, SyscallStatus::InternalError);
    assert!(full.error.contains("full"), "{}", full.error);
    // Stored at 1 s with a 2 s TTL: there until 3 s.
    let fetch_at =
        |chunks: &mut ChunkStore, now| syscall(chunks, &sab, call(3, fetch(hash.clone(), start + 256, 64)), now);
    assert_eq!(fetch_at(&mut chunks, 2_999).status, SyscallStatus::Success);
    assert_eq!(fetch_at(&mut chunks, 3_000).status, SyscallStatus::NotFound);
    // Its room is free again.
    let later = syscall(&mut chunks, &sab, call(4, store(vec![], start + 64, 64, 0)), 5_000);
    assert_eq!(later.status, SyscallStatus::Success, "{}", later.error);
    assert_eq!((chunks.len(), chunks.bytes()), (1, 64));
}
