//! The transaction-key index: a hash map split into fixed segments so that it never rehashes
//! all of its entries at once.
//!
//! A single `HashMap` doubles its table when it fills, moving every entry in one go: with a
//! few million keys that is tens of milliseconds during which the shard thread answers
//! nothing, and every request queued behind it pays for it. Here the key picks one of
//! `SEGMENTS` independent tables by bits of its hash that the tables themselves do not use for
//! their buckets, so a growth step moves 1/`SEGMENTS` of the entries (about 0.1 ms per million
//! keys in the index).
//!
//! The segments can be shared with snapshot copies, like the chunks of `CowVec`: `share`
//! copies 256 pointers, and the first write to a segment afterwards takes it back (copying it
//! if the snapshot still holds it).
//!
//! Each segment is a `Table`: its entries in a dense vector, and an open-addressing index of
//! 8-byte slots (32 bits of the key's hash and the entry's position) probed linearly. A
//! lookup of a key that is not there, the common case (every new authorization), reads one
//! cache line of slots, and the insert that follows writes the same line and appends to the
//! entries. Knowing where that line is lets the shard read it ahead for a whole batch
//! (`KeyMap::warm`), which a general-purpose map does not offer.
//!
//! Serialized exactly as a map (length, then key-value pairs), so snapshots do not depend on
//! the segmenting.

use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::command::TxnKey;
use super::cowvec::Part;
use super::state::KeyHasher;

/// Number of segments; a power of two.
pub const SEGMENTS: usize = 256;

/// One segment's entries and their slot index.
#[derive(Clone)]
struct Table<V> {
    /// Empty, or a power of two at least twice the number of entries.
    slots: Vec<Slot>,
    entries: Vec<(TxnKey, V)>,
}

/// A slot of the index: `tag` 0 is empty; otherwise bits 32..64 of the key's hash (never 0,
/// see `tag_of`) and the entry's position.
#[derive(Clone, Copy, Default)]
struct Slot {
    tag: u32,
    index: u32,
}

/// Most entries one segment holds (positions are u32). The ledger's own bound on keys
/// (`KEYS_MAX`) is far below `SEGMENTS` times this.
const TABLE_ENTRIES_MAX: usize = 1 << 31;
/// Slots of a segment's first index.
const SLOTS_MIN: usize = 16;

fn hash_of(key: &TxnKey) -> u64 {
    BuildHasherDefault::<KeyHasher>::default().hash_one(key)
}

/// The segment of a hash: bits 48..56. Slots are picked by the low bits, tags by the top 32.
fn segment_of(hash: u64) -> usize {
    (hash >> 48) as usize & (SEGMENTS - 1)
}

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32 | 1
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            entries: Vec::new(),
        }
    }
}

impl<V> Table<V> {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// (slot position, entry position) of `key`. Terminates: the index is never full.
    fn find(&self, key: &TxnKey, hash: u64) -> Option<(usize, usize)> {
        if self.slots.is_empty() {
            return None;
        }
        let tag = tag_of(hash);
        let mut pos = hash as usize & self.mask();
        loop {
            let slot = self.slots[pos];
            if slot.tag == 0 {
                return None;
            }
            let index = slot.index as usize;
            if slot.tag == tag && self.entries[index].0 == *key {
                return Some((pos, index));
            }
            pos = (pos + 1) & self.mask();
        }
    }

