//! The SAB: one shared byte arena, the only medium between the parts of INOS.
//!
//! `Sab` is a Bevy resource and a cheap, clonable handle to one 64-byte-aligned allocation sized
//! by tier. Its memory map comes from `schemas/sab_layout.capnp` (see `layout`). Everything
//! shared goes through atomics and single-writer protocols:
//! - `epochs`: counters that writers bump and readers wait on;
//! - `stream`: the seqlocked ping-pong bird and matrix streams;
//! - `ring`: the multi-producer inbox/outbox rings;
//! - `guard`: the region guard table that admits writers;
//! - `arena`: the slab + buddy allocator of the arena heap;
//! - `registry`: the module registry with its lock and arena tables;
//! - `supervisors`: the supervisor epoch allocation table and 128-byte headers;
//! - `patterns`: the pattern exchange and the job history;
//! - `genes`: the gene buffer through which evolution reaches the flock;
//! - `snapshot`: the whole SAB to and from a file.
//!
//! This module uses nothing else of the project. Its only `unsafe` code is in `memory` (the atomic
//! views of the allocation) and `epochs` (parking-lot calls), each block with a `// SAFETY:` note.

pub mod admission;
pub mod arena;
pub mod clients;
pub mod engines;
pub mod epochs;
pub mod flock_state;
pub mod genes;
#[allow(clippy::all, clippy::pedantic, unused, missing_docs)]
#[rustfmt::skip]
#[path = "generated/sab_layout_capnp.rs"]
pub mod generated;
pub mod guard;
pub mod heartbeats;
pub mod job_table;
pub mod kernel_state;
pub mod layout;
pub mod lifecycle;
mod memory;
pub mod obstacles;
pub mod patterns;
pub mod pipeline;
pub mod processes;
pub mod registry;
pub mod ring;
mod seqlock;
#[cfg(not(target_arch = "wasm32"))]
pub mod shared;
pub mod snapshot;
pub mod stream;
pub mod supervisors;
pub mod table;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bevy::prelude::*;
use bytemuck::{AnyBitPattern, NoUninit};
use serde::Serialize;

pub use arena::{Arena, ArenaBlock, ArenaError};
pub use epochs::{EpochIndex, Epochs, Signal, Wake, epoch_changed};
pub use guard::{GuardError, GuardRegion, Owner, RegionGuards};
pub use layout::{KernelArea, Region, SabLayout, Tier};
pub use memory::AccessError;
pub use obstacles::{ObstacleRecord, ObstacleRole, ObstacleShape, ObstacleTable};
pub use patterns::{HistoryCursor, HistoryReader, JobHistory, JobRecord, PatternExchange, PatternRecord};
pub use registry::{Capability, Dependency, ModuleSpec, Registry, RegistryError};
pub use ring::{Ring, RingError, RingId};
pub use seqlock::BeingWritten;
pub use stream::{BirdRecord, MatrixPart, Stream, StreamError, StreamId};
pub use supervisors::{SupervisorHeader, SupervisorStatus, SupervisorTable};

use generated as g;
use memory::SabMemory;

/// The self-describing header at the `sab_header` region, for the JS host and for snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct SabHeader {
    pub magic: u64,
    pub layout_version: u32,
    pub tier: u32,
    pub sab_size: u64,
    pub bird_capacity: u32,
    pub reserved: [u32; 9],
}
const _: () = assert!(size_of::<SabHeader>() == g::SAB_HEADER_SIZE as usize);

struct SabInner {
    memory: SabMemory,
    layout: SabLayout,
}

/// The shared byte arena. Cloning the handle shares the same memory (like a SharedArrayBuffer).
#[derive(Resource, Clone)]
pub struct Sab {
    inner: Arc<SabInner>,
}

impl Sab {
    /// A fresh SAB for `layout`: zeroed, with its header and the streams' and rings' self-describing
    /// words written.
    pub fn new(layout: SabLayout) -> Self {
        Self::zeroed(layout).formatted()
    }

