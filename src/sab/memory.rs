//! The one allocation behind the SAB, and bounds-checked access to it.
//!
//! The memory is either a private allocation of this process (tests, benchmarks, the browser build)
//! or, natively, a shared mapping of a file in `/dev/shm` that other processes map too (`--sab`,
//! `inos attach`-style entry points): the same bytes, the same atomics, in every process.
//!
//! Every byte of the SAB is reached through atomics: `AtomicU32` words for epochs, records and
//! control words, `AtomicU64` words for the rings. Plain loads and stores of memory that another
//! thread may write at the same time would be data races (undefined behaviour), even where a
//! protocol such as a seqlock throws the torn value away; relaxed atomic words make those races
//! defined, and the protocols (seqlock generations, ring commit words, epoch release/acquire) give
//! the ordering. On x86-64 and wasm32 relaxed word loads and stores compile to ordinary moves.
//!
//! With `epochs` (its parking calls), this file holds the SAB's `unsafe` code: turning the allocation
//! into atomic views. The few `unsafe` blocks outside `src/sab/` are listed in the README.

use std::alloc::{Layout, alloc_zeroed, handle_alloc_error};
#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytemuck::{AnyBitPattern, NoUninit};

/// Alignment of the allocation: one cache line, the alignment every region starts on.
pub const SAB_ALIGN: usize = super::generated::CACHE_LINE as usize;

/// A bounds or alignment failure when addressing the SAB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("SAB access of {len} bytes at offset {offset:#x} runs past the end of the SAB ({sab_len:#x} bytes)")]
    OutOfBounds { offset: usize, len: usize, sab_len: usize },
    #[error("SAB access at offset {offset:#x} is not {align}-byte aligned")]
    Misaligned { offset: usize, align: usize },
    #[error("a record of {size} bytes cannot be moved as 4-byte words")]
    RecordSize { size: usize },
}

/// What holds the bytes.
enum Backing {
    /// A private allocation, freed on drop.
    Heap,
    /// A shared mapping of `path`, unmapped on drop (and the file removed if `remove`).
    #[cfg(not(target_arch = "wasm32"))]
    Shared {
        _map: memmap2::MmapRaw,
        path: PathBuf,
        remove: bool,
    },
}

/// One zero-initialised, 64-byte-aligned range of memory: a private allocation or a shared
/// mapping, released on drop.
pub(crate) struct SabMemory {
    base: NonNull<u8>,
    len: usize,
    backing: Backing,
}

// SAFETY: the memory is owned by this value (a shared mapping is owned by its `MmapRaw`), and every
// access to it goes through atomic types (`AtomicU32`/`AtomicU64` views handed out below), which
// are `Sync`. No `&mut` or plain shared reference to the bytes is ever created, so sharing the owner
// between threads cannot cause a data race; other processes that map the same file also reach the
// bytes only through atomics (this crate's code), which the hardware keeps coherent across
// processes as across threads.
unsafe impl Send for SabMemory {}
// SAFETY: see `Send` above: all access is atomic.
unsafe impl Sync for SabMemory {}

impl SabMemory {
    /// Allocates `len` zeroed bytes aligned to 64. `len` must be a non-zero multiple of 64.
    pub(crate) fn zeroed(len: usize) -> Self {
        assert!(
            len > 0 && len.is_multiple_of(SAB_ALIGN),
            "SAB length {len} must be a non-zero multiple of {SAB_ALIGN}"
        );
        let layout = Layout::from_size_align(len, SAB_ALIGN).expect("SAB layout fits in isize");
        // SAFETY: `layout` has a non-zero size (checked above). Zeroed memory is a valid value for
        // every atomic integer type, which is the only way the bytes are ever viewed.
        let ptr = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(ptr).unwrap_or_else(|| handle_alloc_error(layout));
        Self {
            base,
            len,
            backing: Backing::Heap,
        }
    }

