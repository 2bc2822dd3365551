//! Rings: loom model of produce/consume across the wrap point, proptest round trips, a two-thread
//! stress test, corruption handling, and the guard wiring.

use std::cell::Cell;
use std::sync::Arc;

use inos::sab::ring::{ConsumerCursor, RingControl, RingCore, RingWords, frame_span};
use inos::sab::{EpochIndex, GuardError, GuardRegion, Owner, RingError, RingId, Sab, Tier};
use proptest::prelude::*;

/// Loom's atomics behind the ring's word interface.
struct LoomWords(Vec<loom::sync::atomic::AtomicU64>);

impl LoomWords {
    fn new(words: usize) -> Self {
        Self((0..words).map(|_| loom::sync::atomic::AtomicU64::new(0)).collect())
    }
}

impl RingWords for LoomWords {
    fn word_count(&self) -> usize {
        self.0.len()
    }
    fn load(&self, i: usize, o: std::sync::atomic::Ordering) -> u64 {
        self.0[i].load(o)
    }
    fn store(&self, i: usize, v: u64, o: std::sync::atomic::Ordering) {
        self.0[i].store(v, o)
    }
    fn compare_exchange_weak(
        &self,
        i: usize,
        current: u64,
        new: u64,
        s: std::sync::atomic::Ordering,
        f: std::sync::atomic::Ordering,
    ) -> Result<u64, u64> {
        self.0[i].compare_exchange_weak(current, new, s, f)
    }
    fn fetch_add(&self, i: usize, v: u64, o: std::sync::atomic::Ordering) -> u64 {
        self.0[i].fetch_add(v, o)
    }
}

struct LoomRing {
    control: LoomWords,
    data: LoomWords,
}

impl LoomRing {
    fn new(data_words: usize) -> Arc<Self> {
        Arc::new(Self {
            control: LoomWords::new(size_of::<RingControl>() / 8),
            data: LoomWords::new(data_words),
        })
    }
    fn core(&self) -> RingCore<'_, LoomWords> {
        RingCore::new(&self.control, &self.data)
    }
}

fn push_blocking(ring: &RingCore<'_, LoomWords>, payload: &[u8], head_cache: &Cell<u64>, exclusive: bool) {
    loop {
        match ring.push(payload, head_cache, exclusive) {
            Ok(_) => return,
            Err(RingError::Full { .. }) => loom::thread::yield_now(),
            Err(e) => panic!("push: {e}"),
        }
    }
}

fn pop_blocking(ring: &RingCore<'_, LoomWords>, buf: &mut [u8], cursor: &ConsumerCursor) -> usize {
    loop {
        match ring.pop_into(buf, cursor) {
            Ok(Some(n)) => return n,
            Ok(None) => loom::thread::yield_now(),
            Err(e) => panic!("pop: {e}"),
        }
    }
}

fn loom_model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn loom_produce_and_consume_across_the_wrap_point() {
    loom_model(|| {
        // 32 data bytes; three 9-byte frames (span 24 each) force the header and payload of the
        // later frames to wrap.
        let ring = LoomRing::new(4);
        let producer = {
            let ring = Arc::clone(&ring);
            loom::thread::spawn(move || {
                let head_cache = Cell::new(0);
                for i in 0..3u8 {
                    push_blocking(&ring.core(), &[i; 9], &head_cache, true);
                }
            })
        };
        let (mut buf, cursor) = ([0u8; 9], ring.core().cursor());
        for i in 0..3u8 {
            assert_eq!(pop_blocking(&ring.core(), &mut buf, &cursor), 9);
            assert_eq!(buf, [i; 9], "frame {i} arrives whole and in order");
        }
        producer.join().unwrap();
        assert_eq!(ring.core().pop_into(&mut buf, &cursor), Ok(None));
    });
}

#[test]
fn loom_two_producers_one_consumer() {
    loom_model(|| {
        let ring = LoomRing::new(4);
        let producers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|p| {
                let ring = Arc::clone(&ring);
                loom::thread::spawn(move || push_blocking(&ring.core(), &[p; 3], &Cell::new(0), false))
            })
            .collect();
        let (mut seen, mut buf, cursor) = (Vec::new(), [0u8; 3], ring.core().cursor());
        for _ in 0..2 {
            assert_eq!(pop_blocking(&ring.core(), &mut buf, &cursor), 3);
            assert!(buf == [buf[0]; 3], "no frame mixes two producers: {buf:?}");
            seen.push(buf[0]);
        }
        for p in producers {
            p.join().unwrap();
        }
        seen.sort();
        assert_eq!(seen, [1, 2], "each frame exactly once");
    });
}

