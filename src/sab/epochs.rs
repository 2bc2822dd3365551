//! Epoch counters: the SAB's only signalling mechanism.
//!
//! A writer changes a region, then bumps the region's epoch (`fetch_add(1, Release)`) and wakes
//! every thread parked on it. A reader remembers the last value it saw and reacts when the counter
//! differs (`!=`, never `>`, so wrap-around at 2^32 is harmless).
//!
//! Waiting spins briefly, then parks the thread on the epoch word itself: a futex without the
//! "private" flag, so a signal in one process wakes a waiter in another that maps the same SAB
//! (`--sab`). A waiter count per index, in the SAB (`epoch_waiters`), lets `signal` skip the
//! wake-up system call when nobody in any process waits, which keeps the signal itself at one
//! atomic add plus a fence. (Native builds other than Linux park in `parking_lot_core`'s parking
//! lot, which wakes threads of this process only.)

use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::Duration;

use bevy::platform::time::Instant;
use bevy::prelude::{Local, Res};
use serde::Serialize;

use super::Sab;
use super::generated as g;

/// An index into the epoch region (always below `EPOCH_COUNT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EpochIndex(u32);

/// Whether an epoch word counts events or holds a plain value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EpochKind {
    Counter,
    Value,
    Retired,
}

macro_rules! named_epochs {
    ($($name:ident = $value:expr, $kind:ident;)*) => {
        impl EpochIndex {
            $(pub const $name: EpochIndex = EpochIndex::checked($value);)*

            /// Every named index of the schema, with its name and kind.
            pub const NAMED: &'static [(EpochIndex, &'static str, EpochKind)] = &[
                $((EpochIndex::$name, stringify!($name), EpochKind::$kind),)*
            ];
        }
    };
}

named_epochs! {
    KERNEL_READY = g::EPOCH_KERNEL_READY, Value;
    INBOX_DIRTY = g::EPOCH_INBOX_DIRTY, Counter;
    OUTBOX_HOST_DIRTY = g::EPOCH_OUTBOX_HOST_DIRTY, Counter;
    PANIC_STATE = g::EPOCH_PANIC_STATE, Value;
    SENSOR = g::EPOCH_SENSOR, Counter;
    ACTOR = g::EPOCH_ACTOR, Counter;
    STORAGE = g::EPOCH_STORAGE, Counter;
    SYSTEM = g::EPOCH_SYSTEM, Counter;
    SYSTEM_PULSE = g::EPOCH_SYSTEM_PULSE, Counter;
    SYSTEM_VISIBILITY = g::EPOCH_SYSTEM_VISIBILITY, Value;
    SYSTEM_POWER_STATE = g::EPOCH_SYSTEM_POWER_STATE, Value;
    ARENA_ALLOCATOR = g::EPOCH_ARENA_ALLOCATOR, Counter;
    OUTBOX_MUTEX = g::EPOCH_OUTBOX_MUTEX, Retired;
    INBOX_MUTEX = g::EPOCH_INBOX_MUTEX, Retired;
    METRICS = g::EPOCH_METRICS, Counter;
    BIRD = g::EPOCH_BIRD, Counter;
    MATRIX = g::EPOCH_MATRIX, Counter;
    PINGPONG_ACTIVE = g::EPOCH_PINGPONG_ACTIVE, Retired;
    REGISTRY = g::EPOCH_REGISTRY, Counter;
    EVOLUTION = g::EPOCH_EVOLUTION, Counter;
    HEALTH = g::EPOCH_HEALTH, Counter;
    LEARNING = g::EPOCH_LEARNING, Counter;
    ECONOMY = g::EPOCH_ECONOMY, Counter;
    BIRD_COUNT = g::EPOCH_BIRD_COUNT, Value;
    GLOBAL_METRICS = g::EPOCH_GLOBAL_METRICS, Counter;
    OUTBOX_KERNEL_DIRTY = g::EPOCH_OUTBOX_KERNEL_DIRTY, Counter;
    CONTEXT_ID_HASH = g::EPOCH_CONTEXT_ID_HASH, Value;
    DELEGATED_JOB = g::EPOCH_DELEGATED_JOB, Counter;
    USER_JOB = g::EPOCH_USER_JOB, Counter;
    DELEGATED_CHUNK = g::EPOCH_DELEGATED_CHUNK, Counter;
    MESH_EVENT = g::EPOCH_MESH_EVENT, Counter;
    MESH_EVENT_HEAD = g::EPOCH_MESH_EVENT_HEAD, Value;
    MESH_EVENT_TAIL = g::EPOCH_MESH_EVENT_TAIL, Value;
    MESH_EVENT_DROPPED = g::EPOCH_MESH_EVENT_DROPPED, Counter;
    SCHEDULING = g::EPOCH_SCHEDULING, Counter;
    SECURITY = g::EPOCH_SECURITY, Counter;
    OPTIMIZATION = g::EPOCH_OPTIMIZATION, Counter;
    SUPERVISOR_TABLE = g::EPOCH_SUPERVISOR_TABLE, Counter;
    PATTERN_EXCHANGE = g::EPOCH_PATTERN_EXCHANGE, Counter;
    JOB_HISTORY = g::EPOCH_JOB_HISTORY, Counter;
    PHYSICS = g::EPOCH_PHYSICS, Counter;
    GUARD_VIOLATION = g::EPOCH_GUARD_VIOLATION, Counter;
    SNAPSHOT = g::EPOCH_SNAPSHOT, Counter;
    DRONE_SENSOR = g::EPOCH_DRONE_SENSOR, Retired;
    DRONE_CONTROL = g::EPOCH_DRONE_CONTROL, Retired;
    DRONE_PHYSICS = g::EPOCH_DRONE_PHYSICS, Retired;
    DRONE_RACE_STATE = g::EPOCH_DRONE_RACE_STATE, Retired;
    LIFECYCLE_DIRTY = g::EPOCH_LIFECYCLE_DIRTY, Counter;
}

