//! The module registry (reference §2.1–§2.4): 64 inline 96-byte entries found by double hashing,
//! with capability and dependency tables in the arena, behind the 16-byte registry lock.
//!
//! This registry is ours rather than a crate's because it lives at fixed SAB offsets in a byte
//! layout the JS host reads too. One `#[repr(C)]` `RegistryEntry` is used by every reader and
//! writer (the original had two parsers that disagreed on `per_second_cost` and on a dependency
//! header that was never written).
//!
//! - Home slot: CRC32C(id) mod 64; step: FNV-1a(id) mod 63, made odd; at most 128 probes.
//! - Empty slots have signature 0. Unregistering leaves a tombstone (signature kept, active flag
//!   cleared) so later entries of a probe chain stay reachable; registration reuses tombstones.
//! - Writers take the registry lock (state, owner, deadline). A lock held past its deadline is
//!   recovered by the next writer. Each entry carries its own seqlock word (4 of the 16 reserved
//!   bytes at its end), so lock-free readers never see a half-written entry.
//! - Re-registering a module reuses its slot and frees its old tables; every change signals
//!   `EpochIndex::REGISTRY`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::Sab;
use super::arena::{ArenaBlock, ArenaError};
use super::epochs::EpochIndex;
use super::generated as g;
use super::guard::{GuardError, GuardRegion, Owner};
use super::layout::regions;
use super::seqlock::{self, BeingWritten};

/// One registry entry, exactly as stored (reference §2.1, padding made explicit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct RegistryEntry {
    pub signature: u64,
    /// CRC32C of the module id.
    pub id_hash: u32,
    pub version: [u8; 3],
    pub flags: u8,
    pub timestamp_ms: u64,
    pub data_offset: u32,
    pub data_size: u32,
    pub resource_flags: u16,
    pub min_memory_mb: u16,
    pub min_gpu_memory_mb: u16,
    pub min_cpu_cores: u8,
    pub reserved1: u8,
    pub base_cost: u16,
    pub per_mb_cost: u8,
    pub pad1: u8,
    pub per_second_cost: u16,
    pub reserved2: u8,
    pub pad2: u8,
    pub dep_table_offset: u32,
    pub dep_count: u16,
    pub max_version_major: u8,
    pub min_version_major: u8,
    pub cap_table_offset: u32,
    pub cap_count: u16,
    pub reserved3: u16,
    /// ASCII, NUL-terminated, at most 11 characters.
    pub module_id: [u8; 12],
    /// FNV-1a of the module id.
    pub quick_hash: u32,
    /// DEVIATION: 4 of the original's 16 reserved bytes hold the entry's seqlock word.
    pub seq: u32,
    pub reserved4: [u8; 12],
}
const _: () = assert!(size_of::<RegistryEntry>() == g::REGISTRY_ENTRY_SIZE as usize);
const _: () = assert!(offset_of!(RegistryEntry, per_second_cost) == 44);
const _: () = assert!(offset_of!(RegistryEntry, cap_table_offset) == 56);
const _: () = assert!(offset_of!(RegistryEntry, module_id) == 64);
const _: () = assert!(g::REGISTRY_INLINE_SLOTS * g::REGISTRY_ENTRY_SIZE <= g::REGISTRY_SIZE);
const ENTRY_WORDS: usize = size_of::<RegistryEntry>() / 4;
const ENTRY_SEQ: usize = offset_of!(RegistryEntry, seq) / 4;

/// A capability entry in the arena (reference §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct CapabilityEntry {
    /// NUL-terminated, at most 31 characters.
    pub id: [u8; 32],
    pub min_memory_mb: u16,
    pub flags: u8,
    pub reserved: u8,
}
const _: () = assert!(size_of::<CapabilityEntry>() == g::CAPABILITY_ENTRY_SIZE as usize);

/// A dependency entry in the arena (reference §2.3; written with no header, read the same way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable, Serialize)]
#[repr(C)]
pub struct DependencyEntry {
    pub module_id_hash: u32,
    pub min_version: [u8; 3],
    pub max_version: [u8; 3],
    pub flags: u8,
    pub pad: u8,
    pub alternatives_offset: u16,
    pub reserved: [u8; 2],
}
const _: () = assert!(size_of::<DependencyEntry>() == g::DEPENDENCY_ENTRY_SIZE as usize);

/// A semantic version (major, minor, patch).
pub type Version = [u8; 3];

