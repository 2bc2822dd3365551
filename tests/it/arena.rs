//! The arena allocator: typed errors, no overlaps under random alloc/free, full coalescing.

use std::collections::BTreeMap;

use inos::sab::arena::{ArenaError, MAX_BLOCK, SLAB_CLASSES};
use inos::sab::{EpochIndex, GuardError, Owner, Sab, Tier};
use proptest::prelude::*;

#[test]
fn allocations_come_from_the_arena_heap_after_the_streams() {
    let sab = Sab::for_tier(Tier::Light);
    let arena = sab.arena();
    let heap = sab.layout().arena_heap();
    let data = arena.data_range();
    assert!(heap.contains(&data));
    let spec = Tier::Light.spec();
    assert!(
        data.offset >= spec.matrix_buffers[1].end(),
        "nothing is handed out over the streams"
    );
    let small = arena.alloc(20, Owner::Module).unwrap();
    let big = arena.alloc(300_000, Owner::Kernel).unwrap();
    assert_eq!(small.size, 24, "the 24-byte slab class");
    assert_eq!(big.size, 512 << 10, "a 512 KiB buddy block");
    for b in [small, big] {
        assert!(data.contains(&inos::sab::Region {
            name: "block",
            offset: b.offset,
            size: b.size
        }));
    }
    assert_eq!(sab.epochs().load(EpochIndex::ARENA_ALLOCATOR), 2);
    assert_eq!(arena.size_of(big.offset), Ok(big.size));
}

#[test]
fn bad_requests_are_typed_errors_and_change_nothing() {
    let sab = Sab::for_tier(Tier::Light);
    let arena = sab.arena();
    let before = arena.stats();
    assert_eq!(
        arena.alloc(MAX_BLOCK + 1, Owner::Kernel),
        Err(ArenaError::TooLarge {
            requested: MAX_BLOCK + 1
        })
    );
    assert!(matches!(
        arena.alloc(8, Owner::Host),
        Err(ArenaError::Guard(GuardError::NotAuthorized { .. }))
    ));
    let block = arena.alloc(64, Owner::Kernel).unwrap();
    assert_eq!(
        arena.free(block.offset + 8, Owner::Kernel),
        Err(ArenaError::InvalidFree {
            offset: block.offset + 8
        })
    );
    arena.free(block.offset, Owner::Kernel).unwrap();
    assert_eq!(
        arena.free(block.offset, Owner::Kernel),
        Err(ArenaError::InvalidFree { offset: block.offset }),
        "double free"
    );
    assert_eq!(
        arena.free(0x100, Owner::Kernel),
        Err(ArenaError::InvalidFree { offset: 0x100 })
    );
    assert_eq!(arena.stats(), before);
}

#[test]
fn running_out_of_memory_is_a_typed_error() {
    let sab = Sab::for_tier(Tier::Light);
    let arena = sab.arena();
    let mut blocks = Vec::new();
    let err = loop {
        match arena.alloc(MAX_BLOCK, Owner::Kernel) {
            Ok(b) => blocks.push(b),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, ArenaError::OutOfMemory { requested, .. } if requested == MAX_BLOCK),
        "{err}"
    );
    // Every 1 MiB block the heap's pages hold but the last, which the page tables round off.
    let whole = arena.stats().capacity / MAX_BLOCK;
    assert!(
        blocks.len() + 1 >= whole && blocks.len() >= 15,
        "a light SAB's heap holds {} MiB blocks of {whole}",
        blocks.len()
    );
    for b in blocks {
        arena.free(b.offset, Owner::Kernel).unwrap();
    }
}

#[test]
fn stats_report_use_and_fragmentation() {
    let sab = Sab::for_tier(Tier::Light);
    let arena = sab.arena();
    let initial = arena.stats();
    assert_eq!(initial.used, 0);
    assert_eq!(initial.free, initial.capacity);
    assert_eq!(initial.largest_free_block, MAX_BLOCK);
    let a = arena.alloc(4096, Owner::Kernel).unwrap();
    let stats = arena.stats();
    assert_eq!(stats.used, 4096);
    assert_eq!(stats.allocations, 1);
    assert!(stats.fragmentation > 0.0);
    arena.free(a.offset, Owner::Kernel).unwrap();
    assert_eq!(arena.stats(), initial);
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize),
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..=256).prop_map(Op::Alloc),
        2 => (257usize..=MAX_BLOCK).prop_map(Op::Alloc),
        1 => prop::sample::select(SLAB_CLASSES.to_vec()).prop_map(|c| Op::Alloc(c as usize)),
        4 => any::<usize>().prop_map(Op::Free),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random alloc/free sequences never hand out overlapping blocks, every block lies in the
    /// arena's data range, and freeing everything coalesces back to the initial free blocks.
    #[test]
    fn random_alloc_and_free_never_overlap_and_fully_coalesce(ops in prop::collection::vec(op(), 1..300)) {
        let sab = Sab::for_tier(Tier::Light);
        let arena = sab.arena();
        let initial = arena.stats();
        let data = arena.data_range();
        let mut live: BTreeMap<usize, usize> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Alloc(size) => match arena.alloc(size, Owner::Module) {
                    Ok(b) => {
                        prop_assert!(b.size >= size);
                        prop_assert!(b.offset >= data.offset && b.end() <= data.end());
                        if let Some((&o, &s)) = live.range(..b.end()).next_back() {
                            prop_assert!(o + s <= b.offset, "{:?} overlaps [{o:#x}, +{s})", b);
                        }
                        if let Some((&o, _)) = live.range(b.offset..).next() {
                            prop_assert!(b.end() <= o, "{:?} overlaps the block at {o:#x}", b);
                        }
                        live.insert(b.offset, b.size);
                    }
                    Err(ArenaError::OutOfMemory { .. }) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                },
                Op::Free(pick) if !live.is_empty() => {
                    let offset = *live.keys().nth(pick % live.len()).unwrap();
                    arena.free(offset, Owner::Module).unwrap();
                    live.remove(&offset);
                }
                Op::Free(_) => {}
            }
            prop_assert_eq!(arena.stats().allocations as usize, live.len());
        }
        for offset in live.keys() {
            arena.free(*offset, Owner::Module).unwrap();
        }
        prop_assert_eq!(arena.stats(), initial);
    }
}

#[test]
fn a_damaged_heap_is_reported_not_trusted() {
    let sab = Sab::for_tier(Tier::Light);
    let heap = sab.layout().arena_heap().offset;
    // The free-list head of the 1 MiB level (header word 4 + 8) pointing far outside the heap.
    sab.write(heap + 4 * 12, &[u32::MAX]).unwrap();
    let stats = sab.arena().stats();
    assert!(!stats.consistent, "{stats:?}");
    // A page count that disagrees with the heap's size (header word 2).
    sab.write(heap + 4 * 2, &[u32::MAX]).unwrap();
    assert!(matches!(
        sab.arena().alloc(64, Owner::Kernel),
        Err(ArenaError::Unformatted { .. })
    ));
    assert!(!sab.arena().stats().consistent);
    assert!(Sab::for_tier(Tier::Light).arena().stats().consistent);
}
