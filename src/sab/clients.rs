//! Client lanes: how processes outside the kernel (`inos submit`) send jobs and get their results.
//!
//! Each client holds one lane: a request ring that it alone writes and the kernel reads, and a
//! result ring that the kernel alone writes and the client reads, both the SAB's ordinary ring
//! algorithm (`ring::RingCore`) over the lane's words. A lane per client rather than one shared
//! ring means that a client killed between reserving a frame and committing it wedges nothing but
//! its own lane, which the kernel reclaims once the client's process is gone (counting the frame
//! it left half-written), and that a client's results are written to its lane only.
//!
//! Ownership: a client takes a free lane by compare-and-swap of its pid into the lane's owner word
//! and, when it is done, sets the lane's `closing` word. Only the kernel frees a lane (closed, or
//! owned by a dead process): it empties both rings, bumps the lane's generation and clears the
//! owner last, so results of the old client can never reach a new one (the kernel tags each
//! client job with its lane's generation and drops results whose generation is past).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::epochs::{EpochIndex, Signal, Wake};
use super::generated as g;
use super::processes::{process_alive, start_ticks};
use super::ring::{self, ConsumerCursor, RingCore, RingError};
use super::{Sab, now_ms};

pub const LANES: usize = g::CLIENT_LANES as usize;
const LANE_SIZE: usize = g::CLIENT_LANE_SIZE as usize;
const RING_SIZE: usize = g::CLIENT_RING_SIZE as usize;
const HEADER_SIZE: usize = g::CLIENT_LANE_HEADER_SIZE as usize;
const REQUEST_CONTROL: usize = 0x100;
const RESULT_CONTROL: usize = 0x180;
const CONTROL_WORDS: usize = g::RING_CONTROL_SIZE as usize / 8;

// The header's u64 words; word 3 is the results futex and its waiter count, two u32s (and only
// ever read and written as those).
const OWNER: usize = 0;
const GENERATION: usize = 1;
const OWNER_TICKS: usize = 2;
const SIGNAL_WORD: usize = 3;
const FRAMES_TAKEN: usize = 4;
const RESULTS_SENT: usize = 5;
const CLOSING: usize = 6;
const CLAIMED_MS: usize = 7;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("all {LANES} client lanes of the SAB are taken; wait for a client to finish")]
    NoFreeLane,
}

/// What `inos inspect` shows of a lane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LaneState {
    pub lane: usize,
    /// The client's pid (0: free).
    pub owner: u32,
    pub generation: u32,
    pub closing: bool,
    /// Request frames the kernel took.
    pub frames_taken: u64,
    /// Results the kernel sent.
    pub results_sent: u64,
    /// When the client took the lane (ms since the Unix epoch).
    pub claimed_ms: u64,
}

/// The client lanes of one SAB.
#[derive(Clone, Copy)]
pub struct ClientLanes<'a> {
    sab: &'a Sab,
    base: usize,
}

