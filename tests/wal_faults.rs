//! Storage faults through the fault-injecting file wrapper: a failed write, a failed fsync, a
//! short write and ENOSPC each fail their batch and every later one, never complete anything
//! Ok afterwards, set `failed()`, and leave on disk exactly the records acknowledged before.

mod wal_common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authswitch::wal::{
    encode_record, recover, Batch, FaultPlan, RecoverOptions, Recovered, WalConfig, WalFailReason,
    WalFailed, WalWriter,
};
use wal_common::{gate, submit, submit_and_wait, Done, Gate, Log};

fn wait_for(log: &Log, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.lock().unwrap().len() < count {
        assert!(Instant::now() < deadline, "completions did not arrive");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn recovered_lsns(dir: &Path) -> (Recovered, Vec<u64>) {
    let mut lsns = Vec::new();
    let rec = recover(dir, &RecoverOptions::default(), |lsn, kind, payload| {
        assert_eq!((kind, payload), (1, &lsn.to_le_bytes()[..]));
        lsns.push(lsn);
        Ok(())
    })
    .unwrap();
    (rec, lsns)
}

/// Five batches of three records, handed over one at a time (one write each); the plan lets
/// two batches through and breaks the third.
fn run_fault(plan: &str, reason: WalFailReason, os_error: Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        fault_plan: Some(plan.parse::<FaultPlan>().unwrap()),
        ..WalConfig::new(dir.path(), 3)
    };
    let log = Log::default();
    let writer = WalWriter::start(cfg, &Recovered::empty()).unwrap();
    for batch in 0..5 {
        submit_and_wait(&writer, batch * 3 + 1, batch * 3 + 3, 1, &log);
    }
    let failed = WalFailed {
        reason,
        first_lsn: 7,
        os_error,
    };
    assert_eq!(writer.failed(), Some(failed), "{plan}");
    assert_eq!(writer.durable_lsn(), 6);
    // A batch submitted after the failure is refused too.
    submit(&writer, 16, 16, 1, &log);
    wait_for(&log, 16);
    writer.shutdown();

    let log = log.lock().unwrap();
    let lsns: Vec<u64> = log.iter().map(|(lsn, _)| *lsn).collect();
    assert_eq!(lsns, (1..=16).collect::<Vec<_>>(), "completed in order");
    for (lsn, result) in log.iter() {
        let want = if *lsn <= 6 { Ok(()) } else { Err(failed) };
        assert_eq!(*result, want, "{plan}: lsn {lsn}");
    }

    let (rec, lsns) = recovered_lsns(dir.path());
    assert_eq!(lsns, (1..=6).collect::<Vec<_>>(), "{plan}");
    assert_eq!((rec.next_lsn, rec.truncated_bytes), (7, 0));

    // After a restart without the fault the log continues at 7.
    let log2 = Log::default();
    let writer = WalWriter::start(WalConfig::new(dir.path(), 3), &rec).unwrap();
    submit(&writer, 7, 8, 1, &log2);
    writer.shutdown();
    assert!(log2.lock().unwrap().iter().all(|(_, r)| r.is_ok()));
    assert_eq!(recovered_lsns(dir.path()).1, (1..=8).collect::<Vec<_>>());
}

#[test]
fn failed_write() {
    run_fault("write_fail_after=2", WalFailReason::Write, Some(5));
}

#[test]
fn failed_fsync() {
    run_fault("fsync_fail_after=2", WalFailReason::Fsync, Some(5));
}

#[test]
fn short_write() {
    run_fault("short_write_after=2", WalFailReason::ShortWrite, None);
}

#[test]
fn enospc() {
    run_fault("enospc_after=2", WalFailReason::NoSpace, Some(28));
}

#[test]
fn fault_counts_writes_across_rotated_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        segment_bytes_max: 60, // two 25-byte records per segment
        fault_plan: Some("write_fail_after=3".parse().unwrap()),
        ..WalConfig::new(dir.path(), 0)
    };
    let log = Log::default();
    let writer = WalWriter::start(cfg, &Recovered::empty()).unwrap();
    for lsn in 1..=5 {
        submit_and_wait(&writer, lsn, lsn, 1, &log);
    }
    assert_eq!(
        writer.failed().map(|f| (f.reason, f.first_lsn)),
        Some((WalFailReason::Write, 4))
    );
    writer.shutdown();
    assert_eq!(recovered_lsns(dir.path()).1, vec![1, 2, 3]);
}

/// A completion that logs its result, after holding the writer when it has a gate.
struct Held {
    lsn: u64,
    log: Log,
    gate: Option<Gate>,
}

impl authswitch::wal::Completion for Held {
    fn complete(self, result: Result<(), WalFailed>) {
        if let Some(gate) = self.gate {
            gate.hold();
        }
        self.log.lock().unwrap().push((self.lsn, result));
    }
}

