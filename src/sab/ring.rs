//! Multi-producer, single-consumer byte rings in SAB regions: the inbox (kernel → units), the
//! outbox-host (kernel → host) and the outbox-kernel (units → kernel).
//!
//! This ring is ours rather than a crate's because it must live at fixed SAB offsets, in a byte
//! layout that the JS host reads too.
//!
//! Layout: each ring's region is its data area, a power of two in size, so positions wrap with a
//! mask. Its 128-byte control block (`RingControl`) lives in the ring-control region: two cache
//! lines, the consumer's (head, consumer claim, consumed count, capacity) and the producers' (tail,
//! full-refusal count), so the two sides do not invalidate each other's line on every frame. `head` and `tail` are monotonic byte positions (u64, never reduced), so
//! `tail - head` is the occupancy and no byte has to be kept free. A producer caches the head and
//! reloads it only when the ring looks full.
//!
//! Frame: `[len u32][check u32][payload, padded to 8 bytes]`, always 8-aligned, so the header never
//! straddles the end of the data area; the payload may wrap to the start. The check word is the
//! frame's sequence stamp (derived from its absolute position, so never the same on two laps)
//! mixed with its length: a header left from an earlier lap can never pass as a new frame, and a
//! corrupted length or stamp is a typed error instead of being trusted.
//!
//! Protocol:
//! - producer: reserve by CAS on `tail` after checking free space against `head` (never overwrites
//!   an unconsumed frame; a single-writer ring's producer, admitted alone by its region guard,
//!   bumps `tail` with a plain store instead of the CAS); write the payload words; publish the
//!   header word last (release);
//! - consumer: load the header at `head` (acquire); zero means "nothing committed yet"; check the
//!   check word; copy the payload out; zero every word of the frame, so that later frames start on
//!   zeroed memory (a word is then either zero or a committed header); advance `head` (release).
//!   The consumer never reads `tail`: a valid header is proof that its frame is reserved and
//!   written.
//!
//! The algorithm is written once, over the `RingWords` trait, so the loom model test runs exactly
//! this code on loom's atomics while the SAB runs it on its own words.

use std::cell::Cell;
use std::mem::offset_of;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::Sab;
use super::epochs::EpochIndex;
use super::generated as g;
use super::guard::{GuardError, GuardRegion, GuardSession, Owner, WriterMode};
use super::layout::{Region, regions};

/// Atomic 64-bit words addressed by index: the SAB's, or loom's in the model test.
pub trait RingWords {
    fn word_count(&self) -> usize;
    fn load(&self, index: usize, order: Ordering) -> u64;
    fn store(&self, index: usize, value: u64, order: Ordering);
    fn compare_exchange_weak(
        &self,
        index: usize,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
    fn fetch_add(&self, index: usize, value: u64, order: Ordering) -> u64;
}

impl RingWords for [AtomicU64] {
    fn word_count(&self) -> usize {
        self.len()
    }
    fn load(&self, index: usize, order: Ordering) -> u64 {
        self[index].load(order)
    }
    fn store(&self, index: usize, value: u64, order: Ordering) {
        self[index].store(value, order)
    }
    fn compare_exchange_weak(
        &self,
        index: usize,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        self[index].compare_exchange_weak(current, new, success, failure)
    }
    fn fetch_add(&self, index: usize, value: u64, order: Ordering) -> u64 {
        self[index].fetch_add(value, order)
    }
}

/// The control block at the start of every ring region: the consumer's cache line, then the
/// producers'.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct RingControl {
    /// Consumer position (bytes, monotonic).
    pub head: u64,
    /// Non-zero while a consumer holds the ring.
    pub consumer: u64,
    /// Frames consumed.
    pub consumed: u64,
    /// Size of the data area in bytes (written when the SAB is created; for the JS host).
    pub capacity: u64,
    #[serde(skip)]
    pub reserved_consumer: [u64; 4],
    /// Reservation position (bytes, monotonic).
    pub tail: u64,
    /// Pushes refused because the ring was full.
    pub rejected_full: u64,
    #[serde(skip)]
    pub reserved_producer: [u64; 6],
}
const _: () = assert!(size_of::<RingControl>() == g::RING_CONTROL_SIZE as usize);
const _: () = assert!(offset_of!(RingControl, tail) == g::CACHE_LINE as usize);

