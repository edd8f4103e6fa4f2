//! authswitch: an issuer-side ISO 8583 card authorization switch.
pub mod admin;
pub mod app;
pub mod config;
pub mod domain;
pub mod iso8583;
pub mod ledger;
pub mod metrics;
pub mod send;
pub mod server;
pub mod wal;
