//! The authorization lifecycle end to end over real TCP and HTTP, with balances checked to the
//! minor unit after every step: duplicates, partial approvals, incrementals, advices,
//! reversals, balance inquiries, verifications, financial requests, refunds, captures and
//! hold expiry.

mod common;

use authswitch::iso8583::{MessageBuilder, Mti};
use common::{auth_0100, de39, field, purchase, Client, Switch};
use serde_json::json;

const PAN: &str = "4242424242424242";

/// DE90 naming the 0100 with `stan` sent by `auth_0100` (DE7 1121120000, DE32 123456).
fn de90(stan: u32) -> String {
    format!("0100{stan:06}1121120000{:011}{:011}", 123_456, 0)
}

fn reversal(
    mti: u16,
    stan: u32,
    original_stan: u32,
    amount: u64,
    replacement: Option<u64>,
) -> MessageBuilder<'static> {
    let mut r = MessageBuilder::new(Mti::new(mti));
    r.set_text(2, PAN.as_bytes())
        .set_text(3, b"000000")
        .set_number(4, amount)
        .set_text(7, b"1121120100")
        .set_number(11, u64::from(stan))
        .set_text(32, b"123456")
        .set_number(49, 840);
    let de90 = Box::leak(de90(original_stan).into_boxed_str());
    r.set_text(90, de90.as_bytes());
    if let Some(actual) = replacement {
        let de95 = format!("{actual:012}{actual:012}C00000000C00000000");
        r.set_text(95, Box::leak(de95.into_boxed_str()).as_bytes());
    }
    r
}

fn auth_with(
    stan: u32,
    amount: u64,
    edit: impl FnOnce(&mut MessageBuilder<'static>),
) -> MessageBuilder<'static> {
    let mut b = auth_0100(PAN, amount, stan);
    edit(&mut b);
    b
}

fn authorizations(switch: &Switch, card: &str) -> Vec<serde_json::Value> {
    let list = switch.api_ok(
        "GET",
        &format!("/v1/authorizations?card={card}&limit=100"),
        None,
    );
    list["data"].as_array().unwrap().clone()
}

#[test]
fn retransmissions_and_repeats_reserve_nothing_twice() {
    let switch = Switch::start("");
    let (account, _, card) = switch.provision(10_000, PAN);
    let mut c = switch.client();
    let first = c.call(&auth_0100(PAN, 1_000, 1));
    assert_eq!(de39(&first), "00");
    let again = c.call(&auth_0100(PAN, 1_000, 1));
    assert_eq!(de39(&again), "00");
    assert_eq!(
        field(&again, 38),
        field(&first, 38),
        "the original response again"
    );
    let repeat = purchase(Mti::new(101), PAN, 1_000, 1);
    let repeated = c.call(&repeat);
    assert_eq!(repeated.mti().value(), 110);
    assert_eq!(de39(&repeated), "00");
    assert_eq!(field(&repeated, 38), field(&first, 38));
    assert_eq!(switch.balance(&account), (9_000, 1_000, 0));
    // Same key, different amount: 94, nothing changes.
    assert_eq!(de39(&c.call(&auth_0100(PAN, 2_000, 1))), "94");
    assert_eq!(switch.balance(&account), (9_000, 1_000, 0));
    assert_eq!(authorizations(&switch, &card).len(), 1);
}

#[test]
fn partial_approval_when_the_terminal_supports_it() {
    let switch = Switch::start("");
    let (account, _, _) = switch.provision(1_000, PAN);
    let mut c = switch.client();
    // Without the DE60 indicator: declined 51.
    assert_eq!(de39(&c.call(&auth_0100(PAN, 1_500, 1))), "51");
    let response = c.call(&auth_with(2, 1_500, |b| {
        b.set_text(60, b"0000000001");
    }));
    assert_eq!(de39(&response), "10");
    assert_eq!(field(&response, 4).as_deref(), Some("000000001000"));
    assert_eq!(
        field(&response, 54).as_deref(),
        Some("0057840C000000001500")
    );
    assert_eq!(switch.balance(&account), (0, 1_000, 0));
}

