//! Writer behaviour beyond faults: completions only after durability and in order, buffer
//! recycling, empty batches, the `none` fsync policy, and restarting on an existing log.

mod wal_common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authswitch::wal::{
    encode_record, recover, Batch, CommitMode, Completion, FsyncPolicy, RecoverOptions, Recovered,
    WalConfig, WalFailed, WalWriter,
};
use wal_common::{gate, Gate};

/// Records (lsn, result, durable_lsn seen at completion time).
type Log = Arc<Mutex<Vec<(u64, Result<(), WalFailed>, u64)>>>;

struct Done {
    lsn: u64,
    log: Log,
    durable: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl Completion for Done {
    fn complete(self, result: Result<(), WalFailed>) {
        let durable = (self.durable)();
        self.log.lock().unwrap().push((self.lsn, result, durable));
    }
}

fn wait_for(log: &Log, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.lock().unwrap().len() < count {
        assert!(Instant::now() < deadline, "completions did not arrive");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn completions_in_order_only_after_durable_and_buffers_recycled() {
    completions_in_order(CommitMode::Thread);
}

#[test]
fn inline_commit_completes_each_batch_before_submit_returns() {
    completions_in_order(CommitMode::Inline);
}

fn completions_in_order(commit: CommitMode) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        commit,
        ..WalConfig::new(dir.path(), 0)
    };
    let writer = Arc::new(WalWriter::<Done>::start(cfg, &Recovered::empty()).unwrap());
    let log = Log::default();
    let weak = Arc::downgrade(&writer);
    let durable: Arc<dyn Fn() -> u64 + Send + Sync> =
        Arc::new(move || weak.upgrade().map_or(u64::MAX, |w| w.durable_lsn()));
    let mut lsn = 1;
    for _ in 0..20 {
        let mut bytes = writer.buffer();
        let mut completions = writer.completions_buffer();
        assert!(bytes.is_empty() && completions.is_empty());
        for _ in 0..5 {
            encode_record(&mut bytes, lsn, 0, &[7u8; 50]);
            completions.push(Done {
                lsn,
                log: Arc::clone(&log),
                durable: Arc::clone(&durable),
            });
            lsn += 1;
        }
        writer.submit(Batch {
            bytes,
            last_lsn: lsn - 1,
            completions,
        });
        if commit == CommitMode::Inline {
            // Written, synced and completed on this thread before submit returned.
            assert_eq!(log.lock().unwrap().len() as u64, lsn - 1);
            assert_eq!(writer.durable_lsn(), lsn - 1);
        }
    }
    wait_for(&log, 100);
    assert_eq!(writer.durable_lsn(), 100);
    for (i, (l, result, durable_at_completion)) in log.lock().unwrap().iter().enumerate() {
        assert_eq!(*l, i as u64 + 1);
        assert_eq!(*result, Ok(()));
        assert!(
            *durable_at_completion >= *l,
            "lsn {l} completed before durable"
        );
    }
    // Recycled buffers come back cleared but with their capacity.
    let recycled = writer.buffer();
    assert!(
        recycled.is_empty() && recycled.capacity() >= 5 * 67,
        "{}",
        recycled.capacity()
    );
    let completions = writer.completions_buffer();
    assert!(completions.is_empty() && completions.capacity() >= 5);
    let Ok(writer) = Arc::try_unwrap(writer) else {
        panic!("writer still shared")
    };
    writer.shutdown();
}

/// A completion that records the durable LSN it saw, after holding the writer thread (which
/// runs completions) when it has a gate, while the test queues more batches.
struct Gated {
    lsn: u64,
    log: Log,
    durable: Arc<dyn Fn() -> u64 + Send + Sync>,
    gate: Option<Gate>,
}

impl Completion for Gated {
    fn complete(self, result: Result<(), WalFailed>) {
        if let Some(gate) = self.gate {
            gate.hold();
        }
        let durable = (self.durable)();
        self.log.lock().unwrap().push((self.lsn, result, durable));
    }
}

#[test]
fn thread_commit_writes_the_batches_queued_during_a_sync_with_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        commit: CommitMode::Thread,
        batch_queue_max: 16,
        ..WalConfig::new(dir.path(), 0)
    };
    let writer = Arc::new(WalWriter::<Gated>::start(cfg, &Recovered::empty()).unwrap());
    let log = Log::default();
    let weak = Arc::downgrade(&writer);
    let durable: Arc<dyn Fn() -> u64 + Send + Sync> =
        Arc::new(move || weak.upgrade().map_or(u64::MAX, |w| w.durable_lsn()));
    let mut lsn = 1;
    // One batch of `records` payloads of `len` bytes; the first completion holds the writer
    // when `gate` is set.
    let mut batch = |records: usize, len: usize, gate: Option<_>| {
        let mut bytes = Vec::new();
        let mut completions = Vec::new();
        let mut gate = gate;
        for _ in 0..records {
            encode_record(&mut bytes, lsn, 3, &vec![lsn as u8; len]);
            completions.push(Gated {
                lsn,
                log: Arc::clone(&log),
                durable: Arc::clone(&durable),
                gate: gate.take(),
            });
            lsn += 1;
        }
        Batch {
            bytes,
            last_lsn: lsn - 1,
            completions,
        }
    };
    // Small batches: lsn 1 holds the writer; lsn 2..=26 arrive meanwhile, in five batches.
    let (held, keeper) = gate();
    writer.submit(batch(1, 40, Some(held)));
    keeper.wait_held();
    for _ in 0..5 {
        writer.submit(batch(5, 40, None));
    }
    keeper.open();
    wait_for(&log, 26);
    // All five were made durable together: each completion saw the last of them durable.
    for (l, result, durable_at_completion) in log.lock().unwrap().iter() {
        assert_eq!(*result, Ok(()));
        let expected = if *l == 1 { 1 } else { 26 };
        assert_eq!(*durable_at_completion, expected, "lsn {l}");
    }

    // Batches too big to share one write (two of 600 KB: more than WRITE_CHUNK_BYTES
    // together) are still written and synced one at a time.
    let (held, keeper) = gate();
    writer.submit(batch(1, 40, Some(held)));
    keeper.wait_held();
    writer.submit(batch(1, 600_000, None));
    writer.submit(batch(1, 600_000, None));
    writer.submit(batch(2, 40, None));
    keeper.open();
    wait_for(&log, 31);
    let seen: Vec<(u64, u64)> = log.lock().unwrap()[26..]
        .iter()
        .map(|(l, _, d)| (*l, *d))
        .collect();
    // 27 alone (it held the writer); 28 alone; 29 with the two small records behind it.
    assert_eq!(seen, vec![(27, 27), (28, 28), (29, 31), (30, 31), (31, 31)]);

    let Ok(writer) = Arc::try_unwrap(writer) else {
        panic!("writer still shared")
    };
    writer.shutdown();
    let mut lsns = Vec::new();
    let rec = recover(dir.path(), &RecoverOptions::default(), |lsn, kind, p| {
        assert_eq!(kind, 3);
        assert!(p.iter().all(|&b| b == lsn as u8), "lsn {lsn} payload");
        lsns.push(lsn);
        Ok(())
    })
    .unwrap();
    assert_eq!(lsns, (1..=31).collect::<Vec<_>>());
    assert_eq!(rec.next_lsn, 32);
}

