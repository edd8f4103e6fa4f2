//! Real-time authorization decisions by the platform (the account's decision webhook).
//!
//! The ledger part is deterministic like the rest of `apply`: the endpoint settings are
//! account state set by `Command::SetAuthorizationWebhook`; an `Authorize` that the switch
//! itself approves on such an account places its hold, records the authorization as awaiting
//! the platform and answers `Outcome::AwaitingPlatform`, which tells the server to call the
//! endpoint; the server then submits `Command::PlatformDecision` with what the endpoint said
//! (or the timeout / error), and that command's outcome is the answer to the network. Both
//! commands are in the WAL, so replay rebuilds the same state.
//!
//! After a restart, nobody will ever answer the network for an authorization still awaiting
//! the platform (its connection is gone), so `Command::AbandonAwaitingPlatform`, submitted by
//! the runtime before any other job, declines them all and releases their holds: the network
//! timed out and treats it as declined, or it stood in and its 0120 advice brings the record in
//! line.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::authorize::{kind_holds, unrecorded};
use super::command::{AuthRequest, CommandError, MerchantData, Outcome};
use super::records::{AuthStatus, KeyEntry, RequestEntry, RequestKind};
use super::state::ShardState;
use crate::domain::{
    AccountId, AuthorizationId, CardId, CardholderId, Currency, DeclineReason, ResponseCode,
};

/// Deadline when the settings name none.
pub const WEBHOOK_DEADLINE_MS_DEFAULT: u32 = 300;
/// Longest deadline accepted.
pub const WEBHOOK_DEADLINE_MS_MAX: u32 = 2000;
/// Longest endpoint URL accepted, in bytes.
pub const WEBHOOK_URL_LEN_MAX: usize = 512;
/// Shortest and longest signing secret accepted, in bytes.
pub const WEBHOOK_SECRET_LEN_MIN: usize = 16;
pub const WEBHOOK_SECRET_LEN_MAX: usize = 256;
/// Most authorizations of one shard awaiting their platform at once; beyond it the default
/// decision applies at once (the per-endpoint concurrency bound of the server is far lower).
pub const AWAITING_PLATFORM_MAX: usize = 1 << 16;

/// The decision applied when the platform does not answer in time or answers badly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutDecision {
    Approve,
    Decline,
}

/// An account's decision endpoint. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// `http://host:port/path` (plain HTTP only for now).
    pub url: String,
    pub secret: String,
    pub deadline_ms: u32,
    pub on_timeout: TimeoutDecision,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("deadline_ms", &self.deadline_ms)
            .field("on_timeout", &self.on_timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// Checks the settings; the error names the parameter.
    pub fn validate(&self) -> Result<(), CommandError> {
        let invalid = |param, reason| CommandError::Invalid { param, reason };
        let url = self.url.as_bytes();
        let host = self.url.strip_prefix("http://").unwrap_or_default();
        if url.len() > WEBHOOK_URL_LEN_MAX
            || host.is_empty()
            || host.starts_with('/')
            || url.iter().any(|b| !b.is_ascii_graphic())
        {
            return Err(invalid(
                "authorization_webhook.url",
                "must be an http:// URL of at most 512 printable bytes",
            ));
        }
        let secret = self.secret.len();
        if !(WEBHOOK_SECRET_LEN_MIN..=WEBHOOK_SECRET_LEN_MAX).contains(&secret) {
            return Err(invalid(
                "authorization_webhook.secret",
                "must be 16 to 256 bytes",
            ));
        }
        if !(1..=WEBHOOK_DEADLINE_MS_MAX).contains(&self.deadline_ms) {
            return Err(invalid(
                "authorization_webhook.deadline_ms",
                "must be between 1 and 2000",
            ));
        }
        Ok(())
    }
}

/// What came of calling the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlatformResult {
    /// Approved; `amount_minor` (account currency) when the platform named an amount.
    Approved {
        amount_minor: Option<i64>,
    },
    Declined,
    /// No answer within the deadline.
    Timeout,
    /// Not a decision, or not called (concurrency bound reached).
    Error,
}

/// Everything the server needs to call the platform about one authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformCall {
    pub authorization: AuthorizationId,
    pub webhook: WebhookConfig,
    pub account: AccountId,
    pub cardholder: CardholderId,
    pub card: CardId,
    pub last4: [u8; 4],
    /// Held, account currency.
    pub amount_minor: i64,
    pub currency: Currency,
    pub merchant_amount_minor: i64,
    /// DE49 numeric code.
    pub merchant_currency: u16,
    pub mcc: u16,
    pub merchant: MerchantData,
    /// Whether the platform may approve less (the request allows partial approval).
    pub is_amount_controllable: bool,
    pub created_s: i64,
}

/// An authorization waiting for its platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    pub on_timeout: TimeoutDecision,
    pub partial_ok: bool,
}

/// How a platform result finalizes the authorization.
enum Final {
    Approve { amount_minor: i64 },
    Decline,
}

