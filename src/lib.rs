//! authswitch: an issuer-side ISO 8583 card authorization switch.
pub mod domain;
pub mod iso8583;
pub mod ledger;
