//! The process table: which processes share this SAB, and the kernel lock.
//!
//! A SAB in a shared mapping (`--sab`, `sab::shared`) is used by several processes at once: one
//! kernel, outside clients (`inos submit`), live inspectors. Each takes a record here (pid, role,
//! start time, heartbeat) so that every process, and `inos inspect --live`, can see who is there.
//!
//! Only one kernel may own a SAB. The kernel lock is a pid word taken by compare-and-swap; a lock
//! whose pid is gone (the kernel was killed) is taken over and counted. A pid alone does not prove
//! that the process is the one that took the lock, since pids are reused: each record also keeps
//! the process's start time in clock ticks (`/proc/<pid>/stat`, field 22), and a pid whose start
//! time differs is a different process.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::Sab;
use super::generated as g;
use super::layout::regions;

pub const SLOTS: usize = g::PROCESS_SLOTS as usize;

/// What a process does with the SAB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Kernel,
    Client,
    Inspector,
}

impl Role {
    pub const fn code(self) -> u32 {
        match self {
            Role::Kernel => g::PROCESS_ROLE_KERNEL,
            Role::Client => g::PROCESS_ROLE_CLIENT,
            Role::Inspector => g::PROCESS_ROLE_INSPECTOR,
        }
    }

    pub fn from_code(code: u32) -> Option<Role> {
        [Role::Kernel, Role::Client, Role::Inspector]
            .into_iter()
            .find(|r| r.code() == code)
    }
}

/// The table's header: the kernel lock and the counters of what was recovered from dead processes.
/// Every field is a 64-bit word, read and written only as one (one access size per word).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessHeader {
    /// The kernel's pid (0: no kernel).
    pub kernel_pid: u32,
    /// The kernel's start time in clock ticks since boot.
    pub kernel_start_ticks: u64,
    /// Times a kernel took the lock.
    pub kernel_claims: u64,
    /// Times the lock was taken over from a dead kernel.
    pub locks_recovered: u64,
    /// Client lanes the kernel reclaimed from dead clients.
    pub lanes_reclaimed: u64,
    /// Frames those clients had reserved and not committed.
    pub frames_abandoned: u64,
}

/// One process's record: eight 64-bit words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessRecord {
    /// 0: a free record.
    pub pid: u32,
    pub role: u32,
    /// When it took the record, in ms since the Unix epoch.
    pub started_ms: u64,
    /// Its last sign of life, in ms since the Unix epoch.
    pub heartbeat_ms: u64,
    /// Its start time in clock ticks since boot (0: unknown).
    pub start_ticks: u64,
    /// The client lane it holds, plus one (0: none).
    pub lane: u32,
    /// Its name, UTF-8, zero-padded.
    pub name: [u8; NAME_BYTES],
}

const NAME_BYTES: usize = 16;

impl ProcessRecord {
    pub fn role(&self) -> Option<Role> {
        Role::from_code(self.role)
    }

    pub fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    /// Whether the process this record names is still running.
    pub fn alive(&self) -> bool {
        process_alive(self.pid, self.start_ticks)
    }
}

/// A process's record, with whether it is alive now.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessEntry {
    pub slot: usize,
    pub pid: u32,
    pub role: Option<Role>,
    pub name: String,
    pub started_ms: u64,
    pub heartbeat_ms: u64,
    pub alive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error("the SAB already has a kernel: pid {pid}, which is running (only one kernel may own a SAB)")]
    KernelRunning { pid: u32 },
    #[error("the SAB's process table is full ({SLOTS} processes)")]
    TableFull,
    #[error("no kernel runs on this SAB")]
    NoKernel,
    #[error("the SAB's kernel (pid {pid}) is gone; `inos shm --clean` removes the SABs of dead kernels")]
    KernelGone { pid: u32 },
}

/// How this process got the kernel lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelClaim {
    /// It was free (or already this process's).
    Taken,
    /// It was held by `dead_pid`, which is gone.
    Recovered { dead_pid: u32 },
}

/// Set in a pid word while its process fills in the rest (its start time): a reader judges such a
/// claim by the pid alone, so that nobody takes a record, or the lock, from a process that is
/// still writing its start time into it.
const CLAIMING: u64 = 1 << 32;