    /// Asks for the slot where a probe for `hash` starts to be brought into cache, so that
    /// it is there when the lookup comes. On x86_64 a prefetch instruction, which does not
    /// wait for the line (a batch of them overlap); elsewhere a plain read.
    fn warm(&self, hash: u64) {
        if let Some(slot) = self.slots.get(hash as usize & self.mask()) {
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                // SAFETY: a prefetch is a hint that never faults or changes memory, and SSE
                // (which has it) is part of every x86_64 target; the pointer is a live slot.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(slot).cast::<i8>()) };
            }
            #[cfg(not(target_arch = "x86_64"))]
            std::hint::black_box(slot.tag);
        }
    }

    /// Puts entry `index` (of hash `hash`) in the first free slot of its probe.
    fn place(slots: &mut [Slot], hash: u64, index: usize) {
        let mask = slots.len() - 1;
        let mut pos = hash as usize & mask;
        while slots[pos].tag != 0 {
            pos = (pos + 1) & mask;
        }
        slots[pos] = Slot {
            tag: tag_of(hash),
            index: index as u32,
        };
    }

    /// A new index of `len` slots over the current entries.
    fn rebuild(&mut self, len: usize) {
        let mut slots = vec![Slot::default(); len];
        for (i, (key, _)) in self.entries.iter().enumerate() {
            Self::place(&mut slots, hash_of(key), i);
        }
        self.slots = slots;
    }

    fn get(&self, key: &TxnKey, hash: u64) -> Option<&V> {
        self.find(key, hash).map(|(_, i)| &self.entries[i].1)
    }

    fn insert(&mut self, key: TxnKey, hash: u64, value: V) -> Option<V> {
        if let Some((_, i)) = self.find(&key, hash) {
            return Some(std::mem::replace(&mut self.entries[i].1, value));
        }
        assert!(self.entries.len() < TABLE_ENTRIES_MAX, "key segment full");
        // At most half full: an absent key's probe ends within a slot or two.
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.rebuild((self.slots.len() * 2).max(SLOTS_MIN));
        }
        Self::place(&mut self.slots, hash, self.entries.len());
        self.entries.push((key, value));
        None
    }

    fn remove(&mut self, key: &TxnKey, hash: u64) -> Option<V> {
        let (mut hole, index) = self.find(key, hash)?;
        // Backward-shift deletion: later slots of the same run move up into the hole when
        // their probe started at or before it, so no probe ever crosses an empty slot.
        let mask = self.mask();
        let mut pos = (hole + 1) & mask;
        while self.slots[pos].tag != 0 {
            let entry = self.slots[pos].index as usize;
            let home = hash_of(&self.entries[entry].0) as usize & mask;
            if (pos.wrapping_sub(home) & mask) >= (pos.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[pos];
                hole = pos;
            }
            pos = (pos + 1) & mask;
        }
        self.slots[hole] = Slot::default();
        // The last entry moves into the removed one's place; its slot follows it.
        let last = self.entries.len() - 1;
        if index != last {
            let moved = hash_of(&self.entries[last].0);
            let mut pos = moved as usize & mask;
            while self.slots[pos].index as usize != last || self.slots[pos].tag == 0 {
                pos = (pos + 1) & mask;
            }
            self.slots[pos].index = index as u32;
        }
        Some(self.entries.swap_remove(index).1)
    }

    fn retain(&mut self, mut keep: impl FnMut(&TxnKey, &mut V) -> bool) {
        let before = self.entries.len();
        self.entries.retain_mut(|(k, v)| keep(k, v));
        if self.entries.len() != before {
            let len = self.slots.len();
            self.rebuild(len);
        }
    }
}

/// A map from `TxnKey` with the API the ledger uses of `HashMap`. `Clone` is deep; `share`
/// is the cheap copy.
#[derive(Clone)]
pub struct KeyMap<V> {
    segments: Box<[Part<Table<V>>]>,
    len: usize,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            segments: (0..SEGMENTS)
                .map(|_| Part::Owned(Table::default()))
                .collect(),
            len: 0,
        }
    }
}

