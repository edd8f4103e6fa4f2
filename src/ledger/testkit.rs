//! Builders for tests and benchmarks: a funded account with a cardholder and a card, and
//! authorization requests with sensible defaults. Not used by the switch itself.

use super::command::{AuthKind, AuthRequest, Command, MerchantData, Outcome, TxnKey};
use super::state::{apply, ShardState};
use crate::domain::controls::{Interval, Presence, SpendingControls, SpendingLimit};
use crate::domain::{AccountId, CardId, CardStatus, CardholderId, CardholderStatus, Currency};

/// 2024-03-15 12:00:00 UTC, a Friday.
pub const T0_S: i64 = 1_710_504_000;
/// ISO 4217 numeric code of the US dollar.
pub const USD: u16 = 840;

/// One account, one cardholder, one card (usd, expiring 12/2030).
pub struct Fixture {
    pub state: ShardState,
    pub account: AccountId,
    pub cardholder: CardholderId,
    pub card: CardId,
}

/// Applies an admin command and returns its outcome, panicking on a rejection (tests only).
pub fn admin(state: &mut ShardState, cmd: Command, now_s: i64) -> Outcome {
    let out = apply(state, &cmd, now_s);
    assert!(!matches!(out, Outcome::Rejected(_)), "rejected: {out:?}");
    out
}

impl Fixture {
    /// A shard with a usd account funded with `funded_minor` (none if 0).
    pub fn new(funded_minor: i64) -> Self {
        let mut state = ShardState::new(1);
        let usd = Currency::from_numeric(USD).expect("usd");
        let Outcome::AccountCreated(account) =
            admin(&mut state, Command::CreateAccount { currency: usd }, T0_S)
        else {
            panic!("account not created")
        };
        if funded_minor > 0 {
            admin(
                &mut state,
                Command::Fund {
                    account,
                    amount_minor: funded_minor,
                },
                T0_S,
            );
        }
        let cmd = Command::CreateCardholder {
            account,
            name: "Jenny Rosen".into(),
            status: CardholderStatus::Active,
            spending_controls: SpendingControls::default(),
        };
        let Outcome::CardholderCreated(cardholder) = admin(&mut state, cmd, T0_S) else {
            panic!("cardholder not created")
        };
        let mut f = Self {
            state,
            account,
            cardholder,
            card: CardId(0),
        };
        f.card = f.add_card(SpendingControls::default(), None);
        f
    }

    /// Adds an active card (12/2030) to the cardholder.
    pub fn add_card(
        &mut self,
        controls: SpendingControls,
        replacement_for: Option<CardId>,
    ) -> CardId {
        let cmd = Command::CreateCard {
            cardholder: self.cardholder,
            pan_hash: [self.state_cards_len() as u8; 32],
            last4: *b"4242",
            exp_month: 12,
            exp_year: 2030,
            status: CardStatus::Active,
            spending_controls: controls,
            replacement_for,
        };
        match admin(&mut self.state, cmd, T0_S) {
            Outcome::CardCreated(id) => id,
            other => panic!("card not created: {other:?}"),
        }
    }

    fn state_cards_len(&self) -> usize {
        self.state.cards_for_index().count()
    }
}

/// The decision benchmarks' controls: daily, weekly and monthly limits far above what they
/// spend on the fixture's card, and a blocked category (7995) on its cardholder, so that a
/// purchase goes through every check and counts against three limits.
pub fn three_limits(f: &mut Fixture) {
    let limit = |interval| SpendingLimit {
        amount_minor: 900_000_000_000,
        interval,
        categories: vec![],
    };
    let card = SpendingControls {
        spending_limits: vec![
            limit(Interval::Daily),
            limit(Interval::Weekly),
            limit(Interval::Monthly),
        ],
        ..Default::default()
    };
    let cmd = Command::UpdateCard {
        card: f.card,
        status: None,
        spending_controls: Some(card),
    };
    admin(&mut f.state, cmd, T0_S);
    let holder = SpendingControls {
        blocked_categories: vec![7995],
        ..Default::default()
    };
    let cmd = Command::UpdateCardholder {
        cardholder: f.cardholder,
        name: None,
        status: None,
        spending_controls: Some(holder),
    };
    admin(&mut f.state, cmd, T0_S);
}

/// Gives an authorization command the key numbered `n` (its first 8 bytes), for loops of
/// millions of distinct keys without deriving each.
pub fn set_key_number(cmd: &mut Command, n: u64) {
    if let Command::Authorize(req) = cmd {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&n.to_le_bytes());
        req.key = TxnKey(k);
    }
}

/// Applies an authorization at `T0_S` that must be approved, out of the optimizer's sight
/// (benchmarks: the loop's work is not discarded).
pub fn apply_approved(f: &mut Fixture, cmd: &Command) {
    let out = apply(&mut f.state, std::hint::black_box(cmd), T0_S);
    assert!(matches!(out, Outcome::Authorization(ref a) if a.code.is_approval()));
    std::hint::black_box(out);
}

/// A usd purchase of `amount_minor` on `card`, key derived from `n`.
pub fn purchase(card: CardId, n: u32, amount_minor: i64) -> AuthRequest {
    AuthRequest {
        card,
        key: key(n),
        content_hash: u64::from(n),
        kind: AuthKind::Purchase,
        amount_minor,
        currency: USD,
        billing_amount_minor: None,
        billing_currency: None,
        mcc: 5411,
        merchant_country: Some(*b"US"),
        presence: Presence::Present,
        partial_ok: false,
        expiry_presented: None,
        original: None,
        merchant: MerchantData::new(
            b"CORNER GROCERY",
            b"SPRINGFIELD",
            b"US",
            b"TERM0001",
            b"MID000000000001",
        ),
        stan: n,
        rrn: *b"000000000001",
    }
}

/// An incremental authorization `n` of `amount_minor` more on the authorization of key
/// number `original` (DE90), otherwise like `purchase`.
pub fn incremental(card: CardId, n: u32, original: u32, amount_minor: i64) -> AuthRequest {
    AuthRequest {
        original: Some(key(original)),
        ..purchase(card, n, amount_minor)
    }
}

/// Transaction key number `n` (acquirer 123456, STAN n, fixed transmission time).
pub fn key(n: u32) -> TxnKey {
    TxnKey::derive(b"123456", n, b"0315120000")
}
