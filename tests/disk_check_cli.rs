//! `authswitch disk-check` from the command line: a short check writes its table and JSON
//! report, commits every offered record and leaves nothing behind; bad parameters are refused
//! with the reason and a failing exit status.

use std::process::Command;

use serde_json::Value;

fn disk_check(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_authswitch"))
        .arg("disk-check")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_short_check_reports_every_record_committed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let json = dir.path().join("report.json");
    let out = disk_check(&[
        "--dir",
        data.to_str().unwrap(),
        "--rate",
        "1000",
        "--streams",
        "2",
        "--duration",
        "0.4",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 stream(s), 1000 records/s offered"),
        "{stdout}"
    );
    assert!(stdout.contains("records durable 400, syncs"), "{stdout}");
    assert!(stdout.contains("commit wait"), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["records"], 400);
    assert_eq!(report["streams"], 2);
    assert_eq!(report["record_bytes"], 144);
    assert_eq!(report["fell_behind"], false);
    let syncs = report["syncs"].as_u64().unwrap();
    assert!((2..=400).contains(&syncs), "{syncs}");
    for key in ["sync_us", "commit_wait_us"] {
        let q = |p: &str| report[key][p].as_u64().unwrap();
        assert!(
            q("p50") >= 1 && q("p50") <= q("p99") && q("p99") <= q("max"),
            "{report}"
        );
    }
    // The data directory was created for the check and holds nothing after it.
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
}

#[test]
fn bad_parameters_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let out = disk_check(&["--dir", path, "--rate", "0", "--duration", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rate must be at least one record per second"),
        "{stderr}"
    );
    let out = disk_check(&["--dir", path, "--streams", "0", "--duration", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("streams must be 1 to 256"));
    let out = disk_check(&["--dir", path, "--duration=-1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("duration must be"));
}

/// SIGTERM (or SIGINT) mid-check: the check ends with a failing status and the reason, and
/// removes its files (they can take gigabytes) instead of dying with them in place.
#[test]
fn a_signal_mid_check_removes_the_files() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let child = Command::new(env!("CARGO_BIN_EXE_authswitch"))
            .args(["disk-check", "--dir", data.to_str().unwrap()])
            .args(["--rate", "200", "--streams", "2", "--duration", "60"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded wait for both files to exist (the streams then run for a minute).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::read_dir(&data).map_or(0, |d| d.count()) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "no check files appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "signal {signal}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("interrupted before the end"), "{stderr}");
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            0,
            "signal {signal}"
        );
    }
}
