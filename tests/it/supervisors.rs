//! The supervisor table and the pattern exchange / job history.

use std::collections::BTreeSet;

use inos::sab::layout::regions;
use inos::sab::patterns::{JOB_HISTORY_CAPACITY, Upsert};
use inos::sab::registry::id_hash;
use inos::sab::supervisors::{SupervisorError, SupervisorStatus};
use inos::sab::{
    EpochIndex, HistoryCursor, HistoryReader, JobRecord, Owner, PatternRecord, Sab, SupervisorHeader, Tier,
};

#[test]
fn every_pool_slot_can_be_allocated_with_its_own_epoch() {
    let sab = Sab::for_tier(Tier::Light);
    let table = sab.supervisors();
    let mut epochs = BTreeSet::new();
    for i in 0..64 {
        let slot = table.allocate(&format!("sup{i}"), Owner::Kernel).unwrap();
        assert!((64..128).contains(&slot.epoch.get()), "{slot:?}");
        assert!(epochs.insert(slot.epoch));
        assert_eq!(table.find(id_hash(&format!("sup{i}"))), Some(slot));
    }
    assert_eq!(
        table.allocate("one-more", Owner::Kernel),
        Err(SupervisorError::PoolFull)
    );
    // Allocating an existing id returns its slot; releasing frees it for another.
    let again = table.allocate("sup5", Owner::Kernel).unwrap();
    table.release("sup5", Owner::Kernel).unwrap();
    let reused = table.allocate("one-more", Owner::Kernel).unwrap();
    assert_eq!(reused.slot, again.slot);
    assert_eq!(table.allocated().len(), 64);
    assert!(matches!(
        table.allocate("x", Owner::Module),
        Err(SupervisorError::Guard(_))
    ));
    assert_eq!(sab.epochs().load(EpochIndex::SUPERVISOR_TABLE), 66);
}

#[test]
fn a_header_has_its_exact_bytes_at_its_exact_offset() {
    let sab = Sab::for_tier(Tier::Light);
    let table = sab.supervisors();
    let slot = table.allocate("boids", Owner::Kernel).unwrap();
    let mut header = table.header(slot.slot).unwrap();
    assert_eq!(header.status, SupervisorStatus::Starting as u8);
    assert_eq!(header.name(), "boids");
    header.status = SupervisorStatus::Degraded as u8;
    header.jobs_processed = 1000;
    header.jobs_failed = 7;
    header.avg_job_time_us = 12.5;
    header.health_score = 0.75;
    header.last_heartbeat_ms = 0x0102_0304_0506_0708;
    table.write_header(slot.slot, &header).unwrap();
    let mut raw = [0u8; 128];
    sab.copy_out(regions::SUPERVISOR_HEADERS.offset + slot.slot * 128, &mut raw)
        .unwrap();
    assert_eq!(&raw[0..4], &id_hash("boids").to_le_bytes());
    assert_eq!(raw[4] as u32, slot.epoch.get());
    assert_eq!(raw[5], 2, "Degraded");
    assert_eq!(&raw[16..20], &1000u32.to_le_bytes());
    assert_eq!(&raw[20..24], &7u32.to_le_bytes());
    assert_eq!(&raw[24..28], &12.5f32.to_le_bytes());
    assert_eq!(&raw[48..52], &0.75f32.to_le_bytes());
    assert_eq!(&raw[56..64], &0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&raw[68..74], b"boids\0");
    let back: SupervisorHeader = table.header(slot.slot).unwrap();
    assert_eq!(back.jobs_processed, 1000);
    assert_eq!(table.header(64), Err(SupervisorError::BadSlot(64)));
}

