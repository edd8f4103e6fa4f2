//! Identifiers of accounts, cardholders, cards, authorizations and transactions.
//!
//! Each id is a `u64`: the shard index in the top 16 bits, a per-shard sequence in the low 48.
//! The shard state allocates the sequence, so replaying the WAL allocates the same ids. The
//! runtime routes a command by `id.shard()`. Ids print Stripe-like: a prefix and 16 lowercase
//! hex digits (`ic_0001000000000007`), fixed width so they sort and parse without ambiguity.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Bits of an id that hold the per-shard sequence.
pub const ID_SEQ_BITS: u32 = 48;
/// Largest sequence an id can carry.
pub const ID_SEQ_MAX: u64 = (1 << ID_SEQ_BITS) - 1;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    #[error("id does not start with the expected prefix")]
    WrongPrefix,
    #[error("id does not have 16 hex digits after its prefix")]
    BadLength,
    #[error("id has a character that is not a lowercase hex digit")]
    BadDigit,
}

fn parse_hex16(s: &str) -> Result<u64, IdParseError> {
    if s.len() != 16 {
        return Err(IdParseError::BadLength);
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return Err(IdParseError::BadDigit),
        };
        v = (v << 4) | u64::from(d);
    }
    Ok(v)
}

/// What every id kind has, for code generic over them: the shard that owns its object.
pub trait ShardOwned: Copy {
    fn owner_shard(self) -> u16;
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl $name {
            /// The string every printed id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Builds an id; `seq` must fit in 48 bits (the state checks its counters).
            pub fn new(shard: u16, seq: u64) -> Self {
                assert!(seq <= ID_SEQ_MAX, "id sequence overflow");
                Self((u64::from(shard) << ID_SEQ_BITS) | seq)
            }

            /// The shard that owns this object.
            pub fn shard(self) -> u16 {
                (self.0 >> ID_SEQ_BITS) as u16
            }

            /// The per-shard sequence (the index in the shard's tables).
            pub fn seq(self) -> u64 {
                self.0 & ID_SEQ_MAX
            }
        }

        impl ShardOwned for $name {
            fn owner_shard(self) -> u16 {
                self.shard()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{:016x}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let rest = s.strip_prefix($prefix).ok_or(IdParseError::WrongPrefix)?;
                parse_hex16(rest).map(Self)
            }
        }
    };
}

define_id!(
    /// A connected account with its own Issuing balance.
    AccountId,
    "acct_"
);
define_id!(
    /// A cardholder of an account.
    CardholderId,
    "ich_"
);
define_id!(
    /// A card of a cardholder.
    CardId,
    "ic_"
);
define_id!(
    /// An authorization (a hold, or a recorded decline).
    AuthorizationId,
    "iauth_"
);
define_id!(
    /// A transaction (capture, refund, force capture).
    TransactionId,
    "ipi_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_packs_shard_and_seq() {
        let id = CardId::new(3, 7);
        assert_eq!(id.0, (3u64 << 48) | 7);
        assert_eq!(id.shard(), 3);
        assert_eq!(id.seq(), 7);
    }

    #[test]
    fn id_display_and_parse_round_trip() {
        let id = AccountId::new(1, 0x2a);
        assert_eq!(id.to_string(), "acct_000100000000002a");
        assert_eq!("acct_000100000000002a".parse::<AccountId>(), Ok(id));
        assert_eq!(
            format!("{:?}", AuthorizationId::new(0, 1)),
            "iauth_0000000000000001"
        );
    }

    #[test]
    fn id_parse_errors() {
        assert_eq!("ic_1".parse::<AccountId>(), Err(IdParseError::WrongPrefix));
        assert_eq!("ic_1".parse::<CardId>(), Err(IdParseError::BadLength));
        assert_eq!(
            "ic_000000000000000G".parse::<CardId>(),
            Err(IdParseError::BadDigit)
        );
        assert_eq!(
            "ic_000000000000000A".parse::<CardId>(),
            Err(IdParseError::BadDigit)
        );
    }

    #[test]
    #[should_panic(expected = "id sequence overflow")]
    fn id_seq_overflow_is_an_invariant() {
        let _ = TransactionId::new(0, ID_SEQ_MAX + 1);
    }
}
