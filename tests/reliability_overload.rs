//! Overload (issue 7): offered load far beyond what the switch can decide, on several
//! connections with deep pipelining, against a small `[ledger] queue_depth_max` and a short
//! `[server] request_deadline_ms`. Every request must get an answer, the excess must be
//! answered 91 at once instead of queueing, memory must stay bounded (VmRSS of the child), and
//! the requests that were served must have been served quickly.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authswitch::iso8583::{MessageBuilder, Mti};
use common::{de39, Client, Switch};
use serde_json::json;

const CONNECTIONS: usize = 6;
/// Requests one connection may send in the run (STANs 1..=MESSAGES_MAX, its own acquirer).
const MESSAGES_MAX: usize = 240_000;
/// Each connection offers `BURST` requests every `BURST_EVERY` (64 000 a second).
const BURST: usize = 128;
const BURST_EVERY: Duration = Duration::from_millis(2);
const OFFER_S: u64 = 3;
/// Growth of the switch's resident memory allowed over the whole run.
const RSS_GROWTH_KIB_MAX: u64 = 64 * 1024;
const CONFIG: &str = "[ledger]\nqueue_depth_max = 16\n[server]\nrequest_deadline_ms = 20\n";

/// A balance inquiry: it goes through the shard queue and the WAL batch like an
/// authorization but adds nothing to the ledger, so memory growth is the switch's, not data.
fn inquiry<'a>(pan: &'a str, acquirer: &'a str, stan: u32) -> MessageBuilder<'a> {
    let mut b = MessageBuilder::new(Mti::new(100));
    b.set_text(2, pan.as_bytes())
        .set_text(3, b"300000")
        .set_number(4, 0)
        .set_text(7, b"1122000000")
        .set_number(11, u64::from(stan))
        .set_text(32, acquirer.as_bytes())
        .set_number(49, 840);
    b
}

/// Per connection: requests sent, DE39 counts, and latencies of the served ones.
#[derive(Default)]
struct Tally {
    sent: u64,
    answered: u64,
    approved: u64,
    overloaded: u64,
    other: Vec<String>,
    served_latency_us: Vec<u64>,
}

fn flood(iso: SocketAddr, pan: String, acquirer: String) -> Tally {
    let mut reader = Client::connect(iso);
    let mut writer = reader.stream.try_clone().unwrap();
    let sent_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..MESSAGES_MAX).map(|_| AtomicU64::new(0)).collect());
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let frames: Vec<Vec<u8>> = (0..MESSAGES_MAX)
        .map(|i| reader.encode(&inquiry(&pan, &acquirer, i as u32 + 1)))
        .collect();
    let (sent_w, done_w, at_w) = (sent.clone(), done.clone(), sent_at.clone());
    let send = std::thread::spawn(move || {
        let mut i = 0;
        while i < MESSAGES_MAX && epoch.elapsed() < Duration::from_secs(OFFER_S) {
            let end = (i + BURST).min(MESSAGES_MAX);
            let now_us = epoch.elapsed().as_micros() as u64;
            for at in &at_w[i..end] {
                at.store(now_us, Ordering::Relaxed);
            }
            writer.write_all(&frames[i..end].concat()).unwrap();
            i = end;
            let next = BURST_EVERY * (i / BURST) as u32;
            std::thread::sleep(next.saturating_sub(epoch.elapsed()));
            sent_w.store(i as u64, Ordering::Release);
        }
        done_w.store(true, Ordering::Release);
    });
    let mut tally = Tally::default();
    loop {
        // `done` is read before `sent`, and the writer stores `sent` before `done`.
        let finished = done.load(Ordering::Acquire);
        if tally.answered >= sent.load(Ordering::Acquire) {
            if finished {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let Some(response) = reader.try_recv() else {
            eprintln!(
                "connection {acquirer}: no more answers after {} of {} (writer done: {finished})",
                tally.answered,
                sent.load(Ordering::Acquire)
            );
            break;
        };
        let index = response.stan().unwrap() as usize - 1;
        tally.answered += 1;
        match de39(&response).as_str() {
            "00" => {
                tally.approved += 1;
                let at_us = sent_at[index].load(Ordering::Relaxed);
                tally
                    .served_latency_us
                    .push(epoch.elapsed().as_micros() as u64 - at_us);
            }
            "91" => tally.overloaded += 1,
            other => tally.other.push(other.to_string()),
        }
    }
    send.join().unwrap();
    tally.sent = sent.load(Ordering::Acquire);
    tally
}

/// Reads `count` answers, each of a different STAN and each 00 or 91; returns how many of
/// each.
fn read_00_or_91(client: &mut common::Client, count: usize) -> (u64, u64) {
    let mut answered = std::collections::HashSet::new();
    let (mut served, mut shed) = (0u64, 0u64);
    for _ in 0..count {
        let response = client.recv();
        let stan = response.stan().unwrap();
        assert!(answered.insert(stan), "STAN {stan} twice");
        match de39(&response).as_str() {
            "00" => served += 1,
            "91" => shed += 1,
            other => panic!("STAN {stan} answered {other}"),
        }
    }
    (served, shed)
}

/// Every counter of a request answered 91 by the overload policy.
const SHED_COUNTERS: [&str; 6] = [
    "authswitch_shard_overloaded_total",
    "authswitch_deadline_missed_total",
    "authswitch_queue_shed_total",
    "authswitch_door_shed_total",
    "authswitch_backlog_shed_total",
    "authswitch_cap_shed_total",
];

/// The sum of every series (any labels) of the metrics `names` in a Prometheus text page.
fn series_sum(metrics: &str, names: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| names.iter().any(|name| l.starts_with(name)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The upper bound of the bucket holding the 99th percentile of a Prometheus histogram.
fn histogram_p99_s(metrics: &str, name: &str) -> f64 {
    let count = common::metric_value(metrics, &format!("{name}_count"));
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, n) = rest.split_once("\"} ")?;
            Some((
                le.parse::<f64>().unwrap_or(f64::INFINITY),
                n.trim().parse::<f64>().ok()?,
            ))
        })
        .find(|(_, n)| *n >= count * 0.99)
        .map_or(f64::INFINITY, |(le, _)| le)
}

