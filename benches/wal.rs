//! WAL benchmarks: group commit with fsync=always on a real disk (a tempdir under target/ in
//! /work, not tmpfs) with 100-byte payloads in batches of 1, 16 and 256 records, and replay
//! speed of recovery.
//!
//! Run: `cargo bench --bench wal`. Criterion's "thrpt" is records per second.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_channel::{bounded, Sender};

use authswitch::wal::{
    encode_record, record_bytes, recover, Batch, Completion, FsyncPolicy, RecoverOptions,
    Recovered, WalConfig, WalFailed, WalWriter,
};

const PAYLOAD_BYTES: usize = 100;
const REPLAY_RECORDS: u64 = 200_000;

/// Only the last record of a batch signals; the others have nothing to do.
enum Done {
    Silent,
    Signal(Sender<()>),
}

impl Completion for Done {
    fn complete(self, result: Result<(), WalFailed>) {
        assert!(result.is_ok(), "bench WAL failed: {result:?}");
        if let Done::Signal(tx) = self {
            tx.send(()).expect("bench waiter alive");
        }
    }
}

fn bench_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    tempfile::Builder::new()
        .prefix("wal-bench-")
        .tempdir_in(base)
        .expect("tempdir in target/")
}

/// Submits `batches` batches of `batch_records` back to back (the writer queue pipelines them
/// as the shard thread would) and waits until the last is durable.
fn run_batches(writer: &WalWriter<Done>, next_lsn: &AtomicU64, batches: u64, batch_records: u64) {
    let payload = [0x5au8; PAYLOAD_BYTES];
    let (tx, rx) = bounded(1);
    for b in 0..batches {
        let mut bytes = writer.buffer();
        let mut completions = writer.completions_buffer();
        let first = next_lsn.fetch_add(batch_records, Ordering::Relaxed);
        for lsn in first..first + batch_records {
            encode_record(&mut bytes, lsn, 1, &payload);
            let last = b + 1 == batches && lsn + 1 == first + batch_records;
            completions.push(if last {
                Done::Signal(tx.clone())
            } else {
                Done::Silent
            });
        }
        writer.submit(Batch {
            bytes,
            last_lsn: first + batch_records - 1,
            completions,
        });
    }
    rx.recv().expect("last batch completed");
}

fn group_commit(c: &mut Criterion) {
    println!(
        "bytes per record with a {PAYLOAD_BYTES}-byte payload: {}",
        record_bytes(PAYLOAD_BYTES)
    );
    let mut group = c.benchmark_group("wal_group_commit_fsync_always");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for batch_records in [1u64, 16, 256] {
        let dir = bench_dir();
        let writer = WalWriter::start(WalConfig::new(dir.path(), 0), &Recovered::empty()).unwrap();
        let next_lsn = AtomicU64::new(1);
        group.throughput(Throughput::Elements(batch_records));
        group.bench_function(BenchmarkId::new("batch_records", batch_records), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                run_batches(&writer, &next_lsn, iters, batch_records);
                started.elapsed()
            })
        });
        writer.shutdown();
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let dir = bench_dir();
    let cfg = WalConfig {
        fsync: FsyncPolicy::None,
        ..WalConfig::new(dir.path(), 0)
    };
    let writer = WalWriter::start(cfg, &Recovered::empty()).unwrap();
    let next_lsn = AtomicU64::new(1);
    run_batches(&writer, &next_lsn, REPLAY_RECORDS / 1000, 1000);
    writer.shutdown();
    let mut group = c.benchmark_group("wal_replay");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(REPLAY_RECORDS));
    group.bench_function(BenchmarkId::new("records", REPLAY_RECORDS), |b| {
        b.iter(|| {
            // Touch every payload so the replay cannot be optimized away.
            let mut bytes_seen = 0u64;
            let rec = recover(
                dir.path(),
                &RecoverOptions::default(),
                |_, kind, payload| {
                    bytes_seen += u64::from(kind) + payload.len() as u64;
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(rec.next_lsn, REPLAY_RECORDS + 1);
            assert_eq!(bytes_seen, REPLAY_RECORDS * (PAYLOAD_BYTES as u64 + 1));
        })
    });
    group.finish();
}

criterion_group!(benches, group_commit, replay);
criterion_main!(benches);
