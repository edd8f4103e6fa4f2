//! Moving money between available and held on an account, and counting approved amounts
//! against spending limits. Every hold placed or released goes through here, so the
//! balance invariant (`funded + refunded - spent - held = available`) is kept in one place.

use super::state::ShardState;
use crate::domain::controls::SpendingLimit;
use crate::domain::usage::Usage;

impl ShardState {
    /// Limits that apply to a card: its own, else the program defaults.
    pub(crate) fn card_limits(&self, ci: usize) -> &[SpendingLimit] {
        match &self.cards[ci].controls {
            Some(c) if !c.spending_limits.is_empty() => &c.spending_limits,
            _ => &self.config.default_spending_limits,
        }
    }

    /// Moves `amount_minor` from available to held. The caller has checked the funds (or,
    /// for an advice, deliberately not).
    pub(crate) fn place_hold(&mut self, ai: usize, amount_minor: i64) {
        assert!(amount_minor >= 0, "negative hold");
        let a = &mut self.accounts[ai];
        a.held_minor = a
            .held_minor
            .checked_add(amount_minor)
            .expect("held overflow");
        a.available_minor = a
            .available_minor
            .checked_sub(amount_minor)
            .expect("available overflow");
    }

    /// Releases up to `amount_minor` of authorization `seq`'s hold back to available, and
    /// takes it back from the limits it counted against. Returns what was released.
    pub(crate) fn release_hold(&mut self, seq: u64, amount_minor: i64) -> i64 {
        let auth = self
            .auth_mut(seq)
            .expect("release of a missing authorization");
        let amount = amount_minor.clamp(0, auth.held_minor);
        auth.held_minor -= amount;
        let (card, mcc, created_s) = (auth.card, auth.mcc, auth.created_s);
        let ci = self
            .card_index(card)
            .expect("authorization of a missing card");
        let ai = self.card_account(ci);
        let a = &mut self.accounts[ai];
        a.held_minor = a.held_minor.checked_sub(amount).expect("held overflow");
        a.available_minor = a
            .available_minor
            .checked_add(amount)
            .expect("available overflow");
        assert!(a.held_minor >= 0, "account held below zero");
        self.uncount_usage(ci, mcc, amount, created_s);
        amount
    }

    /// Counts an approved amount against the card's (lineage's) and cardholder's limits.
    pub(crate) fn count_usage(&mut self, ci: usize, mcc: u16, amount_minor: i64, now_s: i64) {
        self.with_usages(ci, |limits, usage| {
            usage.record(limits, mcc, amount_minor, now_s)
        });
    }

    /// Takes a released amount of an authorization made at `created_s` back from the limits.
    pub(crate) fn uncount_usage(&mut self, ci: usize, mcc: u16, amount_minor: i64, created_s: i64) {
        if amount_minor == 0 {
            return;
        }
        self.with_usages(ci, |limits, usage| {
            usage.release(limits, mcc, amount_minor, created_s)
        });
    }

    /// Runs `f` on the card lineage's usage with the card's limits, then on the cardholder's
    /// usage with the cardholder's limits, creating a usage only where limits exist.
    fn with_usages(&mut self, ci: usize, mut f: impl FnMut(&[SpendingLimit], &mut Usage)) {
        let root = self.cards[ci].usage_root.seq() as usize;
        // Take the usage out so the limits can stay borrowed from the card or the config.
        let mut usage = self.cards[root].usage.take();
        let limits = self.card_limits(ci);
        if !limits.is_empty() {
            f(limits, usage.get_or_insert_with(Box::default));
        }
        self.cards[root].usage = usage;
        let chi = self.cards[ci].cardholder.seq() as usize;
        let holder = &mut self.cardholders[chi];
        if let Some(c) = &holder.controls {
            if !c.spending_limits.is_empty() {
                f(
                    &c.spending_limits,
                    holder.usage.get_or_insert_with(Box::default),
                );
            }
        }
    }
}