    /// Writes the header and the self-describing words of a zeroed SAB.
    fn formatted(self) -> Self {
        let sab = self;
        let layout = *sab.layout();
        let spec = layout.spec();
        let header = SabHeader {
            magic: g::SAB_MAGIC,
            layout_version: g::LAYOUT_VERSION,
            tier: layout.tier.id(),
            sab_size: layout.sab_size as u64,
            bird_capacity: spec.max_birds,
            reserved: [0; 9],
        };
        let memory = sab.memory();
        memory
            .write(layout::regions::SAB_HEADER.offset, &[header])
            .expect("the SAB header lies inside every SAB");
        for id in StreamId::ALL {
            let words = memory
                .u32_words(id.control_region().offset, g::STREAM_CONTROL_SIZE as usize / 4)
                .expect("stream control blocks lie inside every SAB");
            words[stream::RECORD_SIZE].store(id.record_size() as u32, Ordering::Relaxed);
            words[stream::CAPACITY].store(spec.max_birds, Ordering::Relaxed);
        }
        for id in RingId::ALL {
            let words = memory
                .u64_words(id.control_region().offset, g::RING_CONTROL_SIZE as usize / 8)
                .expect("ring control blocks lie inside every SAB");
            words[ring::CAPACITY].store(id.region().size as u64, Ordering::Relaxed);
        }
        sab.arena().format();
        sab.job_history().format();
        sab
    }

    /// A SAB of the tier's own size.
    pub fn for_tier(tier: Tier) -> Self {
        Self::new(SabLayout::for_tier(tier))
    }

    /// All-zero memory, header not written (snapshot loading fills it).
    fn zeroed(layout: SabLayout) -> Self {
        Self::with_memory(SabMemory::zeroed(layout.sab_size), layout)
    }

    fn with_memory(memory: SabMemory, layout: SabLayout) -> Self {
        Self {
            inner: Arc::new(SabInner { memory, layout }),
        }
    }

    pub(crate) fn memory(&self) -> &SabMemory {
        &self.inner.memory
    }

    pub fn layout(&self) -> &SabLayout {
        &self.inner.layout
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.inner.memory.len()
    }

    /// The address of the SAB's first byte. In the browser build this is its byte offset in the
    /// wasm memory, where the JS host reads it (`web/host.js`).
    pub fn base_address(&self) -> usize {
        self.inner.memory.address()
    }

