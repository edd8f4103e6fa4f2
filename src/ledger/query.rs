//! Read-only queries (not logged) and the plain view structs the admin API renders
//! Stripe-like. Ids are rendered as their strings, currencies as lowercase alpha codes.

use super::records::{AuthStatus, Authorization, RequestEntry, Transaction, TransactionKind};
use super::state::ShardState;
use crate::domain::controls::SpendingControls;
use crate::domain::entities::{Account, Card, Cardholder};
use crate::domain::{
    AccountId, AccountStatus, AuthorizationId, CardId, CardStatus, CardholderId, CardholderStatus,
    Currency, TransactionId,
};
use serde::Serialize;

/// Most authorizations one list returns.
pub const LIST_LIMIT_MAX: u32 = 100;
/// Most authorization slots one list looks at (newest first).
pub const LIST_SCAN_MAX: usize = 100_000;

/// A read of shard state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    GetAccount(AccountId),
    GetCardholder(CardholderId),
    GetCard(CardId),
    GetAuthorization(AuthorizationId),
    GetTransaction(TransactionId),
    /// Newest first; `limit` is capped at `LIST_LIMIT_MAX` + 1 (a page and one more).
    ListAuthorizations {
        card: Option<CardId>,
        status: Option<AuthStatus>,
        limit: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BalanceView {
    pub available: i64,
    pub held: i64,
    pub spent: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountView {
    pub id: String,
    pub currency: &'static str,
    pub status: AccountStatus,
    pub balance: BalanceView,
    pub funded: i64,
    pub refunded: i64,
    /// The decision endpoint, without its secret.
    pub authorization_webhook: Option<WebhookView>,
}

/// An account's decision endpoint as the API shows it (never the secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookView {
    pub url: String,
    pub deadline_ms: u32,
    pub on_timeout: super::platform::TimeoutDecision,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CardholderView {
    pub id: String,
    pub account: String,
    pub name: String,
    pub status: CardholderStatus,
    pub spending_controls: SpendingControls,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CardView {
    pub id: String,
    pub cardholder: String,
    pub last4: String,
    pub exp_month: u8,
    pub exp_year: u16,
    pub status: CardStatus,
    pub spending_controls: SpendingControls,
    pub replacement_for: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MerchantView {
    pub name: String,
    pub city: String,
    pub country: String,
    pub terminal_id: String,
    pub network_id: String,
    pub category_code: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestView {
    pub kind: super::records::RequestKind,
    pub amount: i64,
    pub approved_amount: i64,
    pub approved: bool,
    pub reason: Option<&'static str>,
    pub response_code: String,
    pub created: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthorizationView {
    pub id: String,
    pub card: String,
    pub status: AuthStatus,
    pub approved: bool,
    /// Approved amount, account currency.
    pub amount: i64,
    pub held: i64,
    pub captured: i64,
    pub merchant_amount: i64,
    pub merchant_currency: Option<&'static str>,
    pub currency: &'static str,
    pub merchant_data: MerchantView,
    pub created: i64,
    pub request_history: Vec<RequestView>,
    pub transactions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransactionView {
    pub id: String,
    pub kind: TransactionKind,
    pub card: String,
    pub authorization: Option<String>,
    pub amount: i64,
    pub refunded: i64,
    pub currency: &'static str,
    pub created: i64,
}

/// The answer to a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryResult {
    Account(AccountView),
    Cardholder(CardholderView),
    Card(CardView),
    Authorization(AuthorizationView),
    Transaction(TransactionView),
    Authorizations(Vec<AuthorizationView>),
    NotFound { param: &'static str },
}

fn controls_view(c: &Option<Box<SpendingControls>>) -> SpendingControls {
    c.as_deref().cloned().unwrap_or_default()
}

fn account_view(a: &Account, webhook: Option<&super::platform::WebhookConfig>) -> AccountView {
    AccountView {
        id: a.id.to_string(),
        currency: a.currency.alpha(),
        status: a.status,
        balance: BalanceView {
            available: a.available_minor,
            held: a.held_minor,
            spent: a.spent_minor,
        },
        funded: a.funded_minor,
        refunded: a.refunded_minor,
        authorization_webhook: webhook.map(|w| WebhookView {
            url: w.url.clone(),
            deadline_ms: w.deadline_ms,
            on_timeout: w.on_timeout,
        }),
    }
}

fn cardholder_view(h: &Cardholder) -> CardholderView {
    CardholderView {
        id: h.id.to_string(),
        account: h.account.to_string(),
        name: h.name.clone(),
        status: h.status,
        spending_controls: controls_view(&h.controls),
    }
}

fn card_view(c: &Card) -> CardView {
    CardView {
        id: c.id.to_string(),
        cardholder: c.cardholder.to_string(),
        last4: String::from_utf8_lossy(&c.last4).into_owned(),
        exp_month: c.exp_month,
        exp_year: c.exp_year,
        status: c.status,
        spending_controls: controls_view(&c.controls),
        replacement_for: c.replacement_for.map(|r| r.to_string()),
    }
}

fn request_view(e: &RequestEntry) -> RequestView {
    RequestView {
        kind: e.kind,
        amount: e.amount_minor,
        approved_amount: e.approved_minor,
        approved: e.code.is_approval(),
        reason: e.reason.map(|r| r.as_str()),
        response_code: e.code.to_string(),
        created: e.created_s,
    }
}

impl ShardState {
    /// Answers a query at `now_s` (reads only).
    pub fn query(&self, q: &Query, _now_s: i64) -> QueryResult {
        let nf = |param| QueryResult::NotFound { param };
        match q {
            Query::GetAccount(id) => self.account_index(*id).map_or(nf("account"), |i| {
                QueryResult::Account(account_view(&self.accounts[i], self.webhook_of(i)))
            }),
            Query::GetCardholder(id) => self.cardholder_index(*id).map_or(nf("cardholder"), |i| {
                QueryResult::Cardholder(cardholder_view(&self.cardholders[i]))
            }),
            Query::GetCard(id) => self
                .card_index(*id)
                .map_or(nf("card"), |i| QueryResult::Card(card_view(&self.cards[i]))),
            Query::GetAuthorization(id) => match self.auth_by_id(*id) {
                Some(a) => QueryResult::Authorization(self.authorization_view(a)),
                None => nf("authorization"),
            },
            Query::GetTransaction(id) => match self.txn_by_id(*id) {
                Some(t) => QueryResult::Transaction(self.transaction_view(t)),
                None => nf("transaction"),
            },
            Query::ListAuthorizations {
                card,
                status,
                limit,
            } => QueryResult::Authorizations(self.list_authorizations(*card, *status, *limit)),
        }
    }

    fn auth_by_id(&self, id: AuthorizationId) -> Option<&Authorization> {
        (id.shard() == self.shard)
            .then(|| self.auth(id.seq()))
            .flatten()
    }

    fn txn_by_id(&self, id: TransactionId) -> Option<&Transaction> {
        (id.shard() == self.shard)
            .then(|| self.txn(id.seq()))
            .flatten()
    }

    fn account_currency_of(&self, card: CardId) -> Currency {
        let ci = self.card_index(card).expect("record of a missing card");
        self.accounts[self.card_account(ci)].currency
    }

    fn authorization_view(&self, a: &Authorization) -> AuthorizationView {
        let [name, city, country, terminal_id, network_id] = a.merchant.strings();
        AuthorizationView {
            id: a.id.to_string(),
            card: a.card.to_string(),
            status: a.status,
            approved: a.approved,
            amount: a.amount_minor,
            held: a.held_minor,
            captured: a.captured_minor,
            merchant_amount: a.merchant_amount_minor,
            merchant_currency: Currency::from_numeric(a.merchant_currency).map(Currency::alpha),
            currency: self.account_currency_of(a.card).alpha(),
            merchant_data: MerchantView {
                name,
                city,
                country,
                terminal_id,
                network_id,
                category_code: a.mcc,
            },
            created: a.created_s,
            request_history: a.history().map(request_view).collect(),
            transactions: a.transactions.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn transaction_view(&self, t: &Transaction) -> TransactionView {
        TransactionView {
            id: t.id.to_string(),
            kind: t.kind,
            card: t.card.to_string(),
            authorization: t.authorization.map(|a| a.to_string()),
            amount: t.amount_minor,
            refunded: t.refunded_minor,
            currency: self.account_currency_of(t.card).alpha(),
            created: t.created_s,
        }
    }

    fn list_authorizations(
        &self,
        card: Option<CardId>,
        status: Option<AuthStatus>,
        limit: u32,
    ) -> Vec<AuthorizationView> {
        // One more than a page: the caller tells from it whether there are more.
        let limit = limit.min(LIST_LIMIT_MAX + 1) as usize;
        self.auths
            .iter()
            .rev()
            .take(LIST_SCAN_MAX)
            .flatten()
            .filter(|a| card.is_none_or(|c| a.card == c) && status.is_none_or(|s| a.status == s))
            .take(limit)
            .map(|a| self.authorization_view(a))
            .collect()
    }
}
