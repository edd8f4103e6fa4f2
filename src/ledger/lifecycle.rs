//! The rest of an authorization's life (issue 5): stand-in advices, reversals (including
//! ones that arrive before their original), financial requests, captures (partial, multiple,
//! over-capture), refunds and force captures.
//!
//! None of these is declined by spending controls or card status: the money has moved at
//! the network already, so the ledger records it, even below zero (flagged as overdrawn).

use super::authorize::{
    account_amount, check_amount, kind_holds, shard_full, unrecorded, Decision,
};
use super::command::ReversalRequest;
use super::command::{AuthKind, AuthOutcome, AuthRequest, CommandError, MerchantData, Outcome};
use super::records::{
    AuthStatus, EarlyReversal, KeyEntry, RequestEntry, RequestKind, Transaction, TransactionKind,
    AUTH_TRANSACTIONS_MAX,
};
use super::state::{ShardState, EARLY_REVERSALS_MAX, KEYS_MAX};
use crate::domain::currency::AMOUNT_MINOR_MAX;
use crate::domain::{AuthorizationId, CardId, DeclineReason, ResponseCode, TransactionId};

fn entry(
    kind: RequestKind,
    req_key: super::command::TxnKey,
    amount_minor: i64,
    now_s: i64,
) -> RequestEntry {
    RequestEntry {
        kind,
        key: req_key,
        amount_minor,
        approved_minor: amount_minor,
        approved_merchant_minor: amount_minor,
        code: ResponseCode::APPROVED,
        reason: None,
        created_s: now_s,
    }
}

fn check_capture_amount(amount_minor: i64) -> Result<(), CommandError> {
    if amount_minor <= 0 || amount_minor > AMOUNT_MINOR_MAX {
        return Err(CommandError::Invalid {
            param: "amount",
            reason: "must be between 1 and 999999999999",
        });
    }
    Ok(())
}

impl ShardState {
    /// 0120: records the network's stand-in approval. A new key creates an approved
    /// authorization holding the amount even beyond available; a known key brings that
    /// authorization (approved or declined) in line with the advised amount.
    pub(crate) fn advice(&mut self, req: &AuthRequest, now_s: i64) -> AuthOutcome {
        let Some(ci) = self.card_index(req.card) else {
            return unrecorded(DeclineReason::UnknownCard, None, 0);
        };
        let ai = self.card_account(ci);
        let (currency, available) = (
            self.accounts[ai].currency,
            self.accounts[ai].available_minor,
        );
        let amount = match check_amount(req).and_then(|()| account_amount(req, currency)) {
            Ok(a) => a,
            Err(r) => return unrecorded(r, Some(currency), available),
        };
        // An advice may overdraw, but never so far that the balance arithmetic overflows.
        if available.checked_sub(amount).is_none() {
            return unrecorded(DeclineReason::InvalidAmount, Some(currency), available);
        }
        let vacant = match self.keys.get_or_vacant(&req.key) {
            Ok(e) => return self.advise_existing(*e, ai, req, amount, now_s),
            Err(vacant) => vacant,
        };
        if !self.auth_room() {
            return shard_full(currency, available);
        }
        let d = Decision {
            amount_minor: amount,
            approved_minor: amount,
            approved_merchant_minor: req.amount_minor,
            code: ResponseCode::APPROVED,
            reason: None,
        };
        let out = self.record_new(ai, req, &d, vacant, RequestKind::Advice, now_s);
        self.mark_overdrawn(ai);
        self.apply_early_reversal(req, &out, now_s);
        out
    }

