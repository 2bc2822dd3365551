//! What the engines learn, kept in the SAB: the pattern exchange (reference §2.8) and the job
//! history ring (§2.9).
//!
//! - Pattern exchange: 1024 inline 64-byte records. `upsert` updates a pattern in place or takes
//!   a free slot; when all slots are live it evicts the least recently used pattern (the smallest
//!   `timestamp_ns`, which every upsert and `touch` refreshes). The original chose the slot by the
//!   size of its access map, which could overwrite a live pattern after an eviction.
//! - Job history: a 64-byte header (head, count, capacity, record size, total written), then
//!   fixed 64-byte `JobRecord`s; when full, the oldest record is overwritten (FIFO).
//!
//! Both regions are single-writer through their region guards; readers take consistent copies
//! with `RegionGuards::read_consistent` (the guard lock and the region epoch form a seqlock).

use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use super::generated as g;
use super::guard::{GuardError, GuardRegion, GuardSession, Owner};
use super::layout::regions;
use super::memory::copy_words_in;
use super::{EpochIndex, Sab};

/// One pattern record, byte for byte as in reference §2.8 (its fields are unaligned, hence
/// `packed`; read fields by value).
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, packed)]
pub struct PatternRecord {
    pub magic: u64,
    pub pattern_id: u64,
    pub version: u16,
    pub kind: u16,
    pub complexity: u8,
    pub confidence: u8,
    pub source_hash: u32,
    /// Last use (ns since the epoch of `now_ms`); the LRU key.
    pub timestamp_ns: u64,
    /// 0 = never expires.
    pub expiration_ns: u64,
    pub weight: f32,
    pub access_count: u32,
    pub success_rate: f32,
    pub flags: u16,
    pub payload_size: u16,
    pub unused: u16,
    /// Arena offset of the payload (0 = none).
    pub data_offset: u32,
}
const _: () = assert!(size_of::<PatternRecord>() == g::PATTERN_RECORD_SIZE as usize);
const _: () = assert!(offset_of!(PatternRecord, source_hash) == 22);
const _: () = assert!(offset_of!(PatternRecord, timestamp_ns) == 26);
const _: () = assert!(offset_of!(PatternRecord, data_offset) == 60);
const _: () = assert!(g::PATTERN_INLINE_SLOTS * g::PATTERN_RECORD_SIZE <= g::PATTERN_EXCHANGE_SIZE);

impl PatternRecord {
    /// A fresh record for `pattern_id`.
    pub fn new(pattern_id: u64, kind: u16) -> Self {
        Self {
            magic: g::PATTERN_MAGIC,
            pattern_id,
            version: 1,
            kind,
            complexity: 1,
            confidence: 0,
            source_hash: 0,
            timestamp_ns: 0,
            expiration_ns: 0,
            weight: 0.0,
            access_count: 0,
            success_rate: 0.0,
            flags: 0,
            payload_size: 0,
            unused: 0,
            data_offset: 0,
        }
    }

    pub fn is_live(&self) -> bool {
        self.magic == g::PATTERN_MAGIC
    }
}

/// What an upsert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Upsert {
    Updated {
        slot: usize,
    },
    Inserted {
        slot: usize,
    },
    /// The least recently used pattern was evicted to make room.
    Evicted {
        slot: usize,
        evicted_id: u64,
    },
}

/// A writer of the pattern exchange (holds its guard).
pub struct PatternWriter {
    sab: Sab,
    session: GuardSession,
}

fn pattern_offset(slot: usize) -> usize {
    regions::PATTERN_EXCHANGE.offset + slot * size_of::<PatternRecord>()
}

fn read_pattern(sab: &Sab, slot: usize) -> PatternRecord {
    sab.read(pattern_offset(slot))
        .expect("pattern slots lie inside every SAB")
}

const SLOTS: usize = g::PATTERN_INLINE_SLOTS as usize;

impl PatternWriter {
    pub(crate) fn new(sab: &Sab, owner: Owner) -> Result<Self, GuardError> {
        Ok(Self {
            session: sab.guards().begin(GuardRegion::PatternExchange, owner)?,
            sab: sab.clone(),
        })
    }

    fn write(&self, slot: usize, record: &PatternRecord) {
        self.sab
            .write(pattern_offset(slot), std::slice::from_ref(record))
            .expect("pattern slots lie inside every SAB");
    }

    /// Stores `record` (keyed by its `pattern_id`), stamping it as just used.
    pub fn upsert(&mut self, mut record: PatternRecord) -> Result<Upsert, GuardError> {
        record.magic = g::PATTERN_MAGIC;
        record.timestamp_ns = super::now_ms() * 1_000_000;
        let (mut free, mut oldest) = (None, None::<(usize, u64, u64)>);
        let mut found = None;
        for slot in 0..SLOTS {
            let r = read_pattern(&self.sab, slot);
            if !r.is_live() {
                free = free.or(Some(slot));
                continue;
            }
            let (id, stamp) = (r.pattern_id, r.timestamp_ns);
            if id == record.pattern_id {
                found = Some(slot);
                break;
            }
            if oldest.is_none_or(|(_, s, _)| stamp < s) {
                oldest = Some((slot, stamp, id));
            }
        }
        let outcome = match (found, free, oldest) {
            (Some(slot), _, _) => Upsert::Updated { slot },
            (None, Some(slot), _) => Upsert::Inserted { slot },
            (None, None, Some((slot, _, evicted_id))) => Upsert::Evicted { slot, evicted_id },
            (None, None, None) => unreachable!("a full table has an oldest record"),
        };
        let slot = match outcome {
            Upsert::Updated { slot } | Upsert::Inserted { slot } | Upsert::Evicted { slot, .. } => slot,
        };
        self.write(slot, &record);
        self.sab.epochs().signal(EpochIndex::PATTERN_EXCHANGE);
        self.session.check_advanced()?;
        Ok(outcome)
    }

