//! Card routing: the keyed PAN hash and the read-mostly index from it to the card.
//!
//! The switch never stores a PAN: a card is known by `blake3_keyed(key, pan_digits)` and its
//! last four digits. The key is 32 random bytes in `<data_dir>/pan_hash.key` (mode 0600),
//! created at the first start. The index is a `DashMap` read by every authorization (a shard
//! read lock on one bucket, no write) and written only when the admin API creates a card and
//! at start-up when it is rebuilt from the recovered shards. The card id carries its shard, so
//! one lookup routes a request.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use dashmap::DashMap;

use crate::domain::CardId;

pub const PAN_HASH_KEY_FILE: &str = "pan_hash.key";
pub const PAN_HASH_LEN: usize = 32;

/// Hashes PANs with the installation's secret key. `Debug` never shows the key.
#[derive(Clone)]
pub struct PanHasher {
    key: [u8; 32],
}

impl std::fmt::Debug for PanHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PanHasher(..)")
    }
}

impl PanHasher {
    pub fn new(key: [u8; 32]) -> Self {
        PanHasher { key }
    }

    /// Loads the key from the data directory, creating it (0600, fsynced) on first start.
    pub fn load_or_create(data_dir: &Path) -> io::Result<PanHasher> {
        let path = data_dir.join(PAN_HASH_KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} must hold exactly 32 bytes", path.display()),
                    )
                })?;
                Ok(PanHasher::new(key))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(io::Error::other)?;
                write_secret_file(&path, &key)?;
                Ok(PanHasher::new(key))
            }
            Err(e) => Err(e),
        }
    }

    /// The keyed hash of a PAN given as ASCII digits.
    pub fn hash(&self, pan_digits: &[u8]) -> [u8; PAN_HASH_LEN] {
        *blake3::keyed_hash(&self.key, pan_digits).as_bytes()
    }
}

/// Writes a file readable only by its owner, fsyncs it and its directory.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Marks a hash claimed by a card creation in progress.
const RESERVED: CardId = CardId(u64::MAX);

/// Hashes the index's keys by their first eight bytes. A key is already the output of a
/// keyed hash (`PanHasher`): uniform, and unknown to whoever picks the card number, so a
/// second hash over it (SipHash, the map's default) would only cost time on every
/// authorization, not make collisions any harder to reach.
#[derive(Clone, Copy, Default)]
struct KeyPrefix(u64);

impl std::hash::Hasher for KeyPrefix {
    fn finish(&self) -> u64 {
        self.0
    }

    /// The key's bytes (a `[u8; 32]` is written as its length, then its bytes in one go).
    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }

    /// The length every key shares: it tells no two keys apart.
    fn write_usize(&mut self, _: usize) {}
}

type KeyPrefixState = std::hash::BuildHasherDefault<KeyPrefix>;

/// PAN hash → card. Read on every authorization, written by card creation only.
#[derive(Default)]
pub struct CardIndex {
    map: DashMap<[u8; PAN_HASH_LEN], CardId, KeyPrefixState>,
}

impl CardIndex {
    pub fn with_capacity(cards: usize) -> Self {
        CardIndex {
            map: DashMap::with_capacity_and_hasher(cards, KeyPrefixState::default()),
        }
    }

    pub fn get(&self, pan_hash: &[u8; PAN_HASH_LEN]) -> Option<CardId> {
        self.map
            .get(pan_hash)
            .map(|entry| *entry)
            .filter(|card| *card != RESERVED)
    }

    /// Claims a hash for a card being created; false if a card (or another creation) has it.
    /// Two concurrent creations of one number cannot both pass.
    pub fn reserve(&self, pan_hash: [u8; PAN_HASH_LEN]) -> bool {
        match self.map.entry(pan_hash) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(slot) => {
                slot.insert(RESERVED);
                true
            }
        }
    }

    /// Gives up a reservation whose creation failed.
    pub fn release(&self, pan_hash: &[u8; PAN_HASH_LEN]) {
        self.map.remove_if(pan_hash, |_, card| *card == RESERVED);
    }

    pub fn contains(&self, pan_hash: &[u8; PAN_HASH_LEN]) -> bool {
        self.map.contains_key(pan_hash)
    }

    /// Points the hash at `card` (a replacement card with the same number takes it over).
    pub fn insert(&self, pan_hash: [u8; PAN_HASH_LEN], card: CardId) {
        self.map.insert(pan_hash, card);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_with_mode_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = PanHasher::load_or_create(dir.path()).unwrap();
        let meta = fs::metadata(dir.path().join(PAN_HASH_KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let b = PanHasher::load_or_create(dir.path()).unwrap();
        assert_eq!(a.hash(b"4242424242424242"), b.hash(b"4242424242424242"));
        assert_ne!(a.hash(b"4242424242424242"), a.hash(b"4242424242424241"));
        assert_eq!(format!("{a:?}"), "PanHasher(..)");
    }

    #[test]
    fn a_key_of_the_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(PAN_HASH_KEY_FILE), b"short").unwrap();
        let err = PanHasher::load_or_create(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn reserve_release_and_insert() {
        let index = CardIndex::default();
        let h = [7u8; 32];
        assert!(index.reserve(h));
        assert!(!index.reserve(h));
        assert_eq!(index.get(&h), None);
        index.release(&h);
        assert!(index.reserve(h));
        index.insert(h, CardId(42));
        assert_eq!(index.get(&h), Some(CardId(42)));
        index.release(&h);
        assert_eq!(index.get(&h), Some(CardId(42)));
        assert!(!index.reserve(h));
    }

    /// The index hashes a key by its first eight bytes, so keys that differ only after them
    /// share a hash and are still told apart by the map.
    #[test]
    fn keys_hash_by_their_first_eight_bytes() {
        use std::hash::BuildHasher;
        let state = KeyPrefixState::default();
        let mut a = [0u8; 32];
        a[..8].copy_from_slice(&0x0123_4567_89ab_cdef_u64.to_le_bytes());
        assert_eq!(state.hash_one(a), 0x0123_4567_89ab_cdef);
        let mut b = a;
        b[31] = 1;
        assert_eq!(state.hash_one(b), state.hash_one(a));
        let index = CardIndex::with_capacity(4);
        index.insert(a, CardId(1));
        index.insert(b, CardId(2));
        assert_eq!(
            (index.get(&a), index.get(&b)),
            (Some(CardId(1)), Some(CardId(2)))
        );
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn different_keys_give_different_hashes() {
        let a = PanHasher::new([1; 32]);
        let b = PanHasher::new([2; 32]);
        assert_ne!(a.hash(b"4000000000000002"), b.hash(b"4000000000000002"));
    }
}
