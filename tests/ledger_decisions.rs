//! Decision tests: every decline reason with its DE39 code, approvals, partial approvals,
//! duplicates, incremental authorizations, spending limits at their window edges, and
//! expiry/retention, with exact balances after each step.

use authswitch::domain::calendar::days_from_civil;
use authswitch::domain::controls::{Interval, Presence, SpendingControls, SpendingLimit};
use authswitch::domain::{
    AccountStatus, CardStatus, CardholderStatus, DeclineReason, ResponseCode,
};
use authswitch::ledger::query::{Query, QueryResult};
use authswitch::ledger::testkit::{admin, incremental, key, purchase, Fixture, T0_S};
use authswitch::ledger::{
    apply, AuthKind, AuthOutcome, AuthRequest, AuthStatus, Command, CommandError, Outcome,
    ProgramConfig,
};

trait Authorize {
    fn auth(&mut self, req: &AuthRequest, now_s: i64) -> AuthOutcome;
}

impl Authorize for Fixture {
    fn auth(&mut self, req: &AuthRequest, now_s: i64) -> AuthOutcome {
        match apply(&mut self.state, &Command::Authorize(req.clone()), now_s) {
            Outcome::Authorization(a) => a,
            other => panic!("not an authorization outcome: {other:?}"),
        }
    }
}

/// (available, held, spent) of the fixture's account.
fn balance(f: &Fixture) -> (i64, i64, i64) {
    match f.state.query(&Query::GetAccount(f.account), 0) {
        QueryResult::Account(a) => (a.balance.available, a.balance.held, a.balance.spent),
        other => panic!("{other:?}"),
    }
}

fn assert_declined(out: &AuthOutcome, reason: DeclineReason, code: &[u8; 2]) {
    assert_eq!(out.reason, Some(reason));
    assert_eq!(&out.code.as_bytes(), code);
    assert_eq!(out.approved_amount_minor, 0);
    assert_eq!(out.approval_code(), None);
}

fn at(y: i64, m: u32, d: u32, h: i64, min: i64, s: i64) -> i64 {
    days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60 + s
}

fn limit(amount_minor: i64, interval: Interval) -> SpendingControls {
    SpendingControls {
        spending_limits: vec![SpendingLimit {
            amount_minor,
            interval,
            categories: vec![],
        }],
        ..Default::default()
    }
}

/// A daily limit on restaurants (MCC 5812) alone.
fn restaurant_limit(amount_minor: i64) -> SpendingControls {
    SpendingControls {
        spending_limits: vec![SpendingLimit {
            amount_minor,
            interval: Interval::Daily,
            categories: vec![5812],
        }],
        ..Default::default()
    }
}

fn set_card(f: &mut Fixture, status: Option<CardStatus>, controls: Option<SpendingControls>) {
    let cmd = Command::UpdateCard {
        card: f.card,
        status,
        spending_controls: controls,
    };
    admin(&mut f.state, cmd, T0_S);
}

#[test]
fn approval_holds_funds_and_records() {
    let mut f = Fixture::new(10_000);
    let out = f.auth(&purchase(f.card, 1, 2_500), T0_S);
    assert_eq!(out.code, ResponseCode::APPROVED);
    assert_eq!(out.reason, None);
    assert_eq!(out.approved_amount_minor, 2_500);
    assert_eq!(out.approved_merchant_amount_minor, 2_500);
    assert_eq!(out.available_minor, 7_500);
    assert!(out.approval_code().unwrap().iter().all(u8::is_ascii_digit));
    assert!(!out.duplicate);
    assert_eq!(balance(&f), (7_500, 2_500, 0));
    let q = Query::GetAuthorization(out.authorization.unwrap());
    let QueryResult::Authorization(v) = f.state.query(&q, T0_S) else {
        panic!("no authorization")
    };
    assert_eq!(v.status, AuthStatus::Pending);
    assert_eq!((v.amount, v.held, v.currency), (2_500, 2_500, "usd"));
    assert_eq!(v.merchant_data.name, "CORNER GROCERY");
    assert_eq!(v.request_history.len(), 1);
    assert_eq!(v.request_history[0].response_code, "00");
    f.state.check_invariants().unwrap();
}

#[test]
fn unknown_card_is_14_and_not_recorded() {
    let mut f = Fixture::new(10_000);
    let mut req = purchase(f.card, 1, 100);
    req.card = authswitch::domain::CardId::new(1, 99);
    let out = f.auth(&req, T0_S);
    assert_declined(&out, DeclineReason::UnknownCard, b"14");
    assert_eq!(out.authorization, None);
    assert_eq!(f.state.authorization_count(), 0);
}

#[test]
fn card_status_reasons() {
    let cases = [
        (CardStatus::Inactive, DeclineReason::CardInactive, b"62"),
        (CardStatus::Canceled, DeclineReason::CardCanceled, b"62"),
        (CardStatus::Lost, DeclineReason::CardLost, b"41"),
        (CardStatus::Stolen, DeclineReason::CardStolen, b"43"),
    ];
    for (status, reason, code) in cases {
        let mut f = Fixture::new(10_000);
        set_card(&mut f, Some(status), None);
        let out = f.auth(&purchase(f.card, 1, 100), T0_S);
        assert_declined(&out, reason, code);
        assert!(out.authorization.is_some(), "declines are recorded");
        assert_eq!(balance(&f), (10_000, 0, 0));
    }
}

