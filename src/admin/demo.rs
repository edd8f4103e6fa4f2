//! `serve --demo`: a funded demo account with a cardholder and three cards, so a newcomer sees
//! an approval within a minute. The cards use the card networks' public test numbers; they
//! are printed to standard output once (this is the demo's purpose), never logged. A restart
//! on the same data directory finds them and creates nothing twice.

use std::net::SocketAddr;

use super::routes::{create_card_inner, CreateCardBody};
use super::AdminState;
use crate::app::{TokenSource, ADMIN_TOKEN_ENV};
use crate::config::Config;
use crate::domain::{CardholderStatus, Currency};
use crate::ledger::{Command, Outcome};

/// Public test card numbers (Luhn-valid, not real cards).
pub const DEMO_CARDS: [&str; 3] = ["4242424242424242", "4000056655665556", "5555555555554444"];
/// What the demo account is funded with, in minor units (USD 10 000.00).
pub const DEMO_FUNDING_MINOR: i64 = 1_000_000;

pub async fn create(
    state: &AdminState,
    config: &Config,
    iso: Option<SocketAddr>,
    token: &TokenSource,
) {
    let ledger = &state.inner.ledger;
    let target = iso.unwrap_or(config.server.listen);
    if ledger.route(DEMO_CARDS[0].as_bytes()).is_some() {
        print_usage(target, config, None, token);
        return;
    }
    match create_demo(state).await {
        Ok(account) => print_usage(target, config, Some(account), token),
        Err(message) => tracing::error!(message, "cannot create the demo data"),
    }
}

async fn create_demo(state: &AdminState) -> Result<String, String> {
    let ledger = &state.inner.ledger;
    let usd = Currency::from_alpha("usd").ok_or("usd is unknown")?;
    let account = match ledger
        .command(0, Command::CreateAccount { currency: usd })
        .await
    {
        Ok(Outcome::AccountCreated(id)) => id,
        other => return Err(format!("create account: {other:?}")),
    };
    let fund = Command::Fund {
        account,
        amount_minor: DEMO_FUNDING_MINOR,
    };
    ledger
        .command(0, fund)
        .await
        .map_err(|e| format!("fund: {e:?}"))?;
    let holder = Command::CreateCardholder {
        account,
        name: "Demo Cardholder".to_string(),
        status: CardholderStatus::Active,
        spending_controls: Default::default(),
    };
    let cardholder = match ledger.command(account.shard(), holder).await {
        Ok(Outcome::CardholderCreated(id)) => id,
        other => return Err(format!("create cardholder: {other:?}")),
    };
    let days = crate::ledger::shard::unix_now_s().div_euclid(86_400);
    let exp_year = crate::domain::calendar::civil_from_days(days).0 + 4;
    for number in DEMO_CARDS {
        let body = CreateCardBody {
            cardholder: cardholder.to_string(),
            number: Some(number.to_string()),
            exp_month: 12,
            exp_year: exp_year as u16,
            status: None,
            spending_controls: None,
            replacement_for: None,
        };
        create_card_inner(state, body)
            .await
            .map_err(|e| format!("create card: {e:?}"))?;
    }
    Ok(account.to_string())
}

fn print_usage(target: SocketAddr, config: &Config, account: Option<String>, token: &TokenSource) {
    let admin = config.admin.listen;
    println!();
    match &account {
        Some(id) => println!("Demo ready: account {id} funded with USD 10000.00, cards:"),
        None => println!("Demo data already present, cards:"),
    }
    for number in DEMO_CARDS {
        println!("  {number}");
    }
    println!("Send an echo and an authorization (USD 12.50) from another terminal:");
    println!("  cargo run --release -- send --target {target} --mti 0800");
    println!(
        "  cargo run --release -- send --target {target} --pan {} --amount 1250",
        DEMO_CARDS[0]
    );
    if let Some(id) = account {
        let (place, header) = token_hint(token);
        println!("Then look at the balance (token {place}):");
        println!("  curl -s -H \"Authorization: Bearer {header}\" http://{admin}/v1/accounts/{id}");
    }
    println!();
}

/// Where the admin token is, and how a shell command names it: the hint must follow the
/// token actually in force (`app::admin_token`), or the printed command answers 401.
fn token_hint(token: &TokenSource) -> (String, String) {
    match token {
        TokenSource::Environment => (
            format!("in ${ADMIN_TOKEN_ENV}"),
            format!("${ADMIN_TOKEN_ENV}"),
        ),
        TokenSource::Config => (
            "in the config file's admin.token".to_string(),
            "<admin.token>".to_string(),
        ),
        TokenSource::File(path) => (
            format!("in {}", path.display()),
            format!("$(cat {})", path.display()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_hint_follows_where_the_token_came_from() {
        assert_eq!(
            token_hint(&TokenSource::Environment),
            (
                "in $AUTHSWITCH_ADMIN_TOKEN".to_string(),
                "$AUTHSWITCH_ADMIN_TOKEN".to_string()
            )
        );
        assert_eq!(
            token_hint(&TokenSource::Config).0,
            "in the config file's admin.token"
        );
        let path = std::path::PathBuf::from("/data/admin.token");
        assert_eq!(
            token_hint(&TokenSource::File(path)),
            (
                "in /data/admin.token".to_string(),
                "$(cat /data/admin.token)".to_string()
            )
        );
    }
}
