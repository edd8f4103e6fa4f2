//! Storage faults and corruption (issue 7). Every fault kind of the hidden `[wal] fault_plan`
//! key: no answer acknowledges the failed batch (96 from then on), `/readyz` turns 503, the
//! failure is counted by reason and logged, and a restart without the plan recovers exactly the
//! acknowledged state. Bit flips in a WAL segment and in a snapshot of a stopped switch: the
//! next start fails naming the file and the offset, and `authswitch wal verify` reports it.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{auth_0100, de39, http, serve_until_exit, wal_verify, Switch};

const FUNDS_MINOR: i64 = 100_000;
const AMOUNT_MINOR: i64 = 100;
const REQUESTS_MAX: u32 = 120;
const PAN: &str = "4000056655665556";

/// Sends sequential authorizations until the answers have turned 96 for a while; returns the
/// DE39 of each.
fn drive_until_failed(switch: &Switch) -> Vec<String> {
    let mut client = switch.client();
    let mut codes = Vec::new();
    for stan in 1..=REQUESTS_MAX {
        let code = de39(&client.call(&auth_0100(PAN, AMOUNT_MINOR as u64, stan)));
        codes.push(code);
        if codes.iter().filter(|c| *c == "96").count() >= 5 {
            break;
        }
    }
    codes
}

fn one_fault(plan_key: &str, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let faulty = format!("[ledger]\nshards = 1\n[wal]\nfault_plan = \"{plan_key}=30\"\n");
    let switch = Switch::start_on(&data_dir, &faulty);
    let (account, _, _) = switch.provision(FUNDS_MINOR, PAN);
    let codes = drive_until_failed(&switch);
    let approved = codes.iter().take_while(|c| *c == "00").count();
    eprintln!(
        "{plan_key}=30: {approved} approved, then {:?}",
        &codes[approved..]
    );
    assert!(approved > 0, "{plan_key}: {codes:?}");
    assert!(
        codes[approved..].iter().all(|c| c == "96") && codes.len() - approved == 5,
        "{plan_key}: after the first 96 every answer is 96: {codes:?}"
    );
    let (ready, _) = http(switch.metrics, "GET", "/readyz", None, None).unwrap();
    assert_eq!(ready, 503, "{plan_key}: /readyz");
    let (status, body) = switch.api("GET", &format!("/v1/accounts/{account}"), None);
    assert_eq!(status, 503, "{plan_key}: reads of a failed shard: {body}");
    // The writer thread counts the failure right after it marks the WAL failed.
    let label = format!("reason=\"{reason}\"");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = switch.metrics_text();
        let failures: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("authswitch_wal_failures_total{"))
            .collect();
        if failures
            .iter()
            .any(|l| l.contains(&label) && l.ends_with(" 1"))
        {
            assert_eq!(failures.len(), 1, "{plan_key}: {failures:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{plan_key}: {failures:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The log reaches us through a pipe and a reader thread: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = switch.log_text();
        let line = log
            .lines()
            .find(|l| l.contains("WAL FAILED"))
            .map(str::to_string);
        if let Some(line) = line {
            assert!(
                line.contains(reason),
                "{plan_key}: the log says why: {line}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{plan_key}: no log line says why: {log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    switch.kill();

    let healthy = "[ledger]\nshards = 1\n";
    let again = Switch::start_on(&data_dir, healthy);
    let held = AMOUNT_MINOR * approved as i64;
    assert_eq!(
        again.balance(&account),
        (FUNDS_MINOR - held, held, 0),
        "{plan_key}: recovered to the acknowledged state ({approved} approvals)"
    );
    let mut client = again.client();
    let stan = REQUESTS_MAX + 1;
    assert_eq!(
        de39(&client.call(&auth_0100(PAN, AMOUNT_MINOR as u64, stan))),
        "00"
    );
    let (ready, _) = http(again.metrics, "GET", "/readyz", None, None).unwrap();
    assert_eq!(ready, 200);
    assert!(again.stop().success());
}

#[test]
fn fsync_failure_stops_acknowledging_and_recovers_the_durable_state() {
    one_fault("fsync_fail_after", "fsync");
}

#[test]
fn write_failure_stops_acknowledging_and_recovers_the_durable_state() {
    one_fault("write_fail_after", "write");
}

#[test]
fn short_write_stops_acknowledging_and_recovers_the_durable_state() {
    one_fault("short_write_after", "short_write");
}

#[test]
fn enospc_stops_acknowledging_and_recovers_the_durable_state() {
    one_fault("enospc_after", "enospc");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The largest file of shard 0 whose name starts with `prefix`.
/// The file of `prefix` and `suffix` with the most data: bytes up to its last non-zero one
/// (a preallocated segment is zeros after its records).
fn largest(data_dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let shard = data_dir.join("shard-000");
    let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(&shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .map(|p| (data_len(&std::fs::read(&p).unwrap()), p))
        .collect();
    files.sort();
    files
        .pop()
        .unwrap_or_else(|| panic!("no {prefix}* in {}", shard.display()))
        .1
}

fn data_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// Flips a bit in the middle of the file's data (not of the zeros after it).
fn flip_middle_bit(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let middle = data_len(&bytes) / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(file, bytes).unwrap();
}

/// A stopped switch's data directory with snapshots and a segment of about 30 records.
fn stopped_data_dir(root: &Path) -> PathBuf {
    let data_dir = root.join("data");
    let config =
        "[ledger]\nshards = 1\n[wal]\nsnapshot_every_records = 40\nsnapshot_log_percent_min = 0\n";
    let switch = Switch::start_on(&data_dir, config);
    switch.provision(FUNDS_MINOR, PAN);
    let mut client = switch.client();
    for stan in 1..=66 {
        assert_eq!(de39(&client.call(&auth_0100(PAN, 10, stan))), "00");
    }
    assert!(switch.stop().success());
    data_dir
}

fn assert_refused(data_dir: &Path, file: &Path) {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let config = "[ledger]\nshards = 1\n";
    let admin = ["--admin-listen", "127.0.0.1:0"];
    let outcome = serve_until_exit(data_dir, config, &admin, true, Duration::from_secs(30));
    let (status, stderr) = outcome.unwrap_or_else(|| panic!("started despite a flipped {name}"));
    assert!(!status.success(), "{name}: {stderr}");
    let said = stderr
        .lines()
        .find(|l| l.contains(&name) && l.contains("offset"));
    let said =
        said.unwrap_or_else(|| panic!("{name}: the refusal names file and offset: {stderr}"));
    eprintln!("refused: {said}");
    let (ok, report) = wal_verify(data_dir);
    assert!(!ok, "wal verify passed with a flipped {name}: {report}");
    assert!(
        report.contains(&name) && report.contains("offset"),
        "{name}: {report}"
    );
}

#[test]
fn a_bit_flip_in_a_segment_or_a_snapshot_stops_the_start_naming_file_and_offset() {
    let root = tempfile::tempdir().unwrap();
    let original = stopped_data_dir(root.path());
    let (ok, report) = wal_verify(&original);
    assert!(ok, "{report}");

    let wal_case = root.path().join("wal-case");
    copy_dir(&original, &wal_case);
    let segment = largest(&wal_case, "wal-", ".log");
    flip_middle_bit(&segment);
    assert_refused(&wal_case, &segment);

    let snap_case = root.path().join("snap-case");
    copy_dir(&original, &snap_case);
    let snapshot = largest(&snap_case, "snapshot-", ".snap");
    flip_middle_bit(&snapshot);
    assert_refused(&snap_case, &snapshot);
}
