//! The kernel state's areas (layout 6, `kernelState*` in the schema): each part of the kernel
//! keeps what it knows in its area of the SAB, not in its own memory, so a snapshot resumes it
//! and, later, another process can take it over. An area is a 256-byte header (the owner's
//! counters and read cursors, a `Pod` record of its own) and the owner's keyed tables after it.
//! One writer per area: its owner.

use bytemuck::{AnyBitPattern, NoUninit};

use super::Sab;
use super::layout::{KernelArea, Region};
use super::table::KeyedTable;

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

    /// The owner's header record (zeroes in a new SAB).
    pub fn header<T: AnyBitPattern + NoUninit>(&self) -> T {
        const { assert!(size_of::<T>() <= AREA_HEADER) };
        self.sab
            .read(self.region.offset)
            .expect("a kernel-state area lies inside the SAB")
    }

    pub fn set_header<T: AnyBitPattern + NoUninit>(&self, header: &T) {
        const { assert!(size_of::<T>() <= AREA_HEADER) };
        self.sab
            .write(self.region.offset, std::slice::from_ref(header))
            .expect("a kernel-state area lies inside the SAB");
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
