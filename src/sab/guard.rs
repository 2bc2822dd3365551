//! The region guard table (reference §2.12): who may write a region, whether one writer at a time
//! or many, and a check that the region's epoch advanced after each guarded write.
//!
//! Entry layout (16 B): `[lock][last epoch][violations][last owner]`, four `u32` words.
//! - `lock` holds the owner bit of the current single writer (0 = free), taken and released by CAS;
//! - `last epoch` is the region epoch seen after the last checked write;
//! - `violations` counts refused writers, lock contention and writes not followed by a signal;
//! - `last owner` records the most recent writer (telemetry for multi-writer regions).
//!
//! Every violation also bumps `EpochIndex::GUARD_VIOLATION`, so the health engine and the
//! inspector can react to it.

use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use super::Sab;
use super::epochs::EpochIndex;
use super::generated as g;

/// A party that writes SAB regions; each has one bit in owner masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    Kernel,
    Module,
    Host,
    System,
}

impl Owner {
    pub const ALL: [Owner; 4] = [Owner::Kernel, Owner::Module, Owner::Host, Owner::System];

    pub const fn bit(self) -> u32 {
        match self {
            Owner::Kernel => g::OWNER_KERNEL,
            Owner::Module => g::OWNER_MODULE,
            Owner::Host => g::OWNER_HOST,
            Owner::System => g::OWNER_SYSTEM,
        }
    }

    /// The names of the owners in a mask, e.g. `kernel|module`; `-` for none.
    pub fn mask_names(mask: u32) -> String {
        let names: Vec<_> = Owner::ALL
            .into_iter()
            .filter(|o| mask & o.bit() != 0)
            .map(|o| format!("{o:?}").to_lowercase())
            .collect();
        if names.is_empty() { "-".into() } else { names.join("|") }
    }
}

/// Single writer (a lock) or several writers (recorded, not locked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriterMode {
    SingleWriter,
    MultiWriter,
}

/// The guarded regions, in guard-table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardRegion {
    Inbox,
    OutboxHost,
    OutboxKernel,
    MeshEventQueue,
    ArenaRequestQueue,
    ArenaResponseQueue,
    Arena,
    BirdStream,
    MatrixStream,
    Registry,
    PatternExchange,
    JobHistory,
    SupervisorTable,
    GeneBuffer,
    ObstacleTable,
    Lifecycle,
}

/// What the schema says about one guarded region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GuardPolicy {
    pub region: GuardRegion,
    pub id: u32,
    pub mode: WriterMode,
    pub writers: u32,
    pub epoch: Option<EpochIndex>,
}

const fn policy(region: GuardRegion, id: u32, mode: u32, writers: u32, epoch: u32) -> GuardPolicy {
    GuardPolicy {
        region,
        id,
        mode: if mode == g::GUARD_MODE_SINGLE_WRITER {
            WriterMode::SingleWriter
        } else {
            WriterMode::MultiWriter
        },
        writers,
        epoch: EpochIndex::new(epoch),
    }
}

impl GuardRegion {
    pub const ALL: [GuardRegion; g::GUARD_COUNT as usize] = [
        GuardRegion::Inbox,
        GuardRegion::OutboxHost,
        GuardRegion::OutboxKernel,
        GuardRegion::MeshEventQueue,
        GuardRegion::ArenaRequestQueue,
        GuardRegion::ArenaResponseQueue,
        GuardRegion::Arena,
        GuardRegion::BirdStream,
        GuardRegion::MatrixStream,
        GuardRegion::Registry,
        GuardRegion::PatternExchange,
        GuardRegion::JobHistory,
        GuardRegion::SupervisorTable,
        GuardRegion::GeneBuffer,
        GuardRegion::ObstacleTable,
        GuardRegion::Lifecycle,
    ];

