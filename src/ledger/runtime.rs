//! The ledger runtime: recovers every shard from its WAL, starts one thread per shard and one
//! WAL writer per shard, and gives the server and the admin API their ways in.
//!
//! The hot path is lock-free: a connection task hashes the PAN, reads the card index (a
//! `DashMap` read), and pushes a job into the shard's bounded crossbeam queue with `try_send`;
//! a full queue is answered 91 at once. Only the shard thread touches its state.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender, TrySendError};

use crate::config::{Config, FsyncSetting};
use crate::domain::CardId;
use crate::ledger::router::{CardIndex, PanHasher};
use crate::ledger::shard::{
    self, Answer, Failure, Job, Pending, Reply, ShardParams, ShardStats, Work,
};
use crate::ledger::{apply, Command, CurrencyTotals, Outcome, Query, QueryResult, ShardState};
use crate::wal::{self, WalConfig, WalWriter};

/// Queues, ahead of any other job, the decline of every authorization that awaited its
/// platform when the switch stopped (see `ledger/platform.rs`).
fn abandon_awaiting_platform(handle: &ShardHandle) {
    let job = Job {
        work: Work::Command(Command::AbandonAwaitingPlatform),
        reply: Reply::Nobody,
        queued: Instant::now(),
        deadline: Instant::now() + Duration::from_secs(3600),
    };
    if handle.jobs.try_send(job).is_err() {
        tracing::error!("cannot queue the decline of authorizations awaiting their platform");
    }
}

/// The data directory's record of how many shards it was created with.
pub const SHARDS_FILE: &str = "shards";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory was created with {on_disk} shards but the config asks for {configured}; set ledger.shards = {on_disk}")]
    ShardCountChanged { on_disk: usize, configured: usize },
    #[error("shard {shard}: {message}")]
    Recovery { shard: u16, message: String },
    #[error("data directory {path}: {what} is missing but the directory holds shard data ({dirs} shard directories); restore it from a backup: {why}")]
    Missing {
        path: PathBuf,
        what: &'static str,
        dirs: usize,
        why: &'static str,
    },
}

struct ShardHandle {
    jobs: Sender<Job>,
    stats: Arc<ShardStats>,
    overloaded: metrics::Counter,
    /// Read by the readiness probe: the shard thread only notices a failure on its next batch.
    wal: wal::WalHealth,
}

/// The running ledger.
pub struct Ledger {
    shards: Vec<ShardHandle>,
    threads: Vec<JoinHandle<()>>,
    pub index: CardIndex,
    pub hasher: PanHasher,
    admin_wait: Duration,
}

/// What recovery found, for the start-up log line.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub shards: usize,
    pub records_replayed: u64,
    pub cards: usize,
    pub elapsed: Duration,
}

