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
        // Calls may still be under way for endpoints removed since: a retransmission of
        // theirs must find them.
        if self.webhooks.is_empty() && self.awaiting.is_empty() {
            return Outcome::Authorization(self.authorize(req, now_s));
        }
        if !self.awaiting.is_empty() {
            if let Some(out) = self.duplicate_of_awaiting(req) {
                return Outcome::Authorization(out);
            }
        }
        let out = self.authorize(req, now_s);
        let hooked = out.code.is_approval()
            && !out.duplicate
            && req.original.is_none()
            && kind_holds(req.kind);
        let Some(id) = out.authorization.filter(|_| hooked) else {
            return Outcome::Authorization(out);
        };
        let Some(call) = self.platform_call(id.seq(), req, now_s) else {
            return Outcome::Authorization(out);
        };
        let awaiting = Awaiting {
            on_timeout: call.webhook.on_timeout,
            partial_ok: req.partial_ok,
        };
        self.awaiting.insert(id.seq(), awaiting);
        if self.awaiting.len() > AWAITING_PLATFORM_MAX {
            // Too many waiting already: the default decision, at once.
            return self
                .finish_platform(id.seq(), PlatformResult::Error, now_s)
                .unwrap_or(Outcome::Authorization(out));
        }
        Outcome::AwaitingPlatform(Box::new(call))
    }

    /// A retransmission of a request still awaiting its platform: not answered yet, so the
    /// network is told to try again (91) and nothing changes.
    fn duplicate_of_awaiting(&self, req: &AuthRequest) -> Option<super::command::AuthOutcome> {
        let e = self.keys.get(&req.key)?;
        if e.content_hash() != req.content_hash || !self.awaiting.contains_key(&e.auth_seq()) {
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
            // DE49 absent is the account's currency (`CURRENCY_ABSENT`); an unreadable one
            // (approved on DE6/DE51) is sent as the code "000", "no currency" in ISO 4217.
            merchant_currency: match req.currency {
                super::authorize::CURRENCY_ABSENT => self.accounts[ai].currency.numeric(),
                super::authorize::CURRENCY_UNREADABLE => 0,
                code => code,
            },
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
        // Reversed or expired while waiting, or the network stood in meanwhile (its advice
        // decided the amount): only the history records the answer.
        let advised = auth.more.iter().any(|e| e.kind == RequestKind::Advice);
        let live = auth.status == AuthStatus::Pending && held_minor > 0 && !advised;
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
        // After an advice its key names the advice, which its retransmissions must find.
        let idx = self
            .record_platform_entry(seq, entry, live, !advised)
            .unwrap_or(0);
        Ok(Outcome::Authorization(self.outcome_of(seq, idx, ai, false)))
    }

    /// Applies a platform decision's entry to authorization `seq` (`live`: it still held
    /// funds when the decision came) and, with `repoint`, points the request's key at it, so
    /// retransmissions get the final answer. Returns the entry's index (`None` when the
    /// history was full).
    fn record_platform_entry(
        &mut self,
        seq: u64,
        entry: RequestEntry,
        live: bool,
        repoint: bool,
    ) -> Option<u16> {
        let content_hash = self.keys.get(&entry.key).map_or(0, |k| k.content_hash());
        let auth = self.auth_mut(seq).expect("the caller looked it up");
        auth.updated_s = entry.created_s;
        if live {
            auth.amount_minor = entry.approved_minor;
            if entry.code.is_approval() {
                auth.merchant_amount_minor = entry.approved_merchant_minor;
            } else {
                auth.approved = false;
                auth.status = AuthStatus::Closed;
            }
        }
        // A full history keeps the key on the first answer (cannot happen for a fresh
        // authorization, whose history has room for many entries).
        let idx = auth.push_entry(entry)?;
        if repoint {
            self.keys
                .insert(entry.key, KeyEntry::new(seq, idx, content_hash));
        }
        Some(idx)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::command::{Command, ReversalRequest};
    use crate::ledger::state::apply;
    use crate::ledger::testkit::{admin, key, purchase, Fixture, T0_S};

    const SECRET: &str = "whsec_0123456789abcdef";

    fn hooked(funded_minor: i64, on_timeout: TimeoutDecision) -> Fixture {
        let mut f = Fixture::new(funded_minor);
        let webhook = WebhookConfig {
            url: "http://127.0.0.1:9/decide".into(),
            secret: SECRET.into(),
            deadline_ms: 300,
            on_timeout,
        };
        let cmd = Command::SetAuthorizationWebhook {
            account: f.account,
            webhook: Some(webhook),
        };
        admin(&mut f.state, cmd, T0_S);
        f
    }

    fn balance(f: &Fixture) -> (i64, i64) {
        let a = &f.state.accounts[0];
        (a.available_minor, a.held_minor)
    }

    /// Authorizes and expects the platform to be asked; returns the call.
    fn ask(f: &mut Fixture, n: u32, amount_minor: i64, partial_ok: bool) -> PlatformCall {
        let mut req = purchase(f.card, n, amount_minor);
        req.partial_ok = partial_ok;
        match apply(&mut f.state, &Command::Authorize(req), T0_S) {
            Outcome::AwaitingPlatform(call) => *call,
            other => panic!("expected a platform call, got {other:?}"),
        }
    }

    fn decide(f: &mut Fixture, call: &PlatformCall, result: PlatformResult) -> AuthOutcomeView {
        let cmd = Command::PlatformDecision {
            authorization: call.authorization,
            result,
        };
        match apply(&mut f.state, &cmd, T0_S + 1) {
            Outcome::Authorization(out) => AuthOutcomeView {
                code: out.code.as_bytes(),
                approved_minor: out.approved_amount_minor,
                merchant_minor: out.approved_merchant_amount_minor,
                kind: f
                    .state
                    .auth(call.authorization.seq())
                    .map(|a| a.history().last().expect("an entry").kind),
            },
            other => panic!("expected an authorization outcome, got {other:?}"),
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    struct AuthOutcomeView {
        code: [u8; 2],
        approved_minor: i64,
        merchant_minor: i64,
        kind: Option<RequestKind>,
    }

    fn view(code: &[u8; 2], approved_minor: i64, kind: RequestKind) -> AuthOutcomeView {
        AuthOutcomeView {
            code: *code,
            approved_minor,
            merchant_minor: approved_minor,
            kind: Some(kind),
        }
    }

    #[test]
    fn call_describes_the_held_authorization() {
        let mut f = hooked(10_000, TimeoutDecision::Decline);
        let call = ask(&mut f, 1, 2_500, true);
        assert_eq!(call.amount_minor, 2_500);
        assert_eq!(call.merchant_amount_minor, 2_500);
        assert_eq!(call.merchant_currency, 840);
        assert_eq!(call.card, f.card);
        assert_eq!(call.cardholder, f.cardholder);
        assert_eq!(call.account, f.account);
        assert_eq!(&call.last4, b"4242");
        assert_eq!(call.mcc, 5411);
        assert!(call.is_amount_controllable);
        assert_eq!(call.created_s, T0_S);
        assert_eq!(
            balance(&f),
            (7_500, 2_500),
            "the hold is placed while waiting"
        );
        assert_eq!(f.state.awaiting_platform_count(), 1);
        f.state.check_invariants().unwrap();
    }

    #[test]
    fn decisions_finalize_with_exact_balances() {
        let mut f = hooked(10_000, TimeoutDecision::Decline);
        let call = ask(&mut f, 1, 1_000, false);
        let approved = PlatformResult::Approved { amount_minor: None };
        let out = decide(&mut f, &call, approved);
        assert_eq!(out, view(b"00", 1_000, RequestKind::WebhookApproved));
        assert_eq!(balance(&f), (9_000, 1_000));

        let call = ask(&mut f, 2, 1_000, false);
        let out = decide(&mut f, &call, PlatformResult::Declined);
        assert_eq!(out, view(b"05", 0, RequestKind::WebhookDeclined));
        assert_eq!(balance(&f), (9_000, 1_000));
        let auth = f.state.auth(call.authorization.seq()).unwrap();
        assert_eq!((auth.status, auth.approved), (AuthStatus::Closed, false));

        let call = ask(&mut f, 3, 1_000, true);
        let partial = PlatformResult::Approved {
            amount_minor: Some(400),
        };
        let out = decide(&mut f, &call, partial);
        assert_eq!(out, view(b"10", 400, RequestKind::WebhookApproved));
        assert_eq!(balance(&f), (8_600, 1_400));

        let call = ask(&mut f, 4, 1_000, false);
        let out = decide(&mut f, &call, partial);
        assert_eq!(out, view(b"05", 0, RequestKind::WebhookDeclined));

        let call = ask(&mut f, 5, 1_000, true);
        let too_much = PlatformResult::Approved {
            amount_minor: Some(1_001),
        };
        let out = decide(&mut f, &call, too_much);
        assert_eq!(out, view(b"05", 0, RequestKind::WebhookError));
        assert_eq!(balance(&f), (8_600, 1_400));
        assert_eq!(f.state.awaiting_platform_count(), 0);
        f.state.check_invariants().unwrap();
    }

    #[test]
    fn timeout_and_error_take_the_default() {
        let mut f = hooked(10_000, TimeoutDecision::Approve);
        let call = ask(&mut f, 1, 1_000, false);
        let out = decide(&mut f, &call, PlatformResult::Timeout);
        assert_eq!(out, view(b"00", 1_000, RequestKind::WebhookTimeout));
        let call = ask(&mut f, 2, 1_000, false);
        let out = decide(&mut f, &call, PlatformResult::Error);
        assert_eq!(out, view(b"00", 1_000, RequestKind::WebhookError));
        assert_eq!(balance(&f), (8_000, 2_000));
        // A second decision for the same authorization is refused.
        let cmd = Command::PlatformDecision {
            authorization: call.authorization,
            result: PlatformResult::Declined,
        };
        let refused = Outcome::Rejected(CommandError::NotFound {
            param: "authorization",
        });
        assert_eq!(apply(&mut f.state, &cmd, T0_S), refused);
    }

    #[test]
    fn retransmission_while_waiting_is_answered_91_then_gets_the_final_answer() {
        let mut f = hooked(10_000, TimeoutDecision::Decline);
        let call = ask(&mut f, 1, 1_000, false);
        let again = Command::Authorize(purchase(f.card, 1, 1_000));
        let Outcome::Authorization(out) = apply(&mut f.state, &again, T0_S) else {
            panic!("an authorization outcome")
        };
        assert_eq!(out.code, ResponseCode::SYSTEM_UNAVAILABLE);
        assert_eq!(balance(&f), (9_000, 1_000));
        decide(&mut f, &call, PlatformResult::Declined);
        let Outcome::Authorization(out) = apply(&mut f.state, &again, T0_S) else {
            panic!("an authorization outcome")
        };
        assert_eq!(
            (out.code, out.duplicate),
            (ResponseCode::DO_NOT_HONOR, true)
        );
    }

    #[test]
    fn reversal_while_waiting_leaves_nothing_to_approve() {
        let mut f = hooked(10_000, TimeoutDecision::Approve);
        let call = ask(&mut f, 1, 1_000, false);
        let reversal = Command::Reverse(ReversalRequest {
            card: f.card,
            key: key(2),
            original: key(1),
            replacement_amount_minor: None,
        });
        apply(&mut f.state, &reversal, T0_S);
        assert_eq!(balance(&f), (10_000, 0));
        let out = decide(
            &mut f,
            &call,
            PlatformResult::Approved { amount_minor: None },
        );
        assert_eq!(out.code, *b"05");
        assert_eq!(balance(&f), (10_000, 0));
        f.state.check_invariants().unwrap();
    }

    #[test]
    fn abandon_declines_every_waiting_authorization_whatever_the_default() {
        let mut f = hooked(10_000, TimeoutDecision::Approve);
        ask(&mut f, 1, 1_000, false);
        ask(&mut f, 2, 2_000, false);
        assert_eq!(balance(&f), (7_000, 3_000));
        apply(&mut f.state, &Command::AbandonAwaitingPlatform, T0_S);
        assert_eq!(balance(&f), (10_000, 0));
        assert_eq!(f.state.awaiting_platform_count(), 0);
        let kinds: Vec<_> = (0..2)
            .map(|s| f.state.auth(s).unwrap().history().last().unwrap().kind)
            .collect();
        assert_eq!(
            kinds,
            [RequestKind::WebhookError, RequestKind::WebhookError]
        );
        f.state.check_invariants().unwrap();
    }

    #[test]
    fn removed_endpoint_and_switch_declines_call_nobody() {
        let mut f = hooked(1_000, TimeoutDecision::Approve);
        let over = Command::Authorize(purchase(f.card, 1, 5_000));
        let Outcome::Authorization(out) = apply(&mut f.state, &over, T0_S) else {
            panic!("the switch's own decline is final")
        };
        assert_eq!(out.code, ResponseCode::INSUFFICIENT_FUNDS);
        let cmd = Command::SetAuthorizationWebhook {
            account: f.account,
            webhook: None,
        };
        admin(&mut f.state, cmd, T0_S);
        let ok = Command::Authorize(purchase(f.card, 2, 500));
        let Outcome::Authorization(out) = apply(&mut f.state, &ok, T0_S) else {
            panic!("no endpoint, no call")
        };
        assert_eq!(out.code, ResponseCode::APPROVED);
    }

    #[test]
    fn settings_are_validated_and_never_debug_the_secret() {
        let mut w = WebhookConfig {
            url: "http://platform.example:8080/authorizations".into(),
            secret: SECRET.into(),
            deadline_ms: 2000,
            on_timeout: TimeoutDecision::Approve,
        };
        assert_eq!(w.validate(), Ok(()));
        assert!(!format!("{w:?}").contains(SECRET));
        w.deadline_ms = 2001;
        let param = |w: &WebhookConfig| match w.validate() {
            Err(CommandError::Invalid { param, .. }) => param,
            other => panic!("{other:?}"),
        };
        assert_eq!(param(&w), "authorization_webhook.deadline_ms");
        w.deadline_ms = 300;
        w.url = "https://platform.example/x".into();
        assert_eq!(param(&w), "authorization_webhook.url");
        w.url = "http:///x".into();
        assert_eq!(param(&w), "authorization_webhook.url");
        w.url = "http://a b/".into();
        assert_eq!(param(&w), "authorization_webhook.url");
        w.url = "http://a/".into();
        w.secret = "0123456789abcde".into();
        assert_eq!(param(&w), "authorization_webhook.secret");
    }

    #[test]
    fn a_retransmission_finds_its_call_after_the_endpoint_is_removed() {
        let mut f = hooked(10_000, TimeoutDecision::Decline);
        let call = ask(&mut f, 1, 1_000, false);
        // The endpoint, the shard's only one, is removed while its platform decides.
        let cmd = Command::SetAuthorizationWebhook {
            account: f.account,
            webhook: None,
        };
        admin(&mut f.state, cmd, T0_S);
        assert_eq!(f.state.awaiting_platform_count(), 1);
        // A 0101 meanwhile is 91, as with the endpoint in place, not the first answer's 00
        // the platform may yet overturn.
        let again = Command::Authorize(purchase(f.card, 1, 1_000));
        let Outcome::Authorization(out) = apply(&mut f.state, &again, T0_S) else {
            panic!("an authorization outcome")
        };
        assert_eq!(out.code, ResponseCode::SYSTEM_UNAVAILABLE);
        let fin = decide(&mut f, &call, PlatformResult::Declined);
        assert_eq!(fin.code, *b"05");
        assert_eq!(balance(&f), (10_000, 0));
    }

    #[test]
    fn an_advice_while_the_platform_decides_stands_against_its_late_answer() {
        let mut f = hooked(10_000, TimeoutDecision::Decline);
        let call = ask(&mut f, 1, 1_000, false);
        // The network timed out on us, stood in for 800, and advises it under the same key.
        let advice = Command::Advice(purchase(f.card, 1, 800));
        let Outcome::Authorization(out) = apply(&mut f.state, &advice, T0_S) else {
            panic!("an authorization outcome")
        };
        assert_eq!(
            (out.code, out.approved_amount_minor),
            (ResponseCode::APPROVED, 800)
        );
        assert_eq!(balance(&f), (9_200, 800));
        // The platform's late decline is recorded and moves nothing.
        let fin = decide(&mut f, &call, PlatformResult::Declined);
        assert_eq!(
            (fin.code, fin.kind),
            (*b"05", Some(RequestKind::WebhookDeclined))
        );
        assert_eq!(balance(&f), (9_200, 800));
        let auth = f.state.auth(call.authorization.seq()).unwrap();
        assert_eq!((auth.status, auth.approved), (AuthStatus::Pending, true));
        // The advice's retransmission (0121) still finds the advice: nothing changes.
        let Outcome::Authorization(out) = apply(&mut f.state, &advice, T0_S + 2) else {
            panic!("an authorization outcome")
        };
        assert_eq!(
            (out.code, out.approved_amount_minor),
            (ResponseCode::APPROVED, 800)
        );
        assert_eq!(balance(&f), (9_200, 800));
        f.state.check_invariants().expect("invariants hold");
    }

    #[test]
    fn the_event_names_the_account_currency_when_de49_is_absent() {
        let mut f = hooked(10_000, TimeoutDecision::Decline);
        for (currency, named) in [
            (crate::ledger::CURRENCY_ABSENT, "usd"),
            (840, "usd"),
            (crate::ledger::CURRENCY_UNREADABLE, "000"),
        ] {
            let mut req = purchase(f.card, u32::from(currency % 1000), 1_000);
            req.currency = currency;
            req.billing_amount_minor = Some(1_000);
            req.billing_currency = Some(840);
            let cmd = Command::Authorize(req);
            let Outcome::AwaitingPlatform(call) = apply(&mut f.state, &cmd, T0_S) else {
                panic!("a call for currency {currency}")
            };
            let body = crate::server::webhook::event_body(&call, T0_S);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let a = &v["data"]["authorization"];
            assert_eq!(a["merchant_currency"], named, "{currency}: {a}");
            assert_eq!(a["currency"], "usd");
        }
    }

    #[test]
    fn replay_gives_the_same_digest() {
        let mut f = hooked(10_000, TimeoutDecision::Decline);
        let mut log = Vec::new();
        let mut run = |state: &mut ShardState, cmd: Command, now_s: i64| {
            log.push((cmd.clone(), now_s));
            apply(state, &cmd, now_s)
        };
        let Outcome::AwaitingPlatform(call) = run(
            &mut f.state,
            Command::Authorize(purchase(f.card, 1, 700)),
            T0_S,
        ) else {
            panic!("a call")
        };
        run(
            &mut f.state,
            Command::Authorize(purchase(f.card, 2, 300)),
            T0_S,
        );
        let cmd = Command::PlatformDecision {
            authorization: call.authorization,
            result: PlatformResult::Approved {
                amount_minor: Some(700),
            },
        };
        run(&mut f.state, cmd, T0_S + 1);
        let mut replayed = hooked(10_000, TimeoutDecision::Decline).state;
        for (cmd, now_s) in &log {
            apply(&mut replayed, cmd, *now_s);
        }
        assert_eq!(replayed.digest(), f.state.digest());
        assert_eq!(replayed.awaiting_platform_count(), 1);
        let restored = ShardState::from_snapshot(&f.state.to_snapshot()).unwrap();
        assert_eq!(restored.digest(), f.state.digest());
    }
}
