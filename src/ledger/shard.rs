//! The shard thread: the single writer of one shard's state.
//!
//! It takes jobs from its bounded queue, decides a batch of them with the pure `apply`,
//! appends one WAL record per state change to the batch buffer, and submits the batch to the
//! WAL: with `wal.commit = inline` (the default) it writes and syncs the batch itself, with
//! `thread` a writer thread does while this one decides the next batch. Every answer of the
//! batch, reads included, travels with the batch and is released only after the batch is
//! durable, so nothing a client sees can vanish in a crash.
//!
//! A job that waited in the queue past its deadline is answered 91 without being decided; once
//! the WAL has failed, every job is answered 96 without being decided (the in-memory state may
//! be ahead of the disk, and only a restart, which replays what is really on disk, may answer
//! again).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use crate::iso8583::Message;
use crate::ledger::{apply, Command, CurrencyTotals, Outcome, Query, QueryResult, ShardState};
use crate::wal::{self, Batch, Completion, WalFailed, WalWriter};

/// The WAL record kind of a ledger command: payload = postcard `(now_s: i64, Command)`.
pub const RECORD_KIND_COMMAND: u8 = 1;

/// What a shard is asked to do. Commands travel inline (not boxed): an authorization is the
/// hot path and must not allocate to cross the queue.
#[allow(clippy::large_enum_variant)]
pub enum Work {
    Command(Command),
    Query(Query),
    /// Held and available totals per currency (for the balance gauges).
    Totals,
}

/// The context of an ISO 8583 request, carried through the shard back to its connection.
pub struct WireCtx {
    /// Boxed: a decoded message is about 1 KiB (its field table), and a request's context is
    /// moved through two queues; one allocation beats copying it five times, and the
    /// connection reuses the boxes (`server::connection`'s pool).
    pub request: Box<Message>,
    pub arrived: Instant,
    /// The request's TPDU, swapped onto the response.
    pub tpdu: Option<[u8; 5]>,
}

/// Why a job was answered without a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The shard's queue was full (DE39 91).
    Overloaded,
    /// The job waited past its deadline (DE39 91).
    Deadline,
    /// The WAL cannot be made durable (DE39 96).
    Storage,
}

pub enum Answer {
    Outcome(Outcome),
    /// Boxed: queries are the admin path, and the views are large.
    Query(Box<QueryResult>),
    Totals(ShardTotals),
}

/// What `Work::Totals` answers: a shard's gauges.
pub struct ShardTotals {
    /// Held and available sums per currency.
    pub currencies: Vec<CurrencyTotals>,
    /// Authorizations kept (open and retained) and the most the shard may keep: at that
    /// bound new authorizations are answered 91, so operators watch the one near the other.
    pub authorizations: u64,
    pub authorizations_max: u64,
}

/// What a connection's writer task receives: one item per request read from the socket.
/// Inline, not boxed, for the same reason as `Work`.
#[allow(clippy::large_enum_variant)]
pub enum Outgoing {
    /// A request decided (or refused) by a shard.
    Decided {
        ctx: WireCtx,
        answer: Result<Answer, Failure>,
    },
    /// A request the connection answered itself (network management, format errors, unknown
    /// cards) with this DE39.
    Local { ctx: WireCtx, de39: [u8; 2] },
    /// Answered by the connection itself while it was at its in-flight bound (91, or the
    /// network-management answer): it holds a door slot, not an in-flight permit.
    Door { ctx: WireCtx, de39: [u8; 2] },
    /// A complete response frame built by the reader (a format error on an undecodable body).
    Encoded(bytes::Bytes),
}

/// Where an answer goes.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// Back to a connection's writer task. Its channel has room for every request the
    /// connection has in flight, so `try_send` only fails when the connection is gone.
    Wire {
        tx: tokio::sync::mpsc::Sender<Outgoing>,
        ctx: WireCtx,
    },
    /// To an admin API handler.
    Admin(tokio::sync::oneshot::Sender<Result<Answer, Failure>>),
    /// Nobody waits (the shard's own timer commands).
    Nobody,
}