#[test]
fn excess_load_is_answered_91_with_bounded_memory() {
    let switch = Switch::start(CONFIG);
    let pans: Vec<String> = (0..CONNECTIONS)
        .map(|c| {
            let a = switch.api_ok("POST", "/v1/accounts", Some(json!({"currency": "usd"})));
            let account = a["id"].as_str().unwrap();
            let body = json!({"account": account, "name": format!("Flood {c}")});
            let h = switch.api_ok("POST", "/v1/cardholders", Some(body));
            switch
                .add_generated_card(h["id"].as_str().unwrap(), json!({}))
                .1
        })
        .collect();
    // Warm up allocator and connections once so the baseline is not an empty process.
    let mut warm = switch.client();
    const WARM_UP: u32 = 100;
    for stan in 1..=WARM_UP {
        assert_eq!(de39(&warm.call(&inquiry(&pans[0], "1", stan))), "00");
    }
    let rss_before_kib = switch.rss_kib();
    let started = Instant::now();
    let iso = switch.iso;
    let floods: Vec<_> = pans
        .iter()
        .enumerate()
        .map(|(c, pan)| {
            let pan = pan.clone();
            let acquirer = format!("{}", 700_001 + c);
            std::thread::spawn(move || flood(iso, pan, acquirer))
        })
        .collect();
    let tallies: Vec<Tally> = floods.into_iter().map(|f| f.join().unwrap()).collect();
    let elapsed = started.elapsed();
    let rss_after_kib = switch.rss_kib();
    let sent: u64 = tallies.iter().map(|t| t.sent).sum();
    let answered: u64 = tallies.iter().map(|t| t.answered).sum();
    let approved: u64 = tallies.iter().map(|t| t.approved).sum();
    let overloaded: u64 = tallies.iter().map(|t| t.overloaded).sum();
    let mut latencies: Vec<u64> = tallies
        .iter()
        .flat_map(|t| t.served_latency_us.clone())
        .collect();
    latencies.sort_unstable();
    let p99_us = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or(0);
    eprintln!(
        "overload: {sent} sent in {elapsed:?}, {answered} answered, {approved} served, \
         {overloaded} answered 91, served p99 {p99_us} us, VmRSS {rss_before_kib} -> \
         {rss_after_kib} KiB"
    );
    for t in &tallies {
        assert_eq!(t.answered, t.sent, "every request gets an answer");
        assert!(
            t.other.is_empty(),
            "only 00 or 91: {:?}",
            &t.other[..t.other.len().min(5)]
        );
    }
    assert!(
        overloaded > 0 && approved > 0,
        "{approved} served, {overloaded} shed"
    );
    assert!(
        rss_after_kib < rss_before_kib + RSS_GROWTH_KIB_MAX,
        "VmRSS grew from {rss_before_kib} to {rss_after_kib} KiB"
    );
    // Client side, a served request also waited in our own socket buffers behind the
    // pipeline; the switch's own histogram says how long it held each request.
    assert!(p99_us < 2_000_000, "served p99 {p99_us} us");
    let metrics = switch.metrics_text();
    let server_p99_s = histogram_p99_s(&metrics, "authswitch_request_duration_seconds");
    eprintln!("overload: switch-side p99 of every answer <= {server_p99_s} s");
    assert!(server_p99_s <= 0.1, "switch-side p99 {server_p99_s} s");
    let decided_p99_s = histogram_p99_s(&metrics, "authswitch_decided_request_duration_seconds");
    eprintln!("overload: switch-side p99 of the requests served <= {decided_p99_s} s");
    assert!(
        decided_p99_s <= 0.1,
        "switch-side served p99 {decided_p99_s} s"
    );
    assert_eq!(
        series_sum(
            &metrics,
            &["authswitch_decided_request_duration_seconds_count"]
        ) as u64,
        u64::from(WARM_UP) + approved,
        "every request served, and only those, is in the served histogram"
    );
    let shed = series_sum(&metrics, &SHED_COUNTERS);
    assert_eq!(shed as u64, overloaded, "{metrics}");
    // Still serving normally once the flood is over.
    let mut after = switch.client();
    assert_eq!(de39(&after.call(&inquiry(&pans[0], "1", 999_000))), "00");
    assert!(switch.stop().success());
}

