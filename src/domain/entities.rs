//! Accounts, cardholders and cards as the shard stores them.
//!
//! They live in `Vec`s indexed by the id's sequence and are never deleted (a card is
//! canceled, not removed), so lookups are an index. Optional parts (controls, spend usage)
//! sit behind `Option<Box<_>>` so a plain card stays small.

use super::controls::SpendingControls;
use super::currency::Currency;
use super::ids::{AccountId, CardId, CardholderId};
use super::usage::Usage;
use serde::{Deserialize, Serialize};

/// Longest cardholder name accepted, in bytes.
pub const NAME_LEN_MAX: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardholderStatus {
    Active,
    Inactive,
    Blocked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Active,
    Inactive,
    Canceled,
    Lost,
    Stolen,
}

/// A connected account and its Issuing balance, all in minor units of `currency`.
///
/// Invariant: `funded + refunded - spent - held = available`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub currency: Currency,
    pub status: AccountStatus,
    pub funded_minor: i64,
    pub refunded_minor: i64,
    pub spent_minor: i64,
    pub held_minor: i64,
    pub available_minor: i64,
}

impl Account {
    /// `funded + refunded - spent - held`, `None` on overflow.
    pub fn expected_available_minor(&self) -> Option<i64> {
        self.funded_minor
            .checked_add(self.refunded_minor)?
            .checked_sub(self.spent_minor)?
            .checked_sub(self.held_minor)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cardholder {
    pub id: CardholderId,
    pub account: AccountId,
    pub name: String,
    pub status: CardholderStatus,
    pub controls: Option<Box<SpendingControls>>,
    pub usage: Option<Box<Usage>>,
    /// Sequence of its newest authorization (`u64::MAX` if none), the head of the chain
    /// through `Authorization::back_of_cardholder`.
    pub last_auth: u64,
}

/// A card. The PAN itself is never here: only its keyed hash (computed by the caller) and
/// its last four digits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub id: CardId,
    pub cardholder: CardholderId,
    pub pan_hash: [u8; 32],
    pub last4: [u8; 4],
    pub exp_month: u8,
    pub exp_year: u16,
    pub status: CardStatus,
    pub controls: Option<Box<SpendingControls>>,
    pub replacement_for: Option<CardId>,
    /// The first card of this replacement chain: its `usage` counts the spend of all of them.
    pub usage_root: CardId,
    /// Spend of the chain; only set on the root card.
    pub usage: Option<Box<Usage>>,
    /// On the root card: sequence of the lineage's newest authorization (`u64::MAX` if
    /// none), the head of the chain through `Authorization::back_in_lineage`.
    pub last_auth: u64,
}

/// Boxed controls, or none when the controls are empty.
pub fn boxed_controls(c: SpendingControls) -> Option<Box<SpendingControls>> {
    if c.is_empty() {
        None
    } else {
        Some(Box::new(c))
    }
}