impl Reply {
    pub fn send(self, answer: Result<Answer, Failure>) {
        match self {
            Reply::Wire { tx, ctx } => {
                let _ = tx.try_send(Outgoing::Decided { ctx, answer });
            }
            Reply::Admin(tx) => {
                let _ = tx.send(answer);
            }
            Reply::Nobody => {}
        }
    }
}

pub struct Job {
    pub work: Work,
    pub reply: Reply,
    /// When the job was queued (a wire request: when its frame was read).
    pub queued: Instant,
    /// Answered 91 without a decision when still queued at this instant.
    pub deadline: Instant,
}

impl Job {
    /// Moves the reply out, leaving `Reply::Nobody`: the job is answered once.
    fn take_reply(&mut self) -> Reply {
        std::mem::replace(&mut self.reply, Reply::Nobody)
    }
}

/// An answer waiting for its batch to be durable.
pub struct Pending {
    reply: Reply,
    answer: Answer,
}

impl Completion for Pending {
    fn complete(self, result: Result<(), WalFailed>) {
        match result {
            Ok(()) => self.reply.send(Ok(self.answer)),
            Err(_) => self.reply.send(Err(Failure::Storage)),
        }
    }
}

/// Counters the runtime reads without touching the thread.
#[derive(Default)]
pub struct ShardStats {
    pub queue_depth: AtomicUsize,
    pub failed: AtomicBool,
}

pub struct ShardParams {
    pub shard: u16,
    pub batch_records_max: usize,
    pub snapshot_every_records: u64,
    /// See `config::WalSection::snapshot_log_percent_min`.
    pub snapshot_log_percent_min: u32,
    pub expiry_tick: Duration,
    /// Builds the command the expiry timer applies at `now_s`.
    pub expiry_command: fn(i64) -> Command,
    /// Queue wait above which a standing queue is shed (see `Shedder`); zero turns it off.
    pub queue_wait_target: Duration,
}

/// Jobs taken off the queue, and their key-index slots read ahead, at a time.
const WARM_WINDOW: usize = 32;

/// How long the queue wait must stay above target before shedding starts (CoDel's interval).
pub const SHED_INTERVAL: Duration = Duration::from_millis(100);

/// Sheds a standing queue, the way CoDel does: when even the shortest wait of every network
/// request taken from the queue during `SHED_INTERVAL` was above `target`, the queue is not
/// absorbing a burst but holding more than the shard can decide, so from then on requests that
/// waited longer than `target` are answered 91 without a decision until an interval sees a
/// wait under target again. A burst or a brief stall (a slow fsync) is served, not shed; under
/// sustained overload the requests that are served stay within about `target` of arrival.
pub struct Shedder {
    target: Duration,
    interval_end: Instant,
    min_wait: Duration,
    shedding: bool,
}

impl Shedder {
    pub fn new(target: Duration, now: Instant) -> Self {
        Shedder {
            target,
            interval_end: now + SHED_INTERVAL,
            min_wait: Duration::MAX,
            shedding: false,
        }
    }

    /// Notes the wait of one network request taken from the queue at `now`; true if it is to
    /// be shed.
    pub fn shed(&mut self, queued: Instant, now: Instant) -> bool {
        if self.target.is_zero() {
            return false;
        }
        let wait = now.saturating_duration_since(queued);
        self.min_wait = self.min_wait.min(wait);
        if now >= self.interval_end {
            self.shedding = self.min_wait > self.target;
            self.min_wait = Duration::MAX;
            self.interval_end = now + SHED_INTERVAL;
        }
        self.shedding && wait > self.target
    }

    /// Called when the queue is found empty: no standing queue.
    pub fn idle(&mut self, now: Instant) {
        self.min_wait = Duration::ZERO;
        if now >= self.interval_end {
            self.shedding = false;
            self.min_wait = Duration::MAX;
            self.interval_end = now + SHED_INTERVAL;
        }
    }
}

