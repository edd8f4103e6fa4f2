//! Decision results: the closed set of decline reasons and their DE39 response codes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A DE39 response code (two ASCII characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResponseCode([u8; 2]);

impl ResponseCode {
    pub const APPROVED: Self = Self(*b"00");
    pub const DO_NOT_HONOR: Self = Self(*b"05");
    pub const PARTIAL: Self = Self(*b"10");
    pub const INVALID_TRANSACTION: Self = Self(*b"12");
    pub const INVALID_AMOUNT: Self = Self(*b"13");
    pub const UNKNOWN_CARD: Self = Self(*b"14");
    pub const FORMAT_ERROR: Self = Self(*b"30");
    pub const LOST: Self = Self(*b"41");
    pub const STOLEN: Self = Self(*b"43");
    pub const INSUFFICIENT_FUNDS: Self = Self(*b"51");
    pub const EXPIRED: Self = Self(*b"54");
    pub const NOT_PERMITTED: Self = Self(*b"57");
    pub const LIMIT_EXCEEDED: Self = Self(*b"61");
    pub const RESTRICTED: Self = Self(*b"62");
    pub const SYSTEM_UNAVAILABLE: Self = Self(*b"91");
    pub const DUPLICATE: Self = Self(*b"94");
    pub const SYSTEM_ERROR: Self = Self(*b"96");

    /// The two DE39 bytes.
    pub fn as_bytes(self) -> [u8; 2] {
        self.0
    }

    /// Whether the code approves (fully or partially).
    pub fn is_approval(self) -> bool {
        self == Self::APPROVED || self == Self::PARTIAL
    }
}

impl fmt::Debug for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.0[0] as char, self.0[1] as char)
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a request was declined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    UnknownCard,
    CardInactive,
    CardCanceled,
    CardExpired,
    CardLost,
    CardStolen,
    ExpiryMismatch,
    CardholderInactive,
    CardholderBlocked,
    AccountDisabled,
    InsufficientFunds,
    SpendingControlsCategory,
    SpendingControlsCountry,
    SpendingControlsPresence,
    SpendingLimit,
    CurrencyMismatch,
    InvalidAmount,
    /// Transaction kind not supported here, or an incremental/reversal whose original is
    /// unknown or closed.
    UnsupportedTransaction,
    /// Same transaction key seen before with different content.
    DuplicateMismatch,
    /// The account's platform declined it (or did not answer and its default is decline).
    PlatformDeclined,
}

impl DeclineReason {
    /// DE39 code for this reason.
    pub fn response_code(self) -> ResponseCode {
        use DeclineReason::*;
        match self {
            UnknownCard => ResponseCode::UNKNOWN_CARD,
            CardExpired | ExpiryMismatch => ResponseCode::EXPIRED,
            CardLost => ResponseCode::LOST,
            CardStolen => ResponseCode::STOLEN,
            CardInactive | CardCanceled | CardholderInactive | CardholderBlocked
            | AccountDisabled => ResponseCode::RESTRICTED,
            SpendingControlsCategory | SpendingControlsCountry | SpendingControlsPresence => {
                ResponseCode::NOT_PERMITTED
            }
            SpendingLimit => ResponseCode::LIMIT_EXCEEDED,
            InsufficientFunds => ResponseCode::INSUFFICIENT_FUNDS,
            CurrencyMismatch | InvalidAmount => ResponseCode::INVALID_AMOUNT,
            UnsupportedTransaction => ResponseCode::INVALID_TRANSACTION,
            DuplicateMismatch => ResponseCode::DUPLICATE,
            PlatformDeclined => ResponseCode::DO_NOT_HONOR,
        }
    }

    /// snake_case name, for metrics labels and the API.
    pub fn as_str(self) -> &'static str {
        use DeclineReason::*;
        match self {
            UnknownCard => "unknown_card",
            CardInactive => "card_inactive",
            CardCanceled => "card_canceled",
            CardExpired => "card_expired",
            CardLost => "card_lost",
            CardStolen => "card_stolen",
            ExpiryMismatch => "expiry_mismatch",
            CardholderInactive => "cardholder_inactive",
            CardholderBlocked => "cardholder_blocked",
            AccountDisabled => "account_disabled",
            InsufficientFunds => "insufficient_funds",
            SpendingControlsCategory => "spending_controls_category",
            SpendingControlsCountry => "spending_controls_country",
            SpendingControlsPresence => "spending_controls_presence",
            SpendingLimit => "spending_limit",
            CurrencyMismatch => "currency_mismatch",
            InvalidAmount => "invalid_amount",
            UnsupportedTransaction => "unsupported_transaction",
            DuplicateMismatch => "duplicate_mismatch",
            PlatformDeclined => "platform_declined",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes() {
        use DeclineReason::*;
        let table: &[(DeclineReason, &[u8; 2])] = &[
            (UnknownCard, b"14"),
            (CardInactive, b"62"),
            (CardCanceled, b"62"),
            (CardExpired, b"54"),
            (ExpiryMismatch, b"54"),
            (CardLost, b"41"),
            (CardStolen, b"43"),
            (CardholderInactive, b"62"),
            (CardholderBlocked, b"62"),
            (AccountDisabled, b"62"),
            (InsufficientFunds, b"51"),
            (SpendingControlsCategory, b"57"),
            (SpendingControlsCountry, b"57"),
            (SpendingControlsPresence, b"57"),
            (SpendingLimit, b"61"),
            (CurrencyMismatch, b"13"),
            (InvalidAmount, b"13"),
            (UnsupportedTransaction, b"12"),
            (DuplicateMismatch, b"94"),
            (PlatformDeclined, b"05"),
        ];
        for (reason, code) in table {
            assert_eq!(&reason.response_code().as_bytes(), *code, "{reason:?}");
        }
        assert_eq!(ResponseCode::PARTIAL.as_bytes(), *b"10");
        assert!(ResponseCode::PARTIAL.is_approval());
        assert!(!ResponseCode::DUPLICATE.is_approval());
        assert_eq!(ResponseCode::SYSTEM_UNAVAILABLE.to_string(), "91");
        assert_eq!(ResponseCode::SYSTEM_ERROR.as_bytes(), *b"96");
        assert_eq!(ResponseCode::FORMAT_ERROR.as_bytes(), *b"30");
        assert_eq!(SpendingLimit.as_str(), "spending_limit");
    }
}
