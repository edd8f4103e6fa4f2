//! Admin API errors, rendered Stripe-style: `{"error": {"type", "message", "param"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ledger::shard::Failure;

#[derive(Debug, PartialEq, Eq)]
pub enum ApiError {
    /// 400: a parameter is missing or invalid.
    Invalid { param: String, message: String },
    /// 404: no object with that id (or no such route).
    NotFound { param: String },
    /// 401: the bearer token is missing or wrong.
    Unauthenticated,
    /// 503: the shard is overloaded or its WAL has failed.
    Unavailable { message: &'static str },
}

impl ApiError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            param: param.into(),
            message: message.into(),
        }
    }

    pub fn not_found(param: impl Into<String>) -> ApiError {
        ApiError::NotFound {
            param: param.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Overloaded | Failure::Deadline => ApiError::Unavailable {
                message: "the ledger is overloaded; retry",
            },
            Failure::Storage => ApiError::Unavailable {
                message: "the write-ahead log cannot be made durable; the switch needs a restart",
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Invalid { param, message } => json!({"error": {
                "type": "invalid_request_error", "param": param, "message": message}}),
            ApiError::NotFound { param } => json!({"error": {
                "type": "invalid_request_error", "code": "resource_missing", "param": param,
                "message": format!("no such {param}")}}),
            ApiError::Unauthenticated => json!({"error": {
                "type": "authentication_error",
                "message": "a valid bearer token is required (Authorization: Bearer ...)"}}),
            ApiError::Unavailable { message } => json!({"error": {
                "type": "api_error", "message": message}}),
        };
        (status, axum::Json(body)).into_response()
    }
}

/// Parses a JSON body, naming the offending parameter on failure.
///
/// The message never quotes the input. serde's own messages do ("invalid type: integer
/// `4242424242424242`, expected a string"), and a value sent in the wrong type or to the wrong
/// field may be a card number, so a data error is rewritten from its category (`data_error`).
/// Syntax errors are serde_json's fixed texts with a line and column; they quote nothing.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return serde_json::from_slice::<T>(b"{}")
            .map_err(|_| ApiError::invalid("body", "a JSON object body is required"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(body_error)?;
    de.end()
        .map_err(|_| ApiError::invalid("body", "trailing characters after the JSON object"))?;
    Ok(value)
}

fn body_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let text = inner.to_string();
    let (param, message) = match inner.classify() {
        serde_json::error::Category::Data => data_error(path, strip_position(&text)),
        _ => (path, text),
    };
    // An empty key ("") names nothing a client could fix: say the body is wrong.
    let param = if param == "." || param.is_empty() {
        "body".to_string()
    } else {
        param
    };
    ApiError::invalid(param, message)
}

/// The parameter and message of a data error (the JSON is well formed, a value is not what
/// the field takes), built from serde's message without the value it quotes. The forms are
/// those of `serde::de::Error`'s provided constructors; anything else comes from our own
/// deserializers, whose messages name no input (`alpha2_list`).
fn data_error(path: String, message: &str) -> (String, String) {
    if message.starts_with("missing field") || message.starts_with("duplicate field") {
        // The name in backquotes is one of our field names.
        let param = quoted_name(message).unwrap_or(path);
        return (param, message.to_string());
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return unknown_field(path, rest);
    }
    for (prefix, what) in [
        ("invalid type: ", "invalid type"),
        ("invalid value: ", "invalid value"),
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return (path, unexpected(what, rest));
        }
    }
    if message.starts_with("unknown variant ") {
        // The variant is the input; what is expected is our list of variants.
        let expected = expectation(message).unwrap_or("");
        return (path, format!("unknown variant{expected}"));
    }
    if message.starts_with("invalid length ") || message.starts_with("data did not match") {
        // A count and what was expected, or our own words: no input value.
        return (path, message.to_string());
    }
    (path, own_message(message))
}

/// The ", expected ..." end of serde's message: ours, and last, so it is searched from the end
/// (a quoted value holding ", expected " cannot stand in for it).
fn expectation(message: &str) -> Option<&str> {
    message.rfind(", expected ").map(|at| &message[at..])
}

/// `what` and the rest of serde's message without the value: "integer `4242`, expected a
/// string" gives "invalid type: integer, expected a string". The value follows the kind, and
/// the expectation comes last (`expectation`).
fn unexpected(what: &str, rest: &str) -> String {
    // serde's `Unexpected` kinds, longest first where one starts another.
    const KINDS: [&str; 17] = [
        "boolean",
        "integer",
        "floating point",
        "character",
        "string",
        "byte array",
        "unit value",
        "unit variant",
        "Option value",
        "newtype struct",
        "newtype variant",
        "tuple variant",
        "struct variant",
        "sequence",
        "map",
        "enum",
        "null",
    ];
    let kind = KINDS.iter().find(|k| rest.starts_with(*k));
    match (kind, expectation(rest)) {
        (Some(kind), Some(expected)) => format!("{what}: {kind}{expected}"),
        (None, Some(expected)) => format!("{what}{expected}"),
        (Some(kind), None) => format!("{what}: {kind}"),
        (None, None) => what.to_string(),
    }
}