#[test]
fn canceled_card_cannot_be_reactivated() {
    let mut f = Fixture::new(0);
    set_card(&mut f, Some(CardStatus::Canceled), None);
    let cmd = Command::UpdateCard {
        card: f.card,
        status: Some(CardStatus::Active),
        spending_controls: None,
    };
    let reason = "card is canceled, lost or stolen";
    assert_eq!(
        apply(&mut f.state, &cmd, T0_S),
        Outcome::Rejected(CommandError::Invalid {
            param: "status",
            reason
        })
    );
}

#[test]
fn expiry_at_month_end_and_de14_mismatch() {
    let mut f = Fixture::new(10_000);
    let last_second = at(2030, 12, 31, 23, 59, 59);
    let out = f.auth(&purchase(f.card, 1, 100), last_second);
    assert_eq!(out.code, ResponseCode::APPROVED);
    let out = f.auth(&purchase(f.card, 2, 100), at(2031, 1, 1, 0, 0, 0));
    assert_declined(&out, DeclineReason::CardExpired, b"54");
    let mut req = purchase(f.card, 3, 100);
    req.expiry_presented = Some((30, 11));
    assert_declined(&f.auth(&req, T0_S), DeclineReason::ExpiryMismatch, b"54");
    req.key = key(4);
    req.expiry_presented = Some((30, 12));
    assert_eq!(f.auth(&req, T0_S).code, ResponseCode::APPROVED);
    assert_eq!(balance(&f), (9_800, 200, 0));
}

#[test]
fn cardholder_and_account_status_reasons() {
    for (status, reason) in [
        (
            CardholderStatus::Inactive,
            DeclineReason::CardholderInactive,
        ),
        (CardholderStatus::Blocked, DeclineReason::CardholderBlocked),
    ] {
        let mut f = Fixture::new(10_000);
        let cmd = Command::UpdateCardholder {
            cardholder: f.cardholder,
            name: None,
            status: Some(status),
            spending_controls: None,
        };
        admin(&mut f.state, cmd, T0_S);
        assert_declined(&f.auth(&purchase(f.card, 1, 100), T0_S), reason, b"62");
    }
    let mut f = Fixture::new(10_000);
    let cmd = Command::UpdateAccount {
        account: f.account,
        status: Some(AccountStatus::Disabled),
    };
    admin(&mut f.state, cmd, T0_S);
    let out = f.auth(&purchase(f.card, 1, 100), T0_S);
    assert_declined(&out, DeclineReason::AccountDisabled, b"62");
    assert_eq!(balance(&f), (10_000, 0, 0));
}

#[test]
fn insufficient_funds_and_partial_approval() {
    let mut f = Fixture::new(1_000);
    let out = f.auth(&purchase(f.card, 1, 1_500), T0_S);
    assert_declined(&out, DeclineReason::InsufficientFunds, b"51");
    assert_eq!(out.available_minor, 1_000);
    let mut req = purchase(f.card, 2, 1_500);
    req.partial_ok = true;
    let out = f.auth(&req, T0_S);
    assert_eq!(out.code, ResponseCode::PARTIAL);
    assert_eq!(out.code.as_bytes(), *b"10");
    assert_eq!(out.approved_amount_minor, 1_000);
    assert_eq!(balance(&f), (0, 1_000, 0));
    let mut req = purchase(f.card, 3, 1);
    req.partial_ok = true;
    assert_declined(&f.auth(&req, T0_S), DeclineReason::InsufficientFunds, b"51");
}

#[test]
fn invalid_amount_and_currency() {
    let mut f = Fixture::new(1_000);
    let invalid = DeclineReason::InvalidAmount;
    assert_declined(&f.auth(&purchase(f.card, 1, 0), T0_S), invalid, b"13");
    assert_declined(&f.auth(&purchase(f.card, 2, -5), T0_S), invalid, b"13");
    let huge = purchase(f.card, 3, 1_000_000_000_000);
    assert_declined(&f.auth(&huge, T0_S), invalid, b"13");
    let mut eur = purchase(f.card, 4, 500);
    eur.currency = 978;
    assert_declined(&f.auth(&eur, T0_S), DeclineReason::CurrencyMismatch, b"13");
    eur.key = key(5);
    eur.billing_currency = Some(826);
    eur.billing_amount_minor = Some(600);
    assert_declined(&f.auth(&eur, T0_S), DeclineReason::CurrencyMismatch, b"13");
    assert_eq!(balance(&f), (1_000, 0, 0));
}

#[test]
fn foreign_currency_uses_billing_amount() {
    let mut f = Fixture::new(1_000);
    let mut eur = purchase(f.card, 1, 500);
    eur.currency = 978;
    eur.billing_currency = Some(840);
    eur.billing_amount_minor = Some(550);
    let out = f.auth(&eur, T0_S);
    assert_eq!(out.code, ResponseCode::APPROVED);
    assert_eq!(
        (
            out.approved_amount_minor,
            out.approved_merchant_amount_minor
        ),
        (550, 500)
    );
    assert_eq!(balance(&f), (450, 550, 0));
    // Partial in a foreign currency: the merchant part is proportional, rounded down.
    let mut eur = purchase(f.card, 2, 1_000);
    eur.currency = 978;
    eur.billing_currency = Some(840);
    eur.billing_amount_minor = Some(1_100);
    eur.partial_ok = true;
    let out = f.auth(&eur, T0_S);
    assert_eq!(out.code, ResponseCode::PARTIAL);
    assert_eq!(
        (
            out.approved_amount_minor,
            out.approved_merchant_amount_minor
        ),
        (450, 409)
    );
    assert_eq!(balance(&f), (0, 1_000, 0));
}

