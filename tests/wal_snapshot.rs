//! Segment rotation, snapshots (written only once durable, then pruning), a corrupt snapshot,
//! a crash between snapshot temp file and rename, and the operator tools verify and dump.

mod wal_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use authswitch::wal::segment::{dead_name, segment_name, snapshot_name, snapshot_tmp_name};
use authswitch::wal::{
    dump, recover, verify, RecoverOptions, Recovered, RecoveryError, SnapshotError, WalConfig,
    WalWriter,
};
use wal_common::{submit, Done, Log};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn recover_lsns(dir: &Path) -> Result<(Recovered, Vec<u64>), RecoveryError> {
    let mut lsns = Vec::new();
    let rec = recover(dir, &RecoverOptions::default(), |lsn, _, _| {
        lsns.push(lsn);
        Ok(())
    })?;
    Ok((rec, lsns))
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// 100-byte segments hold 4 records; batches of 2 records.
fn small_segments(dir: &Path) -> WalConfig {
    WalConfig {
        segment_bytes_max: 100,
        ..WalConfig::new(dir, 1)
    }
}

#[test]
fn segments_rotate_at_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let writer = WalWriter::start(small_segments(dir.path()), &Recovered::empty()).unwrap();
    for first in (1..=20).step_by(2) {
        submit(&writer, first, first + 1, 2, &log);
    }
    writer.shutdown();
    let want: Vec<String> = [1, 5, 9, 13, 17].iter().map(|&l| segment_name(l)).collect();
    assert_eq!(names(dir.path()), want);
    for name in &want {
        assert_eq!(fs::metadata(dir.path().join(name)).unwrap().len(), 100);
    }
    let (rec, lsns) = recover_lsns(dir.path()).unwrap();
    assert_eq!(lsns, (1..=20).collect::<Vec<_>>());
    assert_eq!(rec.next_lsn, 21);
    let report = verify(dir.path()).unwrap();
    assert_eq!(
        (
            report.segments,
            report.records,
            report.first_lsn,
            report.last_lsn
        ),
        (5, 20, Some(1), Some(20))
    );
    assert_eq!(report.problem, None);
}

#[test]
fn snapshot_waits_for_durability_then_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let writer = WalWriter::start(small_segments(dir.path()), &Recovered::empty()).unwrap();
    for first in (1..=12).step_by(2) {
        submit(&writer, first, first + 1, 2, &log);
    }
    wait_until("12 durable", || writer.durable_lsn() == 12);
    assert_eq!(writer.last_snapshot_bytes(), 0, "no snapshot yet");
    assert!(writer.snapshot(6, b"state@6".to_vec()));
    let snap6 = dir.path().join(snapshot_name(6));
    wait_until("snapshot 6", || snap6.exists());
    // Segment 1 holds 1..=4 (all <= 6) and is pruned; segment 5 holds 5..=8 and stays.
    // Deleted at the snapshot thread's pace: renamed to its dead name, cut down, unlinked.
    let pruned = vec![snapshot_name(6), segment_name(5), segment_name(9)];
    wait_until("prune", || names(dir.path()) == pruned);
    assert_eq!(writer.last_snapshot_bytes(), b"state@6".len() as u64);

    // A snapshot past the durable LSN is not written until the log gets there.
    assert!(writer.snapshot(16, b"state@16".to_vec()));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!dir.path().join(snapshot_name(16)).exists());
    assert!(!dir.path().join(snapshot_tmp_name(16)).exists());
    submit(&writer, 13, 14, 2, &log);
    submit(&writer, 15, 16, 2, &log);
    submit(&writer, 17, 18, 2, &log);
    wait_until("snapshot 16", || {
        dir.path().join(snapshot_name(16)).exists()
    });
    wait_until("prune 2", || {
        names(dir.path()) == vec![snapshot_name(16), segment_name(17)]
    });
    writer.shutdown();
    // Segment 13 holds 13..=16, all covered by the snapshot.
    assert_eq!(names(dir.path()), vec![snapshot_name(16), segment_name(17)]);

    let (rec, lsns) = recover_lsns(dir.path()).unwrap();
    assert_eq!(rec.snapshot, Some((16, b"state@16".to_vec())));
    assert_eq!(lsns, vec![17, 18]);
    assert_eq!((rec.next_lsn, rec.records_replayed), (19, 2));
    // A log reopened after a snapshot knows its size: the shard's next one waits for it.
    let reopened: WalWriter<Done> = WalWriter::start(small_segments(dir.path()), &rec).unwrap();
    assert_eq!(reopened.last_snapshot_bytes(), b"state@16".len() as u64);
    reopened.shutdown();
}

#[test]
fn snapshot_is_dropped_if_the_log_never_gets_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let writer = WalWriter::start(small_segments(dir.path()), &Recovered::empty()).unwrap();
    submit(&writer, 1, 2, 2, &log);
    assert!(writer.snapshot(3, b"too early".to_vec()));
    writer.shutdown();
    assert_eq!(names(dir.path()), vec![segment_name(1)]);
}

#[test]
fn corrupt_snapshot_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let writer = WalWriter::start(small_segments(dir.path()), &Recovered::empty()).unwrap();
    submit(&writer, 1, 4, 2, &log);
    assert!(writer.snapshot(4, b"shard state".to_vec()));
    writer.shutdown();
    let snap = dir.path().join(snapshot_name(4));
    let mut bytes = fs::read(&snap).unwrap();
    bytes[40] ^= 1;
    fs::write(&snap, &bytes).unwrap();
    match recover_lsns(dir.path()).unwrap_err() {
        RecoveryError::Snapshot(SnapshotError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!((file, offset), (snap.clone(), 36));
            assert!(reason.starts_with("payload crc"), "{reason}");
        }
        other => panic!("expected a corrupt snapshot, got {other:?}"),
    }
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.snapshots.len(), 1);
    let error = report.snapshots[0].error.clone().unwrap();
    assert!(error.contains("offset 36"), "{error}");
    assert!(!report.is_recoverable());
}

