//! Lifecycle requests: what the health engine, the inspector's buttons and the
//! `spawnThread`/`killThread` syscalls ask of a unit's supervisor. A requester pushes an 8-byte
//! frame (the unit's id hash and the action) on the lifecycle ring and the ring signals
//! `LIFECYCLE_DIRTY`; the supervisor tree, the ring's only consumer, carries the requests out on its
//! next tick. No part calls the tree, and a request survives in the SAB until the tree reads it.

use serde::Serialize;

use super::Sab;
use super::guard::{GuardError, Owner};
use super::ring::{RingError, RingId};

/// What a request asks of a unit's supervisor (seed 000's BaseSupervisor lifecycle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum LifecycleAction {
    /// Start a stopped unit (after a kill or an escalation).
    Spawn = 1,
    /// Stop a unit; it is not restarted. Its queued jobs are refused.
    Kill = 2,
    /// Hold a unit: its systems and its jobs wait.
    Pause = 3,
    Resume = 4,
    /// Log the unit's supervisor state and keep it in the tree's snapshots.
    Snapshot = 5,
    /// Restart a running or paused unit now (the health engine's remediation); not counted
    /// against the restart intensity.
    Restart = 6,
}

impl LifecycleAction {
    pub const ALL: [LifecycleAction; 6] = [
        LifecycleAction::Spawn,
        LifecycleAction::Kill,
        LifecycleAction::Pause,
        LifecycleAction::Resume,
        LifecycleAction::Snapshot,
        LifecycleAction::Restart,
    ];

    pub fn from_u32(value: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|a| *a as u32 == value)
    }
}

/// One request frame, as stored on the ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct LifecycleRequest {
    /// CRC32C of the unit's id.
    pub unit_hash: u32,
    /// A `LifecycleAction`.
    pub action: u32,
}

/// Why a frame on the lifecycle ring is no request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("a lifecycle request is 8 bytes, not {0}")]
    Size(usize),
    #[error("{0} is no lifecycle action")]
    Action(u32),
}

impl LifecycleRequest {
    pub fn new(unit: &str, action: LifecycleAction) -> Self {
        Self::for_hash(crc32c::crc32c(unit.as_bytes()), action)
    }

    /// A request for the unit whose id hashes to `unit_hash`.
    pub fn for_hash(unit_hash: u32, action: LifecycleAction) -> Self {
        Self {
            unit_hash,
            action: action as u32,
        }
    }

    /// The unit hash and action of a frame read from the ring.
    pub fn decode(frame: &[u8]) -> Result<(u32, LifecycleAction), RequestError> {
        let request: LifecycleRequest =
            bytemuck::try_pod_read_unaligned(frame).map_err(|_| RequestError::Size(frame.len()))?;
        let action = LifecycleAction::from_u32(request.action).ok_or(RequestError::Action(request.action))?;
        Ok((request.unit_hash, action))
    }
}

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error(transparent)]
    Ring(#[from] RingError),
}

impl Sab {
    /// Asks the supervisor tree to carry out `request` (its next tick does). `owner` must be one
    /// of the lifecycle ring's writers (the kernel or the host).
    pub fn request_lifecycle(&self, owner: Owner, request: LifecycleRequest) -> Result<(), LifecycleError> {
        let mut producer = self.ring(RingId::Lifecycle).producer(owner)?;
        producer.push(bytemuck::bytes_of(&request))?;
        producer.publish()?;
        Ok(())
    }
}
