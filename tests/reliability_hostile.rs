//! Hostile peers (issue 7): a storm of connection attempts beyond `connections_max`, slow
//! senders, peers that never read their answers, frames at the size limit, length headers over
//! it, zero-length frames and random bytes. Through all of it the switch stays up, a
//! well-behaved connection keeps answering quickly, memory stays bounded, and every case is
//! counted in `authswitch_frames_rejected_total{reason}` or the connection metrics.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use authswitch::iso8583::{MessageBuilder, Mti};
use common::{de39, Client, Switch};

const CONNECTIONS_MAX: usize = 32;
const STORM: u64 = 10_000;
/// Threads sharing the storm (it must divide `STORM`).
const STORM_THREADS: u64 = 4;
const FRAME_LEN_MAX: usize = 8192;
/// Slowest acceptable answer to the well-behaved connection while the others misbehave.
const GOOD_LATENCY_MAX: Duration = Duration::from_millis(750);
const CONFIG: &str = "[server]\nconnections_max = 32\nframe_read_timeout_ms = 400\n\
                      write_timeout_ms = 1000\nin_flight_per_connection_max = 64\n";

fn echo(stan: u32) -> MessageBuilder<'static> {
    let mut b = MessageBuilder::new(Mti::new(800));
    b.set_text(7, b"1122000000")
        .set_number(11, u64::from(stan))
        .set_text(70, b"301");
    b
}

