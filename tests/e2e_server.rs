//! End-to-end tests of the running switch over real TCP: approvals, every decline reason,
//! pipelining, many connections, malformed input, limits, and graceful shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use authswitch::iso8583::{LengthHeader, Message, MessageBuilder, Mti, WireFormat};
use common::{auth_0100, de39, field, purchase, Client, Switch};
use serde_json::json;

const PAN: &str = "4242424242424242";
const PAN2: &str = "4000056655665556";

#[test]
fn echo_and_sign_on_are_answered_and_unknown_codes_get_12() {
    let switch = Switch::start("");
    let mut client = switch.client();
    for (code, expected) in [
        (b"301", "00"),
        (b"001", "00"),
        (b"002", "00"),
        (b"999", "12"),
    ] {
        let mut b = MessageBuilder::new(Mti::new(800));
        b.set_text(7, b"1121120000")
            .set_number(11, 7)
            .set_text(70, code);
        let response = client.call(&b);
        assert_eq!(response.mti().value(), 810);
        assert_eq!(de39(&response), expected);
        assert_eq!(field(&response, 11).as_deref(), Some("000007"));
        assert_eq!(
            field(&response, 70).as_deref(),
            Some(std::str::from_utf8(code).unwrap())
        );
        assert_eq!(field(&response, 7).as_deref(), Some("1121120000"));
    }
}

#[test]
fn approval_reserves_the_amount_and_echoes_the_request() {
    let switch = Switch::start("");
    let (account, _, card) = switch.provision(10_000, PAN);
    let mut client = switch.client();
    let response = client.call(&auth_0100(PAN, 1_250, 1));
    assert_eq!(response.mti().value(), 110);
    assert_eq!(de39(&response), "00");
    assert_eq!(field(&response, 2).as_deref(), Some(PAN));
    assert_eq!(field(&response, 3).as_deref(), Some("000000"));
    assert_eq!(field(&response, 4).as_deref(), Some("000000001250"));
    assert_eq!(field(&response, 11).as_deref(), Some("000001"));
    assert_eq!(field(&response, 41).as_deref(), Some("TERM0001"));
    assert_eq!(field(&response, 49).as_deref(), Some("840"));
    assert_eq!(field(&response, 38).map(|c| c.len()), Some(6));
    assert_eq!(switch.balance(&account), (8_750, 1_250, 0));
    let list = switch.api_ok("GET", &format!("/v1/authorizations?card={card}"), None);
    let auths = list["data"].as_array().unwrap();
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0]["status"], "pending");
    assert_eq!(auths[0]["amount"], 1_250);
    assert_eq!(auths[0]["card"], card.as_str());
    let id = auths[0]["id"].as_str().unwrap();
    let auth = switch.api_ok("GET", &format!("/v1/authorizations/{id}"), None);
    assert_eq!(auth["request_history"][0]["approved"], true);
}

