//! Property test of the shard state machine over random command sequences.
//!
//! After every step: the ledger invariants hold (`funded + refunded - spent - held =
//! available` per account, `available >= 0` unless an advice or over-capture forced it, the
//! held sum equals the pending holds, a finished authorization holds nothing, so each hold is
//! released exactly once). At the end: replaying the same `(now_s, Command)` records into a
//! fresh state, into a snapshot taken halfway, and into the shallow copy a snapshot takes
//! (`share`) while the state goes on, gives the same digest. Authorization
//! webhook settings and platform decisions (random, on random authorizations) are among the
//! commands.

use authswitch::domain::controls::{Interval, SpendingControls, SpendingLimit};
use authswitch::domain::{CardStatus, CardholderStatus, Currency};
use authswitch::ledger::testkit::{key, purchase, T0_S};
use authswitch::ledger::{
    apply, AuthKind, Command, Outcome, PlatformResult, ShardState, TimeoutDecision, WebhookConfig,
};
use proptest::prelude::*;

/// Cards in the generated world (two accounts, two cardholders each with two cards).
const CARDS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Fund {
        account: usize,
        amount_minor: i64,
    },
    Authorize {
        card: usize,
        n: u32,
        amount_minor: i64,
        mcc: u16,
        partial_ok: bool,
        kind: u8,
    },
    Incremental {
        card: usize,
        n: u32,
        original: u32,
        amount_minor: i64,
    },
    SetCardStatus {
        card: usize,
        active: bool,
    },
    SetLimit {
        card: usize,
        amount_minor: i64,
        interval: u8,
    },
    Expire,
    Wait {
        s: i64,
    },
    Advice {
        card: usize,
        n: u32,
        amount_minor: i64,
    },
    Reverse {
        card: usize,
        n: u32,
        original: u32,
        replacement_minor: Option<i64>,
    },
    Capture {
        auth: u64,
        amount_minor: i64,
        close: bool,
    },
    Refund {
        txn: u64,
        amount_minor: Option<i64>,
    },
    ForceCapture {
        card: usize,
        amount_minor: i64,
    },
    Financial {
        card: usize,
        n: u32,
        amount_minor: i64,
        refund: bool,
    },
    /// 0: remove the endpoint, 1: default approve, 2: default decline.
    SetWebhook {
        account: usize,
        mode: u8,
    },
    PlatformDecision {
        auth: u64,
        result: u8,
        amount_minor: i64,
    },
    AbandonAwaiting,
}

fn lifecycle_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..CARDS, 0..40u32, 1..20_000i64).prop_map(|(card, n, amount_minor)| Op::Advice {
            card,
            n,
            amount_minor
        }),
        (
            0..CARDS,
            60..90u32,
            0..40u32,
            prop::option::of(0..20_000i64)
        )
            .prop_map(|(card, n, original, replacement_minor)| Op::Reverse {
                card,
                n,
                original,
                replacement_minor
            }),
        (0..60u64, 1..25_000i64, any::<bool>()).prop_map(|(auth, amount_minor, close)| {
            Op::Capture {
                auth,
                amount_minor,
                close,
            }
        }),
        (0..30u64, prop::option::of(1..10_000i64))
            .prop_map(|(txn, amount_minor)| Op::Refund { txn, amount_minor }),
        (0..CARDS, 1..10_000i64)
            .prop_map(|(card, amount_minor)| Op::ForceCapture { card, amount_minor }),
        (0..CARDS, 90..120u32, 1..20_000i64, any::<bool>()).prop_map(
            |(card, n, amount_minor, refund)| Op::Financial {
                card,
                n,
                amount_minor,
                refund
            }
        ),
        (0..2usize, 0..3u8).prop_map(|(account, mode)| Op::SetWebhook { account, mode }),
        (0..60u64, 0..6u8, 1..20_000i64).prop_map(|(auth, result, amount_minor)| {
            Op::PlatformDecision {
                auth,
                result,
                amount_minor,
            }
        }),
        Just(Op::AbandonAwaiting),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 1..50_000i64).prop_map(|(account, amount_minor)| Op::Fund {
            account,
            amount_minor
        }),
        (
            0..CARDS,
            0..40u32,
            -10..20_000i64,
            prop::sample::select(vec![5411u16, 5812, 7011]),
            any::<bool>(),
            0..8u8
        )
            .prop_map(
                |(card, n, amount_minor, mcc, partial_ok, kind)| Op::Authorize {
                    card,
                    n,
                    amount_minor,
                    mcc,
                    partial_ok,
                    kind
                }
            ),
        (0..CARDS, 40..60u32, 0..40u32, 1..5_000i64).prop_map(
            |(card, n, original, amount_minor)| {
                Op::Incremental {
                    card,
                    n,
                    original,
                    amount_minor,
                }
            }
        ),
        (0..CARDS, any::<bool>()).prop_map(|(card, active)| Op::SetCardStatus { card, active }),
        (0..CARDS, 1..30_000i64, 0..6u8).prop_map(|(card, amount_minor, interval)| Op::SetLimit {
            card,
            amount_minor,
            interval
        }),
        Just(Op::Expire),
        (0..4 * 86_400i64).prop_map(|s| Op::Wait { s }),
    ]
}

