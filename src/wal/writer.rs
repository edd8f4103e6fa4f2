//! The group-commit writer: one thread per shard that writes each batch with one write and
//! makes it durable with one fdatasync before completing the batch's completions (with
//! `CommitMode::Thread`, the batches the shard queued during a sync share the next write and
//! sync), plus a snapshot thread that writes snapshots once the WAL is durable through their
//! LSN.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use metrics::{Counter, Histogram};
use parking_lot::{Condvar, Mutex};
use thiserror::Error;
use tracing::{error, info, warn};

use super::file::{
    open_segment_file, page_end, sync_dir, FaultState, RealFile, WalFile, ENOSPC, PAGE_BYTES,
};
use super::record::batch_lsn_range;
use super::recovery::Recovered;
use super::segment::segment_name;
use super::snapshot::{prune, write_snapshot, Pace};
use super::{CommitMode, FsyncPolicy, WalConfig, SNAPSHOT_QUEUE_MAX};

/// Most bytes written between two syncs: a batch larger than this is written and synced in
/// pieces of whole records (one record larger than this alone), so a crash can leave holes
/// only within this much of the end of the log (see `recovery::unfinished_write`).
pub const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Pause of the spare thread after each zero-filled MiB (64 MiB take about a quarter second).
const SPARE_PACE: Duration = Duration::from_millis(2);

/// The zero-filled file the spare thread prepares for the next segment.
pub const SPARE_NAME: &str = "wal-spare.tmp";

/// Where the spare thread fills a spare before renaming it to `SPARE_NAME`. It never writes
/// to `SPARE_NAME` itself: the writer may be renaming that file into a live segment at the
/// same moment (it claims the spare, then renames it), and a thread that opened the name
/// just before the rename would truncate and zero the segment the writer appends to.
pub const SPARE_FILLING_NAME: &str = "wal-spare.filling";

/// How long the snapshot thread sleeps between checks of the durable LSN when no wake-up
/// came; bounds how late it notices shutdown.
const SNAPSHOT_WAIT_SLICE: Duration = Duration::from_millis(50);

/// Called once per record (or request) when its batch is durable, or failed.
pub trait Completion: Send + 'static {
    fn complete(self, result: Result<(), WalFailed>);
}

/// Records encoded back to back with [`super::encode_record`] (LSNs consecutive, continuing
/// the log), the LSN of the last one, and what to complete when they are durable.
pub struct Batch<C> {
    pub bytes: Vec<u8>,
    pub last_lsn: u64,
    pub completions: Vec<C>,
}

/// What broke the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFailReason {
    Write,
    ShortWrite,
    NoSpace,
    Fsync,
    CreateSegment,
    /// The writer thread is gone (it panicked on a broken invariant).
    WriterGone,
}

impl WalFailReason {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WalFailReason::Write => "write",
            WalFailReason::ShortWrite => "short_write",
            WalFailReason::NoSpace => "enospc",
            WalFailReason::Fsync => "fsync",
            WalFailReason::CreateSegment => "create_segment",
            WalFailReason::WriterGone => "writer_gone",
        }
    }
}

/// The WAL can no longer make records durable; every batch from `first_lsn` on is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("WAL failed ({}) at lsn {first_lsn}, os error {os_error:?}", reason.as_str())]
pub struct WalFailed {
    pub reason: WalFailReason,
    /// First LSN of the batch that could not be made durable.
    pub first_lsn: u64,
    pub os_error: Option<i32>,
}

/// State shared by the handle, the writer thread and the snapshot thread.
struct Shared {
    durable_lsn: AtomicU64,
    /// Set together with `failed`, so the shard's per-request check needs no lock.
    has_failed: AtomicBool,
    failed: Mutex<Option<WalFailed>>,
    stopping: AtomicBool,
    wake: Condvar,
    /// Size of the newest snapshot written (or recovered from), for the shard's policy of
    /// when the next is due.
    last_snapshot_bytes: AtomicU64,
}

impl Shared {
    fn failed(&self) -> Option<WalFailed> {
        if !self.has_failed.load(Ordering::Acquire) {
            return None;
        }
        *self.failed.lock()
    }

    /// Records the first failure (later ones keep it) and wakes the snapshot thread.
    fn set_failed(&self, failed: WalFailed) -> WalFailed {
        let first = *self.failed.lock().get_or_insert(failed);
        self.has_failed.store(true, Ordering::Release);
        self.wake.notify_all();
        first
    }

    fn set_durable(&self, lsn: u64) {
        let guard = self.failed.lock();
        self.durable_lsn.store(lsn, Ordering::Release);
        drop(guard);
        self.wake.notify_all();
    }

    /// Blocks until the WAL is durable through `lsn`; false if it failed or is stopping first.
    fn wait_durable(&self, lsn: u64) -> bool {
        let mut guard = self.failed.lock();
        // Bounded by shutdown: `stopping` is set before the snapshot thread is joined.
        loop {
            if self.durable_lsn.load(Ordering::Acquire) >= lsn {
                return true;
            }
            if guard.is_some() || self.stopping.load(Ordering::Acquire) {
                return false;
            }
            self.wake.wait_for(&mut guard, SNAPSHOT_WAIT_SLICE);
        }
    }
}