impl Ledger {
    /// Recovers every shard and starts the shard and WAL threads.
    pub fn open(config: &Config) -> Result<(Ledger, RecoveryReport), StartError> {
        let started = Instant::now();
        let data_dir = &config.data_dir;
        let io = |source| StartError::Io {
            path: data_dir.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        // A directory with shard data is never taken for a new one: a lost shards file or
        // PAN key would otherwise be made anew, hiding shards or orphaning every card.
        let dirs = shard_dirs(data_dir).map_err(io)?;
        let kept = [
            (
                SHARDS_FILE,
                "a new one would count only the configured shards and hide the others",
            ),
            (
                crate::ledger::router::PAN_HASH_KEY_FILE,
                "a new key would make every card unknown",
            ),
        ];
        for (what, why) in kept {
            if dirs > 0 && !data_dir.join(what).exists() {
                let path = data_dir.clone();
                return Err(StartError::Missing {
                    path,
                    what,
                    dirs,
                    why,
                });
            }
        }
        let shard_count = fixed_shard_count(data_dir, config.shard_count())?;
        let hasher = PanHasher::load_or_create(data_dir).map_err(io)?;
        let recovered = recover_all(config, shard_count)?;
        let mut report = RecoveryReport {
            shards: shard_count,
            ..RecoveryReport::default()
        };
        let index = CardIndex::with_capacity(1024);
        let mut shards = Vec::with_capacity(shard_count);
        let mut threads = Vec::with_capacity(shard_count);
        for (shard, (state, rec, replayed)) in recovered.into_iter().enumerate() {
            report.records_replayed += replayed;
            for (pan_hash, card) in state.cards_for_index() {
                index.insert(pan_hash, card);
            }
            let abandon = state.awaiting_platform_count() > 0;
            let (handle, thread) = start_shard(config, shard as u16, state, rec)?;
            if abandon {
                abandon_awaiting_platform(&handle);
            }
            shards.push(handle);
            threads.push(thread);
        }
        report.cards = index.len();
        report.elapsed = started.elapsed();
        let admin_wait = Duration::from_millis(config.server.request_deadline_ms.max(1000) * 10);
        Ok((
            Ledger {
                shards,
                threads,
                index,
                hasher,
                admin_wait,
            },
            report,
        ))
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The card a PAN belongs to, if any.
    pub fn route(&self, pan_digits: &[u8]) -> Option<CardId> {
        self.index.get(&self.hasher.hash(pan_digits))
    }

    /// Queues a job without waiting; a full queue answers the job 91 at once.
    pub fn submit(&self, shard: u16, job: Job) {
        let Some(handle) = self.shards.get(shard as usize) else {
            job.reply.send(Err(Failure::Overloaded));
            return;
        };
        match handle.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                handle.overloaded.increment(1);
                job.reply.send(Err(Failure::Overloaded));
            }
            Err(TrySendError::Disconnected(job)) => job.reply.send(Err(Failure::Storage)),
        }
    }

    /// Applies an admin command and waits until it is durable.
    pub async fn command(&self, shard: u16, command: Command) -> Result<Outcome, Failure> {
        match self.admin_job(shard, Work::Command(command)).await? {
            Answer::Outcome(outcome) => Ok(outcome),
            _ => unreachable!("a command is answered with an outcome"),
        }
    }

    /// Runs a read on the shard, answered once everything before it is durable.
    pub async fn query(&self, shard: u16, query: Query) -> Result<QueryResult, Failure> {
        match self.admin_job(shard, Work::Query(query)).await? {
            Answer::Query(result) => Ok(*result),
            _ => unreachable!("a query is answered with a query result"),
        }
    }

    /// Admin jobs wait for room in the queue (briefly) instead of being refused at once.
    /// `shard` must be one this runtime runs: the admin API answers an id naming another one
    /// 404 before it gets here, and a caller that does not is refused rather than panicking.
    async fn admin_job(&self, shard: u16, work: Work) -> Result<Answer, Failure> {
        let handle = self.shards.get(shard as usize).ok_or(Failure::Overloaded)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut job = Job {
            work,
            reply: Reply::Admin(tx),
            queued: Instant::now(),
            deadline: Instant::now() + self.admin_wait,
        };
        let give_up = Instant::now() + self.admin_wait;
        loop {
            match handle.jobs.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < give_up => {
                    job = back;
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                Err(TrySendError::Full(_)) => return Err(Failure::Overloaded),
                Err(TrySendError::Disconnected(_)) => return Err(Failure::Storage),
            }
        }
        rx.await.map_err(|_| Failure::Storage)?
    }

    /// True while every shard's WAL is healthy.
    pub fn healthy(&self) -> bool {
        self.shards
            .iter()
            .all(|s| !s.stats.failed.load(Ordering::Relaxed) && !s.wal.failed())
    }

