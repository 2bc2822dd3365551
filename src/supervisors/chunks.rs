//! The kernel's local chunk store and the two syscalls over it: `storeChunk` copies a range of the
//! SAB into the store under its BLAKE3 hash, and `fetchChunk` copies a chunk back into the SAB.
//!
//! Both ends of every range are checked: a range must lie inside the arena's data pages (the
//! SAB's user-data space, so a syscall can never overwrite kernel regions such as the registry,
//! the rings or the streams, nor the allocator's own tables), its end must not overflow, and
//! offsets and lengths are whole 4-byte words (the SAB moves words). The original checked only that a destination started past the
//! arena's start. Chunks are verified against their hash both when stored and when fetched.

use std::collections::HashMap;

use bevy::prelude::Resource;

use crate::protocol::{SabRange, Syscall, SyscallBody, SyscallResponse, SyscallResult, SyscallStatus};
use crate::sab::Sab;
use crate::sab::arena::UserRangeError;

/// The store's default capacity.
pub const DEFAULT_CAPACITY: usize = 64 << 20;

/// Chunks by BLAKE3 hash, with their expiry (ms since the Unix epoch; `None` = never).
#[derive(Resource, Debug)]
pub struct ChunkStore {
    chunks: HashMap<[u8; 32], (Vec<u8>, Option<u64>)>,
    bytes: usize,
    capacity: usize,
}

impl Default for ChunkStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

/// Why a syscall was refused, turned into a response status and message.
struct Refusal(SyscallStatus, String);

impl ChunkStore {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            chunks: HashMap::new(),
            bytes: 0,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn drop_expired(&mut self, now_ms: u64) {
        let bytes = &mut self.bytes;
        self.chunks.retain(|_, (data, expires)| {
            let keep = expires.is_none_or(|t| now_ms < t);
            if !keep {
                *bytes -= data.len();
            }
            keep
        });
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
        let expires = (ttl_seconds > 0).then(|| now_ms.saturating_add(u64::from(ttl_seconds) * 1000));
        if let Some((_, old_expiry)) = self.chunks.get_mut(&hash) {
            // The same bytes again: keep one copy, with the later expiry.
            *old_expiry = old_expiry.zip(expires).map(|(a, b)| a.max(b));
        } else {
            if self.bytes + len > self.capacity {
                return Err(Refusal(
                    SyscallStatus::InternalError,
                    format!(
                        "the chunk store is full ({} of {} bytes in use)",
                        self.bytes, self.capacity
                    ),
                ));
            }
            self.bytes += len;
            self.chunks.insert(hash, (data, expires));
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
        let (data, _) = self
            .chunks
            .get(&key)
            .ok_or_else(|| Refusal(SyscallStatus::NotFound, "no chunk has this hash".into()))?;
        if data.len() > room {
            return Err(Refusal(
                SyscallStatus::OutOfBounds,
                format!("the chunk is {} bytes; the destination holds {room}", data.len()),
            ));
        }
        if *blake3::hash(data).as_bytes() != key {
            return Err(Refusal(
                SyscallStatus::InternalError,
                "the stored chunk no longer matches its hash".into(),
            ));
        }
        sab.write(offset, data)
            .map_err(|e| Refusal(SyscallStatus::OutOfBounds, e.to_string()))?;
        Ok(SyscallResult::FetchChunk {
            bytes: data.len() as u64,
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
