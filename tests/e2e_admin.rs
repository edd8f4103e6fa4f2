//! The admin HTTP API over real HTTP: every route, authentication, validation errors, and the
//! agreement between the served routes and `proto/admin-api.yaml`.

mod common;

use common::{http, Switch, TOKEN};
use serde_json::{json, Value};

#[test]
fn no_route_answers_without_the_right_token() {
    let switch = Switch::start("");
    let routes = [
        ("POST", "/v1/accounts"),
        ("GET", "/v1/accounts/acct_0000000000000001"),
        ("GET", "/v1/cards/ic_0000000000000001"),
        ("GET", "/v1/authorizations"),
        ("POST", "/v1/bulk/cards"),
        ("GET", "/v1/nonexistent"),
    ];
    for (method, path) in routes {
        let (status, body) = http(switch.admin, method, path, Some("{}"), None).unwrap();
        assert_eq!(status, 401, "{method} {path}");
        assert!(body.contains("authentication_error"), "{body}");
        let wrong = format!("{}x", &TOKEN[..TOKEN.len() - 1]);
        let (status, _) = http(switch.admin, method, path, Some("{}"), Some(&wrong)).unwrap();
        assert_eq!(status, 401, "{method} {path} with a wrong token");
        let (status, _) = http(switch.admin, method, path, Some("{}"), Some("short")).unwrap();
        assert_eq!(status, 401);
    }
}

#[test]
fn accounts_fundings_and_validation() {
    let switch = Switch::start("");
    let account = switch.api_ok("POST", "/v1/accounts", Some(json!({"currency": "usd"})));
    let id = account["id"].as_str().unwrap();
    assert!(id.starts_with("acct_"), "{id}");
    assert_eq!(account["object"], "account");
    assert_eq!(account["currency"], "usd");
    assert_eq!(account["status"], "active");
    assert_eq!(
        account["balance"],
        json!({"available": 0, "held": 0, "spent": 0})
    );
    let funded = switch.api_ok(
        "POST",
        &format!("/v1/accounts/{id}/fundings"),
        Some(json!({"amount": 12_345})),
    );
    assert_eq!(funded["balance"]["available"], 12_345);
    assert_eq!(funded["funded"], 12_345);
    let got = switch.api_ok("GET", &format!("/v1/accounts/{id}"), None);
    assert_eq!(got["balance"]["available"], 12_345);

    let (status, body) = switch.api("POST", "/v1/accounts", Some(json!({})));
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("currency"))
    );
    let (status, body) = switch.api("POST", "/v1/accounts", Some(json!({"currency": "zzz"})));
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("currency"))
    );
    let (status, body) = switch.api(
        "POST",
        "/v1/accounts",
        Some(json!({"currency": "usd", "x": 1})),
    );
    assert_eq!((status, body["error"]["param"].as_str()), (400, Some("x")));
    for amount in [json!(0), json!(-5), json!("10"), json!(1.5)] {
        let (status, body) = switch.api(
            "POST",
            &format!("/v1/accounts/{id}/fundings"),
            Some(json!({"amount": amount})),
        );
        assert_eq!(
            (status, body["error"]["param"].as_str()),
            (400, Some("amount")),
            "{amount}"
        );
    }
    let (status, body) = switch.api("GET", "/v1/accounts/acct_zzz", None);
    assert_eq!(status, 404, "{body}");
    let (status, _) = switch.api("GET", "/v1/accounts/acct_00000000000000ff", None);
    assert_eq!(status, 404);
    let (status, _) = switch.api(
        "POST",
        "/v1/accounts/acct_00000000000000ff/fundings",
        Some(json!({"amount": 1})),
    );
    assert_eq!(status, 404);
    let disabled = switch.api_ok(
        "POST",
        &format!("/v1/accounts/{id}"),
        Some(json!({"status": "disabled"})),
    );
    assert_eq!(disabled["status"], "disabled");
}

