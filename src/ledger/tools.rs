//! `authswitch wal verify|dump`: the WAL tools with the ledger's record decoding.
//!
//! Either a data directory (every `shard-NNN` below it) or one shard directory. Records hold
//! no PAN (cards are named by id; the PAN's keyed hash is printed as such), so a dump is safe
//! to share.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ledger::shard::{decode_command, RECORD_KIND_COMMAND};
use crate::wal;

/// The shard directories of `dir`, or `dir` itself when it is one.
fn shard_dirs(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut shards: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("shard-"))
        })
        .collect();
    shards.sort();
    if shards.is_empty() {
        shards.push(dir.to_path_buf());
    }
    Ok(shards)
}

pub fn verify(dir: &Path) -> Result<(), String> {
    let mut bad = 0;
    for shard in shard_dirs(dir)? {
        let report = wal::verify(&shard).map_err(|e| e.to_string())?;
        let range = match (report.first_lsn, report.last_lsn) {
            (Some(first), Some(last)) => format!("lsn {first}..={last}"),
            _ => "no records".to_string(),
        };
        println!(
            "{}: {} segments, {} records, {range}, {} snapshots",
            shard.display(),
            report.segments,
            report.records,
            report.snapshots.len()
        );
        for snapshot in &report.snapshots {
            if let Some(error) = &snapshot.error {
                println!("  snapshot {}: {error}", snapshot.file.display());
            }
        }
        if let Some(problem) = &report.problem {
            let kind = if problem.torn_tail {
                "torn tail (recovery truncates it)"
            } else {
                "CORRUPT"
            };
            println!(
                "  {kind}: {} at offset {}: {}",
                problem.file.display(),
                problem.offset,
                problem.reason
            );
        }
        if !report.is_recoverable() {
            bad += 1;
        }
    }
    if bad > 0 {
        return Err(format!(
            "{bad} shard(s) would not recover without wal.truncate_corrupt"
        ));
    }
    Ok(())
}

pub fn dump(dir: &Path) -> Result<(), String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for shard in shard_dirs(dir)? {
        let _ = writeln!(out, "# {}", shard.display());
        wal::dump(&shard, &mut out, describe).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One record as text: its time and command (Debug of commands prints no PAN: there is none).
pub fn describe(kind: u8, payload: &[u8]) -> String {
    if kind != RECORD_KIND_COMMAND {
        return format!("unknown kind {kind}");
    }
    match decode_command(payload) {
        Ok((now_s, command)) => format!("t={now_s} {command:?}"),
        Err(error) => format!("undecodable payload: {error}"),
    }
}