/// The shard thread's body; returns when every sender of `jobs` is gone.
pub fn run(
    mut state: ShardState,
    jobs: Receiver<Job>,
    wal: WalWriter<Pending>,
    mut next_lsn: u64,
    params: ShardParams,
    stats: Arc<ShardStats>,
) {
    let mut payload = Vec::with_capacity(512);
    let mut since_snapshot = SinceSnapshot::default();
    let mut next_expiry = Instant::now() + params.expiry_tick;
    let mut shedder = Shedder::new(params.queue_wait_target, Instant::now());
    let shed_total = metrics::counter!(crate::metrics::QUEUE_SHED_TOTAL,
        "shard" => params.shard.to_string());
    let mut window: Vec<Job> = Vec::with_capacity(WARM_WINDOW);
    let queue_wait = &crate::metrics::handles().queue_wait_seconds;
    loop {
        let first = match jobs.recv_timeout(params.expiry_tick.min(Duration::from_millis(500))) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let now_s = unix_now_s();
        let mut batch = BatchBuilder::new(&wal, next_lsn);
        // Jobs are taken where they lie in the window (a `Job` is 300 bytes, and each move
        // is a copy): only the reply is moved out.
        let mut take = |batch: &mut BatchBuilder<'_>, job: &mut Job, state: &mut ShardState| {
            let now = batch.clock;
            if matches!(job.reply, Reply::Wire { .. }) {
                queue_wait.record(now.saturating_duration_since(job.queued));
                if shedder.shed(job.queued, now) {
                    shed_total.increment(1);
                    job.take_reply().send(Err(Failure::Overloaded));
                    return;
                }
            }
            batch.take(job, state, now_s, &mut payload);
        };
        if let Some(job) = first {
            window.push(job);
            let mut taken = 1;
            // Bounded by batch_records_max jobs, shed ones included. The jobs come off the
            // queue a window at a time; the window's key-index slots are read ahead together
            // (`ShardState::warm`) before any of them is decided.
            loop {
                let mut drained = false;
                while taken < params.batch_records_max && window.len() < WARM_WINDOW {
                    match jobs.try_recv() {
                        Ok(job) => window.push(job),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                            drained = true;
                            break;
                        }
                    }
                    taken += 1;
                }
                if window.len() > 1 {
                    for job in &window {
                        if let Work::Command(command) = &job.work {
                            state.warm(command);
                        }
                    }
                    state.warm_new_records(window.len());
                }
                batch.clock = Instant::now();
                for job in &mut window {
                    take(&mut batch, job, &mut state);
                }
                window.clear();
                if drained {
                    shedder.idle(Instant::now());
                    break;
                }
                if taken >= params.batch_records_max {
                    break;
                }
            }
        } else {
            shedder.idle(Instant::now());
        }
        if Instant::now() >= next_expiry {
            next_expiry = Instant::now() + params.expiry_tick;
            let mut job = Job {
                work: Work::Command((params.expiry_command)(now_s)),
                reply: Reply::Nobody,
                queued: Instant::now(),
                deadline: Instant::now() + Duration::from_secs(3600),
            };
            batch.clock = Instant::now();
            batch.take(&mut job, &mut state, now_s, &mut payload);
        }
        stats.queue_depth.store(jobs.len(), Ordering::Relaxed);
        since_snapshot.records += batch.records();
        since_snapshot.bytes += batch.bytes.len() as u64;
        next_lsn = batch.submit();
        if wal.failed().is_some() {
            stats.failed.store(true, Ordering::Relaxed);
        } else if since_snapshot.due(&params, wal.last_snapshot_bytes()) {
            since_snapshot = SinceSnapshot::default();
            // A copy is all the shard thread pays for, and it is shallow: the state's chunks
            // (`CowVec`, `KeyMap`) are shared with it, and later writes copy back only the
            // chunks the snapshot still holds. Encoding happens on the snapshot thread.
            let started = Instant::now();
            let copy = state.share();
            let copy_us = started.elapsed().as_micros() as u64;
            tracing::info!(shard = params.shard, copy_us, "snapshot: state copied");
            wal.snapshot_with(next_lsn - 1, Box::new(move || copy.to_snapshot()));
        }
    }
    wal.shutdown();
}

