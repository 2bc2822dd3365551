//! Keyed tables in the SAB: the bounded maps the kernel keeps its models and indexes in (the
//! learning engine's latency models and transitions, the detectors' baselines, the chunk index,
//! the workflows), so that they survive in a snapshot and any process that maps the SAB can read
//! them.
//!
//! A table is a 64-byte header (entries, the use clock, entries evicted) and `capacity` slots of
//! `[last use u64][key][value]`, key and value each padded to 8 bytes; a slot whose last use is 0 is
//! empty. A key is found by its hash with linear probing over at most `MAX_PROBES` slots. When all
//! of them are taken, an insert evicts the slot used longest ago among them (an LRU bounded to the
//! probe window, so an insert never scans the table), or refuses if the table was made without
//! eviction. Removal shifts later entries of the same probe run back, so lookups need no
//! tombstones and no entry ever moves further from its home than `MAX_PROBES`.
//!
//! One writer per table (its owner); every access is a relaxed word copy, so readers in other
//! threads see whole words but may see a slot mid-update.

use std::marker::PhantomData;

use bytemuck::{AnyBitPattern, NoUninit};

use super::Sab;
use super::generated as g;
use super::layout::Region;

/// Slots a lookup or an insert tries.
pub const MAX_PROBES: usize = 32;

const HEADER: usize = g::KEYED_TABLE_HEADER_SIZE as usize;
// Header words (u64).
const LEN: usize = 0;
const CLOCK: usize = 8;
const EVICTED: usize = 16;

const fn pad8(n: usize) -> usize {
    n.next_multiple_of(8)
}

/// Why an insert did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the table is full around this key ({MAX_PROBES} slots probed, all taken)")]
pub struct TableFull;

/// A keyed table of `V` by `K` in one range of the SAB.
pub struct KeyedTable<'a, K, V> {
    sab: &'a Sab,
    offset: usize,
    capacity: usize,
    evicts: bool,
    _records: PhantomData<(K, V)>,
}

