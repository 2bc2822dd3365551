//! The memory map: no overlaps, 64-byte alignment, everything inside the SAB, for every tier.

use inos::sab::generated as g;
use inos::sab::layout::{Region, SabLayout, regions};
use inos::sab::{BirdRecord, MatrixPart, Tier};

fn check(layout: &SabLayout) {
    let nodes = layout.regions();
    for n in &nodes {
        let r = n.region;
        assert!(r.size > 0, "{} is empty", r.name);
        assert_eq!(r.offset % 64, 0, "{} at {:#x} is not 64-byte aligned", r.name, r.offset);
        assert!(
            r.end() <= layout.sab_size,
            "{} ends at {:#x}, past the SAB",
            r.name,
            r.end()
        );
        if let Some(parent) = n.parent {
            let p = layout.region(parent).expect("parent exists");
            assert!(p.contains(&r), "{} is not inside its parent {}", r.name, parent);
        }
    }
    // Siblings (same parent) never overlap.
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            if a.parent == b.parent {
                assert!(
                    !a.region.overlaps(&b.region),
                    "{:?} overlaps {:?} in tier {}",
                    a.region,
                    b.region,
                    layout.tier
                );
            }
        }
    }
    let names: std::collections::HashSet<_> = nodes.iter().map(|n| n.region.name).collect();
    assert_eq!(names.len(), nodes.len(), "region names are unique");
}

#[test]
fn every_tier_has_a_sound_map() {
    for tier in Tier::ALL {
        check(&SabLayout::for_tier(tier));
        // A larger SAB only grows the arena heap.
        check(&SabLayout::with_size(tier, g::SAB_SIZE_MAX as usize).unwrap());
    }
}

#[test]
fn the_checker_catches_an_overlap() {
    // The original's diagnostics region (4 KiB) contained the bridge metrics: the check must see it.
    let diagnostics_v22 = Region {
        size: 0x1000,
        ..regions::DIAGNOSTICS
    };
    assert!(diagnostics_v22.overlaps(&regions::BRIDGE_METRICS));
    assert!(!regions::DIAGNOSTICS.overlaps(&regions::BRIDGE_METRICS));
}

#[test]
fn stream_buffers_hold_the_tiers_maximum_bird_count() {
    for tier in Tier::ALL {
        let spec = tier.spec();
        for b in spec.bird_buffers {
            assert_eq!(
                b.size,
                spec.max_birds as usize * size_of::<BirdRecord>(),
                "{tier} {}",
                b.name
            );
        }
        for m in spec.matrix_buffers {
            assert_eq!(
                m.size,
                spec.max_birds as usize * 8 * size_of::<MatrixPart>(),
                "{tier} {}",
                m.name
            );
        }
        assert!(spec.recommended_birds <= spec.max_birds);
        assert_eq!(
            spec.gene_buffer.size,
            spec.max_birds as usize * g::GENE_RECORD_SIZE as usize
        );
        assert!(spec.gene_buffer.offset >= spec.matrix_buffers[1].end());
        assert_eq!(spec.arena_heap_offset % g::LARGE_ALIGNMENT as usize, 0);
        assert!(spec.arena_heap_offset >= spec.gene_buffer.end());
        assert!(spec.arena_heap_offset < spec.sab_size, "{tier} has an arena heap");
    }
    // The layout document's entity counts per tier (v2.2 section 5: < 5k, 10k, 50k, 100k+).
    let max_birds = Tier::ALL.map(|tier| tier.spec().max_birds);
    assert_eq!(max_birds, [4_999, 10_000, 50_000, 100_000]);
    assert_eq!(Tier::Light.spec().sab_size, 32 << 20);
    assert_eq!(Tier::Moderate.spec().sab_size, 64 << 20);
    assert_eq!(Tier::Heavy.spec().sab_size, 128 << 20);
    assert_eq!(Tier::Dedicated.spec().sab_size, 256 << 20);
}

#[test]
fn the_seed_offsets_that_did_not_move_are_kept() {
    // v2.2 offsets this project keeps (the moved ones are marked DEVIATION in the schema).
    assert_eq!(regions::SUPERVISOR_HEADERS.offset, 0x2000);
    assert_eq!(regions::PATTERN_EXCHANGE.offset, 0x10000);
    assert_eq!(regions::INBOX.offset, 0x50000);
    assert_eq!(regions::OUTBOX_HOST.offset, 0xD0000);
    assert_eq!(regions::OUTBOX_KERNEL.offset, 0x110000);
    assert_eq!(regions::ARENA_METADATA.offset, 0x150000);
    assert_eq!(regions::GUARD_TABLE.offset, 0x15F000);
    assert_eq!(Tier::Light.spec().bird_buffers[0].offset, 0x162000);
    // Epoch n at byte 4n, for all 256 indices.
    assert_eq!(regions::EPOCHS.offset, 0);
    assert_eq!(regions::EPOCHS.size, 256 * 4);
}

#[test]
fn sizes_outside_the_tier_range_are_refused_with_a_reason() {
    let err = SabLayout::with_size(Tier::Heavy, 64 << 20).unwrap_err();
    assert!(err.to_string().contains("heavy"), "{err}");
    assert!(SabLayout::with_size(Tier::Light, (1 << 30) + (64 << 10)).is_err());
    assert!(SabLayout::with_size(Tier::Light, (32 << 20) + 1).is_err());
    assert!(SabLayout::with_size(Tier::Light, 1 << 30).is_ok());
    assert_eq!("Dedicated".parse::<Tier>(), Ok(Tier::Dedicated));
    assert!(
        "huge"
            .parse::<Tier>()
            .unwrap_err()
            .to_string()
            .contains("light, moderate")
    );
}
