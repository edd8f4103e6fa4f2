//! Names of the files in a shard's WAL directory and listing them in LSN order.
//!
//! `wal-{first_lsn:020}.log` holds records from `first_lsn` on; `snapshot-{lsn:020}.snap` holds
//! the shard state through `lsn`; `*.tmp` are snapshots that were never renamed into place;
//! `*.dead` are segments and snapshots being deleted (see `snapshot::prune`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Files in one WAL directory we care about; anything else is left alone.
pub const DIR_ENTRIES_MAX: usize = 1_000_000;

pub fn segment_name(first_lsn: u64) -> String {
    format!("wal-{first_lsn:020}.log")
}

pub fn snapshot_name(lsn: u64) -> String {
    format!("snapshot-{lsn:020}.snap")
}

pub fn snapshot_tmp_name(lsn: u64) -> String {
    format!("snapshot-{lsn:020}.snap.tmp")
}

/// The name a file takes while it is deleted piece by piece.
pub fn dead_name(name: &str) -> String {
    format!("{name}.dead")
}

fn parse_lsn(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The WAL files of a directory, each list sorted by LSN ascending.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirListing {
    pub segments: Vec<(u64, PathBuf)>,
    pub snapshots: Vec<(u64, PathBuf)>,
    pub temp_files: Vec<PathBuf>,
}

/// Lists the WAL files of `dir`. A missing directory lists as empty.
pub fn list_dir(dir: &Path) -> io::Result<DirListing> {
    let mut listing = DirListing::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
        Err(e) => return Err(e),
    };
    for entry in entries.take(DIR_ENTRIES_MAX) {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if let Some(lsn) = parse_lsn(name, "wal-", ".log") {
            listing.segments.push((lsn, path));
        } else if let Some(lsn) = parse_lsn(name, "snapshot-", ".snap") {
            listing.snapshots.push((lsn, path));
        } else if (name.starts_with("snapshot-") && name.ends_with(".tmp"))
            || ((name.starts_with("snapshot-") || name.starts_with("wal-"))
                && name.ends_with(".dead"))
            || name == super::writer::SPARE_NAME
            || name == super::writer::SPARE_FILLING_NAME
        {
            listing.temp_files.push(path);
        }
    }
    listing.segments.sort();
    listing.snapshots.sort();
    listing.temp_files.sort();
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_parse() {
        assert_eq!(segment_name(1), "wal-00000000000000000001.log");
        assert_eq!(snapshot_name(42), "snapshot-00000000000000000042.snap");
        assert_eq!(
            parse_lsn(&segment_name(u64::MAX), "wal-", ".log"),
            Some(u64::MAX)
        );
        assert_eq!(parse_lsn("wal-1.log", "wal-", ".log"), None);
        assert_eq!(
            parse_lsn("wal-0000000000000000000x.log", "wal-", ".log"),
            None
        );
    }

    #[test]
    fn listing_sorts_and_ignores_others() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            segment_name(30),
            segment_name(1),
            snapshot_name(9),
            snapshot_tmp_name(12),
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        fs::write(dir.path().join("README"), b"").unwrap();
        let l = list_dir(dir.path()).unwrap();
        let lsns: Vec<u64> = l.segments.iter().map(|s| s.0).collect();
        assert_eq!(lsns, vec![1, 30]);
        assert_eq!(l.snapshots, vec![(9, dir.path().join(snapshot_name(9)))]);
        assert_eq!(l.temp_files, vec![dir.path().join(snapshot_tmp_name(12))]);
        assert_eq!(
            list_dir(&dir.path().join("nope")).unwrap(),
            DirListing::default()
        );
    }
}
