//! Ping-pong streams: the bird stream (236-byte records) and the matrix stream (8 parts × 64 bytes
//! per bird, part-major).
//!
//! Each stream has two buffers and its own 64-byte control block (`StreamControl`): the published
//! generation, the active buffer, and per buffer a seqlock word, the record count and the
//! generation it holds. (The original shared one "active" epoch word between both streams.)
//!
//! Writer (one at a time, held by the region guard): pick the inactive buffer, make its seqlock
//! word odd, write the records, make it even (release), then flip `active`, bump the generation
//! and signal the stream's epoch.
//!
//! Reader: load the active buffer's seqlock word (acquire); if it is odd the buffer is being
//! written, so retry; copy the records into the caller's buffer (no allocation); fence (acquire)
//! and re-load the seqlock word: a different value means the writer came back to this buffer
//! during the copy, so the copy is thrown away and retried. A reader therefore never accepts a
//! torn copy, however slow it is.

use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering, fence};

use bytemuck::{AnyBitPattern, NoUninit};
use serde::Serialize;

use super::epochs::EpochIndex;
use super::generated as g;
use super::guard::{GuardError, GuardRegion, GuardSession, Owner};
use super::layout::{Region, regions};
use super::memory::{AccessError, bytes_of_mut, copy_words_in, copy_words_out};
use super::{Sab, seqlock};

/// Parts per bird in the matrix stream, in stream order: body, head, beak, left wing, left tip,
/// right wing, right tip, tail (the matrix unit writes them, the renderer draws them).
pub const PARTS_PER_BIRD: usize = g::MATRIX_PARTS_PER_BIRD as usize;

/// One bird: 59 × f32 (reference §2.14).
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct BirdRecord {
    pub position: [f32; 3],
    pub velocity: [f32; 3],
    /// Orientation quaternion (x, y, z, w).
    pub orientation: [f32; 4],
    /// Energy in [0.4, 1] (the original's docs called this slot "angular velocity").
    pub energy: f32,
    pub left_wing: f32,
    pub right_wing: f32,
    pub tail_yaw: f32,
    pub fitness: f32,
    /// w_sep, w_ali, w_coh, w_trick, then the 40 further weights.
    #[serde(with = "serde_genes")]
    pub genes: [f32; 44],
}
const _: () = assert!(size_of::<BirdRecord>() == g::BIRD_RECORD_SIZE as usize);
const _: () = assert!(size_of::<BirdRecord>() == 4 * g::BIRD_RECORD_FLOATS as usize);

mod serde_genes {
    pub fn serialize<S: serde::Serializer>(genes: &[f32; 44], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(genes.iter())
    }
}

/// One column-major 4×4 transform (one part of one bird).
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct MatrixPart {
    pub cols: [f32; 16],
}
const _: () = assert!(size_of::<MatrixPart>() == g::MATRIX_PART_SIZE as usize);

/// Seqlock word, record count and content generation of one buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct BufferControl {
    pub seq: u32,
    pub count: u32,
    pub generation: u32,
    pub reserved: u32,
}

/// The 64-byte control block of a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct StreamControl {
    /// Number of publishes so far.
    pub generation: u32,
    /// The buffer readers should take (0 = A, 1 = B).
    pub active: u32,
    /// Bytes per record (written when the SAB is created).
    pub record_size: u32,
    /// Records each buffer holds (written when the SAB is created).
    pub capacity: u32,
    pub buffers: [BufferControl; 2],
    pub reserved: [u32; 4],
}
const _: () = assert!(size_of::<StreamControl>() == g::STREAM_CONTROL_SIZE as usize);

const GENERATION: usize = offset_of!(StreamControl, generation) / 4;
const ACTIVE: usize = offset_of!(StreamControl, active) / 4;
pub(crate) const RECORD_SIZE: usize = offset_of!(StreamControl, record_size) / 4;
pub(crate) const CAPACITY: usize = offset_of!(StreamControl, capacity) / 4;
const BUFFERS: usize = offset_of!(StreamControl, buffers) / 4;
const BUFFER_WORDS: usize = size_of::<BufferControl>() / 4;
const SEQ: usize = offset_of!(BufferControl, seq) / 4;
const COUNT: usize = offset_of!(BufferControl, count) / 4;
const BUFFER_GENERATION: usize = offset_of!(BufferControl, generation) / 4;