    /// Creates the file `path` (mode 0600; it must not exist), sizes it to `len` bytes with its
    /// pages reserved (so a full `/dev/shm` is an error here, not a bus error later), and maps it
    /// shared. The file is removed again when this value is dropped.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn create_shared(path: &Path, len: usize) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let sized = file.set_len(len as u64).and_then(|()| reserve(&file, len));
        match sized.and_then(|()| Self::map(&file, path, len, true)) {
            Ok(memory) => Ok(memory),
            Err(e) => {
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Maps the existing file `path` shared, at its whole length. The file is left in place on
    /// drop.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn open_shared(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
        if len == 0 || !len.is_multiple_of(SAB_ALIGN) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("its length, {len} bytes, is not a non-zero multiple of {SAB_ALIGN}"),
            ));
        }
        Self::map(&file, path, len, false)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn map(file: &std::fs::File, path: &Path, len: usize, remove: bool) -> std::io::Result<Self> {
        let map = memmap2::MmapOptions::new().len(len).map_raw(file)?;
        let base = NonNull::new(map.as_mut_ptr()).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        // Mappings start on a page boundary, a multiple of the cache line.
        debug_assert!((base.as_ptr() as usize).is_multiple_of(SAB_ALIGN));
        Ok(Self {
            base,
            len,
            backing: Backing::Shared {
                _map: map,
                path: path.to_owned(),
                remove,
            },
        })
    }

    /// The file behind a shared mapping.
    pub(crate) fn path(&self) -> Option<&std::path::Path> {
        match &self.backing {
            Backing::Heap => None,
            #[cfg(not(target_arch = "wasm32"))]
            Backing::Shared { path, .. } => Some(path),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The address of the first byte: in the browser build, the SAB's offset in the wasm memory.
    pub(crate) fn address(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// Checks that `count` words of `align` bytes at `offset` are aligned and inside the SAB.
    fn check(&self, offset: usize, count: usize, align: usize) -> Result<(), AccessError> {
        if !offset.is_multiple_of(align) {
            return Err(AccessError::Misaligned { offset, align });
        }
        let len = count.saturating_mul(align);
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(AccessError::OutOfBounds {
                offset,
                len,
                sab_len: self.len,
            }),
        }
    }

    /// `count` consecutive `AtomicU32` words starting at byte `offset` (4-aligned).
    pub(crate) fn u32_words(&self, offset: usize, count: usize) -> Result<&[AtomicU32], AccessError> {
        self.check(offset, count, 4)?;
        // SAFETY: the range [offset, offset + 4·count) lies inside the allocation (checked), the
        // start is 4-aligned (checked; the base is 64-aligned), `AtomicU32` has the size and
        // alignment of `u32` and every bit pattern is valid. The memory is only ever accessed
        // atomically (see the module docs), so the shared view cannot alias a non-atomic access.
        // The view borrows `self`, so it cannot outlive the allocation.
        Ok(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset).cast::<AtomicU32>(), count) })
    }

    /// `count` consecutive `AtomicU64` words starting at byte `offset` (8-aligned).
    pub(crate) fn u64_words(&self, offset: usize, count: usize) -> Result<&[AtomicU64], AccessError> {
        self.check(offset, count, 8)?;
        // SAFETY: as in `u32_words`, with 8-byte words: in bounds and 8-aligned (checked), every bit
        // pattern valid, only ever accessed atomically, borrowed from `self`.
        Ok(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset).cast::<AtomicU64>(), count) })
    }

    /// Reads a `#[repr(C)]` record at `offset` word by word (relaxed).
    pub(crate) fn read<T: AnyBitPattern + NoUninit>(&self, offset: usize) -> Result<T, AccessError> {
        let mut value = T::zeroed();
        self.read_into(offset, std::slice::from_mut(&mut value))?;
        Ok(value)
    }

    /// Reads `dst.len()` consecutive records starting at `offset` into `dst` (relaxed), without
    /// allocating.
    pub(crate) fn read_into<T: AnyBitPattern + NoUninit>(
        &self,
        offset: usize,
        dst: &mut [T],
    ) -> Result<(), AccessError> {
        let bytes = bytes_of_mut(dst)?;
        copy_words_out(self.u32_words(offset, bytes.len() / 4)?, bytes);
        Ok(())
    }

    /// Writes records at `offset` word by word (relaxed).
    pub(crate) fn write<T: NoUninit + AnyBitPattern>(&self, offset: usize, src: &[T]) -> Result<(), AccessError> {
        let size = std::mem::size_of_val(src);
        if !size.is_multiple_of(4) {
            return Err(AccessError::RecordSize { size });
        }
        let dst = self.u32_words(offset, size / 4)?;
        copy_words_in(dst, bytemuck::cast_slice::<T, u8>(src));
        Ok(())
    }

    /// Copies `dst.len()` bytes out of the SAB (`offset` and length multiples of 4).
    pub(crate) fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<(), AccessError> {
        if !dst.len().is_multiple_of(4) {
            return Err(AccessError::RecordSize { size: dst.len() });
        }
        copy_words_out(self.u32_words(offset, dst.len() / 4)?, dst);
        Ok(())
    }

    /// Copies `src` into the SAB (`offset` and length multiples of 4).
    pub(crate) fn copy_in(&self, offset: usize, src: &[u8]) -> Result<(), AccessError> {
        if !src.len().is_multiple_of(4) {
            return Err(AccessError::RecordSize { size: src.len() });
        }
        copy_words_in(self.u32_words(offset, src.len() / 4)?, src);
        Ok(())
    }
}