enum Msg<C> {
    Batch(Batch<C>),
    Shutdown,
}

/// Handle to a shard's WAL writer and snapshot threads. Owned by the shard thread.
pub struct WalWriter<C: Completion> {
    /// `CommitMode::Inline`: the writer's state, driven by `submit` on the caller's thread.
    /// Only the shard thread submits, so the lock is never contended (one uncontended
    /// acquire per batch); it is there so the handle can be shared for reading (`Sync`).
    inline: Option<Mutex<WriterThread<C>>>,
    tx: Sender<Msg<C>>,
    bytes_rx: Receiver<Vec<u8>>,
    completions_rx: Receiver<Vec<C>>,
    snap_tx: Option<Sender<(u64, SnapshotSource)>>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    snapshotter: Option<JoinHandle<()>>,
    spare: Option<JoinHandle<()>>,
}

/// Whether one WAL has failed, readable from any thread (see [`WalWriter::health`]).
#[derive(Clone)]
pub struct WalHealth(Arc<Shared>);

impl WalHealth {
    /// True from the moment the writer failed a batch.
    pub fn failed(&self) -> bool {
        self.0.has_failed.load(Ordering::Acquire)
    }
}

impl<C: Completion> WalWriter<C> {
    /// Opens the log after `recovered` (appending to its tail segment or starting a new one)
    /// and spawns the writer and snapshot threads.
    pub fn start(cfg: WalConfig, recovered: &Recovered) -> io::Result<Self> {
        check_config(&cfg)?;
        let shard = cfg.shard.to_string();
        if cfg.fsync == FsyncPolicy::None {
            warn!(
                shard = cfg.shard,
                "WAL fsync DISABLED (fsync = none): acknowledged records \
                  can be lost on a crash; use only for benchmarks"
            );
            metrics::gauge!("authswitch_wal_fsync_disabled", "shard" => shard.clone()).set(1.0);
        }
        fs::create_dir_all(&cfg.dir)?;
        let fault = cfg.fault_plan.map(FaultState::new);
        let (file, segment) = open_tail(&cfg, recovered, fault.as_ref())?;
        let spare_ready = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            durable_lsn: AtomicU64::new(recovered.next_lsn - 1),
            has_failed: AtomicBool::new(false),
            failed: Mutex::new(None),
            stopping: AtomicBool::new(false),
            wake: Condvar::new(),
            last_snapshot_bytes: AtomicU64::new(
                recovered
                    .snapshot
                    .as_ref()
                    .map_or(0, |(_, payload)| payload.len() as u64),
            ),
        });
        let (tx, rx) = bounded(cfg.batch_queue_max);
        let (bytes_tx, bytes_rx) = bounded(cfg.batch_queue_max + 2);
        let (completions_tx, completions_rx) = bounded(cfg.batch_queue_max + 2);
        let (snap_tx, snap_rx) = bounded(SNAPSHOT_QUEUE_MAX);
        let (spare_tx, spare) = if cfg.preallocate {
            let (tx, rx) = bounded(1);
            let (dir, bytes, ready) = (cfg.dir.clone(), cfg.segment_bytes_max, spare_ready.clone());
            let stop = Arc::clone(&shared);
            let shard = cfg.shard;
            let thread = std::thread::Builder::new()
                .name(format!("walprep-{}", cfg.shard))
                .spawn(move || spare_loop(rx, &dir, bytes, &ready, &stop, shard))?;
            // The first spare is wanted at once: a new log starts in a plain segment.
            let _ = tx.try_send(());
            (Some(tx), Some(thread))
        } else {
            (None, None)
        };
        let state = WriterThread {
            spare_ready,
            spare_tx,
            metrics: WriterMetrics::new(&shard),
            next_lsn: recovered.next_lsn,
            segment,
            file,
            fault,
            shared: Arc::clone(&shared),
            bytes_tx,
            completions_tx,
            cfg: cfg.clone(),
        };
        let (inline, writer) = match cfg.commit {
            CommitMode::Inline => (Some(Mutex::new(state)), None),
            CommitMode::Thread => {
                let writer = std::thread::Builder::new()
                    .name(format!("wal-{}", cfg.shard))
                    .spawn(move || state.run(rx))?;
                (None, Some(writer))
            }
        };
        let snap_shared = Arc::clone(&shared);
        let snapshotter = std::thread::Builder::new()
            .name(format!("snap-{}", cfg.shard))
            .spawn(move || snapshot_loop(snap_rx, snap_shared, cfg.dir, cfg.shard))?;
        Ok(Self {
            inline,
            tx,
            bytes_rx,
            completions_rx,
            snap_tx: Some(snap_tx),
            shared,
            writer,
            snapshotter: Some(snapshotter),
            spare,
        })
    }

    /// Queues a batch; blocks while `batch_queue_max` batches are already queued. If the WAL
    /// has failed the batch is still queued and completed with the error in order. In
    /// `CommitMode::Inline` the batch is written, synced and completed before this returns.
    pub fn submit(&self, batch: Batch<C>) {
        if let Some(inline) = &self.inline {
            inline.lock().handle(batch);
            return;
        }
        if let Err(crossbeam_channel::SendError(msg)) = self.tx.send(Msg::Batch(batch)) {
            let Msg::Batch(batch) = msg else {
                unreachable!("only a batch was sent")
            };
            let failed = WalFailed {
                reason: WalFailReason::WriterGone,
                first_lsn: self.durable_lsn() + 1,
                os_error: None,
            };
            for completion in batch.completions {
                completion.complete(Err(failed));
            }
        }
    }

    /// An empty buffer for the next batch: a recycled one when available.
    pub fn buffer(&self) -> Vec<u8> {
        self.bytes_rx.try_recv().unwrap_or_default()
    }

    /// An empty completions vector for the next batch: a recycled one when available.
    pub fn completions_buffer(&self) -> Vec<C> {
        self.completions_rx.try_recv().unwrap_or_default()
    }

    /// Highest LSN known durable.
    pub fn durable_lsn(&self) -> u64 {
        self.shared.durable_lsn.load(Ordering::Acquire)
    }

    /// Why the WAL stopped accepting records, if it did.
    pub fn failed(&self) -> Option<WalFailed> {
        self.shared.failed()
    }

    /// A handle other threads (the readiness probe) can ask whether this WAL has failed,
    /// without waiting for the shard thread to notice.
    pub fn health(&self) -> WalHealth {
        WalHealth(Arc::clone(&self.shared))
    }

    /// Size of the newest snapshot written by this log's snapshot thread, or recovered from
    /// at start (0: none).
    pub fn last_snapshot_bytes(&self) -> u64 {
        self.shared.last_snapshot_bytes.load(Ordering::Relaxed)
    }

    /// Hands the serialized shard state through `lsn` to the snapshot thread, which writes it
    /// once the WAL is durable through `lsn` and then prunes old segments and snapshots.
    /// Returns false (and drops the state) if two snapshots are already waiting.
    pub fn snapshot(&self, lsn: u64, state: Vec<u8>) -> bool {
        self.snapshot_with(lsn, Box::new(move || state))
    }

    /// Like `snapshot`, but the state is serialized by `serialize` on the snapshot thread, so
    /// the caller's thread only pays for a consistent copy of its state, not for encoding it.
    pub fn snapshot_with(&self, lsn: u64, serialize: SnapshotSource) -> bool {
        let Some(tx) = &self.snap_tx else {
            return false;
        };
        match tx.try_send((lsn, serialize)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                warn!(lsn, "WAL: snapshot refused, the snapshot queue is full");
                false
            }
        }
    }

    /// Completes every queued batch, syncs, and joins both threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(inline) = self.inline.take() {
            inline.into_inner().finish();
        } else {
            let Some(writer) = self.writer.take() else {
                return;
            };
            // If the writer is gone the send fails; joining then reports its panic.
            let _ = self.tx.send(Msg::Shutdown);
            if writer.join().is_err() {
                error!("WAL writer thread panicked");
            }
        }
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        if let Some(spare) = self.spare.take() {
            // Its sender went with the writer's state; `stopping` cuts a preparation short.
            if spare.join().is_err() {
                error!("WAL spare segment thread panicked");
            }
        }
        drop(self.snap_tx.take());
        if let Some(snapshotter) = self.snapshotter.take() {
            if snapshotter.join().is_err() {
                error!("WAL snapshot thread panicked");
            }
        }
    }
}

