//! Shared by the WAL integration tests: a completion that logs what it was told, and a way to
//! submit a run of small records.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authswitch::wal::{encode_record, Batch, Completion, WalFailed, WalWriter};

/// (lsn, result) of every completion, in the order they completed.
pub type Log = Arc<Mutex<Vec<(u64, Result<(), WalFailed>)>>>;

pub struct Done {
    pub lsn: u64,
    pub log: Log,
}

impl Completion for Done {
    fn complete(self, result: Result<(), WalFailed>) {
        self.log.lock().unwrap().push((self.lsn, result));
    }
}

/// Submits records `from..=to` of `kind` as one batch, each with its LSN as an 8-byte payload
/// (8 + 9 + 8 = 25 bytes a record), each completing into `log`.
pub fn submit(writer: &WalWriter<Done>, from: u64, to: u64, kind: u8, log: &Log) {
    let mut bytes = writer.buffer();
    let mut completions = writer.completions_buffer();
    for lsn in from..=to {
        encode_record(&mut bytes, lsn, kind, &lsn.to_le_bytes());
        completions.push(Done {
            lsn,
            log: Arc::clone(log),
        });
    }
    writer.submit(Batch {
        bytes,
        last_lsn: to,
        completions,
    });
}

/// As `submit`, then waits until the batch's completions have run: the writer in thread mode
/// merges batches queued while it syncs into one write, so a test that counts writes (fault
/// plans, segment bounds, per-batch metrics) hands over one batch at a time.
pub fn submit_and_wait(writer: &WalWriter<Done>, from: u64, to: u64, kind: u8, log: &Log) {
    let before = log.lock().unwrap().len();
    submit(writer, from, to, kind, log);
    let want = before + (to - from + 1) as usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.lock().unwrap().len() < want {
        assert!(Instant::now() < deadline, "completions did not arrive");
        std::thread::sleep(Duration::from_millis(1));
    }
}
