//! Spending controls of cards and cardholders: category, country and card-presence rules,
//! spending limits, their validation, and the pure checks the decision runs.
//!
//! The card's and the cardholder's controls are both applied; the most restrictive wins
//! because each must pass on its own.

use super::country::is_alpha2;
use super::currency::AMOUNT_MINOR_MAX;
use serde::{Deserialize, Serialize};

/// Most categories in one allowed/blocked list or one limit.
pub const CATEGORIES_MAX: usize = 512;
/// Most countries in one allowed/blocked list.
pub const COUNTRIES_MAX: usize = 256;
/// Most spending limits on one card, cardholder, or in the program defaults.
pub const SPENDING_LIMITS_MAX: usize = 16;
/// Largest merchant category code (MCC is four digits).
pub const MCC_MAX: u16 = 9999;

/// Whether the card was physically at the point of sale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Present,
    NotPresent,
}

/// Card presence from DE22 (POS entry mode, digits 1-2 = PAN entry mode) and DE25 (POS
/// condition code).
///
/// Rules, in order:
/// 1. DE25 `01` (cardholder not present), `08` (mail/telephone order), `59` (e-commerce) or
///    `51`/`90` (recurring / request for account verification without card) → not present.
/// 2. PAN entry mode `02`, `05`, `07`, `79`, `80`, `90`, `91`, `95` (magstripe, chip,
///    contactless, fallbacks) → present.
/// 3. PAN entry mode `01` (key entered) with DE25 `00` (normal presentment) → present: the
///    card was keyed at an attended terminal.
/// 4. Anything else (`01` without a condition code, `09`/`10`/`81`/`82` e-commerce and
///    credential on file, missing or malformed fields) → not present. Unknown is treated as
///    not present because that is the riskier case and the one controls usually block.
pub fn card_presence(pos_entry_mode: Option<&[u8]>, pos_condition: Option<&[u8]>) -> Presence {
    let cond = pos_condition.filter(|c| c.len() == 2);
    if let Some(c) = cond {
        if matches!(c, b"01" | b"08" | b"59" | b"51" | b"90") {
            return Presence::NotPresent;
        }
    }
    let mode = match pos_entry_mode {
        Some(m) if m.len() >= 2 => [m[0], m[1]],
        _ => return Presence::NotPresent,
    };
    match &mode {
        b"02" | b"05" | b"07" | b"79" | b"80" | b"90" | b"91" | b"95" => Presence::Present,
        b"01" if cond == Some(b"00".as_slice()) => Presence::Present,
        _ => Presence::NotPresent,
    }
}

/// Window over which a spending limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    PerAuthorization,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    AllTime,
}

/// One spending limit: at most `amount_minor` per `interval`, counting only `categories`
/// (all categories when empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendingLimit {
    /// `amount` in the API, as Stripe names it; minor units of the account currency.
    #[serde(rename = "amount")]
    pub amount_minor: i64,
    pub interval: Interval,
    #[serde(default)]
    pub categories: Vec<u16>,
}

impl SpendingLimit {
    /// Whether a purchase in `mcc` counts against this limit.
    pub fn covers(&self, mcc: u16) -> bool {
        self.categories.is_empty() || self.categories.binary_search(&mcc).is_ok()
    }
}

/// Spending controls as the Stripe API names them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendingControls {
    #[serde(default)]
    pub allowed_categories: Vec<u16>,
    #[serde(default)]
    pub blocked_categories: Vec<u16>,
    #[serde(default, with = "alpha2_list")]
    pub allowed_merchant_countries: Vec<[u8; 2]>,
    #[serde(default, with = "alpha2_list")]
    pub blocked_merchant_countries: Vec<[u8; 2]>,
    #[serde(default)]
    pub allowed_card_presences: Vec<Presence>,
    #[serde(default)]
    pub blocked_card_presences: Vec<Presence>,
    #[serde(default)]
    pub spending_limits: Vec<SpendingLimit>,
}

