//! Provisioning and `--verify` against a fake admin API (a minimal HTTP/1.1 server on a
//! thread), with the echo host as the ISO 8583 side.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_loadtest");
const TOKEN: &str = "sekrit";

#[derive(Default)]
struct Admin {
    accounts: Vec<i64>,
    holders: Vec<usize>,
    cards: usize,
    /// Account of each card created, in creation order.
    card_accounts: Vec<usize>,
    bulk_calls: usize,
    unavailable_left: usize,
    calls: Vec<String>,
}

fn respond(stream: &mut TcpStream, status: &str, body: &Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

fn account(id: usize, funded: i64) -> Value {
    json!({"id": format!("acct_{id}"), "object": "account",
           "balance": {"available": funded, "held": 0, "spent": 0}})
}

fn handle(state: &Mutex<Admin>, method: &str, path: &str, body: &Value) -> (&'static str, Value) {
    let mut s = state.lock().unwrap();
    s.calls.push(format!("{method} {path}"));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("POST", ["v1", "accounts"]) if s.unavailable_left > 0 => {
            s.unavailable_left -= 1;
            (
                "503 Service Unavailable",
                json!({"error": {"message": "starting"}}),
            )
        }
        ("POST", ["v1", "accounts"]) => {
            assert_eq!(body["currency"], "usd");
            s.accounts.push(0);
            ("200 OK", account(s.accounts.len() - 1, 0))
        }
        ("POST", ["v1", "accounts", id, "fundings"]) => {
            let i: usize = id.trim_start_matches("acct_").parse().unwrap();
            s.accounts[i] += body["amount"].as_i64().unwrap();
            ("200 OK", account(i, s.accounts[i]))
        }
        ("GET", ["v1", "accounts", id]) => {
            let i: usize = id.trim_start_matches("acct_").parse().unwrap();
            ("200 OK", account(i, s.accounts[i]))
        }
        ("POST", ["v1", "cardholders"]) => {
            let acct = body["account"].as_str().unwrap();
            s.holders
                .push(acct.trim_start_matches("acct_").parse().unwrap());
            let id = format!("ich_{}", s.holders.len() - 1);
            ("200 OK", json!({"id": id, "object": "issuing.cardholder"}))
        }
        ("POST", ["v1", "bulk", "cards"]) => {
            s.bulk_calls += 1;
            let cards = body["cards"].as_array().unwrap();
            let mut data = Vec::new();
            for card in cards {
                assert_eq!(
                    (card["exp_month"].as_u64(), card["exp_year"].as_u64()),
                    (Some(12), Some(2030))
                );
                assert!(card["cardholder"].as_str().unwrap().starts_with("ich_"));
                let holder = card["cardholder"].as_str().unwrap();
                let holder: usize = holder.trim_start_matches("ich_").parse().unwrap();
                let account = s.holders[holder];
                s.card_accounts.push(account);
                s.cards += 1;
                data.push(json!({"id": format!("ic_{}", s.cards), "number": format!("4000{:012}", s.cards)}));
            }
            (
                "200 OK",
                json!({"object": "list", "created": data.len(), "data": data}),
            )
        }
        _ => ("404 Not Found", json!({"error": {"message": "no route"}})),
    }
}

/// Serves one keep-alive connection until the client closes it.
fn serve_connection(state: Arc<Mutex<Admin>>, stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = request_line.split_whitespace();
        let (method, path) = (
            words.next().unwrap_or("").to_string(),
            words.next().unwrap_or("").to_string(),
        );
        let (mut length, mut authorized) = (0usize, false);
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "authorization" => authorized = value.trim() == format!("Bearer {TOKEN}"),
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !authorized {
            respond(&mut stream, "401 Unauthorized", &json!({"error": {}}));
            continue;
        }
        let (status, answer) = handle(&state, &method, &path, &body);
        respond(&mut stream, status, &answer);
    }
}

