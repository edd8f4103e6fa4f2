//! Shared by the WAL integration tests: a completion that logs what it was told, and a way to
//! submit a run of small records.
#![allow(dead_code)]

use std::sync::{mpsc, Arc, Mutex};
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

/// Held by a completion to stop the writer thread, which runs completions, until the test lets
/// go: meanwhile the test queues batches behind it.
pub struct Gate {
    held: mpsc::Sender<()>,
    open: mpsc::Receiver<()>,
}

/// The test's side of a `Gate`.
pub struct GateKeeper {
    held: mpsc::Receiver<()>,
    open: mpsc::Sender<()>,
}

pub fn gate() -> (Gate, GateKeeper) {
    let (held_tx, held_rx) = mpsc::channel();
    let (open_tx, open_rx) = mpsc::channel();
    (
        Gate {
            held: held_tx,
            open: open_rx,
        },
        GateKeeper {
            held: held_rx,
            open: open_tx,
        },
    )
}

impl Gate {
    /// Says the writer is held, then waits (at most 10 s) to be let go.
    pub fn hold(self) {
        self.held.send(()).unwrap();
        self.open.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}

impl GateKeeper {
    /// Waits (at most 10 s) until the completion holds the writer.
    pub fn wait_held(&self) {
        self.held.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    pub fn open(self) {
        self.open.send(()).unwrap();
    }
}
