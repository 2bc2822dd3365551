//! Snapshots: a bit-exact round trip, and every kind of damage refused with a message that says
//! what is wrong.

use std::path::Path;

use inos::sab::snapshot::{SNAPSHOT_HEADER_SIZE, SnapshotError, SnapshotHeader};
use inos::sab::{BirdRecord, EpochIndex, Owner, RingId, Sab, SabLayout, StreamId, Tier};

fn busy_sab() -> Sab {
    let sab = Sab::for_tier(Tier::Light);
    let mut b: BirdRecord = bytemuck::Zeroable::zeroed();
    b.position = [1.0, 2.0, 3.0];
    sab.stream(StreamId::Birds)
        .writer(Owner::Module)
        .unwrap()
        .publish(&[b, b])
        .unwrap();
    let mut producer = sab.ring(RingId::OutboxHost).producer(Owner::Kernel).unwrap();
    producer.push(b"a result").unwrap();
    producer.publish().unwrap();
    sab.epochs().signal(EpochIndex::SYSTEM_PULSE);
    sab
}

fn body(sab: &Sab) -> Vec<u8> {
    let mut bytes = vec![0u8; sab.len()];
    sab.copy_out(0, &mut bytes).unwrap();
    bytes
}

#[test]
fn the_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.snap");
    let sab = busy_sab();
    let before = body(&sab);
    let header = sab.write_snapshot(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        (SNAPSHOT_HEADER_SIZE + sab.len()) as u64
    );
    assert_eq!(header.body_hash, *blake3::hash(&before).as_bytes());
    let (loaded, loaded_header) = Sab::read_snapshot(&path).unwrap();
    assert_eq!(loaded_header, header);
    assert_eq!(*loaded.layout(), SabLayout::for_tier(Tier::Light));
    assert!(body(&loaded) == before, "every byte comes back");
    // And the loaded SAB works: its ring still holds the frame.
    let mut buf = [0u8; 16];
    let mut consumer = loaded.ring(RingId::OutboxHost).consumer().unwrap();
    assert_eq!(consumer.read_into(&mut buf).unwrap(), Some(8));
    assert_eq!(&buf[..8], b"a result");
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

fn damaged(path: &Path, at: usize, edit: impl FnOnce(&mut Vec<u8>, usize)) -> SnapshotError {
    let mut bytes = std::fs::read(path).unwrap();
    edit(&mut bytes, at);
    let bad = path.with_extension("bad");
    std::fs::write(&bad, &bytes).unwrap();
    Sab::read_snapshot(&bad).map(|_| ()).unwrap_err()
}

fn flip(bytes: &mut Vec<u8>, at: usize) {
    #![allow(clippy::ptr_arg)] // shares `damaged`'s edit signature, which may resize the file
    bytes[at] ^= 0x10;
}

#[test]
fn a_flipped_bit_anywhere_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.snap");
    busy_sab().write_snapshot(&path).unwrap();
    let field = |name: &str| match name {
        "magic" => std::mem::offset_of!(SnapshotHeader, magic),
        "format" => std::mem::offset_of!(SnapshotHeader, format),
        "layout" => std::mem::offset_of!(SnapshotHeader, layout_version),
        "tier" => std::mem::offset_of!(SnapshotHeader, tier),
        "size" => std::mem::offset_of!(SnapshotHeader, sab_size),
        "hash" => std::mem::offset_of!(SnapshotHeader, body_hash),
        "reserved" => std::mem::offset_of!(SnapshotHeader, reserved),
        _ => unreachable!(),
    };
    let cases: [(&str, usize, &str); 10] = [
        ("magic", field("magic"), "not an INOS snapshot"),
        ("format", field("format"), "snapshot format"),
        ("layout", field("layout"), "layout version"),
        ("tier", field("tier") + 1, "unknown tier"),
        ("size", field("size"), "does not fit the light tier"),
        (
            "size",
            field("size") + 3,
            "declares a 301989888-byte SAB but the file holds 33554432",
        ),
        ("hash", field("hash") + 5, "body hash mismatch"),
        ("reserved", field("reserved") + 9, "reserved bytes"),
        ("body start", SNAPSHOT_HEADER_SIZE, "body hash mismatch"),
        ("body end", SNAPSHOT_HEADER_SIZE + (32 << 20) - 1, "body hash mismatch"),
    ];
    for (what, at, expected) in cases {
        let message = damaged(&path, at, flip).to_string();
        assert!(message.contains(expected), "{what}: {message}");
    }
    // A grown or shrunk file.
    let message = damaged(&path, 0, |b, _| b.truncate(b.len() - 64)).to_string();
    assert!(message.contains("declares a 33554432-byte SAB"), "{message}");
    let message = damaged(&path, 0, |b, _| b.truncate(100)).to_string();
    assert!(message.contains("shorter than"), "{message}");
    let message = damaged(&path, 0, |b, _| b.extend_from_slice(&[0; 64])).to_string();
    assert!(message.contains("file holds"), "{message}");
}

#[test]
fn a_missing_file_or_bad_target_is_an_io_error_naming_the_path() {
    let err = Sab::read_snapshot(Path::new("/nonexistent/run.snap"))
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/run.snap"), "{err}");
    let err = busy_sab()
        .write_snapshot(Path::new("/nonexistent-dir/x.snap"))
        .unwrap_err();
    assert!(err.to_string().contains("nonexistent-dir"), "{err}");
}