/// The WAL written since the shard's last snapshot.
#[derive(Default)]
struct SinceSnapshot {
    records: u64,
    bytes: u64,
}

impl SinceSnapshot {
    /// Whether a snapshot is due: enough records, and enough log beside the last snapshot's
    /// `last_bytes` (see `config::WalSection::snapshot_log_percent_min`).
    fn due(&self, params: &ShardParams, last_bytes: u64) -> bool {
        let log_min = u128::from(last_bytes) * u128::from(params.snapshot_log_percent_min) / 100;
        self.records >= params.snapshot_every_records && u128::from(self.bytes) >= log_min
    }
}

/// One batch under construction: the WAL bytes and the answers behind them.
struct BatchBuilder<'w> {
    wal: &'w WalWriter<Pending>,
    decision_seconds: &'static crate::metrics::LatencyHistogram,
    bytes: Vec<u8>,
    completions: Vec<Pending>,
    first_lsn: u64,
    next_lsn: u64,
    jobs: usize,
    /// The shard's clock while it takes a window of jobs: read when it starts the window and
    /// after each command, so that one reading per job serves the queue wait, the shedding
    /// and the deadline of the next job and the duration of the last.
    clock: Instant,
}

impl<'w> BatchBuilder<'w> {
    fn new(wal: &'w WalWriter<Pending>, next_lsn: u64) -> Self {
        BatchBuilder {
            wal,
            decision_seconds: &crate::metrics::handles().decision_seconds,
            bytes: wal.buffer(),
            completions: wal.completions_buffer(),
            first_lsn: next_lsn,
            next_lsn,
            jobs: 0,
            clock: Instant::now(),
        }
    }

    fn records(&self) -> u64 {
        self.next_lsn - self.first_lsn
    }

    /// Decides one job at `self.clock`: answers it at once when it cannot be decided, else
    /// applies it, encodes its WAL record and queues its answer behind the batch.
    fn take(&mut self, job: &mut Job, state: &mut ShardState, now_s: i64, payload: &mut Vec<u8>) {
        self.jobs += 1;
        if self.wal.failed().is_some() {
            job.take_reply().send(Err(Failure::Storage));
            return;
        }
        if self.clock > job.deadline {
            metrics::counter!(crate::metrics::DEADLINE_MISSED_TOTAL).increment(1);
            job.take_reply().send(Err(Failure::Deadline));
            return;
        }
        let answer = match &job.work {
            Work::Query(query) => Answer::Query(Box::new(state.query(query, now_s))),
            Work::Totals => {
                let (authorizations, authorizations_max) = state.authorizations_kept();
                Answer::Totals(ShardTotals {
                    currencies: state.totals_by_currency(),
                    authorizations,
                    authorizations_max,
                })
            }
            Work::Command(command) => {
                let outcome = apply(state, command, now_s);
                if command.mutates() {
                    payload.clear();
                    encode_command(payload, now_s, command);
                    wal::encode_record(
                        &mut self.bytes,
                        self.next_lsn,
                        RECORD_KIND_COMMAND,
                        payload,
                    );
                    self.next_lsn += 1;
                }
                Answer::Outcome(outcome)
            }
        };
        // A query (an admin read) moves the clock too, so that its time is not counted as
        // the next command's.
        let done = Instant::now();
        if matches!(job.work, Work::Command(_)) {
            self.decision_seconds.record(done - self.clock);
        }
        self.clock = done;
        self.completions.push(Pending {
            reply: job.take_reply(),
            answer,
        });
    }