/// A capability a module offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capability {
    pub id: String,
    pub min_memory_mb: u16,
    pub requires_gpu: bool,
}

/// A module a module needs, with the versions it accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub module_id: String,
    pub min: Version,
    pub max: Version,
    pub optional: bool,
}

impl Dependency {
    pub fn accepts(&self, version: Version) -> bool {
        self.min <= version && version <= self.max
    }
}

/// What a module registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModuleSpec {
    pub id: String,
    pub version: Version,
    pub resource_flags: u16,
    pub min_memory_mb: u16,
    pub capabilities: Vec<Capability>,
    pub dependencies: Vec<Dependency>,
}

impl ModuleSpec {
    /// Version 0.1.0 of a CPU unit with these capabilities (each needing the unit's memory) and
    /// no dependencies.
    pub fn cpu_unit(id: &str, min_memory_mb: u16, capabilities: &[&str]) -> Self {
        Self {
            id: id.into(),
            version: [0, 1, 0],
            resource_flags: 1,
            min_memory_mb,
            capabilities: capabilities
                .iter()
                .map(|&id| Capability {
                    id: id.into(),
                    min_memory_mb,
                    requires_gpu: false,
                })
                .collect(),
            dependencies: vec![],
        }
    }
}

/// A registered module as read back: its entry, slot, capabilities and dependencies.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModuleRecord {
    pub slot: usize,
    pub id: String,
    pub version: Version,
    pub entry: RegistryEntry,
    pub capabilities: Vec<Capability>,
    /// Dependencies by id hash (the entry stores hashes; `module_id` is filled in when the
    /// dependency is registered, else it is the hash in hex).
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("module id {0:?} must be 1 to 11 ASCII characters without NUL")]
    BadId(String),
    #[error("capability id {0:?} must be 1 to 31 ASCII characters without NUL")]
    BadCapability(String),
    #[error("the inline registry is full: no free slot on {id}'s probe sequence")]
    Full { id: String },
    #[error("module {0:?} is not registered")]
    NotRegistered(String),
    #[error("the registry lock is held by owner {owner:#x} and did not come free within {waited:?}")]
    LockTimeout { owner: u32, waited: Duration },
    #[error("the registry lock was taken over while this writer held it")]
    LockLost,
    #[error("{module} depends on {dependency}, which is not registered")]
    MissingDependency { module: String, dependency: String },
    #[error("{module} needs {dependency} {min:?}..={max:?} but {found:?} is registered")]
    VersionMismatch {
        module: String,
        dependency: String,
        min: Version,
        max: Version,
        found: Version,
    },
    #[error("dependency cycle among {0:?}")]
    Cycle(Vec<String>),
    #[error("a registry entry or table is corrupt: {0}")]
    Corrupt(&'static str),
    #[error(transparent)]
    Arena(#[from] ArenaError),
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// CRC32C (Castagnoli) of a module id: its home slot and `id_hash`.
pub fn id_hash(id: &str) -> u32 {
    crc32c::crc32c(id.as_bytes())
}

/// FNV-1a 32 of a module id: its probe step and `quick_hash`.
pub fn quick_hash(id: &str) -> u32 {
    id.bytes()
        .fold(0x811C_9DC5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The slots `id` probes, in order (reference §2.4).
pub fn probe_sequence(id: &str) -> impl Iterator<Item = usize> {
    let slots = g::REGISTRY_INLINE_SLOTS as usize;
    let home = id_hash(id) as usize % slots;
    let step = quick_hash(id) as usize % (slots - 1);
    let step = if step.is_multiple_of(2) { step + 1 } else { step };
    (0..g::REGISTRY_MAX_PROBES as usize).map(move |k| (home + k * step) % slots)
}

fn fixed_str<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    out[..s.len()].copy_from_slice(s.as_bytes());
    out
}

fn read_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn valid_id(id: &str, max: usize) -> bool {
    !id.is_empty() && id.len() <= max && id.bytes().all(|b| b.is_ascii() && b != 0)
}

/// How long a writer may hold the registry lock before another writer may take it over.
pub const LOCK_LEASE: Duration = Duration::from_secs(1);
/// How long `register` waits for a held lock before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The registry of one SAB.
pub struct Registry<'a> {
    sab: &'a Sab,
}

/// The registry lock, held; released on drop.
struct LockHeld<'a> {
    state: &'a AtomicU32,
    token: u32,
}

impl Drop for LockHeld<'_> {
    fn drop(&mut self) {
        let _ = self
            .state
            .compare_exchange(self.token, 0, Ordering::Release, Ordering::Relaxed);
    }
}