#[test]
fn crash_between_snapshot_temp_write_and_rename_is_recoverable() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let writer = WalWriter::start(small_segments(dir.path()), &Recovered::empty()).unwrap();
    submit(&writer, 1, 4, 2, &log);
    assert!(writer.snapshot(4, b"state@4".to_vec()));
    submit(&writer, 5, 10, 2, &log);
    writer.shutdown();
    // shutdown joined the snapshot thread, and lsn 4 was durable, so it is written.
    assert!(dir.path().join(snapshot_name(4)).exists());
    // What a crash after writing the temp file of snapshot 10 (not renamed) leaves behind.
    let tmp = dir.path().join(snapshot_tmp_name(10));
    fs::write(&tmp, b"ASWSNAP\0 half written").unwrap();
    // And what a crash while pruning leaves: files renamed to their dead names, cut short at
    // any byte (here mid-record and mid-header), which must not be read as log or snapshot.
    let dead_segment = dir.path().join(dead_name(&segment_name(1)));
    let dead_snapshot = dir.path().join(dead_name(&snapshot_name(2)));
    fs::write(&dead_segment, [0x55u8; 37]).unwrap();
    fs::write(&dead_snapshot, b"ASWSNAP\0\x02").unwrap();
    let (rec, lsns) = recover_lsns(dir.path()).unwrap();
    assert_eq!(rec.snapshot, Some((4, b"state@4".to_vec())));
    assert_eq!(lsns, (5..=10).collect::<Vec<_>>());
    assert!(!tmp.exists(), "leftover temp file removed");
    assert!(
        !dead_segment.exists() && !dead_snapshot.exists(),
        "{:?}",
        names(dir.path())
    );
}

#[test]
fn verify_and_dump_name_the_first_problem() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let writer = WalWriter::start(WalConfig::new(dir.path(), 0), &Recovered::empty()).unwrap();
    submit(&writer, 1, 3, 2, &log);
    writer.shutdown();
    let seg: PathBuf = dir.path().join(segment_name(1));
    let mut out = Vec::new();
    let report = dump(dir.path(), &mut out, |kind, p| format!("k{kind}:{}", p[0])).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "wal-00000000000000000001.log offset=0 lsn=1 kind=2 len=8 k2:1\n\
         wal-00000000000000000001.log offset=25 lsn=2 kind=2 len=8 k2:2\n\
         wal-00000000000000000001.log offset=50 lsn=3 kind=2 len=8 k2:3\n"
    );
    assert_eq!(report.records, 3);

    let mut bytes = fs::read(&seg).unwrap();
    bytes[30] ^= 0xff; // inside record 2, record 3 still valid
    fs::write(&seg, &bytes).unwrap();
    let report = verify(dir.path()).unwrap();
    let problem = report.problem.clone().unwrap();
    assert_eq!(
        (problem.file, problem.offset, problem.torn_tail),
        (seg.clone(), 25, false)
    );
    assert_eq!((report.records, report.last_lsn), (1, Some(1)));
    assert!(!report.is_recoverable());
    let mut out = Vec::new();
    dump(dir.path(), &mut out, |_, _| String::new()).unwrap();
    let text = String::from_utf8(out).unwrap();
    let last_line = text.lines().last().unwrap();
    assert!(
        last_line.starts_with(&format!(
            "CORRUPT: {} offset=25 crc mismatch",
            seg.display()
        )),
        "{text}"
    );
    // verify changed nothing
    assert_eq!(fs::read(&seg).unwrap(), bytes);
}

/// A spare that is gone when the writer claims it (a stale request made the next one while
/// the last was being claimed, and it went into the segment before `ready` was raised) does
/// not fail the log: the writer starts a plain segment, and every record is durable and read
/// back. Before, the rename's ENOENT failed the WAL for good (answers 96 until a restart).
#[test]
fn a_spare_gone_when_claimed_falls_back_to_a_plain_segment() {
    const SEGMENT: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        preallocate: true,
        segment_bytes_max: SEGMENT,
        ..WalConfig::new(dir.path(), 1)
    };
    let spare = dir.path().join(authswitch::wal::SPARE_NAME);
    let log = Log::default();
    let writer = WalWriter::start(cfg, &Recovered::empty()).unwrap();
    submit(&writer, 1, 2, 2, &log);
    wait_until("the spare", || {
        fs::metadata(&spare).is_ok_and(|m| m.len() == SEGMENT)
    });
    // `ready` follows the rename at once (a directory sync): give it that moment.
    std::thread::sleep(Duration::from_millis(200));
    fs::remove_file(&spare).unwrap();
    for first in (3..=40).step_by(2) {
        submit(&writer, first, first + 1, 2, &log);
    }
    assert!(writer.failed().is_none(), "{:?}", writer.failed());
    writer.shutdown();
    let results = log.lock().unwrap();
    assert_eq!(results.len(), 40);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    drop(results);
    let (rec, lsns) = recover_lsns(dir.path()).unwrap();
    assert_eq!(lsns, (1..=40).collect::<Vec<_>>());
    assert_eq!((rec.next_lsn, rec.truncated_bytes), (41, 0));
}