/// Builds the world; returns the commands (applied at T0) that did it.
fn setup() -> Vec<Command> {
    let mut cmds = Vec::new();
    for acct in 0..2u64 {
        let currency = Currency::from_numeric(840).expect("usd");
        cmds.push(Command::CreateAccount { currency });
        for holder in 0..2u64 {
            cmds.push(Command::CreateCardholder {
                account: authswitch::domain::AccountId::new(0, acct),
                name: format!("holder {acct}-{holder}"),
                status: CardholderStatus::Active,
                spending_controls: SpendingControls::default(),
            });
        }
    }
    for card in 0..CARDS as u64 {
        cmds.push(Command::CreateCard {
            cardholder: authswitch::domain::CardholderId::new(0, card / 2),
            pan_hash: [card as u8; 32],
            last4: *b"0004",
            exp_month: 1,
            exp_year: 2099,
            status: CardStatus::Active,
            spending_controls: SpendingControls::default(),
            replacement_for: None,
        });
    }
    cmds
}

fn card_id(i: usize) -> authswitch::domain::CardId {
    authswitch::domain::CardId::new(0, i as u64)
}

fn interval(i: u8) -> Interval {
    [
        Interval::PerAuthorization,
        Interval::Daily,
        Interval::Weekly,
        Interval::Monthly,
        Interval::Yearly,
        Interval::AllTime,
    ][usize::from(i % 6)]
}

fn kind(k: u8) -> AuthKind {
    match k {
        0 => AuthKind::AccountVerification,
        1 => AuthKind::BalanceInquiry,
        2 => AuthKind::CashWithdrawal,
        _ => AuthKind::Purchase,
    }
}

fn command(op: &Op) -> Option<Command> {
    Some(match op {
        Op::Fund {
            account,
            amount_minor,
        } => Command::Fund {
            account: authswitch::domain::AccountId::new(0, *account as u64),
            amount_minor: *amount_minor,
        },
        Op::Authorize {
            card,
            n,
            amount_minor,
            mcc,
            partial_ok,
            kind: k,
        } => {
            let mut r = purchase(card_id(*card), *n, *amount_minor);
            r.mcc = *mcc;
            r.partial_ok = *partial_ok;
            r.kind = kind(*k);
            r.content_hash = (*n as u64) << 32 | (*amount_minor as u64 & 0xffff_ffff);
            Command::Authorize(r)
        }
        Op::Incremental {
            card,
            n,
            original,
            amount_minor,
        } => {
            let mut r = purchase(card_id(*card), *n, *amount_minor);
            r.original = Some(key(*original));
            Command::Authorize(r)
        }
        Op::SetCardStatus { card, active } => Command::UpdateCard {
            card: card_id(*card),
            status: Some(if *active {
                CardStatus::Active
            } else {
                CardStatus::Inactive
            }),
            spending_controls: None,
        },
        Op::SetLimit {
            card,
            amount_minor,
            interval: i,
        } => Command::UpdateCard {
            card: card_id(*card),
            status: None,
            spending_controls: Some(SpendingControls {
                spending_limits: vec![SpendingLimit {
                    amount_minor: *amount_minor,
                    interval: interval(*i),
                    categories: vec![],
                }],
                ..Default::default()
            }),
        },
        Op::Expire => Command::ExpireHolds,
        Op::Wait { .. } => return None,
        _ => return lifecycle_command(op),
    })
}

