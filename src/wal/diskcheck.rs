//! `authswitch disk-check`: how long a disk makes an authorization wait for its WAL, measured
//! before any switch runs on it (as `pg_test_fsync` does for PostgreSQL).
//!
//! With `fsync = "always"` no answer leaves before its record is on disk, so the disk's sync
//! latency is a floor under the switch's own. The check writes the way a shard does, with
//! none of the switch's other work: one stream per shard, each on its own zero-filled file
//! (as the WAL's preallocated segments), records arriving at a steady rate, and a group
//! commit that writes every record that has arrived with one write, padded to its page as
//! `RealFile::open_padded` does, makes it durable with one fdatasync, then takes the records
//! that arrived meanwhile. A record's commit wait runs from its arrival to the end of the
//! sync that made it durable: the rest of the sync in progress when it arrived, plus its own.
//!
//! Bounded: each stream commits `rate / streams * duration` records, at most
//! [`BATCH_RECORDS_MAX`] a sync; a disk that cannot keep up is given until
//! [`overrun_limit`] and reported as fallen behind. The files are removed at the end, and
//! also when a stop is asked for ([`run_until`]; the command line asks on SIGINT and SIGTERM),
//! which ends the zero fill and the streams within a sync and reports nothing.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use thiserror::Error;

use super::file::{page_end, RealFile, WalFile};
use super::writer::zero_fill;

/// Records one sync covers at most: the ledger's default `batch_records_max`.
pub const BATCH_RECORDS_MAX: u64 = 1024;
/// The mean size of an authorization's WAL record (`authswitch_wal_bytes_total` over
/// records in a closed-loop run of the default mix, 2026-12-07).
pub const RECORD_BYTES_DEFAULT: u32 = 144;
/// Most bytes the files of all streams may take together.
pub const TOTAL_BYTES_MAX: u64 = 4 << 30;
/// Longest run.
pub const DURATION_MAX: Duration = Duration::from_secs(3600);
/// Most streams: the switch's most shards.
pub const STREAMS_MAX: u16 = crate::config::SHARDS_MAX as u16;
/// Largest record (a stream's buffer holds `BATCH_RECORDS_MAX` of them).
pub const RECORD_BYTES_MAX: u32 = 4096;

#[derive(Debug, Clone)]
pub struct DiskCheckParams {
    /// Directory the files are written in (the data directory to be).
    pub dir: PathBuf,
    /// Records per second offered, over all streams.
    pub rate: u64,
    /// Streams: one per shard.
    pub streams: u16,
    pub duration: Duration,
    pub record_bytes: u32,
}

#[derive(Debug, Error)]
pub enum DiskCheckError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("interrupted before the end; the check's files were removed")]
    Interrupted,
}

/// Quantiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Quantiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Quantiles {
    fn of(h: &Histogram<u64>) -> Self {
        Quantiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskCheckReport {
    pub dir: PathBuf,
    pub streams: u16,
    /// Records per second offered: the rate asked for, less what does not divide evenly
    /// among the streams.
    pub rate_per_s: u64,
    pub duration_s: f64,
    /// How long the slowest stream took (past `duration_s` when the disk fell behind).
    pub elapsed_s: f64,
    pub record_bytes: u32,
    /// Records made durable (all that were offered unless `fell_behind`).
    pub records: u64,
    pub syncs: u64,
    pub syncs_per_s: f64,
    pub batch_records_mean: f64,
    /// True when the disk had not committed every offered record by the overrun limit.
    pub fell_behind: bool,
    /// Each write plus its fdatasync.
    pub sync_us: Quantiles,
    /// Each record, from its arrival to the end of the sync that made it durable.
    pub commit_wait_us: Quantiles,
}

/// Records of one stream and its rate a second, or why the parameters cannot run.
fn plan(params: &DiskCheckParams) -> Result<(u64, u64), DiskCheckError> {
    let invalid = |m: String| Err(DiskCheckError::Invalid(m));
    if params.streams == 0 || params.streams > STREAMS_MAX {
        return invalid(format!("streams must be 1 to {STREAMS_MAX}"));
    }
    if params.record_bytes == 0 || params.record_bytes > RECORD_BYTES_MAX {
        return invalid(format!("record bytes must be 1 to {RECORD_BYTES_MAX}"));
    }
    if params.duration.is_zero() || params.duration > DURATION_MAX {
        return invalid(format!(
            "duration must be more than 0 and at most {} s",
            DURATION_MAX.as_secs()
        ));
    }
    let per_stream = params.rate / u64::from(params.streams);
    if per_stream == 0 || per_stream > 1_000_000_000 {
        return invalid(format!(
            "rate must be at least one record per second per stream ({}) and at most 10^9 a stream",
            params.streams
        ));
    }
    let records = (per_stream as f64 * params.duration.as_secs_f64()).ceil() as u64;
    let bytes = stream_bytes(records, params.record_bytes).saturating_mul(params.streams.into());
    if bytes > TOTAL_BYTES_MAX {
        return invalid(format!(
            "the streams would write {bytes} bytes, more than {TOTAL_BYTES_MAX}: lower the rate or the duration"
        ));
    }
    Ok((records.max(1), per_stream))
}

/// The file a stream needs: its records end to end, rounded up to a page for the padding.
fn stream_bytes(records: u64, record_bytes: u32) -> u64 {
    page_end(records.saturating_mul(u64::from(record_bytes)) + 1)
}

/// How long a run may take before the disk counts as fallen behind.
pub fn overrun_limit(duration: Duration) -> Duration {
    duration * 2 + Duration::from_secs(5)
}

/// Arrivals due by `elapsed` at `rate` a second (the k-th at `k / rate` s, from 0), at most
/// `records`.
fn due(elapsed: Duration, rate: u64, records: u64) -> u64 {
    let arrived = elapsed.as_nanos() * u128::from(rate) / 1_000_000_000 + 1;
    (arrived.min(u128::from(records))) as u64
}

/// When the k-th arrival is due, from the start, at `rate` a second.
fn arrival(rate: u64, k: u64) -> Duration {
    let nanos = u128::from(k) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

struct StreamResult {
    records: u64,
    syncs: u64,
    elapsed: Duration,
    sync: Histogram<u64>,
    wait: Histogram<u64>,
    fell_behind: bool,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to an hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 3_600_000_000)
}

fn stream(
    mut file: RealFile,
    records: u64,
    rate: u64,
    record_bytes: u32,
    limit: Duration,
    (start, stop): (&Barrier, &AtomicBool),
) -> io::Result<StreamResult> {
    // Not zeros: a disk or host that skips zero pages would flatter the check.
    let batch_bytes = (BATCH_RECORDS_MAX * u64::from(record_bytes)) as usize;
    let data: Vec<u8> = (0..batch_bytes).map(|i| (i % 251) as u8 | 1).collect();
    let (mut sync, mut wait) = (histogram(), histogram());
    let (mut committed, mut syncs, mut offset) = (0u64, 0u64, 0u64);
    start.wait();
    let t0 = Instant::now();
    let mut fell_behind = false;
    // Bounded: each pass commits at least one record or sleeps until the next arrives, and
    // the loop ends at `records` or at the overrun limit.
    while committed < records && !stop.load(Ordering::Relaxed) {
        let elapsed = t0.elapsed();
        if elapsed > limit {
            fell_behind = true;
            break;
        }
        let arrived = due(elapsed, rate, records);
        if arrived == committed {
            // At most 100 ms at a time, so that a stop is seen soon at the lowest rates.
            let next = arrival(rate, committed).saturating_sub(elapsed);
            std::thread::sleep(next.min(Duration::from_millis(100)));
            continue;
        }
        let n = (arrived - committed).min(BATCH_RECORDS_MAX);
        let len = (n * u64::from(record_bytes)) as usize;
        let begun = Instant::now();
        let written = file.write_at(&data[..len], offset)?;
        if written != len {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        file.sync_data()?;
        let end = Instant::now();
        sync.record(micros(end - begun))
            .expect("clamped into the bounds");
        for k in committed..committed + n {
            let arrived_at = t0 + arrival(rate, k);
            wait.record(micros(end.saturating_duration_since(arrived_at)))
                .expect("clamped into the bounds");
        }
        committed += n;
        offset += len as u64;
        syncs += 1;
    }
    Ok(StreamResult {
        records: committed,
        syncs,
        elapsed: t0.elapsed(),
        sync,
        wait,
        fell_behind,
    })
}

/// Removes the check's files however the check ends.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// Runs the check: prepares one zero-filled file per stream in `params.dir` (named after this
/// process, so that two checks in one directory keep apart), runs the streams together,
/// removes the files, and reports.
pub fn run(params: &DiskCheckParams) -> Result<DiskCheckReport, DiskCheckError> {
    static NEVER: AtomicBool = AtomicBool::new(false);
    run_until(params, &NEVER)
}

/// `run`, ended early with [`DiskCheckError::Interrupted`] (its files removed) once `stop` is
/// set: by a signal handler on the command line.
pub fn run_until(
    params: &DiskCheckParams,
    stop: &'static AtomicBool,
) -> Result<DiskCheckReport, DiskCheckError> {
    let (records, per_stream) = plan(params)?;
    fs::create_dir_all(&params.dir).map_err(|source| DiskCheckError::Io {
        path: params.dir.clone(),
        source,
    })?;
    let pid = std::process::id();
    let cleanup = Cleanup(
        (0..params.streams)
            .map(|i| params.dir.join(format!("disk-check-{pid}-{i:02}.tmp")))
            .collect(),
    );
    // Every file is made and opened before any stream starts: a stream cannot fail before
    // the start the others wait for.
    let bytes = stream_bytes(records, params.record_bytes);
    let mut files = Vec::with_capacity(cleanup.0.len());
    for path in &cleanup.0 {
        let io_err = |source| DiskCheckError::Io {
            path: path.clone(),
            source,
        };
        if !zero_fill(path, bytes, stop, true).map_err(io_err)? {
            return Err(DiskCheckError::Interrupted);
        }
        files.push(RealFile::open_padded(path).map_err(io_err)?);
    }
    let start = Arc::new(Barrier::new(files.len()));
    let limit = overrun_limit(params.duration);
    let record_bytes = params.record_bytes;
    let handles: Vec<_> = files
        .into_iter()
        .map(|file| {
            let start = start.clone();
            std::thread::spawn(move || {
                stream(
                    file,
                    records,
                    per_stream,
                    record_bytes,
                    limit,
                    (&start, stop),
                )
            })
        })
        .collect();
    // Every stream is joined before any error is returned.
    let results: Vec<_> = handles
        .into_iter()
        .map(|handle| handle.join().expect("a disk-check stream panicked"))
        .collect();
    let (mut sync, mut wait) = (histogram(), histogram());
    let (mut committed, mut syncs, mut fell_behind) = (0u64, 0u64, false);
    let mut elapsed = Duration::ZERO;
    for (result, path) in results.into_iter().zip(&cleanup.0) {
        let r = result.map_err(|source| DiskCheckError::Io {
            path: path.clone(),
            source,
        })?;
        sync.add(&r.sync).expect("same bounds");
        wait.add(&r.wait).expect("same bounds");
        committed += r.records;
        syncs += r.syncs;
        fell_behind |= r.fell_behind;
        elapsed = elapsed.max(r.elapsed);
    }
    drop(cleanup);
    if stop.load(Ordering::Relaxed) {
        return Err(DiskCheckError::Interrupted);
    }
    let elapsed_s = elapsed.as_secs_f64().max(1e-9);
    Ok(DiskCheckReport {
        dir: params.dir.clone(),
        streams: params.streams,
        rate_per_s: per_stream * u64::from(params.streams),
        duration_s: params.duration.as_secs_f64(),
        elapsed_s,
        record_bytes: params.record_bytes,
        records: committed,
        syncs,
        syncs_per_s: syncs as f64 / elapsed_s,
        batch_records_mean: committed as f64 / syncs.max(1) as f64,
        fell_behind,
        sync_us: Quantiles::of(&sync),
        commit_wait_us: Quantiles::of(&wait),
    })
}

impl DiskCheckReport {
    /// The text table `authswitch disk-check` prints.
    pub fn table(&self) -> String {
        let row = |name: &str, q: &Quantiles| {
            format!(
                "{name:<22}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
                q.p50, q.p90, q.p99, q.p999, q.max
            )
        };
        let mut out = format!(
            "disk check in {}: {} stream(s), {} records/s offered, {} s, {} bytes a record\n",
            self.dir.display(),
            self.streams,
            self.rate_per_s,
            self.duration_s,
            self.record_bytes
        );
        out += &format!(
            "records durable {}{}, syncs {} ({:.0}/s), {:.1} records a sync\n",
            self.records,
            if self.fell_behind {
                " (FELL BEHIND: the disk could not keep up)"
            } else {
                ""
            },
            self.syncs,
            self.syncs_per_s,
            self.batch_records_mean
        );
        out += &format!(
            "{:<22}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
            "(us)", "p50", "p90", "p99", "p99.9", "max"
        );
        out += &row("write + fdatasync", &self.sync_us);
        out += &row("commit wait", &self.commit_wait_us);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn params(dir: &Path) -> DiskCheckParams {
        DiskCheckParams {
            dir: dir.to_path_buf(),
            rate: 2000,
            streams: 2,
            duration: Duration::from_millis(500),
            record_bytes: 144,
        }
    }

    #[test]
    fn arrivals_are_counted_from_the_first_at_time_zero() {
        let ms = Duration::from_millis;
        assert_eq!(due(ms(0), 1000, 100), 1);
        assert_eq!(due(ms(9), 1000, 100), 10);
        assert_eq!(due(Duration::from_micros(9_999), 1000, 100), 10);
        assert_eq!(due(ms(10), 1000, 100), 11);
        assert_eq!(due(ms(500), 1000, 100), 100);
        // A rate that does not divide a second: the third of 3 a second is due at 2/3 s.
        assert_eq!(arrival(3, 2), Duration::from_nanos(666_666_666));
        assert_eq!(due(Duration::from_nanos(666_666_666), 3, 10), 2);
        assert_eq!(due(Duration::from_nanos(666_666_667), 3, 10), 3);
    }

    #[test]
    fn bad_parameters_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |p: DiskCheckParams| match plan(&p) {
            Err(DiskCheckError::Invalid(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let ok = params(dir.path());
        assert!(refused(DiskCheckParams {
            streams: 0,
            ..ok.clone()
        })
        .contains("streams"));
        assert!(refused(DiskCheckParams {
            record_bytes: 0,
            ..ok.clone()
        })
        .contains("record"));
        assert!(refused(DiskCheckParams {
            rate: 1,
            ..ok.clone()
        })
        .contains("rate"));
        let long = Duration::from_secs(3601);
        assert!(refused(DiskCheckParams {
            duration: long,
            ..ok.clone()
        })
        .contains("duration"));
        let huge = DiskCheckParams {
            rate: 1_000_000_000,
            duration: Duration::from_secs(3600),
            ..ok.clone()
        };
        assert!(refused(huge).contains("bytes"));
        assert_eq!(plan(&ok).unwrap(), (500, 1000));
        // What does not divide among the streams is not offered.
        let odd = DiskCheckParams {
            rate: 2001,
            ..ok.clone()
        };
        assert_eq!(plan(&odd).unwrap(), (500, 1000));
    }

    #[test]
    fn a_short_check_commits_every_record_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(&params(dir.path())).unwrap();
        assert_eq!(report.records, 1000);
        assert!(!report.fell_behind);
        assert!(
            report.syncs >= 2 && report.syncs <= 1000,
            "{}",
            report.syncs
        );
        let (s, w) = (report.sync_us, report.commit_wait_us);
        assert!(s.p50 <= s.p99 && s.p99 <= s.max);
        assert!(w.p50 <= w.p99 && w.p99 <= w.max);
        // A record waits at least for the sync that makes it durable: those of the slowest
        // sync wait at least as long as it took.
        assert!(w.max >= s.max, "{w:?} {s:?}");
        assert_eq!(report.rate_per_s, 2000);
        assert!(
            report.elapsed_s >= 0.49 && report.elapsed_s < 5.0,
            "{}",
            report.elapsed_s
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let table = report.table();
        assert!(table.contains("records durable 1000, syncs"), "{table}");
        assert!(table.contains("commit wait"), "{table}");
    }
}