const HEAD: usize = offset_of!(RingControl, head) / 8;
const CONSUMER: usize = offset_of!(RingControl, consumer) / 8;
const CONSUMED: usize = offset_of!(RingControl, consumed) / 8;
pub(crate) const CAPACITY: usize = offset_of!(RingControl, capacity) / 8;
const TAIL: usize = offset_of!(RingControl, tail) / 8;
const REJECTED_FULL: usize = offset_of!(RingControl, rejected_full) / 8;

const HEADER: u64 = g::RING_FRAME_HEADER_SIZE as u64;
const ALIGN: u64 = g::RING_FRAME_ALIGN as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("ring full: the frame needs {needed} bytes and {free} are free")]
    Full { needed: u64, free: u64 },
    #[error("a {len}-byte frame exceeds the ring's maximum payload of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("the {len}-byte frame does not fit the caller's {capacity}-byte buffer")]
    BufferTooSmall { len: usize, capacity: usize },
    #[error(
        "corrupt ring: the header at position {position} (length {len}) has check word {found:#x}, expected {expected:#x}: its length or sequence stamp was overwritten"
    )]
    CorruptHeader {
        position: u64,
        len: u32,
        expected: u32,
        found: u32,
    },
    #[error("corrupt ring: the frame at position {position} claims {len} bytes, more than the ring holds")]
    CorruptLength { position: u64, len: u32 },
    #[error("corrupt ring: head {head} and tail {tail} are inconsistent with capacity {capacity}")]
    CorruptPositions { head: u64, tail: u64, capacity: u64 },
    #[error("the ring already has a consumer")]
    ConsumerBusy,
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// The sequence stamp of the frame at byte position `position`: never zero.
pub const fn frame_stamp(position: u64) -> u32 {
    let s = ((position / ALIGN) as u32).wrapping_add(1);
    if s == 0 { 1 } else { s }
}

/// The header's check word: the stamp mixed with the length by an odd multiplier (a bijection on
/// u32), so that changing either one changes the check. A header word is never zero: with length
/// 0 the check is the stamp.
pub const fn frame_check(position: u64, len: u32) -> u32 {
    frame_stamp(position) ^ len.wrapping_mul(0x9E37_79B1)
}

/// The 8-byte header word of a frame.
pub const fn frame_header(position: u64, len: u32) -> u64 {
    ((frame_check(position, len) as u64) << 32) | len as u64
}

/// The bytes a frame of `len` payload bytes occupies.
pub const fn frame_span(len: u64) -> u64 {
    HEADER + len.div_ceil(ALIGN) * ALIGN
}

/// The ring algorithm over a control block and a data area.
pub struct RingCore<'a, W: RingWords + ?Sized> {
    control: &'a W,
    data: &'a W,
    capacity: u64,
}

