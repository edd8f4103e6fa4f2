//! The authorization decision: card, cardholder and account status, expiry, currency,
//! spending controls, spending limits and funds, in that order; then the hold and the
//! authorization record. Also duplicates (same key) and incremental authorizations.

use super::command::{AuthKind, AuthOutcome, AuthRequest, TxnKey};
use super::keymap::Vacant;
use super::records::{AuthStatus, Authorization, KeyEntry, RequestEntry, RequestKind};
use super::state::ShardState;
use crate::domain::calendar::month_start_s;
use crate::domain::controls::{ControlViolation, SpendingLimit};
use crate::domain::currency::AMOUNT_MINOR_MAX;
use crate::domain::usage::headroom_minor;
use crate::domain::{
    AccountStatus, AuthorizationId, CardStatus, CardholderStatus, Currency, DeclineReason,
    ResponseCode,
};

/// What the checks decided for one message, before anything is changed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decision {
    /// Requested, in account currency (0 when the request could not be converted).
    pub amount_minor: i64,
    pub approved_minor: i64,
    pub approved_merchant_minor: i64,
    pub code: ResponseCode,
    pub reason: Option<DeclineReason>,
}

impl Decision {
    pub(crate) fn declined(amount_minor: i64, reason: DeclineReason) -> Self {
        Self {
            amount_minor,
            approved_minor: 0,
            approved_merchant_minor: 0,
            code: reason.response_code(),
            reason: Some(reason),
        }
    }

    pub(crate) fn approved(&self) -> bool {
        self.code.is_approval()
    }
}

/// Whether an approved request of this kind holds funds.
pub(crate) fn kind_holds(kind: AuthKind) -> bool {
    matches!(kind, AuthKind::Purchase | AuthKind::CashWithdrawal)
}

/// Start of the month after the card's expiry month: the card is expired from then on.
fn expiry_end_s(exp_year: u16, exp_month: u8) -> i64 {
    let (y, m) = if exp_month >= 12 {
        (i64::from(exp_year) + 1, 1)
    } else {
        (i64::from(exp_year), u32::from(exp_month) + 1)
    };
    month_start_s(y, m)
}

pub(crate) fn check_amount(req: &AuthRequest) -> Result<(), DeclineReason> {
    let ok = |a: i64| match req.kind {
        AuthKind::AccountVerification => a == 0,
        _ => a > 0 && a <= AMOUNT_MINOR_MAX,
    };
    if !ok(req.amount_minor) || req.billing_amount_minor.is_some_and(|a| !ok(a)) {
        return Err(DeclineReason::InvalidAmount);
    }
    Ok(())
}

/// The request's amount in the account currency: DE4 when DE49 is the account currency,
/// DE6 when DE51 is, else a currency mismatch.
/// `AuthRequest::currency` of a request without DE49.
pub const CURRENCY_ABSENT: u16 = 0;
/// `AuthRequest::currency` (or `billing_currency`) of a field that was present but names no
/// ISO 4217 currency the switch knows by that form (an unknown alphabetic code, a mix of
/// characters, `000`). Not a three-digit code, so never an account's currency: the request is
/// answered as one in a currency the account is not in (13 unless DE6/DE51 is).
pub const CURRENCY_UNREADABLE: u16 = u16::MAX;

pub(crate) fn account_amount(req: &AuthRequest, currency: Currency) -> Result<i64, DeclineReason> {
    // 0: the request carried no DE49, which the dialect reads as the account's currency
    // (harnesses send sparse messages).
    if req.currency == currency.numeric() || req.currency == CURRENCY_ABSENT {
        return Ok(req.amount_minor);
    }
    match (req.billing_currency, req.billing_amount_minor) {
        (Some(c), Some(a)) if c == currency.numeric() => Ok(a),
        _ => Err(DeclineReason::CurrencyMismatch),
    }
}

