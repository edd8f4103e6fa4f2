//! Crash torture test (issue 7): mixed traffic on several connections (authorizations,
//! incrementals through DE90, full and partial reversals, 0120 advices, captures through the
//! admin API) while the switch is killed with SIGKILL at random moments and restarted on the
//! same data directory, with snapshots every 50 records so some kills land during a snapshot.
//!
//! The model only follows answers the client actually received. After each restart every
//! request left unanswered is retransmitted with the same transaction key, so its answer is
//! either the original outcome (it had been applied) or a fresh decision (it had not); either
//! way the model becomes exact again and every balance, every pending hold, every capture and
//! every reversal must match it to the minor unit. The short version runs 20 cycles; set
//! `AUTHSWITCH_TORTURE_CYCLES` for a long run by hand.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authswitch::iso8583::{MessageBuilder, Mti};
use common::{de39, field, files_under, http, serve_until_exit, Client, Rng, Switch, TOKEN};
use serde_json::{json, Value};

const CYCLES_DEFAULT: usize = 20;
const THREADS: usize = 4;
const CARDS_PER_THREAD: usize = 3;
/// Enough that captures never exhaust an account in a long run; declines come from the
/// requests over `HUGE_MINOR` instead.
const FUNDS_MINOR: i64 = 50_000_000;
/// An amount no account can cover: such requests must be declined 51 and move nothing.
const HUGE_MINOR: i64 = 100_000_000;
/// Most rounds one connection drives in a cycle (one request per card per round).
const ROUNDS_MAX: usize = 400;
/// The kill comes this long after traffic starts, at most.
const KILL_AFTER_MS_MAX: u64 = 400;
/// Pending holds per card at most (the API lists 100 per page): beyond, the plan reverses.
const HOLDS_MAX: u64 = 60;
const CONFIG: &str = "[wal]\nsnapshot_every_records = 50\nsnapshot_log_percent_min = 0\n";

/// One pending hold as the model knows it; its terminal id (DE41) identifies it in the API.
#[derive(Clone, Debug)]
struct Hold {
    terminal: String,
    stan: u32,
    held_minor: i64,
    id: Option<String>,
}

/// One card, its own account, and what the acknowledged answers say about them.
#[derive(Clone, Debug)]
struct CardModel {
    pan: String,
    account: String,
    card_id: String,
    acquirer: String,
    available_minor: i64,
    held_minor: i64,
    spent_minor: i64,
    holds: Vec<Hold>,
    /// (authorization id, captured amount) acknowledged since the last check.
    captured: Vec<(String, i64)>,
    /// Authorization ids fully reversed (acknowledged) since the last check.
    reversed: Vec<String>,
}

#[derive(Clone, Debug)]
enum Op {
    Auth {
        amount_minor: i64,
    },
    Incremental {
        terminal: String,
        amount_minor: i64,
    },
    Reversal {
        terminal: String,
        keep_minor: Option<i64>,
    },
    Advice {
        amount_minor: i64,
    },
}

/// A request that was sent: enough to retransmit it byte for byte and to apply its answer.
#[derive(Clone, Debug)]
struct Sent {
    card: usize,
    stan: u32,
    op: Op,
    bytes: Vec<u8>,
}

/// A capture whose HTTP answer never arrived.
#[derive(Clone, Debug)]
struct LostCapture {
    card: usize,
    terminal: String,
    id: String,
    amount_minor: i64,
}

#[derive(Default)]
struct Stats {
    messages: u64,
    acknowledged: u64,
    retransmitted: u64,
    captures: u64,
    checks: u64,
    interrupted_recoveries: u64,
}

fn de7(stan: u32) -> String {
    format!("1122{:06}", stan % 1_000_000)
}

fn terminal_of(stan: u32) -> String {
    format!("T{:07}", stan % 10_000_000)
}

fn de90(card: &CardModel, stan: u32) -> String {
    format!("0100{stan:06}{}{:0>11}{:011}", de7(stan), card.acquirer, 0)
}