    /// Hands the batch to the WAL writer; returns the next LSN.
    fn submit(self) -> u64 {
        if self.completions.is_empty() && self.bytes.is_empty() {
            return self.next_lsn;
        }
        let last_lsn = self.next_lsn - 1;
        self.wal.submit(Batch {
            bytes: self.bytes,
            last_lsn,
            completions: self.completions,
        });
        self.next_lsn
    }
}

/// The WAL payload of a command: postcard's encoding of `(now_s, command)`, written by hand
/// for the authorization commands (`ledger::record_codec`, the same bytes).
pub fn encode_command(out: &mut Vec<u8>, now_s: i64, command: &Command) {
    if super::record_codec::encode_auth_command(out, now_s, command) {
        return;
    }
    let encoded = postcard::to_extend(&(now_s, command), std::mem::take(out))
        .expect("commands always serialize");
    *out = encoded;
}

/// Reads a WAL payload back.
pub fn decode_command(payload: &[u8]) -> Result<(i64, Command), postcard::Error> {
    postcard::from_bytes(payload)
}

pub fn unix_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn params(every: u64, percent: u32) -> ShardParams {
        ShardParams {
            shard: 0,
            batch_records_max: 1024,
            snapshot_every_records: every,
            snapshot_log_percent_min: percent,
            expiry_tick: Duration::from_secs(1),
            expiry_command: |_| Command::ExpireHolds,
            queue_wait_target: Duration::ZERO,
        }
    }

    #[test]
    fn a_snapshot_waits_for_its_records_and_for_as_much_log_as_the_last_one() {
        let since = |records, bytes| SinceSnapshot { records, bytes };
        let p = params(1_000, 100);
        // The first: records alone (no snapshot yet).
        assert!(!since(999, 1 << 30).due(&p, 0));
        assert!(since(1_000, 0).due(&p, 0));
        // After a 300 MB snapshot: 300 MB of log, however many records.
        let last = 300_000_000;
        assert!(!since(2_000_000, last - 1).due(&p, last));
        assert!(since(1_000, last).due(&p, last));
        assert!(!since(999, last).due(&p, last));
        // 50 %: half as much; 0: records alone; the largest sizes do not overflow.
        assert!(since(1_000, last / 2).due(&params(1_000, 50), last));
        assert!(since(1_000, 0).due(&params(1_000, 0), last));
        assert!(!since(1_000, u64::MAX - 1).due(&params(1_000, 10_000), u64::MAX));
    }

    #[test]
    fn a_burst_is_served_a_standing_queue_is_shed() {
        let t0 = Instant::now();
        let mut s = Shedder::new(5 * MS, t0);
        // A burst: waits of up to 30 ms, but the first interval also saw a short wait.
        assert!(!s.shed(t0, t0 + MS));
        for i in 2..100 {
            assert!(!s.shed(t0, t0 + i * MS), "burst shed at {i} ms");
        }
        // Interval end: the shortest wait was 1 ms, under target: still not shedding.
        assert!(!s.shed(t0 + 70 * MS, t0 + 100 * MS));
        // A whole interval of waits above target (6..=30 ms): shedding starts at its end.
        for i in 101..200 {
            assert!(
                !s.shed(t0 + (i - 6) * MS, t0 + i * MS),
                "shed before the interval ended"
            );
        }
        assert!(
            s.shed(t0 + 170 * MS, t0 + 200 * MS),
            "standing queue not shed"
        );
        // While shedding, a request that waited under target is served.
        assert!(!s.shed(t0 + 198 * MS, t0 + 201 * MS));
        assert!(s.shed(t0 + 190 * MS, t0 + 202 * MS));
        // The queue ran empty: at the next interval end shedding stops.
        s.idle(t0 + 250 * MS);
        s.idle(t0 + 301 * MS);
        assert!(!s.shed(t0 + 280 * MS, t0 + 302 * MS));
    }

    #[test]
    fn zero_target_never_sheds() {
        let t0 = Instant::now();
        let mut s = Shedder::new(Duration::ZERO, t0);
        for i in 0..500 {
            assert!(!s.shed(t0, t0 + i * MS));
        }
    }
}
