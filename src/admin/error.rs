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
        let label = status.as_str().to_owned();
        metrics::counter!(crate::metrics::ADMIN_REQUESTS_TOTAL, "status" => label).increment(1);
        (status, axum::Json(body)).into_response()
    }
}

/// Parses a JSON body, naming the offending parameter on failure.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return serde_json::from_slice::<T>(b"{}")
            .map_err(|_| ApiError::invalid("body", "a JSON object body is required"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let param = missing_or_unknown_field(&inner.to_string()).unwrap_or(path);
        // An empty key ("") names nothing a client could fix: say the body is wrong.
        let param = if param == "." || param.is_empty() {
            "body".to_string()
        } else {
            param
        };
        ApiError::invalid(param, strip_position(&inner.to_string()))
    })?;
    de.end()
        .map_err(|_| ApiError::invalid("body", "trailing characters after the JSON object"))?;
    Ok(value)
}

/// serde names a missing or unknown field only in its message: "missing field `currency`".
fn missing_or_unknown_field(message: &str) -> Option<String> {
    let is_field = message.starts_with("missing field") || message.starts_with("unknown field");
    if !is_field {
        return None;
    }
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_string())
}

/// Drops serde_json's " at line 1 column 17" suffix.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
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
    #[allow(dead_code)]
    struct Nested {
        amount: i64,
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = parse_body::<Body>(b"{}").unwrap_err();
        assert_eq!(e, ApiError::invalid("currency", "missing field `currency`"));
        let e = parse_body::<Body>(br#"{"currency":"usd","colour":1}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::Invalid { ref param, .. } if param == "colour"),
            "{e:?}"
        );
        let e = parse_body::<Body>(br#"{"currency":"usd","nested":{"amount":"x"}}"#).unwrap_err();
        assert!(matches!(e, ApiError::Invalid { ref param, .. } if param == "nested.amount"));
        // Found by the admin_json fuzz target: an empty key used to give an empty param.
        let e = parse_body::<Body>(br#"{"":1}"#).unwrap_err();
        assert_eq!(
            e,
            ApiError::invalid("body", "unknown field ``, expected `currency` or `nested`")
        );
        let e = parse_body::<Body>(b"not json").unwrap_err();
        assert!(
            matches!(e, ApiError::Invalid { ref param, .. } if param == "body"),
            "{e:?}"
        );
    }
}
