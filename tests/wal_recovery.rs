//! Recovery of a WAL directory after crashes: a torn tail cut at every byte offset, a flipped
//! bit in the middle, corruption in an older segment, and the writer appending afterwards.

mod wal_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use authswitch::wal::{
    encode_record, record_bytes, recover, Batch, RecoverOptions, Recovered, RecoveryError,
    WalConfig, WalWriter,
};
use wal_common::{Done, Log};

/// (lsn, kind, payload) of each replayed record.
type Replayed = Vec<(u64, u8, Vec<u8>)>;

fn payload(lsn: u64) -> Vec<u8> {
    // Varying lengths so record boundaries are not regular.
    (0..(lsn % 7 + 3) as u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(lsn as u8))
        .collect()
}

/// Appends records `from..=to` in batches of `batch` and returns the completion log.
fn append(writer: &WalWriter<Done>, from: u64, to: u64, batch: u64, log: &Log) {
    let mut lsn = from;
    while lsn <= to {
        let mut bytes = writer.buffer();
        let mut completions = writer.completions_buffer();
        let last = (lsn + batch - 1).min(to);
        for l in lsn..=last {
            encode_record(&mut bytes, l, (l % 3) as u8, &payload(l));
            completions.push(Done {
                lsn: l,
                log: Arc::clone(log),
            });
        }
        writer.submit(Batch {
            bytes,
            last_lsn: last,
            completions,
        });
        lsn = last + 1;
    }
}

fn recover_all(dir: &Path, opts: &RecoverOptions) -> Result<(Recovered, Replayed), RecoveryError> {
    let mut seen = Vec::new();
    let rec = recover(dir, opts, |lsn, kind, p| {
        seen.push((lsn, kind, p.to_vec()));
        Ok(())
    })?;
    Ok((rec, seen))
}

fn expected(from: u64, to: u64) -> Replayed {
    (from..=to)
        .map(|l| (l, (l % 3) as u8, payload(l)))
        .collect()
}

/// Writes records 1..=n into a fresh directory through the real writer.
fn write_log(dir: &Path, n: u64, batch: u64) {
    let log = Log::default();
    let writer = WalWriter::start(WalConfig::new(dir, 0), &Recovered::empty()).unwrap();
    append(&writer, 1, n, batch, &log);
    writer.shutdown();
    let log = log.lock().unwrap();
    assert_eq!(log.len() as u64, n);
    assert!(log
        .iter()
        .enumerate()
        .all(|(i, (l, r))| *l == i as u64 + 1 && r.is_ok()));
}

fn only_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs.pop().unwrap()
}

/// Byte offset where record `lsn` starts (records 1.. back to back from offset 0).
fn offset_of(lsn: u64) -> usize {
    (1..lsn).map(|l| record_bytes(payload(l).len())).sum()
}

#[test]
fn torn_tail_at_every_byte_of_last_three_records() {
    let n = 12;
    let src = tempfile::tempdir().unwrap();
    write_log(src.path(), n, 4);
    let seg_name = only_segment(src.path()).file_name().unwrap().to_owned();
    assert_eq!(seg_name.to_str().unwrap(), "wal-00000000000000000001.log");
    let full = fs::read(src.path().join(&seg_name)).unwrap();
    assert_eq!(full.len(), offset_of(n + 1));
    for cut in offset_of(n - 2)..=full.len() {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join(&seg_name);
        fs::write(&seg, &full[..cut]).unwrap();
        let complete = (1..=n).filter(|&l| offset_of(l + 1) <= cut).max().unwrap();
        let (rec, seen) = recover_all(dir.path(), &RecoverOptions::default()).unwrap();
        assert_eq!(seen, expected(1, complete), "cut at {cut}");
        assert_eq!(rec.next_lsn, complete + 1);
        assert_eq!(rec.truncated_bytes, (cut - offset_of(complete + 1)) as u64);
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            offset_of(complete + 1) as u64
        );

        // The writer continues right after the last good record.
        let log = Log::default();
        let writer = WalWriter::start(WalConfig::new(dir.path(), 0), &rec).unwrap();
        append(&writer, complete + 1, complete + 3, 2, &log);
        writer.shutdown();
        assert_eq!(log.lock().unwrap().len(), 3);
        let (rec2, seen2) = recover_all(dir.path(), &RecoverOptions::default()).unwrap();
        assert_eq!(seen2, expected(1, complete + 3), "cut at {cut}");
        assert_eq!((rec2.next_lsn, rec2.truncated_bytes), (complete + 4, 0));
    }
}

