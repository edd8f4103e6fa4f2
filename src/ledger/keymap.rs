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
//! Each segment is a `Table`: its entries in a dense vector, and an open-addressing index of
//! 8-byte slots (32 bits of the key's hash and the entry's position) probed linearly. A
//! lookup of a key that is not there, the common case (every new authorization), reads one
//! cache line of slots, and the insert that follows writes the same line and appends to the
//! entries. Knowing where that line is lets the shard read it ahead for a whole batch
//! (`KeyMap::warm`), which a general-purpose map does not offer.
//!
//! A snapshot copy (`share`) shares the entries and not the index. The entries are in chunks
//! of `ENTRY_CHUNK`, each a `cowvec::Part`: new keys append, so after a snapshot a segment's first insert
//! copies only its last, partly filled chunk. The index is written at a random slot by every
//! insert, so sharing it would have each segment's first insert copy the whole index; and a
//! snapshot does not need it (it is read whole, and a loaded snapshot builds its own), so the
//! copy has none, and its lookups (tests only) scan. Before this, the copy shared each segment
//! whole: the first insert into each of the 256 copied all of it, 20-40 MB a shard with
//! 300 000-600 000 keys, 16-57 ms of the shard's time right after every snapshot, most of it
//! in page faults on the fresh memory (ninth session).
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

/// Entries per chunk of a segment's entries: what a segment's first insert after a snapshot
/// copies (256 keys of 32 bytes with a `KeyEntry`: 8 KiB).
pub const ENTRY_CHUNK: usize = 256;

/// One segment's entries and their slot index.
#[derive(Clone)]
struct Table<V> {
    /// A power of two at least twice the number of entries; empty when there are no entries,
    /// or in a snapshot copy (see the module doc).
    slots: Vec<Slot>,
    entries: Entries<V>,
}

/// A segment's entries: append-only but for removals (which move the last entry into the
/// hole), in chunks of `ENTRY_CHUNK` that snapshot copies share until they are written. A
/// plain vector of chunks, not a `CowVec`: no deque front to account for on every access.
#[derive(Clone)]
struct Entries<V> {
    chunks: Vec<Part<Vec<(TxnKey, V)>>>,
    len: usize,
}

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<V: Clone> Entries<V> {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    /// Entry `i`, which must be below `len`.
    #[inline]
    fn at(&self, i: usize) -> &(TxnKey, V) {
        &self.chunks[i / ENTRY_CHUNK].get()[i % ENTRY_CHUNK]
    }

    /// Entry `i` to write; its chunk is taken back from a snapshot first.
    #[inline]
    fn at_mut(&mut self, i: usize) -> &mut (TxnKey, V) {
        &mut self.chunks[i / ENTRY_CHUNK].get_mut()[i % ENTRY_CHUNK]
    }

    #[inline]
    fn push(&mut self, entry: (TxnKey, V)) {
        if self.len % ENTRY_CHUNK == 0 {
            self.chunks
                .push(Part::Owned(Vec::with_capacity(ENTRY_CHUNK)));
        }
        if let Some(last) = self.chunks.last_mut() {
            last.get_mut().push(entry);
        }
        self.len += 1;
    }

    fn pop(&mut self) -> Option<(TxnKey, V)> {
        let last = self.chunks.last_mut()?.get_mut();
        let entry = last.pop();
        if last.is_empty() {
            self.chunks.pop();
        }
        self.len -= usize::from(entry.is_some());
        entry
    }

    fn slices(&self) -> impl Iterator<Item = &[(TxnKey, V)]> {
        self.chunks.iter().map(|c| c.get().as_slice())
    }

    fn iter(&self) -> impl Iterator<Item = &(TxnKey, V)> {
        self.slices().flatten()
    }

    fn share(&mut self) -> Self {
        Entries {
            chunks: self.chunks.iter_mut().map(Part::share).collect(),
            len: self.len,
        }
    }
}

/// A slot of the index: `tag` 0 is empty; otherwise bits 32..64 of the key's hash (never 0,
/// see `tag_of`) and the entry's position. The tag holds the bits that pick the slot a probe
/// starts at (`home_of`), so the index grows from its own slots, without reading an entry.
#[derive(Clone, Copy, Default)]
struct Slot {
    tag: u32,
    index: u32,
}

impl Slot {
    /// The slot of entry `index`, whose key hashes to `hash`.
    fn new(hash: u64, index: usize) -> Self {
        Slot {
            tag: tag_of(hash),
            index: index as u32,
        }
    }
}