/// Whether the process a pid word (with its start-time word) names is running.
fn holder_alive(word: u64, start_ticks: u64) -> bool {
    let ticks = if word & CLAIMING != 0 { 0 } else { start_ticks };
    process_alive(word as u32, ticks)
}

// The header's words, and each record's (64-bit word indices).
const KERNEL_PID: usize = 0;
const KERNEL_TICKS: usize = 1;
const KERNEL_CLAIMS: usize = 2;
const LOCKS_RECOVERED: usize = 3;
const LANES_RECLAIMED: usize = 4;
const FRAMES_ABANDONED: usize = 5;
const HEADER_WORDS: usize = g::PROCESS_HEADER_SIZE as usize / 8;
const RECORD_WORDS: usize = g::PROCESS_RECORD_SIZE as usize / 8;
const PID: usize = 0;
const ROLE: usize = 1;
const STARTED: usize = 2;
const HEARTBEAT: usize = 3;
const START_TICKS: usize = 4;
const LANE: usize = 5;
const NAME: usize = 6;

/// The process table of one SAB.
#[derive(Clone, Copy)]
pub struct ProcessTable<'a> {
    words: &'a [AtomicU64],
}

impl<'a> ProcessTable<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        let region = regions::PROCESS_TABLE;
        Self {
            words: sab
                .memory()
                .u64_words(region.offset, region.size / 8)
                .expect("the process table lies inside every SAB"),
        }
    }

    fn load(&self, word: usize) -> u64 {
        self.words[word].load(Ordering::Acquire)
    }

    fn store(&self, word: usize, value: u64) {
        self.words[word].store(value, Ordering::Release);
    }

    /// Word `field` of record `slot`.
    fn field(slot: usize, field: usize) -> usize {
        HEADER_WORDS + slot * RECORD_WORDS + field
    }

    pub fn header(&self) -> ProcessHeader {
        ProcessHeader {
            kernel_pid: self.load(KERNEL_PID) as u32,
            // While a kernel claims the lock, its start time is not there yet: judged by pid.
            kernel_start_ticks: if self.load(KERNEL_PID) & CLAIMING != 0 {
                0
            } else {
                self.load(KERNEL_TICKS)
            },
            kernel_claims: self.load(KERNEL_CLAIMS),
            locks_recovered: self.load(LOCKS_RECOVERED),
            lanes_reclaimed: self.load(LANES_RECLAIMED),
            frames_abandoned: self.load(FRAMES_ABANDONED),
        }
    }

    /// Takes the kernel lock for this process: free, already this process's, or held by a process
    /// that is gone (taken over and counted). Refused while another kernel runs.
    pub fn claim_kernel(&self) -> Result<KernelClaim, ProcessError> {
        let me = u64::from(std::process::id());
        let lock = &self.words[KERNEL_PID];
        loop {
            let held = lock.load(Ordering::Acquire);
            if held == me {
                return Ok(KernelClaim::Taken);
            }
            let dead = held != 0 && !holder_alive(held, self.load(KERNEL_TICKS));
            if held != 0 && !dead {
                return Err(ProcessError::KernelRunning { pid: held as u32 });
            }
            if lock
                .compare_exchange(held, me | CLAIMING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.store(KERNEL_TICKS, start_ticks(me as u32));
                self.store(KERNEL_PID, me);
                self.words[KERNEL_CLAIMS].fetch_add(1, Ordering::Relaxed);
                if dead {
                    self.words[LOCKS_RECOVERED].fetch_add(1, Ordering::Relaxed);
                    return Ok(KernelClaim::Recovered { dead_pid: held as u32 });
                }
                return Ok(KernelClaim::Taken);
            }
        }
    }

    /// Whether a kernel runs on this SAB: its lock's pid is alive.
    pub fn check_kernel(&self) -> Result<(), ProcessError> {
        let header = self.header();
        match header.kernel_pid {
            0 => Err(ProcessError::NoKernel),
            _ if holder_alive(self.load(KERNEL_PID), header.kernel_start_ticks) => Ok(()),
            pid => Err(ProcessError::KernelGone { pid }),
        }
    }

    /// Gives the kernel lock up, if this process holds it.
    pub fn release_kernel(&self) {
        let me = u64::from(std::process::id());
        if self.words[KERNEL_PID]
            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.store(KERNEL_TICKS, 0);
        }
    }

    /// This process leaves the SAB: gives up the kernel lock if it holds it, and frees its records.
    pub fn leave(&self) {
        self.release_kernel();
        let me = u64::from(std::process::id());
        for slot in 0..SLOTS {
            if self.load(Self::field(slot, PID)) == me {
                self.unregister(slot);
            }
        }
    }

    /// Takes a record for this process: a free one, or one whose process is gone.
    pub fn register(&self, role: Role, name: &str, lane: Option<usize>) -> Result<usize, ProcessError> {
        let me = std::process::id();
        for slot in 0..SLOTS {
            let word = &self.words[Self::field(slot, PID)];
            let held = word.load(Ordering::Acquire);
            let free = held == 0 || !holder_alive(held, self.load(Self::field(slot, START_TICKS)));
            if free
                && word
                    .compare_exchange(held, u64::from(me) | CLAIMING, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                let now = super::now_ms();
                self.store(Self::field(slot, ROLE), u64::from(role.code()));
                self.store(Self::field(slot, STARTED), now);
                self.store(Self::field(slot, HEARTBEAT), now);
                self.store(Self::field(slot, START_TICKS), start_ticks(me));
                self.store(Self::field(slot, LANE), lane.map_or(0, |l| l as u64 + 1));
                let mut len = name.len().min(NAME_BYTES);
                while !name.is_char_boundary(len) {
                    len -= 1;
                }
                let mut bytes = [0u8; NAME_BYTES];
                bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
                for (k, chunk) in bytes.chunks_exact(8).enumerate() {
                    let value = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                    self.store(Self::field(slot, NAME + k), value);
                }
                self.store(Self::field(slot, PID), u64::from(me));
                return Ok(slot);
            }
        }
        Err(ProcessError::TableFull)
    }

    /// Marks this process alive now.
    pub fn beat(&self, slot: usize) {
        self.store(Self::field(slot, HEARTBEAT), super::now_ms());
    }

    /// Frees this process's record (only if it is still this process's).
    pub fn unregister(&self, slot: usize) {
        let me = u64::from(std::process::id());
        if self.load(Self::field(slot, PID)) == me {
            for field in 1..RECORD_WORDS {
                self.store(Self::field(slot, field), 0);
            }
            let _ = self.words[Self::field(slot, PID)].compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    pub fn record(&self, slot: usize) -> ProcessRecord {
        let word = |field| self.load(Self::field(slot, field));
        let mut name = [0u8; NAME_BYTES];
        for (k, chunk) in name.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&word(NAME + k).to_le_bytes());
        }
        ProcessRecord {
            // While a process claims the record, its start time is not there yet: judged by pid.
            start_ticks: if word(PID) & CLAIMING != 0 {
                0
            } else {
                word(START_TICKS)
            },
            pid: word(PID) as u32,
            role: word(ROLE) as u32,
            started_ms: word(STARTED),
            heartbeat_ms: word(HEARTBEAT),
            lane: word(LANE) as u32,
            name,
        }
    }

    /// Every record in use, with whether its process is alive.
    pub fn entries(&self) -> Vec<ProcessEntry> {
        (0..SLOTS)
            .map(|slot| (slot, self.record(slot)))
            .filter(|(_, r)| r.pid != 0)
            .map(|(slot, r)| ProcessEntry {
                slot,
                pid: r.pid,
                role: r.role(),
                name: r.name(),
                started_ms: r.started_ms,
                heartbeat_ms: r.heartbeat_ms,
                alive: r.alive(),
            })
            .collect()
    }

    /// Counts a client lane reclaimed from a dead client, and the frames it left half-written.
    pub(crate) fn count_reclaimed(&self, abandoned_frames: u32) {
        self.words[LANES_RECLAIMED].fetch_add(1, Ordering::Relaxed);
        self.words[FRAMES_ABANDONED].fetch_add(u64::from(abandoned_frames), Ordering::Relaxed);
    }

    /// Empties the table and frees the kernel lock (a resumed snapshot: its processes are gone).
    /// The counters stay.
    pub(crate) fn clear(&self) {
        self.store(KERNEL_PID, 0);
        self.store(KERNEL_TICKS, 0);
        for word in &self.words[HEADER_WORDS..] {
            word.store(0, Ordering::Relaxed);
        }
    }
}