#[test]
fn flipped_bit_in_the_middle_is_corrupt_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 10, 3);
    let seg = only_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let len_before = bytes.len();
    bytes[offset_of(5) + 18] ^= 0x04; // a payload byte of record 5
    fs::write(&seg, &bytes).unwrap();

    let err = recover_all(dir.path(), &RecoverOptions::default()).unwrap_err();
    match err {
        RecoveryError::Corrupt {
            file,
            offset,
            reason,
        } => {
            assert_eq!((file, offset), (seg.clone(), offset_of(5) as u64));
            assert!(reason.starts_with("crc mismatch"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        len_before as u64,
        "refusal changes nothing"
    );

    let opts = RecoverOptions {
        truncate_corrupt: true,
        ..RecoverOptions::default()
    };
    let (rec, seen) = recover_all(dir.path(), &opts).unwrap();
    assert_eq!(seen, expected(1, 4));
    assert_eq!(rec.next_lsn, 5);
    assert_eq!(rec.truncated_bytes, (len_before - offset_of(5)) as u64);
    assert_eq!(fs::metadata(&seg).unwrap().len(), offset_of(5) as u64);
}

#[test]
fn corrupt_length_field_in_the_middle_is_corrupt_not_torn() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 10, 10);
    let seg = only_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    bytes[offset_of(3) + 1] = 0x7f; // len of record 3 now far larger than the file
    fs::write(&seg, &bytes).unwrap();
    let err = recover_all(dir.path(), &RecoverOptions::default()).unwrap_err();
    assert!(
        matches!(&err, RecoveryError::Corrupt { offset, .. } if *offset == offset_of(3) as u64),
        "{err:?}"
    );
}

#[test]
fn bad_crc_on_the_final_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 6, 2);
    let seg = only_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    fs::write(&seg, &bytes).unwrap();
    let (rec, seen) = recover_all(dir.path(), &RecoverOptions::default()).unwrap();
    assert_eq!(seen, expected(1, 5));
    assert_eq!(rec.truncated_bytes, record_bytes(payload(6).len()) as u64);
}

#[test]
fn corruption_in_an_older_segment_is_corrupt_even_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        segment_bytes_max: 100,
        ..WalConfig::new(dir.path(), 0)
    };
    let log = Log::default();
    let writer = WalWriter::start(cfg, &Recovered::empty()).unwrap();
    append(&writer, 1, 12, 3, &log);
    writer.shutdown();
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    assert!(segs.len() >= 3, "{segs:?}");
    // Cut the last record of the first segment: a torn tail anywhere but the end is corruption.
    let first = fs::read(&segs[0]).unwrap();
    fs::write(&segs[0], &first[..first.len() - 1]).unwrap();
    let err = recover_all(dir.path(), &RecoverOptions::default()).unwrap_err();
    let at = offset_of(3) as u64; // first segment holds the first batch, records 1..=3
    assert!(
        matches!(&err, RecoveryError::Corrupt { file, offset, .. }
            if *file == segs[0] && *offset == at),
        "{err:?}"
    );

    let opts = RecoverOptions {
        truncate_corrupt: true,
        ..RecoverOptions::default()
    };
    let (rec, seen) = recover_all(dir.path(), &opts).unwrap();
    assert_eq!(seen, expected(1, 2));
    assert_eq!(rec.next_lsn, 3);
    let left: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, vec![segs[0].clone()], "later segments removed");
    // And the writer continues in the truncated segment.
    let log = Log::default();
    let writer = WalWriter::start(WalConfig::new(dir.path(), 0), &rec).unwrap();
    append(&writer, 3, 5, 3, &log);
    writer.shutdown();
    assert_eq!(
        recover_all(dir.path(), &RecoverOptions::default())
            .unwrap()
            .1,
        expected(1, 5)
    );
}