/// A connection that stays at its in-flight bound for the shedding interval (100 ms) answers
/// the request past the bound at the door: 91 without asking the ledger, while the request
/// that holds the permit still waits (here on its platform's decision, 1 s). Network
/// management is answered as usual at the door. Nothing is lost and no balance moves for the
/// shed request.
#[test]
fn a_request_past_the_in_flight_bound_is_answered_91_at_the_door() {
    const PAN: &str = "4000056655665556";
    let switch = Switch::start("[server]\nin_flight_per_connection_max = 1\n");
    let (account, _, _) = switch.provision(10_000, PAN);
    // A decision endpoint that accepts and never answers: the first authorization holds
    // the connection's only permit until its 1 s deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/decide", silent.local_addr().unwrap());
    let held: Arc<parking_lot::Mutex<Vec<std::net::TcpStream>>> = Arc::default();
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().take(4).flatten() {
            keep.lock().push(stream);
        }
    });
    let body = json!({"authorization_webhook": {"url": url, "secret": "whsec_door_0123456789",
        "deadline_ms": 1000, "on_timeout": "decline"}});
    switch.api_ok("POST", &format!("/v1/accounts/{account}"), Some(body));

    let mut c = switch.client();
    let started = Instant::now();
    c.send(&common::auth_0100(PAN, 1_000, 1));
    // Until the platform call is under way the first request is not yet waiting on it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.lock().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the switch never called the endpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    c.send(&common::auth_0100(PAN, 2_000, 2));
    let shed = c.recv();
    assert_eq!(
        (shed.stan(), de39(&shed).as_str()),
        (Some(2), "91"),
        "the second request is shed at the door"
    );
    assert_eq!(common::field(&shed, 4).as_deref(), Some("000000002000"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100),
        "shed after {waited:?}: a brief stall is waited out"
    );
    assert!(
        waited < Duration::from_millis(900),
        "answered before the first"
    );
    let mut echo = MessageBuilder::new(Mti::new(800));
    echo.set_text(7, b"1122000000")
        .set_number(11, 3)
        .set_text(70, b"301");
    c.send(&echo);
    let echoed = c.recv();
    assert_eq!((echoed.stan(), de39(&echoed).as_str()), (Some(3), "00"));
    // The first gets its platform default once its deadline passes.
    let first = c.recv();
    assert_eq!((first.stan(), de39(&first).as_str()), (Some(1), "05"));
    assert_eq!(switch.balance(&account), (10_000, 0, 0));
    assert_eq!(switch.metric("authswitch_door_shed_total"), 1.0);
    assert_eq!(
        switch.metric("authswitch_requests_total{mti=\"0100\",de39=\"91\"}"),
        1.0
    );
    assert!(switch.stop().success());
}

/// Pins every thread of process `pid` to `cpu`; threads it starts later inherit it.
fn pin_process(pid: u32, cpu: usize) {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let tid: libc::pid_t = task.file_name().to_str().unwrap().parse().unwrap();
        pin_thread(tid, cpu);
    }
}