#[test]
fn spending_controls_category_country_presence() {
    let mut f = Fixture::new(10_000);
    let c = SpendingControls {
        blocked_categories: vec![5411],
        ..Default::default()
    };
    set_card(&mut f, None, Some(c));
    let out = f.auth(&purchase(f.card, 1, 100), T0_S);
    assert_declined(&out, DeclineReason::SpendingControlsCategory, b"57");
    let c = SpendingControls {
        allowed_merchant_countries: vec![*b"GB"],
        ..Default::default()
    };
    set_card(&mut f, None, Some(c));
    let out = f.auth(&purchase(f.card, 2, 100), T0_S);
    assert_declined(&out, DeclineReason::SpendingControlsCountry, b"57");
    set_card(&mut f, None, Some(SpendingControls::default()));
    // A cardholder-level control applies to the card too.
    let c = SpendingControls {
        blocked_card_presences: vec![Presence::NotPresent],
        ..Default::default()
    };
    let cmd = Command::UpdateCardholder {
        cardholder: f.cardholder,
        name: None,
        status: None,
        spending_controls: Some(c),
    };
    admin(&mut f.state, cmd, T0_S);
    let mut req = purchase(f.card, 3, 100);
    req.presence = Presence::NotPresent;
    let out = f.auth(&req, T0_S);
    assert_declined(&out, DeclineReason::SpendingControlsPresence, b"57");
    assert_eq!(
        f.auth(&purchase(f.card, 4, 100), T0_S).code,
        ResponseCode::APPROVED
    );
    assert_eq!(balance(&f), (9_900, 100, 0));
}

#[test]
fn controls_validation_names_the_field() {
    use authswitch::domain::controls::ControlsError;
    let mut f = Fixture::new(0);
    let bad = SpendingControls {
        allowed_categories: vec![1],
        blocked_categories: vec![2],
        ..Default::default()
    };
    let cmd = Command::UpdateCard {
        card: f.card,
        status: None,
        spending_controls: Some(bad),
    };
    let err = ControlsError::Exclusive {
        field: "allowed_categories",
    };
    assert_eq!(
        apply(&mut f.state, &cmd, T0_S),
        Outcome::Rejected(CommandError::Controls(err))
    );
}

#[test]
fn per_authorization_limit_and_partial() {
    let mut f = Fixture::new(10_000);
    set_card(&mut f, None, Some(limit(1_000, Interval::PerAuthorization)));
    let out = f.auth(&purchase(f.card, 1, 1_001), T0_S);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    assert_eq!(
        f.auth(&purchase(f.card, 2, 1_000), T0_S).code,
        ResponseCode::APPROVED
    );
    assert_eq!(
        f.auth(&purchase(f.card, 3, 1_000), T0_S).code,
        ResponseCode::APPROVED
    );
    let mut req = purchase(f.card, 4, 1_500);
    req.partial_ok = true;
    let out = f.auth(&req, T0_S);
    assert_eq!(
        (out.code, out.approved_amount_minor),
        (ResponseCode::PARTIAL, 1_000)
    );
    assert_eq!(balance(&f), (7_000, 3_000, 0));
}

/// Spends the whole limit at `before_s`, is declined one second before `edge_s`, and is
/// approved again exactly at it.
fn window_edge(interval: Interval, before_s: i64, edge_s: i64) {
    let mut f = Fixture::new(100_000);
    set_card(&mut f, None, Some(limit(5_000, interval)));
    let out = f.auth(&purchase(f.card, 1, 5_000), before_s);
    assert_eq!(out.code, ResponseCode::APPROVED);
    let out = f.auth(&purchase(f.card, 2, 1), edge_s - 1);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    let out = f.auth(&purchase(f.card, 3, 5_000), edge_s);
    assert_eq!(
        out.code,
        ResponseCode::APPROVED,
        "{interval:?} at the window edge"
    );
    let out = f.auth(&purchase(f.card, 4, 1), edge_s);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    assert_eq!(balance(&f), (90_000, 10_000, 0));
}

#[test]
fn daily_window_edge() {
    window_edge(
        Interval::Daily,
        at(2024, 3, 15, 0, 0, 0),
        at(2024, 3, 16, 0, 0, 0),
    );
}

#[test]
fn weekly_window_saturday_to_sunday() {
    // 2024-03-16 is a Saturday: the week that started Sunday 2024-03-10 ends at its midnight.
    window_edge(
        Interval::Weekly,
        at(2024, 3, 10, 0, 0, 0),
        at(2024, 3, 17, 0, 0, 0),
    );
}

#[test]
fn monthly_window_edge_and_leap_day() {
    window_edge(
        Interval::Monthly,
        at(2024, 3, 1, 0, 0, 0),
        at(2024, 4, 1, 0, 0, 0),
    );
    // February 2024 has 29 days: 2024-02-29 23:59:59 is still February.
    window_edge(
        Interval::Monthly,
        at(2024, 2, 29, 12, 0, 0),
        at(2024, 3, 1, 0, 0, 0),
    );
}

#[test]
fn yearly_window_edge() {
    window_edge(
        Interval::Yearly,
        at(2024, 1, 1, 0, 0, 0),
        at(2025, 1, 1, 0, 0, 0),
    );
}

#[test]
fn all_time_limit_never_resets() {
    let mut f = Fixture::new(100_000);
    set_card(&mut f, None, Some(limit(5_000, Interval::AllTime)));
    assert_eq!(
        f.auth(&purchase(f.card, 1, 5_000), T0_S).code,
        ResponseCode::APPROVED
    );
    let out = f.auth(&purchase(f.card, 2, 1), T0_S + 400 * 86_400);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
}