impl EpochIndex {
    /// Number of epoch words.
    pub const COUNT: usize = g::EPOCH_COUNT as usize;

    const fn checked(index: u32) -> Self {
        assert!(index < g::EPOCH_COUNT, "epoch index out of range");
        Self(index)
    }

    /// The index `index`, if it is inside the epoch region.
    pub const fn new(index: u32) -> Option<Self> {
        if index < g::EPOCH_COUNT {
            Some(Self(index))
        } else {
            None
        }
    }

    /// The epoch of supervisor pool slot `slot`, if the pool has that slot.
    pub const fn supervisor(slot: u32) -> Option<Self> {
        if slot < g::SUPERVISOR_POOL_SIZE {
            Some(Self(g::EPOCH_SUPERVISOR_POOL_FIRST + slot))
        } else {
            None
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    /// The schema name of a named index.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMED.iter().find(|(i, _, _)| *i == self).map(|(_, n, _)| *n)
    }
}

/// How a `wait` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The epoch differs from the value the caller last saw; this is the value observed.
    Changed(u32),
    /// The timeout elapsed with the epoch unchanged.
    TimedOut,
}

/// How many spin iterations `wait` makes before parking (a few microseconds).
pub const DEFAULT_SPINS: u32 = 4096;

/// The epoch words of one SAB, with their waiter counts.
#[derive(Clone, Copy)]
pub struct Epochs<'a> {
    pub(crate) words: &'a [AtomicU32],
    pub(crate) waiters: &'a [AtomicU32],
}

impl<'a> Epochs<'a> {
    fn word(&self, index: EpochIndex) -> &'a AtomicU32 {
        &self.words[index.0 as usize]
    }

    /// The epoch word with its waiter count.
    pub fn signal_word(&self, index: EpochIndex) -> Signal<'a> {
        Signal {
            word: self.word(index),
            waiters: &self.waiters[index.0 as usize],
        }
    }

    /// The current value (acquire: whatever the signaller wrote before signalling is visible).
    pub fn load(&self, index: EpochIndex) -> u32 {
        self.word(index).load(Ordering::Acquire)
    }

    /// Bumps the counter and wakes every waiter. Returns the new value.
    pub fn signal(&self, index: EpochIndex) -> u32 {
        self.signal_word(index).signal()
    }

    /// Stores a plain value (for value words such as `BIRD_COUNT`) and wakes every waiter.
    pub fn store(&self, index: EpochIndex, value: u32) {
        self.signal_word(index).store(value);
    }

    /// Waits until the epoch differs from `last_seen` or `timeout` elapses: spins briefly, then
    /// parks the thread until a `signal` wakes it.
    pub fn wait(&self, index: EpochIndex, last_seen: u32, timeout: Duration) -> Wake {
        self.wait_with(index, last_seen, timeout, DEFAULT_SPINS)
    }

    /// `wait` with an explicit spin budget (`0` parks at once; `u32::MAX` only spins).
    pub fn wait_with(&self, index: EpochIndex, last_seen: u32, timeout: Duration, spins: u32) -> Wake {
        self.signal_word(index).wait_with(last_seen, timeout, spins)
    }
}