impl ShardState {
    /// `Authorize`, and when the switch approved a new hold on an account with a decision
    /// endpoint, the call to make instead of the answer.
    pub(crate) fn authorize_with_platform(&mut self, req: &AuthRequest, now_s: i64) -> Outcome {
        if self.webhooks.is_empty() {
            return Outcome::Authorization(self.authorize(req, now_s));
        }
        if let Some(out) = self.duplicate_of_awaiting(req) {
            return Outcome::Authorization(out);
        }
        let out = self.authorize(req, now_s);
        let hooked = out.code.is_approval()
            && !out.duplicate
            && req.original.is_none()
            && kind_holds(req.kind);
        let Some(id) = out.authorization.filter(|_| hooked) else {
            return Outcome::Authorization(out);
        };
        match self.platform_call(id.seq(), req, now_s) {
            Some(call) if self.awaiting.len() < AWAITING_PLATFORM_MAX => {
                let on_timeout = call.webhook.on_timeout;
                let awaiting = Awaiting {
                    on_timeout,
                    partial_ok: req.partial_ok,
                };
                self.awaiting.insert(id.seq(), awaiting);
                Outcome::AwaitingPlatform(Box::new(call))
            }
            Some(call) => {
                let awaiting = Awaiting {
                    on_timeout: call.webhook.on_timeout,
                    partial_ok: req.partial_ok,
                };
                self.awaiting.insert(id.seq(), awaiting);
                self.finish_platform(id.seq(), PlatformResult::Error, now_s)
                    .unwrap_or(Outcome::Authorization(out))
            }
            None => Outcome::Authorization(out),
        }
    }

    /// A retransmission of a request still awaiting its platform: not answered yet, so the
    /// network is told to try again (91) and nothing changes.
    fn duplicate_of_awaiting(&self, req: &AuthRequest) -> Option<super::command::AuthOutcome> {
        let e = self.keys.get(&req.key)?;
        if e.content_hash != req.content_hash || !self.awaiting.contains_key(&e.auth_seq) {
            return None;
        }
        let ci = self.card_index(req.card)?;
        let a = &self.accounts[self.card_account(ci)];
        let mut out = unrecorded(
            DeclineReason::UnsupportedTransaction,
            Some(a.currency),
            a.available_minor,
        );
        out.code = ResponseCode::SYSTEM_UNAVAILABLE;
        out.reason = None;
        Some(out)
    }

    /// The call for authorization `seq` when its account has an endpoint and it holds funds.
    fn platform_call(&self, seq: u64, req: &AuthRequest, now_s: i64) -> Option<PlatformCall> {
        let auth = self.auth(seq)?;
        if auth.status != AuthStatus::Pending || auth.held_minor <= 0 {
            return None;
        }
        let ci = self.card_index(auth.card)?;
        let ai = self.card_account(ci);
        let webhook = self.webhooks.get(&(ai as u64))?.clone();
        let card = &self.cards[ci];
        Some(PlatformCall {
            authorization: auth.id,
            webhook,
            account: self.accounts[ai].id,
            cardholder: card.cardholder,
            card: card.id,
            last4: card.last4,
            amount_minor: auth.held_minor,
            currency: self.accounts[ai].currency,
            merchant_amount_minor: auth.first.approved_merchant_minor,
            merchant_currency: req.currency,
            mcc: auth.mcc,
            merchant: auth.merchant,
            is_amount_controllable: req.partial_ok,
            created_s: now_s,
        })
    }

    /// `SetAuthorizationWebhook`: sets or (with `None`) removes an account's endpoint.
    pub(crate) fn set_webhook(
        &mut self,
        account: AccountId,
        webhook: Option<&WebhookConfig>,
    ) -> Result<Outcome, CommandError> {
        let ai = self
            .account_index(account)
            .ok_or(CommandError::NotFound { param: "account" })?;
        match webhook {
            Some(w) => {
                w.validate()?;
                self.webhooks.insert(ai as u64, w.clone());
            }
            None => {
                self.webhooks.remove(&(ai as u64));
            }
        }
        Ok(Outcome::Updated)
    }

    /// The endpoint settings of an account (for its view).
    pub(crate) fn webhook_of(&self, ai: usize) -> Option<&WebhookConfig> {
        self.webhooks.get(&(ai as u64))
    }

    /// Number of authorizations awaiting their platform.
    pub fn awaiting_platform_count(&self) -> usize {
        self.awaiting.len()
    }

    /// `PlatformDecision`: finalizes an authorization awaiting its platform.
    pub(crate) fn platform_decision(
        &mut self,
        id: AuthorizationId,
        result: PlatformResult,
        now_s: i64,
    ) -> Result<Outcome, CommandError> {
        if id.shard() != self.shard || !self.awaiting.contains_key(&id.seq()) {
            return Err(CommandError::NotFound {
                param: "authorization",
            });
        }
        self.finish_platform(id.seq(), result, now_s)
    }