#[test]
fn empty_batch_completes_and_none_policy_still_persists_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        fsync: FsyncPolicy::None,
        ..WalConfig::new(dir.path(), 0)
    };
    let writer = WalWriter::<Done>::start(cfg, &Recovered::empty()).unwrap();
    let log = Log::default();
    let durable: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::new(|| 0);
    let done = |lsn| Done {
        lsn,
        log: Arc::clone(&log),
        durable: Arc::clone(&durable),
    };
    writer.submit(Batch {
        bytes: Vec::new(),
        last_lsn: 0,
        completions: vec![done(0)],
    });
    let mut bytes = Vec::new();
    encode_record(&mut bytes, 1, 9, b"one");
    encode_record(&mut bytes, 2, 9, b"two");
    writer.submit(Batch {
        bytes,
        last_lsn: 2,
        completions: vec![done(1), done(2)],
    });
    writer.shutdown();
    let results: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(l, r, _)| (*l, *r))
        .collect();
    assert_eq!(results, vec![(0, Ok(())), (1, Ok(())), (2, Ok(()))]);
    let mut seen = Vec::new();
    let rec = recover(dir.path(), &RecoverOptions::default(), |lsn, kind, p| {
        seen.push((lsn, kind, p.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![(1, 9, b"one".to_vec()), (2, 9, b"two".to_vec())]);
    assert_eq!(rec.next_lsn, 3);
}

#[test]
fn config_defaults_and_payload_limit() {
    let cfg = WalConfig::new("/x", 7);
    assert_eq!(cfg.segment_bytes_max, 64 << 20);
    assert_eq!(cfg.fsync, FsyncPolicy::Always);
    assert_eq!(cfg.payload_len_max(), (1 << 20) - 9);
    assert_eq!(cfg.recover_options().record_len_max, 1 << 20);
    assert!(cfg.fault_plan.is_none());
}

#[test]
fn bad_config_is_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [
        WalConfig {
            batch_queue_max: 0,
            ..WalConfig::new(dir.path(), 0)
        },
        WalConfig {
            segment_bytes_max: 0,
            ..WalConfig::new(dir.path(), 0)
        },
        WalConfig {
            record_len_max: 8,
            ..WalConfig::new(dir.path(), 0)
        },
    ] {
        let err = WalWriter::<Done>::start(cfg, &Recovered::empty())
            .err()
            .unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

/// Preallocation end to end: a new log starts plain, moves to the zero-filled spare once it is
/// ready, rotates into further spares, and recovery reads every record back, keeps writing
/// into the zeros after a restart, and cuts a last write that a crash left with a hole.
#[test]
fn preallocated_segments_recover_and_a_torn_last_write_is_cut() {
    const SEGMENT: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        preallocate: true,
        commit: CommitMode::Inline,
        segment_bytes_max: SEGMENT,
        ..WalConfig::new(dir.path(), 0)
    };
    let spare = dir.path().join(authswitch::wal::SPARE_NAME);
    let log = Log::default();
    let durable: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::new(|| 0);
    // Batches of 10 records of 217 bytes (2 170 bytes a batch), LSNs from `first`.
    let submit = |writer: &WalWriter<Done>, first: u64, batches: u64| {
        for b in 0..batches {
            let mut bytes = Vec::new();
            let mut completions = Vec::new();
            for i in 0..10 {
                let lsn = first + b * 10 + i;
                encode_record(&mut bytes, lsn, 3, &[lsn as u8 | 1; 200]);
                completions.push(Done {
                    lsn,
                    log: Arc::clone(&log),
                    durable: Arc::clone(&durable),
                });
            }
            writer.submit(Batch {
                bytes,
                last_lsn: first + b * 10 + 9,
                completions,
            });
        }
    };
    let wait_spare = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&spare).map_or(0, |m| m.len()) < SEGMENT {
            assert!(Instant::now() < deadline, "no spare segment");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Size reached; the sync follows at once.
        std::thread::sleep(Duration::from_millis(200));
    };
    let writer = WalWriter::<Done>::start(cfg.clone(), &Recovered::empty()).unwrap();
    submit(&writer, 1, 1); // into the plain first segment
    wait_spare();
    submit(&writer, 11, 30); // moves to the spare and fills it (30 batches fit)
    wait_spare();
    submit(&writer, 311, 10); // rotates into the next spare
    writer.shutdown();
    assert_eq!(log.lock().unwrap().len(), 410);

    let segments = |dir: &std::path::Path| {
        let mut s: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        s.sort();
        s
    };
    let files = segments(dir.path());
    let sizes: Vec<u64> = files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    // A plain first segment with the one batch (unless the spare beat that batch to it), then
    // preallocated ones of exactly SEGMENT bytes: 30 batches fill one (65 100 of 65 536 bytes).
    assert!(sizes[0] == 2_170 || sizes[0] == SEGMENT, "{sizes:?}");
    assert!(
        sizes.len() >= 2 && sizes[1..].iter().all(|&s| s == SEGMENT),
        "{sizes:?}"
    );

    let replay = |dir: &std::path::Path| {
        let mut lsns = Vec::new();
        let rec = recover(dir, &RecoverOptions::default(), |lsn, _, payload| {
            assert_eq!(payload, &[lsn as u8 | 1; 200][..]);
            lsns.push(lsn);
            Ok(())
        })
        .unwrap();
        (lsns, rec)
    };
    let (lsns, rec) = replay(dir.path());
    assert_eq!(lsns, (1..=410).collect::<Vec<u64>>());
    assert_eq!((rec.next_lsn, rec.truncated_bytes), (411, 0));
    assert!(!spare.exists(), "recovery removes a leftover spare");

    // A restart writes on into the zeros of the preallocated tail.
    let tail = files.last().unwrap().clone();
    let writer = WalWriter::<Done>::start(cfg, &rec).unwrap();
    submit(&writer, 411, 2);
    writer.shutdown();
    assert_eq!(std::fs::metadata(&tail).unwrap().len(), SEGMENT);
    let (lsns, rec) = replay(dir.path());
    assert_eq!(lsns.len(), 430);
    assert_eq!(rec.next_lsn, 431);

    // A crash that left the last write (LSNs 421..=430) with a hole of one zero sector, with
    // records of the same write after it on disk: cut at the record with the hole.
    let mut bytes = std::fs::read(&tail).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let write_start = end - 2_170;
    let hole = (write_start + 600).div_ceil(512) * 512;
    bytes[hole..hole + 512].fill(0);
    std::fs::write(&tail, &bytes).unwrap();
    let first_cut = 420 + (hole - write_start) / 217 + 1;
    let (lsns, rec) = replay(dir.path());
    assert_eq!(lsns.last(), Some(&(first_cut as u64 - 1)));
    assert_eq!(rec.next_lsn, first_cut as u64);
    assert!(rec.truncated_bytes > 0);
}

/// The name and nice value in a thread's /proc stat line (Linux: the nice value is field 19,
/// counted after the parenthesised name, which may itself hold spaces).
#[cfg(target_os = "linux")]
fn name_and_nice(stat: &str) -> (&str, i32) {
    let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    (&stat[open + 1..close], fields[16].parse().unwrap())
}

/// Nice values of this process's threads whose name starts with `prefix`.
#[cfg(target_os = "linux")]
fn nice_of_threads(prefix: &str) -> Vec<i32> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (name, value) = name_and_nice(&stat);
        if name.starts_with(prefix) {
            nice.push(value);
        }
    }
    nice
}

