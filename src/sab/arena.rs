//! The arena allocator (reference §7.5): a slab allocator for requests of 256 bytes or less, on top
//! of a buddy allocator for 4 KiB to 1 MiB blocks, both inside the arena heap.
//!
//! This allocator is ours rather than a crate's because its state must live in the SAB itself,
//! where the inspector, snapshots and every other part can see it. The original's allocator was a
//! library that never ran, and its bump pointer started on top of the arena metadata; this one
//! manages only the arena heap, which starts after the metadata and the streams.
//!
//! Heap layout: a header (lock, page count, free-list heads), a page table (16 bytes per 4 KiB
//! page), a slab bitmap table (64 bytes per page), then the data pages, 4 KiB aligned.
//! - Buddy: levels 0..=8 (4 KiB .. 1 MiB). A free block is listed by its first page on the free
//!   list of its level (doubly linked through the page table); freeing merges a block with its
//!   buddy while the buddy is free and of the same level.
//! - Slab: classes of 8 .. 256 bytes; a slab page comes from the buddy (level 0), keeps a bitmap of
//!   its objects, sits on its class's partial list while it has room, and goes back to the buddy
//!   as soon as it is empty (so freeing everything coalesces back to the initial blocks).
//!
//! Every operation runs under the allocator's lock (a CAS spin lock in the header) and signals
//! `EpochIndex::ARENA_ALLOCATOR`. The arena guard admits only kernel and module writers.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use super::Sab;
use super::epochs::EpochIndex;
use super::generated as g;
use super::guard::{GuardError, GuardRegion, Owner};
use super::layout::Region;

const PAGE: usize = g::PAGE_SIZE as usize;
/// Buddy levels: level L is a block of 2^L pages (4 KiB .. 1 MiB).
pub const LEVELS: usize = 9;
pub const MAX_BLOCK: usize = PAGE << (LEVELS - 1);
/// The slab size classes, in bytes.
pub const SLAB_CLASSES: [u32; 10] = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256];
pub const SLAB_MAX: usize = 256;

/// "AREN" as a little-endian u32, marking a formatted heap.
const MAGIC: u32 = u32::from_le_bytes(*b"AREN");

// Header words.
const H_MAGIC: usize = 0;
const H_LOCK: usize = 1;
const H_PAGES: usize = 2;
const H_DATA_OFFSET: usize = 3;
const H_FREE: usize = 4; // LEVELS words: free-list heads (page + 1, 0 = empty)
const H_PARTIAL: usize = H_FREE + LEVELS; // one word per slab class
const H_ALLOCATIONS: usize = H_PARTIAL + SLAB_CLASSES.len();
const HEADER_WORDS: usize = 64; // 256 bytes, room to grow

// Page-table words (4 per page).
const P_WORDS: usize = 4;
const P_STATE: usize = 0; // state | level << 8 | class << 16
const P_NEXT: usize = 1;
const P_PREV: usize = 2;
const P_USED: usize = 3; // slab objects in use
const BITMAP_WORDS: usize = PAGE / 8 / 32; // one bit per 8-byte object: 16 words

const STATE_INTERIOR: u32 = 0;
const STATE_FREE: u32 = 1;
const STATE_BLOCK: u32 = 2;
const STATE_SLAB: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArenaError {
    #[error("arena out of memory: {requested} bytes requested, largest free block is {largest_free} bytes")]
    OutOfMemory { requested: usize, largest_free: usize },
    #[error("{requested} bytes exceed the largest arena block ({MAX_BLOCK} bytes)")]
    TooLarge { requested: usize },
    #[error("offset {offset:#x} is not the start of a live arena allocation")]
    InvalidFree { offset: usize },
    #[error("the arena heap is not formatted or its header is damaged (magic {found:#x})")]
    Unformatted { found: u32 },
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// An allocation: its SAB offset and the size granted (at least the size asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ArenaBlock {
    pub offset: usize,
    pub size: usize,
}

impl ArenaBlock {
    pub fn end(&self) -> usize {
        self.offset + self.size
    }
}

/// What `inos inspect` and the inspector show of the arena.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ArenaStats {
    /// Bytes the allocator manages (data pages).
    pub capacity: usize,
    /// Bytes in blocks handed out (slab pages count whole).
    pub used: usize,
    /// Bytes on the buddy free lists.
    pub free: usize,
    pub largest_free_block: usize,
    /// 1 - largest free block / free bytes (0 = one contiguous free block).
    pub fragmentation: f64,
    /// Live allocations (slab objects and buddy blocks).
    pub allocations: u32,
    /// Free blocks per buddy level (4 KiB .. 1 MiB).
    pub free_blocks: [u32; LEVELS],
    /// False when the heap's header or free lists are damaged.
    pub consistent: bool,
}