/// Merchant-currency part of an approved account-currency amount (rounded down).
fn merchant_part(req: &AuthRequest, amount_minor: i64, approved_minor: i64) -> i64 {
    if approved_minor == amount_minor || amount_minor == 0 {
        return req.amount_minor;
    }
    let part = i128::from(req.amount_minor) * i128::from(approved_minor) / i128::from(amount_minor);
    i64::try_from(part).expect("part of an i64 amount fits")
}

fn violation_reason(v: ControlViolation) -> DeclineReason {
    match v {
        ControlViolation::Category => DeclineReason::SpendingControlsCategory,
        ControlViolation::Country => DeclineReason::SpendingControlsCountry,
        ControlViolation::Presence => DeclineReason::SpendingControlsPresence,
    }
}

/// The answer when the shard holds as many authorizations as it may: 91, nothing recorded.
pub(crate) fn shard_full(currency: Currency, available_minor: i64) -> AuthOutcome {
    let mut out = unrecorded(
        DeclineReason::UnsupportedTransaction,
        Some(currency),
        available_minor,
    );
    out.code = ResponseCode::SYSTEM_UNAVAILABLE;
    out.reason = None;
    out
}

/// An answer that is not recorded (unknown card, overload, mismatched duplicate).
pub(crate) fn unrecorded(
    reason: DeclineReason,
    currency: Option<Currency>,
    available: i64,
) -> AuthOutcome {
    AuthOutcome {
        authorization: None,
        code: reason.response_code(),
        reason: Some(reason),
        approved_amount_minor: 0,
        approved_merchant_amount_minor: 0,
        available_minor: available,
        currency,
        duplicate: false,
    }
}

impl ShardState {
    /// Decides and applies one authorization request.
    pub(crate) fn authorize(&mut self, req: &AuthRequest, now_s: i64) -> AuthOutcome {
        match req.original {
            Some(orig) => {
                let (ci, ai) = match self.preamble(req, now_s) {
                    Ok(found) => found,
                    Err(answer) => return answer,
                };
                self.incremental(ci, ai, req, orig, now_s)
            }
            None => {
                let (ai, d, vacant) = match self.decide_new(req, now_s) {
                    Ok(decided) => decided,
                    Err(answer) => return answer,
                };
                let out = self.record_new(ai, req, &d, vacant, RequestKind::Authorization, now_s);
                self.apply_early_reversal(req, &out, now_s);
                out
            }
        }
    }

    /// What every new request goes through first: `card_of`, then `admit`.
    pub(crate) fn preamble(
        &self,
        req: &AuthRequest,
        now_s: i64,
    ) -> Result<(usize, usize), AuthOutcome> {
        let (ci, ai) = self.card_of(req, now_s)?;
        self.admit(ai, req)?;
        Ok((ci, ai))
    }

    /// The answers of `preamble` and the decision of a request that makes a new record (an
    /// authorization, a 0200), in another order of work: the key-index slot is fetched first
    /// and the decision, which changes nothing, computed while it arrives, so the lookup's
    /// cache miss overlaps the decision instead of stalling before it. A balance inquiry's
    /// answer, a duplicate or a full shard still wins over the decision.
    pub(crate) fn decide_new(
        &self,
        req: &AuthRequest,
        now_s: i64,
    ) -> Result<(usize, Decision, Vacant), AuthOutcome> {
        self.keys.warm(&req.key);
        let (ci, ai) = self.card_of(req, now_s)?;
        let d = self.evaluate(ci, ai, req, now_s, false);
        let vacant = self.admit(ai, req)?;
        Ok((ai, d, vacant))
    }

    /// The card (14 if unknown) and its account's index; balance inquiries are answered here.
    fn card_of(&self, req: &AuthRequest, now_s: i64) -> Result<(usize, usize), AuthOutcome> {
        let Some(ci) = self.card_index(req.card) else {
            return Err(unrecorded(DeclineReason::UnknownCard, None, 0));
        };
        let ai = self.card_account(ci);
        if req.kind == AuthKind::BalanceInquiry {
            return Err(self.balance_inquiry(ci, ai, req, now_s));
        }
        Ok((ci, ai))
    }