/// The start time of process `pid` in clock ticks since boot, or 0 where it cannot be read.
pub fn start_ticks(pid: u32) -> u64 {
    proc_stat(pid).map_or(0, |(_, ticks)| ticks)
}

/// Whether process `pid` runs and, if `start_ticks` is known (not 0), is the process that started
/// then. A zombie (killed, not yet reaped) counts as gone.
pub fn process_alive(pid: u32, start_ticks: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match proc_stat(pid) {
        Some((state, ticks)) => !matches!(state, 'Z' | 'X') && (start_ticks == 0 || ticks == start_ticks),
        None => !cfg!(target_os = "linux") && pid == std::process::id(),
    }
}

/// The state letter and start time (clock ticks) of `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 of the line is the 20th after the state (field 3).
    let ticks = fields.nth(18)?.parse().ok()?;
    Some((state, ticks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sab::Tier;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not_it() {
        let me = std::process::id();
        let ticks = start_ticks(me);
        assert!(ticks > 0, "/proc/self/stat gives a start time");
        assert!(process_alive(me, ticks));
        assert!(process_alive(me, 0));
        assert!(!process_alive(me, ticks + 1), "a reused pid is another process");
        assert!(!process_alive(0, 0));
        // Above the kernel's pid_max (at most 2^22).
        assert!(!process_alive(1 << 23, 0));
    }

    #[test]
    fn the_kernel_lock_refuses_a_live_kernel_and_recovers_a_dead_ones() {
        let sab = Sab::for_tier(Tier::Light);
        let table = sab.processes();
        assert_eq!(table.claim_kernel(), Ok(KernelClaim::Taken));
        assert_eq!(
            table.claim_kernel(),
            Ok(KernelClaim::Taken),
            "idempotent for its holder"
        );
        // Another live process holds it: pid 1 (init) runs as long as the machine does.
        table.store(KERNEL_PID, 1);
        table.store(KERNEL_TICKS, start_ticks(1));
        assert_eq!(table.claim_kernel(), Err(ProcessError::KernelRunning { pid: 1 }));
        // A pid that is gone.
        table.store(KERNEL_PID, 1 << 23);
        assert_eq!(table.claim_kernel(), Ok(KernelClaim::Recovered { dead_pid: 1 << 23 }));
        let header = table.header();
        assert_eq!(
            (header.kernel_pid, header.kernel_claims, header.locks_recovered),
            (std::process::id(), 2, 1)
        );
        table.release_kernel();
        assert_eq!(table.header().kernel_pid, 0);
    }

    #[test]
    fn records_are_taken_listed_and_freed() {
        let sab = Sab::for_tier(Tier::Light);
        let table = sab.processes();
        let slot = table.register(Role::Client, "inos submit, hhé", Some(3)).unwrap();
        let entries = table.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (
                entries[0].pid,
                entries[0].role,
                entries[0].name.as_str(),
                entries[0].alive
            ),
            (std::process::id(), Some(Role::Client), "inos submit, hh", true),
            "cut at 16 bytes, on a character boundary"
        );
        assert_eq!(table.record(slot).lane, 4);
        // Every other record is a live process's (pid 1) but one, whose process is gone: it is
        // the one taken.
        for other in (0..SLOTS).filter(|&s| s != slot) {
            table.store(ProcessTable::field(other, PID), 1);
        }
        table.store(ProcessTable::field(SLOTS - 1, PID), 1 << 23);
        assert_eq!(table.register(Role::Inspector, "x", None), Ok(SLOTS - 1));
        assert_eq!(table.register(Role::Inspector, "y", None), Err(ProcessError::TableFull));
        table.unregister(slot);
        assert_eq!(table.record(slot), ProcessRecord::default());
        table.leave();
        assert_eq!(table.record(SLOTS - 1), ProcessRecord::default());
    }
}