#[test]
fn category_limit_counts_only_its_categories() {
    let mut f = Fixture::new(100_000);
    set_card(&mut f, None, Some(restaurant_limit(1_000)));
    let mut restaurant = purchase(f.card, 1, 1_000);
    restaurant.mcc = 5812;
    assert_eq!(f.auth(&restaurant, T0_S).code, ResponseCode::APPROVED);
    restaurant.key = key(2);
    restaurant.amount_minor = 1;
    let out = f.auth(&restaurant, T0_S);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    assert_eq!(
        f.auth(&purchase(f.card, 3, 5_000), T0_S).code,
        ResponseCode::APPROVED
    );
    assert_eq!(balance(&f), (94_000, 6_000, 0));
}

#[test]
fn cardholder_limit_covers_all_cards() {
    let mut f = Fixture::new(100_000);
    let cmd = Command::UpdateCardholder {
        cardholder: f.cardholder,
        name: None,
        status: None,
        spending_controls: Some(limit(3_000, Interval::Daily)),
    };
    admin(&mut f.state, cmd, T0_S);
    let second = f.add_card(SpendingControls::default(), None);
    assert_eq!(
        f.auth(&purchase(f.card, 1, 2_000), T0_S).code,
        ResponseCode::APPROVED
    );
    let out = f.auth(&purchase(second, 2, 1_001), T0_S);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    assert_eq!(
        f.auth(&purchase(second, 3, 1_000), T0_S).code,
        ResponseCode::APPROVED
    );
    assert_eq!(balance(&f), (97_000, 3_000, 0));
}

#[test]
fn replacement_card_inherits_usage() {
    let mut g = Fixture::new(100_000);
    set_card(&mut g, None, Some(limit(3_000, Interval::Daily)));
    assert_eq!(
        g.auth(&purchase(g.card, 1, 2_500), T0_S).code,
        ResponseCode::APPROVED
    );
    set_card(&mut g, Some(CardStatus::Canceled), None);
    let old = g.card;
    let new = g.add_card(limit(3_000, Interval::Daily), Some(old));
    let out = g.auth(&purchase(new, 2, 501), T0_S);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    assert_eq!(
        g.auth(&purchase(new, 3, 500), T0_S).code,
        ResponseCode::APPROVED
    );
    assert_eq!(balance(&g), (97_000, 3_000, 0));
    let QueryResult::Card(v) = g.state.query(&Query::GetCard(new), T0_S) else {
        panic!("no card")
    };
    assert_eq!(v.replacement_for, Some(old.to_string()));
    assert_eq!(v.last4, "4242");
}

#[test]
fn program_default_limits_apply_to_cards_without_limits() {
    let mut f = Fixture::new(100_000);
    let config = ProgramConfig {
        default_spending_limits: vec![SpendingLimit {
            amount_minor: 50_000,
            interval: Interval::Daily,
            categories: vec![],
        }],
        ..Default::default()
    };
    let out = apply(&mut f.state, &Command::SetProgramConfig(config), T0_S);
    assert_eq!(out, Outcome::ConfigSet);
    let out = f.auth(&purchase(f.card, 1, 50_001), T0_S);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    // A card limit replaces the default.
    set_card(&mut f, None, Some(limit(60_000, Interval::Daily)));
    let out = f.auth(&purchase(f.card, 2, 50_001), T0_S);
    assert_eq!(out.code, ResponseCode::APPROVED);
}

#[test]
fn duplicate_gets_original_answer_and_reserves_once() {
    let mut f = Fixture::new(10_000);
    let req = purchase(f.card, 1, 4_000);
    let first = f.auth(&req, T0_S);
    let again = f.auth(&req, T0_S + 5);
    assert!(again.duplicate);
    assert_eq!(again.authorization, first.authorization);
    assert_eq!(again.approval_code(), first.approval_code());
    assert_eq!(
        (again.code, again.approved_amount_minor),
        (ResponseCode::APPROVED, 4_000)
    );
    assert_eq!(balance(&f), (6_000, 4_000, 0));
    let mut changed = req.clone();
    changed.content_hash = 999;
    changed.amount_minor = 4_001;
    let out = f.auth(&changed, T0_S + 6);
    assert_declined(&out, DeclineReason::DuplicateMismatch, b"94");
    assert_eq!(out.authorization, None);
    assert_eq!(balance(&f), (6_000, 4_000, 0));
    // A declined original is answered as declined again.
    let big = purchase(f.card, 2, 50_000);
    assert_eq!(f.auth(&big, T0_S).code.as_bytes(), *b"51");
    let again = f.auth(&big, T0_S);
    assert!(again.duplicate);
    assert_declined(&again, DeclineReason::InsufficientFunds, b"51");
}

