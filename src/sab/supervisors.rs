//! The supervisor table: the epoch allocation table over the supervisor pool, and one 128-byte
//! header per pool slot that its supervisor rewrites on every run.
//!
//! Pool slot `k` owns epoch index `EPOCH_SUPERVISOR_POOL_FIRST + k` and header `k`. The allocation
//! table holds a bitmap with one bit per slot (the original's covered the wrong range) and one
//! (id hash, epoch index) pair per slot (the original had room for 29 pairs for a pool of 128).
//! Allocation and release take the supervisor-table guard (single writer); headers are written
//! by their supervisor under their own seqlock word, so readers never see a torn header.

use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use super::Sab;
use super::epochs::EpochIndex;
use super::generated as g;
use super::guard::{GuardError, GuardRegion, Owner};
use super::layout::regions;
use super::seqlock::{self, BeingWritten};
use bevy::prelude::Res;

const POOL: usize = g::SUPERVISOR_POOL_SIZE as usize;

/// The allocation table, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct SupervisorAllocTable {
    /// Bit k set: pool slot k is allocated.
    pub bitmap: [u32; POOL / 32],
    /// Where the next free-slot search starts.
    pub next: u32,
    pub allocated: u32,
    pub reserved: [u32; 12],
    /// Per slot: (CRC32C of the supervisor id, epoch index).
    pub pairs: [[u32; 2]; POOL],
}
const _: () = assert!(size_of::<SupervisorAllocTable>() <= g::SUPERVISOR_ALLOC_SIZE as usize);
const _: () = assert!(POOL * g::SUPERVISOR_HEADER_SIZE as usize <= g::SUPERVISOR_HEADERS_SIZE as usize);
const BITMAP: usize = offset_of!(SupervisorAllocTable, bitmap) / 4;
const NEXT: usize = offset_of!(SupervisorAllocTable, next) / 4;
const ALLOCATED: usize = offset_of!(SupervisorAllocTable, allocated) / 4;
const PAIRS: usize = offset_of!(SupervisorAllocTable, pairs) / 4;

/// A supervisor's health state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[repr(u8)]
pub enum SupervisorStatus {
    Starting = 0,
    Healthy = 1,
    Degraded = 2,
    Zombie = 3,
}

impl SupervisorStatus {
    pub fn from_u8(v: u8) -> Option<Self> {
        [Self::Starting, Self::Healthy, Self::Degraded, Self::Zombie]
            .into_iter()
            .find(|s| *s as u8 == v)
    }
}

/// A unit's circuit breaker state (the header's `breaker` byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[repr(u8)]
pub enum BreakerState {
    #[default]
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub fn from_u8(v: u8) -> Option<Self> {
        [Self::Closed, Self::Open, Self::HalfOpen]
            .into_iter()
            .find(|b| *b as u8 == v)
    }
}

/// Whether a unit runs (the header's `lifecycle` byte; 0 = running, so a unit without a
/// supervisor runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[repr(u8)]
pub enum Lifecycle {
    #[default]
    Running = 0,
    Paused = 1,
    /// Waiting out its back-off before it starts again.
    Restarting = 2,
    /// Killed, or not restarted (policy or escalation).
    Stopped = 3,
}

impl Lifecycle {
    pub fn from_u8(v: u8) -> Option<Self> {
        [Self::Running, Self::Paused, Self::Restarting, Self::Stopped]
            .into_iter()
            .find(|l| *l as u8 == v)
    }
}

/// The name a unit's supervisor is allocated under in the supervisor table.
pub fn supervisor_id(unit: &str) -> String {
    format!("sup/{unit}")
}

