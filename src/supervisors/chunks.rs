//! The kernel's local chunk store and the two syscalls over it: `storeChunk` copies a range of the
//! SAB into the store under its BLAKE3 hash, and `fetchChunk` copies a chunk back into the SAB.
//!
//! Both ends of every range are checked: a range must lie inside the arena's data pages (the
//! SAB's user-data space, so a syscall can never overwrite kernel regions such as the registry,
//! the rings or the streams, nor the allocator's own tables), its end must not overflow, and
//! offsets and lengths are whole 4-byte words (the SAB moves words). The original checked only that
//! a destination started past the arena's start. Chunks are verified against their hash both when
//! stored and when fetched.
//!
//! The store is in the SAB: each chunk's bytes in an arena block (so a chunk is at most the
//! arena's largest block, 1 MiB), and the index (hash → block, length, expiry) a keyed table in
//! the kernel state, so a resumed snapshot keeps every chunk.

use bevy::prelude::{FromWorld, Resource, World};

use crate::protocol::{SabRange, Syscall, SyscallBody, SyscallResponse, SyscallResult, SyscallStatus};
use crate::sab::arena::UserRangeError;
use crate::sab::generated as g;
use crate::sab::kernel_state::AREA_HEADER;
use crate::sab::table::KeyedTable;
use crate::sab::{KernelArea, Owner, Sab};

/// The store's default capacity.
pub const DEFAULT_CAPACITY: usize = 64 << 20;
/// Chunks the index holds.
pub const MAX_CHUNKS: usize = g::CHUNK_SLOTS as usize;

/// A chunk in the index: its arena block, length and expiry (ms since the Unix epoch; 0 = never).
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct ChunkEntry {
    expires_ms: u64,
    block: u32,
    len: u32,
}
const _: () =
    assert!(AREA_HEADER + KeyedTable::<[u8; 32], ChunkEntry>::bytes(MAX_CHUNKS) <= g::CHUNK_INDEX_SIZE as usize);

/// The index's header: bytes held.
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct ChunkHeader {
    bytes: u64,
}

/// Chunks by BLAKE3 hash. The index is a table in the SAB's kernel state and each chunk's bytes
/// an arena block, so a resumed snapshot keeps every chunk; this resource only holds the capacity.
#[derive(Resource, Debug)]
pub struct ChunkStore {
    sab: Sab,
    capacity: usize,
}

impl FromWorld for ChunkStore {
    fn from_world(world: &mut World) -> Self {
        Self::new(world.resource::<Sab>())
    }
}

/// Why a syscall was refused, turned into a response status and message.
struct Refusal(SyscallStatus, String);