    /// An advice whose key names a message already recorded (`known`): the network stood in
    /// for that message, so the authorization becomes what it was with that message's
    /// approval replaced by the advised amount. The key names the first message or an
    /// incremental, and only that message's part changes: an advice of an incremental does
    /// not undo the first message, and one of the first message does not undo the
    /// incrementals since. The key then names the advice, so its retransmission (0121)
    /// changes nothing.
    fn advise_existing(
        &mut self,
        known: KeyEntry,
        ai: usize,
        req: &AuthRequest,
        amount: i64,
        now_s: i64,
    ) -> AuthOutcome {
        let seq = known.auth_seq();
        let a = self.auth(seq).expect("key points to an authorization");
        let acct = &self.accounts[ai];
        let refuse = |reason| unrecorded(reason, Some(acct.currency), acct.available_minor);
        if a.card != req.card {
            return refuse(DeclineReason::DuplicateMismatch);
        }
        let Some(&advised) = a.entry(known.entry()) else {
            // Only a key of a dropped history entry (there are none: every key is set to
            // an entry that was stored) would land here.
            return refuse(DeclineReason::DuplicateMismatch);
        };
        let repeat = advised.kind == RequestKind::Advice && advised.amount_minor == amount;
        if repeat || a.history_full() {
            // A retransmission; or no room left to record the change (32 messages on one
            // authorization), which the ledger never makes unrecorded.
            return self.outcome_of(seq, known.entry(), ai, false);
        }
        let adjustable = kind_holds(a.kind)
            && (a.status == AuthStatus::Pending || (a.status == AuthStatus::Closed && !a.approved));
        if adjustable {
            let (base, merchant_base) = if a.approved {
                (a.amount_minor, a.merchant_amount_minor)
            } else {
                (0, 0)
            };
            let total = (base - advised.approved_minor).max(0).checked_add(amount);
            let Some(total) = total else {
                return refuse(DeclineReason::InvalidAmount);
            };
            let merchant_total = (merchant_base - advised.approved_merchant_minor)
                .max(0)
                .saturating_add(req.amount_minor);
            self.adjust_to(seq, ai, total, merchant_total, now_s);
        }
        let mut e = entry(RequestKind::Advice, req.key, amount, now_s);
        e.approved_merchant_minor = req.amount_minor;
        let a = self.auth_mut(seq).expect("checked");
        a.updated_s = now_s;
        let idx = a.push_entry(e).expect("room checked above");
        self.keys
            .insert(req.key, KeyEntry::new(seq, idx, req.content_hash));
        self.outcome_of(seq, idx, ai, false)
    }

    /// Sets pending (or declined) authorization `seq` to `total` approved, holding what of
    /// it is not captured yet.
    fn adjust_to(&mut self, seq: u64, ai: usize, total: i64, merchant_total: i64, now_s: i64) {
        let a = self.auth(seq).expect("checked by the caller");
        let (held, captured) = (a.held_minor, a.captured_minor);
        let want = (total - captured).max(0);
        if want > held {
            self.place_hold(ai, want - held);
            self.count_usage(seq, want - held, now_s);
            self.auth_mut(seq).expect("checked").held_minor = want;
        } else if want < held {
            self.release_hold(seq, held - want);
        }
        let a = self.auth_mut(seq).expect("checked");
        assert_eq!(a.held_minor, want, "hold adjusted");
        a.status = if want > 0 {
            AuthStatus::Pending
        } else {
            AuthStatus::Closed
        };
        a.approved = true;
        a.amount_minor = total;
        a.merchant_amount_minor = merchant_total;
        self.mark_overdrawn(ai);
    }

    /// 0400/0420. Full or partial (the authorization becomes the replacement amount); a
    /// second reversal changes nothing; a reversal of an unknown original waits for it.
    pub(crate) fn reverse(&mut self, req: &ReversalRequest, now_s: i64) -> Outcome {
        if req.key != req.original {
            if let Some(e) = self.keys.get(&req.key) {
                let id = self.auth(e.auth_seq()).map(|a| a.id);
                return Outcome::Reversed {
                    authorization: id,
                    released_minor: 0,
                    duplicate: true,
                };
            }
        }
        let found = self.keys.get(&req.original).map(|e| e.auth_seq());
        let Some(seq) = found.filter(|&s| self.auth(s).is_some_and(|a| a.card == req.card)) else {
            self.remember_early_reversal(req, now_s);
            return Outcome::Reversed {
                authorization: None,
                released_minor: 0,
                duplicate: false,
            };
        };
        let (released, changed) = self.reverse_auth(seq, req.replacement_amount_minor, now_s);
        let a = self.auth_mut(seq).expect("found above");
        let id = a.id;
        if changed {
            let e = entry(RequestKind::Reversal, req.key, a.amount_minor, now_s);
            let idx = a.push_entry(e);
            if let Some(idx) = idx.filter(|_| req.key != req.original && self.keys.len() < KEYS_MAX)
            {
                let k = KeyEntry::new(seq, idx, 0);
                self.keys.insert(req.key, k);
            }
        }
        Outcome::Reversed {
            authorization: Some(id),
            released_minor: released,
            duplicate: false,
        }
    }

