//! Ping-pong streams: round trips, capacity and shape errors, guard wiring, and a two-thread
//! stress test in which the reader must never see a torn record.

use inos::sab::stream::StreamError;
use inos::sab::{BirdRecord, EpochIndex, GuardError, MatrixPart, Owner, Sab, StreamId, Tier};

fn bird(value: f32) -> BirdRecord {
    let mut b: BirdRecord = bytemuck::Zeroable::zeroed();
    bytemuck::cast_slice_mut::<BirdRecord, f32>(std::slice::from_mut(&mut b)).fill(value);
    b
}

#[test]
fn published_birds_read_back_exactly_with_generation_and_count() {
    let sab = Sab::for_tier(Tier::Light);
    let stream = sab.stream(StreamId::Birds);
    let mut writer = stream.writer(Owner::Module).unwrap();
    let mut out = vec![bird(0.0); stream.capacity()];

    let first = writer.publish(&[bird(1.0), bird(2.0), bird(3.0)]).unwrap();
    assert_eq!((first.generation, first.buffer, first.count), (1, 1, 3));
    let read = stream.read_into(&mut out).unwrap();
    assert_eq!((read.generation, read.count), (1, 3));
    assert_eq!(&out[..3], &[bird(1.0), bird(2.0), bird(3.0)]);

    let second = writer.publish(&[bird(9.0)]).unwrap();
    assert_eq!(
        (second.generation, second.buffer),
        (2, 0),
        "the writer alternates buffers"
    );
    let read = stream.read_into(&mut out).unwrap();
    assert_eq!((read.generation, read.count), (2, 1));
    assert_eq!(out[0], bird(9.0));

    let epochs = sab.epochs();
    assert_eq!(epochs.load(EpochIndex::BIRD), 2);
    assert_eq!(epochs.load(EpochIndex::BIRD_COUNT), 1);
    assert_eq!(epochs.load(EpochIndex::MATRIX), 0, "streams have separate epochs");
    let control = stream.control();
    assert_eq!((control.generation, control.active), (2, 0));
    assert_eq!(control.buffers[1].count, 3);
    assert_eq!(control.buffers[0].count, 1);
    // The bytes sit at the documented offset of buffer A.
    let at = Tier::Light.spec().bird_buffers[0].offset;
    assert_eq!(sab.read::<BirdRecord>(at).unwrap(), bird(9.0));
}

#[test]
fn the_matrix_stream_is_independent_and_part_major() {
    let sab = Sab::for_tier(Tier::Light);
    let birds = 2;
    // Part p of bird i at plane offset (p * count + i).
    let parts: Vec<MatrixPart> = (0..8 * birds).map(|k| MatrixPart { cols: [k as f32; 16] }).collect();
    let stream = sab.stream(StreamId::Matrices);
    let published = stream.writer(Owner::Module).unwrap().publish(&parts).unwrap();
    assert_eq!(published.count, birds);
    let mut out = vec![MatrixPart { cols: [0.0; 16] }; 16];
    assert_eq!(stream.read_into(&mut out).unwrap().count, birds);
    assert_eq!(out, parts);
    let plane_3_bird_1 = Tier::Light.spec().matrix_buffers[1].offset + (3 * birds + 1) * 64;
    assert_eq!(sab.read::<MatrixPart>(plane_3_bird_1).unwrap().cols[0], 7.0);
    assert_eq!(sab.stream(StreamId::Birds).control().generation, 0);
    assert_eq!(sab.epochs().load(EpochIndex::MATRIX), 1);
}

