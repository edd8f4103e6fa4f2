//! Operator tools over a WAL directory, read-only: `verify` (is it sound, what does it hold)
//! and `dump` (one line per record). The CLI calls these.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::recovery::{read_segment, scan_segment, RecoverOptions, RecoveryError, ScanEnd};
use super::segment::list_dir;
use super::snapshot::read_snapshot;

#[derive(Debug, Error)]
pub enum ToolError {
    #[error("{file}: {source}")]
    Io { file: PathBuf, source: io::Error },
    #[error("segment {file} is {len_bytes} bytes, more than the {max} allowed")]
    SegmentTooLarge {
        file: PathBuf,
        len_bytes: u64,
        max: u64,
    },
    #[error("writing output: {0}")]
    Output(io::Error),
}

/// The first thing wrong in a WAL directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// True if it is a torn tail that recovery truncates by itself.
    pub torn_tail: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub file: PathBuf,
    pub lsn: u64,
    /// None if valid, else what is wrong (with offset).
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub segments: u64,
    pub records: u64,
    pub first_lsn: Option<u64>,
    pub last_lsn: Option<u64>,
    pub snapshots: Vec<SnapshotInfo>,
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// True if recovery would start without being told to truncate.
    pub fn is_recoverable(&self) -> bool {
        let newest_snapshot_ok = self.snapshots.last().is_none_or(|s| s.error.is_none());
        newest_snapshot_ok && self.problem.as_ref().is_none_or(|p| p.torn_tail)
    }
}

fn from_recovery(e: RecoveryError) -> ToolError {
    match e {
        RecoveryError::Io { file, source } => ToolError::Io { file, source },
        RecoveryError::SegmentTooLarge {
            file,
            len_bytes,
            max,
        } => ToolError::SegmentTooLarge {
            file,
            len_bytes,
            max,
        },
        other => unreachable!("read_segment only fails with Io or SegmentTooLarge: {other}"),
    }
}

/// Walks every segment from the oldest, calling `on_record(file, offset, lsn, kind, payload)`,
/// and stops at the first problem.
fn walk(
    dir: &Path,
    opts: &RecoverOptions,
    report: &mut VerifyReport,
    mut on_record: impl FnMut(&Path, u64, u64, u8, &[u8]) -> io::Result<()>,
) -> Result<(), ToolError> {
    let listing = list_dir(dir).map_err(|source| ToolError::Io {
        file: dir.into(),
        source,
    })?;
    for (lsn, path) in &listing.snapshots {
        let error = read_snapshot(path, *lsn, opts.snapshot_len_max)
            .err()
            .map(|e| e.to_string());
        report.snapshots.push(SnapshotInfo {
            file: path.clone(),
            lsn: *lsn,
            error,
        });
    }
    let mut expected = listing.segments.first().map_or(1, |s| s.0);
    // The oldest segment must connect to the newest snapshot (or to lsn 1 without one).
    let covered_through = listing.snapshots.last().map_or(0, |s| s.0);
    if let Some((first_lsn, path)) = listing.segments.first() {
        if *first_lsn > covered_through + 1 {
            let reason = format!("records {}..{} missing", covered_through + 1, first_lsn - 1);
            let problem = Problem {
                file: path.clone(),
                offset: 0,
                reason,
                torn_tail: false,
            };
            report.problem = Some(problem);
            return Ok(());
        }
    }
    let mut buf = Vec::new();
    for (idx, (name_lsn, path)) in listing.segments.iter().enumerate() {
        report.segments += 1;
        if *name_lsn != expected {
            let reason = format!("segment named lsn {name_lsn}, expected {expected}");
            report.problem = Some(Problem {
                file: path.clone(),
                offset: 0,
                reason,
                torn_tail: false,
            });
            return Ok(());
        }
        read_segment(path, opts.segment_file_bytes_max, &mut buf).map_err(from_recovery)?;
        let (end, _) = scan_segment(&buf, &mut expected, opts.record_len_max, |off, rec| {
            report.records += 1;
            report.first_lsn.get_or_insert(rec.lsn);
            report.last_lsn = Some(rec.lsn);
            on_record(path, off, rec.lsn, rec.kind, rec.payload)
        })
        .map_err(ToolError::Output)?;
        let is_last = idx + 1 == listing.segments.len();
        let (offset, reason, torn_tail) = match end {
            ScanEnd::Clean => continue,
            ScanEnd::Torn { offset, reason } => (offset, reason, is_last),
            ScanEnd::Corrupt { offset, reason } => (offset, reason, false),
        };
        report.problem = Some(Problem {
            file: path.clone(),
            offset,
            reason,
            torn_tail,
        });
        return Ok(());
    }
    Ok(())
}

/// Checks a WAL directory without changing it.
pub fn verify(dir: &Path) -> Result<VerifyReport, ToolError> {
    verify_with(dir, &RecoverOptions::default())
}

/// `verify` with explicit limits (they must match the writer's `record_len_max`).
pub fn verify_with(dir: &Path, opts: &RecoverOptions) -> Result<VerifyReport, ToolError> {
    let mut report = VerifyReport::default();
    walk(dir, opts, &mut report, |_, _, _, _, _| Ok(()))?;
    Ok(report)
}

/// What `dump` printed.
pub type DumpSummary = VerifyReport;

/// Writes one line per record: `file offset lsn kind len describe`, then a final line naming
/// the first problem if there is one. `describe(kind, payload)` is supplied by the ledger and
/// must not print PANs.
pub fn dump(
    dir: &Path,
    out: &mut impl Write,
    describe: impl Fn(u8, &[u8]) -> String,
) -> Result<DumpSummary, ToolError> {
    let mut report = VerifyReport::default();
    walk(
        dir,
        &RecoverOptions::default(),
        &mut report,
        |file, offset, lsn, kind, payload| {
            let name = file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            writeln!(
                out,
                "{name} offset={offset} lsn={lsn} kind={kind} len={} {}",
                payload.len(),
                describe(kind, payload)
            )
        },
    )?;
    if let Some(p) = &report.problem {
        let what = if p.torn_tail { "torn tail" } else { "CORRUPT" };
        writeln!(
            out,
            "{what}: {} offset={} {}",
            p.file.display(),
            p.offset,
            p.reason
        )
        .map_err(ToolError::Output)?;
    }
    Ok(report)
}