impl<'a, W: RingWords + ?Sized> RingCore<'a, W> {
    /// `control` is the 16-word control block; `data` is the data area (capacity = 8 × words, a
    /// power of two).
    pub fn new(control: &'a W, data: &'a W) -> Self {
        assert!(control.word_count() > REJECTED_FULL, "ring control block too small");
        let capacity = data.word_count() as u64 * ALIGN;
        assert!(capacity.is_power_of_two(), "ring capacity must be a power of two");
        Self {
            control,
            data,
            capacity,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The largest payload a frame can carry.
    pub fn max_payload(&self) -> usize {
        (self.capacity - HEADER) as usize
    }

    fn word_at(&self, position: u64) -> usize {
        ((position & (self.capacity - 1)) / ALIGN) as usize
    }

    /// Reserves room for `payload`, writes it and commits it. Never blocks and never overwrites an
    /// unconsumed frame: a full ring is `RingError::Full`.
    ///
    /// `head_cache` is this producer's last view of the consumer's head (start it at 0). A stale
    /// view only under-estimates the free space, so it is reloaded only when the ring looks full.
    /// `exclusive` says this is the ring's only producer (a single-writer guard holds it): the
    /// reservation is then a plain store, not a CAS, whose locked instruction would wait for every
    /// earlier store of the previous frame to reach the cache.
    pub fn push(&self, payload: &[u8], head_cache: &Cell<u64>, exclusive: bool) -> Result<u64, RingError> {
        if payload.len() > self.max_payload() {
            return Err(RingError::FrameTooLarge {
                len: payload.len(),
                max: self.max_payload(),
            });
        }
        let span = frame_span(payload.len() as u64);
        let mut tail = self.control.load(TAIL, Ordering::Relaxed);
        loop {
            let fits = |head: u64| {
                let used = tail.wrapping_sub(head);
                used <= self.capacity && self.capacity - used >= span
            };
            if !fits(head_cache.get()) {
                // Acquire pairs with the consumer's release of `head`: the zeroing of the frames
                // it consumed happens before this producer writes over them.
                let head = self.control.load(HEAD, Ordering::Acquire);
                head_cache.set(head);
                let used = tail.wrapping_sub(head);
                if used > self.capacity {
                    // A tail read before a newer head: reload it and look again.
                    let fresh = self.control.load(TAIL, Ordering::Relaxed);
                    if fresh == tail {
                        return Err(RingError::CorruptPositions {
                            head,
                            tail,
                            capacity: self.capacity,
                        });
                    }
                    tail = fresh;
                    continue;
                }
                if !fits(head) {
                    self.control.fetch_add(REJECTED_FULL, 1, Ordering::Relaxed);
                    return Err(RingError::Full {
                        needed: span,
                        free: self.capacity - used,
                    });
                }
            }
            if exclusive {
                self.control.store(TAIL, tail + span, Ordering::Relaxed);
                break;
            }
            match self
                .control
                .compare_exchange_weak(TAIL, tail, tail + span, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(current) => tail = current,
            }
        }
        // [tail, tail + span) is ours. Payload first, header last.
        let mut word = self.word_at(tail + HEADER);
        let mask = self.data.word_count() - 1;
        let mut chunks = payload.chunks_exact(ALIGN as usize);
        for chunk in &mut chunks {
            let bytes: [u8; 8] = chunk.try_into().expect("chunks_exact gives 8 bytes");
            self.data.store(word, u64::from_le_bytes(bytes), Ordering::Relaxed);
            word = (word + 1) & mask;
        }
        if !chunks.remainder().is_empty() {
            let mut bytes = [0u8; 8];
            bytes[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
            self.data.store(word, u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        self.data.store(
            self.word_at(tail),
            frame_header(tail, payload.len() as u32),
            Ordering::Release,
        );
        Ok(tail)
    }

    /// Fault injection for tests (exclusive producers only): reserves a frame of `len` bytes and
    /// writes its first payload word, but never its header, as a producer killed mid-write leaves
    /// it.
    #[doc(hidden)]
    pub fn reserve_without_commit(&self, len: usize, head_cache: &Cell<u64>) -> Result<(), RingError> {
        let span = frame_span(len as u64);
        let tail = self.control.load(TAIL, Ordering::Relaxed);
        let head = self.control.load(HEAD, Ordering::Acquire);
        head_cache.set(head);
        let free = self.capacity - tail.wrapping_sub(head);
        if free < span {
            return Err(RingError::Full { needed: span, free });
        }
        self.control.store(TAIL, tail + span, Ordering::Relaxed);
        self.data
            .store(self.word_at(tail + HEADER), u64::MAX, Ordering::Relaxed);
        Ok(())
    }

    /// Fault injection for tests: publishes `head` as the consumer's position, whatever the ring
    /// holds, as a consumer with a bug would.
    #[doc(hidden)]
    pub fn force_head(&self, head: u64) {
        self.control.store(HEAD, head, Ordering::Release);
    }

    /// The consumer's cursor, starting at the published head.
    pub fn cursor(&self) -> ConsumerCursor {
        let head = self.control.load(HEAD, Ordering::Acquire);
        ConsumerCursor {
            head: Cell::new(head),
            published: Cell::new(head),
            consumed: Cell::new(self.control.load(CONSUMED, Ordering::Relaxed)),
        }
    }

    /// Publishes the cursor's head (release: the zeroed frames before it are visible to any
    /// producer that sees it) and its consumed count.
    pub fn publish(&self, cursor: &ConsumerCursor) {
        if cursor.published.get() != cursor.head.get() {
            self.control.store(CONSUMED, cursor.consumed.get(), Ordering::Relaxed);
            self.control.store(HEAD, cursor.head.get(), Ordering::Release);
            cursor.published.set(cursor.head.get());
        }
    }

    /// Consumes the next committed frame into `buf` and returns its length, or `None` when no
    /// frame is committed at the head. The caller must be the ring's only consumer.
    ///
    /// The consumer publishes its head in batches (every sixteenth of the ring while a backlog
    /// remains, and as soon as it has consumed the last committed frame), so producers of a busy
    /// ring see space freed in chunks instead of fighting over the head's cache line on every
    /// frame.
    pub fn pop_into(&self, buf: &mut [u8], cursor: &ConsumerCursor) -> Result<Option<usize>, RingError> {
        let head = cursor.head.get();
        let header_word = self.word_at(head);
        let header = self.data.load(header_word, Ordering::Acquire);
        if header == 0 {
            self.publish(cursor);
            return Ok(None);
        }
        let (len, found) = (header as u32, (header >> 32) as u32);
        let expected = frame_check(head, len);
        if found != expected {
            return Err(RingError::CorruptHeader {
                position: head,
                len,
                expected,
                found,
            });
        }
        let span = frame_span(u64::from(len));
        if span > self.capacity {
            return Err(RingError::CorruptLength { position: head, len });
        }
        let len = len as usize;
        if buf.len() < len {
            return Err(RingError::BufferTooSmall {
                len,
                capacity: buf.len(),
            });
        }
        let mask = self.data.word_count() - 1;
        let mut word = self.word_at(head + HEADER);
        let mut chunks = buf[..len].chunks_exact_mut(ALIGN as usize);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.data.load(word, Ordering::Relaxed).to_le_bytes());
            self.data.store(word, 0, Ordering::Relaxed);
            word = (word + 1) & mask;
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let n = rest.len();
            rest.copy_from_slice(&self.data.load(word, Ordering::Relaxed).to_le_bytes()[..n]);
            self.data.store(word, 0, Ordering::Relaxed);
        }
        self.data.store(header_word, 0, Ordering::Relaxed);
        let next = head + span;
        cursor.head.set(next);
        cursor.consumed.set(cursor.consumed.get() + 1);
        // Publish in batches while a backlog remains; publish at once when this frame was the
        // last one committed, so an idle ring never holds freed space back from producers.
        let backlog = self.data.load(self.word_at(next), Ordering::Relaxed) != 0;
        if !backlog || next - cursor.published.get() >= (self.capacity / 16).max(ALIGN) {
            self.publish(cursor);
        }
        Ok(Some(len))
    }

    /// Claims the consumer role; false if another consumer holds it.
    pub fn claim_consumer(&self) -> bool {
        loop {
            match self
                .control
                .compare_exchange_weak(CONSUMER, 0, 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(0) => continue, // spurious failure: the claim is still free
                Err(_) => return false,
            }
        }
    }

    pub fn release_consumer(&self) {
        self.control.store(CONSUMER, 0, Ordering::Release);
    }

    /// The control block as it is now.
    pub fn control(&self) -> RingControl {
        let load = |i| self.control.load(i, Ordering::Acquire);
        RingControl {
            head: load(HEAD),
            consumer: load(CONSUMER),
            consumed: load(CONSUMED),
            capacity: load(CAPACITY),
            tail: load(TAIL),
            rejected_full: load(REJECTED_FULL),
            ..RingControl::default()
        }
    }

    /// Committed frames waiting at the head, and whether a reserved frame is still uncommitted
    /// (read-only walk; for inspection).
    pub fn pending_frames(&self) -> (u64, bool) {
        let RingControl { head, tail, .. } = self.control();
        let (mut position, mut frames) = (head, 0);
        while position < tail && tail - position <= self.capacity {
            let header = self.data.load(self.word_at(position), Ordering::Acquire);
            if header == 0 || header != frame_header(position, header as u32) {
                return (frames, true);
            }
            frames += 1;
            position += frame_span(header & u64::from(u32::MAX));
        }
        (frames, false)
    }
}

/// The single consumer's position: consumed up to `head`, published up to `published`.
#[derive(Debug)]
pub struct ConsumerCursor {
    head: Cell<u64>,
    published: Cell<u64>,
    consumed: Cell<u64>,
}

/// The three rings of the SAB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RingId {
    Inbox,
    OutboxHost,
    OutboxKernel,
    /// Requests to the supervisor tree (`sab::lifecycle`).
    Lifecycle,
}

impl RingId {
    pub const ALL: [RingId; 4] = [
        RingId::Inbox,
        RingId::OutboxHost,
        RingId::OutboxKernel,
        RingId::Lifecycle,
    ];

    /// The ring's data area.
    pub const fn region(self) -> Region {
        match self {
            RingId::Inbox => regions::INBOX,
            RingId::OutboxHost => regions::OUTBOX_HOST,
            RingId::OutboxKernel => regions::OUTBOX_KERNEL,
            RingId::Lifecycle => regions::LIFECYCLE,
        }
    }

    /// The ring's control block.
    pub const fn control_region(self) -> Region {
        match self {
            RingId::Inbox => regions::INBOX_CONTROL,
            RingId::OutboxHost => regions::OUTBOX_HOST_CONTROL,
            RingId::OutboxKernel => regions::OUTBOX_KERNEL_CONTROL,
            RingId::Lifecycle => regions::LIFECYCLE_CONTROL,
        }
    }

    pub const fn guard(self) -> GuardRegion {
        match self {
            RingId::Inbox => GuardRegion::Inbox,
            RingId::OutboxHost => GuardRegion::OutboxHost,
            RingId::OutboxKernel => GuardRegion::OutboxKernel,
            RingId::Lifecycle => GuardRegion::Lifecycle,
        }
    }

    /// The epoch producers signal after pushing.
    pub const fn epoch(self) -> EpochIndex {
        match self {
            RingId::Inbox => EpochIndex::INBOX_DIRTY,
            RingId::OutboxHost => EpochIndex::OUTBOX_HOST_DIRTY,
            RingId::OutboxKernel => EpochIndex::OUTBOX_KERNEL_DIRTY,
            RingId::Lifecycle => EpochIndex::LIFECYCLE_DIRTY,
        }
    }
}

/// One ring of a SAB. Cheap to clone; handles own a `Sab` clone, so they can live in a `Local`.
#[derive(Clone)]
pub struct Ring {
    sab: Sab,
    id: RingId,
}

/// What `inos inspect` shows of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RingStats {
    pub ring: RingId,
    #[serde(flatten)]
    pub control: RingControl,
    pub used_bytes: u64,
    pub pending_frames: u64,
    pub uncommitted_frame: bool,
}

impl Ring {
    pub(crate) fn new(sab: Sab, id: RingId) -> Self {
        Self { sab, id }
    }