    /// Marks a pattern as used (refreshes its LRU stamp, counts the access).
    pub fn touch(&mut self, pattern_id: u64) -> Result<bool, GuardError> {
        for slot in 0..SLOTS {
            let mut r = read_pattern(&self.sab, slot);
            if r.is_live() && r.pattern_id == pattern_id {
                r.timestamp_ns = super::now_ms() * 1_000_000;
                r.access_count = r.access_count.saturating_add(1);
                self.write(slot, &r);
                self.sab.epochs().signal(EpochIndex::PATTERN_EXCHANGE);
                self.session.check_advanced()?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Reading the pattern exchange.
pub struct PatternExchange<'a> {
    sab: &'a Sab,
}

impl<'a> PatternExchange<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    /// A consistent copy of every live pattern with its slot (`None` if writers kept disturbing it).
    pub fn live(&self) -> Option<Vec<(usize, PatternRecord)>> {
        self.sab
            .guards()
            .read_consistent(GuardRegion::PatternExchange, 1024, || {
                (0..SLOTS)
                    .map(|slot| (slot, read_pattern(self.sab, slot)))
                    .filter(|(_, r)| r.is_live())
                    .collect()
            })
    }

    /// Live patterns (quick count; not a consistent snapshot).
    pub fn count(&self) -> usize {
        (0..SLOTS)
            .filter(|&slot| read_pattern(self.sab, slot).is_live())
            .count()
    }

    pub fn writer(&self, owner: Owner) -> Result<PatternWriter, GuardError> {
        PatternWriter::new(self.sab, owner)
    }
}

/// One job-history record: everything the supervisors and the engines know of a finished job.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct JobRecord {
    pub job_id: u64,
    /// CRC32C of the unit's id (the job's library).
    pub unit_hash: u32,
    /// CRC32C of the method name.
    pub method_hash: u32,
    pub submitted_ms: u64,
    /// From submission to the answer, as the kernel saw it.
    pub duration_us: u32,
    pub input_bytes: u32,
    pub output_bytes: u32,
    /// How the job ended: the protocol's status code (`protocol::JobStatus::code`).
    pub status: u16,
    pub priority: u8,
    /// Why the kernel refused the job at submission (`Refused`; 0 if it did not), for the
    /// security engine's audit log.
    pub refusal: u8,
    pub deadline_ms: u32,
    /// CRC32C of the job's `source` metadata (`"local"` when it has none).
    pub source_hash: u32,
    /// How long the unit ran it, as the job host measured (0 if it never ran).
    pub execution_ns: u64,
    /// The CPU time it took (the wall time where the host has no thread clock).
    pub cpu_ns: u64,
}
const _: () = assert!(size_of::<JobRecord>() == g::JOB_RECORD_SIZE as usize);

/// The job history's header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct JobHistoryHeader {
    /// Index of the oldest record.
    pub head: u32,
    pub count: u32,
    pub capacity: u32,
    pub record_size: u32,
    /// Records ever written.
    pub total: u64,
    pub reserved: [u32; 10],
}
const _: () = assert!(size_of::<JobHistoryHeader>() == g::JOB_HISTORY_HEADER_SIZE as usize);
const CAPACITY: usize = offset_of!(JobHistoryHeader, capacity) / 4;
const RECORD_SIZE: usize = offset_of!(JobHistoryHeader, record_size) / 4;

/// Where one reader of the job history stands: the sequence number of the next record it reads
/// (records are numbered from 0 in the order written; the header's `total` is the next number),
/// and how many records the ring overwrote before this reader read them. Readers keep it in their
/// kernel-state header, so a resumed reader carries on where it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct HistoryCursor {
    pub next: u64,
    pub lost: u64,
}

/// `JobRecord::refusal`: why the kernel refused a job at submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Refused {
    RateLimited = 1,
    TooLarge = 2,
    Malformed = 3,
}

impl Refused {
    pub fn from_u8(value: u8) -> Option<Self> {
        [Self::RateLimited, Self::TooLarge, Self::Malformed]
            .into_iter()
            .find(|r| *r as u8 == value)
    }
}

/// A reader's buffer for the job history (its place is a [`HistoryCursor`] it keeps).
#[derive(Debug, Default)]
pub struct HistoryReader {
    records: Vec<JobRecord>,
}

