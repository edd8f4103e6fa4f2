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
//! Serialized exactly as a map (length, then key-value pairs), so snapshots do not depend on
//! the segmenting.

use std::collections::HashMap;
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

type Segment<V> = HashMap<TxnKey, V, BuildHasherDefault<KeyHasher>>;

/// A map from `TxnKey` with the API the ledger uses of `HashMap`. `Clone` is deep; `share`
/// is the cheap copy.
#[derive(Clone)]
pub struct KeyMap<V> {
    segments: Box<[Part<Segment<V>>]>,
    len: usize,
}

/// The segment of `key`: bits 48..56 of the hash. hashbrown takes its bucket from the low
/// bits and its control tag from the top seven, so within a segment the keys stay spread.
fn segment_of(key: &TxnKey) -> usize {
    let hash = BuildHasherDefault::<KeyHasher>::default().hash_one(key);
    (hash >> 48) as usize & (SEGMENTS - 1)
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            segments: (0..SEGMENTS)
                .map(|_| Part::Owned(Segment::default()))
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
        self.segments[segment_of(key)].get().get(key)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&TxnKey, &V)> {
        self.segments.iter().flat_map(|s| s.get().iter())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.segments.iter().flat_map(|s| s.get().values())
    }

    /// A copy that shares every segment with this map: O(segments), no entry is copied.
    pub fn share(&mut self) -> Self {
        KeyMap {
            segments: self.segments.iter_mut().map(Part::share).collect(),
            len: self.len,
        }
    }

    /// The segment of `key`, copied first if a snapshot still shares it.
    fn segment_mut(&mut self, key: &TxnKey) -> &mut Segment<V> {
        self.segments[segment_of(key)].get_mut()
    }

    /// Inserts or replaces; returns the replaced value.
    pub fn insert(&mut self, key: TxnKey, value: V) -> Option<V> {
        let old = self.segment_mut(&key).insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Inserts `make()` unless `key` is present; true if it inserted.
    pub fn insert_if_absent(&mut self, key: TxnKey, make: impl FnOnce() -> V) -> bool {
        if self.get(&key).is_some() {
            return false;
        }
        self.segment_mut(&key).insert(key, make());
        self.len += 1;
        true
    }

    pub fn remove(&mut self, key: &TxnKey) -> Option<V> {
        // Only a key that is there takes its segment back from a snapshot.
        self.get(key)?;
        let old = self.segment_mut(key).remove(key);
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
            counts[segment_of(&key(n))] += 1;
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
