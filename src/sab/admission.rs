//! The admission table: what the kernel checks every submitted job against, in the SAB. The
//! security engine's settings (the rate limit, per-unit input limits) and the kernel's token
//! buckets (one per source, the job's `source` metadata) live here, so the gate is not a call
//! into the engine, the inspector and `inos inspect` see every source's state, and a snapshot keeps
//! it.
//!
//! The rate limiter is written here rather than taken from `governor` because its state must live
//! in the SAB at fixed offsets (`governor` keeps its state in its own memory). It counts in
//! token-nanoseconds with integer arithmetic, so it is exact at the boundary: with rate r, a token
//! comes back exactly 1/r seconds after the bucket ran dry, not a nanosecond earlier. Its clock is
//! whatever monotonic nanoseconds the caller passes (the kernel passes its own clock); a clock that
//! goes backwards mints no tokens.
//!
//! Layout (`admission*` in the schema): a 256-byte header, 64 input limits of 16 bytes, 1 024
//! buckets of 32 bytes. Sources are found by CRC32C with linear probing over at most
//! `MAX_PROBES` buckets; a source that finds neither its bucket nor a free one shares the last
//! bucket (`OVERFLOW_BUCKET`), so what a flood of new names can take is bounded. The kernel is the
//! only writer of the buckets and the counters; settings are written by whoever configures the
//! node (the security engine's owner), between ticks.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::Sab;
use super::generated as g;

const NANOS: u64 = 1_000_000_000;

/// Sources with a bucket of their own (the last bucket is shared by the rest).
pub const BUCKETS: usize = g::ADMISSION_BUCKETS as usize;
/// The bucket shared by sources that found no free bucket.
pub const OVERFLOW_BUCKET: usize = BUCKETS - 1;
/// Per-unit input limits the table holds.
pub const LIMITS: usize = g::ADMISSION_LIMITS as usize;
/// Buckets a source's lookup tries before it takes the shared one.
pub const MAX_PROBES: usize = 32;

const LIMITS_OFFSET: usize = g::ADMISSION_HEADER_SIZE as usize;
const BUCKETS_OFFSET: usize = LIMITS_OFFSET + LIMITS * g::ADMISSION_LIMIT_SIZE as usize;
const _: () = assert!(BUCKETS_OFFSET + BUCKETS * g::ADMISSION_BUCKET_SIZE as usize <= g::ADMISSION_SIZE as usize);

// Header words (u64).
const RATE: usize = 0; // burst (low 32 bits) and refill per second (high 32 bits)
const ADMITTED: usize = 1;
const RATE_LIMITED: usize = 2;
const TOO_LARGE: usize = 3;
const MALFORMED: usize = 4;
const SOURCES: usize = 5;
const CONFIGURED: usize = 6;
/// Limit slots ever used (a high-water mark): lookups scan no further, so a table without input
/// limits costs a job nothing.
const LIMIT_SLOTS: usize = 7;
const HEADER_WORDS: usize = 8;

/// The table's settings and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AdmissionStats {
    /// Tokens per source: the burst, and the refill per second.
    pub burst: u32,
    pub per_second: u32,
    pub admitted: u64,
    pub rate_limited: u64,
    pub too_large: u64,
    pub malformed: u64,
    /// Buckets in use, the shared one included.
    pub sources: u64,
}

/// One source's bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceBucket {
    pub source_hash: u32,
    /// Tokens × 10⁹.
    pub level: u64,
    pub last_ns: u64,
    pub refused: u32,
}

/// Why the table refused a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The source's bucket (or the shared one) is empty.
    RateLimited { shared: bool },
    /// The job's input is over its unit's limit.
    TooLarge { max: u64 },
}

/// Why a setting was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("the admission table holds {LIMITS} input limits; remove one first")]
    LimitsFull,
}

/// A token bucket's arithmetic: `capacity` tokens, refilled at `per_second`, its level in
/// token-nanoseconds. Returns the new (level, last) and whether a token was taken at `now_ns`.
pub fn take_token(capacity: u64, per_second: u64, level: u64, last_ns: u64, now_ns: u64) -> (u64, u64, bool) {
    let elapsed = now_ns.saturating_sub(last_ns);
    let last = last_ns.max(now_ns);
    let level = level
        .saturating_add(elapsed.saturating_mul(per_second))
        .min(capacity.saturating_mul(NANOS));
    if level >= NANOS {
        (level - NANOS, last, true)
    } else {
        (level, last, false)
    }
}

/// The admission table of one SAB.
pub struct AdmissionTable<'a> {
    sab: &'a Sab,
}

impl<'a> AdmissionTable<'a> {
    pub(crate) fn new(sab: &'a Sab) -> Self {
        Self { sab }
    }

