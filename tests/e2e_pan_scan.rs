//! Known PANs through the whole path (admin import, authorizations, reversals, advices,
//! malformed messages, a restart with snapshot), then every file of the data directory, the
//! switch's log and its /metrics are scanned for them: zero hits.

mod common;

use authswitch::iso8583::{MessageBuilder, Mti};
use common::{auth_0100, de39, files_under, Switch};
use serde_json::json;

const PANS: [&str; 3] = ["4000056655665556", "5555555555554444", "4242424242424242"];

/// The PAN as ASCII digits and as packed BCD (how a BCD dialect would carry it).
fn needles(pan: &str) -> Vec<Vec<u8>> {
    let digits = pan.as_bytes();
    let bcd: Vec<u8> = digits
        .chunks(2)
        .map(|p| ((p[0] - b'0') << 4) | (p[1] - b'0'))
        .collect();
    vec![digits.to_vec(), bcd, pan.as_bytes()[..12].to_vec()]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_pan_on_disk_in_logs_or_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // Snapshot often so snapshots are scanned too.
    let config = "[wal]\nsnapshot_every_records = 5\nsnapshot_log_percent_min = 0\n";
    let switch = Switch::start_on(&data_dir, config);
    let (account, holder, _) = switch.provision(100_000, PANS[0]);
    switch.add_card(&holder, PANS[1], json!({}));
    switch.add_card(&holder, PANS[2], json!({"status": "lost"}));
    let mut c = switch.client();
    let mut stan = 0;
    for pan in PANS {
        for amount in [100, 200_000] {
            stan += 1;
            let _ = de39(&c.call(&auth_0100(pan, amount, stan)));
        }
        stan += 1;
        let mut a = MessageBuilder::new(Mti::new(120));
        a.set_text(2, pan.as_bytes())
            .set_text(3, b"000000")
            .set_number(4, 50);
        a.set_number(11, u64::from(stan))
            .set_text(39, b"00")
            .set_number(49, 840);
        assert_eq!(de39(&c.call(&a)), "00");
        stan += 1;
        let mut r = MessageBuilder::new(Mti::new(400));
        r.set_text(2, pan.as_bytes())
            .set_text(3, b"000000")
            .set_number(4, 100);
        r.set_text(7, b"1121120000")
            .set_number(11, u64::from(stan))
            .set_text(32, b"123456");
        r.set_text(90, b"010000000111211200000000012345600000000000");
        let _ = de39(&c.call(&r));
        // A malformed message carrying the PAN: answered 30, the PAN must not be logged.
        stan += 1;
        let mut bad = MessageBuilder::new(Mti::new(100));
        bad.set_text(2, pan.as_bytes())
            .set_number(11, u64::from(stan));
        assert_eq!(de39(&c.call(&bad)), "30");
    }
    let metrics = switch.metrics_text();
    let _ = switch.balance(&account);
    let log_before = switch.log_text();
    assert!(switch.stop().success());
    let again = Switch::start_on(&data_dir, config);
    let _ = again.balance(&account);
    let log_after = again.log_text();
    assert!(again.stop().success());

    let mut files = Vec::new();
    files_under(dir.path(), &mut files);
    assert!(
        files.iter().any(|f| f.to_string_lossy().ends_with(".log")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.to_string_lossy().ends_with(".snap")),
        "{files:?}"
    );
    for pan in PANS {
        for needle in needles(pan) {
            for file in &files {
                let bytes = std::fs::read(file).unwrap();
                assert!(
                    !contains(&bytes, &needle),
                    "PAN bytes found in {}",
                    file.display()
                );
            }
            for (name, text) in [
                ("log", &log_before),
                ("log", &log_after),
                ("metrics", &metrics),
            ] {
                assert!(
                    !contains(text.as_bytes(), &needle),
                    "PAN found in the {name}"
                );
            }
        }
    }
}