impl<C: Completion> Drop for WalWriter<C> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A full disk is reported as such even when it hits while creating a segment.
fn create_reason(e: &io::Error) -> WalFailReason {
    if e.raw_os_error() == Some(ENOSPC) {
        WalFailReason::NoSpace
    } else {
        WalFailReason::CreateSegment
    }
}

/// Refuses configurations the writer cannot run with (they come from a config file).
fn check_config(cfg: &WalConfig) -> io::Result<()> {
    let bad = |what: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            what.to_string(),
        ))
    };
    if cfg.batch_queue_max == 0 {
        return bad("wal batch_queue_max must be at least 1");
    }
    if cfg.segment_bytes_max == 0 {
        return bad("wal segment_bytes_max must be at least 1");
    }
    if cfg.record_len_max < super::record::RECORD_LEN_MIN {
        return bad("wal record_len_max must be at least 9");
    }
    Ok(())
}

/// The open segment: its first LSN and the bytes durably written so far.
struct OpenSegment {
    path: PathBuf,
    first_lsn: u64,
    len_bytes: u64,
    /// Zero-filled ahead of the records (writes overwrite, the file's size never changes, so
    /// a sync flushes data without a journal commit; each write is padded to whole pages, see
    /// `RealFile::open_padded`); false for a plain, appended segment.
    preallocated: bool,
}