/// Why a set of spending controls was refused; names the offending parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlsError {
    #[error("{field} cannot be set together with its allowed/blocked counterpart")]
    Exclusive { field: &'static str },
    #[error("{field} has more than {max} entries")]
    TooMany { field: &'static str, max: usize },
    #[error("{field} has a merchant category code above 9999")]
    InvalidCategory { field: &'static str },
    #[error("{field} has a code that is not an ISO 3166-1 alpha-2 country")]
    InvalidCountry { field: &'static str },
    #[error("spending_limits amount must be between 1 and {AMOUNT_MINOR_MAX}")]
    InvalidLimitAmount,
}

/// Which static control declined a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlViolation {
    Category,
    Country,
    Presence,
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), ControlsError> {
    if len > max {
        return Err(ControlsError::TooMany { field, max });
    }
    Ok(())
}

fn check_categories(field: &'static str, cats: &[u16]) -> Result<(), ControlsError> {
    check_len(field, cats.len(), CATEGORIES_MAX)?;
    if cats.iter().any(|&c| c > MCC_MAX) {
        return Err(ControlsError::InvalidCategory { field });
    }
    Ok(())
}

fn check_countries(field: &'static str, list: &[[u8; 2]]) -> Result<(), ControlsError> {
    check_len(field, list.len(), COUNTRIES_MAX)?;
    if list.iter().any(|&c| !is_alpha2(c)) {
        return Err(ControlsError::InvalidCountry { field });
    }
    Ok(())
}

fn exclusive<T>(field: &'static str, a: &[T], b: &[T]) -> Result<(), ControlsError> {
    if !a.is_empty() && !b.is_empty() {
        return Err(ControlsError::Exclusive { field });
    }
    Ok(())
}

fn sort_dedup<T: Ord>(v: &mut Vec<T>) {
    v.sort_unstable();
    v.dedup();
}

/// Validates a list of limits (for controls and for the program defaults).
pub fn validate_limits(limits: &[SpendingLimit]) -> Result<(), ControlsError> {
    check_len("spending_limits", limits.len(), SPENDING_LIMITS_MAX)?;
    for limit in limits {
        if limit.amount_minor <= 0 || limit.amount_minor > AMOUNT_MINOR_MAX {
            return Err(ControlsError::InvalidLimitAmount);
        }
        check_categories("spending_limits.categories", &limit.categories)?;
    }
    Ok(())
}

/// Sorts and dedups the categories of each limit so lookups can binary-search.
pub fn normalize_limits(limits: &mut [SpendingLimit]) {
    for limit in limits.iter_mut() {
        sort_dedup(&mut limit.categories);
    }
}

impl SpendingControls {
    /// True when no control is set (the card then stores no controls at all).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks limits and that each allowed/blocked pair is not both set.
    pub fn validate(&self) -> Result<(), ControlsError> {
        exclusive(
            "allowed_categories",
            &self.allowed_categories,
            &self.blocked_categories,
        )?;
        exclusive(
            "allowed_merchant_countries",
            &self.allowed_merchant_countries,
            &self.blocked_merchant_countries,
        )?;
        exclusive(
            "allowed_card_presences",
            &self.allowed_card_presences,
            &self.blocked_card_presences,
        )?;
        check_categories("allowed_categories", &self.allowed_categories)?;
        check_categories("blocked_categories", &self.blocked_categories)?;
        check_countries(
            "allowed_merchant_countries",
            &self.allowed_merchant_countries,
        )?;
        check_countries(
            "blocked_merchant_countries",
            &self.blocked_merchant_countries,
        )?;
        check_len(
            "allowed_card_presences",
            self.allowed_card_presences.len(),
            2,
        )?;
        check_len(
            "blocked_card_presences",
            self.blocked_card_presences.len(),
            2,
        )?;
        validate_limits(&self.spending_limits)
    }

    /// Sorts and dedups every list so checks can binary-search and digests are canonical.
    pub fn normalize(&mut self) {
        sort_dedup(&mut self.allowed_categories);
        sort_dedup(&mut self.blocked_categories);
        sort_dedup(&mut self.allowed_merchant_countries);
        sort_dedup(&mut self.blocked_merchant_countries);
        self.allowed_card_presences
            .sort_unstable_by_key(|p| *p as u8);
        self.allowed_card_presences.dedup();
        self.blocked_card_presences
            .sort_unstable_by_key(|p| *p as u8);
        self.blocked_card_presences.dedup();
        normalize_limits(&mut self.spending_limits);
    }

    /// Category, country and presence rules. An unknown merchant country fails an allow
    /// list (it cannot be shown to be allowed) and passes a block list.
    pub fn check_static(
        &self,
        mcc: u16,
        country: Option<[u8; 2]>,
        presence: Presence,
    ) -> Result<(), ControlViolation> {
        if !self.allowed_categories.is_empty()
            && self.allowed_categories.binary_search(&mcc).is_err()
        {
            return Err(ControlViolation::Category);
        }
        if self.blocked_categories.binary_search(&mcc).is_ok() {
            return Err(ControlViolation::Category);
        }
        if !self.allowed_merchant_countries.is_empty() {
            match country {
                Some(c) if self.allowed_merchant_countries.binary_search(&c).is_ok() => {}
                _ => return Err(ControlViolation::Country),
            }
        }
        if let Some(c) = country {
            if self.blocked_merchant_countries.binary_search(&c).is_ok() {
                return Err(ControlViolation::Country);
            }
        }
        if !self.allowed_card_presences.is_empty()
            && !self.allowed_card_presences.contains(&presence)
        {
            return Err(ControlViolation::Presence);
        }
        if self.blocked_card_presences.contains(&presence) {
            return Err(ControlViolation::Presence);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_rules() {
        use Presence::*;
        assert_eq!(card_presence(Some(b"051"), Some(b"00")), Present);
        assert_eq!(card_presence(Some(b"0710"), None), Present);
        assert_eq!(card_presence(Some(b"901"), Some(b"00")), Present);
        assert_eq!(card_presence(Some(b"051"), Some(b"59")), NotPresent);
        assert_eq!(card_presence(Some(b"011"), Some(b"00")), Present);
        assert_eq!(card_presence(Some(b"011"), Some(b"08")), NotPresent);
        assert_eq!(card_presence(Some(b"011"), None), NotPresent);
        assert_eq!(card_presence(Some(b"812"), Some(b"00")), NotPresent);
        assert_eq!(card_presence(Some(b"101"), None), NotPresent);
        assert_eq!(card_presence(None, None), NotPresent);
        assert_eq!(card_presence(Some(b"0"), Some(b"00")), NotPresent);
    }

    #[test]
    fn exclusive_pairs_name_the_field() {
        let mut c = SpendingControls {
            allowed_categories: vec![5411],
            blocked_categories: vec![5812],
            ..Default::default()
        };
        assert_eq!(
            c.validate(),
            Err(ControlsError::Exclusive {
                field: "allowed_categories"
            })
        );
        c.blocked_categories.clear();
        c.allowed_merchant_countries = vec![*b"US"];
        c.blocked_merchant_countries = vec![*b"FR"];
        assert_eq!(
            c.validate(),
            Err(ControlsError::Exclusive {
                field: "allowed_merchant_countries"
            })
        );
        c.blocked_merchant_countries.clear();
        c.allowed_card_presences = vec![Presence::Present];
        c.blocked_card_presences = vec![Presence::NotPresent];
        assert_eq!(
            c.validate(),
            Err(ControlsError::Exclusive {
                field: "allowed_card_presences"
            })
        );
        c.blocked_card_presences.clear();
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn validation_of_values() {
        let bad_country = SpendingControls {
            blocked_merchant_countries: vec![*b"XX"],
            ..Default::default()
        };
        assert_eq!(
            bad_country.validate(),
            Err(ControlsError::InvalidCountry {
                field: "blocked_merchant_countries"
            })
        );
        let bad_mcc = SpendingControls {
            blocked_categories: vec![10000],
            ..Default::default()
        };
        assert_eq!(
            bad_mcc.validate(),
            Err(ControlsError::InvalidCategory {
                field: "blocked_categories"
            })
        );
        let limit = |amount_minor| SpendingLimit {
            amount_minor,
            interval: Interval::Daily,
            categories: vec![],
        };
        let zero = SpendingControls {
            spending_limits: vec![limit(0)],
            ..Default::default()
        };
        assert_eq!(zero.validate(), Err(ControlsError::InvalidLimitAmount));
        let many = SpendingControls {
            spending_limits: vec![limit(1); 17],
            ..Default::default()
        };
        assert_eq!(
            many.validate(),
            Err(ControlsError::TooMany {
                field: "spending_limits",
                max: 16
            })
        );
    }

    #[test]
    fn static_checks() {
        let mut c = SpendingControls {
            allowed_categories: vec![5812, 5411, 5411],
            blocked_merchant_countries: vec![*b"RU"],
            blocked_card_presences: vec![Presence::NotPresent],
            ..Default::default()
        };
        c.normalize();
        assert_eq!(c.allowed_categories, vec![5411, 5812]);
        let p = Presence::Present;
        assert_eq!(c.check_static(5411, Some(*b"US"), p), Ok(()));
        assert_eq!(
            c.check_static(5999, Some(*b"US"), p),
            Err(ControlViolation::Category)
        );
        assert_eq!(
            c.check_static(5411, Some(*b"RU"), p),
            Err(ControlViolation::Country)
        );
        assert_eq!(c.check_static(5411, None, p), Ok(()));
        assert_eq!(
            c.check_static(5411, None, Presence::NotPresent),
            Err(ControlViolation::Presence)
        );
        let allow = SpendingControls {
            allowed_merchant_countries: vec![*b"US"],
            ..Default::default()
        };
        assert_eq!(
            allow.check_static(1, None, p),
            Err(ControlViolation::Country)
        );
        assert_eq!(
            allow.check_static(1, Some(*b"GB"), p),
            Err(ControlViolation::Country)
        );
        assert_eq!(allow.check_static(1, Some(*b"US"), p), Ok(()));
    }
}

/// Country codes as the strings the API shows (`"US"`), not byte arrays; the same form is
/// used in the WAL. Lowercase input is accepted and stored uppercase.
mod alpha2_list {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(codes: &[[u8; 2]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(codes.iter().map(|c| std::str::from_utf8(c).unwrap_or("??")))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 2]>, D::Error> {
        let texts: Vec<String> = Vec::deserialize(d)?;
        texts
            .iter()
            .map(|t| match t.as_bytes() {
                [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                    Ok([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
                }
                _ => Err(D::Error::custom(
                    "country codes are ISO 3166 alpha-2, like \"US\"",
                )),
            })
            .collect()
    }
}