    /// Sets the queue-depth, authorization and balance gauges (called when /metrics is
    /// scraped).
    pub async fn publish_gauges(&self) {
        let mut totals: Vec<CurrencyTotals> = Vec::new();
        for (shard, handle) in self.shards.iter().enumerate() {
            let depth = handle.jobs.len() as f64;
            let label = shard.to_string();
            metrics::gauge!(crate::metrics::SHARD_QUEUE_DEPTH, "shard" => label.clone()).set(depth);
            let Ok(Answer::Totals(shard_totals)) = self.admin_job(shard as u16, Work::Totals).await
            else {
                continue;
            };
            metrics::gauge!(crate::metrics::AUTHORIZATIONS_KEPT, "shard" => label.clone())
                .set(shard_totals.authorizations as f64);
            metrics::gauge!(crate::metrics::AUTHORIZATIONS_KEPT_MAX, "shard" => label)
                .set(shard_totals.authorizations_max as f64);
            for t in shard_totals.currencies {
                match totals.iter_mut().find(|x| x.currency == t.currency) {
                    Some(x) => {
                        x.held_minor = x.held_minor.saturating_add(t.held_minor);
                        x.available_minor = x.available_minor.saturating_add(t.available_minor);
                    }
                    None => totals.push(t),
                }
            }
        }
        for t in totals {
            let currency = t.currency.alpha();
            metrics::gauge!(crate::metrics::BALANCE_HELD_MINOR, "currency" => currency)
                .set(t.held_minor as f64);
            metrics::gauge!(crate::metrics::BALANCE_AVAILABLE_MINOR, "currency" => currency)
                .set(t.available_minor as f64);
        }
    }

    /// Stops the shard threads after they drained their queues and flushed their WALs.
    pub fn shutdown(self) {
        drop(self.shards);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// How many `shard-NNN` directories `data_dir` holds (bounded by the directory's entries).
fn shard_dirs(data_dir: &Path) -> std::io::Result<usize> {
    let mut dirs = 0;
    for entry in std::fs::read_dir(data_dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let digits = name.strip_prefix("shard-").unwrap_or("");
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            dirs += 1;
        }
    }
    Ok(dirs)
}

/// The shard count written at the first start; a different configured count is refused.
fn fixed_shard_count(data_dir: &Path, configured: usize) -> Result<usize, StartError> {
    let path = data_dir.join(SHARDS_FILE);
    let io = |source| StartError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let on_disk: usize = text.trim().parse().map_err(|_| {
                io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a number",
                ))
            })?;
            if on_disk != configured {
                return Err(StartError::ShardCountChanged {
                    on_disk,
                    configured,
                });
            }
            Ok(on_disk)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::ledger::router::write_secret_file(&path, format!("{configured}\n").as_bytes())
                .map_err(io)?;
            Ok(configured)
        }
        Err(e) => Err(io(e)),
    }
}

fn wal_config(config: &Config, shard: u16) -> Result<WalConfig, StartError> {
    let fault_plan = match &config.wal.fault_plan {
        Some(text) => Some(text.parse().map_err(|e| StartError::Recovery {
            shard,
            message: format!("wal.fault_plan: {e}"),
        })?),
        None => None,
    };
    Ok(WalConfig {
        dir: config.data_dir.join(format!("shard-{shard:03}")),
        shard,
        segment_bytes_max: config.wal.segment_bytes_max,
        record_len_max: 1 << 20,
        fsync: match config.wal.fsync {
            FsyncSetting::Always => wal::FsyncPolicy::Always,
            FsyncSetting::None => wal::FsyncPolicy::None,
        },
        commit: config.wal.commit,
        preallocate: config.wal.preallocate,
        // With `commit = "thread"`, batches queued while the writer syncs share its next
        // sync: room for what the shard decides during a slow one. Each holds at most
        // `batch_records_max` records, whose requests hold in-flight permits.
        batch_queue_max: 64,
        fault_plan,
    })
}

type RecoveredShard = (ShardState, wal::Recovered, u64);

/// Recovers all shards in parallel (one thread each).
fn recover_all(config: &Config, shard_count: usize) -> Result<Vec<RecoveredShard>, StartError> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..shard_count as u16)
            .map(|shard| scope.spawn(move || recover_shard(config, shard)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("recovery thread panicked"))
            .collect()
    })
}