/// The 128-byte header of one supervisor (layout of the original's docs, §2.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct SupervisorHeader {
    /// [0..4) CRC32C of the supervisor id.
    pub supervisor_id: u32,
    /// [4] the epoch index this supervisor owns.
    pub epoch_index: u8,
    /// [5] a `SupervisorStatus`.
    pub status: u8,
    /// [6] the unit's circuit breaker (`BreakerState`), [7] its `Lifecycle`.
    pub breaker: u8,
    pub lifecycle: u8,
    /// [8..16) dynamic state in the arena.
    pub state_offset: u32,
    pub state_size: u32,
    /// [16..32) performance counters.
    pub jobs_processed: u32,
    pub jobs_failed: u32,
    pub avg_job_time_us: f32,
    pub restarts: u32,
    /// [32..48) resource usage.
    pub memory_mb: f32,
    pub cpu_load: f32,
    pub gpu_load: f32,
    pub queue_depth: u32,
    /// [48..64) health indicators.
    pub health_score: f32,
    pub runs: u32,
    pub last_heartbeat_ms: u64,
    /// [64..68) DEVIATION: the header's seqlock word (the original's docs left 64..128 reserved).
    pub seq: u32,
    /// [68..92) the supervisor's name, NUL-terminated (for the inspector).
    pub name: [u8; 24],
    /// [92..108) DEVIATION (layout 5): what the health engine reads of a unit supervisor: its role
    /// (`ROLE_UNIT` for a unit's supervisor, 0 for the others), the unit's id hash, the pulses since
    /// the unit last beat (`NO_BEAT_PROMISED` when it does not beat on the pulse or is not
    /// running) and the tree's heartbeat timeout, in pulses.
    pub role: u32,
    pub unit_hash: u32,
    pub silent_pulses: u32,
    pub heartbeat_limit: u32,
    pub reserved: [u32; 5],
}

/// `SupervisorHeader::role` of a unit's supervisor.
pub const ROLE_UNIT: u32 = 1;
/// `SupervisorHeader::silent_pulses` of a unit that does not promise a beat on every pulse (or
/// does not run).
pub const NO_BEAT_PROMISED: u32 = u32::MAX;
const _: () = assert!(size_of::<SupervisorHeader>() == g::SUPERVISOR_HEADER_SIZE as usize);
const _: () = assert!(offset_of!(SupervisorHeader, jobs_processed) == 16);
const _: () = assert!(offset_of!(SupervisorHeader, memory_mb) == 32);
const _: () = assert!(offset_of!(SupervisorHeader, health_score) == 48);
const HEADER_WORDS: usize = size_of::<SupervisorHeader>() / 4;
const HEADER_SEQ: usize = offset_of!(SupervisorHeader, seq) / 4;

impl SupervisorHeader {
    pub fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    pub fn set_name(&mut self, name: &str) {
        self.name = [0; 24];
        let n = name.len().min(23);
        self.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    }
}

/// A pool slot allocated to a supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SupervisorSlot {
    pub slot: usize,
    pub epoch: EpochIndex,
    pub id_hash: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    #[error("the supervisor pool is full ({POOL} slots)")]
    PoolFull,
    #[error("supervisor slot {0} is out of the pool's range 0..{POOL}")]
    BadSlot(usize),
    #[error("no supervisor with id hash {0:#010x} is allocated")]
    NotAllocated(u32),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error("the header is {0}")]
    BeingWritten(#[from] BeingWritten),
}

/// The supervisor table of one SAB.
pub struct SupervisorTable<'a> {
    sab: &'a Sab,
}