#[test]
fn cardholders_and_cards() {
    let switch = Switch::start("");
    let account = switch.api_ok("POST", "/v1/accounts", Some(json!({"currency": "eur"})));
    let account = account["id"].as_str().unwrap();
    let holder = switch.api_ok(
        "POST",
        "/v1/cardholders",
        Some(json!({"account": account, "name": "Ada Lovelace",
                    "spending_controls": {"blocked_categories": [7995]}})),
    );
    let holder_id = holder["id"].as_str().unwrap();
    assert!(holder_id.starts_with("ich_"));
    assert_eq!(holder["status"], "active");
    assert_eq!(holder["account"], account);
    assert_eq!(
        holder["spending_controls"]["blocked_categories"],
        json!([7995])
    );
    let updated = switch.api_ok(
        "POST",
        &format!("/v1/cardholders/{holder_id}"),
        Some(json!({"name": "Ada King", "status": "inactive"})),
    );
    assert_eq!(
        (updated["name"].as_str(), updated["status"].as_str()),
        (Some("Ada King"), Some("inactive"))
    );
    assert_eq!(
        switch.api_ok("GET", &format!("/v1/cardholders/{holder_id}"), None)["name"],
        "Ada King"
    );
    let (status, body) = switch.api(
        "POST",
        "/v1/cardholders",
        Some(json!({"account": account, "name": "x",
        "spending_controls": {"allowed_categories": [1], "blocked_categories": [2]}})),
    );
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("spending_controls")),
        "{body}"
    );
    let (status, _) = switch.api(
        "POST",
        "/v1/cardholders",
        Some(json!({"account": "acct_00000000000000ff", "name": "x"})),
    );
    assert_eq!(status, 404);

    // A generated card returns its number once.
    let card = switch.api_ok(
        "POST",
        "/v1/cards",
        Some(json!({"cardholder": holder_id, "exp_month": 3, "exp_year": 2031})),
    );
    let number = card["number"].as_str().unwrap().to_string();
    assert_eq!(number.len(), 16);
    assert!(number.starts_with("424242"));
    assert_eq!(card["last4"], &number[12..]);
    assert_eq!(card["status"], "active");
    let card_id = card["id"].as_str().unwrap();
    let fetched = switch.api_ok("GET", &format!("/v1/cards/{card_id}"), None);
    assert!(fetched.get("number").is_none(), "{fetched}");
    assert!(!fetched.to_string().contains(&number));
    // Imported cards are Luhn-checked and unique.
    let (status, body) = switch.api(
        "POST",
        "/v1/cards",
        Some(json!({"cardholder": holder_id,
        "number": "4242424242424241", "exp_month": 1, "exp_year": 2030})),
    );
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("number"))
    );
    assert!(
        !body.to_string().contains("4242424242424241"),
        "errors never echo the number"
    );
    let (status, body) = switch.api(
        "POST",
        "/v1/cards",
        Some(json!({"cardholder": holder_id,
        "number": number, "exp_month": 1, "exp_year": 2030})),
    );
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("number"))
    );
    let (status, body) = switch.api(
        "POST",
        "/v1/cards",
        Some(json!({"cardholder": holder_id,
        "exp_month": 13, "exp_year": 2030})),
    );
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("exp_month"))
    );
    let lost = switch.api_ok(
        "POST",
        &format!("/v1/cards/{card_id}"),
        Some(json!({"status": "lost"})),
    );
    assert_eq!(lost["status"], "lost");
    let (status, body) = switch.api(
        "POST",
        &format!("/v1/cards/{card_id}"),
        Some(json!({"status": "melted"})),
    );
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("status"))
    );
}

