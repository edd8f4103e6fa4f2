//! Real-time authorization decisions by the platform, end to end: the real switch binary, a
//! real local HTTP endpoint started by the test (scripted answers, every request recorded),
//! ISO 8583 over TCP. Each case checks DE39, the balance to the minor unit, the request
//! history, and that the signature verifies with the endpoint's secret.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authswitch::iso8583::MessageBuilder;
use common::{auth_0100, de39, field, Switch};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

const PAN: &str = "4242424242424242";
const SECRET: &str = "whsec_test_0123456789abcdef";

/// What the endpoint does with the next requests.
#[derive(Clone)]
enum Mode {
    Reply {
        status: u16,
        body: &'static str,
        delay_ms: u64,
    },
    /// Closes the connection without answering.
    Drop,
}

/// One request as the endpoint received it.
#[derive(Clone)]
struct Received {
    signature: String,
    body: Vec<u8>,
}

/// A local HTTP/1.1 endpoint (keep-alive, one thread per connection).
struct Endpoint {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Endpoint {
    fn start(mode: Mode) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (m, r) = (mode.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (m, r) = (m.clone(), r.clone());
                std::thread::spawn(move || serve(stream, &m, &r));
            }
        });
        Endpoint {
            addr,
            mode,
            received,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/authorizations", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    fn last(&self) -> Received {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

fn reply(body: &'static str) -> Mode {
    Mode::Reply {
        status: 200,
        body,
        delay_ms: 0,
    }
}

fn serve(stream: TcpStream, mode: &Mutex<Mode>, received: &Mutex<Vec<Received>>) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut signature = String::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "authswitch-signature" => signature = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        received.lock().unwrap().push(Received { signature, body });
        let current = mode.lock().unwrap().clone();
        match current {
            Mode::Drop => return,
            Mode::Reply {
                status,
                body,
                delay_ms,
            } => {
                std::thread::sleep(Duration::from_millis(delay_ms));
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.len()
                );
                if out.write_all(head.as_bytes()).is_err()
                    || out.write_all(body.as_bytes()).is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Checks `t=<s>,v1=<hex>` against HMAC-SHA256(secret, "<s>.<body>").
fn signature_verifies(r: &Received, secret: &str) -> bool {
    let Some((t, v1)) = r
        .signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == v1
}

fn set_webhook(switch: &Switch, account: &str, webhook: Value) -> Value {
    switch.api_ok(
        "POST",
        &format!("/v1/accounts/{account}"),
        Some(json!({ "authorization_webhook": webhook })),
    )
}

fn webhook(url: &str, deadline_ms: u32, on_timeout: &str) -> Value {
    json!({"url": url, "secret": SECRET, "deadline_ms": deadline_ms, "on_timeout": on_timeout})
}

/// The card's newest authorization (ids grow with each new authorization of the shard).
fn newest_authorization(switch: &Switch, card: &str) -> Value {
    let list = switch.api_ok(
        "GET",
        &format!("/v1/authorizations?card={card}&limit=100"),
        None,
    );
    let data = list["data"].as_array().unwrap();
    data.iter()
        .max_by_key(|a| {
            let id = a["id"].as_str().unwrap();
            id.to_string()
        })
        .cloned()
        .unwrap()
}

fn history_kinds(auth: &Value) -> Vec<String> {
    auth["request_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

fn partial_ok(mut b: MessageBuilder<'_>) -> MessageBuilder<'_> {
    b.set_text(60, b"0000000001");
    b
}

#[test]
fn platform_approves_declines_and_approves_partially() {
    let switch = Switch::start("");
    let (account, holder, card) = switch.provision(10_000, PAN);
    let endpoint = Endpoint::start(reply(r#"{"approved": true}"#));
    let view = set_webhook(&switch, &account, webhook(&endpoint.url(), 1000, "decline"));
    assert_eq!(
        view["authorization_webhook"],
        json!({"url": endpoint.url(), "deadline_ms": 1000, "on_timeout": "decline"})
    );
    assert!(
        !view.to_string().contains(SECRET),
        "the secret is never shown"
    );
    let mut c = switch.client();

    let approved = c.call(&auth_0100(PAN, 1_000, 1));
    assert_eq!(de39(&approved), "00");
    assert_eq!(field(&approved, 38).map(|c| c.len()), Some(6));
    assert_eq!(switch.balance(&account), (9_000, 1_000, 0));
    let auth = newest_authorization(&switch, &card);
    assert_eq!(history_kinds(&auth), ["authorization", "webhook_approved"]);
    assert_eq!(auth["status"], "pending");
    let sent = endpoint.last();
    assert!(signature_verifies(&sent, SECRET));
    assert!(!signature_verifies(&sent, "another-secret-0123456789"));
    let event: Value = serde_json::from_slice(&sent.body).unwrap();
    let a = &event["data"]["authorization"];
    assert_eq!(event["type"], "issuing_authorization.request");
    assert_eq!(event["id"], format!("evt_{}", auth["id"].as_str().unwrap()));
    assert_eq!(a["id"], auth["id"]);
    assert_eq!(a["amount"], 1_000);
    assert_eq!(a["currency"], "usd");
    assert_eq!(a["merchant_amount"], 1_000);
    assert_eq!(a["merchant_currency"], "usd");
    assert_eq!(a["card"], json!({"id": card, "last4": "4242"}));
    assert_eq!(a["cardholder"], holder);
    assert_eq!(a["account"], account);
    assert_eq!(a["merchant_data"]["terminal_id"], "TERM0001");
    assert_eq!(a["merchant_data"]["category_code"], "5411");
    assert_eq!(
        a["pending_request"]["is_amount_controllable"], false,
        "no DE60 partial indicator"
    );
    let text = String::from_utf8_lossy(&sent.body);
    assert!(!text.contains(PAN) && !text.contains("424242424242"));

    endpoint.set(reply(r#"{"approved": false}"#));
    let declined = c.call(&auth_0100(PAN, 2_000, 2));
    assert_eq!(de39(&declined), "05");
    assert_eq!(field(&declined, 38), None);
    assert_eq!(switch.balance(&account), (9_000, 1_000, 0));
    let auth = newest_authorization(&switch, &card);
    assert_eq!(history_kinds(&auth), ["authorization", "webhook_declined"]);
    assert_eq!(auth["status"], "closed");
    assert_eq!(auth["held"], 0);
    assert_eq!(auth["request_history"][1]["reason"], "platform_declined");
    // A retransmission gets the final answer and calls nobody.
    let calls = endpoint.count();
    assert_eq!(de39(&c.call(&auth_0100(PAN, 2_000, 2))), "05");
    assert_eq!(endpoint.count(), calls);

    endpoint.set(reply(r#"{"approved": true, "amount": 600}"#));
    let partial = c.call(&partial_ok(auth_0100(PAN, 1_000, 3)));
    assert_eq!(de39(&partial), "10");
    assert_eq!(field(&partial, 4).as_deref(), Some("000000000600"));
    assert_eq!(switch.balance(&account), (8_400, 1_600, 0));
    let auth = newest_authorization(&switch, &card);
    assert_eq!(history_kinds(&auth), ["authorization", "webhook_approved"]);
    assert_eq!(
        (auth["amount"].as_i64(), auth["held"].as_i64()),
        (Some(600), Some(600))
    );
    let event: Value = serde_json::from_slice(&endpoint.last().body).unwrap();
    assert_eq!(
        event["data"]["authorization"]["pending_request"]["is_amount_controllable"],
        true
    );

    // Less than asked where the request does not allow it: declined.
    let refused = c.call(&auth_0100(PAN, 1_000, 4));
    assert_eq!(de39(&refused), "05");
    assert_eq!(switch.balance(&account), (8_400, 1_600, 0));
    let auth = newest_authorization(&switch, &card);
    assert_eq!(history_kinds(&auth), ["authorization", "webhook_declined"]);

    // The switch's own decline never reaches the platform.
    let calls = endpoint.count();
    assert_eq!(de39(&c.call(&auth_0100(PAN, 50_000, 5))), "51");
    assert_eq!(endpoint.count(), calls);
}

#[test]
fn late_error_and_dropped_answers_take_the_default() {
    let switch = Switch::start("");
    let (account, _, card) = switch.provision(10_000, PAN);
    let late = Mode::Reply {
        status: 200,
        body: r#"{"approved": true}"#,
        delay_ms: 800,
    };
    let endpoint = Endpoint::start(late.clone());
    let mut c = switch.client();
    let cases: [(Mode, &str, &str, &str, i64); 5] = [
        (late.clone(), "decline", "05", "webhook_timeout", 0),
        (late, "approve", "00", "webhook_timeout", 1_000),
        (
            Mode::Reply {
                status: 500,
                body: r#"{"approved": true}"#,
                delay_ms: 0,
            },
            "decline",
            "05",
            "webhook_error",
            0,
        ),
        (Mode::Drop, "approve", "00", "webhook_error", 1_000),
        (
            reply(r#"{"approve": "yes"}"#),
            "decline",
            "05",
            "webhook_error",
            0,
        ),
    ];
    let mut held = 0;
    for (stan, (mode, on_timeout, code, kind, holds)) in (1u32..).zip(cases) {
        endpoint.set(mode);
        set_webhook(&switch, &account, webhook(&endpoint.url(), 200, on_timeout));
        let started = Instant::now();
        let answer = c.call(&auth_0100(PAN, 1_000, stan));
        assert_eq!(de39(&answer), code, "case {stan}");
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "case {stan}: deadline kept"
        );
        held += holds;
        assert_eq!(
            switch.balance(&account),
            (10_000 - held, held, 0),
            "case {stan}"
        );
        let auth = newest_authorization(&switch, &card);
        assert_eq!(history_kinds(&auth), ["authorization", kind], "case {stan}");
        assert_eq!(auth["held"], holds, "case {stan}");
        assert!(signature_verifies(&endpoint.last(), SECRET));
    }
    assert_eq!(endpoint.count(), 5);
}

#[test]
fn concurrency_bound_and_slow_endpoint_block_nobody_else() {
    let switch = Switch::start("[server]\nwebhook_concurrency_per_endpoint_max = 1\n");
    let (account, _, card) = switch.provision(10_000, PAN);
    let other_pan = "4000056655665556";
    let (other_account, _, _) = switch.provision(10_000, other_pan);
    let endpoint = Endpoint::start(Mode::Reply {
        status: 200,
        body: r#"{"approved": true}"#,
        delay_ms: 500,
    });
    set_webhook(&switch, &account, webhook(&endpoint.url(), 2000, "decline"));
    let mut c = switch.client();
    // Pipelined on one connection: the slow call, the call over the bound, another account.
    c.send(&auth_0100(PAN, 1_000, 1));
    while endpoint.count() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    c.send(&auth_0100(PAN, 2_000, 2));
    c.send(&auth_0100(other_pan, 3_000, 3));
    let answers: Vec<(String, String)> = (0..3)
        .map(|_| {
            let m = c.recv();
            (field(&m, 11).unwrap(), de39(&m))
        })
        .collect();
    assert_eq!(answers.len(), 3);
    let last = &answers[2];
    assert_eq!(
        last,
        &("000001".to_string(), "00".to_string()),
        "{answers:?}"
    );
    assert!(answers[..2].contains(&("000002".to_string(), "05".to_string())));
    assert!(answers[..2].contains(&("000003".to_string(), "00".to_string())));
    assert_eq!(
        endpoint.count(),
        1,
        "the call over the bound was never made"
    );
    assert_eq!(switch.balance(&account), (9_000, 1_000, 0));
    assert_eq!(switch.balance(&other_account), (7_000, 3_000, 0));
    let list = switch.api_ok(
        "GET",
        &format!("/v1/authorizations?card={card}&limit=100"),
        None,
    );
    let mut kinds: Vec<Vec<String>> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(history_kinds)
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ["authorization", "webhook_approved"],
            ["authorization", "webhook_error"]
        ]
    );
}

#[test]
fn endpoint_settings_are_validated_removed_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let switch = Switch::start_on(&data, "");
    let (account, _, card) = switch.provision(10_000, PAN);
    let endpoint = Endpoint::start(reply(r#"{"approved": true}"#));
    let path = format!("/v1/accounts/{account}");
    let bad = [
        (
            json!({"url": endpoint.url(), "secret": SECRET, "deadline_ms": 2001}),
            "authorization_webhook.deadline_ms",
        ),
        (
            json!({"url": "https://example.com/x", "secret": SECRET}),
            "authorization_webhook.url",
        ),
        (
            json!({"url": endpoint.url(), "secret": "short"}),
            "authorization_webhook.secret",
        ),
    ];
    for (body, param) in bad {
        let (status, error) =
            switch.api("POST", &path, Some(json!({"authorization_webhook": body})));
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    let view = switch.api_ok(
        "POST",
        &path,
        Some(json!({"authorization_webhook": {"url": endpoint.url(), "secret": SECRET}})),
    );
    assert_eq!(view["authorization_webhook"]["deadline_ms"], 300);
    assert_eq!(view["authorization_webhook"]["on_timeout"], "decline");
    // Another change leaves the endpoint alone.
    let view = switch.api_ok("POST", &path, Some(json!({"status": "active"})));
    assert_eq!(view["authorization_webhook"]["deadline_ms"], 300);
    switch.stop();

    // Replay rebuilds the settings.
    let switch = Switch::start_on(&data, "");
    let mut c = switch.client();
    assert_eq!(de39(&c.call(&auth_0100(PAN, 1_000, 1))), "00");
    assert_eq!(endpoint.count(), 1);
    let view = switch.api_ok("POST", &path, Some(json!({"authorization_webhook": null})));
    assert_eq!(view["authorization_webhook"], Value::Null);
    assert_eq!(de39(&c.call(&auth_0100(PAN, 1_000, 2))), "00");
    assert_eq!(endpoint.count(), 1, "no endpoint, no call");
    let auth = newest_authorization(&switch, &card);
    assert_eq!(history_kinds(&auth), ["authorization"]);
    assert_eq!(switch.balance(&account), (8_000, 2_000, 0));
}

#[test]
fn authorization_awaiting_the_platform_at_a_crash_is_declined_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let switch = Switch::start_on(&data, "");
    let (account, _, card) = switch.provision(10_000, PAN);
    let endpoint = Endpoint::start(Mode::Reply {
        status: 200,
        body: r#"{"approved": true}"#,
        delay_ms: 5_000,
    });
    set_webhook(&switch, &account, webhook(&endpoint.url(), 2000, "approve"));
    let mut c = switch.client();
    c.send(&auth_0100(PAN, 1_000, 1));
    let started = Instant::now();
    while endpoint.count() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    // The hold is durable before the platform is called.
    switch.kill();
    let switch = Switch::start_on(&data, "");
    let started = Instant::now();
    let auth = loop {
        let auth = newest_authorization(&switch, &card);
        if auth["request_history"].as_array().unwrap().len() == 2 {
            break auth;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{auth}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(history_kinds(&auth), ["authorization", "webhook_error"]);
    assert_eq!(auth["status"], "closed");
    assert_eq!(switch.balance(&account), (10_000, 0, 0));
}

#[test]
fn shutdown_waits_for_the_platform_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let switch = Switch::start_on(&data, "");
    let (account, _, card) = switch.provision(10_000, PAN);
    let endpoint = Endpoint::start(Mode::Reply {
        status: 200,
        body: r#"{"approved": true}"#,
        delay_ms: 400,
    });
    set_webhook(&switch, &account, webhook(&endpoint.url(), 2000, "decline"));
    let mut c = switch.client();
    c.send(&auth_0100(PAN, 1_000, 1));
    let started = Instant::now();
    while endpoint.count() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let reader = std::thread::spawn(move || c.try_recv().map(|m| de39(&m)));
    let status = switch.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(reader.join().unwrap().as_deref(), Some("00"));
    // The decision was durable before the answer left.
    let switch = Switch::start_on(&data, "");
    let auth = newest_authorization(&switch, &card);
    assert_eq!(history_kinds(&auth), ["authorization", "webhook_approved"]);
    assert_eq!(switch.balance(&account), (9_000, 1_000, 0));
}