    pub fn id(&self) -> RingId {
        self.id
    }

    pub(crate) fn core(&self) -> RingCore<'_, [AtomicU64]> {
        let (control, data) = (self.id.control_region(), self.id.region());
        let memory = self.sab.memory();
        RingCore::new(
            memory
                .u64_words(control.offset, control.size / 8)
                .expect("ring control blocks lie inside every SAB"),
            memory
                .u64_words(data.offset, data.size / 8)
                .expect("ring regions lie inside every SAB"),
        )
    }

    pub fn max_payload(&self) -> usize {
        self.core().max_payload()
    }

    /// A producer handle, after the region guard admits `owner`.
    pub fn producer(&self, owner: Owner) -> Result<RingProducer, GuardError> {
        let session = self.sab.guards().begin(self.id.guard(), owner)?;
        Ok(RingProducer {
            ring: self.clone(),
            session,
            head_cache: Cell::new(0),
            exclusive: self.id.guard().policy().mode == WriterMode::SingleWriter,
        })
    }

    /// The consumer handle; only one exists at a time.
    pub fn consumer(&self) -> Result<RingConsumer, RingError> {
        let core = self.core();
        if core.claim_consumer() {
            Ok(RingConsumer {
                ring: self.clone(),
                cursor: core.cursor(),
            })
        } else {
            Err(RingError::ConsumerBusy)
        }
    }