/// Pins thread `tid` (0: the calling thread) to `cpu`.
fn pin_thread(tid: libc::pid_t, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it, and
    // sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(rc, 0, "sched_setaffinity({tid}, {cpu})");
}

/// A peer that sends faster than the reader can take in leaves a standing queue in the
/// socket: once it has stood for the shedding interval, the frames of reads that leave a queue
/// behind are answered 91 at the door (`backlog_shed_total`), and every request still gets
/// exactly one answer. To make the reader the slower side, the switch is pinned to one CPU
/// that a busy thread shares with it, and the sender to another. The in-flight bound is set
/// high, so the door that acts at that bound is not what answers here.
#[test]
fn a_reader_left_behind_by_its_peer_answers_91_at_the_door() {
    const FRAMES: usize = 400_000;
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("SKIPPED: needs two CPUs (the switch on one, its peer on the other)");
        return;
    }
    let switch = Switch::start(
        "[server]\nin_flight_per_connection_max = 65536\nread_lag_target_ms = 2\n\
         request_deadline_ms = 60000\n[ledger]\nqueue_depth_max = 65536\n\
         queue_wait_target_ms = 0\n",
    );
    let (_, _, _) = switch.provision(10_000, "4000056655665556");
    let mut client = switch.client();
    let burst: Vec<u8> = (0..FRAMES)
        .flat_map(|i| client.encode(&inquiry("4000056655665556", "700100", i as u32 + 1)))
        .collect();
    let mut writer = client.stream.try_clone().unwrap();
    pin_process(switch.pid(), 0);
    let busy = Arc::new(AtomicBool::new(true));
    let spin = busy.clone();
    let hog = std::thread::spawn(move || {
        pin_thread(0, 0);
        while spin.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    });
    let send = std::thread::spawn(move || {
        pin_thread(0, 1);
        writer.write_all(&burst).unwrap()
    });
    let (served, shed) = read_00_or_91(&mut client, FRAMES);
    send.join().unwrap();
    busy.store(false, Ordering::Relaxed);
    hog.join().unwrap();
    eprintln!("backlog: {FRAMES} sent, {served} served, {shed} answered 91 at the door");
    assert!(shed > 0 && served > 0, "{served} served, {shed} shed");
    let metrics = switch.metrics_text();
    let backlog_shed = common::metric_value(&metrics, "authswitch_backlog_shed_total");
    assert!(backlog_shed > 0.0, "nothing shed at the door: {metrics}");
    // A slow sync may still fill the shard queue, and a starved writer may keep the
    // connection at its in-flight bound for long enough to open that door too (and then
    // the cap's): those answers are counted where they were given.
    assert_eq!(series_sum(&metrics, &SHED_COUNTERS), shed as f64);
    assert_eq!(
        switch.metric("authswitch_requests_total{mti=\"0100\",de39=\"91\"}"),
        shed as f64
    );
    // The queue is gone: a request on its own is served.
    let mut after = switch.client();
    assert_eq!(
        de39(&after.call(&inquiry("4000056655665556", "1", 1))),
        "00"
    );
    assert!(switch.stop().success());
}

/// What one connection saw of a steady offer to a switch with a slow disk.
struct SlowDiskRun {
    served: u64,
    shed: u64,
    /// Of a burst sent after a quiet spell that followed the offer: the 00 answers.
    served_after: usize,
    metrics: String,
}

/// Sends `frames` one a millisecond (all at once when `spaced` is false) and reads every
/// answer; returns the numbers of 00 and 91.
fn offer_and_read(client: &mut common::Client, frames: Vec<Vec<u8>>, spaced: bool) -> (u64, u64) {
    let mut writer = client.stream.try_clone().unwrap();
    let sent = frames.len();
    let send = std::thread::spawn(move || {
        let started = Instant::now();
        if !spaced {
            return writer.write_all(&frames.concat()).unwrap();
        }
        for (i, frame) in frames.iter().enumerate() {
            writer.write_all(frame).unwrap();
            let next = Duration::from_millis(i as u64 + 1);
            std::thread::sleep(next.saturating_sub(started.elapsed()));
        }
    });
    let answers = read_00_or_91(client, sent);
    send.join().unwrap();
    answers
}