#[test]
fn bulk_cards_and_authorization_listing() {
    let switch = Switch::start("");
    let (_, holder, _) = switch.provision(0, "4242424242424242");
    let cards: Vec<Value> = (0..2_000)
        .map(|_| json!({"cardholder": holder, "exp_month": 12, "exp_year": 2030}))
        .collect();
    let result = switch.api_ok("POST", "/v1/bulk/cards", Some(json!({"cards": cards})));
    assert_eq!(result["created"], 2_000);
    let data = result["data"].as_array().unwrap();
    assert_eq!(data.len(), 2_000);
    let numbers: std::collections::HashSet<&str> =
        data.iter().map(|c| c["number"].as_str().unwrap()).collect();
    assert_eq!(numbers.len(), 2_000);
    let (status, body) = switch.api("POST", "/v1/bulk/cards", Some(json!({"cards": []})));
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("cards"))
    );
    let too_many: Vec<Value> = (0..10_001)
        .map(|_| json!({"cardholder": holder, "exp_month": 1, "exp_year": 2030}))
        .collect();
    let (status, body) = switch.api("POST", "/v1/bulk/cards", Some(json!({"cards": too_many})));
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("cards"))
    );
    let list = switch.api_ok("GET", "/v1/authorizations?limit=5", None);
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"], json!([]));
    let (status, body) = switch.api("GET", "/v1/authorizations?limit=1000", None);
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("limit"))
    );
    let (status, body) = switch.api("GET", "/v1/authorizations?status=weird", None);
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("status"))
    );
    let (status, _) = switch.api("GET", "/v1/authorizations/iauth_00000000000000ff", None);
    assert_eq!(status, 404);
}

#[test]
fn ids_on_a_shard_the_switch_does_not_run_are_unknown_ids() {
    let switch = Switch::start("[ledger]\nshards = 2\n");
    let (account, _, _) = switch.provision(1_000, "4242424242424242");
    // The same request with an unknown id on shard 0 and with an id on shard 0xffff.
    let same_answer = |method: &str, path: &str, body: Option<Value>, kind: &str| {
        let unknown = format!("{kind}0000ffffffffffff");
        let foreign = format!("{kind}ffff000000000000");
        let with = |id: &str| {
            let path = path.replace("{id}", id);
            let body = body
                .as_ref()
                .map(|b| serde_json::from_str(&b.to_string().replace("{id}", id)).unwrap());
            switch.api(method, &path, body)
        };
        let (expected, got) = (with(&unknown), with(&foreign));
        assert_eq!(got, expected, "{method} {path}");
        expected
    };
    for (kind, path, param) in [
        ("acct_", "/v1/accounts/{id}", "account"),
        ("ich_", "/v1/cardholders/{id}", "cardholder"),
        ("ic_", "/v1/cards/{id}", "card"),
        ("iauth_", "/v1/authorizations/{id}", "authorization"),
        ("ipi_", "/v1/transactions/{id}", "transaction"),
    ] {
        let (status, body) = same_answer("GET", path, None, kind);
        assert_eq!(status, 404, "{body}");
        assert_eq!(
            body,
            json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
                             "param": param, "message": format!("no such {param}")}})
        );
    }
    let changes = [
        ("/v1/accounts/{id}/fundings", json!({"amount": 1}), "acct_"),
        ("/v1/accounts/{id}", json!({"status": "disabled"}), "acct_"),
        ("/v1/cardholders/{id}", json!({"name": "X"}), "ich_"),
        ("/v1/cards/{id}", json!({"status": "lost"}), "ic_"),
        (
            "/v1/authorizations/{id}/capture",
            json!({"amount": 1}),
            "iauth_",
        ),
        ("/v1/transactions/{id}/refund", json!({"amount": 1}), "ipi_"),
        (
            "/v1/cardholders",
            json!({"account": "{id}", "name": "N"}),
            "acct_",
        ),
        (
            "/v1/cards",
            json!({"cardholder": "{id}", "exp_month": 12, "exp_year": 2030}),
            "ich_",
        ),
        (
            "/v1/transactions/force_capture",
            json!({"card": "{id}", "amount": 100}),
            "ic_",
        ),
    ];
    for (path, body, kind) in changes {
        let (status, body) = same_answer("POST", path, Some(body), kind);
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = same_answer("GET", "/v1/authorizations?card={id}", None, "ic_");
    assert_eq!((status, &body["data"]), (200, &json!([])));
    assert_eq!(switch.balance(&account), (1_000, 0, 0));
}

