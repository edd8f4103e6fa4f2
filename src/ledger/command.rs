//! Commands to the shard state machine and their outcomes.
//!
//! A command is what the WAL records (`postcard((now_s, Command))`), so everything a decision
//! depends on is in it or in the state: replay gives the same outcome. Nothing here holds a
//! PAN; cards are named by `CardId` (the server looks the PAN's keyed hash up in the routing
//! index before it builds a command).

use super::platform::{PlatformCall, PlatformResult, WebhookConfig};
use crate::domain::controls::{ControlsError, Presence, SpendingControls, SpendingLimit};
use crate::domain::{
    AccountId, AccountStatus, AuthorizationId, CardId, CardStatus, CardholderId, CardholderStatus,
    Currency, DeclineReason, ResponseCode, TransactionId,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The network's identity of one transaction message chain: a hash of the acquirer (DE32),
/// STAN (DE11) and transmission time (DE7). Duplicates, reversals and advices find their
/// original through it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TxnKey(pub [u8; 16]);

impl TxnKey {
    /// Derives the key. Leading '0's of the acquirer id are stripped, so DE32 (LLVAR) and the
    /// zero-padded 11 digits of DE90 give the same key.
    pub fn derive(acquirer_id: &[u8], stan: u32, transmission_time: &[u8; 10]) -> Self {
        let start = acquirer_id
            .iter()
            .position(|&b| b != b'0')
            .unwrap_or(acquirer_id.len());
        let acquirer = &acquirer_id[start..];
        // The hash of: the acquirer's length (so no two inputs concatenate to the same
        // bytes), the acquirer, the STAN and the time. Laid out in one buffer and hashed in
        // one call when it fits a BLAKE3 block, as it does for every DE32 (at most 11
        // digits): the same hash as feeding the parts one by one, which longer ids do.
        let len = (acquirer.len() as u32).to_le_bytes();
        let parts: [&[u8]; 4] = [&len, acquirer, &stan.to_le_bytes(), transmission_time];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let hash = if total <= 64 {
            let mut block = [0u8; 64];
            let mut at = 0;
            for part in parts {
                block[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            blake3::hash(&block[..total])
        } else {
            let mut h = blake3::Hasher::new();
            parts.iter().for_each(|part| {
                h.update(part);
            });
            h.finalize()
        };
        let mut out = [0u8; 16];
        out.copy_from_slice(&hash.as_bytes()[..16]);
        Self(out)
    }
}

impl fmt::Debug for TxnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// What an authorization request asks for (from DE3 processing code and MTI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Purchase,
    CashWithdrawal,
    Refund,
    AccountVerification,
    BalanceInquiry,
}

/// Merchant data in fixed inline buffers (space padded), so a request allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantData {
    pub name: [u8; 25],
    pub city: [u8; 13],
    pub country: [u8; 2],
    pub terminal_id: [u8; 8],
    pub merchant_id: [u8; 15],
}

fn fill<const N: usize>(src: &[u8]) -> [u8; N] {
    let mut out = [b' '; N];
    let n = src.len().min(N);
    out[..n].copy_from_slice(&src[..n]);
    out
}

fn trimmed(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_string()
}

impl MerchantData {
    /// Builds merchant data, truncating each field to its buffer.
    pub fn new(
        name: &[u8],
        city: &[u8],
        country: &[u8],
        terminal_id: &[u8],
        merchant_id: &[u8],
    ) -> Self {
        Self {
            name: fill(name),
            city: fill(city),
            country: fill(country),
            terminal_id: fill(terminal_id),
            merchant_id: fill(merchant_id),
        }
    }

    /// (name, city, country, terminal id, merchant id) without padding, for views.
    pub fn strings(&self) -> [String; 5] {
        [
            trimmed(&self.name),
            trimmed(&self.city),
            trimmed(&self.country),
            trimmed(&self.terminal_id),
            trimmed(&self.merchant_id),
        ]
    }
}

impl Default for MerchantData {
    fn default() -> Self {
        Self::new(b"", b"", b"", b"", b"")
    }
}

impl fmt::Debug for MerchantData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [name, city, country, terminal, merchant] = self.strings();
        write!(f, "{name}/{city}/{country}/{terminal}/{merchant}")
    }
}