fn fake_admin(unavailable: usize) -> (String, Arc<Mutex<Admin>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(Mutex::new(Admin {
        unavailable_left: unavailable,
        ..Admin::default()
    }));
    let shared = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = shared.clone();
            std::thread::spawn(move || serve_connection(state, stream));
        }
    });
    (addr, state)
}

struct EchoHost(Child, String);

impl Drop for EchoHost {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo_host() -> EchoHost {
    let mut child = Command::new(BIN)
        .args(["echo-host", "--listen", "127.0.0.1:0", "--threads", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    EchoHost(child, line.trim().to_string())
}

fn run(target: &str, admin: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args([
            "run",
            "--target",
            target,
            "--admin",
            admin,
            "--admin-token",
            TOKEN,
        ])
        .args([
            "--quiet",
            "--connections",
            "2",
            "--in-flight",
            "4",
            "--requests",
            "200",
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn provisions_through_503s_writes_the_portfolio_and_verifies() {
    let host = echo_host();
    let (admin, state) = fake_admin(2);
    let dir = tempfile::tempdir().unwrap();
    let cards = dir.path().join("cards.txt");
    let json_path = dir.path().join("report.json");
    let common = [
        "--cards",
        "12",
        "--accounts",
        "3",
        "--fund-minor",
        "50000",
        "--verify",
        "--cards-file",
        cards.to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
    ];
    // Echo tests move no money: every account must be unchanged, and it is.
    let mut args = common.to_vec();
    args.extend(["--mix", "echo=1"]);
    let out = run(&host.1, &admin, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["verify"]["ok"], true, "{report}");
    assert_eq!(report["verify"]["accounts_checked"], 3);
    assert_eq!(report["verify"]["mismatches"], json!([]));
    {
        let s = state.lock().unwrap();
        assert_eq!(s.accounts, [50000, 50000, 50000]);
        // One cardholder per account; creation order varies with concurrency.
        let mut holders = s.holders.clone();
        holders.sort_unstable();
        assert_eq!(holders, [0, 1, 2]);
        assert_eq!((s.cards, s.bulk_calls), (12, 1));
        // Three accounts, two of the attempts answered 503 and retried.
        let attempts = s.calls.iter().filter(|c| *c == "POST /v1/accounts").count();
        assert_eq!(attempts, 5, "{:?}", s.calls);
        assert_eq!(s.unavailable_left, 0);
    }
    let portfolio = std::fs::read_to_string(&cards).unwrap();
    let lines: Vec<&str> = portfolio.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 12);
    let card_accounts = state.lock().unwrap().card_accounts.clone();
    let mut per_account = HashMap::new();
    for (n, line) in lines.iter().enumerate() {
        let account = card_accounts[n];
        assert_eq!(*line, format!("4{:015},3012,acct_{account}", n + 1));
        *per_account.entry(account).or_insert(0) += 1;
    }
    // Round robin: four cards on each account.
    assert_eq!(per_account, HashMap::from([(0, 4), (1, 4), (2, 4)]));

    // Reusing the portfolio provisions nothing. The echo host approves every purchase but
    // the fake ledger holds nothing, so verify must report held mismatches and exit 2.
    let mut args = common.to_vec();
    args.extend(["--mix", "auth=1"]);
    let out = run(&host.1, &admin, &args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("verify        FAILED"), "{table}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["verify"]["ok"], false);
    let mismatches = report["verify"]["mismatches"].as_array().unwrap();
    assert!(mismatches.iter().any(|m| m["kind"] == "held"), "{report}");
    assert_eq!(state.lock().unwrap().bulk_calls, 1);
}

#[test]
fn wrong_token_is_reported_without_retrying() {
    let host = echo_host();
    let (admin, state) = fake_admin(0);
    let out = Command::new(BIN)
        .args([
            "run",
            "--target",
            &host.1,
            "--admin",
            &admin,
            "--admin-token",
            "nope",
        ])
        .args(["--quiet", "--requests", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("POST /v1/accounts: HTTP 401"), "{stderr}");
    assert!(
        state.lock().unwrap().calls.is_empty(),
        "a 401 is answered before routing"
    );
}