/// The arena allocator of one SAB.
pub struct Arena<'a> {
    sab: &'a Sab,
    heap: Region,
    geometry: Geometry,
}

/// Where the allocator's tables and pages go in a heap: derived from the heap's size alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    pages: usize,
    tables: usize,
    bitmaps: usize,
    data: usize,
}

impl Geometry {
    /// As many 4 KiB data pages as fit after the header and the per-page tables.
    fn of(heap: Region) -> Self {
        let tables = heap.offset + HEADER_WORDS * 4;
        let per_page = PAGE + (P_WORDS + BITMAP_WORDS) * 4;
        let mut pages = (heap.end() - tables) / per_page;
        loop {
            let bitmaps = tables + pages * P_WORDS * 4;
            let data = (bitmaps + pages * BITMAP_WORDS * 4).next_multiple_of(PAGE);
            if data + pages * PAGE <= heap.end() {
                return Self {
                    pages,
                    tables,
                    bitmaps,
                    data,
                };
            }
            pages -= 1;
        }
    }
}

/// The slab class for `size`, if it is small enough for the slab.
fn slab_class(size: usize) -> Option<usize> {
    SLAB_CLASSES.iter().position(|&c| size <= c as usize)
}

/// The buddy level whose blocks hold `size` bytes.
fn level_for(size: usize) -> usize {
    let pages = size.div_ceil(PAGE).max(1);
    pages.next_power_of_two().trailing_zeros() as usize
}