    fn remember_early_reversal(&mut self, req: &ReversalRequest, now_s: i64) {
        let full = self.early_reversals.len() >= EARLY_REVERSALS_MAX;
        if full || self.card_index(req.card).is_none() {
            return;
        }
        // The first reversal of an original is the one kept.
        self.early_reversals
            .insert_if_absent(req.original, || EarlyReversal {
                card: req.card,
                replacement_amount_minor: req.replacement_amount_minor,
                created_s: now_s,
            });
    }

    /// Reverses a just-recorded authorization whose reversal arrived first.
    pub(crate) fn apply_early_reversal(
        &mut self,
        req: &AuthRequest,
        out: &AuthOutcome,
        now_s: i64,
    ) {
        let Some(id) = out.authorization else { return };
        let Some(early) = self.early_reversals.get(&req.key).copied() else {
            return;
        };
        if early.card != req.card {
            return;
        }
        self.early_reversals.remove(&req.key);
        let (_, changed) = self.reverse_auth(id.seq(), early.replacement_amount_minor, now_s);
        if changed {
            let a = self.auth_mut(id.seq()).expect("just recorded");
            let e = entry(RequestKind::Reversal, req.key, a.amount_minor, now_s);
            a.push_entry(e);
        }
    }

    /// Releases all or part of a pending authorization, or credits back all or part of an
    /// approved 0200 (captured at once: an ATM that did not dispense). Returns (released or
    /// credited, changed).
    fn reverse_auth(&mut self, seq: u64, replacement: Option<i64>, now_s: i64) -> (i64, bool) {
        let a = self.auth(seq).expect("reversal of a missing authorization");
        let financial = a.first.kind == RequestKind::Financial
            && a.approved
            && kind_holds(a.kind)
            && a.status == AuthStatus::Closed;
        if a.status != AuthStatus::Pending && !financial {
            return (0, false);
        }
        let new_amount = match replacement {
            Some(x) if x > 0 && a.merchant_amount_minor > 0 => {
                let scaled = i128::from(x) * i128::from(a.amount_minor)
                    / i128::from(a.merchant_amount_minor);
                i64::try_from(scaled.min(i128::from(a.amount_minor))).expect("bounded by amount")
            }
            _ => 0,
        };
        if new_amount > 0 && new_amount >= a.amount_minor {
            return (0, false);
        }
        if financial {
            return self.reverse_financial(seq, new_amount, replacement, now_s);
        }
        let release = a.amount_minor - new_amount;
        let released = self.release_hold(seq, release);
        self.set_reversed_amount(seq, new_amount, replacement, now_s);
        (released, true)
    }

    /// Authorization `seq` is now worth `new_amount` (reversed when 0), `replacement` in the
    /// merchant's currency.
    fn set_reversed_amount(
        &mut self,
        seq: u64,
        new_amount: i64,
        replacement: Option<i64>,
        now_s: i64,
    ) {
        let a = self.auth_mut(seq).expect("checked by the caller");
        a.updated_s = now_s;
        a.amount_minor = new_amount;
        if new_amount == 0 {
            a.status = AuthStatus::Reversed;
        } else {
            a.merchant_amount_minor = replacement.unwrap_or(0);
        }
    }

    /// Credits back what an approved 0200 took beyond `new_amount`, as a refund of its
    /// capture (so the account's `refunded` says where the money came from).
    fn reverse_financial(
        &mut self,
        seq: u64,
        new_amount: i64,
        replacement: Option<i64>,
        now_s: i64,
    ) -> (i64, bool) {
        let a = self.auth(seq).expect("checked by the caller");
        let Some(&capture) = a.transactions.first() else {
            return (0, false);
        };
        let unrefunded = self
            .txn(capture.seq())
            .map_or(0, |t| t.amount_minor - t.refunded_minor);
        let credit = (a.amount_minor - new_amount).min(unrefunded);
        let Ok(Outcome::Refunded { amount_minor, .. }) = self.refund(capture, Some(credit), now_s)
        else {
            // Refunded already (through the admin API) or no room for the transaction: the
            // reversal is recorded and changes nothing.
            return (0, false);
        };
        self.set_reversed_amount(seq, new_amount, replacement, now_s);
        (amount_minor, true)
    }

