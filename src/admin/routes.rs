//! Admin API handlers: parse and validate the request, send a command or query to the owning
//! shard, render the object.

use std::str::FromStr;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::cards::{generate_number, validate_number};
use super::error::{parse_body, ApiError};
use super::AdminState;
use crate::config::Config;
use crate::domain::controls::{SpendingControls, SpendingLimit};
use crate::domain::{
    AccountId, AccountStatus, AuthorizationId, CardId, CardStatus, CardholderId, CardholderStatus,
    Currency,
};
use crate::domain::{ShardOwned, TransactionId};
use crate::ledger::platform::WEBHOOK_DEADLINE_MS_DEFAULT;
use crate::ledger::{Command, CommandError, Outcome, ProgramConfig, Query, QueryResult};
use crate::ledger::{MerchantData, TimeoutDecision, WebhookConfig};

/// Most cards in one bulk request.
pub const BULK_CARDS_MAX: usize = 10_000;
/// Most authorizations in one list response.
pub const LIST_LIMIT_MAX: usize = 100;

type ApiResult = Result<Json<Value>, ApiError>;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/v1/accounts", post(create_account))
        .route("/v1/accounts/{id}", get(get_account).post(update_account))
        .route("/v1/accounts/{id}/fundings", post(fund_account))
        .route("/v1/cardholders", post(create_cardholder))
        .route(
            "/v1/cardholders/{id}",
            get(get_cardholder).post(update_cardholder),
        )
        .route("/v1/cards", post(create_card))
        .route("/v1/cards/{id}", get(get_card).post(update_card))
        .route("/v1/bulk/cards", post(bulk_cards))
        .route("/v1/authorizations", get(list_authorizations))
        .route("/v1/authorizations/{id}", get(get_authorization))
        .route(
            "/v1/authorizations/{id}/capture",
            post(capture_authorization),
        )
        .route("/v1/transactions/force_capture", post(force_capture))
        .route("/v1/transactions/{id}", get(get_transaction))
        .route("/v1/transactions/{id}/refund", post(refund_transaction))
}

/// An id in a path: malformed, or on a shard this switch does not run, it names no object.
fn parse_id<T: FromStr + ShardOwned>(
    state: &AdminState,
    param: &str,
    text: &str,
) -> Result<T, ApiError> {
    T::from_str(text)
        .ok()
        .filter(|id| runs_shard(state, *id))
        .ok_or_else(|| ApiError::not_found(param))
}

/// An id in a body: malformed is a 400 naming the parameter (a 404 is for a well-formed id of
/// an object that does not exist, on a shard this switch does not run too).
fn body_id<T: FromStr + ShardOwned>(
    state: &AdminState,
    param: &str,
    text: &str,
) -> Result<T, ApiError> {
    let id = well_formed_id(param, text)?;
    if !runs_shard(state, id) {
        return Err(ApiError::not_found(param));
    }
    Ok(id)
}

fn well_formed_id<T: FromStr>(param: &str, text: &str) -> Result<T, ApiError> {
    T::from_str(text).map_err(|_| ApiError::invalid(param, format!("not a valid {param} id")))
}

/// Whether the shard named in an id's top bits is one this switch runs. Any 16 bits parse, and
/// the runtime has no queue for the others: without this check such an id got 503
/// "overloaded" instead of the 404 of an unknown id on a shard it runs.
fn runs_shard(state: &AdminState, id: impl ShardOwned) -> bool {
    usize::from(id.owner_shard()) < state.inner.ledger.shard_count()
}

/// Runs a command on a shard and turns its rejection into an API error.
async fn command(state: &AdminState, shard: u16, cmd: Command) -> Result<Outcome, ApiError> {
    match state.inner.ledger.command(shard, cmd).await? {
        Outcome::Rejected(error) => Err(rejected(error)),
        outcome => Ok(outcome),
    }
}

fn rejected(error: CommandError) -> ApiError {
    match error {
        CommandError::NotFound { param } => ApiError::not_found(param),
        CommandError::Invalid { param, reason } => ApiError::invalid(param, reason),
        CommandError::Controls(e) => ApiError::invalid("spending_controls", e.to_string()),
        CommandError::CapacityReached { what } => {
            ApiError::invalid(what, "this shard holds as many as it can")
        }
        CommandError::Overflow { param } => ApiError::invalid(param, "amount overflow"),
    }
}

async fn query(state: &AdminState, shard: u16, q: Query) -> Result<QueryResult, ApiError> {
    Ok(state.inner.ledger.query(shard, q).await?)
}

