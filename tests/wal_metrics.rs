//! The WAL's metrics, observed through a small in-test recorder installed globally (the
//! writer thread records from its own thread): bytes, batch sizes, fsync latency, failures by
//! reason, and the fsync-disabled gauge.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authswitch::wal::{
    encode_record, Batch, Completion, FsyncPolicy, Recovered, WalConfig, WalFailed, WalWriter,
};
use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName};
use metrics::{Metadata, Recorder, SharedString, Unit};

type Store = Arc<Mutex<BTreeMap<String, f64>>>;

/// One metric series; histograms keep `#count` and `#sum`.
struct Series {
    key: String,
    store: Store,
}

impl Series {
    fn add(&self, suffix: &str, value: f64) {
        *self
            .store
            .lock()
            .unwrap()
            .entry(format!("{}{suffix}", self.key))
            .or_default() += value;
    }
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        self.add("", value as f64);
    }
    fn absolute(&self, value: u64) {
        self.store
            .lock()
            .unwrap()
            .insert(self.key.clone(), value as f64);
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        self.add("", value);
    }
    fn decrement(&self, value: f64) {
        self.add("", -value);
    }
    fn set(&self, value: f64) {
        self.store.lock().unwrap().insert(self.key.clone(), value);
    }
}

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        self.add("#count", 1.0);
        self.add("#sum", value);
    }
}

struct TestRecorder(Store);

impl TestRecorder {
    fn series(&self, key: &Key) -> Arc<Series> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let key = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::new(Series {
            key,
            store: Arc::clone(&self.0),
        })
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.series(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.series(key))
    }
}

struct Done(Arc<Mutex<Vec<Result<(), WalFailed>>>>);

fn wait_until_len(results: &Mutex<Vec<Result<(), WalFailed>>>, len: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while results.lock().unwrap().len() < len {
        assert!(Instant::now() < deadline, "completions did not arrive");
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Completion for Done {
    fn complete(self, result: Result<(), WalFailed>) {
        self.0.lock().unwrap().push(result);
    }
}

#[test]
fn wal_metrics_by_shard() {
    let store = Store::default();
    metrics::set_global_recorder(TestRecorder(Arc::clone(&store))).unwrap();
    let get = |k: &str| store.lock().unwrap().get(k).copied();

    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        fault_plan: Some("fsync_fail_after=1".parse().unwrap()),
        ..WalConfig::new(dir.path(), 9)
    };
    let results = Arc::new(Mutex::new(Vec::new()));
    let writer = WalWriter::start(cfg, &Recovered::empty()).unwrap();
    let mut batch1 = Vec::new();
    for lsn in 1..=3 {
        encode_record(&mut batch1, lsn, 0, &[1u8; 10]); // 27 bytes each
    }
    let done = || Done(Arc::clone(&results));
    writer.submit(Batch {
        bytes: batch1,
        last_lsn: 3,
        completions: vec![done()],
    });
    // Batch 1 is synced (and its sync fails) before batch 2 is queued: one batch a write.
    wait_until_len(&results, 1);
    let mut batch2 = Vec::new();
    encode_record(&mut batch2, 4, 0, b"x");
    writer.submit(Batch {
        bytes: batch2,
        last_lsn: 4,
        completions: vec![done()],
    });
    wait_until_len(&results, 2);
    writer.shutdown();
    assert_eq!(get("authswitch_wal_bytes_total{shard=9}"), Some(81.0));
    assert_eq!(
        get("authswitch_wal_batch_records{shard=9}#count"),
        Some(1.0)
    );
    assert_eq!(get("authswitch_wal_batch_records{shard=9}#sum"), Some(3.0));
    assert_eq!(
        get("authswitch_wal_fsync_seconds{shard=9}#count"),
        Some(1.0)
    );
    assert_eq!(
        get("authswitch_wal_failures_total{shard=9,reason=fsync}"),
        Some(1.0)
    );
    assert_eq!(get("authswitch_wal_fsync_disabled{shard=9}"), None);

    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        fsync: FsyncPolicy::None,
        ..WalConfig::new(dir.path(), 10)
    };
    WalWriter::<Done>::start(cfg, &Recovered::empty())
        .unwrap()
        .shutdown();
    assert_eq!(get("authswitch_wal_fsync_disabled{shard=10}"), Some(1.0));
}
