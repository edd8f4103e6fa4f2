//! A randomized end-to-end test: thousands of mixed messages (authorizations, incrementals,
//! full and partial reversals, advices, captures over the API) against a model of the expected
//! balances kept by the test, with a restart of the switch in the middle. Every response code is
//! predicted by the model; every balance must match it to the minor unit, before and after the
//! restart, and every account must satisfy funded − spent − held + refunded = available.

mod common;

use std::collections::HashMap;

use authswitch::iso8583::{MessageBuilder, Mti};
use common::{de39, Client, Rng, Switch};
use serde_json::json;

const CARDS: usize = 16;
const ROUNDS: usize = 200;
const FUNDS: i64 = 50_000;

/// What the model knows of one approved authorization.
#[derive(Clone)]
struct Hold {
    stan: u32,
    held: i64,
    id: Option<String>,
}

#[derive(Default)]
struct Account {
    available: i64,
    held: i64,
    spent: i64,
    holds: Vec<Hold>,
}

struct Card {
    pan: String,
    account: String,
    card_id: String,
    acquirer: String,
}

fn de7(stan: u32) -> String {
    format!("1121{:06}", stan % 1_000_000)
}

fn auth(card: &Card, stan: u32, amount: i64, mti: u16) -> MessageBuilder<'static> {
    let pan: &'static str = Box::leak(card.pan.clone().into_boxed_str());
    let time: &'static str = Box::leak(de7(stan).into_boxed_str());
    let acquirer: &'static str = Box::leak(card.acquirer.clone().into_boxed_str());
    let mut b = MessageBuilder::new(Mti::new(mti));
    b.set_text(2, pan.as_bytes())
        .set_text(3, b"000000")
        .set_number(4, amount as u64)
        .set_text(7, time.as_bytes())
        .set_number(11, u64::from(stan))
        .set_number(18, 5999)
        .set_text(32, acquirer.as_bytes())
        .set_number(49, 840);
    if mti == 120 {
        b.set_text(39, b"00");
    }
    b
}

fn de90(card: &Card, stan: u32) -> &'static str {
    let text = format!("0100{stan:06}{}{:0>11}{:011}", de7(stan), card.acquirer, 0);
    Box::leak(text.into_boxed_str())
}

/// One planned message and the DE39 the model expects.
enum Step {
    Auth {
        amount: i64,
    },
    Incremental {
        target: usize,
        amount: i64,
    },
    Reversal {
        target: usize,
        replacement: Option<i64>,
    },
    Advice {
        amount: i64,
    },
}

fn plan(rng: &mut Rng, account: &Account) -> Step {
    let roll = rng.below(100);
    let pending = account.holds.len();
    if roll < 15 && pending > 0 {
        let target = rng.below(pending as u64) as usize;
        let held = account.holds[target].held;
        let replacement = if rng.below(2) == 0 && held > 1 {
            Some(1 + rng.below(held as u64 - 1) as i64)
        } else {
            None
        };
        return Step::Reversal {
            target,
            replacement,
        };
    }
    if roll < 25 && pending > 0 {
        let target = rng.below(pending as u64) as usize;
        return Step::Incremental {
            target,
            amount: 1 + rng.below(3_000) as i64,
        };
    }
    if roll < 30 {
        return Step::Advice {
            amount: 1 + rng.below(2_000) as i64,
        };
    }
    Step::Auth {
        amount: 1 + rng.below(6_000) as i64,
    }
}

/// Sends the step, returns the DE39 the model predicts, and updates the model as the switch
/// must have.
fn send(
    client: &mut Client,
    card: &Card,
    account: &mut Account,
    step: &Step,
    stan: u32,
) -> &'static str {
    match *step {
        Step::Auth { amount } => {
            client.send(&auth(card, stan, amount, 100));
            if amount <= account.available {
                account.available -= amount;
                account.held += amount;
                account.holds.push(Hold {
                    stan,
                    held: amount,
                    id: None,
                });
                "00"
            } else {
                "51"
            }
        }
        Step::Incremental { target, amount } => {
            let mut b = auth(card, stan, amount, 100);
            b.set_text(90, de90(card, account.holds[target].stan).as_bytes());
            client.send(&b);
            if amount <= account.available {
                account.available -= amount;
                account.held += amount;
                account.holds[target].held += amount;
                "00"
            } else {
                "51"
            }
        }
        Step::Reversal {
            target,
            replacement,
        } => {
            let hold = account.holds[target].clone();
            let mut b = auth(card, stan, hold.held, 400);
            b.set_text(90, de90(card, hold.stan).as_bytes());
            if let Some(r) = replacement {
                let de95 = format!("{r:012}{r:012}C00000000C00000000");
                b.set_text(95, Box::leak(de95.into_boxed_str()).as_bytes());
            }
            client.send(&b);
            let keep = replacement.unwrap_or(0);
            account.available += hold.held - keep;
            account.held -= hold.held - keep;
            if keep == 0 {
                account.holds.remove(target);
            } else {
                account.holds[target].held = keep;
            }
            "00"
        }
        Step::Advice { amount } => {
            client.send(&auth(card, stan, amount, 120));
            account.available -= amount;
            account.held += amount;
            account.holds.push(Hold {
                stan,
                held: amount,
                id: None,
            });
            "00"
        }
    }
}