/// A new authorization is decided before its key is looked up (the lookup's cache miss
/// overlaps the decision), so the answers whose precedence that could change are pinned here:
/// a retransmission gets the original answer even when a fresh decision would now differ, and
/// the authorization cap answers 91 even for a request the card's state would decline.
#[test]
fn duplicate_and_cap_win_over_a_fresh_decision() {
    let mut f = Fixture::new(10_000);
    let req = purchase(f.card, 1, 4_000);
    let first = f.auth(&req, T0_S);
    assert_eq!(first.code, ResponseCode::APPROVED);
    set_card(&mut f, Some(CardStatus::Inactive), None);
    let again = f.auth(&req, T0_S + 5);
    assert!(again.duplicate);
    assert_eq!(
        (again.code, again.approved_amount_minor, again.authorization),
        (ResponseCode::APPROVED, 4_000, first.authorization)
    );
    assert_eq!(balance(&f), (6_000, 4_000, 0));
    // The same key with other content: 94, not the inactive card's 62.
    let mut changed = req.clone();
    changed.content_hash = 999;
    assert_declined(
        &f.auth(&changed, T0_S + 6),
        DeclineReason::DuplicateMismatch,
        b"94",
    );
    // A new key on the inactive card is decided as such and recorded.
    let out = f.auth(&purchase(f.card, 2, 100), T0_S + 7);
    assert_declined(&out, DeclineReason::CardInactive, b"62");
    assert!(out.authorization.is_some());
    // At the cap, a request the card would decline is answered 91 and not recorded.
    let config = ProgramConfig {
        authorizations_max: 2,
        ..Default::default()
    };
    let out = apply(&mut f.state, &Command::SetProgramConfig(config), T0_S);
    assert_eq!(out, Outcome::ConfigSet);
    let out = f.auth(&purchase(f.card, 3, 100), T0_S + 8);
    assert_eq!((out.code.as_bytes(), out.reason), (*b"91", None));
    assert_eq!((out.authorization, out.available_minor), (None, 6_000));
    // And a retransmission at the cap still gets its original answer.
    let again = f.auth(&req, T0_S + 9);
    assert!(again.duplicate);
    assert_eq!(again.code, ResponseCode::APPROVED);
    assert_eq!(balance(&f), (6_000, 4_000, 0));
}

#[test]
fn txn_key_normalises_acquirer_zeros() {
    use authswitch::ledger::TxnKey;
    let a = TxnKey::derive(b"123456", 7, b"0315120000");
    assert_eq!(a, TxnKey::derive(b"00000123456", 7, b"0315120000"));
    assert_ne!(a, TxnKey::derive(b"123456", 8, b"0315120000"));
    assert_ne!(a, TxnKey::derive(b"1234560", 7, b"0315120000"));
}

/// The key is the first 16 bytes of BLAKE3 over the acquirer's length (u32 LE), the acquirer
/// without leading zeros, the STAN (u32 LE) and DE7: keys are in the WAL and snapshots, so
/// this stays as it is, for short ids (hashed in one block) and long ones (fed in parts).
#[test]
fn txn_key_is_the_hash_of_its_parts() {
    use authswitch::ledger::TxnKey;
    let reference = |acquirer: &[u8], stan: u32, time: &[u8; 10]| {
        let mut h = blake3::Hasher::new();
        h.update(&(acquirer.len() as u32).to_le_bytes());
        h.update(acquirer);
        h.update(&stan.to_le_bytes());
        h.update(time);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out
    };
    let long = [b'7'; 50];
    for (acquirer, stripped) in [
        (&b"123456"[..], &b"123456"[..]),
        (b"00000123456", b"123456"),
        (b"", b""),
        (b"000", b""),
        (b"12345678901", b"12345678901"),
        (&long[..], &long[..]),
    ] {
        assert_eq!(
            TxnKey::derive(acquirer, 987_654, b"1207141500").0,
            reference(stripped, 987_654, b"1207141500"),
            "{} bytes",
            acquirer.len()
        );
    }
}

#[test]
fn balance_inquiry_and_account_verification() {
    let mut f = Fixture::new(7_777);
    let mut req = purchase(f.card, 1, 0);
    req.kind = AuthKind::BalanceInquiry;
    assert!(!Command::Authorize(req.clone()).mutates());
    let before = f.state.digest();
    let out = f.auth(&req, T0_S);
    assert_eq!(
        (out.code, out.available_minor),
        (ResponseCode::APPROVED, 7_777)
    );
    assert_eq!(out.authorization, None);
    assert_eq!(
        out.approval_code(),
        None,
        "nothing recorded, nothing to quote"
    );
    assert_eq!(
        f.state.digest(),
        before,
        "a balance inquiry changes nothing"
    );
    let mut v = purchase(f.card, 2, 0);
    v.kind = AuthKind::AccountVerification;
    assert!(Command::Authorize(v.clone()).mutates());
    let out = f.auth(&v, T0_S);
    assert_eq!(
        (out.code, out.approved_amount_minor),
        (ResponseCode::APPROVED, 0)
    );
    v.key = key(3);
    v.amount_minor = 100;
    assert_declined(&f.auth(&v, T0_S), DeclineReason::InvalidAmount, b"13");
    set_card(&mut f, Some(CardStatus::Lost), None);
    req.key = key(4);
    assert_eq!(f.auth(&req, T0_S).code.as_bytes(), *b"41");
    assert_eq!(balance(&f), (7_777, 0, 0));
}

#[test]
fn incremental_raises_or_leaves_the_original() {
    let mut f = Fixture::new(10_000);
    let first = f.auth(&purchase(f.card, 1, 3_000), T0_S);
    let mut inc = purchase(f.card, 2, 2_000);
    inc.original = Some(key(1));
    let out = f.auth(&inc, T0_S + 60);
    assert_eq!(out.code, ResponseCode::APPROVED);
    assert_eq!(out.authorization, first.authorization);
    assert_eq!(balance(&f), (5_000, 5_000, 0));
    let mut too_much = purchase(f.card, 3, 5_001);
    too_much.original = Some(key(1));
    let out = f.auth(&too_much, T0_S + 120);
    assert_declined(&out, DeclineReason::InsufficientFunds, b"51");
    assert_eq!(balance(&f), (5_000, 5_000, 0));
    let q = Query::GetAuthorization(first.authorization.unwrap());
    let QueryResult::Authorization(v) = f.state.query(&q, 0) else {
        panic!("no authorization")
    };
    assert_eq!((v.amount, v.held, v.merchant_amount), (5_000, 5_000, 5_000));
    assert_eq!(v.request_history.len(), 3);
    assert_eq!(v.request_history[2].reason, Some("insufficient_funds"));
    let mut orphan = purchase(f.card, 4, 10);
    orphan.original = Some(key(77));
    let out = f.auth(&orphan, T0_S);
    assert_declined(&out, DeclineReason::UnsupportedTransaction, b"12");
    assert_eq!(out.authorization, None);
}