impl<'a> Arena<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        let heap = sab.layout().arena_heap();
        Self {
            sab,
            heap,
            geometry: Geometry::of(heap),
        }
    }

    fn words(&self, offset: usize, count: usize) -> &'a [AtomicU32] {
        self.sab
            .memory()
            .u32_words(offset, count)
            .expect("the allocator's tables lie inside the arena heap")
    }

    fn header(&self) -> &'a [AtomicU32] {
        self.words(self.heap.offset, HEADER_WORDS)
    }

    /// Writes an empty allocator into the heap: every page free, in the largest aligned blocks.
    pub(crate) fn format(&self) {
        let Geometry {
            pages,
            tables,
            bitmaps,
            data,
        } = self.geometry;
        let h = self.header();
        for w in h {
            w.store(0, Ordering::Relaxed);
        }
        h[H_PAGES].store(pages as u32, Ordering::Relaxed);
        h[H_DATA_OFFSET].store(data as u32, Ordering::Relaxed);
        for w in self.words(tables, pages * P_WORDS) {
            w.store(0, Ordering::Relaxed);
        }
        for w in self.words(bitmaps, pages * BITMAP_WORDS) {
            w.store(0, Ordering::Relaxed);
        }
        let t = Tables::new(self);
        let mut page = 0;
        while page < pages {
            let mut level = LEVELS - 1;
            while page % (1 << level) != 0 || page + (1 << level) > pages {
                level -= 1;
            }
            t.push_free(page, level);
            page += 1 << level;
        }
        h[H_MAGIC].store(MAGIC, Ordering::Release);
    }

    /// The heap is formatted and its recorded geometry is the one its size implies (so every
    /// table access stays inside the heap).
    fn check_formatted(&self) -> Result<(), ArenaError> {
        let h = self.header();
        match h[H_MAGIC].load(Ordering::Acquire) {
            MAGIC => {}
            found => return Err(ArenaError::Unformatted { found }),
        }
        let Geometry { pages, data, .. } = self.geometry;
        if h[H_PAGES].load(Ordering::Relaxed) as usize != pages
            || h[H_DATA_OFFSET].load(Ordering::Relaxed) as usize != data
        {
            return Err(ArenaError::Unformatted { found: MAGIC });
        }
        Ok(())
    }

    /// Releases the allocator's lock, whoever holds it: for a SAB whose writers are gone
    /// (`Sab::adopt`).
    pub(crate) fn release_lock(&self) {
        self.header()[H_LOCK].store(0, Ordering::Release);
    }

    fn lock(&self) -> LockedArena<'a> {
        let lock = &self.header()[H_LOCK];
        let backoff = crossbeam::utils::Backoff::new();
        while lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            backoff.snooze();
        }
        LockedArena {
            tables: Tables::new(self),
            lock,
        }
    }

    /// Allocates at least `size` bytes on behalf of `owner` (a kernel or module writer).
    pub fn alloc(&self, size: usize, owner: Owner) -> Result<ArenaBlock, ArenaError> {
        self.check_formatted()?;
        drop(self.sab.guards().begin(GuardRegion::Arena, owner)?);
        if size > MAX_BLOCK {
            return Err(ArenaError::TooLarge { requested: size });
        }
        let block = {
            let locked = self.lock();
            match slab_class(size) {
                Some(class) => locked.tables.alloc_small(class),
                None => locked.tables.alloc_pages(level_for(size)),
            }
        }
        .ok_or_else(|| ArenaError::OutOfMemory {
            requested: size,
            largest_free: self.stats().largest_free_block,
        })?;
        self.sab.epochs().signal(EpochIndex::ARENA_ALLOCATOR);
        Ok(block)
    }

    /// Frees the allocation that starts at `offset`.
    pub fn free(&self, offset: usize, owner: Owner) -> Result<(), ArenaError> {
        self.check_formatted()?;
        drop(self.sab.guards().begin(GuardRegion::Arena, owner)?);
        self.lock().tables.free(offset)?;
        self.sab.epochs().signal(EpochIndex::ARENA_ALLOCATOR);
        Ok(())
    }

    /// The size granted to the live allocation at `offset`.
    pub fn size_of(&self, offset: usize) -> Result<usize, ArenaError> {
        self.check_formatted()?;
        self.lock().tables.block_at(offset).map(|b| b.size)
    }

    /// Usage figures. A heap whose header or free lists do not hold together (only possible in
    /// damaged memory) is reported with `consistent: false` instead of being trusted.
    pub fn stats(&self) -> ArenaStats {
        let capacity = self.geometry.pages * PAGE;
        if self.check_formatted().is_err() {
            return ArenaStats {
                capacity,
                used: 0,
                free: 0,
                largest_free_block: 0,
                fragmentation: 0.0,
                allocations: 0,
                free_blocks: [0; LEVELS],
                consistent: false,
            };
        }
        let locked = self.lock();
        let t = &locked.tables;
        let mut free_blocks = [0u32; LEVELS];
        let mut consistent = true;
        for (level, count) in free_blocks.iter_mut().enumerate() {
            let mut page = t.free_head(level);
            while let Some(p) = page {
                if p >= t.page_count || *count as usize >= t.page_count {
                    consistent = false;
                    break;
                }
                *count += 1;
                page = t.next(p);
            }
        }
        let free: usize = free_blocks
            .iter()
            .enumerate()
            .map(|(l, &n)| n as usize * (PAGE << l))
            .sum();
        let largest_free_block = (0..LEVELS).rev().find(|&l| free_blocks[l] > 0).map_or(0, |l| PAGE << l);
        ArenaStats {
            capacity,
            used: capacity.saturating_sub(free),
            free,
            largest_free_block,
            fragmentation: if free == 0 {
                0.0
            } else {
                1.0 - largest_free_block as f64 / free as f64
            },
            allocations: t.header[H_ALLOCATIONS].load(Ordering::Relaxed),
            free_blocks,
            consistent: consistent && free <= capacity,
        }
    }

    /// The range allocations come from (the data pages).
    pub fn data_range(&self) -> Region {
        Region {
            name: "arena_data",
            offset: self.geometry.data,
            size: self.geometry.pages * PAGE,
        }
    }

    /// The byte range `[offset, offset + length)` if it is whole 4-byte words and lies inside the
    /// arena's data pages: the user-data space where jobs and syscalls may read and write. Never
    /// a kernel region (registry, rings, streams, ...) nor the allocator's own header, page table
    /// and bitmaps. Both ends are checked, and the end cannot overflow.
    pub fn user_range(&self, offset: u64, length: u64) -> Result<std::ops::Range<usize>, UserRangeError> {
        if !offset.is_multiple_of(4) || !length.is_multiple_of(4) {
            return Err(UserRangeError::NotWords { offset, length });
        }
        let data = self.data_range();
        let (lo, hi) = (data.offset as u64, (data.offset + data.size) as u64);
        match offset.checked_add(length) {
            Some(end) if offset >= lo && end <= hi => Ok(offset as usize..end as usize),
            _ => Err(UserRangeError::Outside { offset, length, lo, hi }),
        }
    }
}

/// Why a byte range is not usable user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UserRangeError {
    #[error("SAB range [{offset:#x}, +{length}) is not whole 4-byte words")]
    NotWords { offset: u64, length: u64 },
    #[error("SAB range [{offset:#x}, +{length}) is not inside the arena's data pages [{lo:#x}, {hi:#x})")]
    Outside { offset: u64, length: u64, lo: u64, hi: u64 },
}

