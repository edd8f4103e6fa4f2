//! Smoke test of the binary: `loadtest echo-host` on 127.0.0.1:0, then short closed-loop
//! and open-loop runs against it; every request must be answered with DE39=00.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_loadtest");

/// Kills the echo host when the test ends, pass or fail.
struct EchoHost {
    child: Child,
    addr: String,
}

impl Drop for EchoHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn echo_host(wire: &[&str]) -> EchoHost {
    let mut child = Command::new(BIN)
        .args(["echo-host", "--listen", "127.0.0.1:0", "--threads", "1"])
        .args(wire)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start echo-host");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read bound address");
    EchoHost {
        child,
        addr: line.trim().to_string(),
    }
}

fn run(addr: &str, args: &[&str], json: &Path) -> Value {
    let output = Command::new(BIN)
        .args(["run", "--target", addr, "--quiet", "--timeout-ms", "5000"])
        .args(["--json", json.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run loadtest");
    assert!(
        output.status.success(),
        "loadtest run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("p99.9"), "{table}");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).expect("JSON report")
}

fn assert_all_answered(report: &Value) -> u64 {
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 0);
    assert_eq!(report["responses"].as_u64(), Some(sent), "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    assert_eq!(report["timeouts"].as_u64(), Some(0), "{report}");
    assert_eq!(report["late"].as_u64(), Some(0), "{report}");
    let codes = report["response_codes"].as_object().unwrap();
    assert_eq!(codes.len(), 1, "{report}");
    assert_eq!(codes["00"].as_u64(), Some(sent));
    let latency = &report["latency_us"];
    let p50 = latency["p50"].as_u64().unwrap();
    let p99 = latency["p99"].as_u64().unwrap();
    let max = latency["max"].as_u64().unwrap();
    assert!(p50 >= 1 && p50 <= p99 && p99 <= latency["p999"].as_u64().unwrap());
    assert!(latency["p999"].as_u64().unwrap() <= max);
    // How long answers waited to be read: part of each one's latency, so never above it.
    let lag = &report["read_lag_us"];
    if !lag.is_null() {
        let lag_max = lag["max"].as_u64().unwrap();
        assert!(lag["p50"].as_u64().unwrap() <= lag["p99"].as_u64().unwrap());
        assert!(lag["p99"].as_u64().unwrap() <= lag_max);
        assert!(lag_max <= max, "read lag {lag_max} above the latency {max}");
    }
    assert!(report["throughput_per_s"].as_f64().unwrap() > 0.0);
    let by_kind: u64 = report["sent_by_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_kind, sent);
    sent
}

#[test]
fn closed_and_open_loop_against_the_echo_host() {
    let host = echo_host(&[]);
    let dir = tempfile::tempdir().unwrap();

    let json = dir.path().join("closed.json");
    let plot = dir.path().join("closed.svg");
    let args = [
        "--requests",
        "2000",
        "--in-flight",
        "32",
        "--connections",
        "4",
        "--plot",
        plot.to_str().unwrap(),
    ];
    let report = run(&host.addr, &args, &json);
    assert_eq!(assert_all_answered(&report), 2000);
    assert_eq!(report["mode"], "closed");
    assert_eq!(report["in_flight"], 32);
    assert_eq!(report["rate"], Value::Null);
    assert_eq!(report["connections"], 4);
    assert_eq!(report["verify"], Value::Null);
    assert!(report["sent_by_kind"]["reversal"].as_u64().unwrap() > 0);
    assert!(report["sent_by_kind"]["incremental"].as_u64().unwrap() > 0);
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));

    let json = dir.path().join("open.json");
    let args = [
        "--mode",
        "open",
        "--rate",
        "2000",
        "--duration",
        "1",
        "--connections",
        "2",
        "--threads",
        "2",
    ];
    let report = run(&host.addr, &args, &json);
    let sent = assert_all_answered(&report);
    // A fixed schedule of 2000/s for 1 s: 2000 requests, give or take the last tick.
    assert!((1990..=2000).contains(&sent), "sent {sent}");
    assert_eq!(report["mode"], "open");
    assert_eq!(report["rate"], 2000);
    assert!(report["duration_s"].as_f64().unwrap() >= 0.99);
    // A second of answers: the kernel stamps reads well within it (Linux).
    if cfg!(target_os = "linux") {
        let lag = &report["read_lag_us"];
        assert!(!lag.is_null(), "no read was stamped: {report}");
        assert!(lag["p50"].as_u64().unwrap() >= 1, "{report}");
    }
}

#[test]
fn every_wire_option_round_trips_through_the_echo_host() {
    let wire = [
        "--header",
        "ascii4",
        "--tpdu",
        "--bitmap",
        "hex",
        "--charset",
        "ebcdic",
    ];
    let host = echo_host(&wire);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("ebcdic.json");
    let mut args = vec![
        "--requests",
        "500",
        "--in-flight",
        "8",
        "--connections",
        "2",
    ];
    args.extend_from_slice(&wire);
    let report = run(&host.addr, &args, &json);
    assert_eq!(assert_all_answered(&report), 500);
    assert_eq!(report["wire"]["charset"], "ebcdic");
    assert_eq!(report["wire"]["header"], "ascii4");
    assert_eq!(report["wire"]["tpdu"], true);

    let host = echo_host(&["--charset", "bcd", "--header", "binary4"]);
    let json = dir.path().join("bcd.json");
    let args = [
        "--requests",
        "300",
        "--charset",
        "bcd",
        "--header",
        "binary4",
        "--mix",
        "echo=1",
    ];
    let report = run(&host.addr, &args, &json);
    assert_eq!(assert_all_answered(&report), 300);
    assert_eq!(report["sent_by_kind"]["echo"], 300);
}

#[test]
fn refuses_a_target_that_does_not_listen() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let output = Command::new(BIN)
        .args(["run", "--target", &addr, "--requests", "10", "--quiet"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connection 0: connect to"), "{stderr}");
}