#[test]
fn a_failed_write_of_merged_batches_fails_every_one_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        fault_plan: Some("write_fail_after=1".parse().unwrap()),
        ..WalConfig::new(dir.path(), 0)
    };
    let log = Log::default();
    let writer = WalWriter::<Held>::start(cfg, &Recovered::empty()).unwrap();
    let batch = |from: u64, to: u64, gate: Option<_>| {
        let mut bytes = Vec::new();
        let mut gate = gate;
        let completions = (from..=to)
            .map(|lsn| {
                encode_record(&mut bytes, lsn, 1, &lsn.to_le_bytes());
                Held {
                    lsn,
                    log: Arc::clone(&log),
                    gate: gate.take(),
                }
            })
            .collect();
        Batch {
            bytes,
            last_lsn: to,
            completions,
        }
    };
    // Write 1 (lsn 1..=3) succeeds and its first completion holds the writer while three
    // more batches queue; they share write 2, which fails.
    let (held, keeper) = gate();
    writer.submit(batch(1, 3, Some(held)));
    keeper.wait_held();
    writer.submit(batch(4, 6, None));
    writer.submit(batch(7, 9, None));
    writer.submit(batch(10, 12, None));
    keeper.open();
    wait_for(&log, 12);
    let failed = WalFailed {
        reason: WalFailReason::Write,
        first_lsn: 4,
        os_error: Some(5),
    };
    assert_eq!(writer.failed(), Some(failed));
    writer.shutdown();
    let got = log.lock().unwrap().clone();
    let want: Vec<(u64, Result<(), WalFailed>)> = (1..=12)
        .map(|lsn| (lsn, if lsn <= 3 { Ok(()) } else { Err(failed) }))
        .collect();
    assert_eq!(got, want);
    assert_eq!(recovered_lsns(dir.path()).1, vec![1, 2, 3]);
}

#[test]
fn writer_panic_on_a_malformed_batch_fails_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let writer: WalWriter<Done> =
        WalWriter::start(WalConfig::new(dir.path(), 0), &Recovered::empty()).unwrap();
    submit(&writer, 1, 2, 1, &log);
    wait_for(&log, 2);
    // LSN 5 does not continue the log at 3: a shard bug, the writer asserts.
    let mut bytes = Vec::new();
    encode_record(&mut bytes, 5, 1, b"x");
    writer.submit(Batch {
        bytes,
        last_lsn: 5,
        completions: Vec::new(),
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while writer.failed().is_none() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    let gone = WalFailed {
        reason: WalFailReason::WriterGone,
        first_lsn: 3,
        os_error: None,
    };
    assert_eq!(writer.failed(), Some(gone));
    // Give the dying thread time to close its queue, then a submit is refused at once.
    std::thread::sleep(Duration::from_millis(50));
    submit(&writer, 3, 3, 1, &log);
    assert_eq!(log.lock().unwrap().last(), Some(&(3, Err(gone))));
    writer.shutdown();
    assert_eq!(recovered_lsns(dir.path()).1, vec![1, 2]);
}

mod any_plan {
    use super::*;
    use proptest::prelude::*;

    fn plan_text() -> impl Strategy<Value = String> {
        let names = prop_oneof![
            Just("write_fail_after"),
            Just("short_write_after"),
            Just("enospc_after"),
            Just("fsync_fail_after"),
        ];
        (names, 0u64..8).prop_map(|(name, n)| format!("{name}={n}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever fails when: the records acknowledged Ok are exactly the records recovered,
        /// and no Ok follows an error.
        #[test]
        fn acknowledged_is_exactly_recovered(
            plan in plan_text(),
            sizes in proptest::collection::vec(1u64..6, 1..10),
            segment_bytes_max in 40u64..400,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = WalConfig {
                fault_plan: Some(plan.parse().unwrap()),
                segment_bytes_max,
                ..WalConfig::new(dir.path(), 0)
            };
            let log = Log::default();
            let writer = WalWriter::start(cfg, &Recovered::empty()).unwrap();
            let mut next = 1;
            for size in &sizes {
                submit(&writer, next, next + size - 1, 1, &log);
                next += size;
            }
            writer.shutdown();
            let log = log.lock().unwrap();
            prop_assert_eq!(log.len() as u64, next - 1);
            let acked = log.iter().take_while(|(_, r)| r.is_ok()).count();
            prop_assert!(log[acked..].iter().all(|(_, r)| r.is_err()));
            let (_, lsns) = recovered_lsns(dir.path());
            prop_assert_eq!(lsns, (1..=acked as u64).collect::<Vec<_>>());
        }
    }
}
