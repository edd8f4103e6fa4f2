//! Calls to the platform's authorization webhook, and the connection-side bookkeeping of the
//! requests that wait for one.
//!
//! When a shard answers `Outcome::AwaitingPlatform` (the switch approved and holds the amount
//! on an account with a decision endpoint), the connection's writer does not answer yet: it
//! hands the request to a task that POSTs the signed event to the endpoint (pooled HTTP/1
//! client, the endpoint's deadline as timeout, at most
//! `server.webhook_concurrency_per_endpoint_max` calls in flight per endpoint, the default
//! decision beyond it), submits `Command::PlatformDecision` to the shard, and sends the final
//! answer back to the writer. The request keeps its in-flight permit until that answer is
//! written. Nothing here runs on the shard thread, and a slow endpoint only holds its own
//! semaphore and its own requests' permits.
//!
//! Plain `http://` only for now (no TLS client in the build).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::domain::Currency;
use crate::iso8583::Message;
use crate::ledger::shard::{Answer, Outgoing, WireCtx};
use crate::ledger::{Command, Outcome, PlatformCall, PlatformResult, WebhookConfig};
use crate::server::respond;
use crate::server::Shared;

/// The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "authswitch-signature";
/// Largest endpoint answer read; a longer one is an error.
pub const RESPONSE_BYTES_MAX: usize = 4096;
/// Most distinct endpoints with a concurrency bound tracked at once; a call to a new endpoint
/// beyond it gets the default decision.
pub const ENDPOINTS_MAX: usize = 1 << 16;
/// Idle pooled connections kept per endpoint host.
const POOL_IDLE_PER_HOST_MAX: usize = 64;
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type HmacSha256 = Hmac<sha2::Sha256>;

/// The pooled client and the per-endpoint concurrency bounds, shared by every connection.
pub struct WebhookClient {
    client: Client<HttpConnector, Full<Bytes>>,
    bounds: DashMap<String, Arc<Semaphore>>,
    per_endpoint_max: usize,
}

/// What the endpoint must answer (anything else is an error).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    approved: bool,
    amount: Option<i64>,
}

impl WebhookClient {
    pub fn new(per_endpoint_max: usize) -> WebhookClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST_MAX)
            .build(connector);
        WebhookClient {
            client,
            bounds: DashMap::new(),
            per_endpoint_max,
        }
    }

    /// Calls the endpoint about one authorization; never fails, the failure is the result.
    pub async fn call(&self, call: &PlatformCall) -> PlatformResult {
        let Some(bound) = self.bound(&call.webhook.url) else {
            return PlatformResult::Error;
        };
        let Ok(_permit) = bound.try_acquire() else {
            metrics::counter!("authswitch_webhook_busy_total").increment(1);
            return PlatformResult::Error;
        };
        let now_s = unix_now_s();
        let body = event_body(call, now_s);
        let signature = signature_header(&call.webhook.secret, now_s, &body);
        let deadline = Duration::from_millis(u64::from(call.webhook.deadline_ms));
        match tokio::time::timeout(deadline, self.post(&call.webhook, signature, body)).await {
            Ok(result) => result,
            Err(_) => PlatformResult::Timeout,
        }
    }

    fn bound(&self, url: &str) -> Option<Arc<Semaphore>> {
        if let Some(b) = self.bounds.get(url) {
            return Some(b.clone());
        }
        if self.bounds.len() >= ENDPOINTS_MAX {
            return None;
        }
        let entry = self.bounds.entry(url.to_string());
        Some(
            entry
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_endpoint_max)))
                .clone(),
        )
    }

    async fn post(
        &self,
        webhook: &WebhookConfig,
        signature: String,
        body: Vec<u8>,
    ) -> PlatformResult {
        let request = hyper::Request::post(webhook.url.as_str())
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(Bytes::from(body)));
        let Ok(request) = request else {
            return PlatformResult::Error;
        };
        let Ok(response) = self.client.request(request).await else {
            return PlatformResult::Error;
        };
        if !response.status().is_success() {
            return PlatformResult::Error;
        }
        let Ok(collected) = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
        else {
            return PlatformResult::Error;
        };
        parse_decision(&collected.to_bytes())
    }
}

