//! The kernel state's areas (layout 6, `kernelState*` in the schema): each part of the kernel
//! keeps what it knows in its area of the SAB, not in its own memory, so a snapshot resumes it
//! and, later, another process can take it over. An area is a 256-byte header (the owner's
//! counters and read cursors, a `Pod` record of its own) and the owner's keyed tables after it.
//! One writer per area: its owner. The headers of the parts that read the job history (the tree
//! and the engines) start with their `HistoryCursor`, so `inos inspect` can show where each stands.

use bytemuck::{AnyBitPattern, NoUninit};
use serde::Serialize;

use super::Sab;
use super::job_table::JobState;
use super::layout::{KernelArea, Region};
use super::patterns::HistoryCursor;
use super::table::KeyedTable;

/// What `inos inspect` shows of one area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AreaSummary {
    pub area: &'static str,
    /// Where its owner stands in the job history (the tree and the engines).
    pub history: Option<HistoryCursor>,
    /// Entries in its first keyed table (the job table: live jobs).
    pub entries: u64,
}

/// The job table's jobs by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JobTableSummary {
    /// The last wire id handed out.
    pub sequence: u64,
    pub queued: u64,
    pub sent: u64,
    pub answered: u64,
}

impl KernelArea {
    /// Whether the area's owner reads the job history (its header starts with its cursor).
    pub fn reads_history(self) -> bool {
        matches!(
            self,
            KernelArea::TreeState
                | KernelArea::LearningState
                | KernelArea::SecurityState
                | KernelArea::HealthState
                | KernelArea::SchedulingState
        )
    }
}

impl Sab {
    /// Every kernel-state area, summarised.
    pub fn kernel_summary(&self) -> (JobTableSummary, Vec<AreaSummary>) {
        let jobs = self.job_table();
        let mut summary = JobTableSummary {
            sequence: jobs.sequence(),
            ..JobTableSummary::default()
        };
        for (_, record) in jobs.live() {
            match record.job_state() {
                Some(JobState::Queued) => summary.queued += 1,
                Some(JobState::Sent) => summary.sent += 1,
                Some(JobState::Answered) => summary.answered += 1,
                _ => {}
            }
        }
        let areas = KernelArea::ALL
            .into_iter()
            .map(|area| {
                let state = self.kernel_state(area);
                let entries = match area {
                    KernelArea::JobTable => summary.queued + summary.sent + summary.answered,
                    // The first table's entry count, the first word of its header.
                    _ => state.first_table_len(),
                };
                AreaSummary {
                    area: state.region.name,
                    history: area.reads_history().then(|| state.header()),
                    entries,
                }
            })
            .collect();
        (summary, areas)
    }
}

/// Bytes at the start of every area for its owner's header record.
pub const AREA_HEADER: usize = 256;

/// One area of the kernel state.
pub struct KernelState<'a> {
    sab: &'a Sab,
    region: Region,
}

impl<'a> KernelState<'a> {
    pub(crate) fn new(sab: &'a Sab, area: KernelArea) -> Self {
        Self {
            sab,
            region: sab.layout().kernel_area(area),
        }
    }

    /// The owner's header record (zeroes in a new SAB). An area without tables may have a header
    /// longer than `AREA_HEADER`, up to its size; one with tables asserts that its header fits.
    pub fn header<T: AnyBitPattern + NoUninit>(&self) -> T {
        assert!(size_of::<T>() <= self.region.size, "a header larger than its area");
        self.sab
            .read(self.region.offset)
            .expect("a kernel-state area lies inside the SAB")
    }

    pub fn set_header<T: AnyBitPattern + NoUninit>(&self, header: &T) {
        assert!(size_of::<T>() <= self.region.size, "a header larger than its area");
        self.sab
            .write(self.region.offset, std::slice::from_ref(header))
            .expect("a kernel-state area lies inside the SAB");
    }

    /// The first word of the first table's header: its entry count (0 for an area without tables).
    fn first_table_len(&self) -> u64 {
        self.sab
            .read(self.region.offset + AREA_HEADER)
            .expect("a kernel-state area lies inside the SAB")
    }

    /// The keyed table of `capacity` slots `at` bytes after the header (tables of one area are
    /// laid end to end: the next starts at `at + KeyedTable::<K, V>::bytes(capacity)`).
    pub fn table<K, V>(&self, at: usize, capacity: usize, evicts: bool) -> KeyedTable<'a, K, V>
    where
        K: AnyBitPattern + NoUninit + PartialEq,
        V: AnyBitPattern + NoUninit,
    {
        let offset = self.region.offset + AREA_HEADER + at;
        let region = Region {
            offset,
            size: self.region.end().saturating_sub(offset),
            ..self.region
        };
        KeyedTable::new(self.sab, region, capacity, evicts)
    }
}