fn inbox(sab: &Sab) -> (inos::sab::ring::RingProducer, inos::sab::ring::RingConsumer) {
    let ring = sab.ring(RingId::Inbox);
    (ring.producer(Owner::Kernel).unwrap(), ring.consumer().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random frame sizes from 0 to the ring's maximum round-trip exactly, in order, across wraps.
    #[test]
    fn frames_of_any_size_round_trip(sizes in proptest::collection::vec(0usize..=1, 1..40), seed in any::<u64>()) {
        let sab = Sab::for_tier(Tier::Light);
        let ring = sab.ring(RingId::OutboxHost);
        let max = ring.max_payload();
        let (producer, mut consumer) = (ring.producer(Owner::Kernel).unwrap(), ring.consumer().unwrap());
        let mut rng = seed;
        let mut next = || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
        let mut buf = vec![0u8; max];
        for pick in sizes {
            // Half the frames are small, half anywhere up to the maximum (both ends included).
            let len = match (pick, next() % 4) {
                (0, _) => (next() % 200) as usize,
                (_, 0) => max,
                (_, 1) => 0,
                _ => (next() % (max as u64 + 1)) as usize,
            };
            let payload: Vec<u8> = (0..len).map(|i| (i as u64 ^ next()) as u8).collect();
            producer.push(&payload).unwrap();
            let n = consumer.read_into(&mut buf).unwrap().unwrap();
            prop_assert_eq!(n, len);
            prop_assert_eq!(&buf[..n], &payload[..]);
        }
        prop_assert_eq!(consumer.read_into(&mut buf).unwrap(), None);
        let stats = ring.stats();
        prop_assert_eq!(stats.used_bytes, 0);
    }
}

#[test]
fn two_threads_a_million_frames_exact_count_and_order() {
    let sab = Sab::for_tier(Tier::Light);
    let (producer, mut consumer) = inbox(&sab);
    const FRAMES: u64 = 1_000_000;
    let thread = std::thread::spawn(move || {
        for i in 0..FRAMES {
            // Sizes vary with i so frames straddle the wrap point at many offsets.
            let len = 8 + (i % 57) as usize;
            let mut frame = [0u8; 64];
            frame[..8].copy_from_slice(&i.to_le_bytes());
            frame[8..len].fill(i as u8);
            while let Err(e) = producer.push(&frame[..len]) {
                assert!(matches!(e, RingError::Full { .. }), "{e}");
                std::hint::spin_loop();
            }
        }
    });
    let mut buf = [0u8; 64];
    let mut expected = 0u64;
    while expected < FRAMES {
        match consumer.read_into(&mut buf).unwrap() {
            Some(len) => {
                assert_eq!(len, 8 + (expected % 57) as usize);
                assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), expected, "order");
                assert!(
                    buf[8..len].iter().all(|&b| b == expected as u8),
                    "payload of frame {expected}"
                );
                expected += 1;
            }
            None => std::hint::spin_loop(),
        }
    }
    thread.join().unwrap();
    assert_eq!(consumer.read_into(&mut buf).unwrap(), None, "no frame beyond the last");
    let stats = sab.ring(RingId::Inbox).stats();
    assert_eq!(stats.control.consumed, FRAMES);
    assert_eq!(stats.used_bytes, 0);
}

/// Byte offset of the data area of `id`.
fn data_offset(id: RingId) -> usize {
    id.region().offset
}

#[test]
fn corrupted_length_or_stamp_bytes_are_typed_errors_not_panics() {
    let sab = Sab::for_tier(Tier::Light);
    let (producer, mut consumer) = inbox(&sab);
    producer.push(b"hello").unwrap();
    let at = data_offset(RingId::Inbox);
    let header: [u32; 2] = sab.read(at).unwrap();
    assert_eq!(header[0], 5, "length word");
    let mut buf = [0u8; 64];

    // Corrupted length bytes.
    sab.write(at, &[[u32::MAX, header[1]]]).unwrap();
    assert!(matches!(
        consumer.read_into(&mut buf),
        Err(RingError::CorruptHeader { len: u32::MAX, .. })
    ));
    sab.write(at, &[[header[0] ^ 1, header[1]]]).unwrap();
    assert!(matches!(
        consumer.read_into(&mut buf),
        Err(RingError::CorruptHeader { len: 4, .. })
    ));
    // Corrupted sequence-stamp bytes.
    sab.write(at, &[[header[0], header[1] ^ 0x40]]).unwrap();
    let err = consumer.read_into(&mut buf).unwrap_err();
    assert!(matches!(err, RingError::CorruptHeader { len: 5, .. }), "{err}");
    assert!(err.to_string().contains("overwritten"), "{err}");
    // The frame is intact once its header is.
    sab.write(at, &[header]).unwrap();
    assert_eq!(consumer.read_into(&mut buf).unwrap(), Some(5));
    assert_eq!(&buf[..5], b"hello");
}