impl<V: Clone> KeyMap<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, key: &TxnKey) -> Option<&V> {
        let hash = hash_of(key);
        self.segments[segment_of(hash)].get().get(key, hash)
    }

    /// Reads ahead the index slot where a lookup of `key` starts (see the module doc).
    pub fn warm(&self, key: &TxnKey) {
        let hash = hash_of(key);
        self.segments[segment_of(hash)].get().warm(hash);
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&TxnKey, &V)> {
        self.segments
            .iter()
            .flat_map(|s| s.get().entries.iter().map(|(k, v)| (k, v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.segments
            .iter()
            .flat_map(|s| s.get().entries.iter().map(|(_, v)| v))
    }

    /// A copy that shares every segment with this map: O(segments), no entry is copied.
    pub fn share(&mut self) -> Self {
        KeyMap {
            segments: self.segments.iter_mut().map(Part::share).collect(),
            len: self.len,
        }
    }

    /// The segment of `hash`, copied first if a snapshot still shares it.
    fn segment_mut(&mut self, hash: u64) -> &mut Table<V> {
        self.segments[segment_of(hash)].get_mut()
    }

    /// Inserts or replaces; returns the replaced value.
    pub fn insert(&mut self, key: TxnKey, value: V) -> Option<V> {
        let hash = hash_of(&key);
        let old = self.segment_mut(hash).insert(key, hash, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Inserts `make()` unless `key` is present; true if it inserted.
    pub fn insert_if_absent(&mut self, key: TxnKey, make: impl FnOnce() -> V) -> bool {
        let hash = hash_of(&key);
        if self.segments[segment_of(hash)]
            .get()
            .get(&key, hash)
            .is_some()
        {
            return false;
        }
        self.segment_mut(hash).insert(key, hash, make());
        self.len += 1;
        true
    }

    pub fn remove(&mut self, key: &TxnKey) -> Option<V> {
        // Only a key that is there takes its segment back from a snapshot.
        let hash = hash_of(key);
        self.segments[segment_of(hash)].get().get(key, hash)?;
        let old = self.segment_mut(hash).remove(key, hash);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&TxnKey, &mut V) -> bool) {
        let mut len = 0;
        for segment in self.segments.iter_mut() {
            if !segment.get().is_empty() {
                let segment = segment.get_mut();
                segment.retain(&mut keep);
                len += segment.len();
            }
        }
        self.len = len;
    }
}

impl<V: fmt::Debug + Clone> fmt::Debug for KeyMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: Serialize + Clone> Serialize for KeyMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (key, value) in self.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de> + Clone> Deserialize<'de> for KeyMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de> + Clone> Visitor<'de> for MapVisitor<V> {
            type Value = KeyMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of transaction keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = KeyMap::default();
                // Bounded by the input: each entry is read from it.
                while let Some((key, value)) = access.next_entry()? {
                    if map.insert(key, value).is_some() {
                        return Err(serde::de::Error::custom("duplicate transaction key"));
                    }
                }
                Ok(map)
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> TxnKey {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&n.to_le_bytes());
        k[8..].copy_from_slice(&n.wrapping_mul(31).to_le_bytes());
        TxnKey(k)
    }

    #[test]
    fn behaves_like_a_hash_map() {
        let mut map = KeyMap::default();
        let mut model = std::collections::HashMap::new();
        for n in 0..5_000u64 {
            assert_eq!(
                map.insert(key(n % 3_000), n),
                model.insert(key(n % 3_000), n)
            );
            if n % 7 == 0 {
                assert_eq!(map.remove(&key(n / 2)), model.remove(&key(n / 2)));
            }
        }
        assert_eq!(map.len(), model.len());
        assert!(!map.insert_if_absent(key(1), || 99));
        assert!(map.insert_if_absent(key(9_999), || 99));
        model.insert(key(9_999), 99);
        assert_eq!(map.get(&key(9_999)), Some(&99));
        map.retain(|_, v| *v % 2 == 0);
        model.retain(|_, v| *v % 2 == 0);
        assert_eq!(map.len(), model.len());
        for n in 0..3_000u64 {
            assert_eq!(map.get(&key(n)), model.get(&key(n)));
        }
        let mut all: Vec<_> = map.iter().map(|(k, v)| (*k, *v)).collect();
        let mut expected: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
        all.sort();
        expected.sort();
        assert_eq!(all, expected);
        assert_eq!(map.values().count(), model.len());
    }

    /// One table under random inserts and removals (a third of the steps), checked against
    /// a model: at half load many probe runs are longer than one slot, so removals shift
    /// runs back and move the last entry into the removed one's place.
    #[test]
    fn removals_keep_every_probe_run_reachable() {
        let mut table: Table<u64> = Table::default();
        let mut model = std::collections::HashMap::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut longest_run = 0;
        for step in 0..30_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let k = key(rng % 600);
            let hash = hash_of(&k);
            if rng % 3 == 0 {
                assert_eq!(table.remove(&k, hash), model.remove(&k), "step {step}");
            } else {
                assert_eq!(
                    table.insert(k, hash, step),
                    model.insert(k, step),
                    "step {step}"
                );
            }
            if step % 1_000 == 0 {
                for m in 0..600u64 {
                    let h = hash_of(&key(m));
                    assert_eq!(table.get(&key(m), h), model.get(&key(m)), "step {step}");
                }
                let mut run = 0;
                for slot in &table.slots {
                    run = if slot.tag == 0 { 0 } else { run + 1 };
                    longest_run = longest_run.max(run);
                }
            }
        }
        assert_eq!(table.len(), model.len());
        assert!(
            longest_run >= 3,
            "runs too short to test shifting: {longest_run}"
        );
    }

    #[test]
    fn a_clone_shares_segments_until_written() {
        let mut map = KeyMap::default();
        for n in 0..1_000u64 {
            map.insert(key(n), n);
        }
        let snapshot = map.share();
        map.insert(key(5), 55);
        map.remove(&key(6));
        map.retain(|_, v| *v != 7);
        assert_eq!(
            (snapshot.get(&key(5)), snapshot.get(&key(6))),
            (Some(&5), Some(&6))
        );
        assert_eq!((snapshot.len(), snapshot.get(&key(7))), (1_000, Some(&7)));
        assert_eq!(
            (map.get(&key(5)), map.get(&key(6)), map.len()),
            (Some(&55), None, 998)
        );
        let shared = (0..SEGMENTS)
            .filter(|&i| matches!(&map.segments[i], Part::Shared(_)))
            .count();
        // retain took back every non-empty segment; the empty ones are still shared.
        let empty = snapshot
            .segments
            .iter()
            .filter(|s| s.get().is_empty())
            .count();
        assert_eq!(shared, empty);
    }

    #[test]
    fn keys_spread_over_every_segment() {
        let mut counts = vec![0usize; SEGMENTS];
        for n in 0..(SEGMENTS as u64 * 64) {
            counts[segment_of(hash_of(&key(n)))] += 1;
        }
        // 64 per segment on average; none empty, none more than three times its share.
        assert!(counts.iter().all(|&c| c > 0 && c < 192), "{counts:?}");
    }

    #[test]
    fn encodes_as_a_plain_map() {
        let mut map = KeyMap::default();
        let mut plain = std::collections::BTreeMap::new();
        for n in 0..100u64 {
            map.insert(key(n), n as u32);
            plain.insert(key(n), n as u32);
        }
        let bytes = postcard::to_allocvec(&map).unwrap();
        let back: KeyMap<u32> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.len(), 100);
        assert_eq!(back.get(&key(42)), Some(&42));
        // A plain map of the same entries decodes into the same thing.
        let from_plain: KeyMap<u32> =
            postcard::from_bytes(&postcard::to_allocvec(&plain).unwrap()).unwrap();
        assert_eq!(from_plain.len(), 100);
        assert_eq!(from_plain.get(&key(7)), Some(&7));
        // A duplicate key in the input is refused, not silently merged.
        let mut dup = postcard::to_allocvec(&plain).unwrap();
        dup[0] = 101; // one entry more than present: append a repeat of the first
        let first_entry = postcard::to_allocvec(&(key(0), 0u32)).unwrap();
        dup.extend_from_slice(&first_entry);
        assert!(postcard::from_bytes::<KeyMap<u32>>(&dup).is_err());
    }
}