    pub fn stats(&self) -> RingStats {
        let core = self.core();
        let control = core.control();
        let (pending_frames, uncommitted_frame) = core.pending_frames();
        RingStats {
            ring: self.id,
            control,
            used_bytes: control.tail.wrapping_sub(control.head),
            pending_frames,
            uncommitted_frame,
        }
    }
}

/// A guarded producer. Push any number of frames, then `publish` to signal the ring's epoch.
pub struct RingProducer {
    ring: Ring,
    session: GuardSession,
    head_cache: Cell<u64>,
    exclusive: bool,
}

impl RingProducer {
    pub fn push(&self, payload: &[u8]) -> Result<(), RingError> {
        self.ring
            .core()
            .push(payload, &self.head_cache, self.exclusive)
            .map(|_| ())
    }

    /// Signals the ring's epoch (waking its consumer) and checks the guard's epoch rule.
    pub fn publish(&mut self) -> Result<u32, GuardError> {
        let value = self.ring.sab.epochs().signal(self.ring.id.epoch());
        self.session.check_advanced()?;
        Ok(value)
    }

    /// Pushes frames in order until one does not fit, then publishes what was pushed. Returns how
    /// many went out; a failure other than a full ring is logged (the rest wait either way).
    pub fn push_all<F: AsRef<[u8]>>(&mut self, frames: impl IntoIterator<Item = F>) -> usize {
        let mut sent = 0;
        for frame in frames {
            match self.push(frame.as_ref()) {
                Ok(()) => sent += 1,
                Err(RingError::Full { .. }) => break,
                Err(e) => {
                    bevy::log::error!("the {:?} ring refused a frame: {e}", self.ring.id);
                    break;
                }
            }
        }
        if sent > 0
            && let Err(e) = self.publish()
        {
            bevy::log::error!("the {:?} guard refused a publish: {e}", self.ring.id);
        }
        sent
    }
}

