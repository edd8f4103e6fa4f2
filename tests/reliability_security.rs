//! Security checks of the admin surface (issue 7): every served route (each method, ids that
//! exist or not) refuses a request without the right token; a body over
//! `admin.body_bytes_max` is answered 413 before it is parsed; and `serve` refuses to start
//! with a non-loopback admin address and no configured token.

mod common;

use std::time::Duration;

use common::{http, serve_until_exit, Switch, TOKEN};
use serde_json::json;

/// Every (method, path) the router serves, with real ids where a route takes one.
fn every_route(account: &str, holder: &str, card: &str, auth: &str) -> Vec<(&'static str, String)> {
    vec![
        ("POST", "/v1/accounts".into()),
        ("GET", format!("/v1/accounts/{account}")),
        ("POST", format!("/v1/accounts/{account}")),
        ("POST", format!("/v1/accounts/{account}/fundings")),
        ("POST", "/v1/cardholders".into()),
        ("GET", format!("/v1/cardholders/{holder}")),
        ("POST", format!("/v1/cardholders/{holder}")),
        ("POST", "/v1/cards".into()),
        ("GET", format!("/v1/cards/{card}")),
        ("POST", format!("/v1/cards/{card}")),
        ("POST", "/v1/bulk/cards".into()),
        ("GET", "/v1/authorizations".into()),
        ("GET", format!("/v1/authorizations?card={card}")),
        ("GET", format!("/v1/authorizations/{auth}")),
        ("POST", format!("/v1/authorizations/{auth}/capture")),
        ("POST", "/v1/transactions/force_capture".into()),
        ("GET", "/v1/transactions/ipi_0000000000000001".into()),
        (
            "POST",
            "/v1/transactions/ipi_0000000000000001/refund".into(),
        ),
        ("DELETE", format!("/v1/accounts/{account}")),
        ("GET", "/".into()),
    ]
}

#[test]
fn every_admin_route_refuses_a_missing_or_wrong_token_and_changes_nothing() {
    let switch = Switch::start("");
    let (account, holder, card) = switch.provision(10_000, "4000056655665556");
    let mut client = switch.client();
    let approved = client.call(&common::auth_0100("4000056655665556", 1_000, 1));
    assert_eq!(common::de39(&approved), "00");
    let list = switch.api_ok("GET", &format!("/v1/authorizations?card={card}"), None);
    let auth = list["data"][0]["id"].as_str().unwrap().to_string();
    let before = switch.balance(&account);
    let body = json!({"amount": 5_000, "currency": "usd", "status": "inactive"}).to_string();
    let wrong = format!("{}x", &TOKEN[..TOKEN.len() - 1]);
    for (method, path) in every_route(&account, &holder, &card, &auth) {
        for token in [None, Some(wrong.as_str()), Some(""), Some("Bearer")] {
            let (status, text) = http(switch.admin, method, &path, Some(&body), token).unwrap();
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
            assert!(text.contains("authentication_error"), "{text}");
            assert!(!text.contains(&account) && !text.contains(&card), "{text}");
        }
    }
    // Nothing moved: no funding, no capture, no status change went through.
    assert_eq!(switch.balance(&account), before);
    let a = switch.api_ok("GET", &format!("/v1/authorizations/{auth}"), None);
    assert_eq!(
        (a["status"].as_str(), a["captured"].as_i64()),
        (Some("pending"), Some(0))
    );
    let c = switch.api_ok("GET", &format!("/v1/cards/{card}"), None);
    assert_eq!(c["status"], "active");
    assert!(switch.stop().success());
}

#[test]
fn a_body_over_the_limit_is_answered_413() {
    let switch = Switch::start("[admin]\nbody_bytes_max = 1024\n");
    let small = json!({"currency": "usd", "metadata_padding": "x".repeat(100)}).to_string();
    let (status, _) = http(
        switch.admin,
        "POST",
        "/v1/accounts",
        Some(&small),
        Some(TOKEN),
    )
    .unwrap();
    assert_eq!(
        status, 400,
        "under the limit the body is parsed (unknown field)"
    );
    let big = json!({"currency": "usd", "padding": "x".repeat(4096)}).to_string();
    for path in [
        "/v1/accounts",
        "/v1/bulk/cards",
        "/v1/transactions/force_capture",
    ] {
        let (status, text) = http(switch.admin, "POST", path, Some(&big), Some(TOKEN)).unwrap();
        assert_eq!(status, 413, "{path}: {text}");
    }
    assert!(switch.stop().success());
}