#[test]
fn a_stale_header_from_an_earlier_lap_is_never_read_as_a_new_frame() {
    let sab = Sab::for_tier(Tier::Light);
    let (producer, mut consumer) = inbox(&sab);
    let capacity = sab.ring(RingId::Inbox).stats().control.capacity as usize;
    let mut buf = vec![0u8; capacity];
    // Fill and drain one frame, then forge its old header back into place: the ring's head has
    // moved on, so the forged header sits at an old position and is never consumed; and a copy of
    // it at the head position carries the wrong stamp.
    producer.push(&[1; 16]).unwrap();
    let at = data_offset(RingId::Inbox);
    let old: [u32; 2] = sab.read(at).unwrap();
    consumer.read_into(&mut buf).unwrap().unwrap();
    let head = frame_span(16) as usize;
    sab.write(at + head, &[old]).unwrap();
    assert!(matches!(
        consumer.read_into(&mut buf),
        Err(RingError::CorruptHeader { .. })
    ));
}

#[test]
fn a_full_ring_refuses_and_never_overwrites() {
    let sab = Sab::for_tier(Tier::Light);
    let (producer, mut consumer) = inbox(&sab);
    let frame = [0xAB; 1000];
    let mut pushed = 0;
    let err = loop {
        match producer.push(&frame) {
            Ok(()) => pushed += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, RingError::Full { .. }), "{err}");
    assert_eq!(sab.ring(RingId::Inbox).stats().control.rejected_full, 1);
    let mut buf = [0u8; 1000];
    for _ in 0..pushed {
        assert_eq!(consumer.read_into(&mut buf).unwrap(), Some(1000));
        assert_eq!(buf, frame);
    }
    assert_eq!(consumer.read_into(&mut buf).unwrap(), None);
}

#[test]
fn producers_are_admitted_by_the_region_guard_and_publish_signals() {
    let sab = Sab::for_tier(Tier::Light);
    let inbox = sab.ring(RingId::Inbox);
    // Only the kernel writes the inbox, one writer at a time.
    assert!(matches!(
        inbox.producer(Owner::Module),
        Err(GuardError::NotAuthorized { .. })
    ));
    let mut kernel = inbox.producer(Owner::Kernel).unwrap();
    assert!(matches!(inbox.producer(Owner::Kernel), Err(GuardError::Busy { .. })));
    assert_eq!(sab.guards().entry(GuardRegion::Inbox).violations, 2);
    assert_eq!(sab.epochs().load(EpochIndex::GUARD_VIOLATION), 2);
    kernel.push(b"job").unwrap();
    assert_eq!(kernel.publish().unwrap(), 1);
    assert_eq!(sab.epochs().load(EpochIndex::INBOX_DIRTY), 1);
    assert_eq!(sab.guards().entry(GuardRegion::Inbox).last_epoch, 1);
    drop(kernel);
    assert!(inbox.producer(Owner::Kernel).is_ok(), "the lock is released on drop");
    // The outbox-kernel ring takes many module writers at once.
    let outbox = sab.ring(RingId::OutboxKernel);
    let (_a, _b) = (
        outbox.producer(Owner::Module).unwrap(),
        outbox.producer(Owner::Module).unwrap(),
    );
    // One consumer per ring.
    let _c = inbox.consumer().unwrap();
    assert!(matches!(inbox.consumer(), Err(RingError::ConsumerBusy)));
}

#[test]
fn oversize_frames_are_refused() {
    let sab = Sab::for_tier(Tier::Light);
    let (producer, _consumer) = inbox(&sab);
    let max = sab.ring(RingId::Inbox).max_payload();
    assert!(matches!(
        producer.push(&vec![0; max + 1]),
        Err(RingError::FrameTooLarge { .. })
    ));
    producer.push(&vec![0; max]).unwrap();
}