/// The ring's single consumer; dropping it releases the claim.
pub struct RingConsumer {
    ring: Ring,
    cursor: ConsumerCursor,
}

impl RingConsumer {
    /// Consumes the next frame into `buf` without allocating; `None` when nothing is committed.
    pub fn read_into(&mut self, buf: &mut [u8]) -> Result<Option<usize>, RingError> {
        self.ring.core().pop_into(buf, &self.cursor)
    }

    /// Reads every committed frame, in order, into `buf` and hands each to `f`; a broken ring is
    /// logged and ends the reading (the consumer's side of `RingProducer::push_all`).
    pub fn drain(&mut self, buf: &mut [u8], mut f: impl FnMut(&[u8])) {
        loop {
            match self.read_into(buf) {
                Ok(Some(n)) => f(&buf[..n]),
                Ok(None) => return,
                Err(e) => {
                    bevy::log::error!("the {:?} ring stopped being read: {e}", self.ring.id);
                    return;
                }
            }
        }
    }
}

impl Drop for RingConsumer {
    fn drop(&mut self) {
        let core = self.ring.core();
        core.publish(&self.cursor);
        core.release_consumer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem {
        control: Vec<AtomicU64>,
        data: Vec<AtomicU64>,
        head: Cell<u64>,
        cursor: ConsumerCursor,
    }

    impl Mem {
        fn new(data_words: usize) -> Self {
            let cursor = ConsumerCursor {
                head: Cell::new(0),
                published: Cell::new(0),
                consumed: Cell::new(0),
            };
            Self {
                cursor,
                control: (0..g::RING_CONTROL_SIZE / 8).map(|_| AtomicU64::new(0)).collect(),
                data: (0..data_words).map(|_| AtomicU64::new(0)).collect(),
                head: Cell::new(0),
            }
        }
        fn core(&self) -> RingCore<'_, [AtomicU64]> {
            RingCore::new(&self.control[..], &self.data[..])
        }
        fn push(&self, payload: &[u8]) -> Result<u64, RingError> {
            self.core().push(payload, &self.head, false)
        }
        fn pop(&self, buf: &mut [u8]) -> Result<Option<usize>, RingError> {
            self.core().pop_into(buf, &self.cursor)
        }
    }