/// The lock held; released on drop.
struct LockedArena<'a> {
    tables: Tables<'a>,
    lock: &'a AtomicU32,
}

impl Drop for LockedArena<'_> {
    fn drop(&mut self) {
        self.lock.store(0, Ordering::Release);
    }
}

/// The allocator's tables; only touched under the lock (or while formatting).
struct Tables<'a> {
    header: &'a [AtomicU32],
    pages: &'a [AtomicU32],
    bitmaps: &'a [AtomicU32],
    data: usize,
    page_count: usize,
}

/// Page index + 1 in list words, so that 0 means "none".
fn link(page: Option<usize>) -> u32 {
    page.map_or(0, |p| p as u32 + 1)
}

fn unlink(word: u32) -> Option<usize> {
    word.checked_sub(1).map(|p| p as usize)
}

impl<'a> Tables<'a> {
    fn new(arena: &Arena<'a>) -> Self {
        let Geometry {
            pages,
            tables,
            bitmaps,
            data,
        } = arena.geometry;
        Self {
            header: arena.header(),
            pages: arena.words(tables, pages * P_WORDS),
            bitmaps: arena.words(bitmaps, pages * BITMAP_WORDS),
            data,
            page_count: pages,
        }
    }

    fn get(&self, page: usize, word: usize) -> u32 {
        self.pages[page * P_WORDS + word].load(Ordering::Relaxed)
    }

    fn set(&self, page: usize, word: usize, value: u32) {
        self.pages[page * P_WORDS + word].store(value, Ordering::Relaxed);
    }

    fn state(&self, page: usize) -> (u32, usize, usize) {
        let w = self.get(page, P_STATE);
        (w & 0xFF, ((w >> 8) & 0xFF) as usize, ((w >> 16) & 0xFF) as usize)
    }

    fn set_state(&self, page: usize, state: u32, level: usize, class: usize) {
        self.set(page, P_STATE, state | (level as u32) << 8 | (class as u32) << 16);
    }

    fn next(&self, page: usize) -> Option<usize> {
        unlink(self.get(page, P_NEXT))
    }

    fn free_head(&self, level: usize) -> Option<usize> {
        unlink(self.header[H_FREE + level].load(Ordering::Relaxed))
    }

    /// Pushes `page` on the list whose head word is `head`.
    fn push(&self, head: usize, page: usize) {
        let old = unlink(self.header[head].load(Ordering::Relaxed));
        self.set(page, P_NEXT, link(old));
        self.set(page, P_PREV, 0);
        if let Some(old) = old {
            self.set(old, P_PREV, link(Some(page)));
        }
        self.header[head].store(link(Some(page)), Ordering::Relaxed);
    }

    /// Removes `page` from the list whose head word is `head`.
    fn remove(&self, head: usize, page: usize) {
        let (next, prev) = (self.next(page), unlink(self.get(page, P_PREV)));
        match prev {
            Some(prev) => self.set(prev, P_NEXT, link(next)),
            None => self.header[head].store(link(next), Ordering::Relaxed),
        }
        if let Some(next) = next {
            self.set(next, P_PREV, link(prev));
        }
        self.set(page, P_NEXT, 0);
        self.set(page, P_PREV, 0);
    }

    fn push_free(&self, page: usize, level: usize) {
        self.set_state(page, STATE_FREE, level, 0);
        self.push(H_FREE + level, page);
    }

    fn count_allocation(&self, delta: i32) {
        let w = &self.header[H_ALLOCATIONS];
        w.store(w.load(Ordering::Relaxed).wrapping_add_signed(delta), Ordering::Relaxed);
    }

    fn offset_of(&self, page: usize) -> usize {
        self.data + page * PAGE
    }

    /// A block of 2^level pages, split from the smallest free block that is large enough.
    fn take_pages(&self, level: usize) -> Option<usize> {
        let from = (level..LEVELS).find(|&l| self.free_head(l).is_some())?;
        let page = self.free_head(from)?;
        self.remove(H_FREE + from, page);
        for l in (level..from).rev() {
            self.push_free(page + (1 << l), l);
        }
        Some(page)
    }

    fn alloc_pages(&self, level: usize) -> Option<ArenaBlock> {
        let page = self.take_pages(level)?;
        self.set_state(page, STATE_BLOCK, level, 0);
        self.count_allocation(1);
        Some(ArenaBlock {
            offset: self.offset_of(page),
            size: PAGE << level,
        })
    }