#[test]
fn shape_and_capacity_errors_are_typed() {
    let sab = Sab::for_tier(Tier::Light);
    let stream = sab.stream(StreamId::Birds);
    let mut writer = stream.writer(Owner::Module).unwrap();
    let too_many = vec![bird(0.0); stream.capacity() + 1];
    assert!(matches!(writer.publish(&too_many), Err(StreamError::TooMany { .. })));
    assert!(matches!(
        writer.publish(&[1u32; 3]),
        Err(StreamError::NotWholeRecords { .. })
    ));
    writer.publish(&[bird(1.0), bird(2.0)]).unwrap();
    let mut small = [bird(0.0)];
    assert!(matches!(
        stream.read_into(&mut small),
        Err(StreamError::BufferTooSmall { .. })
    ));
    // Only modules write streams, one at a time.
    assert!(matches!(
        stream.writer(Owner::Host),
        Err(GuardError::NotAuthorized { .. })
    ));
    assert!(matches!(stream.writer(Owner::Module), Err(GuardError::Busy { .. })));
    // A stream that was never published reads as empty.
    let mut out = [MatrixPart { cols: [0.0; 16] }; 8];
    let read = sab.stream(StreamId::Matrices).read_into(&mut out).unwrap();
    assert_eq!((read.generation, read.count), (0, 0));
}

#[test]
fn corrupt_control_words_are_reported() {
    let sab = Sab::for_tier(Tier::Light);
    let stream = sab.stream(StreamId::Birds);
    stream.writer(Owner::Module).unwrap().publish(&[bird(1.0)]).unwrap();
    let control_at = StreamId::Birds.control_region().offset;
    let mut control = stream.control();
    control.buffers[1].count = u32::MAX;
    sab.write(control_at, &[control]).unwrap();
    let mut out = vec![bird(0.0); 4];
    assert!(matches!(
        stream.read_into(&mut out),
        Err(StreamError::CorruptControl { .. })
    ));
}

/// The writer publishes records whose every float equals the generation, thousands of times faster
/// than the 64 Hz pulse; the reader copies a million times and must never see two values in one
/// copy. Some copies are lapped by the writer (the test checks that this happened), and those are
/// the ones the seqlock must throw away.
#[test]
fn a_reader_never_sees_a_torn_record_in_a_million_reads() {
    let sab = Sab::for_tier(Tier::Light);
    let stream = sab.stream(StreamId::Birds);
    let count = 8;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stream, stop) = (stream.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut writer = stream.writer(Owner::Module).unwrap();
            let mut records = vec![bird(0.0); count];
            let mut generation = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                generation += 1;
                records.fill(bird(generation as f32));
                let published = writer.publish(&records).unwrap();
                assert_eq!(published.generation, generation);
                // A short pause, so that the reader is lapped sometimes rather than always (a
                // writer that never pauses starves any seqlock reader).
                let pause = std::time::Instant::now();
                while pause.elapsed() < std::time::Duration::from_micros(1) {
                    std::hint::spin_loop();
                }
            }
            generation
        })
    };
    let mut out = vec![bird(0.0); count];
    let (mut reads, mut last_generation, mut advanced, mut retried, mut starved) = (0u32, 0, 0, 0, 0u32);
    while reads < 1_000_000 {
        let read = match stream.read_into(&mut out) {
            // Lapped on every attempt (possible when the machine stalls this thread): an honest
            // refusal, never a torn copy.
            Err(StreamError::Contended { .. }) => {
                starved += 1;
                assert!(starved < 1000, "the reader starves");
                continue;
            }
            other => other.unwrap(),
        };
        retried += u32::from(read.attempts > 1);
        if read.count == 0 {
            continue;
        }
        let floats: &[f32] = bytemuck::cast_slice(&out[..read.count]);
        let expected = read.generation as f32;
        assert!(
            floats.iter().all(|&f| f == expected),
            "torn copy at read {reads}: generation {} but values {:?}..",
            read.generation,
            &floats[..4]
        );
        advanced += u32::from(read.generation != last_generation);
        last_generation = read.generation;
        reads += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(advanced > 1, "the reader saw the writer make progress");
    assert!(retried > 0, "the writer lapped the reader at least once");
    eprintln!(
        "{reads} reads, {advanced} generations seen, {retried} lapped and retried, {starved} starved, {written} written"
    );
    assert!(written >= last_generation);
}