fn recover_shard(config: &Config, shard: u16) -> Result<RecoveredShard, StartError> {
    let cfg = wal_config(config, shard)?;
    let fail = |message: String| StartError::Recovery { shard, message };
    std::fs::create_dir_all(&cfg.dir).map_err(|source| StartError::Io {
        path: cfg.dir.clone(),
        source,
    })?;
    let mut options = cfg.recover_options();
    options.truncate_corrupt = config.wal.truncate_corrupt;
    // The snapshot must be in place before the records after it are applied; `recover` reads
    // it again to check it and hand it back (a second read of one file at start-up).
    let mut state = load_snapshot(&cfg.dir, &options).map_err(fail)?;
    let mut replayed = 0u64;
    let recovered = wal::recover(&cfg.dir, &options, |lsn, kind, payload| {
        if kind != shard::RECORD_KIND_COMMAND {
            return Err(format!("lsn {lsn}: unknown record kind {kind}"));
        }
        let (now_s, command) =
            shard::decode_command(payload).map_err(|e| format!("lsn {lsn}: {e}"))?;
        apply(
            state.get_or_insert_with(|| ShardState::new(shard)),
            &command,
            now_s,
        );
        replayed += 1;
        Ok(())
    })
    .map_err(|e| fail(e.to_string()))?;
    let state = state.unwrap_or_else(|| ShardState::new(shard));
    if let Err(violation) = state.check_invariants() {
        return Err(fail(format!(
            "recovered state breaks an invariant: {violation}"
        )));
    }
    Ok((state, recovered, replayed))
}

/// The state of the newest snapshot in `dir`, if there is one.
fn load_snapshot(dir: &Path, options: &wal::RecoverOptions) -> Result<Option<ShardState>, String> {
    let listing = wal::segment::list_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let Some((lsn, path)) = listing.snapshots.last() else {
        return Ok(None);
    };
    let (_, payload) = wal::snapshot::read_snapshot(path, *lsn, options.snapshot_len_max)
        .map_err(|e| e.to_string())?;
    let state =
        ShardState::from_snapshot(&payload).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(state))
}

fn start_shard(
    config: &Config,
    shard: u16,
    state: ShardState,
    recovered: wal::Recovered,
) -> Result<(ShardHandle, JoinHandle<()>), StartError> {
    let cfg = wal_config(config, shard)?;
    let next_lsn = recovered.next_lsn;
    let writer: WalWriter<Pending> =
        WalWriter::start(cfg.clone(), &recovered).map_err(|source| StartError::Io {
            path: cfg.dir.clone(),
            source,
        })?;
    let (tx, rx) = bounded(config.ledger.queue_depth_max);
    let stats = Arc::new(ShardStats::default());
    let params = ShardParams {
        shard,
        batch_records_max: config.ledger.batch_records_max,
        snapshot_every_records: config.wal.snapshot_every_records,
        snapshot_log_percent_min: config.wal.snapshot_log_percent_min,
        expiry_tick: Duration::from_secs(config.ledger.expiry_tick_s),
        expiry_command: |_| Command::ExpireHolds,
        queue_wait_target: Duration::from_millis(config.ledger.queue_wait_target_ms),
    };
    let thread_stats = stats.clone();
    let health = writer.health();
    let slice = Duration::from_micros(config.ledger.shard_slice_us);
    let thread = std::thread::Builder::new()
        .name(format!("shard-{shard}"))
        .spawn(move || {
            if !slice.is_zero() {
                if let Err(error) = crate::ledger::slice::set_fair_slice(slice) {
                    tracing::warn!(shard, %error, "cannot set the shard thread's scheduler \
                        slice; it keeps the kernel's default");
                }
            }
            shard::run(state, rx, writer, next_lsn, params, thread_stats)
        })
        .map_err(|source| StartError::Io {
            path: cfg.dir.clone(),
            source,
        })?;
    let overloaded =
        metrics::counter!(crate::metrics::SHARD_OVERLOADED_TOTAL, "shard" => shard.to_string());
    Ok((
        ShardHandle {
            jobs: tx,
            stats,
            overloaded,
            wal: health,
        },
        thread,
    ))
}
