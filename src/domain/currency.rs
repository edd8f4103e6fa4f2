//! Money: ISO 4217 currencies and checked arithmetic on `i64` minor units.
//!
//! A `Currency` is the ISO 4217 numeric code (what DE49/DE51 carry). Its alpha code is
//! lowercase as in the Stripe API ("usd"), and its exponent says how many minor units make a
//! major one. Only currencies in the table can be constructed.

use super::currency_table::CURRENCIES;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest amount accepted anywhere, in minor units: 12 digits, as DE4 can carry.
pub const AMOUNT_MINOR_MAX: i64 = 999_999_999_999;

/// An active ISO 4217 currency, stored as its numeric code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Currency(u16);

impl Currency {
    /// The currency with this ISO 4217 numeric code, if it is an active one.
    pub fn from_numeric(numeric: u16) -> Option<Self> {
        CURRENCIES
            .binary_search_by_key(&numeric, |row| row.0)
            .ok()
            .map(|_| Self(numeric))
    }

    /// The currency with this alpha code, any case ("usd", "USD").
    pub fn from_alpha(alpha: &str) -> Option<Self> {
        CURRENCIES
            .iter()
            .find(|row| row.1.eq_ignore_ascii_case(alpha))
            .map(|row| Self(row.0))
    }

    fn row(self) -> &'static (u16, &'static str, u8) {
        let i = CURRENCIES.binary_search_by_key(&self.0, |row| row.0);
        // A Currency is only built from a table row (deserialization is checked by the state).
        &CURRENCIES[i.expect("currency in table")]
    }

    /// ISO 4217 numeric code.
    pub fn numeric(self) -> u16 {
        self.0
    }

    /// Lowercase alpha code, as the API shows it.
    pub fn alpha(self) -> &'static str {
        self.row().1
    }

    /// Minor-unit exponent (2 for usd, 0 for jpy, 3 for kwd).
    pub fn exponent(self) -> u8 {
        self.row().2
    }

    /// Whether the value (e.g. after deserialization) is in the table.
    pub fn is_known(self) -> bool {
        Self::from_numeric(self.0).is_some()
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Self::from_numeric(self.0) {
            Some(c) => f.write_str(c.alpha()),
            None => write!(f, "unknown({})", self.0),
        }
    }
}

/// Adds two amounts, `None` on overflow.
pub fn add_minor(a_minor: i64, b_minor: i64) -> Option<i64> {
    a_minor.checked_add(b_minor)
}

/// Subtracts two amounts, `None` on overflow.
pub fn sub_minor(a_minor: i64, b_minor: i64) -> Option<i64> {
    a_minor.checked_sub(b_minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_lookup_by_numeric_and_alpha() {
        let usd = Currency::from_numeric(840).unwrap();
        assert_eq!(usd.alpha(), "usd");
        assert_eq!(usd.exponent(), 2);
        assert_eq!(Currency::from_alpha("USD"), Some(usd));
        assert_eq!(Currency::from_alpha("jpy").unwrap().exponent(), 0);
        assert_eq!(Currency::from_alpha("kwd").unwrap().numeric(), 414);
        assert_eq!(Currency::from_alpha("kwd").unwrap().exponent(), 3);
        assert_eq!(Currency::from_numeric(978).unwrap().alpha(), "eur");
        assert_eq!(Currency::from_numeric(999), None);
        assert_eq!(Currency::from_numeric(959), None);
        assert_eq!(Currency::from_alpha("xyz"), None);
        assert_eq!(format!("{:?}", usd), "usd");
    }

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(CURRENCIES.len() > 150);
    }

    #[test]
    fn checked_money() {
        assert_eq!(add_minor(i64::MAX, 1), None);
        assert_eq!(sub_minor(i64::MIN, 1), None);
        assert_eq!(add_minor(150, -50), Some(100));
    }
}