/// "unknown field `<key>`, expected ...": the key is input. It is named only when it looks
/// like a field name; a key that could be a card number (six digits or more, a BIN) or
/// anything unusual is left out, and the error names the object that holds it.
fn unknown_field(path: String, rest: &str) -> (String, String) {
    const NO_FIELDS: &str = ", there are no fields";
    let expected = if rest.ends_with(NO_FIELDS) {
        NO_FIELDS
    } else {
        expectation(rest).unwrap_or("")
    };
    let key = rest
        .strip_prefix('`')
        .and_then(|r| r.get(..r.len().saturating_sub(expected.len())))
        .and_then(|r| r.strip_suffix('`'));
    match key.filter(|k| nameable(k)) {
        Some(key) => (key.to_string(), format!("unknown field `{key}`{expected}")),
        None => (parent(&path), format!("unknown field{expected}")),
    }
}

/// A key safe to show: a short identifier with fewer digits than any card number prefix.
fn nameable(key: &str) -> bool {
    let digits = key.bytes().filter(u8::is_ascii_digit).count();
    !key.is_empty()
        && key.len() <= 64
        && digits < 6
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The path without its last segment, which may be the unknown key itself.
fn parent(path: &str) -> String {
    match path.rfind('.') {
        Some(at) => path[..at].to_string(),
        None => "body".to_string(),
    }
}

/// A message of our own deserializers, kept; anything unrecognised that quotes something is
/// replaced, in case a library's message carries the value.
fn own_message(message: &str) -> String {
    if message.contains('`') || message.contains('\'') {
        return "invalid value".to_string();
    }
    message.to_string()
}

/// The first name in backquotes: "missing field `currency`" gives "currency".
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_string())
}

/// Drops serde_json's " at line 1 column 17" suffix (the last one: a value may hold the words).
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        currency: String,
        nested: Option<Nested>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        amount: i64,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Card {
        number: Option<String>,
        status: Option<crate::domain::CardStatus>,
        month: Option<u8>,
        items: Option<Vec<Nested>>,
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = parse_body::<Body>(b"{}").unwrap_err();
        assert_eq!(e, ApiError::invalid("currency", "missing field `currency`"));
        let e = parse_body::<Body>(br#"{"currency":"usd","colour":1}"#).unwrap_err();
        assert_eq!(
            e,
            ApiError::invalid(
                "colour",
                "unknown field `colour`, expected `currency` or `nested`"
            )
        );
        let e = parse_body::<Body>(br#"{"currency":"usd","nested":{"amount":"x"}}"#).unwrap_err();
        assert_eq!(
            e,
            ApiError::invalid("nested.amount", "invalid type: string, expected i64")
        );
        // Found by the admin_json fuzz target: an empty key used to give an empty param.
        let e = parse_body::<Body>(br#"{"":1}"#).unwrap_err();
        assert_eq!(
            e,
            ApiError::invalid("body", "unknown field, expected `currency` or `nested`")
        );
        let e = parse_body::<Body>(b"not json").unwrap_err();
        assert_eq!(
            e,
            ApiError::invalid("body", "expected ident at line 1 column 2")
        );
        let e = parse_body::<Body>(b"{\"currency\": }").unwrap_err();
        assert_eq!(
            e,
            ApiError::invalid("currency", "expected value at line 1 column 14")
        );
    }

    /// The error for `body` as its rendered text, which must not hold `secret`.
    fn rendered_without(body: &[u8], secret: &str) -> ApiError {
        let e = parse_body::<Card>(body).unwrap_err();
        let ApiError::Invalid { param, message } = &e else {
            panic!("{e:?}");
        };
        assert!(
            !param.contains(secret) && !message.contains(secret),
            "{e:?}"
        );
        e
    }

    #[test]
    fn errors_never_quote_the_input() {
        // (body, param, message); serde_json reads an enum from a string only, so a number
        // there is a syntax error.
        let cases: [(&[u8], &str, &str); 5] = [
            (
                br#"{"number": 4242424242424242}"#,
                "number",
                "invalid type: integer, expected a string",
            ),
            (
                br#"{"number": 4242424242424242.5}"#,
                "number",
                "invalid type: floating point, expected a string",
            ),
            (
                br#"{"status": 4242424242424242}"#,
                "status",
                "expected value at line 1 column 12",
            ),
            (
                br#"{"month": 4242424242424242}"#,
                "month",
                "invalid value: integer, expected u8",
            ),
            (
                br#"{"items": [{"amount": "4242424242424242"}]}"#,
                "items[0].amount",
                "invalid type: string, expected i64",
            ),
        ];
        for (body, param, message) in cases {
            assert_eq!(
                rendered_without(body, "424242"),
                ApiError::invalid(param, message)
            );
        }
        let e = rendered_without(br#"{"status": "4242424242424242"}"#, "424242");
        assert!(
            matches!(&e, ApiError::Invalid { param, message } if param == "status"
                && message.starts_with("unknown variant, expected one of `active`")),
            "{e:?}"
        );
        // A string value that imitates serde's wording cannot smuggle itself through.
        let body = br#"{"number": ["4242424242424242, expected x at line 1 column 2"]}"#;
        rendered_without(body, "424242");
        // A key that may be a card number is not named; a field-like key is.
        let e = rendered_without(br#"{"4242424242424242": 1}"#, "424242");
        assert!(
            matches!(&e, ApiError::Invalid { param, message } if param == "body"
                && message.starts_with("unknown field, expected one of `number`")),
            "{e:?}"
        );
        let e = rendered_without(
            br#"{"items": [{"amount": 1, "4242424242424242": 1}]}"#,
            "424242",
        );
        assert!(
            matches!(&e, ApiError::Invalid { param, .. } if param == "items[0]"),
            "{e:?}"
        );
    }
}
