//! Fuzz target: the admin API's JSON request bodies. Every body type goes through
//! `parse_body` exactly as the handlers call it; any input must give a value or an
//! `ApiError::Invalid` naming a parameter, never a panic.
#![no_main]

use authswitch::admin::error::{parse_body, ApiError};
use authswitch::admin::routes::{
    BulkCardsBody, CaptureBody, CreateAccountBody, CreateCardBody, CreateCardholderBody,
    ForceCaptureBody, FundingBody, RefundBody, UpdateAccountBody, UpdateCardBody,
    UpdateCardholderBody,
};
use libfuzzer_sys::fuzz_target;

/// Parses `data` as `T`; a failure must be a 400 naming what is wrong.
fn check<T: serde::de::DeserializeOwned>(data: &[u8]) {
    match parse_body::<T>(data) {
        Ok(_) => {}
        Err(ApiError::Invalid { param, message }) => {
            assert!(!param.is_empty() && !message.is_empty());
        }
        Err(other) => panic!("a body parse failed with {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the body type so every type sees the whole corpus shape.
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    match pick % 11 {
        0 => check::<CreateAccountBody>(body),
        1 => check::<UpdateAccountBody>(body),
        2 => check::<FundingBody>(body),
        3 => check::<CreateCardholderBody>(body),
        4 => check::<UpdateCardholderBody>(body),
        5 => check::<CreateCardBody>(body),
        6 => check::<UpdateCardBody>(body),
        7 => check::<BulkCardsBody>(body),
        8 => check::<CaptureBody>(body),
        9 => check::<RefundBody>(body),
        _ => check::<ForceCaptureBody>(body),
    }
});