#[test]
fn every_decline_reason_has_its_response_code() {
    let switch = Switch::start("");
    let (account, holder, _) = switch.provision(5_000, PAN);
    let mut client = switch.client();
    let mut stan = 100;
    let mut call =
        |client: &mut Client, pan: &str, amount: u64, edit: &dyn Fn(&mut MessageBuilder)| {
            stan += 1;
            let mut b = auth_0100(pan, amount, stan);
            edit(&mut b);
            de39(&client.call(&b))
        };
    let none = |_: &mut MessageBuilder| {};
    // Unknown card.
    assert_eq!(call(&mut client, "4111111111111111", 100, &none), "14");
    // Insufficient funds.
    assert_eq!(call(&mut client, PAN, 6_000, &none), "51");
    // Expiry mismatch (the card expires 12/99).
    assert_eq!(
        call(&mut client, PAN, 100, &|b| {
            b.set_text(14, b"2501");
        }),
        "54"
    );
    // Unsupported processing code.
    assert_eq!(
        call(&mut client, PAN, 100, &|b| {
            b.set_text(3, b"400000");
        }),
        "12"
    );
    // Currency not supported.
    assert_eq!(
        call(&mut client, PAN, 100, &|b| {
            b.set_number(49, 999);
        }),
        "13"
    );
    // Blocked category on the card.
    let blocked = switch.add_card(
        &holder,
        PAN2,
        json!({"spending_controls":
        {"blocked_categories": [5411]}}),
    );
    assert_eq!(call(&mut client, PAN2, 100, &none), "57");
    // Spending limit.
    let limited = "5555555555554444";
    switch.add_card(
        &holder,
        limited,
        json!({"spending_controls":
        {"spending_limits": [{"amount": 500, "interval": "per_authorization"}]}}),
    );
    assert_eq!(call(&mut client, limited, 501, &none), "61");
    assert_eq!(call(&mut client, limited, 500, &none), "00");
    // Lost, stolen, canceled, inactive: set on a live card through the update route.
    for (status, code) in [
        ("inactive", "62"),
        ("lost", "41"),
        ("stolen", "43"),
        ("canceled", "62"),
    ] {
        let (card, number) = switch.add_generated_card(&holder, json!({}));
        assert_eq!(call(&mut client, &number, 1, &none), "00");
        switch.api_ok(
            "POST",
            &format!("/v1/cards/{card}"),
            Some(json!({"status": status})),
        );
        assert_eq!(
            call(&mut client, &number, 100, &none),
            code,
            "status {status}"
        );
    }
    let _ = blocked;
    // Cardholder inactive, account disabled.
    switch.api_ok(
        "POST",
        &format!("/v1/cardholders/{holder}"),
        Some(json!({"status": "inactive"})),
    );
    assert_eq!(call(&mut client, PAN, 100, &none), "62");
    switch.api_ok(
        "POST",
        &format!("/v1/cardholders/{holder}"),
        Some(json!({"status": "active"})),
    );
    switch.api_ok(
        "POST",
        &format!("/v1/accounts/{account}"),
        Some(json!({"status": "disabled"})),
    );
    assert_eq!(call(&mut client, PAN, 100, &none), "62");
    // Missing mandatory DE4: format error.
    let mut b = MessageBuilder::new(Mti::new(100));
    b.set_text(2, PAN.as_bytes())
        .set_text(3, b"000000")
        .set_number(11, 999);
    let response = client.call(&b);
    assert_eq!(de39(&response), "30");
    assert_eq!(field(&response, 11).as_deref(), Some("000999"));
    // Only the approvals of 500 and 4 x 1 are held.
    assert_eq!(switch.balance(&account), (4_496, 504, 0));
}

