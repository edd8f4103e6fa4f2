//! Moving money between available and held on an account, and counting approved amounts
//! against spending limits. Every hold placed or released goes through here, so the
//! balance invariant (`funded + refunded - spent - held = available`) is kept in one place.

use super::records::{chain_prev, Authorization};
use super::state::ShardState;
use crate::domain::controls::SpendingLimit;
use crate::domain::usage::{Spent, Usage};

impl ShardState {
    /// Limits that apply to a card: its own, else the program defaults.
    pub(crate) fn card_limits(&self, ci: usize) -> &[SpendingLimit] {
        match &self.cards[ci].controls {
            Some(c) if !c.spending_limits.is_empty() => &c.spending_limits,
            _ => &self.config.default_spending_limits,
        }
    }

    /// A cardholder's own limits (none unless it has controls with limits).
    pub(crate) fn cardholder_limits(&self, chi: usize) -> &[SpendingLimit] {
        match &self.cardholders[chi].controls {
            Some(c) => &c.spending_limits,
            None => &[],
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
        self.uncount_usage(seq, ci, mcc, amount, created_s);
        amount
    }

    /// Counts `amount_minor` more of authorization `seq` (a hold placed) against its card's
    /// (lineage's) and cardholder's limits, in the windows it was made in (where a release
    /// takes it back from).
    pub(crate) fn count_usage(&mut self, seq: u64, amount_minor: i64, now_s: i64) {
        let a = self
            .auth_mut(seq)
            .expect("count of a missing authorization");
        a.counted_minor = a
            .counted_minor
            .checked_add(amount_minor)
            .expect("counted overflow");
        let (card, mcc, made_s) = (a.card, a.mcc, a.created_s);
        assert!(made_s <= now_s, "authorization made in the future");
        let ci = self
            .card_index(card)
            .expect("authorization of a missing card");
        self.count_new_usage(ci, mcc, amount_minor, (made_s, now_s));
    }

    /// Counts `amount_minor` in `mcc` against card `ci`'s and its cardholder's limits, for an
    /// authorization made at `made_s` whose record already counts it (`counted_minor`).
    pub(crate) fn count_new_usage(
        &mut self,
        ci: usize,
        mcc: u16,
        amount_minor: i64,
        (made_s, now_s): (i64, i64),
    ) {
        self.with_usages(ci, |limits, usage, spent| {
            usage.record(limits, mcc, amount_minor, (made_s, now_s), spent)
        });
    }

    /// Takes a released amount of authorization `seq` (made at `created_s`) back from the
    /// limits.
    fn uncount_usage(&mut self, seq: u64, ci: usize, mcc: u16, amount_minor: i64, created_s: i64) {
        if amount_minor == 0 {
            return;
        }
        let a = self
            .auth_mut(seq)
            .expect("release of a missing authorization");
        a.counted_minor -= amount_minor;
        assert!(a.counted_minor >= 0, "counted below zero");
        self.with_usages(ci, |limits, usage, _| {
            usage.release(limits, mcc, amount_minor, created_s)
        });
    }

    /// Builds the buckets that card `ci`'s limits lack in its lineage's usage, from the
    /// records (when it is issued or its limits change).
    pub(crate) fn sync_card_usage(&mut self, ci: usize, now_s: i64) {
        self.with_card_usage(ci, &mut |limits, usage, spent| {
            usage.sync(limits, now_s, spent)
        });
    }

    /// The same for cardholder `chi`'s own limits.
    pub(crate) fn sync_cardholder_usage(&mut self, chi: usize, now_s: i64) {
        self.with_cardholder_usage(chi, &mut |limits, usage, spent| {
            usage.sync(limits, now_s, spent)
        });
    }

    /// What the lineage of root card `root` has counted under `limit` since `from_s`.
    pub(crate) fn lineage_spent(&self, root: usize, limit: &SpendingLimit, from_s: i64) -> i64 {
        let head = self.cards[root].last_auth;
        self.chain_spent(head, limit, from_s, |a| a.back_in_lineage)
    }

    /// What cardholder `chi`'s cards have counted under `limit` since `from_s`.
    pub(crate) fn cardholder_spent(&self, chi: usize, limit: &SpendingLimit, from_s: i64) -> i64 {
        let head = self.cardholders[chi].last_auth;
        self.chain_spent(head, limit, from_s, |a| a.back_of_cardholder)
    }

    /// Walks a chain of authorizations from `head`, newest first, summing what those created
    /// since `from_s` that `limit` covers count now. Stops at the first one older than
    /// `from_s` (ids follow the clock) or at a purged one (purged records are older than the
    /// retention age, so the chain is complete for any window shorter than that), and after
    /// at most every record of the shard.
    fn chain_spent(
        &self,
        head: u64,
        limit: &SpendingLimit,
        from_s: i64,
        back: impl Fn(&Authorization) -> u32,
    ) -> i64 {
        let (mut seq, mut sum) = (head, 0i64);
        for _ in 0..self.auths.len() {
            let Some(a) = self.auth(seq) else {
                break;
            };
            if a.created_s < from_s {
                break;
            }
            if limit.covers(a.mcc) {
                sum = sum.saturating_add(a.counted_minor);
            }
            seq = chain_prev(seq, back(a));
        }
        sum
    }

    /// Runs `f` on the card lineage's usage with the card's limits, then on the cardholder's
    /// usage with the cardholder's limits.
    fn with_usages(
        &mut self,
        ci: usize,
        mut f: impl FnMut(&[SpendingLimit], &mut Usage, Spent<'_>),
    ) {
        self.with_card_usage(ci, &mut f);
        let chi = self.cards[ci].cardholder.seq() as usize;
        self.with_cardholder_usage(chi, &mut f);
    }

    /// Runs `f` on card `ci`'s lineage usage with the card's limits and what the lineage's
    /// records say. A usage exists only while limits do: without them it is dropped, as it
    /// stops counting.
    fn with_card_usage(
        &mut self,
        ci: usize,
        f: &mut impl FnMut(&[SpendingLimit], &mut Usage, Spent<'_>),
    ) {
        let root = self.cards[ci].usage_root.seq() as usize;
        if self.card_limits(ci).is_empty() {
            // Nothing counts: only a usage left from limits since removed is dropped (a
            // plain read otherwise, which takes no chunk back from a snapshot).
            if self.cards[root].usage.is_some() {
                self.cards[root].usage = None;
            }
            return;
        }
        // Take the usage out so the limits and the records can stay borrowed.
        let mut usage = self.cards[root].usage.take();
        let spent = |l: &SpendingLimit, from_s| self.lineage_spent(root, l, from_s);
        f(
            self.card_limits(ci),
            usage.get_or_insert_with(Box::default),
            &spent,
        );
        self.cards[root].usage = usage;
    }

    /// The same for cardholder `chi` and its own limits.
    fn with_cardholder_usage(
        &mut self,
        chi: usize,
        f: &mut impl FnMut(&[SpendingLimit], &mut Usage, Spent<'_>),
    ) {
        if self.cardholder_limits(chi).is_empty() {
            // As for a card without limits.
            if self.cardholders[chi].usage.is_some() {
                self.cardholders[chi].usage = None;
            }
            return;
        }
        let mut usage = self.cardholders[chi].usage.take();
        let spent = |l: &SpendingLimit, from_s| self.cardholder_spent(chi, l, from_s);
        f(
            self.cardholder_limits(chi),
            usage.get_or_insert_with(Box::default),
            &spent,
        );
        self.cardholders[chi].usage = usage;
    }
}