    /// Returns the block of 2^level pages at `page` to the free lists, merging with free buddies.
    fn release_pages(&self, mut page: usize, mut level: usize) {
        while level < LEVELS - 1 {
            let buddy = page ^ (1 << level);
            if buddy >= self.page_count || self.state(buddy) != (STATE_FREE, level, 0) {
                break;
            }
            self.remove(H_FREE + level, buddy);
            self.set_state(buddy, STATE_INTERIOR, 0, 0);
            page = page.min(buddy);
            level += 1;
        }
        self.push_free(page, level);
    }

    fn bitmap(&self, page: usize) -> &'a [AtomicU32] {
        &self.bitmaps[page * BITMAP_WORDS..][..BITMAP_WORDS]
    }

    fn alloc_small(&self, class: usize) -> Option<ArenaBlock> {
        let size = SLAB_CLASSES[class] as usize;
        let capacity = PAGE / size;
        let page = match unlink(self.header[H_PARTIAL + class].load(Ordering::Relaxed)) {
            Some(page) => page,
            None => {
                let page = self.take_pages(0)?;
                self.set_state(page, STATE_SLAB, 0, class);
                self.set(page, P_USED, 0);
                for w in self.bitmap(page) {
                    w.store(0, Ordering::Relaxed);
                }
                self.push(H_PARTIAL + class, page);
                page
            }
        };
        let bitmap = self.bitmap(page);
        let index = (0..capacity)
            .find(|i| bitmap[i / 32].load(Ordering::Relaxed) & (1 << (i % 32)) == 0)
            .expect("a page on the partial list has a free object");
        bitmap[index / 32].fetch_or(1 << (index % 32), Ordering::Relaxed);
        let used = self.get(page, P_USED) + 1;
        self.set(page, P_USED, used);
        if used as usize == capacity {
            self.remove(H_PARTIAL + class, page);
        }
        self.count_allocation(1);
        Some(ArenaBlock {
            offset: self.offset_of(page) + index * size,
            size,
        })
    }

    /// The live allocation starting at `offset`, with its page and slab index.
    fn locate(&self, offset: usize) -> Result<(ArenaBlock, usize, Option<usize>), ArenaError> {
        let invalid = ArenaError::InvalidFree { offset };
        let rel = offset.checked_sub(self.data).ok_or(invalid)?;
        let page = rel / PAGE;
        if page >= self.page_count {
            return Err(invalid);
        }
        match self.state(page) {
            (STATE_BLOCK, level, _) if rel % PAGE == 0 => Ok((
                ArenaBlock {
                    offset,
                    size: PAGE << level,
                },
                page,
                None,
            )),
            (STATE_SLAB, _, class) => {
                let size = SLAB_CLASSES[class] as usize;
                let within = rel % PAGE;
                let index = within / size;
                let live = self.bitmap(page)[index / 32].load(Ordering::Relaxed) & (1 << (index % 32)) != 0;
                if !within.is_multiple_of(size) || index >= PAGE / size || !live {
                    return Err(invalid);
                }
                Ok((ArenaBlock { offset, size }, page, Some(index)))
            }
            _ => Err(invalid),
        }
    }

    fn block_at(&self, offset: usize) -> Result<ArenaBlock, ArenaError> {
        self.locate(offset).map(|(block, _, _)| block)
    }

    fn free(&self, offset: usize) -> Result<(), ArenaError> {
        let (_, page, slot) = self.locate(offset)?;
        match slot {
            None => {
                let (_, level, _) = self.state(page);
                self.release_pages(page, level);
            }
            Some(index) => {
                let (_, _, class) = self.state(page);
                let capacity = PAGE / SLAB_CLASSES[class] as usize;
                self.bitmap(page)[index / 32].fetch_and(!(1 << (index % 32)), Ordering::Relaxed);
                let used = self.get(page, P_USED);
                if used as usize == capacity {
                    self.push(H_PARTIAL + class, page);
                }
                self.set(page, P_USED, used - 1);
                if used == 1 {
                    self.remove(H_PARTIAL + class, page);
                    self.release_pages(page, 0);
                }
            }
        }
        self.count_allocation(-1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_classes_and_levels() {
        assert_eq!(slab_class(1), Some(0));
        assert_eq!(slab_class(8), Some(0));
        assert_eq!(slab_class(9), Some(1));
        assert_eq!(slab_class(192), Some(8));
        assert_eq!(slab_class(200), Some(9));
        assert_eq!(slab_class(256), Some(9));
        assert_eq!(slab_class(257), None);
        assert_eq!(level_for(257), 0);
        assert_eq!(level_for(4096), 0);
        assert_eq!(level_for(4097), 1);
        assert_eq!(level_for(MAX_BLOCK), LEVELS - 1);
        assert_eq!(MAX_BLOCK, 1 << 20);
    }
}