impl<'a> ClientLanes<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self {
            sab,
            base: sab.layout().client_lanes().offset,
        }
    }

    fn offset(&self, lane: usize) -> usize {
        assert!(lane < LANES, "client lane {lane} out of range");
        self.base + lane * LANE_SIZE
    }

    /// The header's u64 words (all but `SIGNAL_WORD`).
    fn words(&self, lane: usize) -> &'a [AtomicU64] {
        self.sab
            .memory()
            .u64_words(self.offset(lane), REQUEST_CONTROL / 8)
            .expect("client lanes lie inside every SAB")
    }

    fn ring(&self, lane: usize, control: usize, data: usize) -> RingCore<'a, [AtomicU64]> {
        let memory = self.sab.memory();
        let at = self.offset(lane);
        RingCore::new(
            memory
                .u64_words(at + control, CONTROL_WORDS)
                .expect("client lanes lie inside every SAB"),
            memory
                .u64_words(at + data, RING_SIZE / 8)
                .expect("client lanes lie inside every SAB"),
        )
    }

    /// The ring the client writes and the kernel reads.
    pub(crate) fn requests(&self, lane: usize) -> RingCore<'a, [AtomicU64]> {
        self.ring(lane, REQUEST_CONTROL, HEADER_SIZE)
    }

    /// The ring the kernel writes and the client reads.
    pub(crate) fn results(&self, lane: usize) -> RingCore<'a, [AtomicU64]> {
        self.ring(lane, RESULT_CONTROL, HEADER_SIZE + RING_SIZE)
    }

    /// The word the kernel bumps after sending results, which the client waits on.
    pub fn results_signal(&self, lane: usize) -> Signal<'a> {
        let pair = self
            .sab
            .memory()
            .u32_words(self.offset(lane) + SIGNAL_WORD * 8, 2)
            .expect("client lanes lie inside every SAB");
        Signal {
            word: &pair[0],
            waiters: &pair[1],
        }
    }

    pub fn state(&self, lane: usize) -> LaneState {
        let words = self.words(lane);
        let load = |word: usize| words[word].load(Ordering::Acquire);
        LaneState {
            lane,
            owner: load(OWNER) as u32,
            generation: load(GENERATION) as u32,
            closing: load(CLOSING) != 0,
            frames_taken: load(FRAMES_TAKEN),
            results_sent: load(RESULTS_SENT),
            claimed_ms: load(CLAIMED_MS),
        }
    }

    /// Whether the lane's client runs (reads `/proc`: not for every tick).
    pub fn owner_alive(&self, lane: usize) -> bool {
        let words = self.words(lane);
        process_alive(
            words[OWNER].load(Ordering::Acquire) as u32,
            words[OWNER_TICKS].load(Ordering::Acquire),
        )
    }

    /// Every lane's state.
    pub fn states(&self) -> Vec<LaneState> {
        (0..LANES).map(|lane| self.state(lane)).collect()
    }

    /// Takes a free lane for this process.
    pub fn claim(&self) -> Result<usize, ClientError> {
        let me = std::process::id();
        for lane in 0..LANES {
            let words = self.words(lane);
            if words[OWNER]
                .compare_exchange(0, u64::from(me), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                words[OWNER_TICKS].store(start_ticks(me), Ordering::Release);
                words[CLAIMED_MS].store(now_ms(), Ordering::Relaxed);
                return Ok(lane);
            }
        }
        Err(ClientError::NoFreeLane)
    }

    /// Counts what the request ring holds past its committed frames: a frame reserved and never
    /// committed (a client killed mid-write), or nothing.
    pub(crate) fn abandoned_frames(&self, lane: usize) -> u32 {
        u32::from(self.requests(lane).pending_frames().1)
    }

    /// Counts a request frame the kernel took and a result it sent.
    pub(crate) fn count(&self, lane: usize, frames_taken: u64, results_sent: u64) {
        let words = self.words(lane);
        words[FRAMES_TAKEN].fetch_add(frames_taken, Ordering::Relaxed);
        words[RESULTS_SENT].fetch_add(results_sent, Ordering::Relaxed);
    }

    /// Marks a lane done: the kernel reclaims it.
    fn close(&self, lane: usize) {
        self.words(lane)[CLOSING].store(1, Ordering::Release);
    }

    /// Frees a lane (the kernel's part): empties both rings, zeroes the counters and the waiter
    /// count (a client killed while it waited never took itself off), bumps the generation, and
    /// clears the owner last. The results word keeps counting (a waiter compares it with `!=`).
    pub fn reset(&self, lane: usize) {
        self.results_signal(lane).waiters.store(0, Ordering::Relaxed);
        let words = self.words(lane);
        for word in [OWNER_TICKS, FRAMES_TAKEN, RESULTS_SENT, CLOSING, CLAIMED_MS] {
            words[word].store(0, Ordering::Relaxed);
        }
        let at = self.offset(lane);
        let memory = self.sab.memory();
        for word in memory
            .u64_words(at + REQUEST_CONTROL, (LANE_SIZE - REQUEST_CONTROL) / 8)
            .expect("client lanes lie inside every SAB")
        {
            word.store(0, Ordering::Relaxed);
        }
        for control in [REQUEST_CONTROL, RESULT_CONTROL] {
            memory
                .u64_words(at + control, CONTROL_WORDS)
                .expect("client lanes lie inside every SAB")[ring::CAPACITY]
                .store(RING_SIZE as u64, Ordering::Relaxed);
        }
        words[GENERATION].fetch_add(1, Ordering::Release);
        words[OWNER].store(0, Ordering::Release);
    }
}

/// A client's end of its lane: it pushes job frames and pops result frames. Dropping it tells
/// the kernel that the lane may be reclaimed.
pub struct Client {
    sab: Sab,
    lane: usize,
    head_cache: Cell<u64>,
    cursor: ConsumerCursor,
}

impl Client {
    /// Takes a free lane of `sab`.
    pub fn connect(sab: &Sab) -> Result<Client, ClientError> {
        let lanes = sab.clients();
        let lane = lanes.claim()?;
        let cursor = lanes.results(lane).cursor();
        Ok(Client {
            sab: sab.clone(),
            lane,
            head_cache: Cell::new(0),
            cursor,
        })
    }

    pub fn lane(&self) -> usize {
        self.lane
    }

    /// The lane's generation when it was taken: the kernel tags this client's jobs with it.
    pub fn generation(&self) -> u32 {
        self.sab.clients().state(self.lane).generation
    }

    /// The largest frame a request can carry.
    pub fn max_frame(&self) -> usize {
        self.sab.clients().requests(self.lane).max_payload()
    }