/// Offers one authorization of 1 minor unit a millisecond for 1.5 s on one connection (bound
/// 64) to a switch whose syncs take 50 ms and whose batches hold 8 records: 160 a second, so
/// requests queue for their shard behind up to 8 batches. The connection's 64 requests hold
/// its bound for longer than the door's 100 ms, and the door starts answering 91. The read
/// lag's shedding is off: the reader waits at the bound, so its later reads lag, and that
/// shedding would answer them before the cap is asked. So is the shard queue's: the waits
/// are standing, and it would shed the queue the cap is to shorten. Then, 300 ms after the
/// last answer, a burst of 40 (under the bound).
fn steady_offer_to_a_slow_disk(target_ms: u64) -> SlowDiskRun {
    const OFFER_MS: u32 = 1_500;
    const PAN: &str = "4000056655665556";
    let switch = Switch::start(&format!(
        "[server]\nin_flight_per_connection_max = 64\noverload_latency_target_ms = {target_ms}\n\
         read_lag_target_ms = 0\nrequest_deadline_ms = 60000\n\
         [ledger]\nbatch_records_max = 8\nqueue_wait_target_ms = 0\n\
         [wal]\nfault_plan = \"slow_sync_ms=50\"\n"
    ));
    switch.provision(10_000, PAN);
    let mut client = switch.client();
    let frames: Vec<Vec<u8>> = (1..=OFFER_MS)
        .map(|stan| client.encode(&common::auth_0100(PAN, 1, stan)))
        .collect();
    let (served, shed) = offer_and_read(&mut client, frames, true);
    std::thread::sleep(Duration::from_millis(300));
    let burst: Vec<Vec<u8>> = (OFFER_MS + 1..=OFFER_MS + 40)
        .map(|stan| client.encode(&common::auth_0100(PAN, 1, stan)))
        .collect();
    let (served_after, _) = offer_and_read(&mut client, burst, false);
    let metrics = switch.metrics_text();
    assert!(switch.stop().success());
    SlowDiskRun {
        served,
        shed,
        served_after: served_after as usize,
        metrics,
    }
}

/// Mean of a Prometheus histogram.
fn histogram_mean_s(metrics: &str, name: &str) -> f64 {
    common::metric_value(metrics, &format!("{name}_sum"))
        / common::metric_value(metrics, &format!("{name}_count"))
}

/// A connection that sheds keeps fewer requests in the switch while those it serves queue
/// there. Here the requests served wait for their shard behind up to 8 batches of 50 ms, far
/// more than one base (the quickest, 50 ms) and the target, so the cap comes down from the
/// bound, by a quarter an interval, to 32; while the connection sheds, the frames that find
/// the cap reached are answered 91 too (`authswitch_cap_shed_total`), and the requests served
/// wait about half as long as with the cap off, when only the door sheds and the connection
/// keeps its 64 requests in the switch. Once the connection has shed nothing for an interval,
/// the cap no longer applies, though nothing was written since that would say so: a burst of
/// 40 after a quiet spell is served whole.
#[test]
fn a_shedding_connection_keeps_fewer_requests_in_a_slow_switch() {
    let on = steady_offer_to_a_slow_disk(5);
    let wait_on = histogram_mean_s(&on.metrics, "authswitch_queue_wait_duration_seconds");
    eprintln!(
        "cap on: {} served, {} answered 91, mean queue wait {wait_on} s",
        on.served, on.shed
    );
    let metrics = &on.metrics;
    let cap_shed = common::metric_value(metrics, "authswitch_cap_shed_total");
    let door_shed = common::metric_value(metrics, "authswitch_door_shed_total");
    assert!(door_shed >= 1.0, "the door never opened: {metrics}");
    assert!(cap_shed >= 1.0, "the cap never applied: {metrics}");
    let all_shed = series_sum(metrics, &SHED_COUNTERS);
    assert_eq!(all_shed as u64, on.shed, "{metrics}");
    assert_eq!(
        common::metric_value(metrics, "authswitch_decided_request_duration_seconds_count") as u64,
        on.served + 40
    );
    assert_eq!(on.served_after, 40, "the cap outlived the overload");

    let off = steady_offer_to_a_slow_disk(0);
    let wait_off = histogram_mean_s(&off.metrics, "authswitch_queue_wait_duration_seconds");
    eprintln!(
        "cap off: {} served, {} answered 91, mean queue wait {wait_off} s",
        off.served, off.shed
    );
    assert_eq!(
        common::metric_value(&off.metrics, "authswitch_cap_shed_total"),
        0.0
    );
    assert!(common::metric_value(&off.metrics, "authswitch_door_shed_total") >= 1.0);
    assert_eq!(off.served_after, 40);
    assert!(
        wait_on < 0.8 * wait_off,
        "mean queue wait {wait_on} s with the cap, {wait_off} s without"
    );
}
