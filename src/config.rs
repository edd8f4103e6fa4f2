//! Configuration: the TOML file, its documented defaults, and the command-line overrides.
//!
//! Every key has a default, so an empty file (or no file) is a working configuration. Unknown
//! keys are an error that names the key: a typo must never silently fall back to a default.
//! `authswitch.example.toml` at the repository root is the annotated list of every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::iso8583::WireFormat;

/// Upper bound on shards: ids carry the shard in 16 bits, and more threads than this on one
/// machine would only add handoffs.
pub const SHARDS_MAX: usize = 256;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the WAL, snapshots, the PAN-hashing key and the generated admin token live.
    pub data_dir: PathBuf,
    /// `tracing` filter, overridden by `RUST_LOG`.
    pub log: String,
    pub server: ServerConfig,
    pub wire: WireFormat,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub ledger: LedgerConfig,
    pub wal: WalSection,
}

/// Highest accepted `server.webhook_concurrency_per_endpoint_max`.
pub const WEBHOOK_CONCURRENCY_MAX: usize = 4096;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Connections beyond this are accepted and closed at once (and counted).
    pub connections_max: usize,
    /// Requests read from one connection whose answers have not been written yet. At this
    /// bound the reader stops reading the socket (TCP backpressure); after 100 ms at it,
    /// requests past it are answered 91 at the door (see `server::connection`).
    pub in_flight_per_connection_max: usize,
    /// Largest frame body accepted; checked on the length header before any buffer is reserved.
    pub frame_len_max: usize,
    /// A connection with no complete frame for this long is closed.
    pub idle_timeout_s: u64,
    /// A frame whose first byte has arrived must be complete within this time (slow senders).
    pub frame_read_timeout_ms: u64,
    /// A request not decided within this time from its arrival is answered 91.
    pub request_deadline_ms: u64,
    /// A peer that does not take our responses for this long is disconnected.
    pub write_timeout_ms: u64,
    /// Calls in flight to one authorization webhook endpoint; beyond it the endpoint's
    /// default decision answers at once.
    pub webhook_concurrency_per_endpoint_max: usize,
    /// Threads of the I/O runtime (connections, admin API, metrics); 0 = one per core.
    pub io_threads: usize,
    /// Once a connection's reader has not found its socket empty for 100 ms (it is behind its
    /// peer), the frames it reads more than this long after it last found the socket empty are
    /// answered 91 at the door (see `server::backlog`); 0 = off.
    pub read_lag_target_ms: u64,
    /// While a connection is shedding (any of its requests answered 91 by the overload policy
    /// in the last 100 ms), it keeps at most a cap of requests in the switch. The cap comes
    /// down while the mean time its served requests spend in the switch exceeds twice the
    /// least such time of the last second by more than this, and goes back up to the bound
    /// otherwise (see `server::overload`); 0 = off.
    pub overload_latency_target_ms: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token. `AUTHSWITCH_ADMIN_TOKEN` wins over this; without either, a token is
    /// generated into `<data_dir>/admin.token` (mode 0600).
    pub token: Option<String>,
    /// Largest accepted request body (a bulk card request of 10 000 cards fits).
    pub body_bytes_max: usize,
    /// Issuer BIN (6 to 8 digits) for card numbers the switch generates.
    pub card_bin: String,
    /// Length of generated card numbers (13 to 19).
    pub card_number_len: usize,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serves `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// Number of shards; 0 means one per core. Fixed at the first start of a data directory.
    pub shards: usize,
    /// Bounded queue in front of each shard thread; a full queue is answered 91 at once.
    pub queue_depth_max: usize,
    /// Under sustained overload, requests that waited longer than this in a shard's queue are
    /// answered 91 (CoDel-style: only once every wait of a 100 ms interval was longer). 0 = off.
    pub queue_wait_target_ms: u64,
    /// Most commands decided into one WAL batch.
    pub batch_records_max: usize,
    /// The scheduler slice asked for the shard threads, in microseconds (Linux 6.12 and
    /// later; 100 to 100000; 0, the default, leaves the kernel's, about 3 ms). A short slice
    /// lets a shard whose sync has just completed take its core from a busy I/O thread at
    /// once: better latency under overload on shared cores, less throughput at full load
    /// (see `ledger::slice`).
    pub shard_slice_us: u64,
    /// Age after which a pending authorization's hold is released.
    pub hold_expiry_s: i64,
    /// The same for hotel and car-rental merchant categories.
    pub hold_expiry_extended_s: i64,
    /// How long closed, reversed, expired and declined authorizations stay queryable (and
    /// their transaction keys recognised as duplicates).
    pub authorization_retention_s: i64,
    /// How often each shard looks for holds to expire.
    pub expiry_tick_s: u64,
    /// Authorizations (open and retained) one shard keeps at most; beyond it new ones are
    /// answered 91. About 700 bytes each: size it to the machine's memory.
    pub authorizations_per_shard_max: u64,
    /// Program-wide spending limits applied to every card (off unless set).
    pub default_spending_limits: Vec<DefaultLimit>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DefaultLimit {
    pub amount: i64,
    pub interval: String,
    #[serde(default)]
    pub categories: Vec<u16>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WalSection {
    /// `always` (default): fdatasync every batch before answering. `none` is for benchmarks
    /// only and is reported loudly in the log and in `authswitch_wal_fsync_disabled`.
    pub fsync: FsyncSetting,
    /// `inline` (default): the shard thread writes and syncs its own batches. `thread`: a
    /// writer thread per shard does, overlapping the next batch's decisions with the sync.
    pub commit: crate::wal::CommitMode,
    /// Zero-fill each segment ahead of time in the background, so syncs overwrite instead of
    /// appending (no journal commit per sync).
    pub preallocate: bool,
    pub segment_bytes_max: u64,
    /// A snapshot is taken after this many WAL records since the last one...
    pub snapshot_every_records: u64,
    /// ...and once the WAL written since the last snapshot is at least this percentage of
    /// that snapshot's size (0: records alone decide). A state of millions of
    /// authorizations is a snapshot of hundreds of MB, which every 2 000 000 records would
    /// write several times the WAL's own bytes, and each piece of it delays the shard's
    /// syncs; at 100 the snapshots write no more than the WAL does, and recovery replays no
    /// more log than the snapshot it loads.
    pub snapshot_log_percent_min: u32,
    /// Start even when a record in the middle of the log is corrupt, truncating there.
    pub truncate_corrupt: bool,
    /// Test-only storage fault injection (e.g. `fsync_fail_after=3`); never set in production.
    pub fault_plan: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FsyncSetting {
    Always,
    None,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            log: "info".to_string(),
            server: ServerConfig::default(),
            wire: WireFormat::default(),
            admin: AdminConfig::default(),
            metrics: MetricsConfig::default(),
            ledger: LedgerConfig::default(),
            wal: WalSection::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8583)),
            connections_max: 1024,
            in_flight_per_connection_max: 512,
            frame_len_max: 8192,
            idle_timeout_s: 600,
            frame_read_timeout_ms: 5_000,
            request_deadline_ms: 250,
            write_timeout_ms: 5_000,
            webhook_concurrency_per_endpoint_max: 64,
            io_threads: 0,
            read_lag_target_ms: 2,
            overload_latency_target_ms: 1,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            body_bytes_max: 4 << 20,
            card_bin: "424242".to_string(),
            card_number_len: 16,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            shards: 0,
            queue_depth_max: 8192,
            queue_wait_target_ms: 5,
            batch_records_max: 1024,
            shard_slice_us: 0,
            hold_expiry_s: 7 * 86_400,
            hold_expiry_extended_s: 30 * 86_400,
            authorization_retention_s: 35 * 86_400,
            expiry_tick_s: 60,
            authorizations_per_shard_max: 4_000_000,
            default_spending_limits: Vec::new(),
        }
    }
}

impl Default for WalSection {
    fn default() -> Self {
        WalSection {
            fsync: FsyncSetting::Always,
            commit: crate::wal::CommitMode::Inline,
            preallocate: true,
            segment_bytes_max: 64 << 20,
            snapshot_every_records: 2_000_000,
            snapshot_log_percent_min: 100,
            truncate_corrupt: false,
            fault_plan: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Command-line values that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    /// Parses a TOML document; unknown keys are errors naming the key.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The file if given (else the defaults), then the overrides, then validation.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(addr) = overrides.listen {
            config.server.listen = addr;
        }
        if let Some(addr) = overrides.admin_listen {
            config.admin.listen = addr;
        }
        if let Some(addr) = overrides.metrics_listen {
            config.metrics.listen = addr;
        }
        config.validate()?;
        Ok(config)
    }

    /// The number of shards this configuration asks for (0 resolved to the core count).
    pub fn shard_count(&self) -> usize {
        if self.ledger.shards == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(SHARDS_MAX)
        } else {
            self.ledger.shards
        }
    }

    /// Threads of the I/O runtime (0 resolved to the core count).
    pub fn io_thread_count(&self) -> usize {
        if self.server.io_threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.server.io_threads
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            })
        }
        let s = &self.server;
        if s.connections_max == 0 || s.connections_max > 1_000_000 {
            return bad("server.connections_max", "must be between 1 and 1000000");
        }
        if s.in_flight_per_connection_max == 0 || s.in_flight_per_connection_max > 65_536 {
            return bad(
                "server.in_flight_per_connection_max",
                "must be between 1 and 65536",
            );
        }
        if s.read_lag_target_ms > 10_000 {
            return bad(
                "server.read_lag_target_ms",
                "must be at most 10000 (0 turns it off)",
            );
        }
        if s.overload_latency_target_ms > 10_000 {
            return bad(
                "server.overload_latency_target_ms",
                "must be at most 10000 (0 turns it off)",
            );
        }
        if !(64..=1 << 20).contains(&s.frame_len_max) {
            return bad("server.frame_len_max", "must be between 64 and 1048576");
        }
        if s.request_deadline_ms == 0
            || s.frame_read_timeout_ms == 0
            || s.idle_timeout_s == 0
            || s.write_timeout_ms == 0
        {
            return bad(
                "server",
                "timeouts and the request deadline must be positive",
            );
        }
        if !(1..=WEBHOOK_CONCURRENCY_MAX).contains(&s.webhook_concurrency_per_endpoint_max) {
            return bad(
                "server.webhook_concurrency_per_endpoint_max",
                "must be between 1 and 4096",
            );
        }
        let l = &self.ledger;
        if l.shards > SHARDS_MAX {
            return bad("ledger.shards", format!("at most {SHARDS_MAX}"));
        }
        // The queue reserves every slot up front (a job is about 300 bytes): 65 536 is 20 MB
        // a shard; a million was 320 MB a shard before the first request.
        if l.queue_depth_max == 0 || l.queue_depth_max > 1 << 16 {
            return bad("ledger.queue_depth_max", "must be between 1 and 65536");
        }
        if l.queue_wait_target_ms > 60_000 {
            return bad(
                "ledger.queue_wait_target_ms",
                "at most 60000 (0 turns shedding off)",
            );
        }
        if self.server.io_threads > 256 {
            return bad("server.io_threads", "at most 256 (0 = one per core)");
        }
        if l.shard_slice_us != 0 && !(100..=100_000).contains(&l.shard_slice_us) {
            return bad(
                "ledger.shard_slice_us",
                "between 100 and 100000 (0 leaves the kernel's default)",
            );
        }
        if l.batch_records_max == 0 || l.batch_records_max > 65_536 {
            return bad("ledger.batch_records_max", "must be between 1 and 65536");
        }
        // The shards take ages up to 400 days (`ledger::state::AGE_S_MAX`) and refuse the
        // whole program configuration otherwise: refused here, by name, instead.
        let age_max = crate::ledger::state::AGE_S_MAX;
        let ages = [
            ("ledger.hold_expiry_s", l.hold_expiry_s),
            ("ledger.hold_expiry_extended_s", l.hold_expiry_extended_s),
            (
                "ledger.authorization_retention_s",
                l.authorization_retention_s,
            ),
        ];
        for (key, age_s) in ages {
            if !(1..=age_max).contains(&age_s) {
                return bad(
                    key,
                    format!("must be between 1 and {age_max} seconds (400 days)"),
                );
            }
        }
        if l.authorizations_per_shard_max == 0 || l.authorizations_per_shard_max > 1 << 24 {
            return bad(
                "ledger.authorizations_per_shard_max",
                "must be between 1 and 16777216",
            );
        }
        if l.expiry_tick_s == 0 {
            return bad("ledger.expiry_tick_s", "must be positive");
        }
        let a = &self.admin;
        let bin_ok =
            (6..=8).contains(&a.card_bin.len()) && a.card_bin.bytes().all(|b| b.is_ascii_digit());
        if !bin_ok {
            return bad("admin.card_bin", "must be 6 to 8 digits");
        }
        if !(13..=19).contains(&a.card_number_len) || a.card_number_len < a.card_bin.len() + 4 {
            return bad(
                "admin.card_number_len",
                "must be 13 to 19 and leave room after the BIN",
            );
        }
        // An empty token would be compared with an absent Authorization header and match.
        if a.token.as_ref().is_some_and(|t| t.trim().is_empty()) {
            return bad(
                "admin.token",
                "must not be empty; remove the key to use AUTHSWITCH_ADMIN_TOKEN or a \
                 generated <data_dir>/admin.token",
            );
        }
        if a.body_bytes_max < 1024 || a.body_bytes_max > 64 << 20 {
            return bad("admin.body_bytes_max", "must be between 1 KiB and 64 MiB");
        }
        // Recovery reads a segment whole and refuses files larger than it allows.
        let segment_max = crate::wal::recovery::SEGMENT_FILE_BYTES_MAX_DEFAULT;
        if self.wal.segment_bytes_max < 1 << 16 || self.wal.segment_bytes_max > segment_max {
            return bad(
                "wal.segment_bytes_max",
                format!("must be between 65536 and {segment_max}"),
            );
        }
        if self.wal.snapshot_every_records == 0 {
            return bad("wal.snapshot_every_records", "must be positive");
        }
        if self.wal.snapshot_log_percent_min > 10_000 {
            return bad("wal.snapshot_log_percent_min", "at most 10000 (0 = off)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        let config = Config::from_toml("", Path::new("x.toml")).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8583");
        assert_eq!(config.admin.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.metrics.listen.to_string(), "127.0.0.1:9090");
        assert_eq!(config.wal.fsync, FsyncSetting::Always);
    }

    #[test]
    fn unknown_key_is_named() {
        assert_refused("[server]\nlisten_port = 1\n", "listen_port");
        assert_refused("bogus = 1\n", "bogus");
    }

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let text = include_str!("../authswitch.example.toml");
        let config = Config::from_toml(text, Path::new("authswitch.example.toml")).unwrap();
        assert_eq!(config, Config::default());
    }

    /// Asserts `text` is refused with an error naming `key`.
    fn assert_refused(text: &str, key: &str) {
        let err = Config::from_toml(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{text}: {err}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        assert_refused("[admin]\ncard_bin = \"42x\"\n", "admin.card_bin");
        assert_refused("[ledger]\nshards = 100000\n", "ledger.shards");
        assert_refused("[ledger]\nshard_slice_us = 50\n", "ledger.shard_slice_us");
        for ok in [0, 100, 100_000] {
            let text = format!("[ledger]\nshard_slice_us = {ok}\n");
            let config = Config::from_toml(&text, Path::new("x.toml")).unwrap();
            assert_eq!(config.ledger.shard_slice_us, ok);
        }
        for key in [
            "hold_expiry_s",
            "hold_expiry_extended_s",
            "authorization_retention_s",
        ] {
            for age_s in [0i64, 400 * 86_400 + 1] {
                assert_refused(
                    &format!("[ledger]\n{key} = {age_s}\n"),
                    &format!("ledger.{key}"),
                );
            }
            let text = format!("[ledger]\n{key} = 34560000\n");
            assert!(
                Config::from_toml(&text, Path::new("x")).is_ok(),
                "{key}: 400 days"
            );
        }
        for bytes in [65_535u64, (1 << 30) + 1] {
            let text = format!("[wal]\nsegment_bytes_max = {bytes}\n");
            assert_refused(&text, "wal.segment_bytes_max");
        }
        let config = Config::from_toml("[wal]\nsegment_bytes_max = 1073741824\n", Path::new("x"));
        assert_eq!(config.unwrap().wal.segment_bytes_max, 1 << 30);
        assert_refused(
            "[ledger]\nqueue_depth_max = 65537\n",
            "ledger.queue_depth_max",
        );
        assert_refused(
            "[wal]\nsnapshot_log_percent_min = 10001\n",
            "wal.snapshot_log_percent_min",
        );
    }

    #[test]
    fn an_empty_admin_token_is_refused() {
        for token in ["\"\"", "\"   \"", "\"\\t\""] {
            let text = format!("[admin]\ntoken = {token}\n");
            let err = Config::from_toml(&text, Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("config key admin.token: must not be empty"),
                "{token}: {err}"
            );
        }
        let config = Config::from_toml("[admin]\ntoken = \"t\"\n", Path::new("x.toml")).unwrap();
        assert_eq!(config.admin.token.as_deref(), Some("t"));
    }

    #[test]
    fn overrides_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "data_dir = \"/nope\"\n[server]\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let overrides = Overrides {
            data_dir: Some(PathBuf::from("/yes")),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::load(Some(&path), &overrides).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/yes"));
        assert_eq!(config.server.listen.port(), 0);
    }
}
