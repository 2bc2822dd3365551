//! The job pipeline's record, in the coordination region: the kernel's counters, its queue depth
//! and its jobs in flight. The kernel rewrites it under the record's seqlock word at the end of
//! each pipeline stage; the scheduling engine, the inspector and `inos inspect` read it here.

use std::mem::offset_of;
use std::sync::atomic::AtomicU32;

use serde::Serialize;

use super::Sab;
use super::generated as g;
use super::seqlock::{self, BeingWritten};

/// The job pipeline's counters, as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct PipelineRecord {
    /// The record's seqlock word (reads as 0 in a copy).
    pub seq: u32,
    /// Jobs waiting in the kernel's queue.
    pub queued: u32,
    pub submitted: u64,
    pub dispatched: u64,
    /// Jobs answered (results matched to their job, timeouts and refusals included).
    pub resolved: u64,
    pub timed_out: u64,
    /// Results for no job in flight (late after a timeout, or foreign).
    pub unmatched: u64,
    /// Outbox frames that did not decode.
    pub malformed: u64,
    /// Jobs sent and not yet answered.
    pub in_flight: u32,
    pub reserved: [u32; 3],
}
const _: () = assert!(size_of::<PipelineRecord>() <= g::PIPELINE_STATE_SIZE as usize);
const RECORD_SEQ: usize = offset_of!(PipelineRecord, seq) / 4;

/// The pipeline record of one SAB.
pub struct PipelineState<'a> {
    sab: &'a Sab,
}

impl<'a> PipelineState<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    fn words(&self) -> &'a [AtomicU32] {
        self.sab
            .memory()
            .u32_words(g::PIPELINE_STATE_OFFSET as usize, size_of::<PipelineRecord>() / 4)
            .expect("the pipeline record lies inside every SAB")
    }

    /// Rewrites the record (its `seq` is ignored). The kernel must be its only writer.
    pub fn publish(&self, record: &PipelineRecord) {
        seqlock::write_record(self.words(), RECORD_SEQ, record);
    }

    /// A consistent copy of the record, or why there is none.
    pub fn read(&self) -> Result<PipelineRecord, BeingWritten> {
        seqlock::read_record(self.words(), RECORD_SEQ)
    }
}