impl<'a> SupervisorTable<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    fn table(&self) -> &'a [AtomicU32] {
        self.sab
            .memory()
            .u32_words(regions::SUPERVISOR_ALLOC.offset, size_of::<SupervisorAllocTable>() / 4)
            .expect("the supervisor table lies inside every SAB")
    }

    fn header_words(&self, slot: usize) -> Result<&'a [AtomicU32], SupervisorError> {
        if slot >= POOL {
            return Err(SupervisorError::BadSlot(slot));
        }
        Ok(self
            .sab
            .memory()
            .u32_words(
                regions::SUPERVISOR_HEADERS.offset + slot * size_of::<SupervisorHeader>(),
                HEADER_WORDS,
            )
            .expect("supervisor headers lie inside every SAB"))
    }

    fn is_allocated(&self, slot: usize) -> bool {
        self.table()[BITMAP + slot / 32].load(Ordering::Acquire) & (1 << (slot % 32)) != 0
    }

    /// The slot of the supervisor whose id hashes to `id_hash`, if allocated.
    pub fn find(&self, id_hash: u32) -> Option<SupervisorSlot> {
        let t = self.table();
        (0..POOL)
            .filter(|&slot| self.is_allocated(slot))
            .find(|&slot| t[PAIRS + 2 * slot].load(Ordering::Relaxed) == id_hash)
            .map(|slot| SupervisorSlot {
                slot,
                epoch: EpochIndex::supervisor(slot as u32).expect("slot is in the pool"),
                id_hash,
            })
    }

    /// Allocates a pool slot (and so an epoch) for supervisor `id`, or returns its existing one.
    /// The search starts at the id's hash, so an id tends to get the same slot every run.
    pub fn allocate(&self, id: &str, owner: Owner) -> Result<SupervisorSlot, SupervisorError> {
        let mut session = self.sab.guards().begin(GuardRegion::SupervisorTable, owner)?;
        let id_hash = super::registry::id_hash(id);
        if let Some(existing) = self.find(id_hash) {
            return Ok(existing);
        }
        let t = self.table();
        let start = id_hash as usize % POOL;
        let slot = (0..POOL)
            .map(|k| (start + k) % POOL)
            .find(|&slot| !self.is_allocated(slot))
            .ok_or(SupervisorError::PoolFull)?;
        let epoch = EpochIndex::supervisor(slot as u32).expect("slot is in the pool");
        t[PAIRS + 2 * slot].store(id_hash, Ordering::Relaxed);
        t[PAIRS + 2 * slot + 1].store(epoch.get(), Ordering::Relaxed);
        t[BITMAP + slot / 32].fetch_or(1 << (slot % 32), Ordering::Release);
        t[ALLOCATED].fetch_add(1, Ordering::Relaxed);
        t[NEXT].store(((slot + 1) % POOL) as u32, Ordering::Relaxed);
        let mut header = SupervisorHeader {
            supervisor_id: id_hash,
            epoch_index: epoch.get() as u8,
            status: SupervisorStatus::Starting as u8,
            health_score: 1.0,
            ..SupervisorHeader::default()
        };
        header.set_name(id);
        self.write_header(slot, &header)?;
        self.sab.epochs().signal(EpochIndex::SUPERVISOR_TABLE);
        session.check_advanced()?;
        Ok(SupervisorSlot { slot, epoch, id_hash })
    }

    /// Releases the slot of supervisor `id` and clears its header.
    pub fn release(&self, id: &str, owner: Owner) -> Result<(), SupervisorError> {
        let mut session = self.sab.guards().begin(GuardRegion::SupervisorTable, owner)?;
        let id_hash = super::registry::id_hash(id);
        let found = self.find(id_hash).ok_or(SupervisorError::NotAllocated(id_hash))?;
        let t = self.table();
        self.write_header(found.slot, &SupervisorHeader::default())?;
        t[PAIRS + 2 * found.slot].store(0, Ordering::Relaxed);
        t[PAIRS + 2 * found.slot + 1].store(0, Ordering::Relaxed);
        t[BITMAP + found.slot / 32].fetch_and(!(1 << (found.slot % 32)), Ordering::Release);
        t[ALLOCATED].fetch_sub(1, Ordering::Relaxed);
        self.sab.epochs().signal(EpochIndex::SUPERVISOR_TABLE);
        session.check_advanced()?;
        Ok(())
    }

    /// The allocated slots, in slot order.
    pub fn allocated(&self) -> Vec<SupervisorSlot> {
        let t = self.table();
        (0..POOL)
            .filter(|&slot| self.is_allocated(slot))
            .map(|slot| SupervisorSlot {
                slot,
                epoch: EpochIndex::supervisor(slot as u32).expect("slot is in the pool"),
                id_hash: t[PAIRS + 2 * slot].load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Writes the header of `slot` (the slot's supervisor is its only writer).
    pub fn write_header(&self, slot: usize, header: &SupervisorHeader) -> Result<(), SupervisorError> {
        seqlock::write_record(self.header_words(slot)?, HEADER_SEQ, header);
        Ok(())
    }

    /// Reads the header of `slot` consistently.
    pub fn header(&self, slot: usize) -> Result<SupervisorHeader, SupervisorError> {
        Ok(seqlock::read_record(self.header_words(slot)?, HEADER_SEQ)?)
    }
}

/// A run condition for a unit's systems: true unless the unit's supervisor has paused, stopped or
/// is restarting it (read from its header in the SAB; a unit without a supervisor runs).
pub fn unit_running(unit: &'static str) -> impl FnMut(Res<Sab>) -> bool + Clone {
    let id_hash = crc32c::crc32c(supervisor_id(unit).as_bytes());
    move |sab: Res<Sab>| {
        let table = sab.supervisors();
        table
            .find(id_hash)
            .and_then(|slot| table.header(slot.slot).ok())
            .is_none_or(|header| header.lifecycle == Lifecycle::Running as u8)
    }
}
