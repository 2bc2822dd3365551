//! The module registry: golden bytes, register/unregister consistency under random sequences,
//! tables in the arena without leaks, dependency order, and concurrent registration.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use inos::sab::generated as g;
use inos::sab::layout::regions;
use inos::sab::registry::{RegistryEntry, id_hash, probe_sequence, quick_hash};
use inos::sab::{Capability, Dependency, EpochIndex, ModuleSpec, Owner, RegistryError, Sab, Tier};
use proptest::prelude::*;

fn spec(id: &str, caps: usize, deps: &[(&str, [u8; 3], [u8; 3])]) -> ModuleSpec {
    ModuleSpec {
        id: id.into(),
        version: [1, 2, 3],
        resource_flags: 1,
        min_memory_mb: 64,
        capabilities: (0..caps)
            .map(|i| Capability {
                id: format!("{id}:action{i}"),
                min_memory_mb: 8,
                requires_gpu: i % 2 == 1,
            })
            .collect(),
        dependencies: deps
            .iter()
            .map(|(d, min, max)| Dependency {
                module_id: (*d).into(),
                min: *min,
                max: *max,
                optional: false,
            })
            .collect(),
    }
}

#[test]
fn one_entry_has_its_exact_bytes_at_its_exact_offset() {
    let sab = Sab::for_tier(Tier::Light);
    let registry = sab.registry();
    let slot = registry.register(&spec("boids", 2, &[]), Owner::Module).unwrap();
    assert_eq!(
        slot,
        probe_sequence("boids").next().unwrap(),
        "an empty registry uses the home slot"
    );
    let at = regions::REGISTRY.offset + slot * 96;
    let mut raw = [0u8; 96];
    sab.copy_out(at, &mut raw).unwrap();
    let u32_at = |o: usize| u32::from_le_bytes(raw[o..o + 4].try_into().unwrap());
    let u16_at = |o: usize| u16::from_le_bytes(raw[o..o + 2].try_into().unwrap());
    assert_eq!(&raw[0..8], &0x494E_4F53_5245_4749u64.to_le_bytes(), "signature");
    assert_eq!(u32_at(8), id_hash("boids"));
    assert_eq!(&raw[12..15], &[1, 2, 3], "version");
    assert_eq!(raw[15], 2, "active flag");
    assert_eq!(u16_at(32), 1, "resource flags");
    assert_eq!(u16_at(34), 64, "min memory");
    assert_eq!(u16_at(40), 100, "base cost");
    assert_eq!(raw[42], 10, "per-MB cost");
    assert_eq!(
        u16_at(44),
        1000,
        "per-second cost at +44, where the original's Go reader missed it"
    );
    assert_eq!(u16_at(52), 0, "no dependencies");
    assert_eq!((raw[54], raw[55]), (255, 1), "major version bounds");
    assert_eq!(u16_at(60), 2, "capability count");
    assert_eq!(&raw[64..70], b"boids\0");
    assert_eq!(u32_at(76), quick_hash("boids"));
    // The capability table sits in the arena at the recorded offset.
    let cap_at = u32_at(56) as usize;
    assert!(sab.arena().data_range().offset <= cap_at);
    let mut cap = [0u8; 36];
    sab.copy_out(cap_at + 36, &mut cap).unwrap();
    assert_eq!(&cap[..14], b"boids:action1\0");
    assert_eq!(u16::from_le_bytes([cap[32], cap[33]]), 8);
    assert_eq!(cap[34], 1, "requires GPU");
    assert_eq!(sab.epochs().load(EpochIndex::REGISTRY), 1);
}

#[test]
fn lookups_capabilities_dependencies_and_versions() {
    let sab = Sab::for_tier(Tier::Light);
    let r = sab.registry();
    r.register(&spec("physics", 1, &[]), Owner::Module).unwrap();
    r.register(&spec("boids", 3, &[("physics", [1, 0, 0], [1, 9, 9])]), Owner::Module)
        .unwrap();
    let (_, entry) = r.lookup("boids").unwrap();
    assert_eq!(r.lookup_hash(id_hash("boids")).unwrap().1, entry);
    assert_eq!(r.capabilities(&entry).unwrap().len(), 3);
    let modules = r.modules();
    let boids = modules.iter().find(|m| m.id == "boids").unwrap();
    assert_eq!(boids.dependencies[0].module_id, "physics");
    assert!(r.lookup("nobody").is_none());
    assert!(r.lookup("this-id-is-far-too-long").is_none());
    assert_eq!(r.dependency_order().unwrap(), ["physics", "boids"]);

    // A version outside the accepted range.
    r.register(&spec("crypto", 0, &[("physics", [2, 0, 0], [2, 9, 9])]), Owner::Module)
        .unwrap();
    assert!(matches!(
        r.dependency_order(),
        Err(RegistryError::VersionMismatch { .. })
    ));
    r.unregister("crypto", Owner::Module).unwrap();
    // A missing dependency, then a cycle.
    r.register(&spec("echo", 0, &[("ghost", [0, 0, 0], [9, 9, 9])]), Owner::Module)
        .unwrap();
    let err = r.dependency_order().unwrap_err();
    // The dependency table stores id hashes (reference §2.3), so a missing module is named by its hash.
    assert_eq!(
        err.to_string(),
        format!("echo depends on {:#010x}, which is not registered", id_hash("ghost"))
    );
    r.unregister("echo", Owner::Module).unwrap();
    r.register(&spec("physics", 1, &[("boids", [1, 0, 0], [1, 9, 9])]), Owner::Module)
        .unwrap();
    assert!(matches!(r.dependency_order(), Err(RegistryError::Cycle(c)) if c.len() == 2));
}