impl Drop for SabMemory {
    fn drop(&mut self) {
        match &self.backing {
            Backing::Heap => {
                let layout = Layout::from_size_align(self.len, SAB_ALIGN).expect("layout was valid at allocation");
                // SAFETY: `base` came from `alloc_zeroed` with exactly this layout and is freed only
                // here; every view borrows `self`, so none outlives this call.
                unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) };
            }
            // The mapping is unmapped when `_map` drops, after this body: every view borrows `self`.
            #[cfg(not(target_arch = "wasm32"))]
            Backing::Shared { path, remove, .. } => {
                if *remove {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

/// Reserves the pages of a freshly sized file where the file system can (tmpfs can), so that
/// running out of memory is an error now rather than a bus error on first touch.
#[cfg(not(target_arch = "wasm32"))]
fn reserve(file: &std::fs::File, len: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len as u64) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
        Err(e) => Err(e.into()),
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len);
        Ok(())
    }
}

/// Views a slice of records as bytes that move as whole 4-byte words, or says why it cannot be.
/// Bytes rather than `u32`s, so records of any alignment (the packed gene and pattern records)
/// work wherever they happen to sit in memory.
pub(crate) fn bytes_of_mut<T: AnyBitPattern + NoUninit>(records: &mut [T]) -> Result<&mut [u8], AccessError> {
    if !size_of::<T>().is_multiple_of(4) {
        return Err(AccessError::RecordSize { size: size_of::<T>() });
    }
    Ok(bytemuck::cast_slice_mut::<T, u8>(records))
}

/// Relaxed word-by-word copy out of atomic words into little-endian bytes (4 per word).
pub(crate) fn copy_words_out(src: &[AtomicU32], dst: &mut [u8]) {
    for (word, out) in src.iter().zip(dst.chunks_exact_mut(4)) {
        out.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
    }
}

/// Relaxed word-by-word copy of little-endian bytes (length a multiple of 4) into atomic words.
pub(crate) fn copy_words_in(dst: &[AtomicU32], src: &[u8]) {
    for (word, bytes) in dst.iter().zip(src.chunks_exact(4)) {
        word.store(
            u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Pair {
        a: u32,
        b: f32,
    }

    #[test]
    fn fresh_memory_is_zero_and_aligned() {
        let mem = SabMemory::zeroed(256);
        assert_eq!(mem.base.as_ptr() as usize % SAB_ALIGN, 0);
        let mut bytes = [0xffu8; 256];
        mem.copy_out(0, &mut bytes).unwrap();
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn records_round_trip_at_their_offset() {
        let mem = SabMemory::zeroed(128);
        let pairs = [Pair { a: 7, b: 1.5 }, Pair { a: u32::MAX, b: -0.0 }];
        mem.write(8, &pairs).unwrap();
        assert_eq!(mem.read::<Pair>(16).unwrap(), pairs[1]);
        let mut back = [Pair { a: 0, b: 0.0 }; 2];
        mem.read_into(8, &mut back).unwrap();
        assert_eq!(back, pairs);
        // Little-endian bytes at the exact place.
        let mut raw = [0u8; 4];
        mem.copy_out(8, &mut raw).unwrap();
        assert_eq!(raw, [7, 0, 0, 0]);
    }

    #[test]
    fn out_of_range_and_misaligned_access_are_typed_errors() {
        let mem = SabMemory::zeroed(64);
        assert_eq!(
            mem.read::<Pair>(60),
            Err(AccessError::OutOfBounds {
                offset: 60,
                len: 8,
                sab_len: 64
            })
        );
        assert_eq!(
            mem.read::<Pair>(6),
            Err(AccessError::Misaligned { offset: 6, align: 4 })
        );
        assert_eq!(
            mem.u64_words(4, 1).unwrap_err(),
            AccessError::Misaligned { offset: 4, align: 8 }
        );
        assert!(matches!(
            mem.u32_words(usize::MAX - 2, 1),
            Err(AccessError::Misaligned { .. } | AccessError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.u32_words(usize::MAX - 3, 1),
            Err(AccessError::OutOfBounds { .. })
        ));
        assert_eq!(mem.copy_in(0, &[1, 2, 3]), Err(AccessError::RecordSize { size: 3 }));
    }

    #[test]
    fn odd_sized_records_are_refused() {
        let mem = SabMemory::zeroed(64);
        let mut bytes = [0u8; 3];
        assert_eq!(mem.read_into(0, &mut bytes), Err(AccessError::RecordSize { size: 1 }));
    }
}