#[test]
fn serve_refuses_a_non_loopback_admin_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let args = ["--admin-listen", "0.0.0.0:0"];
    let outcome = serve_until_exit(&data_dir, "", &args, false, Duration::from_secs(30));
    let (status, stderr) = outcome.expect("serve must refuse to start, not run");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("AUTHSWITCH_ADMIN_TOKEN"),
        "{stderr}"
    );
    assert!(
        !data_dir.join("admin.token").exists(),
        "no token generated for a public address"
    );
    let args = ["--admin-listen", "[::]:0"];
    let outcome = serve_until_exit(&data_dir, "", &args, false, Duration::from_secs(30));
    let (status, stderr) = outcome.expect("serve must refuse to start, not run");
    assert!(!status.success(), "{stderr}");
}

#[test]
fn serve_refuses_an_empty_admin_token_in_the_config() {
    for token in ["\"\"", "\"  \""] {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let extra = format!("[admin]\ntoken = {token}\n");
        // A public address: before the fix, this served every route without authentication.
        let args = ["--admin-listen", "0.0.0.0:0"];
        let outcome = serve_until_exit(&data_dir, &extra, &args, false, Duration::from_secs(30));
        let (status, stderr) = outcome.expect("serve must refuse to start, not run");
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains("config key admin.token: must not be empty"),
            "{token}: {stderr}"
        );
    }
}

#[test]
fn serve_refuses_an_empty_admin_token_file() {
    for content in ["", "\n", "  \n"] {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let file = data_dir.join("admin.token");
        std::fs::write(&file, content).unwrap();
        let args = ["--admin-listen", "127.0.0.1:0"];
        let outcome = serve_until_exit(&data_dir, "", &args, false, Duration::from_secs(30));
        let (status, stderr) = outcome.expect("serve must refuse to start, not run");
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains("admin.token: the admin token file is empty"),
            "{content:?}: {stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            content,
            "left as it was"
        );
    }
}

/// A data directory that holds shards is never taken for a new one: without its PAN key a new
/// key would make every card unknown (`send` then answered 14), and without its shards file a
/// new one would count only the configured shards and hide the rest. Both refuse to start,
/// leave the directory as it was, and start again once the file is back.
#[test]
fn serve_refuses_a_data_directory_that_lost_its_key_or_shard_count() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let switch = Switch::start_on(&data_dir, "");
    switch.provision(10_000, "4242424242424242");
    assert!(switch.stop().success());
    for file in ["pan_hash.key", "shards"] {
        let path = data_dir.join(file);
        let saved = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let outcome = serve_until_exit(&data_dir, "", &[], true, Duration::from_secs(30));
        let (status, stderr) = outcome.expect("serve must refuse to start, not run");
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{file} is missing but the directory holds shard data"
            )),
            "{file}: {stderr}"
        );
        assert!(!path.exists(), "{file} made anew");
        std::fs::write(&path, saved).unwrap();
    }
    let switch = Switch::start_on(&data_dir, "");
    let mut client = switch.client();
    let answer = client.call(&common::auth_0100("4242424242424242", 100, 1));
    assert_eq!(common::de39(&answer), "00");
}

/// A program configuration the shards would refuse stops the start, naming the key: before,
/// a bad default limit was logged and the switch served without any of the configuration
/// (its limits, expiries and retention), and an age over 400 days not even logged.
#[test]
fn serve_refuses_a_program_configuration_the_shards_would_not_take() {
    let cases = [
        (
            "[ledger]\ndefault_spending_limits = [{ amount = 1000, interval = \"dayly\" }]\n",
            "ledger.default_spending_limits",
        ),
        (
            "[ledger]\ndefault_spending_limits = [{ amount = -5, interval = \"daily\" }]\n",
            "ledger.default_spending_limits",
        ),
        (
            "[ledger]\nhold_expiry_s = 40000000\n",
            "ledger.hold_expiry_s",
        ),
    ];
    for (extra, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let outcome = serve_until_exit(&data_dir, extra, &[], true, Duration::from_secs(30));
        let (status, stderr) = outcome.expect("serve must refuse to start, not run");
        assert!(!status.success(), "{stderr}");
        assert!(stderr.contains(key), "{extra}: {stderr}");
    }
}