#[test]
fn an_incremental_of_another_kind_is_declined_unrecorded() {
    // A refund-coded 0100 naming a purchase (DE3 20, DE90): refunds skip the funds check,
    // so as an incremental it would have held 100 000 on a 1 000 account, past zero.
    let mut f = Fixture::new(1_000);
    let first = f.auth(&purchase(f.card, 1, 500), T0_S);
    let mut refund = incremental(f.card, 2, 1, 100_000);
    refund.kind = AuthKind::Refund;
    let out = f.auth(&refund, T0_S + 1);
    assert_declined(&out, DeclineReason::UnsupportedTransaction, b"12");
    assert_eq!(out.authorization, None);
    let mut cash = incremental(f.card, 3, 1, 100);
    cash.kind = AuthKind::CashWithdrawal;
    assert_declined(
        &f.auth(&cash, T0_S + 2),
        DeclineReason::UnsupportedTransaction,
        b"12",
    );
    assert_eq!(balance(&f), (500, 500, 0));
    f.state.check_invariants().expect("invariants hold");
    let q = Query::GetAuthorization(first.authorization.unwrap());
    let QueryResult::Authorization(v) = f.state.query(&q, 0) else {
        panic!("no authorization")
    };
    assert_eq!((v.amount, v.held, v.request_history.len()), (500, 500, 1));
}

#[test]
fn an_incremental_is_decided_and_counted_under_the_original_mcc() {
    // A daily limit of 1 000 on restaurants (5812). An incremental of a restaurant bill
    // carrying a grocery DE18 is still the restaurant's: declined past the limit, approved
    // within it, and counted there.
    let mut f = Fixture::new(100_000);
    set_card(&mut f, None, Some(restaurant_limit(1_000)));
    let mut dinner = purchase(f.card, 1, 900);
    dinner.mcc = 5812;
    assert_eq!(f.auth(&dinner, T0_S).code, ResponseCode::APPROVED);
    let mut tip = incremental(f.card, 2, 1, 5_000);
    tip.mcc = 5411;
    let out = f.auth(&tip, T0_S + 1);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    assert_eq!(balance(&f), (99_100, 900, 0));
    let mut tip = incremental(f.card, 3, 1, 100);
    tip.mcc = 5411;
    assert_eq!(f.auth(&tip, T0_S + 2).code, ResponseCode::APPROVED);
    // The 100 counted under 5812: nothing of the restaurant limit is left.
    let mut more = purchase(f.card, 4, 1);
    more.mcc = 5812;
    assert_declined(
        &f.auth(&more, T0_S + 3),
        DeclineReason::SpendingLimit,
        b"61",
    );
    assert_eq!(balance(&f), (99_000, 1_000, 0));
}

#[test]
fn an_incremental_counts_in_the_window_its_authorization_was_made_in() {
    // Daily limit 1 000. 400 on day 1, raised by 400 on day 2: the authorization counts in
    // day 1, where a release takes it back from and where the records put it when limits
    // are rebuilt. Day 2's own 1 000 stays whole, before and after the reversal.
    let mut f = Fixture::new(100_000);
    set_card(&mut f, None, Some(limit(1_000, Interval::Daily)));
    let day1 = at(2024, 3, 14, 10, 0, 0);
    let day2 = at(2024, 3, 15, 10, 0, 0);
    assert_eq!(
        f.auth(&purchase(f.card, 1, 400), day1).code,
        ResponseCode::APPROVED
    );
    let out = f.auth(&incremental(f.card, 2, 1, 400), day2);
    assert_eq!(
        (out.code, out.approved_amount_minor),
        (ResponseCode::APPROVED, 400)
    );
    assert_eq!(balance(&f), (99_200, 800, 0));
    // The incremental is checked against day 2's room: 1 000 is the most it may be.
    let out = f.auth(&incremental(f.card, 3, 1, 1_001), day2 + 1);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    let reverse = Command::Reverse(authswitch::ledger::ReversalRequest {
        card: f.card,
        key: key(4),
        original: key(1),
        replacement_amount_minor: None,
    });
    apply(&mut f.state, &reverse, day2 + 2);
    assert_eq!(balance(&f), (100_000, 0, 0));
    let out = f.auth(&purchase(f.card, 5, 1_000), day2 + 3);
    assert_eq!(out.code, ResponseCode::APPROVED, "day 2 has spent nothing");
    assert_declined(
        &f.auth(&purchase(f.card, 6, 1), day2 + 4),
        DeclineReason::SpendingLimit,
        b"61",
    );
    assert_eq!(balance(&f), (99_000, 1_000, 0));
    f.state.check_invariants().expect("invariants hold");
}