#[cfg(target_os = "linux")]
#[test]
fn background_threads_run_at_the_lowest_priority_and_the_rest_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        preallocate: true,
        commit: CommitMode::Thread,
        segment_bytes_max: 64 * 1024,
        ..WalConfig::new(dir.path(), 7)
    };
    let writer = WalWriter::<Done>::start(cfg, &Recovered::empty()).unwrap();
    let lowered = |prefix: &str| {
        let nice = nice_of_threads(prefix);
        !nice.is_empty() && nice.iter().all(|&n| n == 19)
    };
    // Each thread lowers itself as it starts, and a thread's name is set by the thread itself
    // once it runs: on a busy machine the writer thread may not have run yet when the others
    // have, so wait for all three to show.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(lowered("snap-7") && lowered("walprep-7") && !nice_of_threads("wal-7").is_empty()) {
        assert!(
            Instant::now() < deadline,
            "snap {:?} walprep {:?} wal {:?}",
            nice_of_threads("snap-7"),
            nice_of_threads("walprep-7"),
            nice_of_threads("wal-7")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The writer thread carries requests: it keeps the process's priority, as does this one.
    assert_eq!(nice_of_threads("wal-7"), vec![0]);
    let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    assert_eq!(name_and_nice(&own).1, 0);
    drop(writer);
}