/// Opens the recovered tail segment, or creates the first segment at `next_lsn`.
fn open_tail(
    cfg: &WalConfig,
    recovered: &Recovered,
    fault: Option<&Arc<FaultState>>,
) -> io::Result<(Box<dyn WalFile>, OpenSegment)> {
    if let Some(tail) = &recovered.tail {
        // Recovery cut any torn bytes, so bytes past the records can only be preallocated zeros.
        let file_len = fs::metadata(&tail.path)?.len();
        let preallocated = file_len > tail.len_bytes;
        let file = open_segment_file(&tail.path, preallocated, fault)?;
        let seg = OpenSegment {
            path: tail.path.clone(),
            first_lsn: tail.first_lsn,
            len_bytes: tail.len_bytes,
            preallocated,
        };
        return Ok((file, seg));
    }
    let path = create_segment(&cfg.dir, recovered.next_lsn)?;
    let seg = OpenSegment {
        path: path.clone(),
        first_lsn: recovered.next_lsn,
        len_bytes: 0,
        preallocated: false,
    };
    Ok((open_segment_file(&path, false, fault)?, seg))
}

/// Creates an empty segment and makes its existence durable (file and directory fsync).
/// Not subject to fault plans, which count batch writes and syncs only.
fn create_segment(dir: &Path, first_lsn: u64) -> io::Result<PathBuf> {
    let path = dir.join(segment_name(first_lsn));
    let mut file = RealFile::create_new(&path)?;
    file.sync_data()?;
    sync_dir(dir)?;
    Ok(path)
}

struct WriterMetrics {
    fsync_seconds: Histogram,
    batch_records: Histogram,
    bytes_total: Counter,
    shard: String,
}

impl WriterMetrics {
    fn new(shard: &str) -> Self {
        let s = || shard.to_string();
        let fsync_seconds = metrics::histogram!("authswitch_wal_fsync_seconds", "shard" => s());
        let batch_records = metrics::histogram!("authswitch_wal_batch_records", "shard" => s());
        let bytes_total = metrics::counter!("authswitch_wal_bytes_total", "shard" => s());
        Self {
            fsync_seconds,
            batch_records,
            bytes_total,
            shard: shard.to_string(),
        }
    }
}

/// Everything the writer thread owns.
struct WriterThread<C> {
    cfg: WalConfig,
    /// Set by the spare thread once `SPARE_NAME` is zero-filled and durable.
    spare_ready: Arc<AtomicBool>,
    /// Asks the spare thread for the next spare (None: preallocation off).
    spare_tx: Option<Sender<()>>,
    metrics: WriterMetrics,
    next_lsn: u64,
    segment: OpenSegment,
    file: Box<dyn WalFile>,
    fault: Option<Arc<FaultState>>,
    shared: Arc<Shared>,
    bytes_tx: Sender<Vec<u8>>,
    completions_tx: Sender<Vec<C>>,
}