fn lifecycle_command(op: &Op) -> Option<Command> {
    use authswitch::domain::{AuthorizationId, TransactionId};
    use authswitch::ledger::{MerchantData, ReversalRequest};
    Some(match op {
        Op::Advice {
            card,
            n,
            amount_minor,
        } => Command::Advice(purchase(card_id(*card), *n, *amount_minor)),
        Op::Reverse {
            card,
            n,
            original,
            replacement_minor,
        } => Command::Reverse(ReversalRequest {
            card: card_id(*card),
            key: if n % 3 == 0 { key(*original) } else { key(*n) },
            original: key(*original),
            replacement_amount_minor: *replacement_minor,
        }),
        Op::Capture {
            auth,
            amount_minor,
            close,
        } => Command::Capture {
            authorization: AuthorizationId::new(0, *auth),
            amount_minor: *amount_minor,
            close_authorization: *close,
        },
        Op::Refund { txn, amount_minor } => Command::Refund {
            transaction: TransactionId::new(0, *txn),
            amount_minor: *amount_minor,
        },
        Op::ForceCapture { card, amount_minor } => Command::ForceCapture {
            card: card_id(*card),
            amount_minor: *amount_minor,
            mcc: 4511,
            merchant: MerchantData::default(),
        },
        Op::Financial {
            card,
            n,
            amount_minor,
            refund,
        } => {
            let mut r = purchase(card_id(*card), *n, *amount_minor);
            if *refund {
                r.kind = AuthKind::Refund;
            }
            Command::Financial(r)
        }
        Op::SetWebhook { account, mode } => Command::SetAuthorizationWebhook {
            account: authswitch::domain::AccountId::new(0, *account as u64),
            webhook: (*mode > 0).then(|| WebhookConfig {
                url: "http://127.0.0.1:9/decide".into(),
                secret: "whsec_0123456789abcdef".into(),
                deadline_ms: 300,
                on_timeout: if *mode == 1 {
                    TimeoutDecision::Approve
                } else {
                    TimeoutDecision::Decline
                },
            }),
        },
        Op::PlatformDecision {
            auth,
            result,
            amount_minor,
        } => Command::PlatformDecision {
            authorization: authswitch::domain::AuthorizationId::new(0, *auth),
            result: match result {
                0 => PlatformResult::Approved { amount_minor: None },
                1 => PlatformResult::Approved {
                    amount_minor: Some(*amount_minor),
                },
                2 => PlatformResult::Declined,
                3 => PlatformResult::Timeout,
                _ => PlatformResult::Error,
            },
        },
        Op::AbandonAwaiting => Command::AbandonAwaitingPlatform,
        _ => return None,
    })
}

