//! /metrics, /healthz and /readyz after real traffic: counters moved by exactly the traffic.

mod common;

use authswitch::iso8583::{MessageBuilder, Mti};
use common::{auth_0100, de39, http, Switch};

const PAN: &str = "4242424242424242";

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn counters_move_by_exactly_the_traffic() {
    let switch = Switch::start("");
    switch.provision(1_000, PAN);
    let mut client = switch.client();
    for stan in 1..=5 {
        assert_eq!(de39(&client.call(&auth_0100(PAN, 100, stan))), "00");
    }
    for stan in 6..=7 {
        assert_eq!(de39(&client.call(&auth_0100(PAN, 900, stan))), "51");
    }
    let mut echo = MessageBuilder::new(Mti::new(800));
    echo.set_number(11, 8).set_text(70, b"301");
    assert_eq!(de39(&client.call(&echo)), "00");
    assert_eq!(
        de39(&client.call(&auth_0100("4111111111111111", 1, 9))),
        "14"
    );

    let text = switch.metrics_text();
    assert_eq!(
        metric(&text, "authswitch_requests_total{mti=\"0100\",de39=\"00\"}"),
        Some(5.0)
    );
    assert_eq!(
        metric(&text, "authswitch_requests_total{mti=\"0100\",de39=\"51\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "authswitch_requests_total{mti=\"0100\",de39=\"14\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "authswitch_requests_total{mti=\"0800\",de39=\"00\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "authswitch_request_duration_seconds_count"),
        Some(9.0)
    );
    // The seven requests a shard decided (five approvals, two declines); the unknown card and
    // the echo were answered by the connection.
    assert_eq!(
        metric(&text, "authswitch_decided_request_duration_seconds_count"),
        Some(7.0)
    );
    assert_eq!(
        metric(&text, "authswitch_queue_wait_duration_seconds_count"),
        Some(7.0)
    );
    // Every request frame, stamped by the kernel on arrival (the listener asked for stamps
    // when it was bound, long before this connection read anything); each waited far less
    // than a second in the receive queue.
    if cfg!(target_os = "linux") {
        assert_eq!(
            metric(&text, "authswitch_receive_wait_duration_seconds_count"),
            Some(9.0),
            "{text}"
        );
        assert_eq!(
            metric(
                &text,
                "authswitch_receive_wait_duration_seconds_bucket{le=\"1\"}"
            ),
            Some(9.0)
        );
    }
    assert_eq!(metric(&text, "authswitch_connections_open"), Some(1.0));
    assert_eq!(metric(&text, "authswitch_ready"), Some(1.0));
    assert!(
        metric(&text, "authswitch_wal_fsync_seconds_count{shard=\"0\"}").is_some()
            || metric(&text, "authswitch_wal_fsync_seconds_count{shard=\"1\"}").is_some(),
        "{text}"
    );
    assert_eq!(
        metric(&text, "authswitch_balance_held_minor{currency=\"usd\"}"),
        Some(500.0)
    );
    assert_eq!(
        metric(
            &text,
            "authswitch_balance_available_minor{currency=\"usd\"}"
        ),
        Some(500.0)
    );
    // Five approvals and two declines are kept (declines stay queryable); the unknown card's
    // request reached no shard. Every shard reports the default bound.
    let per_shard = |name: &str| -> Vec<f64> {
        (0..64)
            .map_while(|shard| metric(&text, &format!("{name}{{shard=\"{shard}\"}}")))
            .collect()
    };
    let kept = per_shard("authswitch_authorizations_kept");
    assert!(!kept.is_empty(), "{text}");
    assert_eq!(kept.iter().sum::<f64>(), 7.0, "{kept:?}");
    let bounds = per_shard("authswitch_authorizations_kept_max");
    assert_eq!(bounds, vec![4_000_000.0; kept.len()]);
    assert!(
        !text.contains(PAN) && !text.contains("424242"),
        "no PAN in metrics"
    );
    assert!(!text.contains("ic_"), "no card id in metrics");
}

#[test]
fn health_and_readiness() {
    let switch = Switch::start("");
    assert_eq!(
        http(switch.metrics, "GET", "/healthz", None, None)
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        http(switch.metrics, "GET", "/readyz", None, None)
            .unwrap()
            .0,
        200
    );
}

/// `authswitch_admin_requests_total` counts every admin answer once, by status: successes
/// were not counted, nor the body limit's 413, and each 401 was counted twice.
#[test]
fn admin_requests_are_counted_once_by_status() {
    let switch = Switch::start("[admin]\nbody_bytes_max = 1024\n");
    let series = |status: &str| format!("authswitch_admin_requests_total{{status=\"{status}\"}}");
    let before = switch.metrics_text();
    let count = |text: &str, status: &str| metric(text, &series(status)).unwrap_or(0.0);
    for _ in 0..3 {
        switch.api_ok(
            "POST",
            "/v1/accounts",
            Some(serde_json::json!({"currency": "usd"})),
        );
    }
    let (status, _) = http(switch.admin, "GET", "/v1/accounts", None, None).unwrap();
    assert_eq!(status, 401);
    let big = format!(
        "{{\"currency\": \"usd\", \"x\": \"{}\"}}",
        "a".repeat(2_000)
    );
    let (status, _) = switch.api(
        "POST",
        "/v1/accounts",
        Some(serde_json::from_str(&big).unwrap()),
    );
    assert_eq!(status, 413);
    let after = switch.metrics_text();
    for (label, moved) in [("200", 3.0), ("401", 1.0), ("413", 1.0)] {
        assert_eq!(
            count(&after, label) - count(&before, label),
            moved,
            "{label}"
        );
    }
}