    pub const fn policy(self) -> GuardPolicy {
        use GuardRegion as R;
        match self {
            R::Inbox => policy(
                self,
                g::GUARD_INBOX,
                g::GUARD_INBOX_MODE,
                g::GUARD_INBOX_WRITERS,
                g::GUARD_INBOX_EPOCH,
            ),
            R::OutboxHost => policy(
                self,
                g::GUARD_OUTBOX_HOST,
                g::GUARD_OUTBOX_HOST_MODE,
                g::GUARD_OUTBOX_HOST_WRITERS,
                g::GUARD_OUTBOX_HOST_EPOCH,
            ),
            R::OutboxKernel => policy(
                self,
                g::GUARD_OUTBOX_KERNEL,
                g::GUARD_OUTBOX_KERNEL_MODE,
                g::GUARD_OUTBOX_KERNEL_WRITERS,
                g::GUARD_OUTBOX_KERNEL_EPOCH,
            ),
            R::MeshEventQueue => policy(
                self,
                g::GUARD_MESH_EVENT_QUEUE,
                g::GUARD_MESH_EVENT_QUEUE_MODE,
                g::GUARD_MESH_EVENT_QUEUE_WRITERS,
                g::GUARD_MESH_EVENT_QUEUE_EPOCH,
            ),
            R::ArenaRequestQueue => policy(
                self,
                g::GUARD_ARENA_REQUEST_QUEUE,
                g::GUARD_ARENA_REQUEST_QUEUE_MODE,
                g::GUARD_ARENA_REQUEST_QUEUE_WRITERS,
                g::GUARD_ARENA_REQUEST_QUEUE_EPOCH,
            ),
            R::ArenaResponseQueue => policy(
                self,
                g::GUARD_ARENA_RESPONSE_QUEUE,
                g::GUARD_ARENA_RESPONSE_QUEUE_MODE,
                g::GUARD_ARENA_RESPONSE_QUEUE_WRITERS,
                g::GUARD_ARENA_RESPONSE_QUEUE_EPOCH,
            ),
            R::Arena => policy(
                self,
                g::GUARD_ARENA,
                g::GUARD_ARENA_MODE,
                g::GUARD_ARENA_WRITERS,
                g::GUARD_ARENA_EPOCH,
            ),
            R::BirdStream => policy(
                self,
                g::GUARD_BIRD_STREAM,
                g::GUARD_BIRD_STREAM_MODE,
                g::GUARD_BIRD_STREAM_WRITERS,
                g::GUARD_BIRD_STREAM_EPOCH,
            ),
            R::MatrixStream => policy(
                self,
                g::GUARD_MATRIX_STREAM,
                g::GUARD_MATRIX_STREAM_MODE,
                g::GUARD_MATRIX_STREAM_WRITERS,
                g::GUARD_MATRIX_STREAM_EPOCH,
            ),
            R::Registry => policy(
                self,
                g::GUARD_REGISTRY,
                g::GUARD_REGISTRY_MODE,
                g::GUARD_REGISTRY_WRITERS,
                g::GUARD_REGISTRY_EPOCH,
            ),
            R::PatternExchange => policy(
                self,
                g::GUARD_PATTERN_EXCHANGE,
                g::GUARD_PATTERN_EXCHANGE_MODE,
                g::GUARD_PATTERN_EXCHANGE_WRITERS,
                g::GUARD_PATTERN_EXCHANGE_EPOCH,
            ),
            R::JobHistory => policy(
                self,
                g::GUARD_JOB_HISTORY,
                g::GUARD_JOB_HISTORY_MODE,
                g::GUARD_JOB_HISTORY_WRITERS,
                g::GUARD_JOB_HISTORY_EPOCH,
            ),
            R::SupervisorTable => policy(
                self,
                g::GUARD_SUPERVISOR_TABLE,
                g::GUARD_SUPERVISOR_TABLE_MODE,
                g::GUARD_SUPERVISOR_TABLE_WRITERS,
                g::GUARD_SUPERVISOR_TABLE_EPOCH,
            ),
            R::GeneBuffer => policy(
                self,
                g::GUARD_GENE_BUFFER,
                g::GUARD_GENE_BUFFER_MODE,
                g::GUARD_GENE_BUFFER_WRITERS,
                g::GUARD_GENE_BUFFER_EPOCH,
            ),
            R::ObstacleTable => policy(
                self,
                g::GUARD_OBSTACLE_TABLE,
                g::GUARD_OBSTACLE_TABLE_MODE,
                g::GUARD_OBSTACLE_TABLE_WRITERS,
                g::GUARD_OBSTACLE_TABLE_EPOCH,
            ),
            R::Lifecycle => policy(
                self,
                g::GUARD_LIFECYCLE,
                g::GUARD_LIFECYCLE_MODE,
                g::GUARD_LIFECYCLE_WRITERS,
                g::GUARD_LIFECYCLE_EPOCH,
            ),
        }
    }
}

/// One guard-table entry as stored in the SAB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct GuardEntry {
    pub lock: u32,
    pub last_epoch: u32,
    pub violations: u32,
    pub last_owner: u32,
}
const _: () = assert!(size_of::<GuardEntry>() == g::GUARD_ENTRY_SIZE as usize);
const _: () = assert!(g::GUARD_COUNT * g::GUARD_ENTRY_SIZE <= g::GUARD_TABLE_SIZE);

const LOCK: usize = offset_of!(GuardEntry, lock) / 4;
const LAST_EPOCH: usize = offset_of!(GuardEntry, last_epoch) / 4;
const VIOLATIONS: usize = offset_of!(GuardEntry, violations) / 4;
const LAST_OWNER: usize = offset_of!(GuardEntry, last_owner) / 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("{owner:?} may not write {region:?} (writers: {})", Owner::mask_names(*writers))]
    NotAuthorized {
        region: GuardRegion,
        owner: Owner,
        writers: u32,
    },
    #[error("{region:?} is single-writer and {} holds it", Owner::mask_names(*holder))]
    Busy { region: GuardRegion, holder: u32 },
    #[error("{region:?} was written but epoch {epoch:?} did not advance past {value}")]
    EpochNotAdvanced {
        region: GuardRegion,
        epoch: EpochIndex,
        value: u32,
    },
}

/// The guard table of one SAB.
pub struct RegionGuards<'a> {
    sab: &'a Sab,
}