#[test]
fn bad_specs_are_refused_with_the_reason() {
    let sab = Sab::for_tier(Tier::Light);
    let r = sab.registry();
    assert!(matches!(
        r.register(&spec("", 0, &[]), Owner::Module),
        Err(RegistryError::BadId(_))
    ));
    assert!(matches!(
        r.register(&spec("twelve-chars", 0, &[]), Owner::Module),
        Err(RegistryError::BadId(_))
    ));
    let mut bad_cap = spec("ok", 1, &[]);
    bad_cap.capabilities[0].id = "x".repeat(32);
    assert!(matches!(
        r.register(&bad_cap, Owner::Module),
        Err(RegistryError::BadCapability(_))
    ));
    assert!(matches!(
        r.register(&spec("ok", 0, &[]), Owner::Host),
        Err(RegistryError::Guard(_))
    ));
    assert_eq!(sab.epochs().load(EpochIndex::REGISTRY), 0, "nothing was registered");
}

#[test]
fn a_full_registry_is_a_typed_error() {
    let sab = Sab::for_tier(Tier::Light);
    let r = sab.registry();
    for i in 0..g::REGISTRY_INLINE_SLOTS {
        r.register(&spec(&format!("m{i}"), 0, &[]), Owner::Module).unwrap();
    }
    assert_eq!(
        r.register(&spec("one-more", 0, &[]), Owner::Module),
        Err(RegistryError::Full { id: "one-more".into() })
    );
    // Re-registering an existing module still works when full.
    r.register(&spec("m7", 2, &[]), Owner::Module).unwrap();
    r.unregister("m3", Owner::Module).unwrap();
    r.register(&spec("one-more", 0, &[]), Owner::Module).unwrap();
}

#[test]
fn a_lock_held_past_its_deadline_is_recovered() {
    let sab = Sab::for_tier(Tier::Light);
    // A writer that died holding the lock: state set, deadline in the past.
    let at = regions::REGISTRY_LOCK.offset;
    sab.write(at, &[[77u32, 0xDEAD], [1, 0]]).unwrap();
    sab.registry().register(&spec("boids", 0, &[]), Owner::Module).unwrap();
    // A live holder (deadline far ahead) makes a writer wait, then give up with a clear error.
    let far = inos::sab::now_ms() + 3_600_000;
    sab.write(at, &[[77u32, 0xBEEF], [far as u32, (far >> 32) as u32]])
        .unwrap();
    let err = sab
        .registry()
        .register(&spec("late", 0, &[]), Owner::Module)
        .unwrap_err();
    assert!(matches!(err, RegistryError::LockTimeout { owner: 0xBEEF, .. }), "{err}");
}

fn names() -> impl Strategy<Value = String> {
    prop::sample::select((0..40).map(|i| format!("mod{i}")).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random register/unregister sequences: every registered name is found, nothing else is,
    /// and the arena returns to its starting usage once everything is unregistered.
    #[test]
    fn random_register_and_unregister_keep_the_registry_consistent(
        ops in prop::collection::vec((any::<bool>(), names(), 0usize..6), 1..120)
    ) {
        let sab = Sab::for_tier(Tier::Light);
        let r = sab.registry();
        let arena_start = sab.arena().stats();
        let mut registered = BTreeSet::new();
        for (register, name, caps) in ops {
            if register {
                r.register(&spec(&name, caps, &[]), Owner::Module).unwrap();
                registered.insert(name);
            } else if registered.remove(&name) {
                r.unregister(&name, Owner::Module).unwrap();
            } else {
                prop_assert!(matches!(r.unregister(&name, Owner::Module), Err(RegistryError::NotRegistered(_))));
            }
            for i in 0..40 {
                let name = format!("mod{i}");
                prop_assert_eq!(r.lookup(&name).is_some(), registered.contains(&name), "{}", name);
            }
            let listed: BTreeSet<String> = r.modules().into_iter().map(|m| m.id).collect();
            prop_assert_eq!(&listed, &registered);
        }
        for name in &registered {
            r.unregister(name, Owner::Module).unwrap();
        }
        prop_assert_eq!(sab.arena().stats(), arena_start);
    }
}

#[test]
fn two_threads_register_32_modules_each_while_a_third_reads() {
    let sab = Sab::for_tier(Tier::Light);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (sab, done) = (sab.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                for slot in 0..64 {
                    let e: RegistryEntry = sab.registry().entry(slot).unwrap();
                    if e.signature != 0 {
                        // A whole entry: its name hashes to its id hash and quick hash.
                        let name = String::from_utf8_lossy(&e.module_id).trim_end_matches('\0').to_owned();
                        assert_eq!(e.id_hash, id_hash(&name), "torn entry in slot {slot}");
                        assert_eq!(e.quick_hash, quick_hash(&name), "torn entry in slot {slot}");
                        assert_eq!(e.version, [1, 2, 3]);
                        reads += 1;
                    }
                }
            }
            reads
        })
    };
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|prefix| {
            let sab = sab.clone();
            std::thread::spawn(move || {
                for i in 0..32 {
                    sab.registry()
                        .register(&spec(&format!("{prefix}{i}"), 1, &[]), Owner::Module)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let modules = sab.registry().modules();
    assert_eq!(modules.len(), 64);
    let names: BTreeSet<_> = modules.iter().map(|m| m.id.clone()).collect();
    assert_eq!(names.len(), 64, "64 distinct entries");
    for m in &modules {
        assert_eq!(sab.registry().lookup(&m.id).unwrap().0, m.slot);
        assert_eq!(m.capabilities.len(), 1);
    }
    assert_eq!(sab.epochs().load(EpochIndex::REGISTRY), 64);
}