#[test]
fn pipelined_requests_on_one_connection_are_all_answered() {
    let switch = Switch::start("");
    let (account, _, _) = switch.provision(1_000_000, PAN);
    let mut client = switch.client();
    let count = 500u32;
    for stan in 1..=count {
        client.send(&auth_0100(PAN, 10, stan));
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..count {
        let response = client.recv();
        assert_eq!(de39(&response), "00");
        seen.insert(response.stan().unwrap());
    }
    assert_eq!(seen, (1..=count).collect());
    assert_eq!(
        switch.balance(&account),
        (1_000_000 - 10 * count as i64, 10 * count as i64, 0)
    );
}

#[test]
fn two_hundred_concurrent_connections() {
    let switch = Switch::start("");
    let (account, _, _) = switch.provision(1_000_000, PAN);
    let iso = switch.iso;
    let threads: Vec<_> = (0..200u32)
        .map(|i| {
            std::thread::spawn(move || {
                let mut client = Client::connect(iso);
                let mut b = auth_0100(PAN, 7, 1);
                let stan = format!("{:06}", i + 1);
                b.set_text(11, stan.as_bytes());
                let time = format!("11211{:05}", i);
                b.set_text(7, time.as_bytes());
                de39(&client.call(&b))
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), "00");
    }
    assert_eq!(switch.balance(&account), (1_000_000 - 1_400, 1_400, 0));
}

#[test]
fn financial_repeat_0201_is_answered_0210_and_a_retransmission_is_the_duplicate() {
    let switch = Switch::start("");
    let (account, _, _) = switch.provision(10_000, PAN);
    let mut client = switch.client();
    // An 0201 whose 0200 never reached us is decided and captured like an 0200.
    let response = client.call(&purchase(Mti::new(201), PAN, 1_000, 1));
    assert_eq!(
        (response.mti().value(), de39(&response)),
        (210, "00".into())
    );
    assert_eq!(field(&response, 2).as_deref(), Some(PAN));
    assert_eq!(field(&response, 3).as_deref(), Some("000000"));
    assert_eq!(field(&response, 4).as_deref(), Some("000000001000"));
    assert_eq!(field(&response, 7).as_deref(), Some("1121120000"));
    assert_eq!(field(&response, 11).as_deref(), Some("000001"));
    assert_eq!(field(&response, 32).as_deref(), Some("123456"));
    assert_eq!(field(&response, 41).as_deref(), Some("TERM0001"));
    assert_eq!(field(&response, 42).as_deref(), Some("MERCHANT0000001"));
    assert_eq!(field(&response, 49).as_deref(), Some("840"));
    assert_eq!(field(&response, 38).map(|c| c.len()), Some(6));
    assert_eq!(switch.balance(&account), (9_000, 0, 1_000));
    // An 0200, then its retransmission as 0201: the original answer, captured once.
    let first = client.call(&purchase(Mti::new(200), PAN, 2_000, 2));
    assert_eq!((first.mti().value(), de39(&first)), (210, "00".into()));
    assert_eq!(switch.balance(&account), (7_000, 0, 3_000));
    let repeat = client.call(&purchase(Mti::new(201), PAN, 2_000, 2));
    assert_eq!((repeat.mti().value(), de39(&repeat)), (210, "00".into()));
    assert_eq!(
        field(&repeat, 38),
        field(&first, 38),
        "the original response"
    );
    assert_eq!(field(&repeat, 11).as_deref(), Some("000002"));
    assert_eq!(switch.balance(&account), (7_000, 0, 3_000));
    // The same key with another amount: 94, nothing moves.
    let mismatch = client.call(&purchase(Mti::new(201), PAN, 2_500, 2));
    assert_eq!(
        (mismatch.mti().value(), de39(&mismatch)),
        (210, "94".into())
    );
    assert_eq!(switch.balance(&account), (7_000, 0, 3_000));
    // A declined 0200 repeated as 0201 is the same decline, not a second try.
    let declined = client.call(&purchase(Mti::new(200), PAN, 8_000, 3));
    assert_eq!(de39(&declined), "51");
    let repeat = client.call(&purchase(Mti::new(201), PAN, 8_000, 3));
    assert_eq!((repeat.mti().value(), de39(&repeat)), (210, "51".into()));
    assert_eq!(switch.balance(&account), (7_000, 0, 3_000));
    assert_eq!(
        switch.metric("authswitch_requests_total{mti=\"0201\",de39=\"00\"}"),
        2.0
    );
}

/// A frame of `mti` with DE3, DE4 and DE11 (STAN 42) whose amount has a non-digit.
fn bad_amount_frame(mti: &[u8; 4]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(mti);
    let mut bitmap = [0u8; 8];
    for f in [3u8, 4, 11] {
        bitmap[(f as usize - 1) / 8] |= 0x80 >> ((f - 1) % 8);
    }
    body.extend_from_slice(&bitmap);
    body.extend_from_slice(b"000000");
    body.extend_from_slice(b"0000000001X0");
    body.extend_from_slice(b"000042");
    let mut frame = (body.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

#[test]
fn undecodable_0201_gets_a_0210_format_error() {
    let switch = Switch::start("");
    let mut client = switch.client();
    // 0201 with a bitmap announcing DE4 but a non-digit amount.
    client.send_raw(&bad_amount_frame(b"0201"));
    let response = client.recv();
    assert_eq!(
        (response.mti().value(), de39(&response)),
        (210, "30".into())
    );
    assert_eq!(field(&response, 11).as_deref(), Some("000042"));
}

#[test]
fn alphabetic_de49_is_the_currency_it_names() {
    let switch = Switch::start("");
    let (account, _, _) = switch.provision(100_000, PAN);
    let mut client = switch.client();
    let mut stan = 0;
    let mut call = |de49: &[u8], billing: Option<(&[u8], u64)>| {
        stan += 1;
        let mut b = auth_0100(PAN, 5_000, stan);
        b.set_text(49, de49);
        if let Some((de51, de6)) = billing {
            b.set_text(51, de51).set_number(6, de6);
        }
        let response = client.call(&b);
        assert_eq!(response.mti().value(), 110);
        assert_eq!(
            field(&response, 49).as_deref(),
            std::str::from_utf8(de49).ok()
        );
        de39(&response)
    };
    // EUR on a USD account, numeric or alphabetic: 13, nothing held.
    assert_eq!(call(b"978", None), "13");
    assert_eq!(call(b"EUR", None), "13");
    assert_eq!(call(b"eur", None), "13");
    assert_eq!(switch.balance(&account), (100_000, 0, 0));
    // A code the switch does not know, or not a code at all: present, so never read as the
    // account's currency; declined 13 like an unknown numeric code.
    assert_eq!(call(b"XYZ", None), "13");
    assert_eq!(call(b"9X9", None), "13");
    assert_eq!(call(b"000", None), "13");
    assert_eq!(switch.balance(&account), (100_000, 0, 0));
    // USD spelled out is the account's currency: approved and held.
    assert_eq!(call(b"USD", None), "00");
    assert_eq!(switch.balance(&account), (95_000, 5_000, 0));
    // EUR with the billing amount in USD (DE51 alphabetic too): DE6 is held.
    assert_eq!(call(b"EUR", Some((b"USD", 5_500))), "00");
    assert_eq!(switch.balance(&account), (89_500, 10_500, 0));
    assert_eq!(call(b"XYZ", Some((b"840", 1_000))), "00");
    assert_eq!(switch.balance(&account), (88_500, 11_500, 0));
    assert_eq!(call(b"EUR", Some((b"XYZ", 1_000))), "13");
    assert_eq!(switch.balance(&account), (88_500, 11_500, 0));
}

/// Sends one ASCII-2-framed message and reads the framed answer.
fn ascii2_call(stream: &mut TcpStream, builder: &MessageBuilder<'_>) -> (usize, Message) {
    let format = WireFormat {
        header: LengthHeader::Ascii2,
        ..WireFormat::default()
    };
    let mut body = bytes::BytesMut::new();
    builder.encode(&format, &mut body).unwrap();
    let mut frame = format!("{:02}", body.len()).into_bytes();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).unwrap();
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).unwrap();
    let len: usize = std::str::from_utf8(&header).unwrap().parse().unwrap();
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).unwrap();
    let message = Message::decode(bytes::Bytes::from(answer), &format).unwrap();
    (body.len(), message)
}

/// An 0100 of exactly 97 bytes: DE2, 3, 4, 7, 11, 12, 13, 37, 41, 49.
fn auth_97_bytes(pan: &str, amount: u64, stan: u32) -> MessageBuilder<'_> {
    let mut b = MessageBuilder::new(Mti::new(100));
    b.set_text(2, pan.as_bytes())
        .set_text(3, b"000000")
        .set_number(4, amount)
        .set_text(7, b"1121120000")
        .set_number(11, u64::from(stan))
        .set_text(12, b"120000")
        .set_text(13, b"1121")
        .set_text(37, b"000000000007")
        .set_text(41, b"TERM0001")
        .set_number(49, 840);
    b
}

