//! authswitch: an issuer-side ISO 8583 card authorization switch.
pub mod config;
pub mod iso8583;
pub mod metrics;
pub mod wal;