/// Builds the framed request of `op` for `card` (2-byte binary header, default format).
fn request(card: &CardModel, op: &Op, stan: u32) -> Vec<u8> {
    let hold = |terminal: &str| card.holds.iter().find(|h| h.terminal == terminal).unwrap();
    let own = terminal_of(stan);
    let (mti, amount_minor, terminal, original, de95) = match op {
        Op::Auth { amount_minor } => (100, *amount_minor, own, None, None),
        Op::Advice { amount_minor } => (120, *amount_minor, own, None, None),
        Op::Incremental {
            terminal,
            amount_minor,
        } => {
            let original = de90(card, hold(terminal).stan);
            (100, *amount_minor, terminal.clone(), Some(original), None)
        }
        Op::Reversal {
            terminal,
            keep_minor,
        } => {
            let h = hold(terminal);
            let de95 = keep_minor.map(|k| format!("{k:012}{k:012}C00000000C00000000"));
            (
                400,
                h.held_minor,
                terminal.clone(),
                Some(de90(card, h.stan)),
                de95,
            )
        }
    };
    let time = de7(stan);
    let mut b = MessageBuilder::new(Mti::new(mti));
    b.set_text(2, card.pan.as_bytes())
        .set_text(3, b"000000")
        .set_number(4, amount_minor as u64)
        .set_text(7, time.as_bytes())
        .set_number(11, u64::from(stan))
        .set_number(18, 5999)
        .set_text(32, card.acquirer.as_bytes())
        .set_text(41, terminal.as_bytes())
        .set_number(49, 840);
    if mti == 120 {
        b.set_text(39, b"00");
    }
    if let Some(original) = &original {
        b.set_text(90, original.as_bytes());
    }
    if let Some(de95) = &de95 {
        b.set_text(95, de95.as_bytes());
    }
    let format = authswitch::iso8583::WireFormat::default();
    let mut body = bytes::BytesMut::new();
    b.encode(&format, &mut body).expect("encodable request");
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn plan(rng: &mut Rng, card: &CardModel) -> Op {
    let roll = rng.below(100);
    let pending = card.holds.len() as u64;
    if (roll < 15 || pending >= HOLDS_MAX) && pending > 0 {
        let h = &card.holds[rng.below(pending) as usize];
        let keep_minor = (rng.below(2) == 0 && h.held_minor > 1)
            .then(|| 1 + rng.below(h.held_minor as u64 - 1) as i64);
        return Op::Reversal {
            terminal: h.terminal.clone(),
            keep_minor,
        };
    }
    if roll < 25 && pending > 0 {
        let h = &card.holds[rng.below(pending) as usize];
        return Op::Incremental {
            terminal: h.terminal.clone(),
            amount_minor: huge_or(rng, 2_000),
        };
    }
    if roll < 32 {
        return Op::Advice {
            amount_minor: 1 + rng.below(2_000) as i64,
        };
    }
    Op::Auth {
        amount_minor: huge_or(rng, 6_000),
    }
}

/// 1 to `max_minor`, or (one request in twenty) more than any account holds.
fn huge_or(rng: &mut Rng, max_minor: u64) -> i64 {
    if rng.below(20) == 0 {
        HUGE_MINOR
    } else {
        1 + rng.below(max_minor) as i64
    }
}

/// Applies an acknowledged answer to the model; an answer the model cannot explain is an error.
fn apply(card: &mut CardModel, op: &Op, stan: u32, code: &str) -> Result<(), String> {
    let expect = |ok: &[&str]| {
        if ok.contains(&code) {
            Ok(())
        } else {
            Err(format!("{op:?} stan {stan}: unexpected DE39 {code}"))
        }
    };
    // Funds are ample, so the model predicts every decision exactly.
    let funds = |amount: i64| {
        if amount <= card.available_minor {
            "00"
        } else {
            "51"
        }
    };
    match op {
        Op::Auth { amount_minor } | Op::Advice { amount_minor } => {
            let want = if matches!(op, Op::Auth { .. }) {
                funds(*amount_minor)
            } else {
                "00"
            };
            expect(&[want])?;
            if code == "00" {
                card.available_minor -= amount_minor;
                card.held_minor += amount_minor;
                card.holds.push(Hold {
                    terminal: terminal_of(stan),
                    stan,
                    held_minor: *amount_minor,
                    id: None,
                });
            }
        }
        Op::Incremental {
            terminal,
            amount_minor,
        } => {
            expect(&[funds(*amount_minor)])?;
            if code == "00" {
                card.available_minor -= amount_minor;
                card.held_minor += amount_minor;
                let h = card
                    .holds
                    .iter_mut()
                    .find(|h| &h.terminal == terminal)
                    .unwrap();
                h.held_minor += amount_minor;
            }
        }
        Op::Reversal {
            terminal,
            keep_minor,
        } => {
            expect(&["00"])?;
            let at = card
                .holds
                .iter()
                .position(|h| &h.terminal == terminal)
                .unwrap();
            let keep = keep_minor.unwrap_or(0);
            let released = card.holds[at].held_minor - keep;
            card.available_minor += released;
            card.held_minor -= released;
            if keep == 0 {
                let h = card.holds.remove(at);
                card.reversed.extend(h.id);
            } else {
                card.holds[at].held_minor = keep;
            }
        }
    }
    Ok(())
}

/// What one connection thread brings back after the switch died (or its rounds ran out).
struct Driven {
    cards: Vec<CardModel>,
    unanswered: Vec<Sent>,
    lost_capture: Option<LostCapture>,
    messages: u64,
    acknowledged: u64,
    captures: u64,
}

fn api(admin: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
    let body = body.map(|b| b.to_string());
    let (status, text) = http(admin, method, path, body.as_deref(), Some(TOKEN)).ok()?;
    if status == 0 {
        return None;
    }
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Finds the id of the pending authorization with `terminal` on `card`, through the API.
fn pending_id(admin: SocketAddr, card: &CardModel, terminal: &str) -> Option<Option<String>> {
    let path = format!(
        "/v1/authorizations?card={}&status=pending&limit=100",
        card.card_id
    );
    let (status, list) = api(admin, "GET", &path, None)?;
    assert_eq!(status, 200, "{list}");
    // A body cut short by the kill is no answer.
    Some(
        list["data"]
            .as_array()?
            .iter()
            .find(|a| a["merchant_data"]["terminal_id"] == terminal)
            .map(|a| a["id"].as_str().unwrap().to_string()),
    )
}

/// Captures one pending hold of one card; returns Err(lost capture) when the switch died.
fn capture_one(
    admin: SocketAddr,
    rng: &mut Rng,
    cards: &mut [CardModel],
    index: usize,
) -> Result<bool, Option<LostCapture>> {
    let card = &mut cards[index];
    if card.holds.is_empty() {
        return Ok(false);
    }
    let at = rng.below(card.holds.len() as u64) as usize;
    let terminal = card.holds[at].terminal.clone();
    let id = match pending_id(admin, card, &terminal) {
        None => return Err(None),
        Some(None) => panic!(
            "acknowledged hold {terminal} of {} not pending",
            card.card_id
        ),
        Some(Some(id)) => id,
    };
    let amount_minor = 1 + rng.below(card.holds[at].held_minor as u64 * 2) as i64;
    let path = format!("/v1/authorizations/{id}/capture");
    let lost = LostCapture {
        card: index,
        terminal,
        id,
        amount_minor,
    };
    match api(
        admin,
        "POST",
        &path,
        Some(json!({ "amount": amount_minor })),
    ) {
        None => Err(Some(lost)),
        Some((200, _)) => {
            apply_capture(card, &lost);
            Ok(true)
        }
        Some((status, body)) => panic!("capture {}: {status} {body}", lost.id),
    }
}

fn apply_capture(card: &mut CardModel, capture: &LostCapture) {
    let at = card
        .holds
        .iter()
        .position(|h| h.terminal == capture.terminal)
        .unwrap();
    let hold = card.holds.remove(at);
    card.held_minor -= hold.held_minor;
    card.available_minor += hold.held_minor - capture.amount_minor;
    card.spent_minor += capture.amount_minor;
    card.captured
        .push((capture.id.clone(), capture.amount_minor));
}

/// One connection: rounds of one pipelined request per card, a capture now and then, until
/// the switch dies or `ROUNDS_MAX` is reached.
fn drive(
    iso: SocketAddr,
    admin: SocketAddr,
    mut cards: Vec<CardModel>,
    mut rng: Rng,
    stans: Arc<AtomicU32>,
) -> Driven {
    let mut out = Driven {
        cards: Vec::new(),
        unanswered: Vec::new(),
        lost_capture: None,
        messages: 0,
        acknowledged: 0,
        captures: 0,
    };
    let Ok(mut client) = Client::try_connect(iso) else {
        out.cards = cards;
        return out;
    };
    'rounds: for round in 0..ROUNDS_MAX {
        let mut sent: Vec<Sent> = Vec::new();
        for (i, card) in cards.iter().enumerate() {
            let stan = stans.fetch_add(1, Ordering::Relaxed);
            let op = plan(&mut rng, card);
            let bytes = request(card, &op, stan);
            sent.push(Sent {
                card: i,
                stan,
                op,
                bytes,
            });
        }
        for s in &sent {
            out.messages += 1;
            if std::io::Write::write_all(&mut client.stream, &s.bytes).is_err() {
                out.unanswered = sent;
                break 'rounds;
            }
        }
        while !sent.is_empty() {
            let Some(response) = client.try_recv() else {
                out.unanswered = sent;
                break 'rounds;
            };
            let stan = response.stan().unwrap();
            let at = sent.iter().position(|s| s.stan == stan).expect("our stan");
            let s = sent.remove(at);
            apply(&mut cards[s.card], &s.op, stan, &de39(&response)).unwrap();
            out.acknowledged += 1;
        }
        if round % 5 == 4 {
            let index = rng.below(cards.len() as u64) as usize;
            match capture_one(admin, &mut rng, &mut cards, index) {
                Ok(done) => {
                    out.captures += u64::from(done);
                    out.acknowledged += u64::from(done);
                }
                Err(lost) => {
                    out.lost_capture = lost;
                    break;
                }
            }
        }
    }
    out.cards = cards;
    out
}

fn setup(switch: &Switch, rng: &mut Rng) -> Vec<CardModel> {
    (0..THREADS * CARDS_PER_THREAD)
        .map(|i| {
            let name = format!("Torture {i}");
            let (account, holder) = switch.account_and_holder(FUNDS_MINOR, &name);
            let (card_id, pan) = switch.add_generated_card(&holder, json!({}));
            CardModel {
                pan,
                account,
                card_id,
                acquirer: format!("{}", 100_000 + rng.below(900_000)),
                available_minor: FUNDS_MINOR,
                held_minor: 0,
                spent_minor: 0,
                holds: Vec::new(),
                captured: Vec::new(),
                reversed: Vec::new(),
            }
        })
        .collect()
}

/// Retransmits every unanswered request with its original bytes (same key) and applies the
/// answer; resolves lost captures by reading the authorization.
fn settle(switch: &Switch, cards: &mut [CardModel], lost: Vec<Sent>, captures: Vec<LostCapture>) {
    let mut client = switch.client();
    for s in lost {
        client.send_raw(&s.bytes);
        let response = client.recv();
        assert_eq!(response.stan(), Some(s.stan));
        assert_eq!(
            field(&response, 11).map(|f| f.parse::<u32>().unwrap()),
            Some(s.stan)
        );
        apply(&mut cards[s.card], &s.op, s.stan, &de39(&response))
            .unwrap_or_else(|e| panic!("retransmission: {e}"));
    }
    for c in captures {
        let a = switch.api_ok("GET", &format!("/v1/authorizations/{}", c.id), None);
        match a["status"].as_str().unwrap() {
            "closed" => {
                assert_eq!(a["captured"], c.amount_minor, "{a}");
                apply_capture(&mut cards[c.card], &c);
            }
            "pending" => assert_eq!(a["captured"], 0, "{a}"),
            other => panic!("lost capture left the authorization {other}: {a}"),
        }
    }
}

/// Every balance, pending hold, capture and reversal against the model; returns checks made.
fn check(switch: &Switch, cards: &mut [CardModel], when: &str) -> u64 {
    let mut checks = 0;
    for card in cards.iter_mut() {
        let a = switch.api_ok("GET", &format!("/v1/accounts/{}", card.account), None);
        let b = &a["balance"];
        let got = (
            b["available"].as_i64(),
            b["held"].as_i64(),
            b["spent"].as_i64(),
        );
        let want = (
            Some(card.available_minor),
            Some(card.held_minor),
            Some(card.spent_minor),
        );
        assert_eq!(got, want, "{when}: balance of {}", card.account);
        let (funded, refunded) = (
            a["funded"].as_i64().unwrap(),
            a["refunded"].as_i64().unwrap(),
        );
        assert_eq!(funded, FUNDS_MINOR);
        assert_eq!(
            funded - card.spent_minor - card.held_minor + refunded,
            card.available_minor,
            "{when}: funded - spent - held + refunded = available on {}",
            card.account
        );
        let path = format!(
            "/v1/authorizations?card={}&status=pending&limit=100",
            card.card_id
        );
        let list = switch.api_ok("GET", &path, None);
        let mut pending: Vec<(String, i64, String)> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let t = a["merchant_data"]["terminal_id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (
                    t,
                    a["held"].as_i64().unwrap(),
                    a["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        pending.sort();
        card.holds.sort_by(|x, y| x.terminal.cmp(&y.terminal));
        let got: Vec<(&str, i64)> = pending.iter().map(|p| (p.0.as_str(), p.1)).collect();
        let want: Vec<(&str, i64)> = card
            .holds
            .iter()
            .map(|h| (h.terminal.as_str(), h.held_minor))
            .collect();
        assert_eq!(got, want, "{when}: pending holds of {}", card.card_id);
        for (hold, p) in card.holds.iter_mut().zip(&pending) {
            hold.id = Some(p.2.clone());
        }
        for (id, amount) in card.captured.drain(..) {
            let a = switch.api_ok("GET", &format!("/v1/authorizations/{id}"), None);
            assert_eq!(
                (a["status"].as_str(), a["captured"].as_i64()),
                (Some("closed"), Some(amount))
            );
            checks += 1;
        }
        for id in card.reversed.drain(..) {
            let a = switch.api_ok("GET", &format!("/v1/authorizations/{id}"), None);
            assert_eq!(a["status"], "reversed", "{when}: {a}");
            checks += 1;
        }
        checks += 4 + card.holds.len() as u64;
    }
    checks
}

fn cycles() -> usize {
    std::env::var("AUTHSWITCH_TORTURE_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES_DEFAULT)
}

fn seed() -> u64 {
    std::env::var("AUTHSWITCH_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            u64::from(nanos) | 1
        })
}

/// One cycle of traffic ending in SIGKILL; returns the models and what was left unanswered.
fn cycle(
    switch: Switch,
    cards: Vec<CardModel>,
    rng: &mut Rng,
    stans: &Arc<AtomicU32>,
    stats: &mut Stats,
) -> (Vec<CardModel>, Vec<Sent>, Vec<LostCapture>) {
    let (iso, admin) = (switch.iso, switch.admin);
    let workers: Vec<_> = cards
        .chunks(CARDS_PER_THREAD)
        .map(|chunk| {
            let (chunk, thread_rng, stans) = (chunk.to_vec(), Rng(rng.next() | 1), stans.clone());
            std::thread::spawn(move || drive(iso, admin, chunk, thread_rng, stans))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20 + rng.below(KILL_AFTER_MS_MAX)));
    switch.kill();
    let (mut cards, mut lost, mut captures) = (Vec::new(), Vec::new(), Vec::new());
    for (t, worker) in workers.into_iter().enumerate() {
        let driven = worker.join().expect("driver thread");
        stats.messages += driven.messages;
        stats.acknowledged += driven.acknowledged;
        stats.captures += driven.captures;
        let offset = t * CARDS_PER_THREAD;
        lost.extend(driven.unanswered.into_iter().map(|mut s| {
            s.card += offset;
            s
        }));
        captures.extend(driven.lost_capture.map(|mut c| {
            c.card += offset;
            c
        }));
        cards.extend(driven.cards);
    }
    (cards, lost, captures)
}

/// No PAN (digits, BCD, or its first 12 digits) in the data dir, the logs or /metrics.
fn scan_for_pans(data_dir: &Path, texts: &[String], pans: &[String]) {
    let mut files = Vec::new();
    files_under(data_dir, &mut files);
    let mut haystacks: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read(f).unwrap()))
        .collect();
    haystacks.extend(
        texts
            .iter()
            .map(|t| ("log/metrics".to_string(), t.as_bytes().to_vec())),
    );
    for pan in pans {
        let digits = pan.as_bytes();
        let bcd: Vec<u8> = digits
            .chunks(2)
            .map(|p| ((p[0] - b'0') << 4) | (p[1] - b'0'))
            .collect();
        for needle in [digits.to_vec(), bcd, digits[..12].to_vec()] {
            for (name, hay) in &haystacks {
                let found = hay.windows(needle.len()).any(|w| w == needle.as_slice());
                assert!(
                    !found,
                    "a PAN (masked {}) found in {name}",
                    &pan[pan.len() - 4..]
                );
            }
        }
    }
}

/// Starts the switch on the crashed directory and kills it 5 to 80 ms later, during or just
/// after recovery: a crash there must leave a directory the next start recovers as well.
fn interrupted_recovery(data_dir: &Path, rng: &mut Rng) {
    let after = Duration::from_millis(5 + rng.below(75));
    let args = ["--admin-listen", "127.0.0.1:0"];
    if let Some((status, stderr)) = serve_until_exit(data_dir, CONFIG, &args, true, after) {
        panic!("the switch exited on its own during recovery ({status}): {stderr}");
    }
}

#[test]
fn acknowledged_operations_survive_kill_9_at_random_moments() {
    let seed = seed();
    eprintln!("torture seed {seed} (AUTHSWITCH_TORTURE_SEED to replay)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let started = Instant::now();
    let switch = Switch::start_on(&data_dir, CONFIG);
    let mut cards = setup(&switch, &mut rng);
    let pans: Vec<String> = cards.iter().map(|c| c.pan.clone()).collect();
    let mut logs: Vec<Arc<Mutex<Vec<String>>>> = vec![switch.log.clone()];
    let stans = Arc::new(AtomicU32::new(1));
    let mut stats = Stats::default();
    let mut switch = Some(switch);
    let cycles = cycles();
    for n in 0..cycles {
        let s = switch.take().unwrap();
        let (mut models, lost, captures) = cycle(s, cards, &mut rng, &stans, &mut stats);
        stats.retransmitted += lost.len() as u64 + captures.len() as u64;
        if rng.below(3) == 0 {
            interrupted_recovery(&data_dir, &mut rng);
            stats.interrupted_recoveries += 1;
        }
        let again = Switch::start_on(&data_dir, CONFIG);
        logs.push(again.log.clone());
        settle(&again, &mut models, lost, captures);
        stats.checks += check(&again, &mut models, &format!("after crash {n}"));
        cards = models;
        switch = Some(again);
    }
    let last = switch.take().unwrap();
    let metrics = last.metrics_text();
    assert!(last.stop().success());
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_authswitch"))
        .args(["wal", "verify"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let mut texts: Vec<String> = logs.iter().map(|l| l.lock().unwrap().join("\n")).collect();
    texts.push(metrics);
    scan_for_pans(&data_dir, &texts, &pans);
    eprintln!(
        "torture: {cycles} cycles ({} recoveries also killed), {} messages, {} acknowledged \
         operations, {} captures, {} retransmitted after a crash, {} checks against the model, \
         lost 0, {:?}",
        stats.interrupted_recoveries,
        stats.messages,
        stats.acknowledged,
        stats.captures,
        stats.retransmitted,
        stats.checks,
        started.elapsed()
    );
    assert!(stats.acknowledged > 0 && stats.checks > 0);
}