    /// Never true: a SAB is at least `SAB_SIZE_MIN` bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether two handles share the same memory.
    pub fn same_memory(&self, other: &Sab) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn epochs(&self) -> Epochs<'_> {
        Epochs {
            words: self
                .memory()
                .u32_words(layout::regions::EPOCHS.offset, EpochIndex::COUNT)
                .expect("the epoch region lies inside every SAB"),
            waiters: self
                .memory()
                .u32_words(layout::regions::EPOCH_WAITERS.offset, EpochIndex::COUNT)
                .expect("the epoch waiter counts lie inside every SAB"),
        }
    }

    pub fn guards(&self) -> RegionGuards<'_> {
        RegionGuards::new(self)
    }

    pub fn stream(&self, id: StreamId) -> Stream {
        Stream::new(self.clone(), id)
    }

    pub fn ring(&self, id: RingId) -> Ring {
        Ring::new(self.clone(), id)
    }

    pub fn arena(&self) -> Arena<'_> {
        Arena::new(self)
    }

    pub fn registry(&self) -> Registry<'_> {
        Registry::new(self)
    }

    pub fn supervisors(&self) -> SupervisorTable<'_> {
        SupervisorTable::new(self)
    }

    pub fn patterns(&self) -> PatternExchange<'_> {
        PatternExchange::new(self)
    }

    pub fn job_history(&self) -> JobHistory<'_> {
        JobHistory::new(self)
    }

    pub fn engines(&self) -> engines::EngineTable<'_> {
        engines::EngineTable::new(self)
    }

    pub fn admission(&self) -> admission::AdmissionTable<'_> {
        admission::AdmissionTable::new(self)
    }

    pub fn flock_state(&self) -> flock_state::FlockState<'_> {
        flock_state::FlockState::new(self)
    }

    pub fn kernel_state(&self, area: KernelArea) -> kernel_state::KernelState<'_> {
        kernel_state::KernelState::new(self, area)
    }

    pub fn job_table(&self) -> job_table::JobTable<'_> {
        job_table::JobTable::new(self)
    }

    /// Takes over a SAB whose processes are gone (a resumed snapshot): releases every claim they
    /// held (ring consumers, single-writer guard locks, the arena's lock, the kernel lock, process
    /// records, client lanes, epoch waiter counts) so that this process's parts can take them
    /// again. Only for a SAB that no live process uses.
    pub fn adopt(&self) {
        for id in RingId::ALL {
            self.ring(id).core().release_consumer();
        }
        self.guards().release_all();
        self.arena().release_lock();
        self.processes().clear();
        for lane in 0..clients::LANES {
            self.clients().reset(lane);
        }
        for waiters in self.epochs().waiters {
            waiters.store(0, Ordering::Relaxed);
        }
    }

    pub fn processes(&self) -> processes::ProcessTable<'_> {
        processes::ProcessTable::new(self)
    }

    pub fn clients(&self) -> clients::ClientLanes<'_> {
        clients::ClientLanes::new(self)
    }

    /// The file behind a SAB in a shared mapping (`None` for a private one).
    pub fn path(&self) -> Option<&std::path::Path> {
        self.inner.memory.path()
    }

    pub fn pipeline(&self) -> pipeline::PipelineState<'_> {
        pipeline::PipelineState::new(self)
    }

    pub fn audit_log(&self) -> engines::AuditLog<'_> {
        engines::AuditLog::new(self)
    }

    pub fn heartbeats(&self) -> heartbeats::Heartbeats<'_> {
        heartbeats::Heartbeats::new(self)
    }

    pub fn obstacles(&self) -> ObstacleTable<'_> {
        ObstacleTable::new(self)
    }

    pub fn genes(&self) -> genes::GeneBuffer<'_> {
        genes::GeneBuffer::new(self)
    }

    pub fn header(&self) -> SabHeader {
        self.read(layout::regions::SAB_HEADER.offset)
            .expect("the SAB header lies inside every SAB")
    }

    /// Checks the in-memory header against this SAB's layout; says which field disagrees.
    pub fn check_header(&self) -> Result<(), &'static str> {
        let header = self.header();
        let layout = self.layout();
        if header.magic != g::SAB_MAGIC {
            Err("magic")
        } else if header.layout_version != g::LAYOUT_VERSION {
            Err("layout version")
        } else if header.tier != layout.tier.id() {
            Err("tier")
        } else if header.sab_size != layout.sab_size as u64 {
            Err("size")
        } else if header.bird_capacity != layout.spec().max_birds {
            Err("bird capacity")
        } else {
            Ok(())
        }
    }

    /// Reads a `#[repr(C)]` record at `offset` (bounds- and alignment-checked).
    pub fn read<T: AnyBitPattern + NoUninit>(&self, offset: usize) -> Result<T, AccessError> {
        self.memory().read(offset)
    }

    /// Reads consecutive records at `offset` into `dst`, without allocating.
    pub fn read_into<T: AnyBitPattern + NoUninit>(&self, offset: usize, dst: &mut [T]) -> Result<(), AccessError> {
        self.memory().read_into(offset, dst)
    }

    /// Writes records at `offset`. The caller must be the region's writer under its protocol.
    pub fn write<T: AnyBitPattern + NoUninit>(&self, offset: usize, records: &[T]) -> Result<(), AccessError> {
        self.memory().write(offset, records)
    }

    /// Copies bytes out of the SAB (`offset` and length multiples of 4).
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<(), AccessError> {
        self.memory().copy_out(offset, dst)
    }

    /// Writes `bytes` of any length at `offset` (4-aligned); the last word's bytes past the end
    /// are zeroed. For blocks the caller owns.
    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) -> Result<(), AccessError> {
        let whole = bytes.len() / 4 * 4;
        self.memory().copy_in(offset, &bytes[..whole])?;
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            self.memory().copy_in(offset + whole, &tail)?;
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` (4-aligned) into `out`, replacing its contents.
    pub fn read_bytes(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> Result<(), AccessError> {
        out.clear();
        out.resize(len.next_multiple_of(4), 0);
        let read = self.memory().copy_out(offset, out);
        out.truncate(if read.is_ok() { len } else { 0 });
        read
    }
}

/// Milliseconds of wall-clock time (since the Unix epoch), the time base of the SAB's deadlines
/// and timestamps, so they stay meaningful across processes and restored snapshots. The browser
/// build, which has no wall clock in `std`, counts from its start instead.
pub fn now_ms() -> u64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
    #[cfg(target_arch = "wasm32")]
    {
        static START: std::sync::OnceLock<bevy::platform::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(bevy::platform::time::Instant::now)
            .elapsed()
            .as_millis() as u64
    }
}

/// Inserts the `Sab` resource (unless one is already there, e.g. loaded from a snapshot) and marks
/// the kernel ready.
pub struct SabPlugin {
    pub layout: SabLayout,
}

impl std::fmt::Debug for Sab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sab")
            .field("layout", self.layout())
            .field("path", &self.path())
            .field("base_address", &format_args!("{:#x}", self.base_address()))
            .finish()
    }
}

impl Plugin for SabPlugin {
    fn build(&self, app: &mut App) {
        if !app.world().contains_resource::<Sab>() {
            app.insert_resource(Sab::new(self.layout));
        }
        let sab = app.world().resource::<Sab>().clone();
        let epochs = sab.epochs();
        epochs.store(EpochIndex::CONTEXT_ID_HASH, context_id_hash(&sab));
        epochs.store(EpochIndex::SYSTEM_VISIBILITY, 1);
        #[cfg(not(target_arch = "wasm32"))]
        {
            // The command line claims the lock first, to refuse a second kernel with a message;
            // here it is this process's already, or free (a SAB of its own).
            match sab.processes().claim_kernel() {
                Ok(processes::KernelClaim::Recovered { dead_pid }) => {
                    warn!("took over the kernel lock of pid {dead_pid}, which is gone")
                }
                Ok(processes::KernelClaim::Taken) => {}
                Err(e) => panic!("{e}"),
            }
            match sab.processes().register(processes::Role::Kernel, "kernel", None) {
                Ok(slot) => {
                    app.insert_resource(KernelProcess(slot))
                        .add_systems(PreUpdate, kernel_heartbeat);
                }
                Err(e) => warn!("the kernel is not in the process table: {e}"),
            }
        }
        epochs.store(EpochIndex::KERNEL_READY, 1);
    }
}

/// The kernel's record in the process table.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Resource)]
struct KernelProcess(usize);

/// The kernel's heartbeat in its process record, once per frame.
#[cfg(not(target_arch = "wasm32"))]
fn kernel_heartbeat(sab: Res<Sab>, process: Res<KernelProcess>) {
    sab.processes().beat(process.0);
}

/// A hash identifying this run, for zombie detection across restarts: randomly keyed per process
/// where the platform has randomness, and never zero.
fn context_id_hash(sab: &Sab) -> u32 {
    use std::hash::BuildHasher;
    let address = std::ptr::from_ref(sab.inner.as_ref()) as usize;
    (std::collections::hash_map::RandomState::new().hash_one(address) as u32).max(1)
}

#[cfg(test)]
mod tests {
    //! End-to-end checks of one real SAB, small enough for Miri, which checks the atomic views
    //! and the protocols for undefined behaviour and data races.

    use super::*;

    fn bird(value: f32) -> BirdRecord {
        let mut b: BirdRecord = bytemuck::Zeroable::zeroed();
        bytemuck::cast_slice_mut::<BirdRecord, f32>(std::slice::from_mut(&mut b)).fill(value);
        b
    }

    #[test]
    fn every_part_of_a_light_sab_works_together() {
        let sab = Sab::for_tier(Tier::Light);
        assert_eq!(sab.check_header(), Ok(()));
        let spec = ModuleSpec {
            id: "echo".into(),
            version: [1, 0, 0],
            resource_flags: 0,
            min_memory_mb: 0,
            capabilities: vec![Capability {
                id: "echo:ping".into(),
                min_memory_mb: 1,
                requires_gpu: false,
            }],
            dependencies: vec![],
        };
        let slot = sab.registry().register(&spec, Owner::Module).unwrap();
        assert_eq!(sab.registry().lookup("echo").map(|(s, _)| s), Some(slot));
        let block = sab.arena().alloc(100, Owner::Kernel).unwrap();
        sab.arena().free(block.offset, Owner::Kernel).unwrap();
        let ring = sab.ring(RingId::Inbox);
        let (producer, mut consumer) = (ring.producer(Owner::Kernel).unwrap(), ring.consumer().unwrap());
        producer.push(b"ping").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(consumer.read_into(&mut buf).unwrap(), Some(4));
        let supervisor = sab.supervisors().allocate("echo", Owner::Kernel).unwrap();
        assert_eq!(sab.supervisors().header(supervisor.slot).unwrap().name(), "echo");
    }

    #[test]
    fn a_concurrent_stream_reader_never_sees_a_torn_copy() {
        let sab = Sab::for_tier(Tier::Light);
        let stream = sab.stream(StreamId::Birds);
        let writer = {
            let stream = stream.clone();
            std::thread::spawn(move || {
                let mut writer = stream.writer(Owner::Module).unwrap();
                for generation in 1..=20u32 {
                    writer.publish(&[bird(generation as f32); 2]).unwrap();
                }
            })
        };
        let mut out = [bird(0.0); 2];
        for _ in 0..20 {
            if let Ok(read) = stream.read_into(&mut out)
                && read.count > 0
            {
                let floats: &[f32] = bytemuck::cast_slice(&out);
                assert!(floats.iter().all(|&f| f == read.generation as f32));
            }
        }
        writer.join().unwrap();
    }
}
