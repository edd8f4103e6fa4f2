//! The Issuing domain (Stripe Issuing model): money and currencies, countries, ids,
//! accounts/cardholders/cards, spending controls and limits, decline reasons and DE39 codes.
//! Everything here is pure: no I/O, no clock, no randomness.

pub mod calendar;
pub mod controls;
pub mod country;
mod country_table;
pub mod currency;
mod currency_table;
pub mod entities;
pub mod ids;
pub mod response;
pub mod usage;

pub use controls::{card_presence, Interval, Presence, SpendingControls, SpendingLimit};
pub use currency::Currency;
pub use entities::{AccountStatus, CardStatus, CardholderStatus};
pub use ids::{AccountId, AuthorizationId, CardId, CardholderId, ShardOwned, TransactionId};
pub use response::{DeclineReason, ResponseCode};