/// An authorization request, built by the server from a 0100/0120/0200 message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub card: CardId,
    pub key: TxnKey,
    /// Hash of the significant fields (server-computed): same key and a different hash is a
    /// duplicate with different content (94).
    pub content_hash: u64,
    pub kind: AuthKind,
    /// DE4, in minor units of `currency`.
    pub amount_minor: i64,
    /// DE49 numeric code (not checked by the server; unknown codes decline with 13); 0 when
    /// the request has no DE49, meaning the account's currency.
    pub currency: u16,
    /// DE6 / DE51: cardholder billing amount and currency.
    pub billing_amount_minor: Option<i64>,
    pub billing_currency: Option<u16>,
    /// DE18.
    pub mcc: u16,
    pub merchant_country: Option<[u8; 2]>,
    pub presence: Presence,
    pub partial_ok: bool,
    /// DE14 as (yy, mm).
    pub expiry_presented: Option<(u8, u8)>,
    /// For an incremental authorization: the key of the authorization it raises.
    pub original: Option<TxnKey>,
    pub merchant: MerchantData,
    pub stan: u32,
    pub rrn: [u8; 12],
}

/// Program-wide settings. The runtime submits it as a command when the config file differs
/// from the state, so replay never reads the config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramConfig {
    /// Limits applied to every card that has no spending limits of its own (off when empty).
    pub default_spending_limits: Vec<SpendingLimit>,
    /// Age after which a pending hold is released.
    pub hold_expiry_s: i64,
    /// Same for hotel (MCC 3501-3999, 7011) and car rental (3351-3500, 7512) merchants.
    pub hold_expiry_lodging_s: i64,
    /// Age (since last change) after which a finished authorization and its keys are purged.
    pub retention_s: i64,
    /// Authorizations (open and retained) one shard keeps at most; beyond it new ones are
    /// answered 91 and not recorded. It is what bounds the shard's memory (about 700 bytes
    /// an authorization with its key and history).
    pub authorizations_max: u64,
}

impl Default for ProgramConfig {
    fn default() -> Self {
        Self {
            default_spending_limits: Vec::new(),
            hold_expiry_s: 7 * 86_400,
            hold_expiry_lodging_s: 30 * 86_400,
            retention_s: 7 * 86_400,
            authorizations_max: super::state::AUTHORIZATION_SLOTS_MAX as u64,
        }
    }
}

/// A reversal (0400/0420) of the authorization with key `original`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalRequest {
    pub card: CardId,
    /// Key of this reversal message (for its own duplicates).
    pub key: TxnKey,
    /// Key of the authorization being reversed (from DE90 or the same key).
    pub original: TxnKey,
    /// `None`: full reversal. `Some(x)`: partial, the authorization becomes `x` (DE95
    /// replacement amount, in the authorization's merchant currency).
    pub replacement_amount_minor: Option<i64>,
}