impl<'a, K, V> KeyedTable<'a, K, V>
where
    K: AnyBitPattern + NoUninit + PartialEq,
    V: AnyBitPattern + NoUninit,
{
    const SLOT: usize = 8 + pad8(size_of::<K>()) + pad8(size_of::<V>());

    /// Bytes a table of `capacity` slots takes.
    pub const fn bytes(capacity: usize) -> usize {
        HEADER + capacity * Self::SLOT
    }

    /// The table of `capacity` slots at the start of `region` (absolute). `evicts`: whether a full
    /// probe window gives up its least recently used entry, or refuses the insert.
    ///
    /// Panics if the table does not fit the region (a layout bug, caught by every test).
    pub fn new(sab: &'a Sab, region: Region, capacity: usize, evicts: bool) -> Self {
        assert!(
            Self::bytes(capacity) <= region.size && region.offset.is_multiple_of(8),
            "a keyed table of {capacity} slots does not fit {}",
            region.name
        );
        assert!(size_of::<K>().is_multiple_of(4) && size_of::<V>().is_multiple_of(4));
        Self {
            sab,
            offset: region.offset,
            capacity,
            evicts,
            _records: PhantomData,
        }
    }

    fn word(&self, at: usize) -> u64 {
        self.sab
            .read::<u64>(self.offset + at)
            .expect("a keyed table lies inside the SAB")
    }

    fn set_word(&self, at: usize, value: u64) {
        self.sab
            .write(self.offset + at, &[value])
            .expect("a keyed table lies inside the SAB");
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.word(LEN) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries evicted to make room, ever.
    pub fn evicted(&self) -> u64 {
        self.word(EVICTED)
    }

    fn slot(&self, i: usize) -> usize {
        HEADER + i * Self::SLOT
    }

    fn used(&self, i: usize) -> u64 {
        self.word(self.slot(i))
    }

    fn key(&self, i: usize) -> K {
        self.sab
            .read(self.offset + self.slot(i) + 8)
            .expect("a keyed table lies inside the SAB")
    }

    fn value(&self, i: usize) -> V {
        self.sab
            .read(self.offset + self.slot(i) + 8 + pad8(size_of::<K>()))
            .expect("a keyed table lies inside the SAB")
    }

    fn write_slot(&self, i: usize, used: u64, key: &K, value: &V) {
        let at = self.offset + self.slot(i);
        let expect = "a keyed table lies inside the SAB";
        self.sab.write(at + 8, std::slice::from_ref(key)).expect(expect);
        self.sab
            .write(at + 8 + pad8(size_of::<K>()), std::slice::from_ref(value))
            .expect(expect);
        self.sab.write(at, &[used]).expect(expect);
    }

    fn home(&self, key: &K) -> usize {
        (hash(bytemuck::bytes_of(key)) % self.capacity as u64) as usize
    }

    /// The slots a key may occupy, in probe order.
    fn probes(&self, key: &K) -> impl Iterator<Item = usize> + use<K, V> {
        let (home, capacity) = (self.home(key), self.capacity);
        (0..MAX_PROBES.min(capacity)).map(move |k| (home + k) % capacity)
    }

    fn find(&self, key: &K) -> Option<usize> {
        self.probes(key)
            .take_while(|&i| self.used(i) != 0)
            .find(|&i| self.key(i) == *key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.find(key).map(|i| self.value(i))
    }

    fn tick(&self) -> u64 {
        let clock = self.word(CLOCK).saturating_add(1);
        self.set_word(CLOCK, clock);
        clock
    }

    /// Updates the value of `key` (made from `V::zeroed()` if absent) with `update`, marks it used,
    /// and returns the new value.
    pub fn upsert(&self, key: K, update: impl FnOnce(&mut V)) -> Result<V, TableFull> {
        let mut free = None;
        let mut oldest: Option<(u64, usize)> = None;
        for i in self.probes(&key) {
            let used = self.used(i);
            if used == 0 {
                free = Some(i);
                break;
            }
            if self.key(i) == key {
                let mut value = self.value(i);
                update(&mut value);
                self.write_slot(i, self.tick(), &key, &value);
                return Ok(value);
            }
            if oldest.is_none_or(|(u, _)| used < u) {
                oldest = Some((used, i));
            }
        }
        let i = match (free, oldest) {
            // Saturating: a table from a snapshot may hold any counts.
            (Some(i), _) => {
                self.set_word(LEN, self.word(LEN).saturating_add(1));
                i
            }
            (None, Some((_, i))) if self.evicts => {
                self.set_word(EVICTED, self.word(EVICTED).saturating_add(1));
                i
            }
            _ => return Err(TableFull),
        };
        let mut value = V::zeroed();
        update(&mut value);
        self.write_slot(i, self.tick(), &key, &value);
        Ok(value)
    }

    /// Sets the value of `key`.
    pub fn insert(&self, key: K, value: V) -> Result<(), TableFull> {
        self.upsert(key, |v| *v = value).map(|_| ())
    }

    /// Removes `key`, returning its value. Later entries of its probe run move back so that every
    /// lookup still finds them.
    pub fn remove(&self, key: &K) -> Option<V> {
        let mut hole = self.find(key)?;
        let value = self.value(hole);
        let distance = |from: usize, to: usize| (to + self.capacity - from) % self.capacity;
        let mut next = hole;
        // An entry can fill the hole only if the hole lies on its probe path, cyclically in
        // [home, next); entries are never more than `MAX_PROBES` from home, so the scan stops there.
        loop {
            next = (next + 1) % self.capacity;
            let used = self.used(next);
            if used == 0 || next == hole || distance(hole, next) >= MAX_PROBES {
                break;
            }
            let moved = self.key(next);
            let home = self.home(&moved);
            if distance(home, hole) < distance(home, next) {
                self.write_slot(hole, used, &moved, &self.value(next));
                hole = next;
            }
        }
        self.set_word(self.slot(hole), 0);
        self.set_word(LEN, self.word(LEN).saturating_sub(1));
        Some(value)
    }

    /// Every entry, in slot order.
    pub fn entries(&self) -> impl Iterator<Item = (K, V)> + '_ {
        (0..self.capacity)
            .filter(|&i| self.used(i) != 0)
            .map(|i| (self.key(i), self.value(i)))
    }
}

/// A 64-bit hash of a key's bytes (a multiply-xorshift fold, 4 bytes at a time): keys here are
/// already hashes or small integers, so this only spreads them.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for word in bytes.chunks(4) {
        let mut w = [0u8; 4];
        w[..word.len()].copy_from_slice(word);
        h = (h ^ u64::from(u32::from_le_bytes(w))).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
    }
    h
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::sab::layout::{KernelArea, SabLayout, Tier};

    fn region(sab: &Sab) -> Region {
        sab.layout().kernel_area(KernelArea::ChunkIndex)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Upsert(u32, u32),
        Remove(u32),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        // Few distinct keys in a small table: long probe runs, wrap-around and backward shifts.
        let key = 0u32..48;
        proptest::collection::vec(
            prop_oneof![
                (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Upsert(k, v)),
                key.prop_map(Op::Remove),
            ],
            0..300,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 64 }))]

        /// Without eviction, the table is a map: it agrees with a HashMap after any sequence of
        /// inserts and removals, except that it refuses inserts when the probe window is full.
        #[test]
        fn agrees_with_a_map(ops in ops()) {
            let sab = Sab::new(SabLayout::for_tier(Tier::Light));
            let table = KeyedTable::<u32, u32>::new(&sab, region(&sab), 40, false);
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Upsert(k, v) => match table.insert(k, v) {
                        Ok(()) => { model.insert(k, v); }
                        Err(TableFull) => prop_assert!(!model.contains_key(&k) && model.len() >= MAX_PROBES),
                    },
                    Op::Remove(k) => prop_assert_eq!(table.remove(&k), model.remove(&k)),
                }
                prop_assert_eq!(table.len(), model.len());
            }
            for k in 0..48 {
                prop_assert_eq!(table.get(&k), model.get(&k).copied(), "key {}", k);
            }
            let mut entries: Vec<_> = table.entries().collect();
            entries.sort_unstable();
            let mut expected: Vec<_> = model.into_iter().collect();
            expected.sort_unstable();
            prop_assert_eq!(entries, expected);
        }
    }

    #[test]
    fn a_full_window_evicts_its_least_recently_used_entry() {
        let sab = Sab::new(SabLayout::for_tier(Tier::Light));
        // Capacity = probe window: every key probes every slot.
        let table = KeyedTable::<u32, u32>::new(&sab, region(&sab), MAX_PROBES, true);
        for k in 0..MAX_PROBES as u32 {
            table.insert(k, k).unwrap();
        }
        table.upsert(0, |v| *v += 100).unwrap(); // 0 is now the most recent; 1 the oldest
        table.insert(1000, 7).unwrap();
        assert_eq!(table.get(&1), None, "the least recently used entry went");
        assert_eq!(table.get(&0), Some(100));
        assert_eq!(table.get(&1000), Some(7));
        assert_eq!((table.len(), table.evicted()), (MAX_PROBES, 1));
        let strict = KeyedTable::<u32, u32>::new(&sab, region(&sab), MAX_PROBES, false);
        assert_eq!(strict.insert(2000, 1), Err(TableFull));
    }

    #[test]
    fn the_table_lives_in_the_sab() {
        let sab = Sab::new(SabLayout::for_tier(Tier::Light));
        KeyedTable::<[u32; 2], [f64; 2]>::new(&sab, region(&sab), 100, true)
            .insert([1, 2], [0.5, 1.5])
            .unwrap();
        // Another handle over the same bytes (as after a snapshot or in another process) sees it.
        let again = KeyedTable::<[u32; 2], [f64; 2]>::new(&sab, region(&sab), 100, true);
        assert_eq!(again.get(&[1, 2]), Some([0.5, 1.5]));
        assert_eq!(again.len(), 1);
    }
}
