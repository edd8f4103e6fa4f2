//! `check_invariants`: the ledger's invariants checked over the whole shard. The property
//! test runs it after every command; `from_snapshot` runs it before trusting a snapshot.

use super::records::AuthStatus;
use super::state::{InvariantViolation, ShardState};
use crate::domain::{AccountId, AuthorizationId};

impl ShardState {
    /// Checks balances, holds, ids and the key index.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_placement()?;
        let held = self.held_by_account()?;
        for (i, a) in self.accounts.iter().enumerate() {
            if !a.currency.is_known() {
                return Err(InvariantViolation::Currency(a.id));
            }
            if a.expected_available_minor() != Some(a.available_minor) {
                return Err(InvariantViolation::Balance(a.id));
            }
            if a.held_minor != held[i] {
                return Err(InvariantViolation::Held(a.id));
            }
            if a.available_minor < 0 && self.overdrawn.binary_search(&(i as u64)).is_err() {
                return Err(InvariantViolation::NegativeAvailable(a.id));
            }
        }
        for k in self.keys.values() {
            let ok = self
                .auth(k.auth_seq())
                .is_some_and(|a| a.entry(k.entry()).is_some());
            if !ok {
                return Err(InvariantViolation::DanglingKey);
            }
        }
        Ok(())
    }

    /// Every object is stored at the index its id names, and points at existing parents.
    fn check_placement(&self) -> Result<(), InvariantViolation> {
        let s = self.shard;
        for (i, a) in self.accounts.iter().enumerate() {
            if a.id != AccountId::new(s, i as u64) {
                return Err(InvariantViolation::Misplaced(a.id.0));
            }
        }
        for (i, h) in self.cardholders.iter().enumerate() {
            if h.id.seq() != i as u64
                || h.id.shard() != s
                || self.account_index(h.account).is_none()
            {
                return Err(InvariantViolation::Misplaced(h.id.0));
            }
        }
        for (i, c) in self.cards.iter().enumerate() {
            let ok = c.id.seq() == i as u64
                && c.id.shard() == s
                && self.cardholder_index(c.cardholder).is_some()
                && self.card_index(c.usage_root).is_some_and(|r| r <= i);
            if !ok {
                return Err(InvariantViolation::Misplaced(c.id.0));
            }
        }
        Ok(())
    }

    /// Sum of pending holds per account; checks each hold's own state.
    fn held_by_account(&self) -> Result<Vec<i64>, InvariantViolation> {
        let mut held = vec![0i64; self.accounts.len()];
        for (i, slot) in self.auths.iter().enumerate() {
            let Some(a) = slot else { continue };
            if a.id != AuthorizationId::new(self.shard, self.auth_base_seq + i as u64) {
                return Err(InvariantViolation::Misplaced(a.id.0));
            }
            if a.held_minor < 0 || (a.held_minor > 0 && a.status != AuthStatus::Pending) {
                return Err(InvariantViolation::HoldState(a.id));
            }
            let ci = self
                .card_index(a.card)
                .ok_or(InvariantViolation::Misplaced(a.id.0))?;
            let ai = self.card_account(ci);
            held[ai] = held[ai]
                .checked_add(a.held_minor)
                .ok_or(InvariantViolation::Held(self.accounts[ai].id))?;
        }
        Ok(held)
    }
}
