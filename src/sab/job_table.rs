//! The job table: every job between its submission and the moment its caller takes the result,
//! in the SAB (`jobTable*` in the schema), so that a snapshot, or a kernel restarted on the same
//! SAB, answers every job exactly once.
//!
//! A 4 KiB header (the last wire id handed out) and `SLOTS` slots of 256 bytes: a 64-byte
//! [`JobSlot`] and 192 bytes of frame. A slot holds the job's encoded frame while the job waits
//! (`Queued`) or runs (`Sent`), and the encoded result once it is answered (`Answered`), until the
//! caller takes it and the slot is free again. A frame longer than 192 bytes lives in an arena
//! block the slot points to. The kernel is the only writer; its queue, in-flight window and timeouts
//! are caches rebuilt from this table.

use serde::Serialize;

use super::Sab;
use super::arena::ArenaError;
use super::generated as g;
use super::guard::Owner;
use super::layout::{KernelArea, Region};

/// Live jobs the table holds.
pub const SLOTS: usize = g::JOB_SLOTS as usize;
const SLOT_SIZE: usize = g::JOB_SLOT_SIZE as usize;
const RECORD_SIZE: usize = g::JOB_SLOT_RECORD_SIZE as usize;
/// Frame bytes held in the slot itself.
pub const INLINE_FRAME: usize = SLOT_SIZE - RECORD_SIZE;
const HEADER: usize = g::JOB_TABLE_HEADER_SIZE as usize;
const _: () = assert!(HEADER + SLOTS * SLOT_SIZE <= g::JOB_TABLE_SIZE as usize);

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[repr(u8)]
pub enum JobState {
    Free = 0,
    /// Waiting in the kernel's queue.
    Queued = 1,
    /// On the inbox ring or running.
    Sent = 2,
    /// Resolved; the slot holds the result until the caller takes it.
    Answered = 3,
}

impl JobState {
    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Free, Self::Queued, Self::Sent, Self::Answered]
            .into_iter()
            .find(|s| *s as u8 == code)
    }
}

/// One job's record (64 bytes, little-endian).
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct JobSlot {
    /// The kernel's id for the job on the rings; 0 in a free slot.
    pub wire: u64,
    /// The caller's id.
    pub job_id: u64,
    pub submitted_ms: u64,
    /// Absolute, ms since the Unix epoch; 0 = none.
    pub deadline_ms: u64,
    pub unit_hash: u32,
    pub method_hash: u32,
    pub source_hash: u32,
    /// The scheduling score the job was queued with.
    pub score: f32,
    /// 0 = none.
    pub timeout_ms: u32,
    pub frame_len: u32,
    /// Arena offset of the frame when it does not fit the slot; 0 when it is inline.
    pub frame_block: u32,
    pub state: u8,
    pub priority: u8,
    pub reserved: u16,
}
const _: () = assert!(size_of::<JobSlot>() == RECORD_SIZE);

