//! A short run of the `loadtest` binary against a freshly started switch (provisioning through
//! the admin API, the full message mix, then `--verify` of every balance) and against
//! `loadtest echo-host`. Seconds, not a performance assertion: the report must be well formed
//! and every request answered.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Switch, TOKEN};
use serde_json::Value;

/// The loadtest binary: built into the same target directory as the switch by a workspace
/// build (`scripts/test` runs the whole workspace).
fn loadtest_bin() -> PathBuf {
    let switch = PathBuf::from(env!("CARGO_BIN_EXE_authswitch"));
    let bin = switch.with_file_name("loadtest");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        bin.display()
    );
    bin
}

fn report(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check_complete(r: &Value) {
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent > 0, "{r}");
    assert_eq!(r["responses"].as_u64(), Some(sent), "{r}");
    assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
    assert_eq!(r["timeouts"].as_u64(), Some(0), "{r}");
    let codes: u64 = r["response_codes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(codes, sent, "{r}");
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            r["latency_us"][p].as_u64().is_some(),
            "latency_us.{p} in {r}"
        );
        assert!(
            r["served_latency_us"][p].as_u64().is_some(),
            "served_latency_us.{p} in {r}"
        );
    }
    assert!(r["throughput_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn loadtest_against_the_switch_verifies_every_balance() {
    let switch = Switch::start("");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let plot = dir.path().join("latency.svg");
    let status = Command::new(loadtest_bin())
        .args([
            "run",
            "--target",
            &switch.iso.to_string(),
            "--admin",
            &switch.admin.to_string(),
        ])
        .args(["--admin-token", TOKEN, "--cards", "200", "--accounts", "20"])
        .args([
            "--fund-minor",
            "100000000",
            "--requests",
            "3000",
            "--in-flight",
            "64",
        ])
        .args(["--connections", "4", "--quiet", "--verify", "--json"])
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .status()
        .unwrap();
    assert!(status.success(), "loadtest exit status {status}");
    let r = report(&json);
    check_complete(&r);
    assert_eq!(r["sent"].as_u64(), Some(3000));
    assert_eq!(r["verify"]["ok"], true, "{r}");
    assert!(r["verify"]["accounts_checked"].as_u64().unwrap() > 0, "{r}");
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
    let kinds = r["sent_by_kind"].as_object().unwrap();
    for kind in ["auth", "reversal", "advice", "incremental", "echo"] {
        assert!(
            kinds.get(kind).and_then(Value::as_u64).unwrap_or(0) > 0,
            "{kind} in {r}"
        );
    }
}

#[test]
fn loadtest_against_echo_host() {
    let mut host = Command::new(loadtest_bin())
        .args(["echo-host", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(host.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.split_whitespace().last().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("echo.json");
    let status = Command::new(loadtest_bin())
        .args([
            "run",
            "--target",
            &addr,
            "--requests",
            "5000",
            "--in-flight",
            "64",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .status()
        .unwrap();
    let _ = host.kill();
    let _ = host.wait();
    assert!(status.success());
    let r = report(&json);
    check_complete(&r);
    assert_eq!(r["response_codes"]["00"].as_u64(), Some(5000), "{r}");
}