/// Applies every record, checking invariants after each; returns the final digest.
fn run(state: &mut ShardState, log: &[(i64, Command)]) -> [u8; 32] {
    for (now_s, cmd) in log {
        let before = state.digest();
        let out = apply(state, cmd, *now_s);
        if let Err(v) = state.check_invariants() {
            panic!("invariant broken after {cmd:?} -> {out:?}: {v}");
        }
        if !cmd.mutates() {
            assert_eq!(
                state.digest(),
                before,
                "a non-mutating command changed state"
            );
        }
        // Captures and refunds of random ids may name nothing or too much; nothing else may
        // be refused.
        let may_refuse = matches!(
            cmd,
            Command::Capture { .. } | Command::Refund { .. } | Command::PlatformDecision { .. }
        );
        assert!(
            may_refuse || !matches!(out, Outcome::Rejected(_)),
            "{cmd:?}: {out:?}"
        );
    }
    state.digest()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn invariants_and_replay(ops in prop::collection::vec(prop_oneof![3 => op(), 2 => lifecycle_op()], 1..150)) {
        let mut log: Vec<(i64, Command)> = setup().into_iter().map(|c| (T0_S, c)).collect();
        let mut now_s = T0_S;
        for op in &ops {
            if let Op::Wait { s } = op {
                now_s += s;
            }
            if let Some(cmd) = command(op) {
                log.push((now_s, cmd));
            }
        }
        let mut state = ShardState::new(0);
        let digest = run(&mut state, &log);

        let mut replayed = ShardState::new(0);
        prop_assert_eq!(run(&mut replayed, &log), digest);

        let half = log.len() / 2;
        let mut first = ShardState::new(0);
        run(&mut first, &log[..half]);
        let mut restored = ShardState::from_snapshot(&first.to_snapshot()).expect("snapshot loads");
        prop_assert_eq!(restored.digest(), first.digest());
        prop_assert_eq!(run(&mut restored, &log[half..]), digest);

        // The shallow copy a snapshot takes: the state goes on to the same end, the copy stays
        // as it was at the half, and its encoding restores and replays like any snapshot.
        let at_half = first.digest();
        let copy = first.share();
        prop_assert_eq!(run(&mut first, &log[half..]), digest);
        prop_assert_eq!(copy.digest(), at_half);
        let mut from_copy = ShardState::from_snapshot(&copy.to_snapshot()).expect("copy loads");
        prop_assert_eq!(run(&mut from_copy, &log[half..]), digest);

        // The running spend totals equal the ones rebuilt from the records: each card whose
        // last limit is daily or weekly (windows the records still cover: this world keeps
        // finished authorizations 7 days) has its limit removed and set again in a copy, and
        // a partial-approval probe for more than any limit gets the same room in both.
        for (card, limit) in last_limits(&ops) {
            let mut live = ShardState::from_snapshot(&state.to_snapshot()).expect("loads");
            let mut rebuilt = ShardState::from_snapshot(&state.to_snapshot()).expect("loads");
            for controls in [SpendingControls::default(), limit] {
                let cmd = Command::UpdateCard {
                    card: card_id(card),
                    status: None,
                    spending_controls: Some(controls),
                };
                apply(&mut rebuilt, &cmd, now_s);
            }
            let mut probe = purchase(card_id(card), 1_000_000, 100_000_000_000);
            probe.partial_ok = true;
            let probe = Command::Authorize(probe);
            let (a, b) = (apply(&mut live, &probe, now_s), apply(&mut rebuilt, &probe, now_s));
            prop_assert_eq!(a, b, "card {}: live and rebuilt totals differ", card);
        }
    }
}

/// Each card's last limit, where it is over a window shorter than the retention of
/// finished authorizations (`ProgramConfig::default`: 7 days), which the records cover.
fn last_limits(ops: &[Op]) -> Vec<(usize, SpendingControls)> {
    let mut last = vec![None; CARDS];
    for op in ops {
        if let Some(Command::UpdateCard {
            card,
            spending_controls: Some(controls),
            ..
        }) = command(op)
        {
            let windowed = controls
                .spending_limits
                .iter()
                .all(|l| matches!(l.interval, Interval::Daily | Interval::Weekly));
            last[card.seq() as usize] = Some(controls).filter(|_| windowed);
        }
    }
    last.into_iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c?)))
        .collect()
}

/// One card's spend-changing messages, for `spend_totals_match_the_records`.
#[derive(Clone, Debug)]
enum SpendOp {
    Authorize {
        n: u32,
        amount_minor: i64,
        restaurant: bool,
        partial_ok: bool,
    },
    Incremental {
        n: u32,
        original: u32,
        amount_minor: i64,
    },
    Advice {
        n: u32,
        amount_minor: i64,
    },
    Reverse {
        n: u32,
        original: u32,
        replacement_minor: Option<i64>,
    },
    Expire,
    Wait {
        s: i64,
    },
}

fn spend_op() -> impl Strategy<Value = SpendOp> {
    prop_oneof![
        4 => (0..20u32, 1..3_000i64, any::<bool>(), any::<bool>()).prop_map(
            |(n, amount_minor, restaurant, partial_ok)| SpendOp::Authorize {
                n,
                amount_minor,
                restaurant,
                partial_ok,
            }
        ),
        3 => (20..40u32, 0..20u32, 1..2_000i64).prop_map(|(n, original, amount_minor)| {
            SpendOp::Incremental { n, original, amount_minor }
        }),
        2 => (0..40u32, 1..3_000i64).prop_map(|(n, amount_minor)| SpendOp::Advice {
            n,
            amount_minor
        }),
        2 => (40..60u32, 0..40u32, prop::option::of(1..2_000i64)).prop_map(
            |(n, original, replacement_minor)| SpendOp::Reverse {
                n,
                original,
                replacement_minor,
            }
        ),
        1 => Just(SpendOp::Expire),
        2 => (0..2 * 86_400i64).prop_map(|s| SpendOp::Wait { s }),
    ]
}