/// A well-behaved connection answering echoes in a loop until stopped; returns the slowest
/// answer and how many it got.
fn good_peer(iso: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<(Duration, u32)> {
    let mut client = Client::connect(iso);
    std::thread::spawn(move || {
        let (mut slowest, mut stan) = (Duration::ZERO, 0u32);
        while !stop.load(Ordering::Acquire) {
            stan += 1;
            let started = Instant::now();
            let response = client.call(&echo(stan % 999_999 + 1));
            assert_eq!(de39(&response), "00");
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
        (slowest, stan)
    })
}

fn finish(good: JoinHandle<(Duration, u32)>, stop: &AtomicBool, what: &str) {
    stop.store(true, Ordering::Release);
    let (slowest, answered) = good.join().expect("the good peer was answered every time");
    eprintln!("{what}: good peer answered {answered} echoes, slowest {slowest:?}");
    assert!(answered > 0);
    assert!(
        slowest < GOOD_LATENCY_MAX,
        "{what}: slowest answer {slowest:?}"
    );
}

fn rejected(switch: &Switch, reason: &str) -> f64 {
    switch.metric(&format!(
        "authswitch_frames_rejected_total{{reason=\"{reason}\"}}"
    ))
}

/// True once the peer closed the connection (EOF or reset) within `within`.
fn closed_by_switch(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn ten_thousand_connection_attempts_beyond_the_limit_are_refused_and_counted() {
    let switch = Switch::start(CONFIG);
    let stop = Arc::new(AtomicBool::new(false));
    let good = good_peer(switch.iso, stop.clone());
    // Fill every other slot, so each attempt of the storm finds the switch full.
    let held: Vec<TcpStream> = (1..CONNECTIONS_MAX)
        .map(|_| TcpStream::connect(switch.iso).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        switch.metric("authswitch_connections_open"),
        CONNECTIONS_MAX as f64
    );
    let iso = switch.iso;
    let storm: Vec<_> = (0..STORM_THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..STORM / STORM_THREADS {
                    drop(TcpStream::connect(iso).unwrap());
                }
            })
        })
        .collect();
    storm.into_iter().for_each(|t| t.join().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while switch.metric("authswitch_connections_refused_total") < STORM as f64 {
        assert!(Instant::now() < deadline, "refusals not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        switch.metric("authswitch_connections_refused_total"),
        STORM as f64
    );
    drop(held);
    // With the slots free again, attempts are accepted, or refused while the tasks of the
    // ones just closed still hold their slot: every attempt is counted one way or the other.
    let total_before = switch.metric("authswitch_connections_total");
    for _ in 0..1_000 {
        drop(TcpStream::connect(switch.iso).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let accepted = switch.metric("authswitch_connections_total") - total_before;
        let refused = switch.metric("authswitch_connections_refused_total") - STORM as f64;
        if accepted + refused == 1_000.0 && switch.metric("authswitch_connections_open") == 1.0 {
            eprintln!("after the storm: {accepted} accepted, {refused} refused");
            assert!(accepted > 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{accepted} accepted + {refused} refused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    finish(good, &stop, "connection storm");
    assert!(switch.stop().success());
}

#[test]
fn malformed_frames_are_rejected_counted_and_harmless() {
    let switch = Switch::start(CONFIG);
    let stop = Arc::new(AtomicBool::new(false));
    let good = good_peer(switch.iso, stop.clone());

    // 100 zero-length frames are ignored; the echo after them is answered.
    let mut zero = switch.client();
    zero.send_raw(&[0u8; 200]);
    assert_eq!(de39(&zero.call(&echo(7))), "00");
    assert_eq!(rejected(&switch, "zero_length"), 100.0);

    // A frame of exactly the maximum size is read and answered (30: junk after DE11).
    let mut max = switch.client();
    let mut body = b"0800".to_vec();
    body.extend_from_slice(&[0x00, 0x20, 0, 0, 0, 0, 0, 0]); // bitmap: DE11 only
    body.extend_from_slice(b"000042");
    body.resize(FRAME_LEN_MAX, b'X');
    let mut frame = (FRAME_LEN_MAX as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    max.send_raw(&frame);
    let answer = max.recv();
    assert_eq!((answer.stan(), de39(&answer).as_str()), (Some(42), "30"));
    assert_eq!(rejected(&switch, "too_long"), 0.0);

    // A length header over the maximum closes the connection before any buffer is reserved.
    let mut long = TcpStream::connect(switch.iso).unwrap();
    long.write_all(&((FRAME_LEN_MAX + 1) as u16).to_be_bytes())
        .unwrap();
    assert!(closed_by_switch(&mut long, Duration::from_secs(5)));
    assert_eq!(rejected(&switch, "too_long"), 1.0);

    // A slow sender (one byte every 100 ms) is cut after frame_read_timeout_ms.
    let mut slow = TcpStream::connect(switch.iso).unwrap();
    let frame = zero.encode(&echo(8));
    let started = Instant::now();
    for byte in &frame[..6] {
        if slow.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed_by_switch(&mut slow, Duration::from_secs(5)));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(rejected(&switch, "slow_sender"), 1.0);

    random_bytes(&switch);
    finish(good, &stop, "malformed frames");
    assert!(switch.stop().success());
}

/// 50 connections of seeded random bytes: each ends in a counted rejection.
fn random_bytes(switch: &Switch) {
    let reasons = [
        "too_long",
        "malformed",
        "undecodable",
        "slow_sender",
        "unknown_mti",
    ];
    let before: f64 = reasons.iter().map(|r| rejected(switch, r)).sum();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(switch.iso).unwrap();
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let _ = stream.write_all(&bytes);
        assert!(closed_by_switch(&mut stream, Duration::from_secs(5)));
    }
    let after: f64 = reasons.iter().map(|r| rejected(switch, r)).sum();
    assert!(after - before >= 50.0, "{before} -> {after}");
}

#[test]
fn a_peer_that_never_reads_is_held_back_and_cut_without_memory_growth() {
    let switch = Switch::start(CONFIG);
    let stop = Arc::new(AtomicBool::new(false));
    let good = good_peer(switch.iso, stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let rss_before_kib = switch.rss_kib();
    let mut deaf = TcpStream::connect(switch.iso).unwrap();
    deaf.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut encoder = Client::connect(switch.iso);
    let burst: Vec<u8> = (1..=1_000u32)
        .flat_map(|stan| encoder.encode(&echo(stan)))
        .collect();
    // Keep writing without reading: the switch must stop reading us (our write blocks).
    let mut written = 0usize;
    let started = Instant::now();
    let blocked = loop {
        match deaf.write_all(&burst) {
            Ok(()) => written += burst.len(),
            Err(_) => break true,
        }
        if started.elapsed() > Duration::from_secs(10) {
            break false;
        }
    };
    assert!(blocked, "the switch kept reading a peer that never reads");
    let rss_after_kib = switch.rss_kib();
    eprintln!("deaf peer: {written} bytes taken, VmRSS {rss_before_kib} -> {rss_after_kib} KiB");
    assert!(written < 64 * 1024 * 1024, "{written} bytes");
    assert!(rss_after_kib < rss_before_kib + 32 * 1024);
    // After write_timeout_ms without taking answers the switch disconnects it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while switch.metric("authswitch_connections_open") > 2.0 {
        assert!(Instant::now() < deadline, "the deaf peer was never cut");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rejected(&switch, "slow_reader"), 1.0);
    drop(encoder);
    finish(good, &stop, "deaf peer");
    assert!(switch.stop().success());
}