#[test]
fn a_response_longer_than_the_ascii2_header_allows_is_sent_minimal() {
    let switch = Switch::start("[wire]\nheader = \"ascii2\"\n");
    let (account, _, _) = switch.provision(5_000, PAN);
    let mut stream = TcpStream::connect(switch.iso).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // Approved: the echo plus DE38 and DE39 would be 105 bytes, over the header's 99.
    let (sent, response) = ascii2_call(&mut stream, &auth_97_bytes(PAN, 1_000, 7));
    assert_eq!(sent, 97);
    assert_eq!(
        (response.mti().value(), de39(&response)),
        (110, "00".into())
    );
    assert_eq!(field(&response, 11).as_deref(), Some("000007"));
    assert_eq!(field(&response, 37).as_deref(), Some("000000000007"));
    assert_eq!(field(&response, 2), None, "minimal: the PAN is not echoed");
    assert_eq!(switch.balance(&account), (4_000, 1_000, 0));
    // Declined: the echo plus DE39 is 99 bytes and fits, so the full response goes.
    let (_, response) = ascii2_call(&mut stream, &auth_97_bytes(PAN, 9_000, 8));
    assert_eq!(
        (response.mti().value(), de39(&response)),
        (110, "51".into())
    );
    assert_eq!(field(&response, 11).as_deref(), Some("000008"));
    assert_eq!(field(&response, 2).as_deref(), Some(PAN));
    assert_eq!(field(&response, 41).as_deref(), Some("TERM0001"));
    assert_eq!(switch.balance(&account), (4_000, 1_000, 0));
    assert!(!switch.log_text().contains("cannot encode"));
}