#[test]
fn expiry_reaches_holds_behind_a_first_stretch_that_stays() {
    // A 30-day hotel hold first, then 2^20 one-unit purchases: the last of them lies past
    // the first scan stretch (2^20 records) of every pass, behind a front that stays for
    // 30 days. It is released at 7 days all the same (before, it was still held on day 29).
    let mut f = Fixture::new(1_000_000_000);
    let mut hotel = purchase(f.card, 0, 1);
    hotel.mcc = 7011;
    assert_eq!(f.auth(&hotel, T0_S).code, ResponseCode::APPROVED);
    let n_max = 1u32 << 20;
    for n in 1..n_max {
        let out = f.auth(&purchase(f.card, n, 1), T0_S);
        assert_eq!(out.code, ResponseCode::APPROVED, "{n}");
    }
    let last = f.auth(&purchase(f.card, n_max, 100_000), T0_S);
    let week_s = 7 * 86_400;
    let out = apply(&mut f.state, &Command::ExpireHolds, T0_S + week_s);
    assert!(
        matches!(
            out,
            Outcome::Expired {
                released: 1_048_576,
                more: true,
                ..
            }
        ),
        "{out:?}"
    );
    let q = Query::GetAuthorization(last.authorization.unwrap());
    let QueryResult::Authorization(v) = f.state.query(&q, 0) else {
        panic!("no authorization")
    };
    assert_eq!((v.status, v.held), (AuthStatus::Expired, 0));
    // Only the hotel hold is left.
    assert_eq!(balance(&f), (1_000_000_000 - 1, 1, 0));
}

#[test]
fn expiry_releases_holds_and_retention_purges() {
    let mut f = Fixture::new(10_000);
    f.auth(&purchase(f.card, 1, 1_000), T0_S);
    let mut hotel = purchase(f.card, 2, 2_000);
    hotel.mcc = 7011;
    f.auth(&hotel, T0_S);
    f.auth(&purchase(f.card, 3, 99_999), T0_S);
    assert_eq!(balance(&f), (7_000, 3_000, 0));
    let week_s = 7 * 86_400;
    let out = apply(&mut f.state, &Command::ExpireHolds, T0_S + week_s - 1);
    assert_eq!(
        out,
        Outcome::Expired {
            released: 0,
            purged: 0,
            more: false
        }
    );
    let out = apply(&mut f.state, &Command::ExpireHolds, T0_S + week_s);
    // The plain hold expires, the decline (closed at T0) is purged, the hotel hold stays.
    assert_eq!(
        out,
        Outcome::Expired {
            released: 1,
            purged: 1,
            more: false
        }
    );
    assert_eq!(balance(&f), (8_000, 2_000, 0));
    assert_eq!(f.state.authorization_count(), 2);
    assert_eq!(f.state.key_count(), 2);
    let out = apply(&mut f.state, &Command::ExpireHolds, T0_S + 2 * week_s);
    assert_eq!(
        out,
        Outcome::Expired {
            released: 0,
            purged: 1,
            more: false
        }
    );
    let out = apply(&mut f.state, &Command::ExpireHolds, T0_S + 30 * 86_400);
    assert_eq!(
        out,
        Outcome::Expired {
            released: 1,
            purged: 0,
            more: false
        }
    );
    assert_eq!(balance(&f), (10_000, 0, 0));
    let out = apply(&mut f.state, &Command::ExpireHolds, T0_S + 37 * 86_400);
    assert_eq!(
        out,
        Outcome::Expired {
            released: 0,
            purged: 1,
            more: false
        }
    );
    assert_eq!((f.state.authorization_count(), f.state.key_count()), (0, 0));
    f.state.check_invariants().unwrap();
}

#[test]
fn expired_hold_gives_back_limit_usage() {
    let mut f = Fixture::new(10_000);
    set_card(&mut f, None, Some(limit(1_000, Interval::AllTime)));
    f.auth(&purchase(f.card, 1, 1_000), T0_S);
    apply(&mut f.state, &Command::ExpireHolds, T0_S + 7 * 86_400);
    let out = f.auth(&purchase(f.card, 2, 1_000), T0_S + 7 * 86_400);
    assert_eq!(out.code, ResponseCode::APPROVED);
    assert_eq!(balance(&f), (9_000, 1_000, 0));
}

#[test]
fn admin_validation_errors() {
    let mut f = Fixture::new(0);
    let fund = Command::Fund {
        account: f.account,
        amount_minor: 0,
    };
    assert!(matches!(
        apply(&mut f.state, &fund, T0_S),
        Outcome::Rejected(CommandError::Invalid {
            param: "amount",
            ..
        })
    ));
    let other = authswitch::domain::AccountId::new(1, 50);
    assert_eq!(
        apply(
            &mut f.state,
            &Command::Fund {
                account: other,
                amount_minor: 1
            },
            T0_S
        ),
        Outcome::Rejected(CommandError::NotFound { param: "account" })
    );
    let card = Command::CreateCard {
        cardholder: f.cardholder,
        pan_hash: [0; 32],
        last4: *b"4242",
        exp_month: 13,
        exp_year: 2030,
        status: CardStatus::Active,
        spending_controls: SpendingControls::default(),
        replacement_for: None,
    };
    assert!(matches!(
        apply(&mut f.state, &card, T0_S),
        Outcome::Rejected(CommandError::Invalid {
            param: "exp_month",
            ..
        })
    ));
    let config = ProgramConfig {
        retention_s: 0,
        ..Default::default()
    };
    assert!(matches!(
        apply(&mut f.state, &Command::SetProgramConfig(config), T0_S),
        Outcome::Rejected(CommandError::Invalid {
            param: "retention_s",
            ..
        })
    ));
}

#[test]
fn snapshot_round_trip_and_totals() {
    use authswitch::ledger::ShardState;
    let mut f = Fixture::new(10_000);
    f.auth(&purchase(f.card, 1, 1_234), T0_S);
    let snap = f.state.to_snapshot();
    let back = ShardState::from_snapshot(&snap).unwrap();
    assert_eq!(back.digest(), f.state.digest());
    let totals = f.state.totals_by_currency();
    assert_eq!(totals.len(), 1);
    let t = totals[0];
    assert_eq!(
        (t.currency.alpha(), t.held_minor, t.available_minor),
        ("usd", 1_234, 8_766)
    );
    let index: Vec<_> = f.state.cards_for_index().collect();
    assert_eq!(index, vec![([0u8; 32], f.card)]);
    assert!(ShardState::from_snapshot(&snap[..snap.len() / 2]).is_err());
}