    /// Duplicates of a seen key (their first answer, or 94), and room for a new record (91).
    /// A new key's place in the key index comes back for the record that follows.
    fn admit(&self, ai: usize, req: &AuthRequest) -> Result<Vacant, AuthOutcome> {
        let vacant = match self.keys.get_or_vacant(&req.key) {
            Ok(e) => return Err(self.duplicate_outcome(*e, req.content_hash, ai)),
            Err(vacant) => vacant,
        };
        if !self.auth_room() || !self.txn_room() {
            let a = &self.accounts[ai];
            return Err(shard_full(a.currency, a.available_minor));
        }
        Ok(vacant)
    }

    /// Card, cardholder and account checks shared by every request kind.
    pub(crate) fn check_card(
        &self,
        ci: usize,
        ai: usize,
        req: &AuthRequest,
        now_s: i64,
    ) -> Result<(), DeclineReason> {
        let card = &self.cards[ci];
        match card.status {
            CardStatus::Active => {}
            CardStatus::Inactive => return Err(DeclineReason::CardInactive),
            CardStatus::Canceled => return Err(DeclineReason::CardCanceled),
            CardStatus::Lost => return Err(DeclineReason::CardLost),
            CardStatus::Stolen => return Err(DeclineReason::CardStolen),
        }
        if now_s >= expiry_end_s(card.exp_year, card.exp_month) {
            return Err(DeclineReason::CardExpired);
        }
        if let Some((yy, mm)) = req.expiry_presented {
            if u16::from(yy) != card.exp_year % 100 || mm != card.exp_month {
                return Err(DeclineReason::ExpiryMismatch);
            }
        }
        match self.cardholders[card.cardholder.seq() as usize].status {
            CardholderStatus::Active => {}
            CardholderStatus::Inactive => return Err(DeclineReason::CardholderInactive),
            CardholderStatus::Blocked => return Err(DeclineReason::CardholderBlocked),
        }
        if self.accounts[ai].status == AccountStatus::Disabled {
            return Err(DeclineReason::AccountDisabled);
        }
        Ok(())
    }

    fn check_static_controls(&self, ci: usize, req: &AuthRequest) -> Result<(), DeclineReason> {
        let card = &self.cards[ci];
        let holder = &self.cardholders[card.cardholder.seq() as usize];
        for c in [&card.controls, &holder.controls].into_iter().flatten() {
            c.check_static(req.mcc, req.merchant_country, req.presence)
                .map_err(violation_reason)?;
        }
        Ok(())
    }

    /// How much more the card may spend in `mcc` now under card (or program) and
    /// cardholder limits.
    pub(crate) fn limit_headroom(&self, ci: usize, mcc: u16, now_s: i64) -> i64 {
        let card = &self.cards[ci];
        let ri = card.usage_root.seq() as usize;
        let usage = self.cards[ri].usage.as_deref();
        let spent = |l: &SpendingLimit, from_s| self.lineage_spent(ri, l, from_s);
        let mut room = headroom_minor(self.card_limits(ci), usage, mcc, now_s, &spent);
        let chi = card.cardholder.seq() as usize;
        let limits = self.cardholder_limits(chi);
        if !limits.is_empty() {
            let spent = |l: &SpendingLimit, from_s| self.cardholder_spent(chi, l, from_s);
            let usage = self.cardholders[chi].usage.as_deref();
            room = room.min(headroom_minor(limits, usage, mcc, now_s, &spent));
        }
        room
    }