#[test]
fn a_response_longer_than_frame_len_max_is_sent_whole() {
    let switch = Switch::start("[server]\nframe_len_max = 64\n");
    let (account, _, _) = switch.provision(5_000, PAN);
    let mut client = switch.client();
    let mut b = MessageBuilder::new(Mti::new(100));
    b.set_text(2, PAN.as_bytes())
        .set_text(3, b"000000")
        .set_number(4, 1_000)
        .set_number(11, 9)
        .set_number(49, 840);
    // 57 bytes in (under the limit of 64); with DE38 and DE39 the answer is 65.
    assert_eq!(client.encode(&b).len() - 2, 57);
    let response = client.call(&b);
    assert_eq!(
        (response.mti().value(), de39(&response)),
        (110, "00".into())
    );
    assert_eq!(field(&response, 11).as_deref(), Some("000009"));
    assert_eq!(field(&response, 4).as_deref(), Some("000000001000"));
    assert_eq!(field(&response, 38).map(|c| c.len()), Some(6));
    assert_eq!(switch.balance(&account), (4_000, 1_000, 0));
}

#[test]
fn malformed_frame_among_good_ones_gets_30_and_the_connection_lives() {
    let switch = Switch::start("");
    switch.provision(10_000, PAN);
    let mut client = switch.client();
    assert_eq!(de39(&client.call(&auth_0100(PAN, 100, 1))), "00");
    // 0100 with a bitmap announcing DE4 but a non-digit amount.
    client.send_raw(&bad_amount_frame(b"0100"));
    let response = client.recv();
    assert_eq!(response.mti().value(), 110);
    assert_eq!(de39(&response), "30");
    assert_eq!(field(&response, 11).as_deref(), Some("000042"));
    assert_eq!(de39(&client.call(&auth_0100(PAN, 100, 2))), "00");
    // Garbage that is not even an MTI closes only this connection.
    client.send_raw(&[0, 4, 0xff, 0xfe, 0xfd, 0xfc]);
    assert!(client.try_recv().is_none());
    let mut other = switch.client();
    assert_eq!(de39(&other.call(&auth_0100(PAN, 100, 3))), "00");
}