impl ChunkStore {
    /// The store of `sab`'s chunks, at the default capacity.
    pub fn new(sab: &Sab) -> Self {
        Self::with_capacity(sab, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(sab: &Sab, capacity: usize) -> Self {
        Self {
            sab: sab.clone(),
            capacity,
        }
    }

    fn index(&self) -> KeyedTable<'_, [u8; 32], ChunkEntry> {
        self.sab
            .kernel_state(KernelArea::ChunkIndex)
            .table(0, MAX_CHUNKS, false)
    }

    pub fn len(&self) -> usize {
        self.index().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.sab
            .kernel_state(KernelArea::ChunkIndex)
            .header::<ChunkHeader>()
            .bytes as usize
    }

    fn set_bytes(&self, bytes: usize) {
        self.sab
            .kernel_state(KernelArea::ChunkIndex)
            .set_header(&ChunkHeader { bytes: bytes as u64 });
    }

    fn drop_expired(&mut self, now_ms: u64) {
        let index = self.index();
        let expired: Vec<([u8; 32], ChunkEntry)> = index
            .entries()
            .filter(|(_, chunk)| chunk.expires_ms != 0 && now_ms >= chunk.expires_ms)
            .collect();
        let mut bytes = self.bytes();
        for (key, chunk) in expired {
            index.remove(&key);
            let _ = self.sab.arena().free(chunk.block as usize, Owner::Kernel);
            bytes -= chunk.len as usize;
        }
        self.set_bytes(bytes);
    }

    /// Handles a chunk syscall at time `now_ms`; any other syscall is answered `InvalidRequest`.
    pub fn handle(&mut self, sab: &Sab, call: &Syscall, now_ms: u64) -> SyscallResponse {
        let outcome = match &call.body {
            SyscallBody::StoreChunk { hash, source, ttl } => self.store(sab, hash, *source, *ttl, now_ms),
            SyscallBody::FetchChunk { hash, destination, .. } => self.fetch(sab, hash, *destination, now_ms),
            other => Err(Refusal(
                SyscallStatus::InvalidRequest,
                format!("the chunk store does not handle {:?}", other.opcode()),
            )),
        };
        let (status, result, error) = match outcome {
            Ok(result) => (SyscallStatus::Success, result, String::new()),
            Err(Refusal(status, message)) => (status, SyscallResult::None, message),
        };
        SyscallResponse {
            call_id: call.call_id,
            status,
            result,
            error,
        }
    }

    fn store(
        &mut self,
        sab: &Sab,
        claimed: &[u8],
        source: SabRange,
        ttl_seconds: u32,
        now_ms: u64,
    ) -> Result<SyscallResult, Refusal> {
        let (offset, len) = checked_range(sab, source)?;
        if len > self.capacity {
            return Err(Refusal(
                SyscallStatus::InvalidRequest,
                format!("a {len}-byte chunk exceeds the store's {} bytes", self.capacity),
            ));
        }
        let mut data = vec![0u8; len];
        sab.copy_out(offset, &mut data)
            .map_err(|e| Refusal(SyscallStatus::OutOfBounds, e.to_string()))?;
        let hash = *blake3::hash(&data).as_bytes();
        if !claimed.is_empty() && claimed != hash {
            return Err(Refusal(
                SyscallStatus::InvalidRequest,
                "the data's BLAKE3 hash is not the hash the call claims".into(),
            ));
        }
        self.drop_expired(now_ms);
        let expires = match ttl_seconds {
            0 => 0,
            ttl => now_ms.saturating_add(u64::from(ttl) * 1000),
        };
        let index = self.index();
        if let Some(mut chunk) = index.get(&hash) {
            // The same bytes again: keep one copy, with the later expiry (0, never, is latest).
            chunk.expires_ms = if chunk.expires_ms == 0 || expires == 0 {
                0
            } else {
                chunk.expires_ms.max(expires)
            };
            index.insert(hash, chunk).expect("the key is in the index");
        } else {
            let held = self.bytes();
            if held + len > self.capacity {
                return Err(Refusal(
                    SyscallStatus::InternalError,
                    format!("the chunk store is full ({held} of {} bytes in use)", self.capacity),
                ));
            }
            let block = sab.arena().alloc(len.max(4), Owner::Kernel).map_err(|e| {
                Refusal(
                    SyscallStatus::InternalError,
                    format!("no room in the SAB for a {len}-byte chunk: {e}"),
                )
            })?;
            sab.write(block.offset, &data)
                .expect("an arena block lies inside the SAB");
            let entry = ChunkEntry {
                expires_ms: expires,
                block: block.offset as u32,
                len: len as u32,
            };
            if index.insert(hash, entry).is_err() {
                let _ = sab.arena().free(block.offset, Owner::Kernel);
                return Err(Refusal(
                    SyscallStatus::InternalError,
                    format!("the chunk index is full ({MAX_CHUNKS} chunks)"),
                ));
            }
            self.set_bytes(held + len);
        }
        Ok(SyscallResult::StoreChunk {
            hash: hash.to_vec(),
            replicas: 1,
        })
    }

    fn fetch(&mut self, sab: &Sab, hash: &[u8], destination: SabRange, now_ms: u64) -> Result<SyscallResult, Refusal> {
        let key: [u8; 32] = hash.try_into().map_err(|_| {
            Refusal(
                SyscallStatus::InvalidRequest,
                format!("a chunk hash is 32 bytes, not {}", hash.len()),
            )
        })?;
        let (offset, room) = checked_range(sab, destination)?;
        self.drop_expired(now_ms);
        let chunk = self
            .index()
            .get(&key)
            .ok_or_else(|| Refusal(SyscallStatus::NotFound, "no chunk has this hash".into()))?;
        let len = chunk.len as usize;
        if len > room {
            return Err(Refusal(
                SyscallStatus::OutOfBounds,
                format!("the chunk is {len} bytes; the destination holds {room}"),
            ));
        }
        let mut data = Vec::new();
        if sab.read_bytes(chunk.block as usize, len, &mut data).is_err() || *blake3::hash(&data).as_bytes() != key {
            return Err(Refusal(
                SyscallStatus::InternalError,
                "the stored chunk no longer matches its hash".into(),
            ));
        }
        sab.write(offset, &data)
            .map_err(|e| Refusal(SyscallStatus::OutOfBounds, e.to_string()))?;
        Ok(SyscallResult::FetchChunk {
            bytes: len as u64,
            hash_verified: true,
        })
    }
}

/// `range` as (offset, length) if it is whole words and lies inside the arena's data pages.
fn checked_range(sab: &Sab, range: SabRange) -> Result<(usize, usize), Refusal> {
    match sab.arena().user_range(range.offset, u64::from(range.length)) {
        Ok(r) => Ok((r.start, r.len())),
        Err(e @ UserRangeError::NotWords { .. }) => Err(Refusal(SyscallStatus::InvalidRequest, e.to_string())),
        Err(e @ UserRangeError::Outside { .. }) => Err(Refusal(SyscallStatus::OutOfBounds, e.to_string())),
    }
}