impl JobSlot {
    pub fn job_state(&self) -> Option<JobState> {
        JobState::from_code(self.state)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobTableError {
    #[error("a {len}-byte frame does not fit an arena block: {source}")]
    Arena { len: usize, source: ArenaError },
}

/// The job table of one SAB.
pub struct JobTable<'a> {
    sab: &'a Sab,
    region: Region,
}

impl<'a> JobTable<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self {
            sab,
            region: sab.layout().kernel_area(KernelArea::JobTable),
        }
    }

    fn slot_offset(&self, slot: usize) -> usize {
        assert!(slot < SLOTS, "job slot {slot} out of range");
        self.region.offset + HEADER + slot * SLOT_SIZE
    }

    /// The last wire id handed out.
    pub fn sequence(&self) -> u64 {
        self.sab
            .read(self.region.offset)
            .expect("the job table lies inside the SAB")
    }

    pub fn set_sequence(&self, wire: u64) {
        self.sab
            .write(self.region.offset, &[wire])
            .expect("the job table lies inside the SAB");
    }

    pub fn read(&self, slot: usize) -> JobSlot {
        self.sab
            .read(self.slot_offset(slot))
            .expect("the job table lies inside the SAB")
    }

    /// Writes a job's record and frame into a free slot.
    pub fn write(&self, slot: usize, mut record: JobSlot, frame: &[u8]) -> Result<(), JobTableError> {
        record.frame_block = self.store_frame(slot, frame)?;
        record.frame_len = frame.len() as u32;
        self.sab
            .write(self.slot_offset(slot), &[record])
            .expect("the job table lies inside the SAB");
        Ok(())
    }

    /// Moves a job to `state` (the low byte of the record's last word).
    pub fn set_state(&self, slot: usize, state: JobState) {
        const STATE_WORD: usize = std::mem::offset_of!(JobSlot, state);
        const _: () = assert!(STATE_WORD == RECORD_SIZE - 4);
        let at = self.slot_offset(slot) + STATE_WORD;
        let word: u32 = self.sab.read(at).expect("the job table lies inside the SAB");
        self.sab
            .write(at, &[(word & !0xFF) | state as u32])
            .expect("the job table lies inside the SAB");
    }

    /// Replaces a job's frame (with its result's) and marks it answered.
    pub fn answer(&self, slot: usize, frame: &[u8]) -> Result<(), JobTableError> {
        let mut record = self.read(slot);
        self.free_block(&record);
        record.frame_block = 0;
        let stored = self.write(
            slot,
            JobSlot {
                state: JobState::Answered as u8,
                ..record
            },
            frame,
        );
        if stored.is_err() {
            // The record must not keep pointing at the block just freed.
            record.frame_len = 0;
            record.state = JobState::Answered as u8;
            self.sab
                .write(self.slot_offset(slot), &[record])
                .expect("the job table lies inside the SAB");
        }
        stored
    }

    /// Reads a slot's frame into `out` (empty if the record points outside the SAB or claims more
    /// inline bytes than a slot has: a corrupt record, which the frame's decoder then refuses).
    pub fn frame(&self, slot: usize, out: &mut Vec<u8>) {
        let record = self.read(slot);
        let len = record.frame_len as usize;
        let at = match record.frame_block {
            0 if len > INLINE_FRAME => {
                out.clear();
                return;
            }
            0 => self.slot_offset(slot) + RECORD_SIZE,
            block => block as usize,
        };
        let _ = self.sab.read_bytes(at, len, out);
    }

    /// Frees a slot (and its frame's block).
    pub fn free(&self, slot: usize) {
        let record = self.read(slot);
        self.free_block(&record);
        self.sab
            .write(self.slot_offset(slot), &[JobSlot::default()])
            .expect("the job table lies inside the SAB");
    }

    /// Every slot in use, in slot order.
    pub fn live(&self) -> impl Iterator<Item = (usize, JobSlot)> + '_ {
        (0..SLOTS)
            .map(|slot| (slot, self.read(slot)))
            .filter(|(_, record)| record.wire != 0 && record.state != JobState::Free as u8)
    }

    fn free_block(&self, record: &JobSlot) {
        if record.frame_block != 0 {
            // A block that is not ours (a corrupt record) is left alone.
            let _ = self.sab.arena().free(record.frame_block as usize, Owner::Kernel);
        }
    }

    /// Writes `frame` into the slot, or into an arena block if it is too long; returns the block.
    fn store_frame(&self, slot: usize, frame: &[u8]) -> Result<u32, JobTableError> {
        let (at, block) = if frame.len() <= INLINE_FRAME {
            (self.slot_offset(slot) + RECORD_SIZE, 0)
        } else {
            let block = self
                .sab
                .arena()
                .alloc(frame.len(), Owner::Kernel)
                .map_err(|source| JobTableError::Arena {
                    len: frame.len(),
                    source,
                })?;
            (block.offset, block.offset as u32)
        };
        self.sab
            .write_bytes(at, frame)
            .expect("a job frame's room lies inside the SAB");
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sab::layout::{SabLayout, Tier};

    #[test]
    fn frames_round_trip_inline_and_in_blocks() {
        let sab = Sab::new(SabLayout::for_tier(Tier::Light));
        let table = sab.job_table();
        for (slot, len) in [
            (0, 0),
            (1, 5),
            (2, INLINE_FRAME),
            (3, INLINE_FRAME + 1),
            (SLOTS - 1, 5000),
        ] {
            let frame: Vec<u8> = (0..len).map(|i| (i * 7 + slot) as u8).collect();
            let record = JobSlot {
                wire: slot as u64 + 1,
                job_id: 42,
                state: JobState::Queued as u8,
                priority: 9,
                ..JobSlot::default()
            };
            table.write(slot, record, &frame).unwrap();
            let mut out = Vec::new();
            table.frame(slot, &mut out);
            assert_eq!(out, frame, "slot {slot}, {len} bytes");
            table.set_state(slot, JobState::Sent);
            let read = table.read(slot);
            assert_eq!(
                (read.job_state(), read.priority, read.job_id),
                (Some(JobState::Sent), 9, 42)
            );
            let answer = vec![3u8; len / 2 + 1];
            table.answer(slot, &answer).unwrap();
            table.frame(slot, &mut out);
            assert_eq!(out, answer);
            assert_eq!(table.read(slot).job_state(), Some(JobState::Answered));
        }
        let slots = [0, 1, 2, 3, SLOTS - 1];
        // Scanning all 16 384 slots is slow under Miri: there, only the slots written are looked at.
        let live = || match cfg!(miri) {
            true => slots.iter().filter(|&&slot| table.read(slot).wire != 0).count(),
            false => table.live().count(),
        };
        assert_eq!(live(), 5);
        let blocks = sab.arena().stats().allocations;
        for slot in slots {
            table.free(slot);
        }
        assert_eq!(live(), 0);
        assert!(
            sab.arena().stats().allocations < blocks,
            "the long frames' blocks are freed"
        );
        assert_eq!(sab.arena().stats().allocations, 0);
    }
}