    /// `AbandonAwaitingPlatform`: declines every authorization still awaiting its platform
    /// (after a restart nobody will answer the network for them).
    pub(crate) fn abandon_awaiting(&mut self, now_s: i64) -> Outcome {
        let seqs: Vec<u64> = self.awaiting.keys().copied().collect();
        for seq in seqs {
            if let Some(a) = self.awaiting.get_mut(&seq) {
                a.on_timeout = TimeoutDecision::Decline;
            }
            let _ = self.finish_platform(seq, PlatformResult::Error, now_s);
        }
        Outcome::Updated
    }

    fn finish_platform(
        &mut self,
        seq: u64,
        result: PlatformResult,
        now_s: i64,
    ) -> Result<Outcome, CommandError> {
        let not_found = CommandError::NotFound {
            param: "authorization",
        };
        let awaiting = self.awaiting.remove(&seq).ok_or(not_found)?;
        let auth = self.auth(seq).ok_or(not_found)?;
        let ci = self.card_index(auth.card).ok_or(not_found)?;
        let ai = self.card_account(ci);
        let (first, held_minor) = (auth.first, auth.held_minor);
        let (kind, decision) = resolve(result, awaiting, held_minor);
        // Reversed or expired while waiting: only the history records the answer.
        let live = auth.status == AuthStatus::Pending && held_minor > 0;
        let decision = if live { decision } else { Final::Decline };
        let (approved_minor, merchant_minor, code) = match decision {
            Final::Approve { amount_minor } if amount_minor == held_minor => {
                (amount_minor, first.approved_merchant_minor, first.code)
            }
            Final::Approve { amount_minor } => {
                let part = i128::from(first.approved_merchant_minor) * i128::from(amount_minor)
                    / i128::from(held_minor);
                let part = i64::try_from(part).expect("part of an i64 amount fits");
                self.release_hold(seq, held_minor - amount_minor);
                (amount_minor, part, ResponseCode::PARTIAL)
            }
            Final::Decline => {
                if live {
                    self.release_hold(seq, i64::MAX);
                }
                (0, 0, DeclineReason::PlatformDeclined.response_code())
            }
        };
        let entry = RequestEntry {
            kind,
            key: first.key,
            amount_minor: first.amount_minor,
            approved_minor,
            approved_merchant_minor: merchant_minor,
            code,
            reason: (!code.is_approval()).then_some(DeclineReason::PlatformDeclined),
            created_s: now_s,
        };
        let auth = self.auth_mut(seq).expect("looked up above");
        auth.updated_s = now_s;
        if live {
            auth.amount_minor = approved_minor;
            if code.is_approval() {
                auth.merchant_amount_minor = merchant_minor;
            } else {
                auth.approved = false;
                auth.status = AuthStatus::Closed;
            }
        }
        let content_hash = self.keys.get(&first.key).map_or(0, |k| k.content_hash);
        let auth = self.auth_mut(seq).expect("looked up above");
        let Some(idx) = auth.push_entry(entry) else {
            return Ok(Outcome::Authorization(self.outcome_of(seq, 0, ai, false)));
        };
        // Retransmissions of the request get the final answer from now on.
        let key = KeyEntry {
            auth_seq: seq,
            content_hash,
            entry: idx,
        };
        self.keys.insert(first.key, key);
        Ok(Outcome::Authorization(self.outcome_of(seq, idx, ai, false)))
    }
}

/// The history kind and the decision of a platform result. A named amount above the held
/// amount, or not above zero, is an error; a smaller one is a partial approval where the
/// request allows it and a decline where it does not (the platform did not agree to the full
/// amount, and the network cannot take less).
fn resolve(result: PlatformResult, awaiting: Awaiting, held_minor: i64) -> (RequestKind, Final) {
    let default = match awaiting.on_timeout {
        TimeoutDecision::Approve => Final::Approve {
            amount_minor: held_minor,
        },
        TimeoutDecision::Decline => Final::Decline,
    };
    match result {
        PlatformResult::Approved { amount_minor: None } => (
            RequestKind::WebhookApproved,
            Final::Approve {
                amount_minor: held_minor,
            },
        ),
        PlatformResult::Approved {
            amount_minor: Some(a),
        } if a <= 0 || a > held_minor => (RequestKind::WebhookError, default),
        PlatformResult::Approved {
            amount_minor: Some(a),
        } if a < held_minor && !awaiting.partial_ok => {
            (RequestKind::WebhookDeclined, Final::Decline)
        }
        PlatformResult::Approved {
            amount_minor: Some(a),
        } => (
            RequestKind::WebhookApproved,
            Final::Approve { amount_minor: a },
        ),
        PlatformResult::Declined => (RequestKind::WebhookDeclined, Final::Decline),
        PlatformResult::Timeout => (RequestKind::WebhookTimeout, default),
        PlatformResult::Error => (RequestKind::WebhookError, default),
    }
}