/// The endpoint's answer as a result: `{"approved": true|false, "amount": N?}`.
pub fn parse_decision(body: &[u8]) -> PlatformResult {
    match serde_json::from_slice::<Decision>(body) {
        Ok(Decision {
            approved: true,
            amount,
        }) => PlatformResult::Approved {
            amount_minor: amount,
        },
        Ok(Decision {
            approved: false, ..
        }) => PlatformResult::Declined,
        Err(_) => PlatformResult::Error,
    }
}

/// `t=<now_s>,v1=<hex HMAC-SHA256(secret, "<now_s>.<body>")>`.
pub fn signature_header(secret: &str, now_s: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(now_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = format!("t={now_s},v1=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn currency_name(numeric: u16) -> String {
    match Currency::from_numeric(numeric) {
        Some(c) if c.is_known() => c.alpha().to_string(),
        _ => format!("{numeric:03}"),
    }
}

/// The `issuing_authorization.request` event (never the PAN: card id and last four).
pub fn event_body(call: &PlatformCall, now_s: i64) -> Vec<u8> {
    let [name, city, country, terminal_id, merchant_id] = call.merchant.strings();
    let authorization = call.authorization.to_string();
    let merchant_currency = currency_name(call.merchant_currency);
    let event = json!({
        "id": format!("evt_{authorization}"),
        "type": "issuing_authorization.request",
        "created": now_s,
        "data": {"authorization": {
            "id": authorization,
            "amount": call.amount_minor,
            "currency": call.currency.alpha(),
            "merchant_amount": call.merchant_amount_minor,
            "merchant_currency": merchant_currency,
            "merchant_data": {
                "name": name,
                "city": city,
                "country": country,
                "terminal_id": terminal_id,
                "network_id": merchant_id,
                "category_code": format!("{:04}", call.mcc),
            },
            "card": {
                "id": call.card.to_string(),
                "last4": String::from_utf8_lossy(&call.last4),
            },
            "cardholder": call.cardholder.to_string(),
            "account": call.account.to_string(),
            "created": call.created_s,
            "pending_request": {
                "amount": call.amount_minor,
                "currency": call.currency.alpha(),
                "merchant_amount": call.merchant_amount_minor,
                "merchant_currency": merchant_currency,
                "is_amount_controllable": call.is_amount_controllable,
            },
        }},
    });
    serde_json::to_vec(&event).expect("a JSON value serializes")
}

fn unix_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Calls the platform, records its decision through the shard, and hands the final answer
/// back to the connection's writer (exactly once: `Deferred` counts on it).
async fn decide(call: Box<PlatformCall>, ctx: WireCtx, shared: Arc<Shared>, tx: Sender) {
    let result = shared.webhooks.call(&call).await;
    let label = match result {
        PlatformResult::Approved { .. } => "approved",
        PlatformResult::Declined => "declined",
        PlatformResult::Timeout => "timeout",
        PlatformResult::Error => "error",
    };
    metrics::counter!("authswitch_webhook_calls_total", "result" => label).increment(1);
    let cmd = Command::PlatformDecision {
        authorization: call.authorization,
        result,
    };
    let shard = call.authorization.shard();
    let answer = shared.ledger.command(shard, cmd).await.map(Answer::Outcome);
    // The writer keeps room for every deferred request, so this only fails when it is gone.
    let _ = tx.try_send(Outgoing::Decided { ctx, answer });
}

type Sender = mpsc::Sender<Outgoing>;

/// A connection writer's requests waiting for their platform, and the channel their final
/// answers come back on.
pub struct Deferred {
    tx: Sender,
    rx: mpsc::Receiver<Outgoing>,
    outstanding: usize,
}

impl Deferred {
    /// `capacity`: the connection's in-flight bound (each deferred request holds a permit).
    pub fn new(capacity: usize) -> Deferred {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Deferred {
            tx,
            rx,
            outstanding: 0,
        }
    }

    /// Requests whose final answer has not come back yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Encodes `item` into `out`, or starts its webhook call. True when it was answered (its
    /// permit may be returned once `out` is written).
    pub fn encode(
        &mut self,
        item: Outgoing,
        shared: &Arc<Shared>,
        out: &mut BytesMut,
        recycle: impl FnOnce(Box<Message>),
    ) -> bool {
        match item {
            Outgoing::Decided {
                ctx,
                answer: Ok(Answer::Outcome(Outcome::AwaitingPlatform(call))),
            } => {
                self.outstanding += 1;
                let task = decide(call, ctx, shared.clone(), self.tx.clone());
                tokio::spawn(task);
                false
            }
            item => {
                respond::encode(item, shared, out, recycle);
                true
            }
        }
    }

    /// The next final answer (pends forever when none is outstanding: guard the call).
    pub async fn recv(&mut self) -> Option<Outgoing> {
        let item = self.rx.recv().await;
        if item.is_some() {
            self.outstanding -= 1;
        }
        item
    }

    /// A final answer that is already back, if any.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let item = self.rx.try_recv().ok();
        if item.is_some() {
            self.outstanding -= 1;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountId, AuthorizationId, CardId, CardholderId};
    use crate::ledger::{MerchantData, TimeoutDecision};

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Expected value from Python's hmac module with the same key and message.
        assert_eq!(
            signature_header("whsec_0123456789abcdef", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=9f5e37cdc7ea587c7c02062d93283cad000d66a831b2a1676418696db47ed6c2"
        );
    }

    #[test]
    fn only_the_documented_answer_is_a_decision() {
        let approved = |amount_minor| PlatformResult::Approved { amount_minor };
        assert_eq!(parse_decision(br#"{"approved": true}"#), approved(None));
        assert_eq!(
            parse_decision(br#"{"approved": true, "amount": 250}"#),
            approved(Some(250))
        );
        assert_eq!(
            parse_decision(br#"{"approved": false, "amount": 250}"#),
            PlatformResult::Declined
        );
        for bad in [
            &br#"{"approved": "yes"}"#[..],
            br#"{"approved": true, "reason": "x"}"#,
            br#"{"amount": 5}"#,
            b"",
            b"approved",
            br#"{"approved": true, "amount": 1.5}"#,
        ] {
            assert_eq!(parse_decision(bad), PlatformResult::Error, "{bad:?}");
        }
    }

    #[test]
    fn event_names_the_card_by_id_and_last4() {
        let call = PlatformCall {
            authorization: AuthorizationId::new(1, 7),
            webhook: WebhookConfig {
                url: "http://127.0.0.1:1/".into(),
                secret: "whsec_0123456789abcdef".into(),
                deadline_ms: 300,
                on_timeout: TimeoutDecision::Decline,
            },
            account: AccountId::new(1, 0),
            cardholder: CardholderId::new(1, 0),
            card: CardId::new(1, 3),
            last4: *b"1111",
            amount_minor: 1_250,
            currency: Currency::from_numeric(840).unwrap(),
            merchant_amount_minor: 1_000,
            merchant_currency: 978,
            mcc: 742,
            merchant: MerchantData::new(b"SHOP", b"PARIS", b"FR", b"T1", b"M1"),
            is_amount_controllable: false,
            created_s: 1_700_000_000,
        };
        let body = event_body(&call, 1_700_000_001);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let a = &v["data"]["authorization"];
        assert_eq!(v["id"], format!("evt_{}", call.authorization));
        assert_eq!(v["created"], 1_700_000_001);
        assert_eq!(a["amount"], 1_250);
        assert_eq!(a["currency"], "usd");
        assert_eq!(a["merchant_amount"], 1_000);
        assert_eq!(a["merchant_currency"], "eur");
        assert_eq!(a["merchant_data"]["category_code"], "0742");
        assert_eq!(a["merchant_data"]["city"], "PARIS");
        assert_eq!(a["card"]["last4"], "1111");
        assert_eq!(a["card"]["id"], call.card.to_string());
        assert_eq!(a["pending_request"]["is_amount_controllable"], false);
        assert!(!String::from_utf8_lossy(&body).contains("whsec_"));
    }
}