impl<C: Completion> WriterThread<C> {
    fn run(mut self, rx: Receiver<Msg<C>>) {
        let guard = FailOnPanic {
            shared: Arc::clone(&self.shared),
            rx,
            drain_max: self.cfg.batch_queue_max,
        };
        // Ends on Shutdown or when the handle is gone; each pass consumes at least one
        // message.
        let mut next = None;
        loop {
            let msg = match next.take() {
                Some(msg) => msg,
                None => match guard.rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                },
            };
            let Msg::Batch(mut batch) = msg else {
                break;
            };
            // Group commit across batches: the shard goes on deciding while a batch is
            // synced, so whatever it queued meanwhile joins the next write and sync (whole
            // batches, up to `WRITE_CHUNK_BYTES` and `batch_queue_max` of them, and no more
            // than the segment they go to has room for: segments end where they would alone).
            let room = self
                .room_for(batch.bytes.len())
                .min(WRITE_CHUNK_BYTES as u64);
            for _ in 1..self.cfg.batch_queue_max {
                match guard.rx.try_recv() {
                    Ok(Msg::Batch(more))
                        if (batch.bytes.len() + more.bytes.len()) as u64 <= room =>
                    {
                        self.absorb(&mut batch, more);
                    }
                    Ok(other) => {
                        next = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.handle(batch);
        }
        self.finish();
    }

    /// Bytes a write of `first` bytes and more may take in the segment it goes to: the current
    /// one, or a new one when `first` alone already closes the current one (as `commit`
    /// decides).
    fn room_for(&self, first: usize) -> u64 {
        let max = self.cfg.segment_bytes_max;
        let used = self.segment.len_bytes;
        if used > 0 && used + first as u64 > max {
            max
        } else {
            max.saturating_sub(used)
        }
    }

    /// Appends `more` (the batch queued right after `batch`) to `batch`, and recycles its
    /// buffers.
    fn absorb(&self, batch: &mut Batch<C>, mut more: Batch<C>) {
        batch.bytes.extend_from_slice(&more.bytes);
        batch.completions.append(&mut more.completions);
        // A batch with no records carries the last LSN before it.
        batch.last_lsn = batch.last_lsn.max(more.last_lsn);
        more.bytes.clear();
        let _ = self.bytes_tx.try_send(more.bytes);
        let _ = self.completions_tx.try_send(more.completions);
    }

    /// The last sync (with fsync = none) and the closing log line.
    fn finish(mut self) {
        drop(self.spare_tx.take());
        if self.cfg.fsync == FsyncPolicy::None && self.shared.failed().is_none() {
            if let Err(e) = self.file.sync_data() {
                error!(shard = self.cfg.shard, error = %e, "WAL: final sync at shutdown failed");
            }
        }
        info!(
            shard = self.cfg.shard,
            durable_lsn = self.next_lsn - 1,
            "WAL writer stopped"
        );
    }

    fn handle(&mut self, mut batch: Batch<C>) {
        let result = match self.shared.failed() {
            Some(failed) => Err(failed),
            None => self.commit(&batch),
        };
        for completion in batch.completions.drain(..) {
            completion.complete(result);
        }
        batch.bytes.clear();
        // Recycling is best effort: if the submitter is not taking buffers back, drop them.
        let _ = self.bytes_tx.try_send(batch.bytes);
        let _ = self.completions_tx.try_send(batch.completions);
    }

    /// Writes and syncs one batch. Durable on Ok.
    fn commit(&mut self, batch: &Batch<C>) -> Result<(), WalFailed> {
        if batch.bytes.is_empty() {
            return Ok(());
        }
        let (first, last, count) = batch_lsn_range(&batch.bytes, self.cfg.record_len_max)
            .expect("batch from the shard thread is well-formed records");
        assert_eq!(first, self.next_lsn, "batch does not continue the log");
        assert_eq!(
            last, batch.last_lsn,
            "batch last_lsn does not match its records"
        );
        assert_eq!(last - first + 1, count, "batch LSNs not consecutive");
        let len_bytes = batch.bytes.len() as u64;
        let full = self.segment.len_bytes > 0
            && self.segment.len_bytes + len_bytes > self.cfg.segment_bytes_max;
        // A plain segment gives way to a preallocated one as soon as one is ready.
        let upgrade = !self.segment.preallocated && self.spare_ready.load(Ordering::Acquire);
        if full || upgrade {
            self.rotate(first)?;
        }
        let mut start = 0;
        // Each pass writes at least one whole record, so at most `count` passes.
        while start < batch.bytes.len() {
            let end = chunk_end(&batch.bytes, start);
            self.write_chunk(&batch.bytes[start..end], start as u64, first)?;
            start = end;
        }
        self.segment.len_bytes += len_bytes;
        self.next_lsn = last + 1;
        self.shared.set_durable(last);
        self.metrics.batch_records.record(count as f64);
        self.metrics.bytes_total.increment(len_bytes);
        Ok(())
    }

    /// Writes `bytes` (whole records) at `offset` past the durable end of the segment and,
    /// with fsync = always, syncs them.
    fn write_chunk(&mut self, bytes: &[u8], offset: u64, first: u64) -> Result<(), WalFailed> {
        match self.file.write_at(bytes, self.segment.len_bytes + offset) {
            Ok(n) if n == bytes.len() => {}
            Ok(_) => return Err(self.fail(WalFailReason::ShortWrite, first, None)),
            Err(e) if e.raw_os_error() == Some(ENOSPC) => {
                return Err(self.fail(WalFailReason::NoSpace, first, Some(&e)))
            }
            Err(e) => return Err(self.fail(WalFailReason::Write, first, Some(&e))),
        }
        if self.cfg.fsync == FsyncPolicy::Always {
            let started = Instant::now();
            if let Err(e) = self.file.sync_data() {
                return Err(self.fail(WalFailReason::Fsync, first, Some(&e)));
            }
            self.metrics
                .fsync_seconds
                .record(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Closes the current segment and starts `wal-{first_lsn}.log`: the spare renamed into
    /// place when one is ready, else a new plain segment.
    fn rotate(&mut self, first_lsn: u64) -> Result<(), WalFailed> {
        if self.cfg.fsync == FsyncPolicy::None {
            // Keep "everything before a rotation is on disk" true even without per-batch sync.
            let _ = self.file.sync_data();
        }
        let claimed = if self.spare_ready.swap(false, Ordering::AcqRel) {
            self.claim_spare(first_lsn)
        } else {
            Ok(None)
        };
        let created = match claimed {
            Ok(Some(path)) => Ok((path, true)),
            Ok(None) => create_segment(&self.cfg.dir, first_lsn).map(|path| (path, false)),
            Err(e) => Err(e),
        };
        let (path, spare) = match created {
            Ok(created) => created,
            Err(e) => return Err(self.fail(create_reason(&e), first_lsn, Some(&e))),
        };
        if let Some(tx) = &self.spare_tx {
            // Full only while a request is already pending.
            let _ = tx.try_send(());
        }
        match open_segment_file(&path, spare, self.fault.as_ref()) {
            Ok(file) => self.file = file,
            Err(e) => return Err(self.fail(create_reason(&e), first_lsn, Some(&e))),
        }
        info!(
            shard = self.cfg.shard, file = %path.display(),
            closed_first_lsn = self.segment.first_lsn, closed_bytes = self.segment.len_bytes,
            "WAL: new segment"
        );
        self.segment = OpenSegment {
            path,
            first_lsn,
            len_bytes: 0,
            preallocated: spare,
        };
        Ok(())
    }

    /// Renames the spare into place as `wal-{first_lsn}.log` (replacing an empty plain
    /// segment of the same name, if that is what is open); `None` when it is gone: a stale
    /// request made one while the last was being claimed, raised `ready` again, and that one
    /// is now this segment's predecessor.
    fn claim_spare(&self, first_lsn: u64) -> io::Result<Option<PathBuf>> {
        let path = self.cfg.dir.join(segment_name(first_lsn));
        match fs::rename(self.cfg.dir.join(SPARE_NAME), &path) {
            Ok(()) => sync_dir(&self.cfg.dir).map(|()| Some(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Puts the WAL in the failed state for good and says so in the log and metrics.
    fn fail(
        &mut self,
        reason: WalFailReason,
        first_lsn: u64,
        err: Option<&io::Error>,
    ) -> WalFailed {
        let failed = WalFailed {
            reason,
            first_lsn,
            os_error: err.and_then(|e| e.raw_os_error()),
        };
        self.shared.set_failed(failed);
        let detail = err.map_or_else(|| "short write".to_string(), |e| e.to_string());
        error!(
            shard = self.cfg.shard, reason = reason.as_str(), first_lsn, error = %detail,
            file = %self.segment.path.display(),
            "WAL FAILED: no record from this lsn on will be acknowledged until restart"
        );
        metrics::counter!("authswitch_wal_failures_total",
            "shard" => self.metrics.shard.clone(), "reason" => reason.as_str())
        .increment(1);
        // Best effort: cut whatever this batch left in the file so a restart replays only
        // acknowledged records. If the disk refuses even this, recovery may see them.
        if let Err(e) = self.file.set_len(self.segment.len_bytes) {
            warn!(shard = self.cfg.shard, error = %e, "WAL: could not cut the failed batch");
        }
        failed
    }
}

/// Owns the writer's receiving end. If the writer thread unwinds (a broken invariant, e.g. a
/// malformed batch), marks the WAL failed with `WriterGone` and completes the batches still
/// queued with that error, so the shard learns of it instead of waiting forever. The batch
/// being processed when the panic hit is dropped without completion.
struct FailOnPanic<C: Completion> {
    shared: Arc<Shared>,
    rx: Receiver<Msg<C>>,
    drain_max: usize,
}

impl<C: Completion> Drop for FailOnPanic<C> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let first_lsn = self.shared.durable_lsn.load(Ordering::Acquire) + 1;
        let failed = WalFailed {
            reason: WalFailReason::WriterGone,
            first_lsn,
            os_error: None,
        };
        // An earlier failure stays the reason; queued batches get that one.
        let failed = self.shared.set_failed(failed);
        error!(first_lsn, "WAL FAILED: writer thread panicked");
        // At most the queue's capacity is waiting; later submits see the channel closed.
        for _ in 0..=self.drain_max {
            let Ok(Msg::Batch(batch)) = self.rx.try_recv() else {
                break;
            };
            for completion in batch.completions {
                completion.complete(Err(failed));
            }
        }
    }
}

/// Body of the snapshot thread: waits until each snapshot's LSN is durable, writes it, prunes.
/// Produces the serialized state of a snapshot (run on the snapshot thread).
pub type SnapshotSource = Box<dyn FnOnce() -> Vec<u8> + Send>;

fn snapshot_loop(
    rx: Receiver<(u64, SnapshotSource)>,
    shared: Arc<Shared>,
    dir: PathBuf,
    shard: u16,
) {
    background_priority(shard, "snapshot");
    // Ends when the handle drops its sender; at most SNAPSHOT_QUEUE_MAX are waiting.
    for (lsn, serialize) in rx.iter() {
        let state = serialize();
        if !shared.wait_durable(lsn) {
            warn!(
                shard,
                lsn, "WAL: snapshot dropped, the log never became durable through it"
            );
            continue;
        }
        let path = match write_snapshot(&dir, lsn, &state, Pace::BACKGROUND) {
            Ok(path) => {
                let bytes = state.len() as u64;
                shared.last_snapshot_bytes.store(bytes, Ordering::Relaxed);
                path
            }
            Err(e) => {
                error!(shard, lsn, error = %e, "WAL: writing snapshot failed");
                continue;
            }
        };
        match prune(&dir, lsn, Pace::BACKGROUND) {
            Ok(pruned) => info!(
                shard, lsn, file = %path.display(), segments_deleted = pruned.segments.len(),
                snapshots_deleted = pruned.snapshots.len(), "WAL: snapshot written"
            ),
            Err(e) => error!(shard, lsn, error = %e, "WAL: pruning after snapshot failed"),
        }
    }
}

/// End of the piece of `bytes` (whole records from `start`) written before the next sync: as
/// many records as fit in `WRITE_CHUNK_BYTES`, and at least one.
fn chunk_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    // Bounded: each step passes one whole record (the batch was checked to be well-formed).
    while end < bytes.len() {
        let len = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes")) as usize;
        let next = end + super::record::RECORD_PREFIX_BYTES + len;
        if end > start && next - start > WRITE_CHUNK_BYTES {
            break;
        }
        end = next;
    }
    end
}

/// Body of the spare thread: on each request, zero-fills `SPARE_FILLING_NAME` to `bytes`,
/// renames it to `SPARE_NAME` and makes that durable, then raises `ready`. Ends when the
/// writer drops its sender.
fn spare_loop(
    rx: Receiver<()>,
    dir: &Path,
    bytes: u64,
    ready: &AtomicBool,
    shared: &Shared,
    shard: u16,
) {
    background_priority(shard, "spare segment");
    for () in rx.iter() {
        if ready.load(Ordering::Acquire) {
            continue;
        }
        let started = Instant::now();
        // Whole pages, so every piece can go direct and a padded write never grows the file.
        match prepare_spare(dir, page_end(bytes), &shared.stopping, true) {
            Ok(true) => {
                ready.store(true, Ordering::Release);
                info!(
                    shard,
                    ms = started.elapsed().as_millis() as u64,
                    "WAL: spare segment ready"
                );
            }
            Ok(false) => return,
            Err(e) => {
                // A full disk must not lose its last bytes to a half-made spare.
                let _ = fs::remove_file(dir.join(SPARE_FILLING_NAME));
                warn!(shard, error = %e, "WAL: cannot prepare a spare segment; \
                    the next segment is appended to instead");
            }
        }
    }
}

/// Nice value of the snapshot and spare-segment threads: the lowest priority.
const BACKGROUND_NICE: i32 = 19;

/// Lowers the calling thread to `BACKGROUND_NICE`. The snapshot encoder and the zero-filler
/// are work the shard can wait for (a later snapshot keeps more log; a late spare means one
/// plain segment), while the I/O and shard threads on the same cores are requests waiting.
/// When the machine is short of CPU (an overload on 2 cores) they took a tenth of a core from
/// the hot path; at the lowest priority the scheduler gives them what the hot path leaves,
/// and still a small share when it leaves nothing, so they never stop. A failure only costs
/// that, so it is logged, not fatal.
fn background_priority(shard: u16, role: &str) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread, no pointers. On Linux a nice value
        // belongs to a thread, and PRIO_PROCESS with a thread id sets that thread's alone.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE)
        };
        if rc != 0 {
            let error = io::Error::last_os_error();
            warn!(shard, role, %error, "cannot lower the priority of a background WAL thread");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (shard, role);
}

/// Writes the zero-filled spare; false if `stopping` cut it short.
///
/// The zeros go to disk with O_DIRECT where the file system takes it: straight from one
/// aligned buffer, neither copied into the page cache nor written back from it, which was
/// about a tenth of the switch's CPU in a closed loop (`copy_folio_from_iter_atomic` in these
/// threads), and the spare's 64 MiB of zeros no longer take page cache. The writer pads its
/// writes to whole pages in a preallocated segment (`RealFile::open_padded`), so it never
/// reads back a page it writes. Where O_DIRECT is refused (tmpfs, some overlay file
/// systems: EINVAL or EOPNOTSUPP at open or at a write), the zeros are written through the
/// page cache as before. `prefer_direct` false writes through the page cache from the start
/// (the fallback's path).
fn prepare_spare(
    dir: &Path,
    bytes: u64,
    stopping: &AtomicBool,
    prefer_direct: bool,
) -> io::Result<bool> {
    let filling = dir.join(SPARE_FILLING_NAME);
    if !zero_fill(&filling, bytes, stopping, prefer_direct)? {
        return Ok(false);
    }
    fs::rename(&filling, dir.join(SPARE_NAME))?;
    sync_dir(dir)?;
    Ok(true)
}

/// Creates (or truncates) `path` and writes `bytes` zeros to it as `prepare_spare` says,
/// ending with an fsync of the file (not of its directory); false if `stopping` cut it short.
pub(crate) fn zero_fill(
    path: &Path,
    bytes: u64,
    stopping: &AtomicBool,
    prefer_direct: bool,
) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    // `truncate` false reopens the spare to carry on where it is.
    let open = |direct: bool, truncate: bool| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(truncate);
        #[cfg(target_os = "linux")]
        if direct {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_DIRECT);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = direct;
        options.open(path)
    };
    // EINVAL is how Linux file systems refuse O_DIRECT; some FUSE ones say EOPNOTSUPP.
    let refused = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP));
    let (mut file, mut direct) = match open(prefer_direct, true) {
        Ok(file) => (file, prefer_direct && cfg!(target_os = "linux")),
        Err(e) if refused(&e) => (open(false, true)?, false),
        Err(e) => return Err(e),
    };
    // O_DIRECT wants the buffer, offset and length aligned to the device's logical block;
    // a page covers every device's. The chunk is a whole number of pages.
    let align = PAGE_BYTES as usize;
    let backing = vec![0u8; WRITE_CHUNK_BYTES + align];
    let skip = backing.as_ptr().align_offset(align).min(align);
    let zeros = &backing[skip..skip + WRITE_CHUNK_BYTES];
    let mut offset = 0u64;
    // Bounded by bytes / WRITE_CHUNK_BYTES steps, twice at most: a refused direct write starts
    // the file over through the page cache, which never falls back again. Each piece is
    // synced on its own and followed by a pause, so the WAL's own syncs never queue behind
    // tens of MiB of zeros.
    while offset < bytes {
        if stopping.load(Ordering::Acquire) {
            return Ok(false);
        }
        let n = (bytes - offset).min(zeros.len() as u64) as usize;
        // A direct write must be whole blocks: a segment size that is not whole pages ends
        // with a buffered piece.
        if direct && n % align != 0 {
            file = open(false, false)?;
            direct = false;
        }
        match file.write_all_at(&zeros[..n], offset) {
            Ok(()) => {}
            Err(e) if direct && refused(&e) => {
                file = open(false, true)?;
                direct = false;
                offset = 0;
                continue;
            }
            Err(e) => return Err(e),
        }
        file.sync_data()?;
        offset += n as u64;
        std::thread::sleep(SPARE_PACE);
    }
    file.sync_all()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::encode_record;

    #[test]
    fn the_spare_is_all_zeros_of_the_segment_size_whole_pages_or_not() {
        // Under target/, on the disk the build is on (a tmpfs /tmp would not show O_DIRECT).
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        let dir = tempfile::tempdir_in(target).unwrap();
        let stopping = AtomicBool::new(false);
        // Two and a half chunks; a chunk and a piece that is not whole pages (direct chunks,
        // then a buffered end); less than a chunk and not whole pages. Direct, then through
        // the page cache (where O_DIRECT is refused).
        let chunk = WRITE_CHUNK_BYTES as u64;
        let sizes = [2 * chunk + chunk / 2, chunk + 100, 65_636];
        for direct in [true, false] {
            for bytes in sizes {
                // A leftover spare of other content is replaced, not written over in part.
                let leftover = vec![9u8; 3 * WRITE_CHUNK_BYTES];
                fs::write(dir.path().join(SPARE_NAME), leftover).unwrap();
                assert!(prepare_spare(dir.path(), bytes, &stopping, direct).unwrap());
                let spare = fs::read(dir.path().join(SPARE_NAME)).unwrap();
                assert_eq!(spare.len() as u64, bytes);
                assert!(spare.iter().all(|&b| b == 0));
            }
        }
        stopping.store(true, Ordering::Release);
        assert!(!prepare_spare(dir.path(), 1 << 20, &stopping, true).unwrap());
    }

    #[test]
    fn the_spare_is_filled_aside_and_never_written_through_its_name() {
        // `wal-spare.tmp` hard-linked to a live segment: what a spare thread that opened the
        // name just before the writer renamed it into a segment would hold. Preparing the next
        // spare replaces the name and leaves the segment's bytes alone.
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(segment_name(7));
        fs::write(&live, b"acknowledged records").unwrap();
        fs::hard_link(&live, dir.path().join(SPARE_NAME)).unwrap();
        let stopping = AtomicBool::new(false);
        assert!(prepare_spare(dir.path(), 1 << 16, &stopping, true).unwrap());
        assert_eq!(fs::read(&live).unwrap(), b"acknowledged records");
        let spare = fs::read(dir.path().join(SPARE_NAME)).unwrap();
        assert!(spare.len() == 1 << 16 && spare.iter().all(|&b| b == 0));
        assert!(!dir.path().join(SPARE_FILLING_NAME).exists());
    }

    #[test]
    fn chunks_are_whole_records_within_the_unsynced_window() {
        // 3 000 records of 1 017 bytes: about 1 031 fit in one chunk.
        let mut bytes = Vec::new();
        for lsn in 1..=3_000u64 {
            encode_record(&mut bytes, lsn, 1, &[7u8; 1_000]);
        }
        let (mut start, mut ends) = (0, Vec::new());
        while start < bytes.len() {
            let end = chunk_end(&bytes, start);
            assert!(end - start <= WRITE_CHUNK_BYTES && (end - start) % 1_017 == 0);
            ends.push(end);
            start = end;
        }
        assert_eq!(ends, vec![1_031 * 1_017, 2_062 * 1_017, 3_000 * 1_017]);
        // A record larger than a chunk goes alone.
        let mut big = Vec::new();
        encode_record(&mut big, 1, 1, &vec![1u8; WRITE_CHUNK_BYTES + 10]);
        encode_record(&mut big, 2, 1, b"x");
        let first = chunk_end(&big, 0);
        assert_eq!(first, WRITE_CHUNK_BYTES + 10 + 17);
        assert_eq!(chunk_end(&big, first), big.len());
    }
}
