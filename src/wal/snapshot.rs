//! Snapshot files: the serialized state of one shard through some LSN, and pruning the WAL
//! files a durable snapshot makes unnecessary.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::file::sync_dir;
use super::segment::{dead_name, list_dir, snapshot_name, snapshot_tmp_name};

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

/// How the snapshot thread spreads its disk work over time. A snapshot of a big shard is tens
/// to hundreds of MiB, and a segment 64 MiB: written, or deleted, in one go, the disk's time
/// for them delays the shard's own fdatasyncs, which every answer waits for. Written piece by
/// piece (each piece synced before the next), or deleted by cutting the file down a piece at
/// a time, with a pause after each piece, the WAL's syncs queue behind one piece at most.
///
/// Measured on this project's VM (ninth session) with a C program that appends 150 bytes and
/// calls fdatasync 3 000 times while another thread works on 64 MiB files: deleting a written
/// 64 MiB file with one unlink gave those syncs a p99.9 of 11-13 ms, cutting it down 1 or 4
/// MiB at a time with 2 ms pauses 1.0-3.6 ms (1.3-2.4 ms with no deletion at all). In the
/// switch at 50 000/s for 30 s with a snapshot every 300 000 records (four in the run),
/// alternating builds: p99 17.5-18.6 ms written and pruned in one go, 3.2-3.5 ms paced
/// (2.0-2.2 ms with no snapshot in the run). What was left then, the shard's own copying of
/// the chunks a snapshot still held, is cut down too (`ledger::keymap`, `ledger::state`).
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Bytes written (and synced) or cut per step.
    pub piece: usize,
    /// Pause after each step.
    pub pause: Duration,
}

impl Pace {
    /// The snapshot thread's pace: 1 MiB pieces, 2 ms apart (100 MiB take about 0.3 s).
    pub const BACKGROUND: Pace = Pace {
        piece: 1 << 20,
        pause: Duration::from_millis(2),
    };
    /// No pauses, one piece (tests and tools).
    pub const AT_ONCE: Pace = Pace {
        piece: usize::MAX,
        pause: Duration::ZERO,
    };
}

/// Writes `snapshot-{lsn}.snap` durably: temp file written at `pace`, fsync, rename, fsync of
/// the directory. The caller guarantees the WAL is durable through `lsn`.
pub fn write_snapshot(dir: &Path, lsn: u64, payload: &[u8], pace: Pace) -> io::Result<PathBuf> {
    let tmp = dir.join(snapshot_tmp_name(lsn));
    let path = dir.join(snapshot_name(lsn));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&encode_header(lsn, payload))?;
    // Bounded by payload.len() / piece steps.
    for piece in payload.chunks(pace.piece.max(1)) {
        file.write_all(piece)?;
        if !pace.pause.is_zero() {
            file.sync_data()?;
            std::thread::sleep(pace.pause);
        }
    }
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(path)
}

/// Deletes `path` at `pace`: renamed first to its dead name (which recovery removes if a crash
/// comes before the end) and the directory synced, so that no WAL listing ever sees a file cut
/// short; then cut down a piece at a time, and unlinked.
fn remove_paced(dir: &Path, path: &Path, pace: Pace) -> io::Result<()> {
    if pace.pause.is_zero() {
        return fs::remove_file(path);
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "WAL file name"))?;
    let dead = dir.join(dead_name(name));
    fs::rename(path, &dead)?;
    sync_dir(dir)?;
    let file = fs::OpenOptions::new().write(true).open(&dead)?;
    let mut len = file.metadata()?.len();
    let piece = pace.piece.max(1) as u64;
    // Bounded by len / piece steps.
    while len > 0 {
        len = len.saturating_sub(piece);
        file.set_len(len)?;
        std::thread::sleep(pace.pause);
    }
    drop(file);
    fs::remove_file(&dead)
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
/// and every snapshot older than `lsn`, at `pace`, then fsyncs the directory.
pub fn prune(dir: &Path, lsn: u64, pace: Pace) -> io::Result<Pruned> {
    let listing = list_dir(dir)?;
    let mut pruned = Pruned::default();
    for pair in listing.segments.windows(2) {
        let (next_first_lsn, path) = (pair[1].0, &pair[0].1);
        if next_first_lsn <= lsn.saturating_add(1) {
            remove_paced(dir, path, pace)?;
            pruned.segments.push(path.clone());
        }
    }
    for (snap_lsn, path) in &listing.snapshots {
        if *snap_lsn < lsn {
            remove_paced(dir, path, pace)?;
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
        let path = write_snapshot(dir.path(), 7, b"state", Pace::AT_ONCE).unwrap();
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
    fn paced_write_and_prune_do_the_same_as_at_once() {
        let pace = Pace {
            piece: 1000,
            pause: Duration::from_millis(1),
        };
        let dir = tempfile::tempdir().unwrap();
        let payload: Vec<u8> = (0..10_500u32).map(|i| (i % 251) as u8).collect();
        let path = write_snapshot(dir.path(), 30, &payload, pace).unwrap();
        assert_eq!(
            read_snapshot(&path, 30, 1 << 20).unwrap(),
            (30, payload.clone())
        );
        write_snapshot(dir.path(), 9, b"old", pace).unwrap();
        for lsn in [1, 11, 31] {
            fs::write(dir.path().join(segment_name(lsn)), vec![7u8; 4_321]).unwrap();
        }
        let pruned = prune(dir.path(), 30, pace).unwrap();
        assert_eq!(
            pruned.segments,
            vec![
                dir.path().join(segment_name(1)),
                dir.path().join(segment_name(11))
            ]
        );
        assert_eq!(pruned.snapshots, vec![dir.path().join(snapshot_name(9))]);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        // Nothing half deleted stays behind; the kept files are whole.
        assert_eq!(left, vec![snapshot_name(30), segment_name(31)]);
        assert_eq!(
            fs::read(dir.path().join(segment_name(31))).unwrap(),
            vec![7u8; 4_321]
        );
    }

    #[test]
    fn prune_keeps_last_segment_and_newest_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        for lsn in [1, 11, 21] {
            fs::write(dir.path().join(segment_name(lsn)), b"").unwrap();
        }
        write_snapshot(dir.path(), 5, b"a", Pace::AT_ONCE).unwrap();
        write_snapshot(dir.path(), 20, b"b", Pace::AT_ONCE).unwrap();
        let pruned = prune(dir.path(), 20, Pace::AT_ONCE).unwrap();
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
        assert_eq!(
            prune(dir2.path(), 19, Pace::AT_ONCE)
                .unwrap()
                .segments
                .len(),
            1
        );
    }
}