// ---- accounts -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountBody {
    currency: String,
}

async fn create_account(State(state): State<AdminState>, body: Bytes) -> ApiResult {
    let body: CreateAccountBody = parse_body(&body)?;
    let currency = Currency::from_alpha(&body.currency.to_ascii_lowercase())
        .ok_or_else(|| ApiError::invalid("currency", "not an ISO 4217 currency code"))?;
    let shards = state.inner.ledger.shard_count();
    let shard = (state.inner.next_shard.fetch_add(1, Ordering::Relaxed) % shards) as u16;
    let Outcome::AccountCreated(id) =
        command(&state, shard, Command::CreateAccount { currency }).await?
    else {
        return Err(ApiError::invalid("currency", "unexpected outcome"));
    };
    account_json(&state, id).await
}

async fn account_json(state: &AdminState, id: AccountId) -> ApiResult {
    match query(state, id.shard(), Query::GetAccount(id)).await? {
        QueryResult::Account(view) => Ok(Json(with_object("account", &view))),
        _ => Err(ApiError::not_found("account")),
    }
}

async fn get_account(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    account_json(&state, parse_id(&state, "account", &id)?).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountBody {
    status: Option<AccountStatus>,
    /// Absent: unchanged; `null`: removed; an object: set.
    #[serde(default, deserialize_with = "present")]
    authorization_webhook: Option<Option<WebhookBody>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
    secret: String,
    deadline_ms: Option<u32>,
    on_timeout: Option<TimeoutDecision>,
}

/// Tells a present field (even `null`) from an absent one (`default` gives `None`).
fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

async fn update_account(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let account: AccountId = parse_id(&state, "account", &id)?;
    let body: UpdateAccountBody = parse_body(&body)?;
    let webhook = body.authorization_webhook.map(|w| {
        w.map(|w| WebhookConfig {
            url: w.url,
            secret: w.secret,
            deadline_ms: w.deadline_ms.unwrap_or(WEBHOOK_DEADLINE_MS_DEFAULT),
            on_timeout: w.on_timeout.unwrap_or(TimeoutDecision::Decline),
        })
    });
    // Checked before anything changes, so a bad endpoint leaves the status alone too.
    if let Some(Some(w)) = &webhook {
        w.validate().map_err(rejected)?;
    }
    command(
        &state,
        account.shard(),
        Command::UpdateAccount {
            account,
            status: body.status,
        },
    )
    .await?;
    if let Some(webhook) = webhook {
        let cmd = Command::SetAuthorizationWebhook { account, webhook };
        command(&state, account.shard(), cmd).await?;
    }
    account_json(&state, account).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FundingBody {
    amount: i64,
}

async fn fund_account(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let account: AccountId = parse_id(&state, "account", &id)?;
    let body: FundingBody = parse_body(&body)?;
    if body.amount <= 0 {
        return Err(ApiError::invalid(
            "amount",
            "must be a positive integer (minor units)",
        ));
    }
    let fund = Command::Fund {
        account,
        amount_minor: body.amount,
    };
    command(&state, account.shard(), fund).await?;
    account_json(&state, account).await
}

// ---- cardholders ----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCardholderBody {
    account: String,
    name: String,
    status: Option<CardholderStatus>,
    spending_controls: Option<SpendingControls>,
}

/// Longest cardholder name accepted.
const NAME_LEN_MAX: usize = 200;

async fn create_cardholder(State(state): State<AdminState>, body: Bytes) -> ApiResult {
    let body: CreateCardholderBody = parse_body(&body)?;
    let account: AccountId = body_id(&state, "account", &body.account)?;
    if body.name.trim().is_empty() || body.name.len() > NAME_LEN_MAX {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    let create = Command::CreateCardholder {
        account,
        name: body.name,
        status: body.status.unwrap_or(CardholderStatus::Active),
        spending_controls: body.spending_controls.unwrap_or_default(),
    };
    let Outcome::CardholderCreated(id) = command(&state, account.shard(), create).await? else {
        return Err(ApiError::invalid("account", "unexpected outcome"));
    };
    cardholder_json(&state, id).await
}

async fn cardholder_json(state: &AdminState, id: CardholderId) -> ApiResult {
    match query(state, id.shard(), Query::GetCardholder(id)).await? {
        QueryResult::Cardholder(view) => Ok(Json(with_object("issuing.cardholder", &view))),
        _ => Err(ApiError::not_found("cardholder")),
    }
}

async fn get_cardholder(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    cardholder_json(&state, parse_id(&state, "cardholder", &id)?).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCardholderBody {
    name: Option<String>,
    status: Option<CardholderStatus>,
    spending_controls: Option<SpendingControls>,
}

async fn update_cardholder(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let cardholder: CardholderId = parse_id(&state, "cardholder", &id)?;
    let body: UpdateCardholderBody = parse_body(&body)?;
    if let Some(name) = &body.name {
        if name.trim().is_empty() || name.len() > NAME_LEN_MAX {
            return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
        }
    }
    let update = Command::UpdateCardholder {
        cardholder,
        name: body.name,
        status: body.status,
        spending_controls: body.spending_controls,
    };
    command(&state, cardholder.shard(), update).await?;
    cardholder_json(&state, cardholder).await
}

// ---- cards ----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCardBody {
    pub cardholder: String,
    pub number: Option<String>,
    pub exp_month: u8,
    pub exp_year: u16,
    pub status: Option<CardStatus>,
    pub spending_controls: Option<SpendingControls>,
    pub replacement_for: Option<String>,
}

/// Creates one card; returns its id and, when the switch generated the number, the number.
pub async fn create_card_inner(
    state: &AdminState,
    body: CreateCardBody,
) -> Result<(CardId, Option<String>), ApiError> {
    let cardholder: CardholderId = body_id(state, "cardholder", &body.cardholder)?;
    if !(1..=12).contains(&body.exp_month) {
        return Err(ApiError::invalid("exp_month", "must be 1 to 12"));
    }
    if !(2000..=2099).contains(&body.exp_year) {
        return Err(ApiError::invalid(
            "exp_year",
            "must be a four-digit year 2000 to 2099",
        ));
    }
    let replacement_for = match &body.replacement_for {
        Some(text) => Some(body_id::<CardId>(state, "replacement_for", text)?),
        None => None,
    };
    let ledger = &state.inner.ledger;
    let (number, generated) = match body.number {
        Some(number) => {
            validate_number(&number).map_err(|reason| ApiError::invalid("number", reason))?;
            (number, false)
        }
        None => {
            let taken = |digits: &[u8]| ledger.index.contains(&ledger.hasher.hash(digits));
            let inner = &state.inner;
            let number = generate_number(&inner.card_bin, inner.card_number_len, taken)
                .ok_or_else(|| {
                    ApiError::invalid("number", "no unused number could be generated")
                })?;
            (number, true)
        }
    };
    let pan_hash = ledger.hasher.hash(number.as_bytes());
    if !ledger.index.reserve(pan_hash) {
        return Err(ApiError::invalid(
            "number",
            "a card with this number already exists",
        ));
    }
    let mut last4 = [0u8; 4];
    last4.copy_from_slice(&number.as_bytes()[number.len() - 4..]);
    let create = Command::CreateCard {
        cardholder,
        pan_hash,
        last4,
        exp_month: body.exp_month,
        exp_year: body.exp_year,
        status: body.status.unwrap_or(CardStatus::Active),
        spending_controls: body.spending_controls.unwrap_or_default(),
        replacement_for,
    };
    match command(state, cardholder.shard(), create).await {
        Ok(Outcome::CardCreated(id)) => {
            ledger.index.insert(pan_hash, id);
            Ok((id, generated.then_some(number)))
        }
        Ok(_) => {
            ledger.index.release(&pan_hash);
            Err(ApiError::invalid("cardholder", "unexpected outcome"))
        }
        Err(error) => {
            ledger.index.release(&pan_hash);
            Err(error)
        }
    }
}

async fn create_card(State(state): State<AdminState>, body: Bytes) -> ApiResult {
    let body: CreateCardBody = parse_body(&body)?;
    let (id, number) = create_card_inner(&state, body).await?;
    let mut card = card_json(&state, id).await?;
    if let Some(number) = number {
        card.0["number"] = Value::String(number);
    }
    Ok(card)
}

async fn card_json(state: &AdminState, id: CardId) -> ApiResult {
    match query(state, id.shard(), Query::GetCard(id)).await? {
        QueryResult::Card(view) => Ok(Json(with_object("issuing.card", &view))),
        _ => Err(ApiError::not_found("card")),
    }
}

async fn get_card(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    card_json(&state, parse_id(&state, "card", &id)?).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCardBody {
    status: Option<CardStatus>,
    spending_controls: Option<SpendingControls>,
}

async fn update_card(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let card: CardId = parse_id(&state, "card", &id)?;
    let body: UpdateCardBody = parse_body(&body)?;
    let update = Command::UpdateCard {
        card,
        status: body.status,
        spending_controls: body.spending_controls,
    };
    command(&state, card.shard(), update).await?;
    card_json(&state, card).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkCardsBody {
    cards: Vec<CreateCardBody>,
}

/// Creates up to `BULK_CARDS_MAX` cards. All are validated first; creation then runs
/// concurrently (the shards batch the commands into few WAL syncs). Each result is the card or
/// the error for that item, in request order.
async fn bulk_cards(State(state): State<AdminState>, body: Bytes) -> ApiResult {
    let body: BulkCardsBody = parse_body(&body)?;
    if body.cards.is_empty() || body.cards.len() > BULK_CARDS_MAX {
        return Err(ApiError::invalid(
            "cards",
            format!("must hold 1 to {BULK_CARDS_MAX} cards"),
        ));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, card) in body.cards.into_iter().enumerate() {
        let state = state.clone();
        tasks.spawn(async move { (i, create_card_inner(&state, card).await) });
    }
    let mut results: Vec<Value> = vec![Value::Null; tasks.len()];
    let mut created = 0usize;
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.map_err(|_| ApiError::invalid("cards", "internal error"))?;
        results[i] = match result {
            Ok((id, number)) => {
                created += 1;
                let mut item = json!({"id": id.to_string(), "object": "issuing.card"});
                if let Some(number) = number {
                    item["number"] = Value::String(number);
                }
                item
            }
            Err(error) => json!({"error": error_json(&error)}),
        };
    }
    Ok(Json(
        json!({"object": "list", "created": created, "data": results}),
    ))
}

fn error_json(error: &ApiError) -> Value {
    match error {
        ApiError::Invalid { param, message } => json!({"param": param, "message": message}),
        ApiError::NotFound { param } => json!({"param": param, "message": "no such object"}),
        ApiError::Unauthenticated => json!({"message": "unauthenticated"}),
        ApiError::Unavailable { message } => json!({"message": message}),
    }
}

// ---- authorizations -------------------------------------------------------------------------

async fn get_authorization(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let id: AuthorizationId = parse_id(&state, "authorization", &id)?;
    match query(&state, id.shard(), Query::GetAuthorization(id)).await? {
        QueryResult::Authorization(view) => Ok(Json(with_object("issuing.authorization", &view))),
        _ => Err(ApiError::not_found("authorization")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    card: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

async fn list_authorizations(
    State(state): State<AdminState>,
    UrlQuery(params): UrlQuery<ListParams>,
) -> ApiResult {
    let limit = params.limit.unwrap_or(10);
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(ApiError::invalid("limit", "must be 1 to 100"));
    }
    let card = match &params.card {
        Some(text) => Some(well_formed_id::<CardId>("card", text)?),
        None => None,
    };
    let status = match &params.status {
        Some(text) => Some(
            serde_json::from_value(Value::String(text.clone()))
                .map_err(|_| ApiError::invalid("status", "pending, closed, reversed or expired"))?,
        ),
        None => None,
    };
    let shards: Vec<u16> = match card {
        // An unknown card lists nothing, on a shard this switch does not run too.
        Some(card) if runs_shard(&state, card) => vec![card.shard()],
        Some(_) => Vec::new(),
        None => (0..state.inner.ledger.shard_count() as u16).collect(),
    };
    let mut data = Vec::new();
    for shard in shards {
        // One more than the page from each shard: whether there are more is then known.
        let list = Query::ListAuthorizations {
            card,
            status,
            limit: limit as u32 + 1,
        };
        if let QueryResult::Authorizations(views) = query(&state, shard, list).await? {
            data.extend(
                views
                    .iter()
                    .map(|v| with_object("issuing.authorization", v)),
            );
        }
    }
    data.sort_by(|a, b| b["created"].as_i64().cmp(&a["created"].as_i64()));
    let has_more = data.len() > limit;
    data.truncate(limit);
    Ok(Json(
        json!({"object": "list", "data": data, "has_more": has_more}),
    ))
}

// ---- captures, refunds, transactions ----------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureBody {
    amount: i64,
    close_authorization: Option<bool>,
}

/// Clearing: full, partial or over-capture of an authorization. Never declined by controls or
/// card status; an over-capture takes the difference from available, even below zero, and
/// is flagged in the transaction (`over_capture`).
async fn capture_authorization(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let authorization: AuthorizationId = parse_id(&state, "authorization", &id)?;
    let body: CaptureBody = parse_body(&body)?;
    if body.amount <= 0 {
        return Err(ApiError::invalid(
            "amount",
            "must be a positive integer (minor units)",
        ));
    }
    let capture = Command::Capture {
        authorization,
        amount_minor: body.amount,
        close_authorization: body.close_authorization.unwrap_or(true),
    };
    match command(&state, authorization.shard(), capture).await? {
        Outcome::Captured {
            transaction,
            over_capture_minor,
            ..
        } => {
            let mut json = transaction_json(&state, transaction).await?;
            json.0["over_capture"] = json!(over_capture_minor);
            Ok(json)
        }
        _ => Err(ApiError::invalid("authorization", "unexpected outcome")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    amount: Option<i64>,
}

async fn refund_transaction(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let transaction: TransactionId = parse_id(&state, "transaction", &id)?;
    let body: RefundBody = parse_body(&body)?;
    if body.amount.is_some_and(|a| a <= 0) {
        return Err(ApiError::invalid(
            "amount",
            "must be a positive integer (minor units)",
        ));
    }
    let refund = Command::Refund {
        transaction,
        amount_minor: body.amount,
    };
    match command(&state, transaction.shard(), refund).await? {
        Outcome::Refunded {
            transaction: refund,
            ..
        } => transaction_json(&state, refund).await,
        _ => Err(ApiError::invalid("transaction", "unexpected outcome")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MerchantBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    terminal_id: String,
    #[serde(default)]
    network_id: String,
    #[serde(default)]
    category_code: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceCaptureBody {
    card: String,
    amount: i64,
    #[serde(default)]
    merchant_data: Option<MerchantBody>,
}

/// A capture the network clears without an authorization.
async fn force_capture(State(state): State<AdminState>, body: Bytes) -> ApiResult {
    let body: ForceCaptureBody = parse_body(&body)?;
    let card: CardId = body_id(&state, "card", &body.card)?;
    if body.amount <= 0 {
        return Err(ApiError::invalid(
            "amount",
            "must be a positive integer (minor units)",
        ));
    }
    let m = body.merchant_data.unwrap_or(MerchantBody {
        name: String::new(),
        city: String::new(),
        country: String::new(),
        terminal_id: String::new(),
        network_id: String::new(),
        category_code: 0,
    });
    if m.category_code > 9999 {
        return Err(ApiError::invalid(
            "merchant_data.category_code",
            "an MCC is 0 to 9999",
        ));
    }
    let merchant = MerchantData::new(
        m.name.as_bytes(),
        m.city.as_bytes(),
        m.country.as_bytes(),
        m.terminal_id.as_bytes(),
        m.network_id.as_bytes(),
    );
    let capture = Command::ForceCapture {
        card,
        amount_minor: body.amount,
        mcc: m.category_code,
        merchant,
    };
    match command(&state, card.shard(), capture).await? {
        Outcome::Captured { transaction, .. } => transaction_json(&state, transaction).await,
        _ => Err(ApiError::invalid("card", "unexpected outcome")),
    }
}

async fn transaction_json(state: &AdminState, id: TransactionId) -> ApiResult {
    match query(state, id.shard(), Query::GetTransaction(id)).await? {
        QueryResult::Transaction(view) => Ok(Json(with_object("issuing.transaction", &view))),
        _ => Err(ApiError::not_found("transaction")),
    }
}

async fn get_transaction(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    transaction_json(&state, parse_id(&state, "transaction", &id)?).await
}

/// Serializes a view and adds Stripe's `object` field.
fn with_object<T: serde::Serialize>(object: &str, view: &T) -> Value {
    let mut value = serde_json::to_value(view).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("object".to_string(), Value::String(object.to_string()));
    }
    value
}

/// The program configuration from the config file.
pub fn program_config(config: &Config) -> Result<ProgramConfig, String> {
    let mut limits = Vec::with_capacity(config.ledger.default_spending_limits.len());
    for limit in &config.ledger.default_spending_limits {
        let value = json!({"amount": limit.amount, "interval": limit.interval,
                           "categories": limit.categories});
        let limit: SpendingLimit = serde_json::from_value(value).map_err(|e| e.to_string())?;
        limits.push(limit);
    }
    crate::domain::controls::validate_limits(&limits).map_err(|e| e.to_string())?;
    Ok(ProgramConfig {
        default_spending_limits: limits,
        hold_expiry_s: config.ledger.hold_expiry_s,
        hold_expiry_lodging_s: config.ledger.hold_expiry_extended_s,
        retention_s: config.ledger.authorization_retention_s,
        authorizations_max: config.ledger.authorizations_per_shard_max,
    })
}