    /// Runs every check for `req`. `advice` skips limits and funds (the network already
    /// approved it in stand-in).
    pub(crate) fn evaluate(
        &self,
        ci: usize,
        ai: usize,
        req: &AuthRequest,
        now_s: i64,
        advice: bool,
    ) -> Decision {
        if let Err(r) = check_amount(req) {
            return Decision::declined(0, r);
        }
        let amount = match account_amount(req, self.accounts[ai].currency) {
            Ok(a) => a,
            Err(r) => return Decision::declined(0, r),
        };
        let full = Decision {
            amount_minor: amount,
            approved_minor: amount,
            approved_merchant_minor: req.amount_minor,
            code: ResponseCode::APPROVED,
            reason: None,
        };
        if let Err(r) = self.check_card(ci, ai, req, now_s) {
            return Decision::declined(amount, r);
        }
        if !kind_holds(req.kind) || advice {
            return full;
        }
        if let Err(r) = self.check_static_controls(ci, req) {
            return Decision::declined(amount, r);
        }
        let limit_room = self.limit_headroom(ci, req.mcc, now_s);
        let funds_room = self.accounts[ai].available_minor.max(0);
        let room = limit_room.min(funds_room);
        if amount <= room {
            return full;
        }
        if req.partial_ok && room > 0 {
            return Decision {
                approved_minor: room,
                approved_merchant_minor: merchant_part(req, amount, room),
                code: ResponseCode::PARTIAL,
                ..full
            };
        }
        let reason = if limit_room < amount {
            DeclineReason::SpendingLimit
        } else {
            DeclineReason::InsufficientFunds
        };
        Decision::declined(amount, reason)
    }

    /// Records a new authorization (approved or declined) and places its hold.
    pub(crate) fn record_new(
        &mut self,
        ai: usize,
        req: &AuthRequest,
        d: &Decision,
        vacant: Vacant,
        kind: RequestKind,
        now_s: i64,
    ) -> AuthOutcome {
        let seq = self.next_auth_seq();
        let id = AuthorizationId::new(self.shard, seq);
        let hold = if d.approved() && kind_holds(req.kind) {
            d.approved_minor
        } else {
            0
        };
        let pending = d.approved() && (hold > 0 || req.kind == AuthKind::Refund);
        let entry = RequestEntry {
            kind,
            key: req.key,
            amount_minor: d.amount_minor,
            approved_minor: d.approved_minor,
            approved_merchant_minor: d.approved_merchant_minor,
            code: d.code,
            reason: d.reason,
            created_s: now_s,
        };
        self.push_auth(Authorization {
            id,
            card: req.card,
            kind: req.kind,
            status: if pending {
                AuthStatus::Pending
            } else {
                AuthStatus::Closed
            },
            approved: d.approved(),
            mcc: req.mcc,
            merchant_currency: req.currency,
            created_s: now_s,
            updated_s: now_s,
            // What was approved, in both currencies (a partial approval's reversal scales a
            // replacement amount by their ratio); what was asked when declined.
            merchant_amount_minor: if d.approved() {
                d.approved_merchant_minor
            } else {
                req.amount_minor
            },
            amount_minor: d.approved_minor,
            held_minor: hold,
            captured_minor: 0,
            // What `count_new_usage` below counts for it.
            counted_minor: hold,
            back_in_lineage: 0,
            back_of_cardholder: 0,
            merchant: req.merchant,
            first: entry,
            more: Vec::new(),
            history_dropped: 0,
            transactions: Box::default(),
        });
        let key = KeyEntry::new(seq, 0, req.content_hash);
        self.keys.insert_vacant(vacant, key);
        if hold > 0 {
            self.place_hold(ai, hold);
            let ci = self
                .card_index(req.card)
                .expect("authorization of a missing card");
            self.count_new_usage(ci, req.mcc, hold, (now_s, now_s));
        }
        self.answer(id, &entry, ai, false)
    }

    /// The answer for history entry `entry` of authorization `seq`.
    pub(crate) fn outcome_of(
        &self,
        seq: u64,
        entry: u16,
        ai: usize,
        duplicate: bool,
    ) -> AuthOutcome {
        let auth = self.auth(seq).expect("outcome of a missing authorization");
        let e = auth
            .entry(entry)
            .expect("outcome of a missing history entry");
        self.answer(auth.id, e, ai, duplicate)
    }