impl HistoryReader {
    /// The records written since `cursor`, oldest first, moving it on. None when writers kept
    /// disturbing the copy: the cursor stays, and they come with the next read.
    pub fn read(&mut self, sab: &Sab, cursor: &mut HistoryCursor) -> &[JobRecord] {
        if sab.job_history().read_since(cursor, &mut self.records).is_none() {
            self.records.clear();
        }
        &self.records
    }
}

/// The job history of one SAB.
pub struct JobHistory<'a> {
    sab: &'a Sab,
}

/// The number of records the job-history region holds.
pub const JOB_HISTORY_CAPACITY: usize =
    (g::JOB_HISTORY_SIZE - g::JOB_HISTORY_HEADER_SIZE) as usize / g::JOB_RECORD_SIZE as usize;

impl<'a> JobHistory<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    fn header_words(&self) -> &'a [AtomicU32] {
        self.sab
            .memory()
            .u32_words(regions::JOB_HISTORY.offset, size_of::<JobHistoryHeader>() / 4)
            .expect("the job history lies inside every SAB")
    }

    /// Writes the capacity and record size (done when the SAB is created).
    pub(crate) fn format(&self) {
        let h = self.header_words();
        h[CAPACITY].store(JOB_HISTORY_CAPACITY as u32, Ordering::Relaxed);
        h[RECORD_SIZE].store(g::JOB_RECORD_SIZE, Ordering::Relaxed);
    }

    fn record_offset(index: usize) -> usize {
        regions::JOB_HISTORY.offset + g::JOB_HISTORY_HEADER_SIZE as usize + index * size_of::<JobRecord>()
    }

    pub fn header(&self) -> JobHistoryHeader {
        self.sab
            .read(regions::JOB_HISTORY.offset)
            .expect("the job history lies inside every SAB")
    }

    /// The header's head and count as indices into the ring: within its capacity whatever the
    /// words hold (a SAB from elsewhere may hold anything; the fuzzer found a count of 2³²−1).
    fn head_and_count(header: &JobHistoryHeader) -> (usize, usize) {
        (
            header.head as usize % JOB_HISTORY_CAPACITY,
            (header.count as usize).min(JOB_HISTORY_CAPACITY),
        )
    }

    /// Appends records, overwriting the oldest ones when full, then signals `JOB_HISTORY`.
    pub fn append(&self, records: &[JobRecord], owner: Owner) -> Result<(), GuardError> {
        let mut session = self.sab.guards().begin(GuardRegion::JobHistory, owner)?;
        let h = self.header_words();
        let header = self.header();
        let ((mut head, mut count), mut total) = (Self::head_and_count(&header), header.total);
        for record in records {
            let index = (head + count) % JOB_HISTORY_CAPACITY;
            self.sab
                .write(Self::record_offset(index), std::slice::from_ref(record))
                .expect("history records lie inside every SAB");
            if count == JOB_HISTORY_CAPACITY {
                head = (head + 1) % JOB_HISTORY_CAPACITY;
            } else {
                count += 1;
            }
            total += 1;
        }
        let new = JobHistoryHeader {
            head: head as u32,
            count: count as u32,
            total,
            ..header
        };
        copy_words_in(h, bytemuck::bytes_of(&new));
        self.sab.epochs().signal(EpochIndex::JOB_HISTORY);
        session.check_advanced()
    }

    /// Copies the records written since `cursor` into `out` (cleared first; oldest first) and
    /// moves the cursor past them. Records the ring overwrote before this reader got to them are
    /// counted in `cursor.lost` and returned. `None` if writers kept disturbing the copy; the
    /// cursor then stays where it was. A cursor ahead of the history (the SAB was replaced, say
    /// by a resumed snapshot) starts over at the oldest record.
    pub fn read_since(&self, cursor: &mut HistoryCursor, out: &mut Vec<JobRecord>) -> Option<u64> {
        let (next, lost) = self.sab.guards().read_consistent(GuardRegion::JobHistory, 1024, || {
            out.clear();
            let header = self.header();
            let (head, count) = Self::head_and_count(&header);
            let oldest = header.total.saturating_sub(count as u64);
            let from = if cursor.next > header.total {
                oldest
            } else {
                cursor.next.max(oldest)
            };
            let lost = from.saturating_sub(cursor.next);
            out.extend((from..header.total).map(|sequence| {
                let index = (head + (sequence - oldest) as usize) % JOB_HISTORY_CAPACITY;
                self.sab
                    .read::<JobRecord>(Self::record_offset(index))
                    .expect("history records lie inside every SAB")
            }));
            (header.total, lost)
        })?;
        cursor.next = next;
        cursor.lost += lost;
        Some(lost)
    }

    /// A consistent copy of the history, oldest first (`None` if writers kept disturbing it).
    pub fn records(&self) -> Option<Vec<JobRecord>> {
        self.sab.guards().read_consistent(GuardRegion::JobHistory, 1024, || {
            let (head, count) = Self::head_and_count(&self.header());
            (0..count)
                .map(|i| {
                    self.sab
                        .read(Self::record_offset((head + i) % JOB_HISTORY_CAPACITY))
                        .expect("history records lie inside every SAB")
                })
                .collect()
        })
    }
}