impl LockHeld<'_> {
    fn still_held(&self) -> Result<(), RegistryError> {
        if self.state.load(Ordering::Acquire) == self.token {
            Ok(())
        } else {
            Err(RegistryError::LockLost)
        }
    }
}

/// A process-wide source of lock tokens (never 0).
fn next_token() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed).max(1)
}

impl<'a> Registry<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    fn slot_words(&self, slot: usize) -> &'a [AtomicU32] {
        self.sab
            .memory()
            .u32_words(
                regions::REGISTRY.offset + slot * size_of::<RegistryEntry>(),
                ENTRY_WORDS,
            )
            .expect("registry slots lie inside every SAB")
    }

    fn lock_words(&self) -> (&'a AtomicU32, &'a AtomicU32, &'a AtomicU64) {
        let m = self.sab.memory();
        let at = regions::REGISTRY_LOCK.offset;
        let words = m.u32_words(at, 2).expect("the registry lock lies inside every SAB");
        let deadline = &m.u64_words(at + 8, 1).expect("the registry lock lies inside every SAB")[0];
        (&words[0], &words[1], deadline)
    }

    /// Takes the registry lock for `owner`, recovering it from a holder past its deadline.
    fn lock(&self, owner: u32) -> Result<LockHeld<'a>, RegistryError> {
        let (state, owner_word, deadline) = self.lock_words();
        let token = next_token();
        let start = bevy::platform::time::Instant::now();
        let backoff = crossbeam::utils::Backoff::new();
        loop {
            let held = state.load(Ordering::Acquire);
            let now = super::now_ms();
            let take = if held == 0 {
                state.compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
            } else if deadline.load(Ordering::Acquire) != 0 && now > deadline.load(Ordering::Acquire) {
                // The holder outlived its lease (it died or hung): take the lock over.
                state.compare_exchange(held, token, Ordering::Acquire, Ordering::Relaxed)
            } else {
                Err(held)
            };
            if take.is_ok() {
                owner_word.store(owner, Ordering::Relaxed);
                deadline.store(now + LOCK_LEASE.as_millis() as u64, Ordering::Release);
                return Ok(LockHeld { state, token });
            }
            if start.elapsed() > LOCK_WAIT {
                return Err(RegistryError::LockTimeout {
                    owner: owner_word.load(Ordering::Relaxed),
                    waited: LOCK_WAIT,
                });
            }
            backoff.snooze();
        }
    }

    /// Reads the entry in `slot` consistently (never half-written), or says that it is being
    /// written (a writer that died mid-write leaves it so).
    pub fn entry(&self, slot: usize) -> Result<RegistryEntry, BeingWritten> {
        seqlock::read_record(self.slot_words(slot), ENTRY_SEQ)
    }

    /// The slots whose entries cannot be read consistently.
    pub fn being_written(&self) -> Vec<usize> {
        (0..g::REGISTRY_INLINE_SLOTS as usize)
            .filter(|&slot| self.entry(slot).is_err())
            .collect()
    }

    fn write_entry(&self, slot: usize, entry: &RegistryEntry) {
        seqlock::write_record(self.slot_words(slot), ENTRY_SEQ, entry);
    }

    fn is_active(entry: &RegistryEntry) -> bool {
        entry.signature == g::REGISTRY_SIGNATURE
            && entry.id_hash != 0
            && u32::from(entry.flags) & g::REGISTRY_FLAG_ACTIVE != 0
    }

    /// The active entry of module `id`, if registered, and its slot.
    pub fn lookup(&self, id: &str) -> Option<(usize, RegistryEntry)> {
        let (hash, name) = (id_hash(id), fixed_str_checked(id)?);
        for slot in probe_sequence(id) {
            // An entry being written is not (yet) the module's: keep probing.
            let Ok(entry) = self.entry(slot) else {
                continue;
            };
            if entry.signature == 0 {
                return None;
            }
            if Self::is_active(&entry) && entry.id_hash == hash && entry.module_id == name {
                return Some((slot, entry));
            }
        }
        None
    }

    /// The methods module `id` declares (its capabilities named `id:method`), or `None` when it
    /// is not registered. A module that declares none takes any method.
    pub fn methods(&self, id: &str) -> Option<Vec<String>> {
        let (_, entry) = self.lookup(id)?;
        let prefix = format!("{id}:");
        Some(
            self.capabilities(&entry)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| c.id.strip_prefix(&prefix).map(str::to_owned))
                .collect(),
        )
    }

    /// The active entry whose `id_hash` is `hash`.
    pub fn lookup_hash(&self, hash: u32) -> Option<(usize, RegistryEntry)> {
        (0..g::REGISTRY_INLINE_SLOTS as usize)
            .filter_map(|slot| Some((slot, self.entry(slot).ok()?)))
            .find(|(_, e)| Self::is_active(e) && e.id_hash == hash)
    }

    /// Every active module, with its tables, in slot order (entries being written are left out;
    /// [`Registry::being_written`] lists them).
    pub fn modules(&self) -> Vec<ModuleRecord> {
        let entries: Vec<_> = (0..g::REGISTRY_INLINE_SLOTS as usize)
            .filter_map(|slot| Some((slot, self.entry(slot).ok()?)))
            .filter(|(_, e)| Self::is_active(e))
            .collect();
        let names: HashMap<u32, String> = entries
            .iter()
            .map(|(_, e)| (e.id_hash, read_str(&e.module_id)))
            .collect();
        entries
            .into_iter()
            .map(|(slot, entry)| ModuleRecord {
                slot,
                id: read_str(&entry.module_id),
                version: entry.version,
                capabilities: self.capabilities(&entry).unwrap_or_default(),
                dependencies: self
                    .dependencies(&entry)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(hash, mut dep)| {
                        dep.module_id = names.get(&hash).cloned().unwrap_or_else(|| format!("{hash:#010x}"));
                        dep
                    })
                    .collect(),
                entry,
            })
            .collect()
    }

    fn table<T: bytemuck::Pod>(&self, offset: u32, count: u16) -> Result<Vec<T>, RegistryError> {
        let mut out = vec![T::zeroed(); count as usize];
        if count > 0 {
            self.sab
                .read_into(offset as usize, &mut out)
                .map_err(|_| RegistryError::Corrupt("a table offset points outside the SAB"))?;
        }
        Ok(out)
    }

    /// The capabilities an entry lists.
    pub fn capabilities(&self, entry: &RegistryEntry) -> Result<Vec<Capability>, RegistryError> {
        Ok(self
            .table::<CapabilityEntry>(entry.cap_table_offset, entry.cap_count)?
            .into_iter()
            .map(|c| Capability {
                id: read_str(&c.id),
                min_memory_mb: c.min_memory_mb,
                requires_gpu: u32::from(c.flags) & g::CAPABILITY_FLAG_REQUIRES_GPU != 0,
            })
            .collect())
    }

    /// The dependencies an entry lists, by id hash (names are not stored in the table).
    pub fn dependencies(&self, entry: &RegistryEntry) -> Result<Vec<(u32, Dependency)>, RegistryError> {
        Ok(self
            .table::<DependencyEntry>(entry.dep_table_offset, entry.dep_count)?
            .into_iter()
            .map(|d| {
                (
                    d.module_id_hash,
                    Dependency {
                        module_id: String::new(),
                        min: d.min_version,
                        max: d.max_version,
                        optional: u32::from(d.flags) & g::DEPENDENCY_FLAG_OPTIONAL != 0,
                    },
                )
            })
            .collect())
    }

    /// Writes `rows` into a new arena block (none for an empty table).
    fn write_table<T: bytemuck::Pod>(&self, rows: &[T], owner: Owner) -> Result<Option<ArenaBlock>, RegistryError> {
        if rows.is_empty() {
            return Ok(None);
        }
        let block = self.sab.arena().alloc(size_of_val(rows), owner)?;
        self.sab
            .write(block.offset, rows)
            .expect("table rows are whole words and arena blocks lie inside the SAB");
        Ok(Some(block))
    }

    /// Registers (or re-registers) a module; returns its slot.
    pub fn register(&self, spec: &ModuleSpec, owner: Owner) -> Result<usize, RegistryError> {
        if !valid_id(&spec.id, 11) {
            return Err(RegistryError::BadId(spec.id.clone()));
        }
        if let Some(c) = spec.capabilities.iter().find(|c| !valid_id(&c.id, 31)) {
            return Err(RegistryError::BadCapability(c.id.clone()));
        }
        for d in &spec.dependencies {
            if !valid_id(&d.module_id, 11) {
                return Err(RegistryError::BadId(d.module_id.clone()));
            }
        }
        let mut session = self.sab.guards().begin(GuardRegion::Registry, owner)?;
        let lock = self.lock(owner.bit())?;
        let (hash, name) = (id_hash(&spec.id), fixed_str::<12>(&spec.id));

        let mut existing = None;
        let mut free = None;
        for slot in probe_sequence(&spec.id) {
            // Under the lock no writer is live: an entry left half-written by a writer that died
            // is free to take.
            let Ok(entry) = self.entry(slot) else {
                free = free.or(Some(slot));
                continue;
            };
            if entry.signature == 0 {
                free = free.or(Some(slot));
                break;
            }
            if entry.id_hash == hash && entry.module_id == name {
                if Self::is_active(&entry) {
                    existing = Some((slot, entry));
                    break;
                }
                free = free.or(Some(slot));
            } else if !Self::is_active(&entry) {
                free = free.or(Some(slot));
            }
        }
        let slot = match (existing, free) {
            (Some((slot, _)), _) | (None, Some(slot)) => slot,
            (None, None) => return Err(RegistryError::Full { id: spec.id.clone() }),
        };

        let caps: Vec<CapabilityEntry> = spec
            .capabilities
            .iter()
            .map(|c| CapabilityEntry {
                id: fixed_str(&c.id),
                min_memory_mb: c.min_memory_mb,
                flags: if c.requires_gpu {
                    g::CAPABILITY_FLAG_REQUIRES_GPU as u8
                } else {
                    0
                },
                reserved: 0,
            })
            .collect();
        let deps: Vec<DependencyEntry> = spec
            .dependencies
            .iter()
            .map(|d| DependencyEntry {
                module_id_hash: id_hash(&d.module_id),
                min_version: d.min,
                max_version: d.max,
                flags: if d.optional {
                    g::DEPENDENCY_FLAG_OPTIONAL as u8
                } else {
                    0
                },
                pad: 0,
                alternatives_offset: 0,
                reserved: [0; 2],
            })
            .collect();
        let cap_block = self.write_table(&caps, owner)?;
        let dep_block = match self.write_table(&deps, owner) {
            Ok(block) => block,
            Err(e) => {
                if let Some(b) = cap_block {
                    let _ = self.sab.arena().free(b.offset, owner);
                }
                return Err(e);
            }
        };
        if let Err(e) = lock.still_held() {
            for b in [cap_block, dep_block].into_iter().flatten() {
                let _ = self.sab.arena().free(b.offset, owner);
            }
            return Err(e);
        }

        let entry = RegistryEntry {
            signature: g::REGISTRY_SIGNATURE,
            id_hash: hash,
            version: spec.version,
            flags: g::REGISTRY_FLAG_ACTIVE as u8,
            timestamp_ms: super::now_ms(),
            resource_flags: spec.resource_flags,
            min_memory_mb: spec.min_memory_mb,
            base_cost: 100,
            per_mb_cost: 10,
            per_second_cost: 1000,
            dep_table_offset: dep_block.map_or(0, |b| b.offset as u32),
            dep_count: deps.len() as u16,
            max_version_major: 255,
            min_version_major: 1,
            cap_table_offset: cap_block.map_or(0, |b| b.offset as u32),
            cap_count: caps.len() as u16,
            module_id: name,
            quick_hash: quick_hash(&spec.id),
            ..RegistryEntry::default()
        };
        self.write_entry(slot, &entry);
        if let Some((_, old)) = existing {
            self.free_tables(&old, owner);
        }
        drop(lock);
        self.sab.epochs().signal(EpochIndex::REGISTRY);
        session.check_advanced()?;
        Ok(slot)
    }

    fn free_tables(&self, entry: &RegistryEntry, owner: Owner) {
        for (offset, count) in [
            (entry.cap_table_offset, entry.cap_count),
            (entry.dep_table_offset, entry.dep_count),
        ] {
            if count > 0 {
                let _ = self.sab.arena().free(offset as usize, owner);
            }
        }
    }

    /// Unregisters a module: its slot becomes a tombstone and its tables go back to the arena.
    pub fn unregister(&self, id: &str, owner: Owner) -> Result<(), RegistryError> {
        let mut session = self.sab.guards().begin(GuardRegion::Registry, owner)?;
        let lock = self.lock(owner.bit())?;
        let (slot, entry) = self
            .lookup(id)
            .ok_or_else(|| RegistryError::NotRegistered(id.to_owned()))?;
        let tombstone = RegistryEntry {
            flags: entry.flags & !(g::REGISTRY_FLAG_ACTIVE as u8),
            cap_table_offset: 0,
            cap_count: 0,
            dep_table_offset: 0,
            dep_count: 0,
            timestamp_ms: super::now_ms(),
            ..entry
        };
        self.write_entry(slot, &tombstone);
        self.free_tables(&entry, owner);
        drop(lock);
        self.sab.epochs().signal(EpochIndex::REGISTRY);
        session.check_advanced()?;
        Ok(())
    }

    /// The registered modules in dependency order (dependencies first; Kahn's algorithm). A
    /// missing required dependency, a version outside the accepted range, or a cycle is an error.
    pub fn dependency_order(&self) -> Result<Vec<String>, RegistryError> {
        let modules = self.modules();
        let by_hash: HashMap<u32, &ModuleRecord> = modules.iter().map(|m| (m.entry.id_hash, m)).collect();
        let mut indegree: BTreeMap<&str, usize> = modules.iter().map(|m| (m.id.as_str(), 0)).collect();
        let mut dependants: HashMap<&str, Vec<&str>> = HashMap::new();
        for m in &modules {
            for (hash, dep) in self.dependencies(&m.entry)? {
                match by_hash.get(&hash) {
                    None if dep.optional => {}
                    None => {
                        return Err(RegistryError::MissingDependency {
                            module: m.id.clone(),
                            dependency: format!("{hash:#010x}"),
                        });
                    }
                    Some(found) if !dep.accepts(found.version) => {
                        return Err(RegistryError::VersionMismatch {
                            module: m.id.clone(),
                            dependency: found.id.clone(),
                            min: dep.min,
                            max: dep.max,
                            found: found.version,
                        });
                    }
                    Some(found) => {
                        *indegree.get_mut(m.id.as_str()).expect("every module has a degree") += 1;
                        dependants.entry(found.id.as_str()).or_default().push(m.id.as_str());
                    }
                }
            }
        }
        let mut ready: VecDeque<&str> = indegree.iter().filter(|(_, d)| **d == 0).map(|(n, _)| *n).collect();
        let mut order = Vec::with_capacity(modules.len());
        while let Some(name) = ready.pop_front() {
            order.push(name.to_owned());
            for next in dependants.get(name).into_iter().flatten() {
                let d = indegree.get_mut(next).expect("every module has a degree");
                *d -= 1;
                if *d == 0 {
                    ready.push_back(next);
                }
            }
        }
        if order.len() < modules.len() {
            let cycle = indegree
                .into_iter()
                .filter(|(n, _)| !order.iter().any(|o| o == n))
                .map(|(n, _)| n.to_owned())
                .collect();
            return Err(RegistryError::Cycle(cycle));
        }
        Ok(order)
    }
}