#[test]
fn incremental_raises_the_hold_or_is_declined_without_touching_it() {
    let switch = Switch::start("");
    let (account, _, card) = switch.provision(10_000, PAN);
    let mut c = switch.client();
    assert_eq!(de39(&c.call(&auth_0100(PAN, 4_000, 1))), "00");
    let incr = |stan, amount| {
        let text = Box::leak(de90(1).into_boxed_str());
        auth_with(stan, amount, move |b| {
            b.set_text(90, text.as_bytes());
        })
    };
    assert_eq!(de39(&c.call(&incr(2, 3_000))), "00");
    assert_eq!(switch.balance(&account), (3_000, 7_000, 0));
    assert_eq!(de39(&c.call(&incr(3, 5_000))), "51");
    assert_eq!(switch.balance(&account), (3_000, 7_000, 0));
    // Partial reversal to 2 000, then another increment of 1 000.
    let r = c.call(&reversal(400, 4, 1, 7_000, Some(2_000)));
    assert_eq!(r.mti().value(), 410);
    assert_eq!(de39(&r), "00");
    assert_eq!(switch.balance(&account), (8_000, 2_000, 0));
    assert_eq!(de39(&c.call(&incr(5, 1_000))), "00");
    assert_eq!(switch.balance(&account), (7_000, 3_000, 0));
    let auths = authorizations(&switch, &card);
    assert_eq!(auths.len(), 1);
    assert_eq!(auths[0]["held"], 3_000);
}

