//! Recovery of one shard's WAL directory: newest snapshot, then every later record in LSN
//! order, truncating a torn tail and refusing (or, if told, truncating at) corruption.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{error, warn};

use super::file::sync_dir;
use super::record::{decode_header, decode_record, RecordRef, RECORD_LEN_MAX_DEFAULT};
use super::record::{RECORD_FIXED_BYTES, RECORD_PREFIX_BYTES};
use super::segment::{list_dir, DirListing};
use super::snapshot::{read_snapshot, SnapshotError, SNAPSHOT_LEN_MAX_DEFAULT};

/// Smallest record on disk; bounds the number of records in a buffer.
const RECORD_BYTES_MIN: usize = RECORD_PREFIX_BYTES + RECORD_FIXED_BYTES;
/// Default bound on one segment file read during recovery.
pub const SEGMENT_FILE_BYTES_MAX_DEFAULT: u64 = 1 << 30;

#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// Largest `len` field accepted (see `RecordHeader`); must match the writer's.
    pub record_len_max: u32,
    /// Truncate the log at a corrupt record instead of refusing to start. Loses every record
    /// from there on; for an operator who has decided so.
    pub truncate_corrupt: bool,
    pub snapshot_len_max: u64,
    pub segment_file_bytes_max: u64,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        Self {
            record_len_max: RECORD_LEN_MAX_DEFAULT,
            truncate_corrupt: false,
            snapshot_len_max: SNAPSHOT_LEN_MAX_DEFAULT,
            segment_file_bytes_max: SEGMENT_FILE_BYTES_MAX_DEFAULT,
        }
    }
}

/// The segment the writer continues in after recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentTail {
    pub path: PathBuf,
    pub first_lsn: u64,
    /// Bytes of valid records; the writer appends here.
    pub len_bytes: u64,
}

#[derive(Debug)]
pub struct Recovered {
    /// The newest snapshot: (lsn it covers, payload).
    pub snapshot: Option<(u64, Vec<u8>)>,
    /// LSN the next record must carry.
    pub next_lsn: u64,
    /// Records handed to `apply` (those after the snapshot).
    pub records_replayed: u64,
    /// Where to append; None means the writer starts a new segment at `next_lsn`.
    pub tail: Option<SegmentTail>,
    /// Bytes cut from the end of the log (torn tail, or corruption with `truncate_corrupt`).
    pub truncated_bytes: u64,
}

impl Recovered {
    /// The state of an empty directory.
    pub fn empty() -> Self {
        Self {
            snapshot: None,
            next_lsn: 1,
            records_replayed: 0,
            tail: None,
            truncated_bytes: 0,
        }
    }
}

#[derive(Debug, Error)]
pub enum RecoveryError {
    #[error("{file}: {source}")]
    Io { file: PathBuf, source: io::Error },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("corrupt WAL {file} at offset {offset}: {reason}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("WAL records missing: expected lsn {expected_lsn}, {file} starts at {found_lsn}")]
    Gap {
        file: PathBuf,
        expected_lsn: u64,
        found_lsn: u64,
    },
    #[error("segment {file} is {len_bytes} bytes, more than the {max} allowed")]
    SegmentTooLarge {
        file: PathBuf,
        len_bytes: u64,
        max: u64,
    },
    #[error("applying lsn {lsn} failed: {reason}")]
    Apply { lsn: u64, reason: String },
}

fn io_at(file: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io {
        file: file.to_path_buf(),
        source,
    }
}

/// How scanning one segment's bytes ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// The bytes from `offset` are not a valid record and no valid record follows.
    Torn { offset: u64, reason: String },
    /// The bytes at `offset` are bad and a valid record follows, or the LSN is out of order.
    Corrupt { offset: u64, reason: String },
}

