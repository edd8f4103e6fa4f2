//! Snapshot files: the serialized state of one shard through some LSN, and pruning the WAL
//! files a durable snapshot makes unnecessary.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::file::sync_dir;
use super::segment::{list_dir, snapshot_name, snapshot_tmp_name};

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"ASWSNAP\0";
pub const SNAPSHOT_VERSION: u32 = 2;
pub const SNAPSHOT_HEADER_BYTES: usize = 36;
/// Default bound on a snapshot payload, checked before reading it.
pub const SNAPSHOT_LEN_MAX_DEFAULT: u64 = 4 << 30;

/// Why a snapshot file is not usable; `offset` is where in the file the problem is.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot {file}: offset {offset}: {reason}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("snapshot {file}: {source}")]
    Io { file: PathBuf, source: io::Error },
}

/// Header of a snapshot file, little-endian, followed by the payload:
///
/// ```text
/// offset size field
///      0    8 magic          "ASWSNAP\0"
///      8    4 version        u32, currently 2 (1: before authorizations kept what they count against limits and their chains)
///     12    8 lsn            u64: the state includes every record with lsn <= this
///     20    8 payload_len    u64: bytes of payload after the header
///     28    4 payload_crc32c u32: CRC-32C of the payload
///     32    4 header_crc32c  u32: CRC-32C of bytes 0..32
///     36    n payload
/// ```
fn encode_header(lsn: u64, payload: &[u8]) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut h = [0u8; SNAPSHOT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&lsn.to_le_bytes());
    h[20..28].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[28..32].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let header_crc = crc32c::crc32c(&h[0..32]);
    h[32..36].copy_from_slice(&header_crc.to_le_bytes());
    h
}

/// Writes `snapshot-{lsn}.snap` durably: temp file, fsync, rename, fsync of the directory.
/// The caller guarantees the WAL is durable through `lsn`.
pub fn write_snapshot(dir: &Path, lsn: u64, payload: &[u8]) -> io::Result<PathBuf> {
    let tmp = dir.join(snapshot_tmp_name(lsn));
    let path = dir.join(snapshot_name(lsn));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&encode_header(lsn, payload))?;
    file.write_all(payload)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(path)
}

fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt {
        file: file.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("4 bytes"))
}

/// Reads and checks a snapshot file; returns (lsn, payload). `expected_lsn` is the LSN in the
/// file name, which must match the header.
pub fn read_snapshot(
    path: &Path,
    expected_lsn: u64,
    payload_len_max: u64,
) -> Result<(u64, Vec<u8>), SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        file: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let mut h = [0u8; SNAPSHOT_HEADER_BYTES];
    let got = read_up_to(&mut file, &mut h).map_err(io_err)?;
    if got < SNAPSHOT_HEADER_BYTES {
        return Err(corrupt(
            path,
            got as u64,
            format!("header truncated at {got} bytes"),
        ));
    }
    if h[0..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(path, 0, "bad magic"));
    }
    let (stored, computed) = (le_u32(&h[32..36]), crc32c::crc32c(&h[0..32]));
    if stored != computed {
        return Err(corrupt(
            path,
            32,
            format!("header crc {stored:#010x} != {computed:#010x}"),
        ));
    }
    let version = le_u32(&h[8..12]);
    if version != SNAPSHOT_VERSION {
        return Err(corrupt(path, 8, format!("unsupported version {version}")));
    }
    let lsn = le_u64(&h[12..20]);
    if lsn != expected_lsn {
        return Err(corrupt(
            path,
            12,
            format!("lsn {lsn} but file name says {expected_lsn}"),
        ));
    }
    let payload_len = le_u64(&h[20..28]);
    if payload_len > payload_len_max {
        return Err(corrupt(
            path,
            20,
            format!("payload len {payload_len} > {payload_len_max}"),
        ));
    }
    let mut payload = Vec::with_capacity(payload_len as usize);
    (&mut file)
        .take(payload_len + 1)
        .read_to_end(&mut payload)
        .map_err(io_err)?;
    if payload.len() as u64 != payload_len {
        let at = SNAPSHOT_HEADER_BYTES as u64 + payload.len().min(payload_len as usize) as u64;
        let why = format!(
            "payload is {} bytes, header says {payload_len}",
            payload.len()
        );
        return Err(corrupt(path, at, why));
    }
    let (stored, computed) = (le_u32(&h[28..32]), crc32c::crc32c(&payload));
    if stored != computed {
        let why = format!("payload crc {stored:#010x} != {computed:#010x}");
        return Err(corrupt(path, SNAPSHOT_HEADER_BYTES as u64, why));
    }
    Ok((lsn, payload))
}