fn spend_command(card: authswitch::domain::CardId, op: &SpendOp) -> Option<Command> {
    use authswitch::ledger::ReversalRequest;
    Some(match *op {
        SpendOp::Authorize {
            n,
            amount_minor,
            restaurant,
            partial_ok,
        } => {
            let mut r = purchase(card, n, amount_minor);
            r.mcc = if restaurant { 5812 } else { 5411 };
            r.partial_ok = partial_ok;
            Command::Authorize(r)
        }
        SpendOp::Incremental {
            n,
            original,
            amount_minor,
        } => {
            let mut r = purchase(card, n, amount_minor);
            r.original = Some(key(original));
            Command::Authorize(r)
        }
        SpendOp::Advice { n, amount_minor } => {
            let mut r = purchase(card, n, amount_minor);
            r.content_hash = u64::from(n) << 32 | amount_minor as u64;
            Command::Advice(r)
        }
        SpendOp::Reverse {
            n,
            original,
            replacement_minor,
        } => Command::Reverse(ReversalRequest {
            card,
            key: key(n),
            original: key(original),
            replacement_amount_minor: replacement_minor,
        }),
        SpendOp::Expire => Command::ExpireHolds,
        SpendOp::Wait { .. } => return None,
    })
}

/// What a partial-approval probe for more than any limit gets in a copy of `state`: the
/// room its limits leave, as counted (`rebuild` false) or rebuilt from the records after the
/// limits are removed and set again.
fn probe_room(
    state: &ShardState,
    card: authswitch::domain::CardId,
    limits: &SpendingControls,
    now_s: i64,
    rebuild: bool,
) -> Outcome {
    let mut copy = ShardState::from_snapshot(&state.to_snapshot()).expect("loads");
    if rebuild {
        for controls in [SpendingControls::default(), limits.clone()] {
            let cmd = Command::UpdateCard {
                card,
                status: None,
                spending_controls: Some(controls),
            };
            apply(&mut copy, &cmd, now_s);
        }
    }
    let mut probe = purchase(card, 1_000_000, 100_000_000_000);
    probe.partial_ok = true;
    apply(&mut copy, &Command::Authorize(probe), now_s)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// One card with a daily limit, a weekly one and a daily one on restaurants: after every
    /// message (authorizations, incrementals, advices of either, reversals, expiry, across
    /// days), the totals the shard keeps leave the same room as totals rebuilt from the
    /// records, as a limit set anew gets.
    #[test]
    fn spend_totals_match_the_records(ops in prop::collection::vec(spend_op(), 1..60)) {
        use authswitch::ledger::testkit::Fixture;
        let mut f = Fixture::new(1_000_000);
        let limit = |amount_minor, interval, categories| SpendingLimit {
            amount_minor,
            interval,
            categories,
        };
        let limits = SpendingControls {
            spending_limits: vec![
                limit(6_000, Interval::Daily, vec![]),
                limit(15_000, Interval::Weekly, vec![]),
                limit(2_500, Interval::Daily, vec![5812]),
            ],
            ..Default::default()
        };
        let set = Command::UpdateCard {
            card: f.card,
            status: None,
            spending_controls: Some(limits.clone()),
        };
        apply(&mut f.state, &set, T0_S);
        let mut now_s = T0_S;
        for op in &ops {
            if let SpendOp::Wait { s } = op {
                now_s += s;
            }
            let Some(cmd) = spend_command(f.card, op) else { continue };
            apply(&mut f.state, &cmd, now_s);
            f.state.check_invariants().expect("invariants hold");
            let live = probe_room(&f.state, f.card, &limits, now_s, false);
            let rebuilt = probe_room(&f.state, f.card, &limits, now_s, true);
            prop_assert_eq!(live, rebuilt, "after {:?}", op);
        }
    }
}