/// A 400 for `body` on `path` naming `param`, whose text holds no part of the card number.
fn invalid_without_the_number(switch: &Switch, path: &str, body: Value, param: &str) -> Value {
    let (status, error) = switch.api("POST", path, Some(body));
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some(param)),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        !text.contains("4242424242424242") && !text.contains("424242"),
        "{text}"
    );
    error
}

#[test]
fn body_errors_never_echo_a_card_number() {
    let switch = Switch::start("");
    let (_, holder) = switch.account_and_holder(0, "Holder");
    let pan = 4_242_424_242_424_242u64;
    let card = json!({"cardholder": holder, "number": pan, "exp_month": 12, "exp_year": 2099});
    let error = invalid_without_the_number(&switch, "/v1/cards", card.clone(), "number");
    assert_eq!(
        error["error"]["message"],
        "invalid type: integer, expected a string"
    );
    let error = invalid_without_the_number(
        &switch,
        "/v1/bulk/cards",
        json!({"cards": [card]}),
        "cards[0].number",
    );
    assert_eq!(
        error["error"]["message"],
        "invalid type: integer, expected a string"
    );
    // A card number sent as the value of an enum field.
    let status = json!({"cardholder": holder, "exp_month": 12, "exp_year": 2099,
                        "status": "4242424242424242"});
    let error = invalid_without_the_number(&switch, "/v1/cards", status, "status");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("unknown variant, expected one of `active`"),
        "{message}"
    );
    // Or as a key: the unknown field is not named, its object is.
    let key = json!({"cards": [{"cardholder": holder, "exp_month": 12, "exp_year": 2099,
                                "4242424242424242": 1}]});
    let error = invalid_without_the_number(&switch, "/v1/bulk/cards", key, "cards[0]");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("unknown field, expected one of"),
        "{message}"
    );
}

#[test]
fn served_routes_match_the_openapi_spec() {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/admin-api.yaml"))
            .unwrap();
    let mut documented = std::collections::BTreeSet::new();
    let mut path = None;
    for line in spec.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            path = Some(format!("/{p}"));
        } else if !line.starts_with(' ') && !line.trim().is_empty() {
            path = None;
        }
        let method = line.strip_prefix("    ").and_then(|m| m.strip_suffix(':'));
        if let (Some(p), Some(m @ ("get" | "post" | "put" | "delete" | "patch"))) = (&path, method)
        {
            documented.insert((m.to_string(), p.clone()));
        }
    }
    let served: std::collections::BTreeSet<(String, String)> = authswitch::admin::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
    // And every served route really answers (not 404 from the router) with a valid token.
    let switch = Switch::start("");
    for (method, path) in &served {
        let concrete = path.replace("{id}", "x");
        let (status, body) = switch.api(&method.to_uppercase(), &concrete, Some(json!({})));
        let unknown_route = status == 404 && body["error"]["param"] == "path";
        assert!(
            !unknown_route,
            "{method} {path} is not served: {status} {body}"
        );
    }
}

/// `has_more` says when a page is not the last, for one card (one shard) and for all: each
/// shard is asked for one more than the page. Before, it was false whenever the matches sat
/// on one shard.
#[test]
fn has_more_says_when_a_page_is_not_the_last() {
    let switch = Switch::start("");
    let (_, _, card) = switch.provision(100_000, "4242424242424242");
    let mut client = switch.client();
    for stan in 1..=3 {
        let answer = client.call(&common::auth_0100("4242424242424242", 100, stan));
        assert_eq!(common::de39(&answer), "00");
    }
    for (query, len, more) in [
        (format!("card={card}&limit=2"), 2, true),
        (format!("card={card}&limit=3"), 3, false),
        ("limit=2".to_string(), 2, true),
        ("limit=3".to_string(), 3, false),
        ("limit=100".to_string(), 3, false),
    ] {
        let page = switch.api_ok("GET", &format!("/v1/authorizations?{query}"), None);
        assert_eq!(page["data"].as_array().unwrap().len(), len, "{query}");
        assert_eq!(page["has_more"], more, "{query}");
    }
}