/// Copy attempts before a reader gives up (each failure means the writer lapped the reader).
pub const READ_ATTEMPTS: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("{count} records exceed the stream's capacity of {capacity}")]
    TooMany { count: usize, capacity: usize },
    #[error("{bytes} bytes are not a whole number of {record_size}-byte records")]
    NotWholeRecords { bytes: usize, record_size: usize },
    #[error("the destination holds {available} bytes but the stream has {needed}")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("corrupt stream control: buffer {buffer} claims {count} records, capacity {capacity}")]
    CorruptControl { buffer: u32, count: u32, capacity: usize },
    #[error("the writer kept overtaking the reader ({attempts} attempts)")]
    Contended { attempts: u32 },
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// The two ping-pong streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamId {
    Birds,
    Matrices,
}

impl StreamId {
    pub const ALL: [StreamId; 2] = [StreamId::Birds, StreamId::Matrices];

    pub const fn control_region(self) -> Region {
        match self {
            StreamId::Birds => regions::BIRD_STREAM_CONTROL,
            StreamId::Matrices => regions::MATRIX_STREAM_CONTROL,
        }
    }

    /// Bytes per record: one bird, or one bird's eight matrices.
    pub const fn record_size(self) -> usize {
        match self {
            StreamId::Birds => g::BIRD_RECORD_SIZE as usize,
            StreamId::Matrices => (g::MATRIX_PART_SIZE * g::MATRIX_PARTS_PER_BIRD) as usize,
        }
    }

    pub const fn epoch(self) -> EpochIndex {
        match self {
            StreamId::Birds => EpochIndex::BIRD,
            StreamId::Matrices => EpochIndex::MATRIX,
        }
    }

    pub const fn guard(self) -> GuardRegion {
        match self {
            StreamId::Birds => GuardRegion::BirdStream,
            StreamId::Matrices => GuardRegion::MatrixStream,
        }
    }
}

/// What a reader got: the generation it holds, the record count, and how many copies it took
/// (more than one means the writer lapped the reader and the torn copies were thrown away).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRead {
    pub generation: u32,
    pub count: usize,
    pub attempts: u32,
}

/// One ping-pong stream of a SAB. Cheap to clone.
#[derive(Clone)]
pub struct Stream {
    sab: Sab,
    id: StreamId,
}

impl Stream {
    pub(crate) fn new(sab: Sab, id: StreamId) -> Self {
        Self { sab, id }
    }

    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The two buffers, A then B.
    pub fn buffers(&self) -> [Region; 2] {
        let spec = self.sab.layout().spec();
        match self.id {
            StreamId::Birds => spec.bird_buffers,
            StreamId::Matrices => spec.matrix_buffers,
        }
    }

    /// Records each buffer holds: the tier's maximum bird count.
    pub fn capacity(&self) -> usize {
        self.sab.layout().spec().max_birds as usize
    }

    fn control_words(&self) -> &[AtomicU32] {
        self.sab
            .memory()
            .u32_words(self.id.control_region().offset, g::STREAM_CONTROL_SIZE as usize / 4)
            .expect("stream control blocks lie inside every SAB")
    }

    /// The control block as it is now (for inspection).
    pub fn control(&self) -> StreamControl {
        let mut control = StreamControl::default();
        copy_words_out(self.control_words(), bytemuck::bytes_of_mut(&mut control));
        control
    }

    /// The writer handle, after the region guard admits `owner` (one writer at a time).
    pub fn writer(&self, owner: Owner) -> Result<StreamWriter, GuardError> {
        let session = self.sab.guards().begin(self.id.guard(), owner)?;
        Ok(StreamWriter {
            stream: self.clone(),
            session,
        })
    }