/// The 12-byte stored form of `id`, if it is a valid id.
fn fixed_str_checked(id: &str) -> Option<[u8; 12]> {
    valid_id(id, 11).then(|| fixed_str(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_the_reference_algorithms() {
        // CRC32C check value and FNV-1a 32 test vectors.
        assert_eq!(id_hash("123456789"), 0xE306_9283);
        assert_eq!(quick_hash(""), 0x811C_9DC5);
        assert_eq!(quick_hash("a"), 0xE40C_292C);
        assert_eq!(quick_hash("foobar"), 0xBF9C_F968);
    }

    #[test]
    fn probe_sequences_visit_every_slot_with_an_odd_step() {
        for id in ["boids", "matrices", "physics", "crypto", "x"] {
            let first: Vec<usize> = probe_sequence(id).take(64).collect();
            let mut sorted = first.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 64, "{id} visits all 64 slots");
            assert_eq!(probe_sequence(id).count(), 128);
        }
    }

    #[test]
    fn version_ranges_are_inclusive() {
        let d = Dependency {
            module_id: "boids".into(),
            min: [1, 2, 0],
            max: [1, 9, 9],
            optional: false,
        };
        assert!(d.accepts([1, 2, 0]));
        assert!(d.accepts([1, 9, 9]));
        assert!(!d.accepts([1, 1, 9]));
        assert!(!d.accepts([2, 0, 0]));
    }
}