/// Most entries one segment holds: its index (twice as many slots) then starts probes from at
/// most the 31 bits a tag has for it. The ledger's own bound on keys (`KEYS_MAX`) is far below
/// `SEGMENTS` times this.
const TABLE_ENTRIES_MAX: usize = 1 << 30;
/// Slots of a segment's first index.
const SLOTS_MIN: usize = 16;

fn hash_of(key: &TxnKey) -> u64 {
    BuildHasherDefault::<KeyHasher>::default().hash_one(key)
}

/// The segment of a hash: its low bits. Tags are the top 32 bits, and slots are picked by
/// the tag's bits above its lowest (`home_of`).
fn segment_of(hash: u64) -> usize {
    hash as usize & (SEGMENTS - 1)
}

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32 | 1
}

/// The slot where the probe for `tag` starts in an index of `mask + 1` slots: hash bits 33 and
/// up, which the tag holds (its lowest bit is forced to 1).
#[inline]
fn home_of(tag: u32, mask: usize) -> usize {
    (tag >> 1) as usize & mask
}

/// Asks for the cache line at `p` to be brought in: a hint that does not wait for it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch(p: *const i8) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: a prefetch never faults or changes memory, whatever the address (here a live
    // slot, or spare capacity of a live chunk), and SSE, which has it, is part of every
    // x86_64 target.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
}

/// Elsewhere, no hint.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn prefetch(_p: *const i8) {}

/// `prefetch` of every cache line that the `bytes` bytes from `first` touch: from the line
/// holding the first byte (which need not start a line) to the one holding the last.
#[inline(always)]
pub(crate) fn prefetch_range(first: *const i8, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let skew = first as usize % 64;
    let mut at = 0;
    while at < skew + bytes {
        prefetch(first.wrapping_sub(skew).wrapping_add(at));
        at += 64;
    }
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            entries: Entries::default(),
        }
    }
}

impl<V: Clone> Table<V> {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// (slot position, entry position) of `key`. Terminates: the index is never full. A
    /// snapshot copy has no index: its entries are scanned (and the slot position is
    /// meaningless; nothing writes to a copy without `ensure_index` first).
    #[inline(always)]
    fn find(&self, key: &TxnKey, hash: u64) -> Option<(usize, usize)> {
        if self.slots.is_empty() {
            return self.scan(key);
        }
        let tag = tag_of(hash);
        let mut pos = home_of(tag, self.mask());
        loop {
            let slot = self.slots[pos];
            if slot.tag == 0 {
                return None;
            }
            let index = slot.index as usize;
            if slot.tag == tag && self.entries.at(index).0 == *key {
                return Some((pos, index));
            }
            pos = (pos + 1) & self.mask();
        }
    }