#[test]
fn connection_limit_closes_the_excess_at_once() {
    let switch = Switch::start("[server]\nconnections_max = 3\n");
    switch.provision(10_000, PAN);
    let mut kept: Vec<Client> = (0..3).map(|_| switch.client()).collect();
    for (i, c) in kept.iter_mut().enumerate() {
        assert_eq!(de39(&c.call(&auth_0100(PAN, 1, i as u32 + 1))), "00");
    }
    let mut refused = TcpStream::connect(switch.iso).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        refused.read(&mut buf).unwrap_or(0),
        0,
        "refused connection must be closed"
    );
    assert!(switch
        .metrics_text()
        .contains("authswitch_connections_refused_total 1"));
    drop(kept.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut again = switch.client();
    assert_eq!(de39(&again.call(&auth_0100(PAN, 1, 9))), "00");
}

#[test]
fn slow_sender_is_cut_off_and_others_are_not() {
    let switch = Switch::start("[server]\nframe_read_timeout_ms = 300\n");
    switch.provision(10_000, PAN);
    let mut slow = TcpStream::connect(switch.iso).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(&[0, 50, b'0', b'1']).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(slow.read(&mut buf).unwrap_or(0), 0);
    assert!(started.elapsed() < Duration::from_secs(4));
    let mut good = switch.client();
    assert_eq!(de39(&good.call(&auth_0100(PAN, 1, 1))), "00");
    assert!(switch
        .metrics_text()
        .contains("authswitch_frames_rejected_total{reason=\"slow_sender\"} 1"));
}

/// A peer that keeps sending, each write ending in the middle of a frame, is making progress:
/// the frame-read timeout runs per frame, not from the first partial frame ever seen.
#[test]
fn a_steady_sender_whose_writes_split_frames_is_not_cut() {
    let switch = Switch::start("[server]\nframe_read_timeout_ms = 300\n");
    switch.provision(10_000_000, PAN);
    let mut client = switch.client();
    let frames: Vec<Vec<u8>> = (1..=40u32)
        .map(|stan| client.encode(&auth_0100(PAN, 1, stan)))
        .collect();
    let stream: Vec<u8> = frames.concat();
    let piece = frames[0].len() * 3 / 2;
    // 40 frames in pieces of one and a half frames, 50 ms apart: about 1.3 s in all, over
    // four times the timeout, and the buffer ends in a partial frame after every write.
    for chunk in stream.chunks(piece) {
        client.send_raw(chunk);
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..40 {
        assert_eq!(de39(&client.recv()), "00");
    }
    assert_eq!(
        switch.metric("authswitch_frames_rejected_total{reason=\"slow_sender\"}"),
        0.0
    );
}

#[test]
fn oversized_length_header_closes_the_connection_and_is_counted() {
    let switch = Switch::start("[server]\nframe_len_max = 1000\n");
    let mut client = switch.client();
    client.send_raw(&[0xff, 0xff, b'0']);
    assert!(client.try_recv().is_none());
    assert!(switch
        .metrics_text()
        .contains("authswitch_frames_rejected_total{reason=\"too_long\"} 1"));
}

#[test]
fn graceful_shutdown_answers_everything_in_flight_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::start_on(&dir.path().join("data"), "");
    let (account, _, _) = switch.provision(1_000_000, PAN);
    let mut client = switch.client();
    for stan in 1..=300u32 {
        client.send(&auth_0100(PAN, 3, stan));
    }
    let data_dir = switch.data_dir.clone();
    // The first answer before the signal: on a busy machine the signal could otherwise come
    // before the switch has read anything, and this test is about requests in flight.
    assert_eq!(de39(&client.recv()), "00");
    let mut answered = 1;
    let stopper = std::thread::spawn(move || switch.stop());
    while let Some(response) = client.try_recv() {
        assert_eq!(de39(&response), "00");
        answered += 1;
    }
    let status = stopper.join().unwrap();
    assert!(status.success(), "exit status {status}");
    // Requests still in the socket when the signal came are not read, so not all 300 need an
    // answer; every answered one must be durable and nothing unanswered may have moved money.
    let again = Switch::start_on(&data_dir, "");
    let held = 3 * answered;
    assert_eq!(again.balance(&account), (1_000_000 - held, held, 0));
}

