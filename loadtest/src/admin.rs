//! Client of the switch's admin API (reqwest, plain HTTP, bearer token): provisions accounts,
//! cardholders and cards for a run, and reads balances for `--verify`.
//!
//! Every call retries on 503 (the switch is busy or starting), 429 and connection failures,
//! a bounded number of times with exponential backoff. Card numbers returned by the bulk
//! route never appear in an error.

use std::time::Duration;

use authswitch::iso8583::Pan;
use futures_util::stream::{self, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::portfolio::{Card, Portfolio, EXPIRY_YYMM_DEFAULT};
use crate::verify::Balance;

/// Attempts per call, the first included.
pub const ATTEMPTS_MAX: u32 = 6;
/// First backoff; doubled after each failed attempt.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// Timeout of one HTTP request (a bulk of 10 000 cards is the slowest).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Admin calls in flight at once during provisioning and balance reads.
pub const CONCURRENCY_MAX: usize = 8;
/// Cards per bulk request, the route's limit.
pub const BULK_CARDS_MAX: usize = 10_000;
const EXP_MONTH: u64 = (EXPIRY_YYMM_DEFAULT % 100) as u64;
const EXP_YEAR: u64 = 2000 + (EXPIRY_YYMM_DEFAULT / 100) as u64;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin address {addr:?} is not host:port or an http:// URL")]
    BadAddress { addr: String },
    #[error("{method} {route}: HTTP {status}")]
    Status {
        method: Method,
        route: String,
        status: u16,
    },
    #[error("{method} {route}: still failing after {attempts} attempts: {last}")]
    RetriesExhausted {
        method: Method,
        route: String,
        attempts: u32,
        last: String,
    },
    #[error("{route}: unexpected response: {what}")]
    BadResponse { route: String, what: &'static str },
    #[error("bulk card creation: {failed} of {asked} cards not created")]
    CardsRejected { failed: usize, asked: usize },
}

pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

fn base_url(addr: &str) -> Result<String, AdminError> {
    let bad = || AdminError::BadAddress {
        addr: addr.chars().take(100).collect(),
    };
    let trimmed = addr.trim_end_matches('/');
    let url = if trimmed.starts_with("http://") {
        trimmed.to_string()
    } else if trimmed.contains("://") || trimmed.is_empty() {
        return Err(bad());
    } else {
        format!("http://{trimmed}")
    };
    reqwest::Url::parse(&url).map_err(|_| bad())?;
    Ok(url)
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS
}

impl AdminClient {
    pub fn new(addr: &str, token: &str) -> Result<AdminClient, AdminError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|_| AdminError::BadAddress {
                addr: addr.chars().take(100).collect(),
            })?;
        Ok(AdminClient {
            http,
            base: base_url(addr)?,
            token: token.to_string(),
        })
    }

    /// One call with retries; returns the JSON body of a 2xx answer.
    async fn call(
        &self,
        method: Method,
        route: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminError> {
        let mut backoff = BACKOFF_FIRST;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS_MAX {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{route}", self.base))
                .bearer_auth(&self.token);
            if let Some(body) = body {
                request = request.json(body);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    return response.json().await.map_err(|_| AdminError::BadResponse {
                        route: route.to_string(),
                        what: "body is not JSON",
                    });
                }
                Ok(response) if retryable(response.status()) => {
                    last = format!("HTTP {}", response.status().as_u16());
                }
                Ok(response) => {
                    return Err(AdminError::Status {
                        method,
                        route: route.to_string(),
                        status: response.status().as_u16(),
                    })
                }
                // The error text names the URL and the cause, never a request body.
                Err(e) => last = e.without_url().to_string(),
            }
            if attempt < ATTEMPTS_MAX {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(AdminError::RetriesExhausted {
            method,
            route: route.to_string(),
            attempts: ATTEMPTS_MAX,
            last,
        })
    }

    fn id_of(route: &str, value: &Value) -> Result<String, AdminError> {
        value["id"]
            .as_str()
            .filter(|id| id.len() <= 64)
            .map(str::to_string)
            .ok_or(AdminError::BadResponse {
                route: route.to_string(),
                what: "no \"id\"",
            })
    }

    /// Creates a USD account funded with `fund_minor` and one cardholder on it; returns
    /// (account id, cardholder id).
    pub async fn account_with_holder(
        &self,
        number: u32,
        fund_minor: i64,
    ) -> Result<(String, String), AdminError> {
        let route = "/v1/accounts";
        let account = self
            .call(Method::POST, route, Some(&json!({"currency": "usd"})))
            .await?;
        let account = Self::id_of(route, &account)?;
        if fund_minor > 0 {
            let route = format!("/v1/accounts/{account}/fundings");
            let body = json!({"amount": fund_minor});
            self.call(Method::POST, &route, Some(&body)).await?;
        }
        let route = "/v1/cardholders";
        let body = json!({"account": account, "name": format!("Loadtest Holder {number}")});
        let holder = self.call(Method::POST, route, Some(&body)).await?;
        Ok((account, Self::id_of(route, &holder)?))
    }

    /// Creates one card per entry of `holders` (at most `BULK_CARDS_MAX`); returns the PANs
    /// in the same order, `None` where the switch refused one.
    pub async fn bulk_cards(&self, holders: &[&str]) -> Result<Vec<Option<Pan>>, AdminError> {
        assert!(holders.len() <= BULK_CARDS_MAX);
        let route = "/v1/bulk/cards";
        let cards: Vec<Value> = holders
            .iter()
            .map(|h| json!({"cardholder": h, "exp_month": EXP_MONTH, "exp_year": EXP_YEAR}))
            .collect();
        let answer = self
            .call(Method::POST, route, Some(&json!({"cards": cards})))
            .await?;
        let bad = |what| AdminError::BadResponse {
            route: route.to_string(),
            what,
        };
        let data = answer["data"].as_array().ok_or(bad("no \"data\" list"))?;
        if data.len() != holders.len() {
            return Err(bad("\"data\" does not have one entry per card"));
        }
        Ok(data
            .iter()
            .map(|entry| {
                entry["number"]
                    .as_str()
                    .and_then(|n| Pan::from_digits(n.as_bytes()))
            })
            .collect())
    }

    pub async fn balance(&self, account: &str) -> Result<Balance, AdminError> {
        let route = format!("/v1/accounts/{account}");
        let value = self.call(Method::GET, &route, None).await?;
        let field = |name: &str| value["balance"][name].as_i64();
        match (field("available"), field("held"), field("spent")) {
            (Some(available), Some(held), spent) => Ok(Balance {
                available_minor: available,
                held_minor: held,
                spent_minor: spent.unwrap_or(0),
            }),
            _ => Err(AdminError::BadResponse {
                route,
                what: "no balance.available / balance.held",
            }),
        }
    }
}

/// Provisions `accounts` funded accounts with one cardholder each, and `cards` cards spread
/// round robin over them.
pub async fn provision(
    client: &AdminClient,
    cards: u32,
    accounts: u32,
    fund_minor: i64,
) -> Result<Portfolio, AdminError> {
    let created: Vec<Result<(String, String), AdminError>> = stream::iter(0..accounts)
        .map(|i| client.account_with_holder(i, fund_minor))
        .buffered(CONCURRENCY_MAX)
        .collect()
        .await;
    let created: Vec<(String, String)> = created.into_iter().collect::<Result<_, _>>()?;
    let holders: Vec<&str> = (0..cards as usize)
        .map(|c| created[c % created.len()].1.as_str())
        .collect();
    let mut portfolio = Portfolio {
        cards: Vec::with_capacity(cards as usize),
        account_ids: created.iter().map(|(a, _)| a.clone()).collect(),
    };
    let mut failed = 0;
    for (chunk_index, chunk) in holders.chunks(BULK_CARDS_MAX).enumerate() {
        let pans = client.bulk_cards(chunk).await?;
        for (offset, pan) in pans.into_iter().enumerate() {
            let c = chunk_index * BULK_CARDS_MAX + offset;
            match pan {
                Some(pan) => portfolio.cards.push(Card::new(
                    pan,
                    EXPIRY_YYMM_DEFAULT,
                    (c % created.len()) as u32,
                )),
                None => failed += 1,
            }
        }
    }
    if portfolio.cards.is_empty() {
        return Err(AdminError::CardsRejected {
            failed,
            asked: cards as usize,
        });
    }
    if failed > 0 {
        eprintln!("loadtest: {failed} of {cards} cards were not created; running with the rest");
    }
    Ok(portfolio)
}

/// Balances of `ids`, in order.
pub async fn read_balances(
    client: &AdminClient,
    ids: &[String],
) -> Result<Vec<Balance>, AdminError> {
    let read: Vec<Result<Balance, AdminError>> = stream::iter(ids)
        .map(|id| client.balance(id))
        .buffered(CONCURRENCY_MAX)
        .collect()
        .await;
    read.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_become_base_urls() {
        assert_eq!(base_url("127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(
            base_url("http://localhost:8080/").unwrap(),
            "http://localhost:8080"
        );
        assert!(matches!(
            base_url("https://x:1"),
            Err(AdminError::BadAddress { .. })
        ));
        assert!(matches!(base_url(""), Err(AdminError::BadAddress { .. })));
    }
}
