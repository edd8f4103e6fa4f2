//! The HTTP admin API, shaped like Stripe Issuing's: accounts, cardholders, cards,
//! authorizations. JSON in and out, amounts in integer minor units, bearer-token
//! authentication on every route (compared in constant time), a body size limit, and errors as
//! `{"error": {"type", "message", "param"?}}` with 400 (naming the parameter), 401, 404, 503.
//!
//! Every change goes through the ledger's command path: the handler sends a command to the
//! owning shard and answers only once its WAL record is durable. `proto/admin-api.yaml` is the
//! OpenAPI description; a test checks that it and `ROUTES` agree.

pub mod cards;
pub mod demo;
pub mod error;
pub mod routes;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::runtime::Ledger;
use error::ApiError;

/// Every route the server serves, as `(method, OpenAPI path)`.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/accounts"),
    ("get", "/v1/accounts/{id}"),
    ("post", "/v1/accounts/{id}"),
    ("post", "/v1/accounts/{id}/fundings"),
    ("post", "/v1/cardholders"),
    ("get", "/v1/cardholders/{id}"),
    ("post", "/v1/cardholders/{id}"),
    ("post", "/v1/cards"),
    ("get", "/v1/cards/{id}"),
    ("post", "/v1/cards/{id}"),
    ("post", "/v1/bulk/cards"),
    ("get", "/v1/authorizations"),
    ("get", "/v1/authorizations/{id}"),
    ("post", "/v1/authorizations/{id}/capture"),
    ("post", "/v1/transactions/force_capture"),
    ("get", "/v1/transactions/{id}"),
    ("post", "/v1/transactions/{id}/refund"),
];

/// What every handler shares.
#[derive(Clone)]
pub struct AdminState {
    pub inner: Arc<AdminInner>,
}

pub struct AdminInner {
    pub ledger: Arc<Ledger>,
    token: Vec<u8>,
    pub card_bin: String,
    pub card_number_len: usize,
    pub body_bytes_max: usize,
    /// Round-robin shard choice for new accounts.
    pub next_shard: AtomicUsize,
}

impl AdminState {
    pub fn new(ledger: Arc<Ledger>, config: &Config, token: String) -> AdminState {
        AdminState {
            inner: Arc::new(AdminInner {
                ledger,
                token: token.into_bytes(),
                card_bin: config.admin.card_bin.clone(),
                card_number_len: config.admin.card_number_len,
                body_bytes_max: config.admin.body_bytes_max,
                next_shard: AtomicUsize::new(0),
            }),
        }
    }
}

/// The router with authentication and the body limit applied to every route.
pub fn router(state: AdminState) -> Router {
    let body_max = state.inner.body_bytes_max;
    routes::routes()
        .fallback(|| async { ApiError::not_found("path") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn(count_status))
        .with_state(state)
}

/// Counts every answer of the admin API by its status (`authswitch_admin_requests_total`),
/// outermost, so successes, refusals at the door (401) and the body limit's 413 count once
/// each.
async fn count_status(request: Request, next: Next) -> axum::response::Response {
    let response = next.run(request).await;
    let label = response.status().as_str().to_owned();
    metrics::counter!(crate::metrics::ADMIN_REQUESTS_TOTAL, "status" => label).increment(1);
    response
}

/// Serves the admin API until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) {
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "admin API server failed");
    }
}

async fn authenticate(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    if !token_matches(presented, &state.inner.token) {
        return ApiError::Unauthenticated.into_response();
    }
    next.run(request).await
}

/// Whether the presented bearer token is the expected one. Constant time in the token's
/// content; only the length comparison may short-cut. An empty token on either side never
/// matches: start-up refuses an empty token, and this keeps an absent header (read as empty)
/// from opening the API should one ever get through.
fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    !expected.is_empty()
        && presented.len() == expected.len()
        && bool::from(presented.ct_eq(expected))
}

/// Submits the program-wide configuration to every shard, so replay never depends on the
/// config file. A configuration a shard refuses stops the start: serving with the shards'
/// former (or default) limits, expiries and retention while the file says otherwise would
/// decide on settings nobody configured.
pub async fn apply_program_config(ledger: &Ledger, config: &Config) -> Result<(), String> {
    let program = routes::program_config(config)
        .map_err(|error| format!("ledger.default_spending_limits: {error}"))?;
    for shard in 0..ledger.shard_count() as u16 {
        let command = crate::ledger::Command::SetProgramConfig(program.clone());
        match ledger.command(shard, command).await {
            Ok(crate::ledger::Outcome::Rejected(error)) => {
                return Err(format!("the program configuration was refused: {error}"));
            }
            Ok(_) => {}
            Err(failure) => {
                return Err(format!(
                    "shard {shard} did not take the program configuration: {failure:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn only_the_exact_non_empty_token_matches() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cre", b"s3cret"));
        assert!(!token_matches(b"s3creT", b"s3cret"));
        assert!(!token_matches(b"", b"s3cret"));
        // An absent header is read as an empty token: it must not match an empty one.
        assert!(!token_matches(b"", b""));
        assert!(!token_matches(b"x", b""));
    }
}