    /// Pushes one request frame (never blocks; a full lane is `RingError::Full`). Call
    /// [`Client::notify`] after a batch.
    pub fn push(&self, frame: &[u8]) -> Result<(), RingError> {
        self.sab
            .clients()
            .requests(self.lane)
            .push(frame, &self.head_cache, true)
            .map(drop)
    }

    /// Tells the kernel that requests are waiting.
    pub fn notify(&self) {
        self.sab.epochs().signal(EpochIndex::USER_JOB);
    }

    /// Pops one result frame into `buf`, if one is there.
    pub fn pop(&self, buf: &mut [u8]) -> Result<Option<usize>, RingError> {
        self.sab.clients().results(self.lane).pop_into(buf, &self.cursor)
    }

    /// The results word's value, to wait on after finding no result.
    pub fn results_seen(&self) -> u32 {
        self.sab.clients().results_signal(self.lane).load()
    }

    /// Waits until the kernel sends results after `seen` (spinning `spins` times first), or
    /// `timeout`.
    pub fn wait(&self, seen: u32, timeout: Duration, spins: u32) -> Wake {
        self.sab
            .clients()
            .results_signal(self.lane)
            .wait_with(seen, timeout, spins)
    }

    /// Fault injection for tests: reserves a request frame of `len` bytes, writes part of it and
    /// never commits it, as a client killed mid-write leaves it.
    #[doc(hidden)]
    pub fn reserve_without_commit(&self, len: usize) -> Result<(), RingError> {
        self.sab
            .clients()
            .requests(self.lane)
            .reserve_without_commit(len, &self.head_cache)
    }

    /// Fault injection for tests: writes a result-ring head past the ring's tail, as a client
    /// with a bug in its reading end would.
    #[doc(hidden)]
    pub fn corrupt_result_head(&self) {
        self.sab.clients().results(self.lane).force_head(u64::MAX / 2);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.sab.clients().close(self.lane);
        self.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sab::Tier;

    #[test]
    fn a_lane_carries_frames_both_ways_and_is_freed_by_the_kernel_only() {
        let sab = Sab::for_tier(Tier::Light);
        let lanes = sab.clients();
        let client = Client::connect(&sab).unwrap();
        let lane = client.lane();
        assert_eq!(lanes.state(lane).owner, std::process::id());
        client.push(b"job one").unwrap();
        client.push(b"job two").unwrap();
        let mut buf = [0u8; 64];
        let cursor = lanes.requests(lane).cursor();
        assert_eq!(lanes.requests(lane).pop_into(&mut buf, &cursor).unwrap(), Some(7));
        assert_eq!(&buf[..7], b"job one");
        // The kernel publishes what it consumed before it looks for abandoned frames.
        lanes.requests(lane).publish(&cursor);
        let head = Cell::new(0);
        lanes.results(lane).push(b"result", &head, true).unwrap();
        lanes.results_signal(lane).signal();
        assert_eq!(client.pop(&mut buf).unwrap(), Some(6));
        assert!(lanes.owner_alive(lane) && !lanes.state(lane).closing);
        let generation = client.generation();
        drop(client);
        assert!(lanes.state(lane).closing, "a dropped client closes its lane");
        assert_eq!(lanes.abandoned_frames(lane), 0, "job two was committed");
        lanes.reset(lane);
        let state = lanes.state(lane);
        assert_eq!(
            (state.owner, state.generation, state.closing),
            (0, generation + 1, false)
        );
        assert_eq!(
            lanes
                .requests(lane)
                .pop_into(&mut buf, &lanes.requests(lane).cursor())
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_frame_reserved_and_never_committed_is_seen_as_abandoned() {
        let sab = Sab::for_tier(Tier::Light);
        let client = Client::connect(&sab).unwrap();
        client.push(b"committed").unwrap();
        client.reserve_without_commit(100).unwrap();
        let lanes = sab.clients();
        assert_eq!(lanes.abandoned_frames(client.lane()), 1);
        let mut buf = [0u8; 128];
        let cursor = lanes.requests(client.lane()).cursor();
        assert_eq!(
            lanes.requests(client.lane()).pop_into(&mut buf, &cursor).unwrap(),
            Some(9)
        );
        assert_eq!(lanes.requests(client.lane()).pop_into(&mut buf, &cursor).unwrap(), None);
    }

    #[test]
    fn lanes_run_out_with_a_clear_error() {
        let sab = Sab::for_tier(Tier::Light);
        let clients: Vec<Client> = (0..LANES).map(|_| Client::connect(&sab).unwrap()).collect();
        assert_eq!(Client::connect(&sab).err(), Some(ClientError::NoFreeLane));
        drop(clients);
    }
}