fn setup(switch: &Switch, rng: &mut Rng) -> (Vec<Card>, Vec<Account>) {
    let mut cards = Vec::new();
    let mut accounts = Vec::new();
    for i in 0..CARDS {
        let (account, holder) = switch.account_and_holder(FUNDS, &format!("H{i}"));
        let (card_id, pan) = switch.add_generated_card(&holder, json!({}));
        let acquirer = format!("{}", 100_000 + rng.below(900_000));
        cards.push(Card {
            pan,
            account,
            card_id,
            acquirer,
        });
        accounts.push(Account {
            available: FUNDS,
            ..Account::default()
        });
    }
    (cards, accounts)
}

/// Captures one pending hold of some accounts through the API, in the model too.
fn capture_some(switch: &Switch, rng: &mut Rng, cards: &[Card], accounts: &mut [Account]) {
    for (card, account) in cards.iter().zip(accounts.iter_mut()) {
        if account.holds.is_empty() || rng.below(4) != 0 {
            continue;
        }
        let target = rng.below(account.holds.len() as u64) as usize;
        let list = switch.api_ok(
            "GET",
            &format!(
                "/v1/authorizations?card={}&status=pending&limit=100",
                card.card_id
            ),
            None,
        );
        let pending: HashMap<i64, Vec<String>> =
            list["data"]
                .as_array()
                .unwrap()
                .iter()
                .fold(HashMap::new(), |mut m, a| {
                    m.entry(a["held"].as_i64().unwrap())
                        .or_default()
                        .push(a["id"].as_str().unwrap().to_string());
                    m
                });
        let hold = account.holds[target].clone();
        let id = hold
            .id
            .clone()
            .or_else(|| pending.get(&hold.held).and_then(|ids| ids.first().cloned()));
        let Some(id) = id else { continue };
        // The model only captures holds whose amount identifies them uniquely.
        if pending.get(&hold.held).map_or(0, Vec::len) != 1 {
            continue;
        }
        let amount = 1 + rng.below(hold.held as u64 * 2) as i64;
        switch.api_ok(
            "POST",
            &format!("/v1/authorizations/{id}/capture"),
            Some(json!({"amount": amount})),
        );
        account.held -= hold.held;
        account.available += hold.held - amount;
        account.spent += amount;
        account.holds.remove(target);
    }
}

fn check_all(switch: &Switch, cards: &[Card], accounts: &[Account], when: &str) {
    for (card, model) in cards.iter().zip(accounts) {
        let a = switch.api_ok("GET", &format!("/v1/accounts/{}", card.account), None);
        let b = &a["balance"];
        let got = (
            b["available"].as_i64().unwrap(),
            b["held"].as_i64().unwrap(),
            b["spent"].as_i64().unwrap(),
        );
        assert_eq!(
            got,
            (model.available, model.held, model.spent),
            "{when}: account {}",
            card.account
        );
        let funded = a["funded"].as_i64().unwrap();
        let refunded = a["refunded"].as_i64().unwrap();
        assert_eq!(
            funded - got.2 - got.1 + refunded,
            got.0,
            "{when}: invariant on {}",
            card.account
        );
    }
}

#[test]
fn thousands_of_mixed_messages_match_the_model_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut switch = Switch::start_on(&data_dir, "");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (cards, mut accounts) = setup(&switch, &mut rng);
    let mut stan: u32 = 0;
    let mut messages = 0;
    for round in 0..ROUNDS {
        if round == ROUNDS / 2 {
            check_all(&switch, &cards, &accounts, "before restart");
            assert!(switch.stop().success());
            switch = Switch::start_on(&data_dir, "");
            check_all(&switch, &cards, &accounts, "after restart");
        }
        let mut client = switch.client();
        let mut expected = HashMap::new();
        for (i, card) in cards.iter().enumerate() {
            stan += 1;
            let step = plan(&mut rng, &accounts[i]);
            let code = send(&mut client, card, &mut accounts[i], &step, stan);
            expected.insert(stan, (code, i));
            messages += 1;
        }
        for _ in 0..cards.len() {
            let response = client.recv();
            let stan = response.stan().unwrap();
            let (code, i) = expected
                .remove(&stan)
                .expect("a response to a request we sent");
            assert_eq!(
                de39(&response),
                code,
                "round {round} stan {stan} account {}",
                cards[i].account
            );
        }
        if round % 10 == 9 {
            capture_some(&switch, &mut rng, &cards, &mut accounts);
        }
    }
    assert!(messages >= 3_000);
    check_all(&switch, &cards, &accounts, "at the end");
}