    /// `find` without an index: no entries, or a snapshot copy. Bounded by the entries.
    #[cold]
    #[inline(never)]
    fn scan(&self, key: &TxnKey) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .position(|(k, _)| k == key)
            .map(|i| (usize::MAX, i))
    }

    /// Asks for the slot where a probe for `hash` starts to be brought into cache, so that
    /// it is there when the lookup comes, and the lines the next entry of this segment will
    /// be written to: a new key's insert writes both. Without the second, an insert into a
    /// segment whose last line is new waits for that line, since 256 segments appending in
    /// turn are too many streams for the hardware to read ahead (4 % of the windowed
    /// decision bench, 2026-12-07). An entry may straddle two lines (it was 40 bytes, and
    /// at 32 a chunk that malloc puts 16 bytes past a line still has every other one
    /// across), so both its first and its last byte's lines are asked for (asking for the
    /// first only, with 40-byte entries the windowed bench took 11-15 % longer,
    /// 2026-12-07). On x86_64 prefetch instructions, which do not wait for the lines (a
    /// batch of them overlap); elsewhere a plain read of the slot.
    fn warm(&self, hash: u64) {
        if let Some(slot) = self.slots.get(home_of(tag_of(hash), self.mask())) {
            #[cfg(target_arch = "x86_64")]
            prefetch(std::ptr::from_ref(slot).cast());
            #[cfg(not(target_arch = "x86_64"))]
            std::hint::black_box(slot.tag);
        }
        if let Some(Part::Owned(last)) = self.entries.chunks.last() {
            if last.len() < last.capacity() {
                let first = last.as_ptr().wrapping_add(last.len()).cast::<i8>();
                prefetch_range(first, std::mem::size_of::<(TxnKey, V)>());
            }
        }
    }

    /// Puts `slot` in the first free slot of its probe.
    fn place(slots: &mut [Slot], slot: Slot) {
        let mask = slots.len() - 1;
        let mut pos = home_of(slot.tag, mask);
        while slots[pos].tag != 0 {
            pos = (pos + 1) & mask;
        }
        slots[pos] = slot;
    }

    /// Gives a snapshot copy's table an index before it is written to (tests write to copies;
    /// the shard never does).
    fn ensure_index(&mut self) {
        if self.slots.is_empty() && !self.is_empty() {
            self.rebuild((2 * self.len() + 2).next_power_of_two().max(SLOTS_MIN));
        }
    }

    /// A copy for a snapshot: the entries shared, no index.
    fn share(&mut self) -> Self {
        Table {
            slots: Vec::new(),
            entries: self.entries.share(),
        }
    }

    /// A new index of `len` slots over the current entries, hashing every key.
    fn rebuild(&mut self, len: usize) {
        let mut slots = vec![Slot::default(); len];
        let mut i = 0;
        for slice in self.entries.slices() {
            for (key, _) in slice {
                Self::place(&mut slots, Slot::new(hash_of(key), i));
                i += 1;
            }
        }
        self.slots = slots;
    }

    /// The index at `len` slots (more than now), from the slots alone: their tags say where
    /// each probe starts, so no entry is read or hashed. The old slots are read in order and
    /// the new ones written nearly in order, where rehashing the entries wrote to random
    /// slots of the new index (5.5 % of the windowed decision bench on a shard growing to 9 M
    /// keys, 2026-12-07). The old slots are first packed to the front of their own array
    /// without a branch, so that the placing loop does not mispredict on every other slot
    /// whether it is empty (half of them are, at a grow): growing took 12.8 ns per insert
    /// while the decision bench's key index grew from 1 M to 3 M keys, against 20.7 ns with
    /// a filter (2026-12-07).
    fn grow(&mut self, len: usize) {
        let mut old = std::mem::take(&mut self.slots);
        let mut used = 0;
        for i in 0..old.len() {
            let slot = old[i];
            old[used] = slot;
            used += usize::from(slot.tag != 0);
        }
        let mut slots = vec![Slot::default(); len];
        for &slot in &old[..used] {
            Self::place(&mut slots, slot);
        }
        self.slots = slots;
    }

    #[inline]
    fn get(&self, key: &TxnKey, hash: u64) -> Option<&V> {
        self.find(key, hash).map(|(_, i)| &self.entries.at(i).1)
    }

    fn insert(&mut self, key: TxnKey, hash: u64, value: V) -> Option<V> {
        self.ensure_index();
        if let Some((_, i)) = self.find(&key, hash) {
            return Some(std::mem::replace(&mut self.entries.at_mut(i).1, value));
        }
        self.insert_absent(key, hash, value);
        None
    }

    /// Inserts a key known to be absent (and an index that exists).
    #[inline]
    fn insert_absent(&mut self, key: TxnKey, hash: u64, value: V) {
        assert!(self.entries.len() < TABLE_ENTRIES_MAX, "key segment full");
        // At most half full: an absent key's probe ends within a slot or two.
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow((self.slots.len() * 2).max(SLOTS_MIN));
        }
        Self::place(&mut self.slots, Slot::new(hash, self.entries.len()));
        self.entries.push((key, value));
    }

    fn remove(&mut self, key: &TxnKey, hash: u64) -> Option<V> {
        self.ensure_index();
        let (mut hole, index) = self.find(key, hash)?;
        // Backward-shift deletion: later slots of the same run move up into the hole when
        // their probe started at or before it, so no probe ever crosses an empty slot.
        let mask = self.mask();
        let mut pos = (hole + 1) & mask;
        while self.slots[pos].tag != 0 {
            let home = home_of(self.slots[pos].tag, mask);
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
            let moved = tag_of(hash_of(&self.entries.at(last).0));
            let mut pos = home_of(moved, mask);
            while self.slots[pos].index as usize != last || self.slots[pos].tag == 0 {
                pos = (pos + 1) & mask;
            }
            self.slots[pos].index = index as u32;
        }
        let moved = self.entries.pop().expect("the entry found is there");
        if index == last {
            Some(moved.1)
        } else {
            Some(std::mem::replace(self.entries.at_mut(index), moved).1)
        }
    }

    /// Keeps the entries for which `keep` is true (which may change them), in order.
    fn retain(&mut self, mut keep: impl FnMut(&TxnKey, &mut V) -> bool) {
        let mut kept = Entries::default();
        // Bounded by the entries.
        for (key, value) in self.entries.iter() {
            let mut value = value.clone();
            if keep(key, &mut value) {
                kept.push((*key, value));
            }
        }
        self.entries = kept;
        let len = if self.is_empty() {
            0
        } else {
            (2 * self.len()).next_power_of_two().max(SLOTS_MIN)
        };
        self.rebuild(len);
    }
}