    /// 0200: decided like an authorization, captured at once when approved.
    pub(crate) fn financial(&mut self, req: &AuthRequest, now_s: i64) -> AuthOutcome {
        let (ai, d, vacant) = match self.decide_new(req, now_s) {
            Ok(decided) => decided,
            Err(answer) => return answer,
        };
        let out = self.record_new(ai, req, &d, vacant, RequestKind::Financial, now_s);
        let captures = kind_holds(req.kind) || req.kind == AuthKind::Refund;
        if let Some(id) = out.authorization.filter(|_| d.approved() && captures) {
            self.capture_seq(id.seq(), d.approved_minor, true, now_s);
            self.apply_early_reversal(req, &out, now_s);
        }
        AuthOutcome {
            available_minor: self.accounts[ai].available_minor,
            ..out
        }
    }

    /// Captures an approved authorization (see `Command::Capture`).
    pub(crate) fn capture(
        &mut self,
        id: AuthorizationId,
        amount_minor: i64,
        close: bool,
        now_s: i64,
    ) -> Result<Outcome, CommandError> {
        let not_found = CommandError::NotFound {
            param: "authorization",
        };
        let a = (id.shard() == self.shard)
            .then(|| self.auth(id.seq()))
            .flatten()
            .ok_or(not_found)?;
        if !a.approved {
            let reason = "authorization was declined";
            return Err(CommandError::Invalid {
                param: "authorization",
                reason,
            });
        }
        check_capture_amount(amount_minor)?;
        if !self.txn_room() || a.transactions.len() >= AUTH_TRANSACTIONS_MAX {
            return Err(CommandError::CapacityReached {
                what: "transactions",
            });
        }
        Ok(self.capture_seq(id.seq(), amount_minor, close, now_s))
    }

    fn capture_seq(&mut self, seq: u64, amount_minor: i64, close: bool, now_s: i64) -> Outcome {
        let a = self.auth(seq).expect("capture of a missing authorization");
        let (card, kind, held, merchant) = (a.card, a.kind, a.held_minor, a.merchant);
        let ci = self
            .card_index(card)
            .expect("authorization of a missing card");
        let ai = self.card_account(ci);
        let refund = kind == AuthKind::Refund;
        let take = amount_minor.min(held);
        let over = if refund { 0 } else { amount_minor - take };
        let acct = &self.accounts[ai];
        let moved = if refund {
            acct.refunded_minor
                .checked_add(amount_minor)
                .zip(acct.available_minor.checked_add(amount_minor))
        } else {
            acct.spent_minor
                .checked_add(amount_minor)
                .zip(acct.available_minor.checked_sub(over))
        };
        let Some((total, available)) = moved else {
            return Outcome::Rejected(CommandError::Overflow { param: "amount" });
        };
        let acct = &mut self.accounts[ai];
        if refund {
            acct.refunded_minor = total;
        } else {
            acct.spent_minor = total;
            acct.held_minor -= take;
        }
        acct.available_minor = available;
        let txn_kind = if refund {
            TransactionKind::Refund
        } else {
            TransactionKind::Capture
        };
        let id = self.push_txn(txn_kind, card, Some(seq), amount_minor, merchant, now_s);
        let a = self.auth_mut(seq).expect("checked above");
        a.held_minor -= take;
        a.captured_minor = a.captured_minor.saturating_add(amount_minor);
        a.updated_s = now_s;
        a.link_transaction(id);
        let rest = a.held_minor;
        if close || rest == 0 {
            self.release_hold(seq, rest);
            self.auth_mut(seq).expect("checked above").status = AuthStatus::Closed;
        }
        self.mark_overdrawn(ai);
        Outcome::Captured {
            transaction: id,
            amount_minor,
            over_capture_minor: over,
        }
    }