/// A counter word that writers bump and readers wait on, with the count of its parked waiters
/// (both in the SAB, so they work across processes): an epoch, or a client lane's results word.
#[derive(Clone, Copy)]
pub struct Signal<'a> {
    pub(crate) word: &'a AtomicU32,
    pub(crate) waiters: &'a AtomicU32,
}

impl Signal<'_> {
    pub fn load(&self) -> u32 {
        self.word.load(Ordering::Acquire)
    }

    /// Threads parked on the word now, in every process.
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Bumps the counter and wakes every waiter. Returns the new value.
    pub fn signal(&self) -> u32 {
        let new = self.word.fetch_add(1, Ordering::Release).wrapping_add(1);
        self.wake_all();
        new
    }

    /// Stores a plain value and wakes every waiter.
    pub fn store(&self, value: u32) {
        self.word.store(value, Ordering::Release);
        self.wake_all();
    }

    fn wake_all(&self) {
        // Pairs with the fence in `park`: either this load sees the waiter's registration, or the
        // waiter's re-check of the word sees the new value. (Dekker's pattern with SC fences.)
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            wake_word(self.word);
        }
    }

    /// Waits until the word differs from `last_seen` or `timeout` elapses: `spins` spins, then
    /// parks until a signal wakes it.
    pub fn wait_with(&self, last_seen: u32, timeout: Duration, spins: u32) -> Wake {
        let word = self.word;
        let start = Instant::now();
        for i in 0..spins {
            let now = word.load(Ordering::Acquire);
            if now != last_seen {
                return Wake::Changed(now);
            }
            // Checking the clock costs more than a spin; do it every 64 iterations.
            if i % 64 == 63 && start.elapsed() >= timeout {
                return Wake::TimedOut;
            }
            std::hint::spin_loop();
        }
        let deadline = start + timeout;
        loop {
            let now = word.load(Ordering::Acquire);
            if now != last_seen {
                return Wake::Changed(now);
            }
            if Instant::now() >= deadline {
                return Wake::TimedOut;
            }
            self.waiters.fetch_add(1, Ordering::Relaxed);
            // Pairs with the fence in `wake_all` (see there).
            fence(Ordering::SeqCst);
            park_word(word, last_seen, deadline);
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Parks this thread until `word` may have changed from `expected`: a wake-up call on it (from any
/// process), a spurious wake-up or `deadline`. The caller looks at the word again either way.
#[cfg(target_os = "linux")]
pub(crate) fn park_word(word: &AtomicU32, expected: u32, deadline: Instant) {
    use rustix::thread::futex;
    let left = deadline.saturating_duration_since(Instant::now());
    let timeout = futex::Timespec {
        tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(left.subsec_nanos()),
    };
    // The kernel compares the word with `expected` under its own lock: a signal between the
    // caller's last look and this call is not missed. EAGAIN (it differed), EINTR and ETIMEDOUT
    // all mean "look again", which the caller does.
    let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&timeout));
}

/// Wakes every thread parked on `word`, in every process.
#[cfg(target_os = "linux")]
pub(crate) fn wake_word(word: &AtomicU32) {
    use rustix::thread::futex;
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

#[cfg(all(not(target_os = "linux"), not(target_arch = "wasm32")))]
pub(crate) fn park_word(word: &AtomicU32, expected: u32, deadline: Instant) {
    let key = std::ptr::from_ref(word) as usize;
    // SAFETY: the key is the address of a SAB word, which no other parking-lot user can own. The
    // validate closure only loads an atomic: it cannot panic or call into the parking lot. The
    // before-sleep and timed-out callbacks do nothing.
    unsafe {
        parking_lot_core::park(
            key,
            || word.load(Ordering::Acquire) == expected,
            || {},
            |_, _| {},
            parking_lot_core::DEFAULT_PARK_TOKEN,
            Some(deadline),
        );
    }
}

#[cfg(all(not(target_os = "linux"), not(target_arch = "wasm32")))]
pub(crate) fn wake_word(word: &AtomicU32) {
    let key = std::ptr::from_ref(word) as usize;
    // SAFETY: the key is the address of a SAB word (see `park_word`); `unpark_all` only wakes
    // threads parked on that key.
    unsafe { parking_lot_core::unpark_all(key, parking_lot_core::DEFAULT_UNPARK_TOKEN) };
}

/// The browser build is single-threaded: nothing could signal while this thread sleeps, so it
/// only yields until the deadline.
#[cfg(target_arch = "wasm32")]
pub(crate) fn park_word(_word: &AtomicU32, _expected: u32, _deadline: Instant) {
    std::hint::spin_loop();
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn wake_word(_word: &AtomicU32) {}

/// A Bevy run condition: true when the epoch differs from the value this condition saw the last
/// time it ran (the `Local` starts at 0, the value of a fresh SAB). Bevy's change detection cannot
/// see atomics, so this is how systems are gated on the SAB.
pub fn epoch_changed(index: EpochIndex) -> impl FnMut(Res<Sab>, Local<u32>) -> bool + Clone {
    move |sab: Res<Sab>, mut last_seen: Local<u32>| {
        let now = sab.epochs().load(index);
        let changed = now != *last_seen;
        *last_seen = now;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Words {
        words: Vec<AtomicU32>,
        waiters: Vec<AtomicU32>,
    }

    impl Words {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                words: (0..EpochIndex::COUNT).map(|_| AtomicU32::new(0)).collect(),
                waiters: (0..EpochIndex::COUNT).map(|_| AtomicU32::new(0)).collect(),
            })
        }
        fn epochs(&self) -> Epochs<'_> {
            Epochs {
                words: &self.words,
                waiters: &self.waiters,
            }
        }
    }

    #[test]
    fn named_indices_are_unique_and_in_range() {
        let mut seen = std::collections::HashSet::new();
        for (index, name, _) in EpochIndex::NAMED {
            assert!((index.get() as usize) < EpochIndex::COUNT, "{name}");
            assert!(seen.insert(index.get()), "{name} reuses index {}", index.get());
            assert_eq!(index.name(), Some(*name));
        }
        assert_eq!(EpochIndex::SYSTEM_PULSE.get(), 8);
        assert_eq!(EpochIndex::BIRD.get(), 20);
        assert_eq!(EpochIndex::MATRIX.get(), 21);
        assert_eq!(EpochIndex::supervisor(0), EpochIndex::new(64));
        assert_eq!(EpochIndex::supervisor(64), None);
        assert_eq!(EpochIndex::new(256), None);
    }

    #[test]
    fn signal_counts_and_wraps() {
        let w = Words::new();
        let e = w.epochs();
        assert_eq!(e.signal(EpochIndex::BIRD), 1);
        assert_eq!(e.load(EpochIndex::BIRD), 1);
        e.store(EpochIndex::BIRD, u32::MAX);
        assert_eq!(e.signal(EpochIndex::BIRD), 0);
        // Wrap-safe: a waiter that last saw u32::MAX notices the wrapped value 0.
        assert_eq!(
            e.wait_with(EpochIndex::BIRD, u32::MAX, Duration::ZERO, 1),
            Wake::Changed(0)
        );
    }

    #[test]
    fn wait_times_out_when_nothing_changes() {
        let w = Words::new();
        let start = Instant::now();
        assert_eq!(
            w.epochs()
                .wait_with(EpochIndex::HEALTH, 0, Duration::from_millis(20), 0),
            Wake::TimedOut
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(w.waiters[EpochIndex::HEALTH.get() as usize].load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_parked_waiter_is_woken_by_a_signal_from_another_thread() {
        let w = Words::new();
        let waiter = {
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                w.epochs()
                    .wait_with(EpochIndex::INBOX_DIRTY, 0, Duration::from_secs(30), 0)
            })
        };
        // Wait until the waiter is registered (it parks right after), then signal.
        while w.waiters[EpochIndex::INBOX_DIRTY.get() as usize].load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        w.epochs().signal(EpochIndex::INBOX_DIRTY);
        assert_eq!(waiter.join().unwrap(), Wake::Changed(1));
    }
}