#[test]
fn reversals_full_partial_twice_unknown_and_early() {
    let switch = Switch::start("");
    let (account, _, card) = switch.provision(10_000, PAN);
    let mut c = switch.client();
    assert_eq!(de39(&c.call(&auth_0100(PAN, 1_000, 1))), "00");
    assert_eq!(de39(&c.call(&auth_0100(PAN, 2_000, 2))), "00");
    assert_eq!(switch.balance(&account), (7_000, 3_000, 0));
    // Full reversal of the first, twice: the second changes nothing.
    assert_eq!(de39(&c.call(&reversal(400, 10, 1, 1_000, None))), "00");
    assert_eq!(switch.balance(&account), (8_000, 2_000, 0));
    assert_eq!(de39(&c.call(&reversal(420, 11, 1, 1_000, None))), "00");
    assert_eq!(switch.balance(&account), (8_000, 2_000, 0));
    // Partial reversal of the second down to 500 (reversal advice).
    let r = c.call(&reversal(420, 12, 2, 2_000, Some(500)));
    assert_eq!((r.mti().value(), de39(&r)), (430, "00".to_string()));
    assert_eq!(switch.balance(&account), (9_500, 500, 0));
    // A reversal of an unknown authorization is answered.
    assert_eq!(de39(&c.call(&reversal(400, 13, 77, 100, None))), "00");
    assert_eq!(switch.balance(&account), (9_500, 500, 0));
    // The original of that reversal arrives late: it is reversed at once.
    assert_eq!(de39(&c.call(&auth_0100(PAN, 100, 77))), "00");
    assert_eq!(switch.balance(&account), (9_500, 500, 0));
    let statuses: Vec<String> = authorizations(&switch, &card)
        .iter()
        .map(|a| a["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| *s == "reversed").count(),
        2,
        "{statuses:?}"
    );
}

#[test]
fn advices_overdraw_and_correct_our_declines() {
    let switch = Switch::start("");
    let (account, _, card) = switch.provision(1_000, PAN);
    let mut c = switch.client();
    let advice = |stan: u32, amount: u64| {
        let mut a = purchase(Mti::new(120), PAN, amount, stan);
        a.set_text(39, b"00");
        a
    };
    // A stand-in approval beyond the balance is recorded.
    let r = c.call(&advice(1, 1_500));
    assert_eq!((r.mti().value(), de39(&r)), (130, "00".to_string()));
    assert_eq!(switch.balance(&account), (-500, 1_500, 0));
    // We decline an 0100 for lack of funds; the network approved it in stand-in.
    assert_eq!(de39(&c.call(&auth_0100(PAN, 300, 2))), "51");
    assert_eq!(de39(&c.call(&advice(2, 300))), "00");
    assert_eq!(switch.balance(&account), (-800, 1_800, 0));
    let auths = authorizations(&switch, &card);
    assert_eq!(auths.len(), 2);
    assert!(auths
        .iter()
        .all(|a| a["approved"] == true && a["status"] == "pending"));
}

#[test]
fn balance_inquiry_and_account_verification_reserve_nothing() {
    let switch = Switch::start("");
    let (account, _, _) = switch.provision(4_321, PAN);
    let mut c = switch.client();
    let inquiry = c.call(&auth_with(1, 0, |b| {
        b.set_text(3, b"300000");
    }));
    assert_eq!(de39(&inquiry), "00");
    assert_eq!(field(&inquiry, 54).as_deref(), Some("0002840C000000004321"));
    let verify = c.call(&auth_0100(PAN, 0, 2));
    assert_eq!(de39(&verify), "00");
    let expired = c.call(&auth_with(3, 0, |b| {
        b.set_text(14, b"2001");
    }));
    assert_eq!(de39(&expired), "54");
    assert_eq!(switch.balance(&account), (4_321, 0, 0));
}

#[test]
fn financial_request_authorizes_and_captures_at_once() {
    let switch = Switch::start("");
    let (account, _, _) = switch.provision(5_000, PAN);
    let mut c = switch.client();
    let mut b = MessageBuilder::new(Mti::new(200));
    b.set_text(2, PAN.as_bytes())
        .set_text(3, b"010000")
        .set_number(4, 2_000)
        .set_text(7, b"1121120000")
        .set_number(11, 1)
        .set_text(32, b"123456")
        .set_number(49, 840);
    let r = c.call(&b);
    assert_eq!((r.mti().value(), de39(&r)), (210, "00".to_string()));
    assert_eq!(switch.balance(&account), (3_000, 0, 2_000));
    b.set_number(11, 2).set_number(4, 4_000);
    assert_eq!(de39(&c.call(&b)), "51");
    assert_eq!(switch.balance(&account), (3_000, 0, 2_000));
}

/// The authorization id of the single authorization approved with `stan`.
fn auth_id(switch: &Switch, card: &str, amount: i64) -> String {
    let auths = authorizations(switch, card);
    let a = auths
        .iter()
        .find(|a| a["amount"] == amount && a["status"] == "pending")
        .unwrap();
    a["id"].as_str().unwrap().to_string()
}

#[test]
fn captures_below_equal_above_multiple_refunds_and_force_captures() {
    let switch = Switch::start("");
    let (account, _, card) = switch.provision(10_000, PAN);
    let mut c = switch.client();
    for (stan, amount) in [(1, 1_000), (2, 2_000), (3, 3_000), (4, 1_500)] {
        assert_eq!(de39(&c.call(&auth_0100(PAN, amount, stan))), "00");
    }
    assert_eq!(switch.balance(&account), (2_500, 7_500, 0));
    let capture = |id: &str, body: serde_json::Value| {
        switch.api_ok(
            "POST",
            &format!("/v1/authorizations/{id}/capture"),
            Some(body),
        )
    };
    // Below: the rest of the hold is released.
    let a1 = auth_id(&switch, &card, 1_000);
    let t1 = capture(&a1, json!({"amount": 800}));
    assert_eq!(t1["amount"], 800);
    assert_eq!(switch.balance(&account), (2_700, 6_500, 800));
    // Equal.
    let a2 = auth_id(&switch, &card, 2_000);
    capture(&a2, json!({"amount": 2_000}));
    assert_eq!(switch.balance(&account), (2_700, 4_500, 2_800));
    // Above: the difference comes from available and is flagged.
    let a3 = auth_id(&switch, &card, 3_000);
    let t3 = capture(&a3, json!({"amount": 3_500}));
    assert_eq!(t3["over_capture"], 500);
    assert_eq!(switch.balance(&account), (2_200, 1_500, 6_300));
    // Several captures of one authorization.
    let a4 = auth_id(&switch, &card, 1_500);
    capture(&a4, json!({"amount": 500, "close_authorization": false}));
    assert_eq!(switch.balance(&account), (2_200, 1_000, 6_800));
    capture(&a4, json!({"amount": 700}));
    assert_eq!(switch.balance(&account), (2_500, 0, 7_500));
    let auth = switch.api_ok("GET", &format!("/v1/authorizations/{a4}"), None);
    assert_eq!(auth["status"], "closed");
    assert_eq!(auth["captured"], 1_200);
    // Refund part of the first capture, then the rest.
    let t1_id = t1["id"].as_str().unwrap();
    let refund = switch.api_ok(
        "POST",
        &format!("/v1/transactions/{t1_id}/refund"),
        Some(json!({"amount": 300})),
    );
    assert_eq!(refund["kind"], "refund");
    // Spent counts captures gross; refunds are credited to available and counted apart.
    assert_eq!(switch.balance(&account), (2_800, 0, 7_500));
    switch.api_ok(
        "POST",
        &format!("/v1/transactions/{t1_id}/refund"),
        Some(json!({})),
    );
    assert_eq!(switch.balance(&account), (3_300, 0, 7_500));
    let a = switch.api_ok("GET", &format!("/v1/accounts/{account}"), None);
    assert_eq!(a["refunded"], 800);
    let (status, body) = switch.api(
        "POST",
        &format!("/v1/transactions/{t1_id}/refund"),
        Some(json!({"amount": 1})),
    );
    assert_eq!(status, 400, "nothing left to refund: {body}");
    // Force capture without an authorization.
    let forced = switch.api_ok("POST", "/v1/transactions/force_capture",
        Some(json!({"card": card, "amount": 1_000, "merchant_data": {"name": "Late Shop", "category_code": 5411}})));
    assert_eq!(forced["kind"], "force_capture");
    assert_eq!(switch.balance(&account), (2_300, 0, 8_500));
    // Clearing is never refused: a late capture of a closed authorization is an over-capture.
    let late = capture(&a2, json!({"amount": 1}));
    assert_eq!(late["over_capture"], 1);
    assert_eq!(switch.balance(&account), (2_299, 0, 8_501));
}

#[test]
fn refund_authorization_credits_when_captured() {
    let switch = Switch::start("");
    let (account, _, card) = switch.provision(1_000, PAN);
    let mut c = switch.client();
    let r = c.call(&auth_with(1, 400, |b| {
        b.set_text(3, b"200000");
    }));
    assert_eq!(de39(&r), "00");
    assert_eq!(switch.balance(&account), (1_000, 0, 0));
    let auths = authorizations(&switch, &card);
    let id = auths[0]["id"].as_str().unwrap();
    switch.api_ok(
        "POST",
        &format!("/v1/authorizations/{id}/capture"),
        Some(json!({"amount": 400})),
    );
    let a = switch.api_ok("GET", &format!("/v1/accounts/{account}"), None);
    assert_eq!(a["balance"]["available"], 1_400);
    assert_eq!(a["refunded"], 400);
}

#[test]
fn holds_expire_once_and_never_after_a_capture() {
    let switch = Switch::start("[ledger]\nhold_expiry_s = 2\nexpiry_tick_s = 1\n");
    let (account, _, card) = switch.provision(10_000, PAN);
    let mut c = switch.client();
    assert_eq!(de39(&c.call(&auth_0100(PAN, 1_000, 1))), "00");
    assert_eq!(de39(&c.call(&auth_0100(PAN, 2_000, 2))), "00");
    let a2 = auth_id(&switch, &card, 2_000);
    switch.api_ok(
        "POST",
        &format!("/v1/authorizations/{a2}/capture"),
        Some(json!({"amount": 2_000})),
    );
    assert_eq!(switch.balance(&account), (7_000, 1_000, 2_000));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while switch.balance(&account).1 != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(switch.balance(&account), (8_000, 0, 2_000));
    let auths = authorizations(&switch, &card);
    let mut statuses: Vec<&str> = auths
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["closed", "expired"]);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    assert_eq!(
        switch.balance(&account),
        (8_000, 0, 2_000),
        "nothing released twice"
    );
}

#[test]
fn unknown_cards_in_lifecycle_messages_get_14() {
    let switch = Switch::start("");
    let mut c: Client = switch.client();
    let mut r = MessageBuilder::new(Mti::new(400));
    r.set_text(2, b"4111111111111111")
        .set_text(3, b"000000")
        .set_number(4, 1)
        .set_number(11, 1);
    assert_eq!(de39(&c.call(&r)), "14");
}