    fn push_txn(
        &mut self,
        kind: TransactionKind,
        card: CardId,
        auth_seq: Option<u64>,
        amount_minor: i64,
        merchant: MerchantData,
        now_s: i64,
    ) -> TransactionId {
        assert!(
            self.txn_room(),
            "transaction capacity checked by the caller"
        );
        let id = TransactionId::new(self.shard, self.next_txn_seq());
        let authorization = auth_seq.map(|s| AuthorizationId::new(self.shard, s));
        self.txns.push(Some(Box::new(Transaction {
            id,
            kind,
            card,
            authorization,
            amount_minor,
            refunded_minor: 0,
            created_s: now_s,
            merchant,
        })));
        id
    }

    /// Refunds (part of) a capture or force capture: credits the account.
    pub(crate) fn refund(
        &mut self,
        id: TransactionId,
        amount_minor: Option<i64>,
        now_s: i64,
    ) -> Result<Outcome, CommandError> {
        let t = (id.shard() == self.shard)
            .then(|| self.txn(id.seq()))
            .flatten()
            .ok_or(CommandError::NotFound {
                param: "transaction",
            })?;
        if t.kind == TransactionKind::Refund {
            return Err(CommandError::Invalid {
                param: "transaction",
                reason: "is a refund",
            });
        }
        let remaining = t.amount_minor - t.refunded_minor;
        let amount = amount_minor.unwrap_or(remaining);
        if amount <= 0 || amount > remaining {
            let reason = "must be between 1 and the unrefunded amount";
            return Err(CommandError::Invalid {
                param: "amount",
                reason,
            });
        }
        if !self.txn_room() {
            return Err(CommandError::CapacityReached {
                what: "transactions",
            });
        }
        let (card, auth, merchant) = (t.card, t.authorization, t.merchant);
        let ci = self
            .card_index(card)
            .expect("transaction of a missing card");
        let ai = self.card_account(ci);
        let acct = &mut self.accounts[ai];
        let overflow = CommandError::Overflow { param: "amount" };
        let refunded = acct.refunded_minor.checked_add(amount).ok_or(overflow)?;
        let available = acct.available_minor.checked_add(amount).ok_or(overflow)?;
        acct.refunded_minor = refunded;
        acct.available_minor = available;
        self.txn_mut(id.seq()).expect("found above").refunded_minor += amount;
        let auth_seq = auth.map(AuthorizationId::seq);
        let new_id = self.push_txn(
            TransactionKind::Refund,
            card,
            auth_seq,
            amount,
            merchant,
            now_s,
        );
        if let Some(a) = auth_seq.and_then(|s| self.auth_mut(s)) {
            if a.transactions.len() < AUTH_TRANSACTIONS_MAX {
                a.link_transaction(new_id);
            }
        }
        Ok(Outcome::Refunded {
            transaction: new_id,
            amount_minor: amount,
        })
    }

    /// A capture without an authorization: spent at once, even below zero.
    pub(crate) fn force_capture(
        &mut self,
        card: CardId,
        amount_minor: i64,
        _mcc: u16,
        merchant: &MerchantData,
        now_s: i64,
    ) -> Result<Outcome, CommandError> {
        let ci = self
            .card_index(card)
            .ok_or(CommandError::NotFound { param: "card" })?;
        check_capture_amount(amount_minor)?;
        if !self.txn_room() {
            return Err(CommandError::CapacityReached {
                what: "transactions",
            });
        }
        let ai = self.card_account(ci);
        let acct = &mut self.accounts[ai];
        let overflow = CommandError::Overflow { param: "amount" };
        let spent = acct.spent_minor.checked_add(amount_minor).ok_or(overflow)?;
        let available = acct
            .available_minor
            .checked_sub(amount_minor)
            .ok_or(overflow)?;
        acct.spent_minor = spent;
        acct.available_minor = available;
        self.mark_overdrawn(ai);
        let id = self.push_txn(
            TransactionKind::ForceCapture,
            card,
            None,
            amount_minor,
            *merchant,
            now_s,
        );
        Ok(Outcome::Captured {
            transaction: id,
            amount_minor,
            over_capture_minor: amount_minor,
        })
    }
}