#[test]
fn sparse_0100_with_only_the_mandatory_fields_is_approved() {
    let switch = Switch::start("");
    let (account, _, _) = switch.provision(1_000, PAN);
    let mut client = switch.client();
    let mut b = MessageBuilder::new(Mti::new(100));
    b.set_text(2, PAN.as_bytes())
        .set_text(3, b"000000")
        .set_number(4, 250)
        .set_number(11, 5);
    let response = client.call(&b);
    assert_eq!(de39(&response), "00");
    assert_eq!(field(&response, 4).as_deref(), Some("000000000250"));
    assert_eq!(field(&response, 49), None);
    assert_eq!(switch.balance(&account), (750, 250, 0));
    // DE35 (track 2) instead of DE2.
    let mut t = MessageBuilder::new(Mti::new(100));
    t.set_text(35, b"4242424242424242=99121010000000000000")
        .set_text(3, b"000000")
        .set_number(4, 100)
        .set_number(11, 6);
    assert_eq!(de39(&client.call(&t)), "00");
    assert_eq!(switch.balance(&account), (650, 350, 0));
}

#[test]
fn the_configured_authorization_cap_bounds_each_shard() {
    let switch = Switch::start("[ledger]\nshards = 1\nauthorizations_per_shard_max = 3\n");
    let (account, _, _) = switch.provision(10_000, PAN);
    let mut client = switch.client();
    for stan in 1..=3 {
        assert_eq!(de39(&client.call(&auth_0100(PAN, 100, stan))), "00");
    }
    assert_eq!(de39(&client.call(&auth_0100(PAN, 100, 4))), "91");
    assert_eq!(switch.balance(&account), (9_700, 300, 0));
}

/// `ledger.shard_slice_us` reaches the shard threads' scheduler slice (Linux 6.12 and later
/// show it as `se.slice` in `/proc/<pid>/task/<tid>/sched`); the I/O threads keep the default.
#[cfg(target_os = "linux")]
#[test]
fn the_shard_threads_take_the_configured_scheduler_slice() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut version = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    if (version.next().unwrap_or(0), version.next().unwrap_or(0)) < (6, 12) {
        eprintln!("kernel {release}: no per-thread slices to check");
        return;
    }
    let slice_of = |switch: &Switch, name: &str| -> Vec<u64> {
        let tasks = format!("/proc/{}/task", switch.pid());
        let mut slices = Vec::new();
        for task in std::fs::read_dir(tasks).unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.trim().starts_with(name) {
                continue;
            }
            let sched = std::fs::read_to_string(dir.join("sched")).unwrap();
            let line = sched.lines().find(|l| l.starts_with("se.slice")).unwrap();
            slices.push(line.split(':').nth(1).unwrap().trim().parse().unwrap());
        }
        slices
    };
    let switch = Switch::start("[ledger]\nshards = 2\nshard_slice_us = 250\n");
    assert_eq!(slice_of(&switch, "shard-"), vec![250_000, 250_000]);
    let io = slice_of(&switch, "authswitch-io");
    assert!(!io.is_empty() && io.iter().all(|&s| s != 250_000), "{io:?}");
    assert!(switch.stop().success());
    // By default the shard threads keep the kernel's slice.
    let switch = Switch::start("[ledger]\nshards = 2\n");
    let default = slice_of(&switch, "shard-");
    assert_eq!(default.len(), 2);
    assert!(default.iter().all(|&s| s != 250_000), "{default:?}");
    assert!(switch.stop().success());
}