#[test]
fn patterns_upsert_update_and_evict_the_least_recently_used() {
    let sab = Sab::for_tier(Tier::Light);
    let patterns = sab.patterns();
    let mut writer = patterns.writer(Owner::Kernel).unwrap();
    for id in 0..1024u64 {
        assert_eq!(
            writer.upsert(PatternRecord::new(id, 1)).unwrap(),
            Upsert::Inserted { slot: id as usize }
        );
    }
    let mut updated = PatternRecord::new(10, 1);
    updated.confidence = 90;
    assert_eq!(writer.upsert(updated).unwrap(), Upsert::Updated { slot: 10 });
    // Touch everything but pattern 3, which becomes the least recently used.
    std::thread::sleep(std::time::Duration::from_millis(2));
    for id in (0..1024u64).filter(|&id| id != 3) {
        assert!(writer.touch(id).unwrap());
    }
    assert_eq!(
        writer.upsert(PatternRecord::new(5000, 2)).unwrap(),
        Upsert::Evicted { slot: 3, evicted_id: 3 }
    );
    drop(writer);
    let live = patterns.live().unwrap();
    assert_eq!(live.len(), 1024);
    let ids: BTreeSet<u64> = live.iter().map(|(_, r)| r.pattern_id).collect();
    assert!(
        ids.contains(&5000) && !ids.contains(&3),
        "no live pattern was overwritten but the evicted one"
    );
    let ten = live.iter().find(|(_, r)| r.pattern_id == 10).unwrap().1;
    assert_eq!((ten.confidence, ten.access_count), (90, 1));
    assert_eq!(patterns.count(), 1024);
}

#[test]
fn the_job_history_keeps_the_newest_records_oldest_first() {
    let sab = Sab::for_tier(Tier::Light);
    let history = sab.job_history();
    assert_eq!(history.header().capacity as usize, JOB_HISTORY_CAPACITY);
    let records: Vec<JobRecord> = (0..JOB_HISTORY_CAPACITY as u64 + 10)
        .map(|i| JobRecord {
            job_id: i,
            duration_us: i as u32,
            ..JobRecord::default()
        })
        .collect();
    for chunk in records.chunks(100) {
        history.append(chunk, Owner::Kernel).unwrap();
    }
    let kept = history.records().unwrap();
    assert_eq!(kept.len(), JOB_HISTORY_CAPACITY);
    assert_eq!(kept[0].job_id, 10, "the ten oldest were overwritten");
    assert_eq!(kept.last().unwrap().job_id, JOB_HISTORY_CAPACITY as u64 + 9);
    assert_eq!(history.header().total, JOB_HISTORY_CAPACITY as u64 + 10);
    assert!(
        history.append(&records[..1], Owner::Module).is_err(),
        "only the kernel writes history"
    );
}

/// A history reader that keeps up sees every record once, in order; one that was paused while the
/// ring wrapped reads what is left and says exactly how many it lost.
#[test]
fn a_history_reader_sees_every_record_once_or_counts_what_it_lost() {
    let sab = Sab::for_tier(Tier::Light);
    let history = sab.job_history();
    let record = |i: u64| JobRecord {
        job_id: i,
        ..JobRecord::default()
    };
    let mut reader = HistoryReader::default();
    let (mut eager, mut paused) = (HistoryCursor::default(), HistoryCursor::default());
    assert!(reader.read(&sab, &mut eager).is_empty());
    let mut next = 0u64;
    let mut seen = Vec::new();
    // Batches of 300 jobs; the eager reader reads after each, the paused one only at the end.
    for _ in 0..10 {
        let batch: Vec<JobRecord> = (next..next + 300).map(record).collect();
        history.append(&batch, Owner::Kernel).unwrap();
        next += 300;
        seen.extend(reader.read(&sab, &mut eager).iter().map(|r| r.job_id));
    }
    assert_eq!(seen, (0..3000).collect::<Vec<_>>(), "every record once, in order");
    assert_eq!(eager, HistoryCursor { next: 3000, lost: 0 });

    let late: Vec<u64> = reader.read(&sab, &mut paused).iter().map(|r| r.job_id).collect();
    let lost = 3000 - JOB_HISTORY_CAPACITY as u64;
    assert_eq!(
        late,
        (lost..3000).collect::<Vec<_>>(),
        "the newest records, oldest first"
    );
    assert_eq!(paused, HistoryCursor { next: 3000, lost });
    assert!(reader.read(&sab, &mut paused).is_empty(), "nothing new");

    // A cursor ahead of the history (the SAB was replaced by an older one) starts again at its
    // oldest record, losing nothing.
    let mut ahead = HistoryCursor {
        next: 1_000_000,
        lost: 0,
    };
    assert_eq!(reader.read(&sab, &mut ahead).len(), JOB_HISTORY_CAPACITY);
    assert_eq!(ahead, HistoryCursor { next: 3000, lost: 0 });
}