    /// Copies the latest consistent buffer into `dst` without allocating. `dst` is viewed as
    /// bytes: `BirdRecord`s for the bird stream, `MatrixPart`s (8 per bird, part-major) for the
    /// matrix stream, or any 4-byte-word type.
    pub fn read_into<T: AnyBitPattern + NoUninit>(&self, dst: &mut [T]) -> Result<StreamRead, StreamError> {
        let dst = bytes_of_mut(dst)?;
        let control = self.control_words();
        for attempt in 1..=READ_ATTEMPTS {
            let buffer = control[ACTIVE].load(Ordering::Acquire) & 1;
            let words = &control[BUFFERS + buffer as usize * BUFFER_WORDS..][..BUFFER_WORDS];
            let seq = words[SEQ].load(Ordering::Acquire);
            if seq % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let count = words[COUNT].load(Ordering::Relaxed);
            let generation = words[BUFFER_GENERATION].load(Ordering::Relaxed);
            if count as usize > self.capacity() {
                // Re-check before blaming the memory: a writer may have moved on.
                if words[SEQ].load(Ordering::Acquire) != seq {
                    continue;
                }
                return Err(StreamError::CorruptControl {
                    buffer,
                    count,
                    capacity: self.capacity(),
                });
            }
            let needed = count as usize * self.id.record_size();
            if dst.len() < needed {
                return Err(StreamError::BufferTooSmall {
                    needed,
                    available: dst.len(),
                });
            }
            let region = self.buffers()[buffer as usize];
            copy_words_out(
                self.sab.memory().u32_words(region.offset, needed / 4)?,
                &mut dst[..needed],
            );
            fence(Ordering::Acquire);
            if words[SEQ].load(Ordering::Relaxed) == seq {
                return Ok(StreamRead {
                    generation,
                    count: count as usize,
                    attempts: attempt,
                });
            }
        }
        Err(StreamError::Contended {
            attempts: READ_ATTEMPTS,
        })
    }
}

/// The stream's single writer (holds the region guard).
pub struct StreamWriter {
    stream: Stream,
    session: GuardSession,
}

/// What a publish produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub generation: u32,
    pub buffer: u32,
    pub count: usize,
}

impl StreamWriter {
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Writes `records` (a whole number of stream records) into the inactive buffer, publishes it
    /// and signals the stream's epoch (and, for birds, stores the count in `BIRD_COUNT`).
    pub fn publish<T: NoUninit>(&mut self, records: &[T]) -> Result<Published, StreamError> {
        let bytes: &[u8] = bytemuck::cast_slice(records);
        let record_size = self.stream.id.record_size();
        if !bytes.len().is_multiple_of(record_size) {
            return Err(StreamError::NotWholeRecords {
                bytes: bytes.len(),
                record_size,
            });
        }
        self.publish_with(bytes.len() / record_size, |target| copy_words_in(target, bytes))
    }

    /// Publishes `count` records that `fill` writes straight into the inactive buffer's words
    /// (`count` records' worth, as their little-endian `u32` values), as `publish` does, with no
    /// copy of the records made first. `fill` runs inside the buffer's seqlock write, so it may
    /// split the words across threads but must return only when all are written.
    pub fn publish_with(&mut self, count: usize, fill: impl FnOnce(&[AtomicU32])) -> Result<Published, StreamError> {
        let capacity = self.stream.capacity();
        if count > capacity {
            return Err(StreamError::TooMany { count, capacity });
        }
        let control = self.stream.control_words();
        let buffer = (control[ACTIVE].load(Ordering::Relaxed) & 1) ^ 1;
        let words = &control[BUFFERS + buffer as usize * BUFFER_WORDS..][..BUFFER_WORDS];
        let generation = control[GENERATION].load(Ordering::Relaxed).wrapping_add(1);
        let region = self.stream.buffers()[buffer as usize];
        let target = self
            .stream
            .sab
            .memory()
            .u32_words(region.offset, count * self.stream.id.record_size() / 4)?;

        seqlock::write(&words[SEQ], || {
            fill(target);
            words[COUNT].store(count as u32, Ordering::Relaxed);
            words[BUFFER_GENERATION].store(generation, Ordering::Relaxed);
        });

        control[ACTIVE].store(buffer, Ordering::Release);
        control[GENERATION].store(generation, Ordering::Release);
        let epochs = self.stream.sab.epochs();
        if self.stream.id == StreamId::Birds {
            epochs.store(EpochIndex::BIRD_COUNT, count as u32);
        }
        epochs.signal(self.stream.id.epoch());
        epochs.signal(EpochIndex::SYSTEM);
        self.session.check_advanced()?;
        Ok(Published {
            generation,
            buffer,
            count,
        })
    }
}