    fn words(&self, offset: usize, count: usize) -> &'a [AtomicU64] {
        self.sab
            .memory()
            .u64_words(g::ADMISSION_OFFSET as usize + offset, count)
            .expect("the admission table lies inside every SAB")
    }

    fn header(&self) -> &'a [AtomicU64] {
        self.words(0, HEADER_WORDS)
    }

    /// Limit `i`: [unit hash | used flag << 32], max bytes.
    fn limit(&self, i: usize) -> &'a [AtomicU64] {
        self.words(LIMITS_OFFSET + i * g::ADMISSION_LIMIT_SIZE as usize, 2)
    }

    /// Bucket `i`: [source hash | used flag << 32], level, last_ns, refused.
    fn bucket(&self, i: usize) -> &'a [AtomicU64] {
        self.words(BUCKETS_OFFSET + i * g::ADMISSION_BUCKET_SIZE as usize, 4)
    }

    /// Sets the rate limit (every bucket keeps its level, capped at the new burst on its next use).
    pub fn configure(&self, burst: u32, per_second: u32) {
        let h = self.header();
        h[RATE].store(u64::from(burst) | (u64::from(per_second) << 32), Ordering::Relaxed);
        h[CONFIGURED].store(1, Ordering::Release);
    }

    /// Whether the rate limit was ever set (a new SAB's table is set by the kernel at start).
    pub fn is_configured(&self) -> bool {
        self.header()[CONFIGURED].load(Ordering::Acquire) != 0
    }

    /// The limit slot of the unit whose id hashes to `unit_hash`, if it has one.
    fn limit_slot(&self, unit_hash: u32) -> Option<usize> {
        let key = u64::from(unit_hash) | (1 << 32);
        let used = (self.header()[LIMIT_SLOTS].load(Ordering::Acquire) as usize).min(LIMITS);
        (0..used).find(|&i| self.limit(i)[0].load(Ordering::Acquire) == key)
    }

    /// Sets (`Some`) or removes (`None`) the input limit of the unit whose id hashes to `unit_hash`.
    pub fn set_input_limit(&self, unit_hash: u32, max: Option<u64>) -> Result<(), AdmissionError> {
        match (self.limit_slot(unit_hash), max) {
            (Some(i), Some(max)) => self.limit(i)[1].store(max, Ordering::Relaxed),
            (Some(i), None) => self.limit(i)[0].store(0, Ordering::Relaxed),
            (None, Some(max)) => {
                let free = (0..LIMITS)
                    .find(|&i| self.limit(i)[0].load(Ordering::Relaxed) >> 32 == 0)
                    .ok_or(AdmissionError::LimitsFull)?;
                let words = self.limit(free);
                words[1].store(max, Ordering::Relaxed);
                words[0].store(u64::from(unit_hash) | (1 << 32), Ordering::Release);
                self.header()[LIMIT_SLOTS].fetch_max(free as u64 + 1, Ordering::Release);
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// The input limit of the unit whose id hashes to `unit_hash`, if it has one.
    pub fn input_limit(&self, unit_hash: u32) -> Option<u64> {
        self.limit_slot(unit_hash)
            .map(|i| self.limit(i)[1].load(Ordering::Relaxed))
    }

    /// Checks a job of `source_hash` on the unit `unit_hash` with `input_len` bytes at `now_ns`,
    /// takes a token if it passes, and counts the outcome. The kernel must be the only caller.
    pub fn admit(&self, source_hash: u32, unit_hash: u32, input_len: u64, now_ns: u64) -> Result<(), Refusal> {
        let h = self.header();
        if let Some(max) = self.input_limit(unit_hash)
            && input_len > max
        {
            h[TOO_LARGE].fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::TooLarge { max });
        }
        let rate = h[RATE].load(Ordering::Relaxed);
        let (burst, per_second) = (rate & 0xFFFF_FFFF, rate >> 32);
        let (index, new) = self.find_bucket(source_hash);
        let b = self.bucket(index);
        if new {
            // A new source starts with a full bucket, now.
            b[1].store(burst.saturating_mul(NANOS), Ordering::Relaxed);
            b[2].store(now_ns, Ordering::Relaxed);
            b[0].store(u64::from(source_hash) | (1 << 32), Ordering::Release);
            h[SOURCES].fetch_add(1, Ordering::Relaxed);
        }
        let (level, last, taken) = take_token(
            burst,
            per_second,
            b[1].load(Ordering::Relaxed),
            b[2].load(Ordering::Relaxed),
            now_ns,
        );
        b[1].store(level, Ordering::Relaxed);
        b[2].store(last, Ordering::Relaxed);
        if taken {
            h[ADMITTED].fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            b[3].fetch_add(1, Ordering::Relaxed);
            h[RATE_LIMITED].fetch_add(1, Ordering::Relaxed);
            Err(Refusal::RateLimited {
                shared: index == OVERFLOW_BUCKET,
            })
        }
    }

    /// Counts a job whose frame did not validate.
    pub fn count_malformed(&self) {
        self.header()[MALFORMED].fetch_add(1, Ordering::Relaxed);
    }

    /// The bucket of `source_hash` and whether it is new: its own, a free one within
    /// `MAX_PROBES`, or the shared one.
    fn find_bucket(&self, source_hash: u32) -> (usize, bool) {
        let key = u64::from(source_hash) | (1 << 32);
        let start = source_hash as usize % OVERFLOW_BUCKET;
        for probe in 0..MAX_PROBES {
            let i = (start + probe) % OVERFLOW_BUCKET;
            match self.bucket(i)[0].load(Ordering::Acquire) {
                word if word == key => return (i, false),
                word if word >> 32 == 0 => return (i, true),
                _ => {}
            }
        }
        let shared = self.bucket(OVERFLOW_BUCKET)[0].load(Ordering::Acquire) >> 32 == 0;
        (OVERFLOW_BUCKET, shared)
    }

    /// The settings and counters.
    pub fn stats(&self) -> AdmissionStats {
        let h = self.header();
        let load = |i: usize| h[i].load(Ordering::Relaxed);
        AdmissionStats {
            burst: (load(RATE) & 0xFFFF_FFFF) as u32,
            per_second: (load(RATE) >> 32) as u32,
            admitted: load(ADMITTED),
            rate_limited: load(RATE_LIMITED),
            too_large: load(TOO_LARGE),
            malformed: load(MALFORMED),
            sources: load(SOURCES),
        }
    }

    /// The buckets in use (each read word by word: a display, not a consistent copy).
    pub fn buckets(&self) -> Vec<SourceBucket> {
        (0..BUCKETS)
            .filter_map(|i| {
                let b = self.bucket(i);
                let key = b[0].load(Ordering::Acquire);
                (key >> 32 != 0).then(|| SourceBucket {
                    source_hash: key as u32,
                    level: b[1].load(Ordering::Relaxed),
                    last_ns: b[2].load(Ordering::Relaxed),
                    refused: b[3].load(Ordering::Relaxed) as u32,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sab::Tier;

    #[test]
    fn the_token_bucket_is_exact_at_the_boundary() {
        // 3 tokens, 2 per second: a token every 500 ms, on a fake clock.
        let sab = Sab::for_tier(Tier::Light);
        let table = sab.admission();
        table.configure(3, 2);
        let take = |now_ns: u64| table.admit(7, 1, 0, now_ns).is_ok();
        assert!((0..3).all(|_| take(0)));
        assert!(!take(0));
        assert!(!take(500_000_000 - 1), "no early admit");
        assert!(take(500_000_000), "no late denial");
        assert!(!take(500_000_000));
        // A long idle time refills to the burst and no further.
        assert!((0..3).all(|_| take(60 * NANOS)));
        assert!(!take(60 * NANOS));
        // A clock that goes backwards does not mint tokens.
        assert!(!take(NANOS));
        assert!(!take(60 * NANOS + 499_999_999));
        assert!(take(60 * NANOS + 500_000_000));
        // One token a second: a new source's bucket is empty until exactly 10⁹ ns later.
        table.configure(1, 1);
        assert!(table.admit(8, 1, 0, 100 * NANOS).is_ok());
        assert!(table.admit(8, 1, 0, 101 * NANOS - 1).is_err(), "no early admit");
        assert!(table.admit(8, 1, 0, 101 * NANOS).is_ok(), "no late denial");
        let stats = table.stats();
        assert_eq!((stats.admitted, stats.rate_limited, stats.sources), (10, 7, 2));
    }

    #[test]
    fn input_limits_are_per_unit_and_bounded() {
        let sab = Sab::for_tier(Tier::Light);
        let table = sab.admission();
        table.configure(u32::MAX, u32::MAX);
        table.set_input_limit(5, Some(64)).unwrap();
        assert_eq!(table.admit(1, 5, 64, 0), Ok(()));
        assert_eq!(table.admit(1, 5, 65, 0), Err(Refusal::TooLarge { max: 64 }));
        assert_eq!(table.admit(1, 6, 65, 0), Ok(()), "another unit");
        table.set_input_limit(5, None).unwrap();
        assert_eq!(table.admit(1, 5, 65, 0), Ok(()), "removed");
        for unit in 0..LIMITS as u32 {
            table.set_input_limit(100 + unit, Some(1)).unwrap();
        }
        assert_eq!(table.set_input_limit(1, Some(1)), Err(AdmissionError::LimitsFull));
        table.set_input_limit(100, Some(9)).unwrap();
        assert_eq!(table.input_limit(100), Some(9), "an existing limit is updated in place");
    }

    /// Sources name themselves: past the table's buckets, newcomers share one, and the sources
    /// that had a bucket keep theirs.
    #[test]
    fn a_flood_of_new_sources_shares_the_last_bucket() {
        let sab = Sab::for_tier(Tier::Light);
        let table = sab.admission();
        table.configure(1, 1);
        assert_eq!(table.admit(42, 1, 0, 0), Ok(()));
        let mut shared = 0;
        for source in 0..4 * BUCKETS as u32 {
            match table.admit(1000 + source, 1, 0, 0) {
                Ok(()) => {}
                Err(Refusal::RateLimited { shared: true }) => shared += 1,
                Err(e) => panic!("source {source}: {e:?}"),
            }
        }
        assert!(shared > 0, "the shared bucket filled");
        assert_eq!(table.stats().sources, BUCKETS as u64);
        assert_eq!(table.buckets().len(), BUCKETS);
        // Source 42 kept its own (now empty) bucket.
        assert_eq!(table.admit(42, 1, 0, 0), Err(Refusal::RateLimited { shared: false }));
    }
}