fn read_up_to(file: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    // Bounded: every round either fills more of buf or ends.
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What pruning removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub segments: Vec<PathBuf>,
    pub snapshots: Vec<PathBuf>,
}

/// After a snapshot through `lsn` is durable: deletes segments whose records are all <= `lsn`
/// (a segment is known to end where the next one starts, so the last segment always stays)
/// and every snapshot older than `lsn`, then fsyncs the directory.
pub fn prune(dir: &Path, lsn: u64) -> io::Result<Pruned> {
    let listing = list_dir(dir)?;
    let mut pruned = Pruned::default();
    for pair in listing.segments.windows(2) {
        let (next_first_lsn, path) = (pair[1].0, &pair[0].1);
        if next_first_lsn <= lsn.saturating_add(1) {
            fs::remove_file(path)?;
            pruned.segments.push(path.clone());
        }
    }
    for (snap_lsn, path) in &listing.snapshots {
        if *snap_lsn < lsn {
            fs::remove_file(path)?;
            pruned.snapshots.push(path.clone());
        }
    }
    if !pruned.segments.is_empty() || !pruned.snapshots.is_empty() {
        sync_dir(dir)?;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::segment::segment_name;

    #[test]
    fn round_trip_and_exact_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_snapshot(dir.path(), 7, b"state").unwrap();
        assert_eq!(path, dir.path().join(snapshot_name(7)));
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[0..12], b"ASWSNAP\0\x02\0\0\0");
        assert_eq!(
            &bytes[12..28],
            &[7, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&bytes[36..], b"state");
        assert_eq!(
            read_snapshot(&path, 7, 100).unwrap(),
            (7, b"state".to_vec())
        );
        assert!(!dir.path().join(snapshot_tmp_name(7)).exists());
    }

    fn corrupt_offset(bytes: &[u8], expected_lsn: u64, max: u64) -> (u64, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        fs::write(&path, bytes).unwrap();
        match read_snapshot(&path, expected_lsn, max) {
            Err(SnapshotError::Corrupt {
                file,
                offset,
                reason,
            }) => {
                assert_eq!(file, path);
                (offset, reason)
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn every_corruption_names_its_offset() {
        let mut good = encode_header(3, b"payload").to_vec();
        good.extend_from_slice(b"payload");
        let mut flipped = good.clone();
        flipped[40] ^= 0x10;
        assert_eq!(corrupt_offset(&flipped, 3, 100).0, 36);
        let mut bad_header = good.clone();
        bad_header[13] ^= 1;
        assert_eq!(corrupt_offset(&bad_header, 3, 100).0, 32);
        assert_eq!(corrupt_offset(&good[..good.len() - 2], 3, 100).0, 41);
        assert_eq!(corrupt_offset(&good[..20], 3, 100).0, 20);
        assert_eq!(corrupt_offset(&good, 4, 100).0, 12);
        assert_eq!(corrupt_offset(&good, 3, 6).0, 20);
        let mut magic = good.clone();
        magic[0] = b'X';
        assert_eq!(corrupt_offset(&magic, 3, 100), (0, "bad magic".to_string()));
    }

    #[test]
    fn prune_keeps_last_segment_and_newest_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        for lsn in [1, 11, 21] {
            fs::write(dir.path().join(segment_name(lsn)), b"").unwrap();
        }
        write_snapshot(dir.path(), 5, b"a").unwrap();
        write_snapshot(dir.path(), 20, b"b").unwrap();
        let pruned = prune(dir.path(), 20).unwrap();
        assert_eq!(
            pruned.segments,
            vec![
                dir.path().join(segment_name(1)),
                dir.path().join(segment_name(11))
            ]
        );
        assert_eq!(pruned.snapshots, vec![dir.path().join(snapshot_name(5))]);
        let l = list_dir(dir.path()).unwrap();
        assert_eq!(l.segments.len(), 1);
        assert_eq!(l.snapshots.len(), 1);
        // Through 19 the segment starting at 11 still holds record 20.
        let dir2 = tempfile::tempdir().unwrap();
        for lsn in [1, 11, 21] {
            fs::write(dir2.path().join(segment_name(lsn)), b"").unwrap();
        }
        assert_eq!(prune(dir2.path(), 19).unwrap().segments.len(), 1);
    }
}