/// Scans `buf` (one segment) from its start, calling `on_record(offset, record)` for each
/// valid record in order. `expected_lsn` is the LSN of the first record and is advanced past
/// each one.
pub(crate) fn scan_segment<E>(
    buf: &[u8],
    expected_lsn: &mut u64,
    record_len_max: u32,
    mut on_record: impl FnMut(u64, RecordRef<'_>) -> Result<(), E>,
) -> Result<(ScanEnd, u64), E> {
    let mut offset = 0usize;
    // Each valid record consumes at least RECORD_BYTES_MIN bytes, so this loop ends.
    while offset < buf.len() {
        let rec = match decode_record(&buf[offset..], record_len_max) {
            Ok(rec) => rec,
            Err(e) => {
                let rest = &buf[offset..];
                if rest.iter().all(|&b| b == 0) {
                    // The zeros a preallocated segment holds beyond its last record.
                    return Ok((ScanEnd::Clean, offset as u64));
                }
                let reason = e.to_string();
                let end = if valid_record_follows(buf, offset, *expected_lsn, record_len_max)
                    && !unfinished_write(buf, offset, record_len_max)
                {
                    ScanEnd::Corrupt {
                        offset: offset as u64,
                        reason,
                    }
                } else {
                    ScanEnd::Torn {
                        offset: offset as u64,
                        reason,
                    }
                };
                return Ok((end, offset as u64));
            }
        };
        if rec.lsn != *expected_lsn {
            let reason = format!("lsn {} where {} was expected", rec.lsn, expected_lsn);
            return Ok((
                ScanEnd::Corrupt {
                    offset: offset as u64,
                    reason,
                },
                offset as u64,
            ));
        }
        on_record(offset as u64, rec)?;
        *expected_lsn += 1;
        offset += rec.total_bytes;
    }
    Ok((ScanEnd::Clean, offset as u64))
}

/// Most bytes the writer has in flight, written but not yet synced (see
/// `writer::WRITE_CHUNK_BYTES`): a crash can leave holes only within that much of the end.
pub(crate) fn unsynced_window(record_len_max: u32) -> usize {
    super::writer::WRITE_CHUNK_BYTES
        .max(record_len_max as usize + super::record::RECORD_PREFIX_BYTES)
}

/// Sector size assumed for torn writes: a write cut by a crash loses whole sectors.
const SECTOR: usize = 512;

/// True if the bad bytes at `from` are what a write cut by a crash leaves in a preallocated
/// (zero-filled) segment: the disk may persist the pages of the last write in any order, so
/// the write can end up with holes, whole zero sectors, ahead of records of the same write that
/// did reach the disk. Such a write was never acknowledged (its sync did not return). It looks
/// like that when everything from `from` to the last non-zero byte of the segment fits within
/// the writer's unsynced window and holds at least one all-zero sector, or starts with one:
/// the write's first sector, of which only the part from `from` is the write's, is all zeros
/// there when it was lost (at least `TORN_HEAD_BYTES_MIN` of it, a record's length and CRC).
/// A bit flip never makes a zero sector or eight zero bytes, and a hole further from the end
/// than one write is corruption.
fn unfinished_write(buf: &[u8], from: usize, record_len_max: u32) -> bool {
    let Some(last) = buf.iter().rposition(|&b| b != 0) else {
        return false;
    };
    if last < from || last - from >= unsynced_window(record_len_max) {
        return false;
    }
    let first_sector = from.div_ceil(SECTOR) * SECTOR;
    let head = &buf[from..first_sector.min(buf.len())];
    let head_lost = head.len() >= TORN_HEAD_BYTES_MIN && head.iter().all(|&b| b == 0);
    head_lost
        || (first_sector..last)
            .step_by(SECTOR)
            .any(|s| s + SECTOR <= buf.len() && buf[s..s + SECTOR].iter().all(|&b| b == 0))
}

/// Zero bytes that, from a record's start to the end of its sector, make a lost sector:
/// the record's length and CRC, which no complete record has all zero.
const TORN_HEAD_BYTES_MIN: usize = 8;

/// True if a complete record with a good CRC and a plausible LSN starts anywhere after `from`.
/// Only called on the error path; the LSN filter keeps CRC work to real candidates.
fn valid_record_follows(buf: &[u8], from: usize, expected_lsn: u64, record_len_max: u32) -> bool {
    let last_start = buf.len().saturating_sub(RECORD_BYTES_MIN);
    (from + 1..=last_start).any(|p| {
        let Ok(h) = decode_header(&buf[p..], record_len_max) else {
            return false;
        };
        let lsn_span = ((p - from) / RECORD_BYTES_MIN) as u64 + 1;
        h.lsn >= expected_lsn
            && h.lsn - expected_lsn <= lsn_span
            && decode_record(&buf[p..], record_len_max).is_ok()
    })
}

/// Reads a whole segment into `buf` (reused between segments), refusing oversized files.
pub(crate) fn read_segment(path: &Path, max: u64, buf: &mut Vec<u8>) -> Result<(), RecoveryError> {
    let file = fs::File::open(path).map_err(io_at(path))?;
    let len_bytes = file.metadata().map_err(io_at(path))?.len();
    if len_bytes > max {
        return Err(RecoveryError::SegmentTooLarge {
            file: path.to_path_buf(),
            len_bytes,
            max,
        });
    }
    buf.clear();
    buf.reserve(len_bytes as usize);
    file.take(max).read_to_end(buf).map_err(io_at(path))?;
    Ok(())
}

/// Cuts a segment to `len_bytes` and makes that durable.
fn truncate_file(path: &Path, len_bytes: u64) -> Result<(), RecoveryError> {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    file.set_len(len_bytes).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

/// Recovers `dir`: loads the newest snapshot, then calls `apply(lsn, kind, payload)` for every
/// record after it, in order. Afterwards the directory is in a state the writer can append to
/// (torn tail cut, leftover snapshot temp files removed).
pub fn recover(
    dir: &Path,
    opts: &RecoverOptions,
    mut apply: impl FnMut(u64, u8, &[u8]) -> Result<(), String>,
) -> Result<Recovered, RecoveryError> {
    let listing = list_dir(dir).map_err(io_at(dir))?;
    remove_temp_files(dir, &listing)?;
    let snapshot = match listing.snapshots.last() {
        Some((lsn, path)) => Some(read_snapshot(path, *lsn, opts.snapshot_len_max)?),
        None => None,
    };
    let snapshot_lsn = snapshot.as_ref().map_or(0, |s| s.0);
    let mut out = Recovered {
        snapshot,
        next_lsn: snapshot_lsn + 1,
        ..Recovered::empty()
    };
    let Some(start) = first_relevant_segment(&listing, snapshot_lsn)? else {
        return Ok(out);
    };
    let segments = &listing.segments[start..];
    let mut expected_lsn = segments[0].0;
    let mut buf = Vec::new();
    for (idx, (name_lsn, path)) in segments.iter().enumerate() {
        if *name_lsn != expected_lsn {
            let reason = format!("segment named lsn {name_lsn}, expected {expected_lsn}");
            if !opts.truncate_corrupt {
                return Err(RecoveryError::Corrupt {
                    file: path.clone(),
                    offset: 0,
                    reason,
                });
            }
            error!(file = %path.display(), %reason, "WAL: segments missing, DISCARDING the rest \
                   of the log as requested (truncate_corrupt)");
            out.truncated_bytes += remove_later_segments(dir, &segments[idx..])?;
            break;
        }
        read_segment(path, opts.segment_file_bytes_max, &mut buf)?;
        let (end, valid_bytes) =
            scan_segment(&buf, &mut expected_lsn, opts.record_len_max, |_, rec| {
                if rec.lsn <= snapshot_lsn {
                    return Ok(());
                }
                out.records_replayed += 1;
                apply(rec.lsn, rec.kind, rec.payload).map_err(|reason| RecoveryError::Apply {
                    lsn: rec.lsn,
                    reason,
                })
            })?;
        let is_last = idx + 1 == segments.len();
        let cut = handle_scan_end(end, path, buf.len() as u64, is_last, opts)?;
        out.tail = Some(SegmentTail {
            path: path.clone(),
            first_lsn: *name_lsn,
            len_bytes: valid_bytes,
        });
        if cut.is_some() {
            out.truncated_bytes = buf.len() as u64 - valid_bytes;
            out.truncated_bytes += remove_later_segments(dir, &segments[idx + 1..])?;
            break;
        }
    }
    finish_tail(&mut out, expected_lsn, snapshot_lsn);
    Ok(out)
}

/// Index of the first segment that can hold `snapshot_lsn + 1`; older ones are covered by the
/// snapshot (pruning may not have run yet).
fn first_relevant_segment(
    listing: &DirListing,
    snapshot_lsn: u64,
) -> Result<Option<usize>, RecoveryError> {
    let Some((first_lsn, first_path)) = listing.segments.first() else {
        return Ok(None);
    };
    match listing
        .segments
        .iter()
        .rposition(|(lsn, _)| *lsn <= snapshot_lsn + 1)
    {
        Some(idx) => Ok(Some(idx)),
        None => Err(RecoveryError::Gap {
            file: first_path.clone(),
            expected_lsn: snapshot_lsn + 1,
            found_lsn: *first_lsn,
        }),
    }
}

/// Decides what a scan end means; returns Some(offset) if the segment was cut there.
fn handle_scan_end(
    end: ScanEnd,
    path: &Path,
    file_len: u64,
    is_last: bool,
    opts: &RecoverOptions,
) -> Result<Option<u64>, RecoveryError> {
    match end {
        ScanEnd::Clean => Ok(None),
        ScanEnd::Torn { offset, reason } if is_last => {
            warn!(
                file = %path.display(), offset, dropped_bytes = file_len - offset, %reason,
                "WAL: torn record at the end of the log, truncating"
            );
            truncate_file(path, offset)?;
            Ok(Some(offset))
        }
        ScanEnd::Torn { offset, reason } | ScanEnd::Corrupt { offset, reason } => {
            if !opts.truncate_corrupt {
                return Err(RecoveryError::Corrupt {
                    file: path.to_path_buf(),
                    offset,
                    reason,
                });
            }
            error!(
                file = %path.display(), offset, dropped_bytes = file_len - offset, %reason,
                "WAL: CORRUPT record, truncating the log here as requested (truncate_corrupt); \
                 every later record and segment is DISCARDED"
            );
            truncate_file(path, offset)?;
            Ok(Some(offset))
        }
    }
}

/// Deletes segments after a truncation point; returns the bytes they held.
fn remove_later_segments(dir: &Path, later: &[(u64, PathBuf)]) -> Result<u64, RecoveryError> {
    let mut bytes = 0;
    for (_, path) in later {
        bytes += fs::metadata(path).map_err(io_at(path))?.len();
        error!(file = %path.display(), "WAL: removing segment after truncation point");
        fs::remove_file(path).map_err(io_at(path))?;
    }
    if !later.is_empty() {
        sync_dir(dir).map_err(io_at(dir))?;
    }
    Ok(bytes)
}

fn remove_temp_files(dir: &Path, listing: &DirListing) -> Result<(), RecoveryError> {
    for path in &listing.temp_files {
        warn!(file = %path.display(), "WAL: removing a temporary file left by a crash (snapshot, spare segment, or a file being deleted)");
        fs::remove_file(path).map_err(io_at(path))?;
    }
    if !listing.temp_files.is_empty() {
        sync_dir(dir).map_err(io_at(dir))?;
    }
    Ok(())
}

/// Sets `next_lsn`; if the log ends before the snapshot (it was cut), appending to the old
/// tail would leave a gap, so the writer must start a fresh segment at the snapshot.
fn finish_tail(out: &mut Recovered, expected_lsn: u64, snapshot_lsn: u64) {
    if expected_lsn > snapshot_lsn {
        out.next_lsn = expected_lsn;
    } else {
        warn!(
            log_end_lsn = expected_lsn - 1,
            snapshot_lsn, "WAL: log ends before the snapshot; new records start a new segment"
        );
        out.next_lsn = snapshot_lsn + 1;
        out.tail = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::encode_record;

    fn records(lsns: std::ops::Range<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for lsn in lsns {
            encode_record(&mut out, lsn, 1, &[lsn as u8; 20]);
        }
        out
    }

    fn scan(buf: &[u8], first: u64) -> (ScanEnd, u64, Vec<u64>) {
        let mut seen = Vec::new();
        let mut expected = first;
        let (end, valid) = scan_segment::<()>(buf, &mut expected, 1024, |_, r| {
            seen.push(r.lsn);
            Ok(())
        })
        .unwrap();
        (end, valid, seen)
    }

    #[test]
    fn clean_torn_and_corrupt() {
        let buf = records(1..4); // 3 records of 37 bytes
        assert_eq!(scan(&buf, 1), (ScanEnd::Clean, 111, vec![1, 2, 3]));
        let (end, valid, seen) = scan(&buf[..100], 1);
        assert!(matches!(end, ScanEnd::Torn { offset: 74, .. }));
        assert_eq!((valid, seen), (74, vec![1, 2]));
        let mut flipped = buf.clone();
        flipped[40] ^= 1;
        let (end, valid, seen) = scan(&flipped, 1);
        assert!(
            matches!(end, ScanEnd::Corrupt { offset: 37, .. }),
            "{end:?}"
        );
        assert_eq!((valid, seen), (37, vec![1]));
        // Zeros after the last record (a preallocated segment) end the segment cleanly.
        let mut padded = buf.clone();
        padded.resize(4096, 0);
        assert_eq!(scan(&padded, 1), (ScanEnd::Clean, 111, vec![1, 2, 3]));
        // A bit flip with zeros after the log is still corruption.
        let mut flipped_padded = flipped.clone();
        flipped_padded.resize(4096, 0);
        let (end, ..) = scan(&flipped_padded, 1);
        assert!(
            matches!(end, ScanEnd::Corrupt { offset: 37, .. }),
            "{end:?}"
        );
        let (end, ..) = scan(&buf, 2);
        assert_eq!(
            end,
            ScanEnd::Corrupt {
                offset: 0,
                reason: "lsn 1 where 2 was expected".into()
            }
        );
    }

    /// A preallocated segment: records, then zeros to the end.
    fn preallocated(lsns: std::ops::Range<u64>, payload: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for lsn in lsns {
            encode_record(&mut out, lsn, 1, &vec![0xa5; payload]);
        }
        out.resize(len, 0);
        out
    }

    #[test]
    fn a_write_cut_with_holes_is_torn_not_corrupt() {
        // 40 records of 208 bytes; the last "write" is records 31..=40 (from 6240).
        let full = preallocated(1..41, 191, 64 * 1024);
        let write_start: usize = 30 * 208;
        let write_end = 40 * 208;
        // Every sector-aligned hole inside the last write, with the rest of it on disk.
        for hole in (write_start.div_ceil(SECTOR) * SECTOR..write_end - SECTOR).step_by(SECTOR) {
            let mut buf = full.clone();
            buf[hole..hole + SECTOR].fill(0);
            let first_bad = hole / 208;
            let (end, valid, seen) = scan(&buf, 1);
            assert!(
                matches!(end, ScanEnd::Torn { .. }),
                "hole at {hole}: {end:?}"
            );
            assert_eq!(valid as usize, first_bad * 208, "hole at {hole}");
            assert_eq!(seen, (1..=first_bad as u64).collect::<Vec<_>>());
        }
        // The same hole far from the end of the log is corruption: 8000 more records follow.
        let long = preallocated(1..8041, 191, 8040 * 208 + 4096);
        let mut buf = long.clone();
        buf[6656..6656 + SECTOR].fill(0);
        let (end, ..) = scan(&buf, 1);
        assert!(
            matches!(end, ScanEnd::Corrupt { offset: 6656, .. }),
            "{end:?}"
        );
        // A flipped bit in the last write (no zero sector) is corruption as well.
        let mut buf = full.clone();
        buf[write_start + 300] ^= 0x10;
        let (end, ..) = scan(&buf, 1);
        assert!(matches!(end, ScanEnd::Corrupt { .. }), "{end:?}");
    }

    #[test]
    fn a_write_whose_first_sector_or_page_was_lost_is_torn() {
        // The last write starts mid-sector: records 31..=40 from 6240, in sector 6144..6656.
        // Its first sector lost (zeros from 6240), or its first page (zeros to 8192), while
        // the rest of it reached the disk: the tail is cut at 6240, records 1..=30 stay.
        let full = preallocated(1..41, 191, 64 * 1024);
        for lost_end in [6656, 8192] {
            let mut buf = full.clone();
            buf[6240..lost_end].fill(0);
            let (end, valid, seen) = scan(&buf, 1);
            assert!(matches!(end, ScanEnd::Torn { .. }), "{lost_end}: {end:?}");
            assert_eq!((valid, seen), (6240, (1..=30).collect::<Vec<_>>()));
        }
        // Page 0 lost where the write starts in its last sector (19 * 208 = 3952).
        let mut buf = full.clone();
        buf[3952..4096].fill(0);
        let (end, valid, _) = scan(&buf, 1);
        assert!(matches!(end, ScanEnd::Torn { .. }), "{end:?}");
        assert_eq!(valid, 3952);
        // Fewer zero bytes than a length and a CRC is not a lost sector: records of 204
        // bytes, the 6th starting 4 bytes before a sector's end (5 * 204 = 1020), and its
        // first 4 bytes zeroed (what a flipped bit in a small length could leave).
        let mut buf = preallocated(1..41, 187, 64 * 1024);
        assert_eq!(SECTOR - 1020 % SECTOR, 4);
        buf[1020..1024].fill(0);
        let (end, ..) = scan(&buf, 1);
        assert!(
            matches!(end, ScanEnd::Corrupt { offset: 1020, .. }),
            "{end:?}"
        );
        // The same lost head far from the end of the log is corruption.
        let long = preallocated(1..8041, 191, 8040 * 208 + 4096);
        let mut buf = long.clone();
        buf[6240..6656].fill(0);
        let (end, ..) = scan(&buf, 1);
        assert!(
            matches!(end, ScanEnd::Corrupt { offset: 6240, .. }),
            "{end:?}"
        );
    }
}