    /// The answer for history entry `e` of authorization `id`, on account `ai`.
    fn answer(
        &self,
        id: AuthorizationId,
        e: &RequestEntry,
        ai: usize,
        duplicate: bool,
    ) -> AuthOutcome {
        let account = &self.accounts[ai];
        AuthOutcome {
            authorization: Some(id),
            code: e.code,
            reason: e.reason,
            approved_amount_minor: e.approved_minor,
            approved_merchant_amount_minor: e.approved_merchant_minor,
            available_minor: account.available_minor,
            currency: Some(account.currency),
            duplicate,
        }
    }

    /// A message whose key was seen: the original answer again if the content is the same,
    /// 94 if it is not. Nothing changes either way.
    fn duplicate_outcome(&self, e: KeyEntry, content_hash: u64, ai: usize) -> AuthOutcome {
        if e.content_hash() != content_hash {
            let a = &self.accounts[ai];
            return unrecorded(
                DeclineReason::DuplicateMismatch,
                Some(a.currency),
                a.available_minor,
            );
        }
        self.outcome_of(e.auth_seq(), e.entry(), ai, true)
    }

    /// Balance inquiry: card checks only; answers the available balance, records nothing.
    fn balance_inquiry(&self, ci: usize, ai: usize, req: &AuthRequest, now_s: i64) -> AuthOutcome {
        let a = &self.accounts[ai];
        let reason = self.check_card(ci, ai, req, now_s).err();
        AuthOutcome {
            authorization: None,
            code: reason.map_or(ResponseCode::APPROVED, DeclineReason::response_code),
            reason,
            approved_amount_minor: 0,
            approved_merchant_amount_minor: 0,
            available_minor: a.available_minor,
            currency: Some(a.currency),
            duplicate: false,
        }
    }

    /// An incremental authorization: `req.amount_minor` more on the pending authorization
    /// whose key is `orig`. Declined without touching the original; an unknown, closed or
    /// foreign original, or one of another kind (a refund-coded message cannot raise a
    /// purchase: refunds skip the funds check), is declined unrecorded (12).
    ///
    /// The increment is decided as part of the original: against the limits and category
    /// controls of the original's MCC, under which it is counted, whatever DE18 it carries.
    fn incremental(
        &mut self,
        ci: usize,
        ai: usize,
        req: &AuthRequest,
        orig: TxnKey,
        now_s: i64,
    ) -> AuthOutcome {
        let target = self.keys.get(&orig).map(|e| e.auth_seq()).filter(|&s| {
            self.auth(s).is_some_and(|a| {
                a.card == req.card
                    && a.status == AuthStatus::Pending
                    && kind_holds(a.kind)
                    && a.kind == req.kind
                    && !a.history_full()
            })
        });
        let Some(seq) = target else {
            let a = &self.accounts[ai];
            let reason = DeclineReason::UnsupportedTransaction;
            return unrecorded(reason, Some(a.currency), a.available_minor);
        };
        let original_mcc = self.auth(seq).expect("target checked above").mcc;
        let d = if req.mcc == original_mcc {
            self.evaluate(ci, ai, req, now_s, false)
        } else {
            let as_original = AuthRequest {
                mcc: original_mcc,
                ..req.clone()
            };
            self.evaluate(ci, ai, &as_original, now_s, false)
        };
        assert!(kind_holds(req.kind), "an incremental holds funds");
        let entry = RequestEntry {
            kind: RequestKind::Incremental,
            key: req.key,
            amount_minor: d.amount_minor,
            approved_minor: d.approved_minor,
            approved_merchant_minor: d.approved_merchant_minor,
            code: d.code,
            reason: d.reason,
            created_s: now_s,
        };
        let auth = self.auth_mut(seq).expect("target checked above");
        let idx = auth.push_entry(entry).expect("history room checked above");
        auth.updated_s = now_s;
        if d.approved() {
            auth.amount_minor += d.approved_minor;
            auth.held_minor += d.approved_minor;
            auth.merchant_amount_minor += d.approved_merchant_minor;
            self.place_hold(ai, d.approved_minor);
            self.count_usage(seq, d.approved_minor, now_s);
        }
        let key = KeyEntry::new(seq, idx, req.content_hash);
        self.keys.insert(req.key, key);
        self.outcome_of(seq, idx, ai, false)
    }
}
