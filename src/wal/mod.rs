//! Write-ahead log of one ledger shard: record format, group-commit writer thread, snapshots,
//! recovery, and operator tools (verify, dump).
//!
//! The WAL stores opaque payloads tagged with a `kind` byte; the ledger decides what they
//! mean. One directory per shard holds `wal-{first_lsn:020}.log` segments and
//! `snapshot-{lsn:020}.snap` files. A record is acknowledged (its completion called with Ok)
//! only after the batch that holds it has been written and fdatasync'ed.
//!
//! How a shard uses it:
//! 1. `recover(dir, &cfg.recover_options(), |lsn, kind, payload| ...)` rebuilds the state
//!    from `Recovered::snapshot` plus the replayed records (a torn tail is cut; corruption
//!    in the middle is an error unless `truncate_corrupt`).
//! 2. `WalWriter::start(cfg, &recovered)` spawns two threads: the writer (one `write` + one
//!    `fdatasync` per batch) and the snapshot writer.
//! 3. Per batch the shard takes `buffer()` / `completions_buffer()`, appends records with
//!    `encode_record` (LSNs continue from `recovered.next_lsn`), and `submit`s; completions
//!    are called in order with Ok once durable, or with `WalFailed` for this and every later
//!    batch once a write or sync failed (answer 96 until restart).
//! 4. Now and then `snapshot(lsn, bytes)`; it is written once the log is durable through
//!    `lsn`, then older segments and snapshots are deleted.
//! 5. `shutdown()` completes what is queued, syncs and joins.

pub mod diskcheck;
pub mod file;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod snapshot;
pub mod tools;
pub mod writer;

use std::path::PathBuf;

pub use file::{FaultKind, FaultPlan, FaultPlanError, WalFile};
pub use record::{decode_record, encode_record, record_bytes, RecordError, RecordRef};
pub use recovery::{recover, RecoverOptions, Recovered, RecoveryError, SegmentTail};
pub use snapshot::SnapshotError;
pub use tools::{dump, verify, DumpSummary, Problem, SnapshotInfo, ToolError, VerifyReport};
pub use writer::{
    Batch, Completion, SnapshotSource, WalFailReason, WalFailed, WalHealth, WalWriter, SPARE_NAME,
    WRITE_CHUNK_BYTES,
};

/// Default segment size before rotation.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// Default number of batches queued to the writer thread before `submit` blocks.
pub const BATCH_QUEUE_MAX_DEFAULT: usize = 4;
/// Snapshots waiting for the snapshot thread; more are refused (the next one will do).
pub const SNAPSHOT_QUEUE_MAX: usize = 2;

/// The WAL directory of `shard` under the data directory: `{data_dir}/shard-{shard:02}`.
pub fn shard_dir(data_dir: &std::path::Path, shard: u16) -> PathBuf {
    data_dir.join(format!("shard-{shard:02}"))
}

/// When the writer calls fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// After every batch, before any completion of it. The only safe policy.
    #[default]
    Always,
    /// Never (only at shutdown). For benchmarks: acknowledged records can be lost.
    None,
}

/// Which thread writes and syncs a shard's batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitMode {
    /// The shard thread itself, inside `submit`: one thread hand-off less per request; the
    /// next batch is decided once this one is durable.
    #[default]
    Inline,
    /// A writer thread per shard: the shard decides batch k+1 while batch k is synced, and
    /// the batches it queued meanwhile share the next write and sync.
    Thread,
}

/// Configuration of one shard's WAL.
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub shard: u16,
    /// A segment is closed once the next batch would take it past this size. A single batch
    /// larger than this still goes into one segment.
    pub segment_bytes_max: u64,
    /// Largest `len` field of a record (9 + payload bytes).
    pub record_len_max: u32,
    pub fsync: FsyncPolicy,
    pub commit: CommitMode,
    /// Segments are zero-filled ahead of time by a spare thread (see `writer::SPARE_NAME`).
    pub preallocate: bool,
    /// Batches queued to the writer thread before `submit` blocks the shard thread.
    pub batch_queue_max: usize,
    /// Fault injection for tests (hidden config key); None in production.
    pub fault_plan: Option<FaultPlan>,
}

impl WalConfig {
    /// Defaults for shard `shard` in `dir`.
    pub fn new(dir: impl Into<PathBuf>, shard: u16) -> Self {
        Self {
            dir: dir.into(),
            shard,
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            record_len_max: record::RECORD_LEN_MAX_DEFAULT,
            fsync: FsyncPolicy::Always,
            commit: CommitMode::Thread,
            preallocate: false,
            batch_queue_max: BATCH_QUEUE_MAX_DEFAULT,
            fault_plan: None,
        }
    }

    /// Largest payload a record may carry; the ledger must not encode larger ones (the writer
    /// asserts on a batch holding one).
    pub fn payload_len_max(&self) -> usize {
        self.record_len_max as usize - record::RECORD_FIXED_BYTES
    }

    /// Recovery options matching this writer configuration.
    pub fn recover_options(&self) -> RecoverOptions {
        RecoverOptions {
            record_len_max: self.record_len_max,
            ..RecoverOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_dir_names() {
        let data = std::path::Path::new("data");
        assert_eq!(shard_dir(data, 0), PathBuf::from("data/shard-00"));
        assert_eq!(shard_dir(data, 123), PathBuf::from("data/shard-123"));
    }

    #[test]
    fn fsync_policy_config_names() {
        #[derive(serde::Deserialize)]
        struct Cfg {
            fsync: FsyncPolicy,
        }
        let always: Cfg = toml::from_str("fsync = \"always\"").unwrap();
        let none: Cfg = toml::from_str("fsync = \"none\"").unwrap();
        assert_eq!(
            (always.fsync, none.fsync),
            (FsyncPolicy::Always, FsyncPolicy::None)
        );
        assert!(toml::from_str::<Cfg>("fsync = \"sometimes\"").is_err());
    }
}
