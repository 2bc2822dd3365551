//! The region guard table: writer masks, single-writer locks, the epoch-advanced check, counters.

use inos::sab::guard::{GuardRegion, WriterMode};
use inos::sab::{EpochIndex, GuardError, Owner, Sab, Tier};

#[test]
fn policies_come_from_the_schema() {
    let inbox = GuardRegion::Inbox.policy();
    assert_eq!(
        (inbox.id, inbox.mode, inbox.writers),
        (0, WriterMode::SingleWriter, Owner::Kernel.bit())
    );
    assert_eq!(inbox.epoch, Some(EpochIndex::INBOX_DIRTY));
    let outbox = GuardRegion::OutboxKernel.policy();
    assert_eq!(
        (outbox.mode, outbox.epoch),
        (WriterMode::MultiWriter, Some(EpochIndex::OUTBOX_KERNEL_DIRTY))
    );
    assert_eq!(GuardRegion::Arena.policy().epoch, None);
    let ids: Vec<u32> = GuardRegion::ALL.iter().map(|r| r.policy().id).collect();
    assert_eq!(ids, (0..GuardRegion::ALL.len() as u32).collect::<Vec<_>>());
}

#[test]
fn a_write_without_a_signal_is_a_violation() {
    let sab = Sab::for_tier(Tier::Light);
    let guards = sab.guards();
    let mut session = guards.begin(GuardRegion::BirdStream, Owner::Module).unwrap();
    assert_eq!(
        session.check_advanced(),
        Err(GuardError::EpochNotAdvanced {
            region: GuardRegion::BirdStream,
            epoch: EpochIndex::BIRD,
            value: 0
        })
    );
    sab.epochs().signal(EpochIndex::BIRD);
    assert_eq!(session.check_advanced(), Ok(()));
    let entry = guards.entry(GuardRegion::BirdStream);
    assert_eq!(
        (entry.lock, entry.last_epoch, entry.violations, entry.last_owner),
        (Owner::Module.bit(), 1, 1, Owner::Module.bit())
    );
    drop(session);
    assert_eq!(guards.entry(GuardRegion::BirdStream).lock, 0);
    assert_eq!(sab.epochs().load(EpochIndex::GUARD_VIOLATION), 1);
}

#[test]
fn multi_writer_regions_record_the_last_owner_without_locking() {
    let sab = Sab::for_tier(Tier::Light);
    let guards = sab.guards();
    let _kernel = guards.begin(GuardRegion::Arena, Owner::Kernel).unwrap();
    let _module = guards.begin(GuardRegion::Arena, Owner::Module).unwrap();
    let entry = guards.entry(GuardRegion::Arena);
    assert_eq!(
        (entry.lock, entry.last_owner, entry.violations),
        (0, Owner::Module.bit(), 0)
    );
    assert!(matches!(
        guards.begin(GuardRegion::Arena, Owner::Host),
        Err(GuardError::NotAuthorized { .. })
    ));
    assert_eq!(guards.entry(GuardRegion::Arena).violations, 1);
}

#[test]
fn single_writer_locks_hold_across_threads() {
    let sab = Sab::for_tier(Tier::Light);
    let winners: usize = (0..4)
        .map(|_| {
            let sab = sab.clone();
            std::thread::spawn(move || {
                let session = sab.guards().begin(GuardRegion::MatrixStream, Owner::Module);
                let won = session.is_ok();
                std::thread::sleep(std::time::Duration::from_millis(50));
                drop(session);
                won
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| usize::from(t.join().unwrap()))
        .sum();
    assert!(winners >= 1);
    let violations = sab.guards().entry(GuardRegion::MatrixStream).violations as usize;
    assert_eq!(winners + violations, 4, "every refused writer is counted");
}
