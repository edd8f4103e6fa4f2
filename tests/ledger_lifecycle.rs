//! Phase-2 flows with exact balances: advices, reversals (full, partial, duplicate, early),
//! financial requests, captures (full, partial, multiple, over-capture, after expiry),
//! refunds of captures and refund authorizations, force captures, and expiry after capture.

use authswitch::domain::{AuthorizationId, DeclineReason, ResponseCode, TransactionId};
use authswitch::ledger::query::{Query, QueryResult};
use authswitch::ledger::testkit::{incremental, key, purchase, Fixture, T0_S};
use authswitch::ledger::{
    apply, AuthKind, AuthOutcome, AuthRequest, AuthStatus, Command, CommandError, MerchantData,
    Outcome, RequestKind, ReversalRequest,
};

trait Drive {
    fn auth(&mut self, req: &AuthRequest, now_s: i64) -> AuthOutcome;
    fn advice(&mut self, req: &AuthRequest, now_s: i64) -> AuthOutcome;
    fn run(&mut self, cmd: Command, now_s: i64) -> Outcome;
    fn balance(&self) -> (i64, i64, i64, i64);
    fn status(&self, id: AuthorizationId) -> (AuthStatus, i64, i64);
}

impl Drive for Fixture {
    fn auth(&mut self, req: &AuthRequest, now_s: i64) -> AuthOutcome {
        match self.run(Command::Authorize(req.clone()), now_s) {
            Outcome::Authorization(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn advice(&mut self, req: &AuthRequest, now_s: i64) -> AuthOutcome {
        match self.run(Command::Advice(req.clone()), now_s) {
            Outcome::Authorization(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn run(&mut self, cmd: Command, now_s: i64) -> Outcome {
        let out = apply(&mut self.state, &cmd, now_s);
        self.state.check_invariants().expect("invariants hold");
        out
    }

    /// (available, held, spent, refunded).
    fn balance(&self) -> (i64, i64, i64, i64) {
        match self.state.query(&Query::GetAccount(self.account), 0) {
            QueryResult::Account(a) => (
                a.balance.available,
                a.balance.held,
                a.balance.spent,
                a.refunded,
            ),
            other => panic!("{other:?}"),
        }
    }

    /// (status, held, captured) of an authorization.
    fn status(&self, id: AuthorizationId) -> (AuthStatus, i64, i64) {
        match self.state.query(&Query::GetAuthorization(id), 0) {
            QueryResult::Authorization(a) => (a.status, a.held, a.captured),
            other => panic!("{other:?}"),
        }
    }
}

fn reversal(f: &Fixture, n: u32, original: u32, replacement: Option<i64>) -> Command {
    Command::Reverse(ReversalRequest {
        card: f.card,
        key: key(n),
        original: key(original),
        replacement_amount_minor: replacement,
    })
}

fn capture(id: AuthorizationId, amount_minor: i64, close: bool) -> Command {
    Command::Capture {
        authorization: id,
        amount_minor,
        close_authorization: close,
    }
}

fn captured_txn(out: Outcome) -> (TransactionId, i64) {
    match out {
        Outcome::Captured {
            transaction,
            over_capture_minor,
            ..
        } => (transaction, over_capture_minor),
        other => panic!("{other:?}"),
    }
}

#[test]
fn advice_overdraws_and_is_recorded() {
    let mut f = Fixture::new(1_000);
    let out = f.advice(&purchase(f.card, 1, 1_500), T0_S);
    assert_eq!(
        (out.code, out.approved_amount_minor),
        (ResponseCode::APPROVED, 1_500)
    );
    assert_eq!(f.balance(), (-500, 1_500, 0, 0));
    // A retransmitted advice changes nothing.
    f.advice(&purchase(f.card, 1, 1_500), T0_S);
    assert_eq!(f.balance(), (-500, 1_500, 0, 0));
    let id = out.authorization.unwrap();
    let QueryResult::Authorization(v) = f.state.query(&Query::GetAuthorization(id), 0) else {
        panic!("no authorization")
    };
    assert_eq!(v.request_history.len(), 1);
    assert_eq!(v.request_history[0].kind, RequestKind::Advice);
}

#[test]
fn advice_brings_declined_and_approved_originals_in_line() {
    let mut f = Fixture::new(1_000);
    let declined = f.auth(&purchase(f.card, 1, 2_000), T0_S);
    assert_eq!(declined.reason, Some(DeclineReason::InsufficientFunds));
    let out = f.advice(&purchase(f.card, 1, 2_000), T0_S + 1);
    assert_eq!(out.authorization, declined.authorization);
    assert_eq!(f.balance(), (-1_000, 2_000, 0, 0));
    assert_eq!(
        f.status(out.authorization.unwrap()),
        (AuthStatus::Pending, 2_000, 0)
    );
    // An approved original lowered by the advice.
    let mut g = Fixture::new(5_000);
    let approved = g.auth(&purchase(g.card, 2, 3_000), T0_S);
    g.advice(&purchase(g.card, 2, 1_200), T0_S + 1);
    assert_eq!(g.balance(), (3_800, 1_200, 0, 0));
    assert_eq!(
        g.status(approved.authorization.unwrap()),
        (AuthStatus::Pending, 1_200, 0)
    );
}

#[test]
fn an_advice_replaces_only_the_message_its_key_names() {
    let mut f = Fixture::new(10_000);
    let first = f.auth(&purchase(f.card, 1, 1_000), T0_S);
    let id = first.authorization.unwrap();
    assert_eq!(
        f.auth(&incremental(f.card, 2, 1, 500), T0_S + 1).code,
        ResponseCode::APPROVED
    );
    assert_eq!(f.balance(), (8_500, 1_500, 0, 0));
    // The network stood in on the incremental (our answer was late) and advises it: both
    // approvals stand.
    let out = f.advice(&incremental(f.card, 2, 1, 500), T0_S + 2);
    assert_eq!(
        (out.authorization, out.approved_amount_minor),
        (Some(id), 500)
    );
    assert_eq!(f.balance(), (8_500, 1_500, 0, 0));
    // An advice of the first message for 800: the first message's 1 000 becomes 800, the
    // incremental's 500 stays.
    f.advice(&purchase(f.card, 1, 800), T0_S + 3);
    assert_eq!(f.balance(), (8_700, 1_300, 0, 0));
    assert_eq!(f.status(id), (AuthStatus::Pending, 1_300, 0));
    // Its retransmission (0121) changes nothing and records nothing more.
    f.advice(&purchase(f.card, 1, 800), T0_S + 4);
    assert_eq!(f.balance(), (8_700, 1_300, 0, 0));
    let QueryResult::Authorization(v) = f.state.query(&Query::GetAuthorization(id), 0) else {
        panic!("no authorization")
    };
    let kinds: Vec<_> = v.request_history.iter().map(|e| e.kind).collect();
    use RequestKind::{Advice, Authorization, Incremental};
    assert_eq!(kinds, [Authorization, Incremental, Advice, Advice]);
    assert_eq!((v.amount, v.merchant_amount), (1_300, 1_300));
}

#[test]
fn a_retransmitted_advice_does_not_undo_a_later_incremental() {
    let mut f = Fixture::new(10_000);
    let out = f.advice(&purchase(f.card, 1, 1_000), T0_S);
    assert_eq!(
        f.auth(&incremental(f.card, 2, 1, 500), T0_S + 1).code,
        ResponseCode::APPROVED
    );
    assert_eq!(f.balance(), (8_500, 1_500, 0, 0));
    f.advice(&purchase(f.card, 1, 1_000), T0_S + 2);
    assert_eq!(f.balance(), (8_500, 1_500, 0, 0));
    assert_eq!(
        f.status(out.authorization.unwrap()),
        (AuthStatus::Pending, 1_500, 0)
    );
}

#[test]
fn an_advice_of_a_declined_incremental_adds_it_once() {
    let mut f = Fixture::new(1_500);
    let id = f
        .auth(&purchase(f.card, 1, 1_000), T0_S)
        .authorization
        .unwrap();
    let out = f.auth(&incremental(f.card, 2, 1, 800), T0_S + 1);
    assert_eq!(out.reason, Some(DeclineReason::InsufficientFunds));
    assert_eq!(f.balance(), (500, 1_000, 0, 0));
    // The network approved the 800 in stand-in: it is added, past the balance.
    f.advice(&incremental(f.card, 2, 1, 800), T0_S + 2);
    assert_eq!(f.balance(), (-300, 1_800, 0, 0));
    // And only once, however often the advice comes.
    f.advice(&incremental(f.card, 2, 1, 800), T0_S + 3);
    f.advice(&incremental(f.card, 2, 1, 800), T0_S + 4);
    assert_eq!(f.balance(), (-300, 1_800, 0, 0));
    assert_eq!(f.status(id), (AuthStatus::Pending, 1_800, 0));
}

#[test]
fn a_partial_reversal_of_a_partial_approval_holds_the_replacement() {
    // 10 000 asked, 6 000 approved (10); the merchant completes for 5 000 (DE95): 5 000
    // stays held, not 5 000 scaled by 6 000 / 10 000.
    let mut f = Fixture::new(6_000);
    let mut req = purchase(f.card, 1, 10_000);
    req.partial_ok = true;
    let out = f.auth(&req, T0_S);
    assert_eq!(
        (out.code, out.approved_amount_minor),
        (ResponseCode::PARTIAL, 6_000)
    );
    let id = out.authorization.unwrap();
    let QueryResult::Authorization(v) = f.state.query(&Query::GetAuthorization(id), 0) else {
        panic!("no authorization")
    };
    assert_eq!((v.amount, v.merchant_amount), (6_000, 6_000));
    let out = f.run(reversal(&f, 2, 1, Some(5_000)), T0_S + 1);
    assert!(
        matches!(
            out,
            Outcome::Reversed {
                released_minor: 1_000,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(f.balance(), (1_000, 5_000, 0, 0));
    assert_eq!(f.status(id), (AuthStatus::Pending, 5_000, 0));
}

#[test]
fn full_partial_and_repeated_reversal() {
    let mut f = Fixture::new(10_000);
    let a = f
        .auth(&purchase(f.card, 1, 4_000), T0_S)
        .authorization
        .unwrap();
    let out = f.run(reversal(&f, 2, 1, Some(2_500)), T0_S + 10);
    let expect = Outcome::Reversed {
        authorization: Some(a),
        released_minor: 1_500,
        duplicate: false,
    };
    assert_eq!(out, expect);
    assert_eq!(f.balance(), (7_500, 2_500, 0, 0));
    let out = f.run(reversal(&f, 2, 1, Some(2_500)), T0_S + 11);
    let dup = Outcome::Reversed {
        authorization: Some(a),
        released_minor: 0,
        duplicate: true,
    };
    assert_eq!(out, dup);
    let out = f.run(reversal(&f, 3, 1, None), T0_S + 12);
    let full = Outcome::Reversed {
        authorization: Some(a),
        released_minor: 2_500,
        duplicate: false,
    };
    assert_eq!(out, full);
    assert_eq!(f.balance(), (10_000, 0, 0, 0));
    assert_eq!(f.status(a), (AuthStatus::Reversed, 0, 0));
    // A second reversal (new key) changes nothing.
    let out = f.run(reversal(&f, 4, 1, None), T0_S + 13);
    let none = Outcome::Reversed {
        authorization: Some(a),
        released_minor: 0,
        duplicate: false,
    };
    assert_eq!(out, none);
    assert_eq!(f.balance(), (10_000, 0, 0, 0));
    // Reversal with the original's own key.
    let b = f
        .auth(&purchase(f.card, 5, 1_000), T0_S)
        .authorization
        .unwrap();
    let out = f.run(reversal(&f, 5, 5, None), T0_S + 14);
    let own = Outcome::Reversed {
        authorization: Some(b),
        released_minor: 1_000,
        duplicate: false,
    };
    assert_eq!(out, own);
    assert_eq!(f.balance(), (10_000, 0, 0, 0));
}

#[test]
fn reversal_gives_back_limit_usage() {
    use authswitch::domain::controls::{Interval, SpendingControls, SpendingLimit};
    let mut f = Fixture::new(10_000);
    let controls = SpendingControls {
        spending_limits: vec![SpendingLimit {
            amount_minor: 1_000,
            interval: Interval::Daily,
            categories: vec![],
        }],
        ..Default::default()
    };
    let cmd = Command::UpdateCard {
        card: f.card,
        status: None,
        spending_controls: Some(controls),
    };
    f.run(cmd, T0_S);
    f.auth(&purchase(f.card, 1, 1_000), T0_S);
    assert_eq!(
        f.auth(&purchase(f.card, 2, 1), T0_S).code.as_bytes(),
        *b"61"
    );
    f.run(reversal(&f, 3, 1, Some(600)), T0_S);
    assert_eq!(
        f.auth(&purchase(f.card, 4, 400), T0_S).code,
        ResponseCode::APPROVED
    );
    assert_eq!(f.balance(), (9_000, 1_000, 0, 0));
}

#[test]
fn early_reversal_reverses_the_late_original() {
    let mut f = Fixture::new(10_000);
    let out = f.run(reversal(&f, 9, 1, None), T0_S);
    let unmatched = Outcome::Reversed {
        authorization: None,
        released_minor: 0,
        duplicate: false,
    };
    assert_eq!(out, unmatched);
    let late = f.auth(&purchase(f.card, 1, 3_000), T0_S + 1);
    assert_eq!(late.code, ResponseCode::APPROVED);
    assert_eq!(f.balance(), (10_000, 0, 0, 0));
    assert_eq!(
        f.status(late.authorization.unwrap()),
        (AuthStatus::Reversed, 0, 0)
    );
    // Its retransmission is answered as before and reserves nothing.
    let again = f.auth(&purchase(f.card, 1, 3_000), T0_S + 2);
    assert!(again.duplicate);
    assert_eq!(f.balance(), (10_000, 0, 0, 0));
}

#[test]
fn partial_capture_releases_the_rest_or_keeps_it_open() {
    let mut f = Fixture::new(10_000);
    let a = f
        .auth(&purchase(f.card, 1, 5_000), T0_S)
        .authorization
        .unwrap();
    let (_, over) = captured_txn(f.run(capture(a, 2_000, false), T0_S + 60));
    assert_eq!(over, 0);
    assert_eq!(f.balance(), (5_000, 3_000, 2_000, 0));
    assert_eq!(f.status(a), (AuthStatus::Pending, 3_000, 2_000));
    f.run(capture(a, 1_000, true), T0_S + 120);
    assert_eq!(f.balance(), (7_000, 0, 3_000, 0));
    assert_eq!(f.status(a), (AuthStatus::Closed, 0, 3_000));
    // Expiry later releases nothing more.
    let out = f.run(Command::ExpireHolds, T0_S + 7 * 86_400);
    assert_eq!(
        out,
        Outcome::Expired {
            released: 0,
            purged: 0,
            more: false
        }
    );
    assert_eq!(f.balance(), (7_000, 0, 3_000, 0));
}

#[test]
fn over_capture_goes_below_zero_and_is_flagged() {
    let mut f = Fixture::new(1_000);
    let a = f
        .auth(&purchase(f.card, 1, 1_000), T0_S)
        .authorization
        .unwrap();
    let (_, over) = captured_txn(f.run(capture(a, 1_250, true), T0_S + 60));
    assert_eq!(over, 250);
    assert_eq!(f.balance(), (-250, 0, 1_250, 0));
}

#[test]
fn capture_after_expiry_takes_from_available() {
    let mut f = Fixture::new(1_000);
    let a = f
        .auth(&purchase(f.card, 1, 400), T0_S)
        .authorization
        .unwrap();
    let out = f.run(Command::ExpireHolds, T0_S + 7 * 86_400);
    assert_eq!(
        out,
        Outcome::Expired {
            released: 1,
            purged: 0,
            more: false
        }
    );
    assert_eq!(f.balance(), (1_000, 0, 0, 0));
    let (_, over) = captured_txn(f.run(capture(a, 400, true), T0_S + 8 * 86_400));
    assert_eq!(over, 400);
    assert_eq!(f.balance(), (600, 0, 400, 0));
    assert_eq!(f.status(a), (AuthStatus::Closed, 0, 400));
}

#[test]
fn capture_rejections() {
    let mut f = Fixture::new(100);
    let declined = f
        .auth(&purchase(f.card, 1, 1_000), T0_S)
        .authorization
        .unwrap();
    let reason = "authorization was declined";
    assert_eq!(
        f.run(capture(declined, 10, true), T0_S),
        Outcome::Rejected(CommandError::Invalid {
            param: "authorization",
            reason
        })
    );
    let missing = AuthorizationId::new(1, 999);
    assert_eq!(
        f.run(capture(missing, 10, true), T0_S),
        Outcome::Rejected(CommandError::NotFound {
            param: "authorization"
        })
    );
    let a = f
        .auth(&purchase(f.card, 2, 50), T0_S)
        .authorization
        .unwrap();
    assert!(matches!(
        f.run(capture(a, 0, true), T0_S),
        Outcome::Rejected(CommandError::Invalid {
            param: "amount",
            ..
        })
    ));
}

#[test]
fn refunds_credit_the_account_up_to_the_captured_amount() {
    let mut f = Fixture::new(10_000);
    let a = f
        .auth(&purchase(f.card, 1, 3_000), T0_S)
        .authorization
        .unwrap();
    let (txn, _) = captured_txn(f.run(capture(a, 3_000, true), T0_S));
    assert_eq!(f.balance(), (7_000, 0, 3_000, 0));
    let out = f.run(
        Command::Refund {
            transaction: txn,
            amount_minor: Some(1_000),
        },
        T0_S,
    );
    assert!(matches!(
        out,
        Outcome::Refunded {
            amount_minor: 1_000,
            ..
        }
    ));
    assert_eq!(f.balance(), (8_000, 0, 3_000, 1_000));
    let out = f.run(
        Command::Refund {
            transaction: txn,
            amount_minor: None,
        },
        T0_S,
    );
    assert!(matches!(
        out,
        Outcome::Refunded {
            amount_minor: 2_000,
            ..
        }
    ));
    assert_eq!(f.balance(), (10_000, 0, 3_000, 3_000));
    assert!(matches!(
        f.run(
            Command::Refund {
                transaction: txn,
                amount_minor: Some(1)
            },
            T0_S
        ),
        Outcome::Rejected(CommandError::Invalid {
            param: "amount",
            ..
        })
    ));
    let QueryResult::Transaction(t) = f.state.query(&Query::GetTransaction(txn), 0) else {
        panic!("no transaction")
    };
    assert_eq!((t.amount, t.refunded, t.currency), (3_000, 3_000, "usd"));
}

#[test]
fn refund_authorization_credits_when_captured() {
    let mut f = Fixture::new(1_000);
    let mut req = purchase(f.card, 1, 700);
    req.kind = AuthKind::Refund;
    let a = f.auth(&req, T0_S).authorization.unwrap();
    assert_eq!(f.balance(), (1_000, 0, 0, 0));
    assert_eq!(f.status(a), (AuthStatus::Pending, 0, 0));
    let (_, over) = captured_txn(f.run(capture(a, 700, true), T0_S + 5));
    assert_eq!(over, 0);
    assert_eq!(f.balance(), (1_700, 0, 0, 700));
    assert_eq!(f.status(a), (AuthStatus::Closed, 0, 700));
}

#[test]
fn financial_authorizes_and_captures_at_once() {
    let mut f = Fixture::new(5_000);
    let out = match f.run(Command::Financial(purchase(f.card, 1, 1_200)), T0_S) {
        Outcome::Authorization(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (out.code, out.available_minor),
        (ResponseCode::APPROVED, 3_800)
    );
    assert_eq!(f.balance(), (3_800, 0, 1_200, 0));
    assert_eq!(
        f.status(out.authorization.unwrap()),
        (AuthStatus::Closed, 0, 1_200)
    );
    let declined = match f.run(Command::Financial(purchase(f.card, 2, 9_000)), T0_S) {
        Outcome::Authorization(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(declined.code.as_bytes(), *b"51");
    assert_eq!(f.balance(), (3_800, 0, 1_200, 0));
    // A 0200 is decided before its key is looked up, as an 0100 is: a retransmission after
    // the card was frozen still gets its first answer, and captures nothing again.
    let cmd = Command::UpdateCard {
        card: f.card,
        status: Some(authswitch::domain::CardStatus::Inactive),
        spending_controls: None,
    };
    f.run(cmd, T0_S);
    let again = match f.run(Command::Financial(purchase(f.card, 1, 1_200)), T0_S + 5) {
        Outcome::Authorization(a) => a,
        other => panic!("{other:?}"),
    };
    assert!(again.duplicate);
    assert_eq!(
        (again.code, again.authorization),
        (ResponseCode::APPROVED, out.authorization)
    );
    assert_eq!(f.balance(), (3_800, 0, 1_200, 0));
}

#[test]
fn a_reversal_of_a_financial_request_credits_it_back() {
    // An ATM withdrawal (0200, captured at once) that the machine did not dispense: the
    // 0400 credits it back, as a refund of its capture. Then partly (DE95: 500 dispensed of
    // 1 200), and with the reversal arriving before its 0200.
    let mut f = Fixture::new(5_000);
    let first = f.run(Command::Financial(purchase(f.card, 1, 1_200)), T0_S);
    let Outcome::Authorization(first) = first else {
        panic!("{first:?}")
    };
    assert_eq!(f.balance(), (3_800, 0, 1_200, 0));
    let out = f.run(reversal(&f, 2, 1, None), T0_S + 10);
    assert!(
        matches!(
            out,
            Outcome::Reversed {
                released_minor: 1_200,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(f.balance(), (5_000, 0, 1_200, 1_200));
    let id = first.authorization.unwrap();
    assert_eq!(f.status(id).0, AuthStatus::Reversed);
    // Again, or under another key: nothing more.
    f.run(reversal(&f, 2, 1, None), T0_S + 11);
    f.run(reversal(&f, 3, 1, None), T0_S + 12);
    assert_eq!(f.balance(), (5_000, 0, 1_200, 1_200));

    f.run(Command::Financial(purchase(f.card, 4, 1_200)), T0_S + 20);
    let out = f.run(reversal(&f, 5, 4, Some(500)), T0_S + 30);
    assert!(
        matches!(
            out,
            Outcome::Reversed {
                released_minor: 700,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(f.balance(), (4_500, 0, 2_400, 1_900));

    let out = f.run(reversal(&f, 7, 6, None), T0_S + 40);
    assert!(
        matches!(
            out,
            Outcome::Reversed {
                authorization: None,
                ..
            }
        ),
        "{out:?}"
    );
    f.run(Command::Financial(purchase(f.card, 6, 1_000)), T0_S + 41);
    assert_eq!(f.balance(), (4_500, 0, 3_400, 2_900));
}

#[test]
fn a_capture_is_kept_while_its_authorization_is() {
    // A hotel hold (30 days) captured in part on day 1 stays pending; on day 9 the capture
    // is older than the retention (7 days here) but still refundable and listed.
    let mut f = Fixture::new(10_000);
    let mut hotel = purchase(f.card, 1, 3_000);
    hotel.mcc = 7011;
    let id = f.auth(&hotel, T0_S).authorization.unwrap();
    let out = f.run(capture(id, 1_000, false), T0_S + 86_400);
    let Outcome::Captured { transaction, .. } = out else {
        panic!("{out:?}")
    };
    f.run(Command::ExpireHolds, T0_S + 9 * 86_400);
    assert_eq!(f.status(id), (AuthStatus::Pending, 2_000, 1_000));
    let refund = Command::Refund {
        transaction,
        amount_minor: Some(500),
    };
    let out = f.run(refund, T0_S + 9 * 86_400 + 1);
    assert!(
        matches!(
            out,
            Outcome::Refunded {
                amount_minor: 500,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(f.balance(), (7_500, 2_000, 1_000, 500));
}

#[test]
fn force_capture_without_authorization() {
    let mut f = Fixture::new(500);
    let merchant = MerchantData::new(b"AIRLINE", b"PARIS", b"FR", b"T1", b"M1");
    let cmd = Command::ForceCapture {
        card: f.card,
        amount_minor: 800,
        mcc: 4511,
        merchant,
    };
    let (txn, over) = captured_txn(f.run(cmd, T0_S));
    assert_eq!(over, 800);
    assert_eq!(f.balance(), (-300, 0, 800, 0));
    let out = f.run(
        Command::Refund {
            transaction: txn,
            amount_minor: None,
        },
        T0_S,
    );
    assert!(matches!(
        out,
        Outcome::Refunded {
            amount_minor: 800,
            ..
        }
    ));
    assert_eq!(f.balance(), (500, 0, 800, 800));
}

#[test]
fn lodging_hold_lives_thirty_days() {
    let mut f = Fixture::new(1_000);
    let mut car = purchase(f.card, 1, 300);
    car.mcc = 7512;
    let a = f.auth(&car, T0_S).authorization.unwrap();
    let out = f.run(Command::ExpireHolds, T0_S + 30 * 86_400 - 1);
    assert_eq!(
        out,
        Outcome::Expired {
            released: 0,
            purged: 0,
            more: false
        }
    );
    let out = f.run(Command::ExpireHolds, T0_S + 30 * 86_400);
    assert_eq!(
        out,
        Outcome::Expired {
            released: 1,
            purged: 0,
            more: false
        }
    );
    assert_eq!(f.status(a), (AuthStatus::Expired, 0, 0));
    assert_eq!(f.balance(), (1_000, 0, 0, 0));
}