#[test]
fn missing_segment_is_a_named_gap() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        segment_bytes_max: 100,
        ..WalConfig::new(dir.path(), 0)
    };
    let log = Log::default();
    let writer = WalWriter::start(cfg, &Recovered::empty()).unwrap();
    append(&writer, 1, 9, 3, &log);
    writer.shutdown();
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    assert_eq!(segs.len(), 3);
    fs::remove_file(&segs[1]).unwrap();
    let err = recover_all(dir.path(), &RecoverOptions::default()).unwrap_err();
    match err {
        RecoveryError::Corrupt {
            file,
            offset: 0,
            reason,
        } => {
            assert_eq!(file, segs[2]);
            assert_eq!(reason, "segment named lsn 7, expected 4");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let seg3_len = fs::metadata(&segs[2]).unwrap().len();
    let opts = RecoverOptions {
        truncate_corrupt: true,
        ..RecoverOptions::default()
    };
    let (rec, seen) = recover_all(dir.path(), &opts).unwrap();
    assert_eq!(seen, expected(1, 3));
    assert_eq!((rec.next_lsn, rec.truncated_bytes), (4, seg3_len));
    assert!(!segs[2].exists());
    let log = Log::default();
    let cfg = WalConfig {
        segment_bytes_max: 100,
        ..WalConfig::new(dir.path(), 0)
    };
    let writer = WalWriter::start(cfg, &rec).unwrap();
    append(&writer, 4, 5, 2, &log);
    writer.shutdown();
    assert!(segs[1].exists(), "records 4.. went to a new wal-4 segment");
    assert_eq!(
        recover_all(dir.path(), &RecoverOptions::default())
            .unwrap()
            .1,
        expected(1, 5)
    );

    // With the first segment gone too, nothing connects to lsn 1.
    fs::remove_file(&segs[0]).unwrap();
    let err = recover_all(dir.path(), &RecoverOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            RecoveryError::Gap {
                expected_lsn: 1,
                found_lsn: 4,
                ..
            }
        ),
        "{err:?}"
    );
    let problem = authswitch::wal::verify(dir.path())
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(
        (
            problem.file,
            problem.offset,
            problem.reason,
            problem.torn_tail
        ),
        (
            segs[1].clone(),
            0,
            "records 1..3 missing".to_string(),
            false
        )
    );
}

#[test]
fn apply_error_stops_recovery() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 5, 5);
    let err = recover(dir.path(), &RecoverOptions::default(), |lsn, _, _| {
        if lsn == 4 {
            Err("bad command".to_string())
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(matches!(err, RecoveryError::Apply { lsn: 4, ref reason } if reason == "bad command"));
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever bytes are overwritten, recovery never panics and never returns a record
        /// that was not written: it replays a prefix of the log or refuses with Corrupt.
        #[test]
        fn damage_yields_a_prefix_or_corrupt(
            at in 0usize..400,
            junk in proptest::collection::vec(any::<u8>(), 1..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            write_log(dir.path(), 15, 4);
            let seg = only_segment(dir.path());
            let mut bytes = fs::read(&seg).unwrap();
            let at = at % bytes.len();
            for (i, b) in junk.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + i) {
                    *slot = *b;
                }
            }
            fs::write(&seg, &bytes).unwrap();
            match recover_all(dir.path(), &RecoverOptions::default()) {
                Ok((rec, seen)) => {
                    let n = seen.len() as u64;
                    prop_assert_eq!(seen, expected(1, n));
                    prop_assert_eq!(rec.next_lsn, n + 1);
                    // Only damaged records are dropped: the first one not replayed overlaps the
                    // damaged bytes.
                    prop_assert!(n == 15 || offset_of(n + 2) > at);
                }
                Err(RecoveryError::Corrupt { file, offset, .. }) => {
                    prop_assert_eq!(file, seg);
                    prop_assert!(offset as usize <= at + junk.len());
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}
