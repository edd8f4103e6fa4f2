//! Records the shard keeps about transaction messages: authorizations (holds and recorded
//! declines) with their request history, the transaction-key index entry, and transactions
//! (captures, refunds, force captures).

use super::command::{AuthKind, MerchantData, TxnKey};
use crate::domain::ids::{ID_SEQ_BITS, ID_SEQ_MAX};
use crate::domain::{AuthorizationId, CardId, DeclineReason, ResponseCode, TransactionId};
use serde::{Deserialize, Serialize};

/// No authorization: the end of a chain (`Card::last_auth`, `chain_back`).
pub const AUTH_NONE: u64 = u64::MAX;

/// The distance stored for a link from `seq` back to `prev` (`AUTH_NONE` or too far: 0).
pub fn chain_back(seq: u64, prev: u64) -> u32 {
    if prev == AUTH_NONE || prev >= seq {
        return 0;
    }
    u32::try_from(seq - prev).unwrap_or(0)
}

/// The sequence a stored distance `back` from `seq` points to.
pub fn chain_prev(seq: u64, back: u32) -> u64 {
    if back == 0 {
        AUTH_NONE
    } else {
        seq - u64::from(back)
    }
}

/// Most request-history entries kept per authorization; later messages are still applied,
/// their entries dropped (and counted).
pub const HISTORY_MAX: usize = 32;
/// Most transactions linked from one authorization (several partial captures).
pub const AUTH_TRANSACTIONS_MAX: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStatus {
    /// Holds funds (or, for a refund authorization, waits for its capture).
    Pending,
    /// Captured, or a recorded decline / verification.
    Closed,
    Reversed,
    Expired,
}

/// Which message produced a history entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Authorization,
    Incremental,
    Advice,
    Reversal,
    Financial,
    /// The platform's answer to the authorization webhook: approved (fully or partly).
    WebhookApproved,
    WebhookDeclined,
    /// No answer within the deadline: the endpoint's default decision applied.
    WebhookTimeout,
    /// An answer that is not a decision (status, body, connection), the concurrency bound
    /// reached, or a restart while waiting: the default decision applied (decline after a
    /// restart).
    WebhookError,
}

/// One message on an authorization: what it asked, what was approved, why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEntry {
    pub kind: RequestKind,
    /// Key of the message (removed from the key index when the authorization is purged).
    pub key: TxnKey,
    /// Requested, account currency.
    pub amount_minor: i64,
    /// Approved, account currency.
    pub approved_minor: i64,
    /// Approved, merchant currency (DE4 of a partial approval).
    pub approved_merchant_minor: i64,
    pub code: ResponseCode,
    pub reason: Option<DeclineReason>,
    pub created_s: i64,
}

/// An authorization. `held_minor` is what it holds now on the account; it is zero unless
/// `status` is `Pending`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub id: AuthorizationId,
    pub card: CardId,
    pub kind: AuthKind,
    pub status: AuthStatus,
    pub approved: bool,
    pub mcc: u16,
    pub merchant_currency: u16,
    pub created_s: i64,
    pub updated_s: i64,
    /// Latest requested merchant amount (DE4).
    pub merchant_amount_minor: i64,
    /// Approved amount in account currency (raised by incrementals, lowered by reversals).
    pub amount_minor: i64,
    pub held_minor: i64,
    pub captured_minor: i64,
    /// What it counts against spending limits now: holds placed, less holds released
    /// (captures keep counting what they took from the hold). Limits added later are
    /// rebuilt from it.
    pub counted_minor: i64,
    /// How many sequences back the previous authorization of the same card lineage is, and
    /// of the same cardholder (0: none, or too far back to matter): the chains a new limit's
    /// spend is rebuilt from, newest first. Distances keep the record within 256 bytes.
    pub back_in_lineage: u32,
    pub back_of_cardholder: u32,
    pub merchant: MerchantData,
    /// First entry inline: most authorizations have exactly one message.
    pub first: RequestEntry,
    pub more: Vec<RequestEntry>,
    pub history_dropped: u32,
    /// A boxed slice, not a `Vec`: 8 bytes less on every record, and most have none.
    pub transactions: Box<[TransactionId]>,
}

impl Authorization {
    /// Links a transaction (captures are few: the copy per link costs less than a `Vec`'s
    /// spare capacity on every record).
    pub fn link_transaction(&mut self, id: TransactionId) {
        let mut all = std::mem::take(&mut self.transactions).into_vec();
        all.push(id);
        self.transactions = all.into_boxed_slice();
    }

    /// Entry `i` of the request history (0 = the first message).
    pub fn entry(&self, i: u16) -> Option<&RequestEntry> {
        if i == 0 {
            Some(&self.first)
        } else {
            self.more.get(usize::from(i) - 1)
        }
    }

    /// All history entries in order.
    pub fn history(&self) -> impl Iterator<Item = &RequestEntry> {
        std::iter::once(&self.first).chain(self.more.iter())
    }

    /// Whether the request history holds `HISTORY_MAX` entries, past which `push_entry`
    /// drops (and counts) what it is given.
    pub fn history_full(&self) -> bool {
        1 + self.more.len() >= HISTORY_MAX
    }

    /// Appends an entry; returns its index, or `None` when the history is full.
    pub fn push_entry(&mut self, e: RequestEntry) -> Option<u16> {
        if self.history_full() {
            self.history_dropped = self.history_dropped.saturating_add(1);
            return None;
        }
        self.more.push(e);
        Some(self.more.len() as u16)
    }