/// Every change of shard state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateAccount {
        currency: Currency,
    },
    UpdateAccount {
        account: AccountId,
        status: Option<AccountStatus>,
    },
    Fund {
        account: AccountId,
        amount_minor: i64,
    },
    CreateCardholder {
        account: AccountId,
        name: String,
        status: CardholderStatus,
        spending_controls: SpendingControls,
    },
    UpdateCardholder {
        cardholder: CardholderId,
        name: Option<String>,
        status: Option<CardholderStatus>,
        spending_controls: Option<SpendingControls>,
    },
    CreateCard {
        cardholder: CardholderId,
        pan_hash: [u8; 32],
        last4: [u8; 4],
        exp_month: u8,
        exp_year: u16,
        status: CardStatus,
        spending_controls: SpendingControls,
        replacement_for: Option<CardId>,
    },
    UpdateCard {
        card: CardId,
        status: Option<CardStatus>,
        spending_controls: Option<SpendingControls>,
    },
    Authorize(AuthRequest),
    SetProgramConfig(ProgramConfig),
    /// Releases pending holds older than their expiry age and purges finished
    /// authorizations older than the retention age, both as of the record's `now_s`.
    ExpireHolds,
    /// 0120 stand-in advice: recorded even when it overdraws; an authorization with the same
    /// key (approved or declined) is brought in line with the advised amount.
    Advice(AuthRequest),
    /// 0400/0420 reversal, full or partial.
    Reverse(ReversalRequest),
    /// 0200 financial request: authorize and capture at once.
    Financial(AuthRequest),
    /// Clearing of an authorization: full, partial (the rest released unless
    /// `close_authorization` is false, allowing several captures) or over-capture (taken
    /// from available even below zero). Never declined by controls or status.
    Capture {
        authorization: AuthorizationId,
        amount_minor: i64,
        close_authorization: bool,
    },
    /// Refund of a captured transaction (all of what is left when `amount_minor` is None).
    Refund {
        transaction: TransactionId,
        amount_minor: Option<i64>,
    },
    /// Capture without an authorization.
    ForceCapture {
        card: CardId,
        amount_minor: i64,
        mcc: u16,
        merchant: MerchantData,
    },
    /// Sets (or, with `None`, removes) an account's authorization decision endpoint.
    SetAuthorizationWebhook {
        account: AccountId,
        webhook: Option<WebhookConfig>,
    },
    /// What the platform decided about an authorization awaiting it.
    PlatformDecision {
        authorization: AuthorizationId,
        result: PlatformResult,
    },
    /// Declines every authorization still awaiting its platform (applied after recovery).
    AbandonAwaitingPlatform,
}

impl Command {
    /// False when applying the command never changes state, so the runtime may answer it
    /// without a WAL record (balance inquiries).
    pub fn mutates(&self) -> bool {
        !matches!(self, Command::Authorize(r) if r.kind == AuthKind::BalanceInquiry)
    }
}

/// The answer to an authorization-like request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthOutcome {
    pub authorization: Option<AuthorizationId>,
    pub code: ResponseCode,
    pub reason: Option<DeclineReason>,
    /// In the account currency.
    pub approved_amount_minor: i64,
    /// In the merchant currency (DE4 of a partial approval).
    pub approved_merchant_amount_minor: i64,
    /// Account's available balance after the decision (DE54, balance inquiry).
    pub available_minor: i64,
    pub currency: Option<Currency>,
    /// True when this is the stored answer to an earlier message with the same key.
    pub duplicate: bool,
}

impl AuthOutcome {
    /// DE38 of an approval recorded as an authorization: derived from its id, so the shard
    /// does not compute it and a repeated answer repeats it.
    pub fn approval_code(&self) -> Option<[u8; 6]> {
        let id = self.authorization.filter(|_| self.code.is_approval())?;
        Some(super::records::approval_code_for(id))
    }
}

/// Why an admin/ledger command was refused; names the parameter (the admin API maps
/// `NotFound` to 404 and the rest to 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{param}: no such object")]
    NotFound { param: &'static str },
    #[error("{param}: {reason}")]
    Invalid {
        param: &'static str,
        reason: &'static str,
    },
    #[error("spending_controls: {0}")]
    Controls(ControlsError),
    #[error("{what}: shard capacity reached")]
    CapacityReached { what: &'static str },
    #[error("{param}: amount overflow")]
    Overflow { param: &'static str },
}

/// The result of applying one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    AccountCreated(AccountId),
    CardholderCreated(CardholderId),
    CardCreated(CardId),
    Updated,
    Funded {
        available_minor: i64,
    },
    Authorization(AuthOutcome),
    /// The switch approved and holds the amount; the platform decides the answer
    /// (`Command::PlatformDecision`). Never sent to the network as it is.
    AwaitingPlatform(Box<PlatformCall>),
    ConfigSet,
    Expired {
        released: u32,
        purged: u32,
        more: bool,
    },
    Captured {
        transaction: TransactionId,
        amount_minor: i64,
        over_capture_minor: i64,
    },
    Refunded {
        transaction: TransactionId,
        amount_minor: i64,
    },
    Reversed {
        authorization: Option<AuthorizationId>,
        released_minor: i64,
        duplicate: bool,
    },
    Rejected(CommandError),
}