    #[test]
    fn frames_round_trip_in_order_across_the_wrap_point() {
        let mem = Mem::new(8); // 64 data bytes
        let mut buf = [0u8; 64];
        for round in 0u8..50 {
            let a = [round; 13];
            let b = [round.wrapping_add(1); 5];
            mem.push(&a).unwrap();
            mem.push(&b).unwrap();
            assert_eq!(mem.pop(&mut buf).unwrap(), Some(13));
            assert_eq!(&buf[..13], &a);
            assert_eq!(mem.pop(&mut buf).unwrap(), Some(5));
            assert_eq!(&buf[..5], &b);
            assert_eq!(mem.pop(&mut buf).unwrap(), None);
        }
        assert!(
            mem.data.iter().all(|w| w.load(Ordering::Relaxed) == 0),
            "consumed frames are zeroed"
        );
    }

    #[test]
    fn a_full_ring_refuses_and_keeps_its_frames() {
        let mem = Mem::new(4); // 32 bytes: two 8-byte frames of span 16
        let ring = mem.core();
        mem.push(&[1; 8]).unwrap();
        mem.push(&[2; 8]).unwrap();
        assert_eq!(mem.push(&[3]), Err(RingError::Full { needed: 16, free: 0 }));
        assert_eq!(ring.control().rejected_full, 1);
        let mut buf = [0u8; 8];
        assert_eq!(mem.pop(&mut buf), Ok(Some(8)));
        assert_eq!(buf, [1; 8]);
        assert_eq!(mem.pop(&mut buf), Ok(Some(8)));
        assert_eq!(buf, [2; 8]);
    }

    #[test]
    fn oversize_frames_and_small_buffers_are_typed_errors() {
        let mem = Mem::new(4);
        let ring = mem.core();
        assert_eq!(ring.max_payload(), 24);
        assert_eq!(mem.push(&[0; 25]), Err(RingError::FrameTooLarge { len: 25, max: 24 }));
        mem.push(&[9; 24]).unwrap();
        let mut small = [0u8; 10];
        assert_eq!(
            mem.pop(&mut small),
            Err(RingError::BufferTooSmall { len: 24, capacity: 10 })
        );
        // The frame is still there.
        let mut buf = [0u8; 24];
        assert_eq!(mem.pop(&mut buf), Ok(Some(24)));
    }

    #[test]
    fn corrupted_headers_are_typed_errors() {
        let mem = Mem::new(8);
        mem.push(&[7; 4]).unwrap();
        let header = mem.data[0].load(Ordering::Relaxed);
        let mut buf = [0u8; 64];
        // A flipped stamp bit, then a flipped length bit: both break the check word.
        mem.data[0].store(header ^ (1 << 40), Ordering::Relaxed);
        assert!(matches!(mem.pop(&mut buf), Err(RingError::CorruptHeader { .. })));
        mem.data[0].store(header ^ 0x2, Ordering::Relaxed);
        assert!(matches!(
            mem.pop(&mut buf),
            Err(RingError::CorruptHeader { len: 6, .. })
        ));
        // A length beyond the ring, with a matching check word.
        mem.data[0].store(frame_header(0, 1000), Ordering::Relaxed);
        assert!(matches!(
            mem.pop(&mut buf),
            Err(RingError::CorruptLength { len: 1000, .. })
        ));
        // Restored, it reads.
        mem.data[0].store(header, Ordering::Relaxed);
        assert_eq!(mem.pop(&mut buf), Ok(Some(4)));
    }

    #[test]
    fn zero_length_frames_are_frames() {
        let mem = Mem::new(4);
        let ring = mem.core();
        mem.push(&[]).unwrap();
        assert_eq!(ring.pending_frames(), (1, false));
        assert_eq!(mem.pop(&mut []), Ok(Some(0)));
        assert_eq!(mem.pop(&mut []), Ok(None));
    }

    #[test]
    fn one_consumer_at_a_time() {
        let mem = Mem::new(4);
        let ring = mem.core();
        assert!(ring.claim_consumer());
        assert!(!ring.claim_consumer());
        ring.release_consumer();
        assert!(ring.claim_consumer());
    }

    #[test]
    fn stamps_are_never_zero() {
        assert_eq!(frame_stamp(0), 1);
        assert_eq!(frame_stamp(8), 2);
        assert_ne!(frame_stamp((u64::from(u32::MAX)) * 8), 0);
    }
}
