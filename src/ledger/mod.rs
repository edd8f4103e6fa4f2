//! The ledger: the deterministic shard state machine (`apply`, queries, snapshots,
//! digests). The shard threads, routing index and runtime around it live in their own
//! files (`runtime.rs`, `shard.rs`, `router.rs`).

mod authorize;
pub mod command;
mod cowvec;
mod expire;
mod holds;
mod invariants;
mod keymap;
mod lifecycle;
pub mod platform;
pub mod query;
mod record_codec;
pub mod records;
pub mod router;
pub mod runtime;
pub mod shard;
mod slice;
pub mod state;
pub mod testkit;
pub mod tools;

pub use authorize::{CURRENCY_ABSENT, CURRENCY_UNREADABLE};
pub use command::{
    AuthKind, AuthOutcome, AuthRequest, Command, CommandError, MerchantData, Outcome,
    ProgramConfig, ReversalRequest, TxnKey,
};
pub use expire::is_lodging_mcc;
pub use platform::{PlatformCall, PlatformResult, TimeoutDecision, WebhookConfig};
pub use query::{Query, QueryResult};
pub use records::{AuthStatus, RequestKind};
pub use state::{apply, CurrencyTotals, InvariantViolation, ShardState, SnapshotError};