    /// Six-digit approval code (DE38), derived from the id so replay gives the same code.
    pub fn approval_code(&self) -> [u8; 6] {
        approval_code_for(self.id)
    }
}

/// splitmix64's output for state `x`: a well-mixed 64-bit function of it, so consecutive
/// inputs give unrelated-looking outputs.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// DE38 approval code of an authorization id: six decimal digits of a mixed id.
pub fn approval_code_for(id: AuthorizationId) -> [u8; 6] {
    // Consecutive ids give unrelated-looking codes.
    let mut n = splitmix64(id.0) % 1_000_000;
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// Where a transaction key points: the authorization and the history entry of the message
/// that carried it, plus that message's content hash (to tell a retransmission from a
/// different message reusing the key). 16 bytes, since the key index holds one per key: the
/// authorization's sequence (48 bits, as in its id) and the entry share a word, so an index
/// entry with its key is 32 bytes, half a cache line, instead of 40. Serialized as the three
/// fields, as it was before it was packed.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "KeyEntryFields", try_from = "KeyEntryFields")]
pub struct KeyEntry {
    /// The entry in the top 16 bits, the sequence below.
    seq_entry: u64,
    content_hash: u64,
}

impl KeyEntry {
    /// Entry `entry` of authorization `auth_seq` (which fits in 48 bits, as every id does).
    pub fn new(auth_seq: u64, entry: u16, content_hash: u64) -> Self {
        assert!(auth_seq <= ID_SEQ_MAX, "authorization sequence overflow");
        KeyEntry {
            seq_entry: (u64::from(entry) << ID_SEQ_BITS) | auth_seq,
            content_hash,
        }
    }

    pub fn auth_seq(self) -> u64 {
        self.seq_entry & ID_SEQ_MAX
    }

    pub fn entry(self) -> u16 {
        (self.seq_entry >> ID_SEQ_BITS) as u16
    }

    pub fn content_hash(self) -> u64 {
        self.content_hash
    }
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        KeyEntryFields::from(*self).fmt(f)
    }
}

/// `KeyEntry` as it is serialized.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename = "KeyEntry")]
struct KeyEntryFields {
    auth_seq: u64,
    content_hash: u64,
    entry: u16,
}

impl From<KeyEntry> for KeyEntryFields {
    fn from(k: KeyEntry) -> Self {
        KeyEntryFields {
            auth_seq: k.auth_seq(),
            content_hash: k.content_hash,
            entry: k.entry(),
        }
    }
}

impl TryFrom<KeyEntryFields> for KeyEntry {
    type Error = &'static str;
    fn try_from(k: KeyEntryFields) -> Result<Self, Self::Error> {
        if k.auth_seq > ID_SEQ_MAX {
            return Err("key entry: authorization sequence beyond 48 bits");
        }
        Ok(KeyEntry::new(k.auth_seq, k.entry, k.content_hash))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    Capture,
    Refund,
    ForceCapture,
}

/// A capture, refund or force capture, in account currency. A positive amount moved money
/// out of the account (capture), a refund credits it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: TransactionId,
    pub kind: TransactionKind,
    pub card: CardId,
    pub authorization: Option<AuthorizationId>,
    pub amount_minor: i64,
    /// For a capture: how much of it has been refunded so far.
    pub refunded_minor: i64,
    pub created_s: i64,
    pub merchant: MerchantData,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packed key entry keeps its three fields, to the largest of each, and encodes as the
    /// three fields did before it was packed (snapshots and digests do not change); one
    /// whose sequence does not fit in an id is refused when read.
    #[test]
    fn a_key_entry_is_packed_and_encoded_as_its_fields() {
        #[derive(Serialize, Deserialize)]
        struct Unpacked {
            auth_seq: u64,
            content_hash: u64,
            entry: u16,
        }
        for (seq, entry, hash) in [(0, 0, 0), (7, 3, 99), (ID_SEQ_MAX, u16::MAX, u64::MAX)] {
            let k = KeyEntry::new(seq, entry, hash);
            assert_eq!(
                (k.auth_seq(), k.entry(), k.content_hash()),
                (seq, entry, hash)
            );
            let bytes = postcard::to_allocvec(&k).unwrap();
            let fields = Unpacked {
                auth_seq: seq,
                content_hash: hash,
                entry,
            };
            assert_eq!(bytes, postcard::to_allocvec(&fields).unwrap());
            assert_eq!(postcard::from_bytes::<KeyEntry>(&bytes).unwrap(), k);
        }
        let too_far = Unpacked {
            auth_seq: ID_SEQ_MAX + 1,
            content_hash: 0,
            entry: 0,
        };
        let bytes = postcard::to_allocvec(&too_far).unwrap();
        assert!(postcard::from_bytes::<KeyEntry>(&bytes).is_err());
        assert_eq!(std::mem::size_of::<KeyEntry>(), 16);
    }

    #[test]
    fn approval_codes_are_six_digits_and_stable() {
        let a = approval_code_for(AuthorizationId::new(0, 1));
        let b = approval_code_for(AuthorizationId::new(0, 2));
        assert!(a.iter().all(u8::is_ascii_digit));
        assert_ne!(a, b);
        assert_eq!(a, approval_code_for(AuthorizationId::new(0, 1)));
    }
}

/// A reversal whose original has not arrived (yet): applied to the original when it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyReversal {
    pub card: CardId,
    pub replacement_amount_minor: Option<i64>,
    pub created_s: i64,
}
