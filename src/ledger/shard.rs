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
    /// moved through two queues; one allocation beats copying it five times.
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
    Totals(Vec<CurrencyTotals>),
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
    /// Answered 91 without a decision when still queued at this instant.
    pub deadline: Instant,
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
    pub expiry_tick: Duration,
    /// Builds the command the expiry timer applies at `now_s`.
    pub expiry_command: fn(i64) -> Command,
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
    let mut since_snapshot: u64 = 0;
    let mut next_expiry = Instant::now() + params.expiry_tick;
    loop {
        let first = match jobs.recv_timeout(params.expiry_tick.min(Duration::from_millis(500))) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let now_s = unix_now_s();
        let mut batch = BatchBuilder::new(&wal, next_lsn);
        if let Some(job) = first {
            batch.take(job, &mut state, now_s, &mut payload);
            while batch.len() < params.batch_records_max {
                match jobs.try_recv() {
                    Ok(job) => batch.take(job, &mut state, now_s, &mut payload),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
        }
        if Instant::now() >= next_expiry {
            next_expiry = Instant::now() + params.expiry_tick;
            let job = Job {
                work: Work::Command((params.expiry_command)(now_s)),
                reply: Reply::Nobody,
                deadline: Instant::now() + Duration::from_secs(3600),
            };
            batch.take(job, &mut state, now_s, &mut payload);
        }
        stats.queue_depth.store(jobs.len(), Ordering::Relaxed);
        let written = batch.records();
        next_lsn = batch.submit();
        since_snapshot += written;
        if wal.failed().is_some() {
            stats.failed.store(true, Ordering::Relaxed);
        } else if since_snapshot >= params.snapshot_every_records {
            since_snapshot = 0;
            // A copy is all the shard thread pays for, and it is shallow: the state lives in
            // shared chunks (`CowVec`, `KeyMap`) that later writes copy one at a time. Encoding
            // happens on the snapshot thread.
            let started = Instant::now();
            let copy = state.clone();
            let copy_us = started.elapsed().as_micros() as u64;
            tracing::info!(shard = params.shard, copy_us, "snapshot: state copied");
            wal.snapshot_with(next_lsn - 1, Box::new(move || copy.to_snapshot()));
        }
    }
    wal.shutdown();
}

/// One batch under construction: the WAL bytes and the answers behind them.
struct BatchBuilder<'w> {
    wal: &'w WalWriter<Pending>,
    decision_seconds: &'static metrics::Histogram,
    bytes: Vec<u8>,
    completions: Vec<Pending>,
    first_lsn: u64,
    next_lsn: u64,
    jobs: usize,
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
        }
    }

    fn len(&self) -> usize {
        self.jobs
    }

    fn records(&self) -> u64 {
        self.next_lsn - self.first_lsn
    }

    /// Decides one job: answers it at once when it cannot be decided, else applies it and
    /// queues its answer behind the batch.
    fn take(&mut self, job: Job, state: &mut ShardState, now_s: i64, payload: &mut Vec<u8>) {
        self.jobs += 1;
        if self.wal.failed().is_some() {
            job.reply.send(Err(Failure::Storage));
            return;
        }
        if Instant::now() > job.deadline {
            metrics::counter!(crate::metrics::DEADLINE_MISSED_TOTAL).increment(1);
            job.reply.send(Err(Failure::Deadline));
            return;
        }
        let answer = match &job.work {
            Work::Query(query) => Answer::Query(Box::new(state.query(query, now_s))),
            Work::Totals => Answer::Totals(state.totals_by_currency()),
            Work::Command(command) => {
                let started = Instant::now();
                let outcome = apply(state, command, now_s);
                self.decision_seconds
                    .record(started.elapsed().as_secs_f64());
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
        self.completions.push(Pending {
            reply: job.reply,
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

/// The WAL payload of a command.
pub fn encode_command(out: &mut Vec<u8>, now_s: i64, command: &Command) {
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