/// A key `KeyMap::get_or_vacant` did not find, with its hash and the map's count of
/// changes then.
#[derive(Clone, Copy, Debug)]
pub struct Vacant {
    key: TxnKey,
    hash: u64,
    changes: u64,
}

/// A map from `TxnKey` with the API the ledger uses of `HashMap`. `Clone` is deep; `share`
/// is the cheap copy.
#[derive(Clone)]
pub struct KeyMap<V> {
    segments: Box<[Table<V>]>,
    len: usize,
    /// Keys inserted or removed so far (and retains): a `Vacant` taken before one of them
    /// is stale.
    changes: u64,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            segments: (0..SEGMENTS).map(|_| Table::default()).collect(),
            len: 0,
            changes: 0,
        }
    }
}

impl<V: Clone> KeyMap<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn get(&self, key: &TxnKey) -> Option<&V> {
        // An empty map (the early reversals, nearly always) answers without touching a
        // segment.
        if self.len == 0 {
            return None;
        }
        let hash = hash_of(key);
        self.segments[segment_of(hash)].get(key, hash)
    }

    /// `get`, and when the key is absent, what `insert_vacant` needs to add it without
    /// looking again: the ledger checks every new request's key for a duplicate first.
    #[inline]
    pub fn get_or_vacant(&self, key: &TxnKey) -> Result<&V, Vacant> {
        let hash = hash_of(key);
        let vacant = Vacant {
            key: *key,
            hash,
            changes: self.changes,
        };
        if self.len == 0 {
            return Err(vacant);
        }
        self.segments[segment_of(hash)].get(key, hash).ok_or(vacant)
    }

    /// Inserts the key this map's `get_or_vacant` found absent, without looking for it
    /// again. A map that inserted or removed a key since (the ledger's paths do not), or a
    /// segment without an index (a snapshot copy's), gets a plain `insert` instead.
    pub fn insert_vacant(&mut self, vacant: Vacant, value: V) {
        let segment = &mut self.segments[segment_of(vacant.hash)];
        if vacant.changes != self.changes || segment.slots.is_empty() {
            self.insert(vacant.key, value);
            return;
        }
        debug_assert!(segment.find(&vacant.key, vacant.hash).is_none());
        segment.insert_absent(vacant.key, vacant.hash, value);
        self.len += 1;
        self.changes += 1;
    }

    /// Reads ahead the index slot where a lookup of `key` starts, and the line where its
    /// segment's next entry goes (see the module doc and `Table::warm`).
    pub fn warm(&self, key: &TxnKey) {
        let hash = hash_of(key);
        self.segments[segment_of(hash)].warm(hash);
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&TxnKey, &V)> {
        self.segments
            .iter()
            .flat_map(|s| s.entries.iter().map(|(k, v)| (k, v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.segments
            .iter()
            .flat_map(|s| s.entries.iter().map(|(_, v)| v))
    }

    /// A copy for a snapshot that shares every entry chunk with this map, without the index:
    /// O(chunks), no entry is copied (see the module doc).
    pub fn share(&mut self) -> Self {
        KeyMap {
            segments: self.segments.iter_mut().map(Table::share).collect(),
            len: self.len,
            changes: self.changes,
        }
    }

    fn segment_mut(&mut self, hash: u64) -> &mut Table<V> {
        &mut self.segments[segment_of(hash)]
    }

    /// Inserts or replaces; returns the replaced value.
    pub fn insert(&mut self, key: TxnKey, value: V) -> Option<V> {
        let hash = hash_of(&key);
        let old = self.segment_mut(hash).insert(key, hash, value);
        if old.is_none() {
            self.len += 1;
            self.changes += 1;
        }
        old
    }

    /// Inserts `make()` unless `key` is present; true if it inserted.
    pub fn insert_if_absent(&mut self, key: TxnKey, make: impl FnOnce() -> V) -> bool {
        let hash = hash_of(&key);
        if self.segments[segment_of(hash)].get(&key, hash).is_some() {
            return false;
        }
        self.segment_mut(hash).insert(key, hash, make());
        self.len += 1;
        self.changes += 1;
        true
    }

    pub fn remove(&mut self, key: &TxnKey) -> Option<V> {
        // Only a key that is there takes its chunks back from a snapshot.
        let hash = hash_of(key);
        self.segments[segment_of(hash)].get(key, hash)?;
        let old = self.segment_mut(hash).remove(key, hash);
        if old.is_some() {
            self.len -= 1;
            self.changes += 1;
        }
        old
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&TxnKey, &mut V) -> bool) {
        let mut len = 0;
        for segment in self.segments.iter_mut() {
            if !segment.is_empty() {
                segment.retain(&mut keep);
                len += segment.len();
            }
        }
        self.len = len;
        self.changes += 1;
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

    /// A key found vacant is inserted without a second lookup; a vacancy the map moved on
    /// from (another insert came first), or one in a snapshot copy, is inserted the plain way,
    /// never twice.
    #[test]
    fn a_vacant_key_is_inserted_once() {
        let mut map: KeyMap<u64> = KeyMap::default();
        let empty = map.get_or_vacant(&key(1)).expect_err("empty map");
        map.insert_vacant(empty, 1);
        for n in 2..5_000 {
            let vacant = map.get_or_vacant(&key(n)).expect_err("new key");
            map.insert_vacant(vacant, n);
        }
        assert_eq!(map.get_or_vacant(&key(4_321)).ok(), Some(&4_321));
        let stale = map.get_or_vacant(&key(9_000)).expect_err("new key");
        map.insert(key(9_000), 1);
        map.insert_vacant(stale, 2);
        assert_eq!((map.get(&key(9_000)), map.len()), (Some(&2), 5_000));
        // The size is back where it was, but the map moved on: still a plain insert.
        let stale = map.get_or_vacant(&key(9_002)).expect_err("new key");
        map.insert(key(9_002), 1);
        map.remove(&key(1));
        map.insert_vacant(stale, 4);
        map.insert(key(1), 1);
        assert_eq!((map.get(&key(9_002)), map.len()), (Some(&4), 5_001));
        let mut copy = map.share();
        let vacant = copy.get_or_vacant(&key(9_001)).expect_err("new key");
        copy.insert_vacant(vacant, 3);
        assert_eq!((copy.get(&key(9_001)), copy.len()), (Some(&3), 5_002));
        super::model_tests::check_index(&map.segments[segment_of(hash_of(&key(9_000)))]);
        assert!((1..5_000).all(|n| map.get(&key(n)) == Some(&n)));
    }

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
    fn a_snapshot_copy_shares_entry_chunks_not_the_index() {
        let mut map = KeyMap::default();
        // 40 000 keys: about 156 a segment, so most segments have one chunk, some two.
        for n in 0..40_000u64 {
            map.insert(key(n), n);
        }
        let chunks: usize = map.segments.iter().map(|s| s.entries.chunks.len()).sum();
        let mut snapshot = map.share();
        assert!(snapshot.segments.iter().all(|s| s.slots.is_empty()));
        assert!(map.segments.iter().all(|s| !s.slots.is_empty()));
        let shared = |m: &KeyMap<u64>| -> usize {
            m.segments
                .iter()
                .flat_map(|s| &s.entries.chunks)
                .filter(|c| matches!(c, Part::Shared(_)))
                .count()
        };
        assert_eq!(shared(&map), chunks);
        // A new key takes back only its segment's last chunk; a replaced value and a removal
        // take back the chunks they write.
        map.insert(key(1_000_000), 1);
        assert_eq!(shared(&map), chunks - 1);
        map.insert(key(5), 55);
        map.remove(&key(6));
        map.remove(&key(1_000_000));
        assert_eq!(
            (map.get(&key(5)), map.get(&key(6)), map.len()),
            (Some(&55), None, 39_999)
        );
        for n in (0..40_000u64).filter(|&n| n != 6) {
            assert_eq!(map.get(&key(n)), Some(&if n == 5 { 55 } else { n }), "{n}");
        }
        // The copy is as it was; its lookups scan, and a write gives it an index first.
        assert_eq!(snapshot.len(), 40_000);
        assert_eq!(
            (snapshot.get(&key(5)), snapshot.get(&key(6))),
            (Some(&5), Some(&6))
        );
        assert_eq!(snapshot.get(&key(1_000_000)), None);
        let mut all: Vec<u64> = snapshot.values().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..40_000u64).collect::<Vec<_>>());
        assert_eq!(snapshot.remove(&key(7)), Some(7));
        assert_eq!(snapshot.insert(key(8), 88), Some(8));
        assert_eq!(
            (snapshot.get(&key(7)), snapshot.get(&key(8))),
            (None, Some(&88))
        );
        assert_eq!(map.get(&key(7)), Some(&7));
        assert_eq!(map.get(&key(8)), Some(&8));
        // retain rewrites what it keeps.
        map.retain(|_, v| *v % 2 == 0);
        assert_eq!(shared(&map), 0);
        assert_eq!(map.len(), 19_999);
        assert_eq!((map.get(&key(4)), map.get(&key(3))), (Some(&4), None));
    }

    #[test]
    fn removing_across_chunk_edges_matches_a_model() {
        let mut table: Table<u64> = Table::default();
        let mut model = std::collections::HashMap::new();
        for n in 0..(3 * ENTRY_CHUNK as u64 + 5) {
            table.insert(key(n), hash_of(&key(n)), n);
            model.insert(key(n), n);
        }
        // Remove from the front, so that every removal moves the last entry (and empties the
        // last chunk now and then), with a snapshot copy taken halfway.
        let mut copy = None;
        for n in 0..(2 * ENTRY_CHUNK as u64 + 3) {
            if n == ENTRY_CHUNK as u64 {
                copy = Some(table.share());
            }
            assert_eq!(
                table.remove(&key(n), hash_of(&key(n))),
                model.remove(&key(n))
            );
            assert_eq!(table.len(), model.len());
        }
        for n in 0..(3 * ENTRY_CHUNK as u64 + 5) {
            assert_eq!(table.get(&key(n), hash_of(&key(n))), model.get(&key(n)));
        }
        let copy = copy.unwrap();
        assert_eq!(copy.len(), 2 * ENTRY_CHUNK + 5);
        assert_eq!(
            copy.get(&key(ENTRY_CHUNK as u64), 0),
            Some(&(ENTRY_CHUNK as u64))
        );
    }

    /// An index grown from its slots (every insert that doubles it) holds the same slots as
    /// one rebuilt from the entries, each reachable, and every key is found.
    #[test]
    fn growing_from_the_slots_matches_a_rebuild_from_the_entries() {
        let mut table: Table<u64> = Table::default();
        for n in 0..20_000u64 {
            table.insert(key(n), hash_of(&key(n)), n);
        }
        assert_eq!(table.slots.len(), 65_536);
        super::model_tests::check_index(&table);
        let mut grown: Vec<(u32, u32)> = table.slots.iter().map(|s| (s.tag, s.index)).collect();
        table.rebuild(table.slots.len());
        let mut rebuilt: Vec<(u32, u32)> = table.slots.iter().map(|s| (s.tag, s.index)).collect();
        grown.sort_unstable();
        rebuilt.sort_unstable();
        assert_eq!(grown, rebuilt);
        table.grow(table.slots.len() * 2);
        super::model_tests::check_index(&table);
        for n in 0..20_000u64 {
            assert_eq!(table.get(&key(n), hash_of(&key(n))), Some(&n), "key {n}");
        }
        assert_eq!(table.get(&key(20_000), hash_of(&key(20_000))), None);
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

/// Randomized model tests: a `Table` and a `KeyMap` under long random runs of every operation,
/// checked against `std::collections::HashMap` after every step, with the index's own
/// invariants checked around every slot an operation writes and in full after every growth.
#[cfg(test)]
mod model_tests {
    use super::*;
    use std::collections::HashMap;

    /// splitmix64: a fixed sequence, so a failure repeats.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let x = self.0;
            self.0 = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            crate::ledger::records::splitmix64(x)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    fn key_of(n: u64) -> TxnKey {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&n.to_le_bytes());
        k[8..].copy_from_slice(&n.rotate_left(29).to_le_bytes());
        TxnKey(k)
    }

    /// `crowded` keys whose probes all start within 16 slots around the last slot of any
    /// index of up to 2^16 slots (so their runs wrap past the end), then `spread` others.
    fn key_pool(crowded: usize, spread: usize) -> Vec<TxnKey> {
        let mut keys = Vec::with_capacity(crowded + spread);
        let mut n = 1u64 << 40;
        while keys.len() < crowded {
            let k = key_of(n);
            if home_of(tag_of(hash_of(&k)), 0xffff).wrapping_add(8) & 0xffff < 16 {
                keys.push(k);
            }
            n += 1;
        }
        keys.extend((0..spread as u64).map(key_of));
        keys
    }

    /// Whole-index check: size, one slot per entry with its tag, every slot reachable from
    /// the start of its probe without crossing an empty slot.
    pub(super) fn check_index<V: Clone>(table: &Table<V>) {
        let len = table.len();
        if table.slots.is_empty() {
            assert_eq!(len, 0, "entries without an index");
            return;
        }
        let slots = &table.slots;
        assert!(slots.len().is_power_of_two() && slots.len() >= 2 * len);
        let mask = slots.len() - 1;
        let mut seen = vec![false; len];
        for (pos, slot) in slots.iter().enumerate().filter(|(_, s)| s.tag != 0) {
            let i = slot.index as usize;
            assert!(i < len && !seen[i], "slot {pos}: index {i} bad or repeated");
            seen[i] = true;
            assert_eq!(
                slot.tag,
                tag_of(hash_of(&table.entries.at(i).0)),
                "slot {pos}"
            );
            let mut p = home_of(slot.tag, mask);
            while p != pos {
                assert_ne!(slots[p].tag, 0, "slot {pos} unreachable: {p} empty");
                p = (p + 1) & mask;
            }
        }
        assert!(seen.iter().all(|&s| s), "an entry has no slot");
    }

    /// Local check after a write to slots `from..=to`: every occupied slot of the runs that
    /// meet them starts its probe within its run.
    fn check_runs(slots: &[Slot], from: usize, to: usize) {
        if slots.is_empty() {
            return;
        }
        let mask = slots.len() - 1;
        let span = to.wrapping_sub(from) & mask;
        let mut back = 0;
        while slots[from.wrapping_sub(back) & mask].tag != 0 {
            back += 1;
        }
        let first = from.wrapping_sub(back) & mask;
        let mut run_start = (first + 1) & mask;
        for step in 1.. {
            let p = (first + step) & mask;
            if slots[p].tag == 0 {
                if step > back + span {
                    break;
                }
                run_start = (p + 1) & mask;
            } else {
                let home = home_of(slots[p].tag, mask);
                assert!(
                    p.wrapping_sub(home) & mask <= p.wrapping_sub(run_start) & mask,
                    "slot {p} (home {home}) outside its run from {run_start}"
                );
            }
        }
    }

    /// First empty slot at or after `pos`.
    fn run_end(slots: &[Slot], mut pos: usize) -> usize {
        while slots[pos].tag != 0 {
            pos = (pos + 1) & (slots.len() - 1);
        }
        pos
    }

    fn check_against(table: &Table<u64>, model: &HashMap<TxnKey, u64>, keys: &[TxnKey]) {
        assert_eq!(table.len(), model.len());
        for k in keys {
            assert_eq!(table.get(k, hash_of(k)), model.get(k));
        }
    }

    /// One table: grows from empty through ten doublings to 16 Ki slots, shrinks by removals
    /// and by `retain` (which rebuilds a smaller index that then grows again from its slots),
    /// with a crowd of keys whose runs wrap past the end of the index. Snapshot copies get an
    /// index (`ensure_index`) and carry on as the table.
    #[test]
    fn a_table_matches_a_model_through_growth_removals_retain_and_copies() {
        const STEPS: usize = 1_500_000;
        let keys = key_pool(200, 6_000);
        let mut rng = Rng(0x5eed_0001);
        let mut table: Table<u64> = Table::default();
        let mut model: HashMap<TxnKey, u64> = HashMap::new();
        let (mut grows, mut max_slots, mut longest_shift) = (0, 0, 0);
        let mut target = 0;
        for step in 0..STEPS {
            if step % 60_000 == 0 {
                target = [0, 40, 700, 3_000, 6_000][rng.below(5)];
            }
            let k = keys[rng.below(keys.len())];
            let hash = hash_of(&k);
            let grow_bias = if model.len() < target { 80 } else { 20 };
            match rng.below(100) {
                0..=59 if rng.chance(grow_bias) => {
                    let before = table.slots.len();
                    let v = step as u64;
                    assert_eq!(table.insert(k, hash, v), model.insert(k, v), "step {step}");
                    if table.slots.len() != before {
                        grows += 1;
                        check_index(&table);
                    }
                    let (pos, _) = table.find(&k, hash).expect("inserted");
                    check_runs(&table.slots, pos, pos);
                }
                0..=59 => {
                    let found = table.find(&k, hash);
                    let end = found.map(|(pos, _)| run_end(&table.slots, pos));
                    let last = (!table.is_empty()).then(|| table.entries.at(table.len() - 1).0);
                    assert_eq!(table.remove(&k, hash), model.remove(&k), "step {step}");
                    if let (Some((pos, _)), Some(end)) = (found, end) {
                        longest_shift = longest_shift.max(end.wrapping_sub(pos) & table.mask());
                        check_runs(&table.slots, pos, end);
                        // The entry that moved into the removed one's place is found there.
                        let last = last.expect("a key was found");
                        if last != k {
                            assert_eq!(
                                table.find(&last, hash_of(&last)).map(|f| f.1),
                                found.map(|f| f.1)
                            );
                        }
                    }
                }
                60..=97 => assert_eq!(table.get(&k, hash), model.get(&k), "step {step}"),
                98 => table.warm(hash),
                _ => {}
            }
            max_slots = max_slots.max(table.slots.len());
            if step % 4_096 == 0 {
                check_index(&table);
                check_against(&table, &model, &keys);
            }
            if step % 75_000 == 74_999 {
                let cut = rng.below(100) as u64;
                table.retain(|k, v| {
                    *v = v.wrapping_add(1);
                    (k.0[3] as u64 + *v) % 100 >= cut
                });
                model.retain(|k, v| {
                    *v = v.wrapping_add(1);
                    (k.0[3] as u64 + *v) % 100 >= cut
                });
                check_index(&table);
                check_against(&table, &model, &keys);
            }
            if step % 50_000 == 25_000 {
                let mut copy = table.share();
                assert!(copy.slots.is_empty());
                for k in keys.iter().step_by(7) {
                    assert_eq!(copy.get(k, hash_of(k)), model.get(k));
                }
                copy.ensure_index();
                check_index(&copy);
                check_against(&copy, &model, &keys);
                if rng.chance(50) {
                    table = copy;
                }
            }
        }
        check_index(&table);
        check_against(&table, &model, &keys);
        assert!(
            max_slots >= 16_384 && grows >= 20,
            "slots {max_slots}, grows {grows}"
        );
        assert!(longest_shift >= 16, "runs too short: {longest_shift}");
    }

    fn check_map(map: &KeyMap<u64>, model: &HashMap<TxnKey, u64>) {
        assert_eq!(map.len(), model.len());
        let mut all: Vec<(TxnKey, u64)> = map.iter().map(|(k, v)| (*k, *v)).collect();
        let mut expected: Vec<(TxnKey, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        all.sort_unstable();
        expected.sort_unstable();
        assert_eq!(all, expected);
    }

    /// The whole map: 256 segments grow to about 500 keys each (16 to 1 024 slots) and
    /// shrink, with `insert_if_absent`, `retain`, snapshot copies read (by scanning) while the
    /// map moves on, then written (an index built on the first write of each segment).
    #[test]
    fn a_key_map_matches_a_model_with_snapshots_and_retain() {
        const STEPS: usize = 1_000_000;
        const SPACE: usize = 400_000;
        let mut rng = Rng(0x5eed_0002);
        let mut map: KeyMap<u64> = KeyMap::default();
        let mut model: HashMap<TxnKey, u64> = HashMap::new();
        let mut snapshot: Option<(KeyMap<u64>, HashMap<TxnKey, u64>)> = None;
        let mut largest = 0;
        for step in 0..STEPS {
            // Up to about 130 000 keys (500 a segment), down to a few hundred, up again.
            let target = [200_000, 300, 100_000, 5_000][step / 250_000];
            let k = key_of(rng.below(SPACE) as u64);
            let v = step as u64;
            let grow_bias = if model.len() < target { 85 } else { 15 };
            match rng.below(100) {
                0..=69 if rng.chance(grow_bias) => {
                    assert_eq!(map.insert(k, v), model.insert(k, v), "step {step}");
                }
                0..=69 => assert_eq!(map.remove(&k), model.remove(&k), "step {step}"),
                70..=79 => {
                    let absent = !model.contains_key(&k);
                    assert_eq!(map.insert_if_absent(k, || v), absent, "step {step}");
                    model.entry(k).or_insert(v);
                }
                80..=98 => assert_eq!(map.get(&k), model.get(&k), "step {step}"),
                _ => map.warm(&k),
            }
            if step % 10_000 == 0 {
                largest = map
                    .segments
                    .iter()
                    .map(|s| s.slots.len())
                    .fold(largest, usize::max);
            }
            if step % 200_000 == 150_000 {
                let cut = rng.below(10) as u64;
                map.retain(|_, v| *v % 10 >= cut);
                model.retain(|_, v| *v % 10 >= cut);
                check_map(&map, &model);
            }
            if step % 100_000 == 40_000 {
                snapshot = Some((map.share(), model.clone()));
            }
            if step % 100_000 == 90_000 {
                let (mut copy, mut copy_model) = snapshot.take().expect("taken at 40 000");
                check_map(&copy, &copy_model);
                for _ in 0..300 {
                    let k = key_of(rng.below(SPACE) as u64);
                    assert_eq!(copy.get(&k), copy_model.get(&k));
                }
                for i in 0..20_000u64 {
                    let k = key_of(rng.below(SPACE) as u64);
                    if rng.chance(50) {
                        assert_eq!(copy.insert(k, i), copy_model.insert(k, i));
                    } else {
                        assert_eq!(copy.remove(&k), copy_model.remove(&k));
                    }
                    copy.warm(&k);
                }
                check_map(&copy, &copy_model);
                for segment in copy.segments.iter().filter(|s| !s.slots.is_empty()) {
                    check_index(segment);
                }
                check_map(&map, &model);
            }
        }
        check_map(&map, &model);
        for segment in map.segments.iter() {
            check_index(segment);
        }
        assert!(largest >= 1_024, "segments too small: {largest}");
    }
}