impl<'a> RegionGuards<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    fn words(&self, region: GuardRegion) -> &'a [AtomicU32] {
        let offset = g::GUARD_TABLE_OFFSET as usize + region.policy().id as usize * g::GUARD_ENTRY_SIZE as usize;
        self.sab
            .memory()
            .u32_words(offset, g::GUARD_ENTRY_SIZE as usize / 4)
            .expect("the guard table lies inside every SAB")
    }

    /// Releases every single-writer lock, whoever holds it: for a SAB whose writers are gone
    /// (`Sab::adopt`).
    pub(crate) fn release_all(&self) {
        for region in GuardRegion::ALL {
            self.words(region)[LOCK].store(0, Ordering::Release);
        }
    }

    /// The entry of `region` as it is now.
    pub fn entry(&self, region: GuardRegion) -> GuardEntry {
        let w = self.words(region);
        GuardEntry {
            lock: w[LOCK].load(Ordering::Acquire),
            last_epoch: w[LAST_EPOCH].load(Ordering::Relaxed),
            violations: w[VIOLATIONS].load(Ordering::Relaxed),
            last_owner: w[LAST_OWNER].load(Ordering::Relaxed),
        }
    }

    fn violation(&self, region: GuardRegion) {
        self.words(region)[VIOLATIONS].fetch_add(1, Ordering::Relaxed);
        self.sab.epochs().signal(EpochIndex::GUARD_VIOLATION);
    }

    /// Starts a guarded write of `region` by `owner`: checks the writer mask, takes the lock of a
    /// single-writer region, and snapshots the region's epoch. The lock is released when the
    /// session is dropped.
    pub fn begin(&self, region: GuardRegion, owner: Owner) -> Result<GuardSession, GuardError> {
        let policy = region.policy();
        if policy.writers & owner.bit() == 0 {
            self.violation(region);
            return Err(GuardError::NotAuthorized {
                region,
                owner,
                writers: policy.writers,
            });
        }
        let words = self.words(region);
        if policy.mode == WriterMode::SingleWriter
            && let Err(holder) = words[LOCK].compare_exchange(0, owner.bit(), Ordering::Acquire, Ordering::Relaxed)
        {
            self.violation(region);
            return Err(GuardError::Busy { region, holder });
        }
        // Orders the lock word before this writer's data stores for `read_consistent` readers
        // (the writer half of a seqlock's "odd, then fence(Release), then data").
        std::sync::atomic::fence(Ordering::Release);
        words[LAST_OWNER].store(owner.bit(), Ordering::Relaxed);
        Ok(GuardSession {
            sab: self.sab.clone(),
            region,
            owner,
            snapshot: policy.epoch.map(|e| self.sab.epochs().load(e)),
        })
    }
}

impl RegionGuards<'_> {
    /// Runs `copy` until it ran while no writer held the single-writer `region` and the region's
    /// epoch did not move: the guard lock and the epoch together form a seqlock (writers take the
    /// lock, write, signal, release). Returns `None` after `attempts` disturbed copies.
    pub fn read_consistent<T>(&self, region: GuardRegion, attempts: u32, mut copy: impl FnMut() -> T) -> Option<T> {
        let epoch = region.policy().epoch.expect("consistent reads need a region epoch");
        let words = self.words(region);
        let epochs = self.sab.epochs();
        for _ in 0..attempts {
            let before = epochs.load(epoch);
            if words[LOCK].load(Ordering::Acquire) != 0 {
                std::hint::spin_loop();
                continue;
            }
            let value = copy();
            std::sync::atomic::fence(Ordering::Acquire);
            if words[LOCK].load(Ordering::Relaxed) == 0 && epochs.load(epoch) == before {
                return Some(value);
            }
        }
        None
    }
}

/// A writer's hold on a guarded region. Dropping it releases a single-writer lock.
pub struct GuardSession {
    sab: Sab,
    region: GuardRegion,
    owner: Owner,
    snapshot: Option<u32>,
}

impl GuardSession {
    pub fn region(&self) -> GuardRegion {
        self.region
    }

    /// Called after a write and its signal: the region's epoch must have moved since the session
    /// began or since the previous check. A write that was not signalled counts a violation.
    pub fn check_advanced(&mut self) -> Result<(), GuardError> {
        let (Some(epoch), Some(before)) = (self.region.policy().epoch, self.snapshot) else {
            return Ok(());
        };
        let guards = self.sab.guards();
        let now = self.sab.epochs().load(epoch);
        if now == before {
            guards.violation(self.region);
            return Err(GuardError::EpochNotAdvanced {
                region: self.region,
                epoch,
                value: now,
            });
        }
        guards.words(self.region)[LAST_EPOCH].store(now, Ordering::Relaxed);
        self.snapshot = Some(now);
        Ok(())
    }
}

impl Drop for GuardSession {
    fn drop(&mut self) {
        if self.region.policy().mode == WriterMode::SingleWriter {
            let words = self.sab.guards().words(self.region);
            // Only the holder releases; the CAS cannot fail while this session exists.
            let _ = words[LOCK].compare_exchange(self.owner.bit(), 0, Ordering::Release, Ordering::Relaxed);
        }
    }
}