#[test]
fn the_authorization_cap_answers_91_and_records_nothing() {
    let mut f = Fixture::new(100_000);
    let config = ProgramConfig {
        authorizations_max: 2,
        ..Default::default()
    };
    let out = apply(&mut f.state, &Command::SetProgramConfig(config), T0_S);
    assert_eq!(out, Outcome::ConfigSet);
    for n in 1..=2 {
        let out = f.auth(&purchase(f.card, n, 100), T0_S);
        assert_eq!(out.code, ResponseCode::APPROVED, "{out:?}");
        assert!(out.authorization.is_some());
    }
    let out = f.auth(&purchase(f.card, 3, 100), T0_S);
    assert_eq!(out.code.as_bytes(), *b"91");
    assert_eq!(out.authorization, None);
    assert_eq!(
        out.available_minor, 99_800,
        "nothing reserved for the refused one"
    );
    let bad = ProgramConfig {
        authorizations_max: 0,
        ..Default::default()
    };
    assert!(matches!(
        apply(&mut f.state, &Command::SetProgramConfig(bad), T0_S),
        Outcome::Rejected(CommandError::Invalid {
            param: "authorizations_max",
            ..
        })
    ));
}

fn set_cardholder_controls(f: &mut Fixture, controls: SpendingControls, now_s: i64) {
    let cmd = Command::UpdateCardholder {
        cardholder: f.cardholder,
        name: None,
        status: None,
        spending_controls: Some(controls),
    };
    admin(&mut f.state, cmd, now_s);
}

/// Limits set during a window count what the card and cardholder had approved in it before
/// they existed (as Stripe's do), and nothing from earlier windows.
#[test]
fn limits_added_mid_window_count_earlier_approvals() {
    let mut f = Fixture::new(1_000_000);
    let day = at(2024, 3, 15, 0, 0, 0);
    // Yesterday's approval, then two of today's, all without any limit.
    let approve = |f: &mut Fixture, n: u32, amount: i64, t: i64| {
        let out = f.auth(&purchase(f.card, n, amount), t);
        assert_eq!(out.code, ResponseCode::APPROVED);
    };
    approve(&mut f, 1, 9_000, day - 60);
    approve(&mut f, 2, 2_000, day + 3_600);
    approve(&mut f, 3, 1_500, day + 7_200);
    // Card limit of 5 000 a day, set at noon: 3 500 of it is already used.
    let cmd = Command::UpdateCard {
        card: f.card,
        status: None,
        spending_controls: Some(limit(5_000, Interval::Daily)),
    };
    admin(&mut f.state, cmd, day + 43_200);
    let out = f.auth(&purchase(f.card, 4, 1_501), day + 43_300);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    approve(&mut f, 5, 1_500, day + 43_400);
    let out = f.auth(&purchase(f.card, 6, 1), day + 43_500);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");

    // A cardholder limit of 6 000 a day: the same three approvals of today count.
    let cmd = Command::UpdateCard {
        card: f.card,
        status: None,
        spending_controls: Some(SpendingControls::default()),
    };
    admin(&mut f.state, cmd, day + 50_000);
    set_cardholder_controls(&mut f, limit(6_000, Interval::Daily), day + 50_000);
    let out = f.auth(&purchase(f.card, 7, 1_001), day + 50_100);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    approve(&mut f, 8, 1_000, day + 50_200);

    // A program default (applies: the card has no limits now) of 7 000 a day, found from the
    // records at the first decision after it is set.
    let config = ProgramConfig {
        default_spending_limits: vec![SpendingLimit {
            amount_minor: 7_000,
            interval: Interval::Daily,
            categories: vec![],
        }],
        ..Default::default()
    };
    let cmd = Command::SetProgramConfig(config);
    assert_eq!(apply(&mut f.state, &cmd, day + 60_000), Outcome::ConfigSet);
    set_cardholder_controls(&mut f, SpendingControls::default(), day + 60_000);
    let out = f.auth(&purchase(f.card, 9, 1_001), day + 60_100);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    approve(&mut f, 10, 1_000, day + 60_200);
    let out = f.auth(&purchase(f.card, 11, 1), day + 60_300);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    // Tomorrow the window is empty again.
    approve(&mut f, 12, 7_000, day + 86_400);
    assert_eq!(
        balance(&f),
        (1_000_000 - 9_000 - 6_000 - 1_000 - 7_000, 23_000, 0)
    );
}

/// A replacement card issued with its own new limit counts the lineage's spend of the window.
#[test]
fn replacement_with_a_new_limit_counts_the_old_cards_spend() {
    let mut g = Fixture::new(100_000);
    assert_eq!(
        g.auth(&purchase(g.card, 1, 2_500), T0_S).code,
        ResponseCode::APPROVED
    );
    set_card(&mut g, Some(CardStatus::Canceled), None);
    let old = g.card;
    let new = g.add_card(limit(3_000, Interval::Weekly), Some(old));
    let out = g.auth(&purchase(new, 2, 501), T0_S + 10);
    assert_declined(&out, DeclineReason::SpendingLimit, b"61");
    let out = g.auth(&purchase(new, 3, 500), T0_S + 20);
    assert_eq!(out.code, ResponseCode::APPROVED);
}
