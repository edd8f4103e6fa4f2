//! The shard state machine: accounts, cardholders, cards, authorizations and transactions of
//! one shard, and `apply`, the only way to change them.
//!
//! `apply(state, command, now_s)` is deterministic: no I/O, no clock, no randomness, and ids
//! come from per-shard counters, so replaying the WAL's `(now_s, Command)` records into a
//! fresh state (or into a snapshot) rebuilds the same state, byte for byte of its digest.

use super::command::{Command, CommandError, Outcome, ProgramConfig, TxnKey};
use super::platform::{Awaiting, WebhookConfig};
use super::records::{chain_back, Authorization, EarlyReversal, KeyEntry, Transaction, AUTH_NONE};
use crate::domain::controls::{normalize_limits, validate_limits, SpendingControls};
use crate::domain::currency::AMOUNT_MINOR_MAX;
use crate::domain::entities::{boxed_controls, Account, Card, Cardholder, NAME_LEN_MAX};
use crate::domain::ids::ID_SEQ_MAX;
use crate::domain::{
    AccountId, AccountStatus, AuthorizationId, CardId, CardStatus, CardholderId, CardholderStatus,
    Currency,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::Hasher;

/// Most accounts per shard.
pub const ACCOUNTS_MAX: usize = 1 << 22;
/// Most cardholders per shard.
pub const CARDHOLDERS_MAX: usize = 1 << 24;
/// Most cards per shard.
pub const CARDS_MAX: usize = 1 << 24;
/// Most authorization slots per shard (live records plus purged slots not yet trimmed).
pub const AUTHORIZATION_SLOTS_MAX: usize = 1 << 24;
/// Most transaction slots per shard.
pub const TRANSACTION_SLOTS_MAX: usize = 1 << 24;
/// Most entries in the transaction-key index.
pub const KEYS_MAX: usize = 1 << 25;
/// Most reversals kept waiting for their original.
pub const EARLY_REVERSALS_MAX: usize = 1 << 16;
/// Most records one `ExpireHolds` looks at; it reports `more` when it stopped there.
pub const EXPIRE_SCAN_MAX: usize = 1 << 20;
/// Longest hold expiry or retention age accepted in the program config (400 days).
pub const AGE_S_MAX: i64 = 400 * 86_400;

/// Hasher for `TxnKey`s: the first eight bytes, XORed with a secret drawn once per process,
/// through the splitmix64 finalizer. Keys from `TxnKey::derive` are uniform already, but a
/// table must not degrade into a linear scan when keys are not (sequential test keys put all
/// their entropy in the bytes the table ignores: the key index takes its slot from the low
/// bits), nor when a peer grinds STANs and times for keys that share their low hash bits:
/// without the secret it cannot know which do. Nothing stored depends on these hashes.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

/// The per-process secret of `KeyHasher` (a fixed value if the OS has no randomness for us,
/// which only brings back the unkeyed hash).
fn key_hash_secret() -> u64 {
    static SECRET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SECRET.get_or_init(|| {
        let mut raw = [0u8; 8];
        match getrandom::fill(&mut raw) {
            Ok(()) => u64::from_le_bytes(raw),
            Err(_) => 0x243f_6a88_85a3_08d3,
        }
    })
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0 ^ key_hash_secret();
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }
}

pub(crate) use super::cowvec::CowVec;
pub(crate) use super::keymap::KeyMap;

/// A broken invariant found by `check_invariants` (or after loading a snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    #[error("{0}: funded + refunded - spent - held != available")]
    Balance(AccountId),
    #[error("{0}: held differs from the sum of its pending holds")]
    Held(AccountId),
    #[error("{0}: available below zero without an advice or over-capture")]
    NegativeAvailable(AccountId),
    #[error("{0}: holds funds but is not pending, or holds a negative amount")]
    HoldState(AuthorizationId),
    #[error("{0}: stored under another id or shard")]
    Misplaced(u64),
    #[error("{0}: currency not in the ISO 4217 table")]
    Currency(AccountId),
    #[error("a transaction key points to a missing authorization or entry")]
    DanglingKey,
}

/// Why a snapshot could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("snapshot decodes but is inconsistent: {0}")]
    Invariant(#[from] InvariantViolation),
}

/// Held and available sums of one currency (for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrencyTotals {
    pub currency: Currency,
    pub held_minor: i64,
    pub available_minor: i64,
}

/// Authorizations per chunk of `ShardState::auths`: 32 KiB of 256-byte records. After a
/// snapshot, the increments, reversals, advices and expiries that follow write to
/// authorizations all over the shard, and each first write to a chunk the snapshot still holds
/// copies that chunk. With 1 024 a chunk (256 KiB) the shard spent 62-216 ms copying in the
/// second after each snapshot at 50 000/s with 300 000-600 000 authorizations (ninth session;
/// mostly page faults on the fresh memory).
pub const AUTH_CHUNK: usize = 128;

/// The state of one shard.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardState {
    pub(crate) shard: u16,
    pub(crate) config: ProgramConfig,
    pub(crate) accounts: CowVec<Account>,
    /// Accounts whose available balance an advice or over-capture pushed below zero.
    pub(crate) overdrawn: Vec<u64>,
    pub(crate) cardholders: CowVec<Cardholder>,
    pub(crate) cards: CowVec<Card>,
    /// Sequence of `auths[0]`; slots before it were purged.
    pub(crate) auth_base_seq: u64,
    /// Held inline: no allocation per authorization, and one pointer less on every access.
    /// In chunks of `AUTH_CHUNK`.
    pub(crate) auths: CowVec<Option<Authorization>, AUTH_CHUNK>,
    pub(crate) txn_base_seq: u64,
    pub(crate) txns: CowVec<Option<Box<Transaction>>>,
    pub(crate) keys: KeyMap<KeyEntry>,
    /// Reversals that arrived before their original, by the original's key.
    pub(crate) early_reversals: KeyMap<EarlyReversal>,
    /// Authorization decision endpoints, by account sequence (see `platform.rs`).
    pub(crate) webhooks: BTreeMap<u64, WebhookConfig>,
    /// Authorizations awaiting their platform's decision, by authorization sequence.
    pub(crate) awaiting: BTreeMap<u64, Awaiting>,
}

/// Applies one command at time `now_s` (recorded with the command in the WAL).
pub fn apply(state: &mut ShardState, cmd: &Command, now_s: i64) -> Outcome {
    let result = match cmd {
        Command::Authorize(req) => return state.authorize_with_platform(req, now_s),
        Command::CreateAccount { currency } => state.create_account(*currency),
        Command::UpdateAccount { account, status } => state.update_account(*account, *status),
        Command::Fund {
            account,
            amount_minor,
        } => state.fund(*account, *amount_minor),
        Command::CreateCardholder {
            account,
            name,
            status,
            spending_controls,
        } => state.create_cardholder(*account, name, *status, spending_controls, now_s),
        Command::UpdateCardholder {
            cardholder,
            name,
            status,
            spending_controls,
        } => state.update_cardholder(
            *cardholder,
            name.as_deref(),
            *status,
            spending_controls.as_ref(),
            now_s,
        ),
        Command::CreateCard { .. } => state.create_card(cmd, now_s),
        Command::UpdateCard {
            card,
            status,
            spending_controls,
        } => state.update_card(*card, *status, spending_controls.as_ref(), now_s),
        Command::SetProgramConfig(config) => state.set_config(config),
        Command::ExpireHolds => Ok(state.expire_holds(now_s)),
        Command::Advice(req) => return Outcome::Authorization(state.advice(req, now_s)),
        Command::Reverse(req) => Ok(state.reverse(req, now_s)),
        Command::Financial(req) => return Outcome::Authorization(state.financial(req, now_s)),
        Command::Capture {
            authorization,
            amount_minor,
            close_authorization,
        } => state.capture(*authorization, *amount_minor, *close_authorization, now_s),
        Command::Refund {
            transaction,
            amount_minor,
        } => state.refund(*transaction, *amount_minor, now_s),
        Command::ForceCapture {
            card,
            amount_minor,
            mcc,
            merchant,
        } => state.force_capture(*card, *amount_minor, *mcc, merchant, now_s),
        Command::SetAuthorizationWebhook { account, webhook } => {
            state.set_webhook(*account, webhook.as_ref())
        }
        Command::PlatformDecision {
            authorization,
            result,
        } => state.platform_decision(*authorization, *result, now_s),
        Command::AbandonAwaitingPlatform => Ok(state.abandon_awaiting(now_s)),
    };
    result.unwrap_or_else(Outcome::Rejected)
}

fn invalid(param: &'static str, reason: &'static str) -> CommandError {
    CommandError::Invalid { param, reason }
}

fn checked_controls(c: &SpendingControls) -> Result<SpendingControls, CommandError> {
    let mut c = c.clone();
    c.normalize();
    c.validate().map_err(CommandError::Controls)?;
    Ok(c)
}

impl ShardState {
    /// An empty shard.
    pub fn new(shard: u16) -> Self {
        Self {
            shard,
            config: ProgramConfig::default(),
            accounts: CowVec::default(),
            overdrawn: Vec::new(),
            cardholders: CowVec::default(),
            cards: CowVec::default(),
            auth_base_seq: 0,
            auths: CowVec::default(),
            txn_base_seq: 0,
            txns: CowVec::default(),
            keys: KeyMap::default(),
            early_reversals: KeyMap::default(),
            webhooks: BTreeMap::new(),
            awaiting: BTreeMap::new(),
        }
    }

    /// This shard's index.
    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// The program config in force.
    pub fn config(&self) -> &ProgramConfig {
        &self.config
    }

    pub(crate) fn account_index(&self, id: AccountId) -> Option<usize> {
        let i = usize::try_from(id.seq()).ok()?;
        (id.shard() == self.shard && i < self.accounts.len()).then_some(i)
    }

    pub(crate) fn cardholder_index(&self, id: CardholderId) -> Option<usize> {
        let i = usize::try_from(id.seq()).ok()?;
        (id.shard() == self.shard && i < self.cardholders.len()).then_some(i)
    }

    pub(crate) fn card_index(&self, id: CardId) -> Option<usize> {
        let i = usize::try_from(id.seq()).ok()?;
        (id.shard() == self.shard && i < self.cards.len()).then_some(i)
    }

    /// Account index of a card (through its cardholder).
    pub(crate) fn card_account(&self, card_i: usize) -> usize {
        let ch = self.cards[card_i].cardholder.seq() as usize;
        self.cardholders[ch].account.seq() as usize
    }

    pub(crate) fn auth(&self, seq: u64) -> Option<&Authorization> {
        let i = usize::try_from(seq.checked_sub(self.auth_base_seq)?).ok()?;
        self.auths.get(i)?.as_ref()
    }

    pub(crate) fn auth_mut(&mut self, seq: u64) -> Option<&mut Authorization> {
        let i = usize::try_from(seq.checked_sub(self.auth_base_seq)?).ok()?;
        self.auths.get_mut(i)?.as_mut()
    }

    pub(crate) fn next_auth_seq(&self) -> u64 {
        self.auth_base_seq + self.auths.len() as u64
    }

    /// Room for one more authorization and its key, checked before anything is changed.
    pub(crate) fn auth_room(&self) -> bool {
        self.auths.len() < AUTHORIZATION_SLOTS_MAX
            && (self.auths.len() as u64) < self.config.authorizations_max
            && self.keys.len() < KEYS_MAX
            && self.next_auth_seq() < ID_SEQ_MAX
    }

    /// Appends a new authorization at the head of its card lineage's and cardholder's chains.
    pub(crate) fn push_auth(&mut self, mut a: Authorization) {
        let seq = self.next_auth_seq();
        assert_eq!(a.id, AuthorizationId::new(self.shard, seq));
        assert!(self.auths.len() < AUTHORIZATION_SLOTS_MAX);
        let ci = self
            .card_index(a.card)
            .expect("authorization of a missing card");
        let root = self.cards[ci].usage_root.seq() as usize;
        let prev = std::mem::replace(&mut self.cards[root].last_auth, seq);
        a.back_in_lineage = chain_back(seq, prev);
        let chi = self.cards[ci].cardholder.seq() as usize;
        let prev = std::mem::replace(&mut self.cardholders[chi].last_auth, seq);
        a.back_of_cardholder = chain_back(seq, prev);
        self.auths.push(Some(a));
    }

    pub(crate) fn txn(&self, seq: u64) -> Option<&Transaction> {
        let i = usize::try_from(seq.checked_sub(self.txn_base_seq)?).ok()?;
        self.txns.get(i)?.as_deref()
    }

    pub(crate) fn txn_mut(&mut self, seq: u64) -> Option<&mut Transaction> {
        let i = usize::try_from(seq.checked_sub(self.txn_base_seq)?).ok()?;
        self.txns.get_mut(i)?.as_deref_mut()
    }

    pub(crate) fn next_txn_seq(&self) -> u64 {
        self.txn_base_seq + self.txns.len() as u64
    }

    /// Room for one more transaction.
    pub(crate) fn txn_room(&self) -> bool {
        self.txns.len() < TRANSACTION_SLOTS_MAX && self.next_txn_seq() < ID_SEQ_MAX
    }

    /// Remembers that account `ai` was pushed below zero by an advice or over-capture.
    pub(crate) fn mark_overdrawn(&mut self, ai: usize) {
        if self.accounts[ai].available_minor < 0 {
            if let Err(pos) = self.overdrawn.binary_search(&(ai as u64)) {
                self.overdrawn.insert(pos, ai as u64);
            }
        }
    }

    fn create_account(&mut self, currency: Currency) -> Result<Outcome, CommandError> {
        if !currency.is_known() {
            return Err(invalid("currency", "not an active ISO 4217 currency"));
        }
        if self.accounts.len() >= ACCOUNTS_MAX {
            return Err(CommandError::CapacityReached { what: "accounts" });
        }
        let id = AccountId::new(self.shard, self.accounts.len() as u64);
        self.accounts.push(Account {
            id,
            currency,
            status: AccountStatus::Active,
            funded_minor: 0,
            refunded_minor: 0,
            spent_minor: 0,
            held_minor: 0,
            available_minor: 0,
        });
        Ok(Outcome::AccountCreated(id))
    }

    fn update_account(
        &mut self,
        id: AccountId,
        status: Option<AccountStatus>,
    ) -> Result<Outcome, CommandError> {
        let i = self
            .account_index(id)
            .ok_or(CommandError::NotFound { param: "account" })?;
        if let Some(s) = status {
            self.accounts[i].status = s;
        }
        Ok(Outcome::Updated)
    }

    fn fund(&mut self, id: AccountId, amount_minor: i64) -> Result<Outcome, CommandError> {
        let i = self
            .account_index(id)
            .ok_or(CommandError::NotFound { param: "account" })?;
        if amount_minor <= 0 || amount_minor > AMOUNT_MINOR_MAX {
            return Err(invalid("amount", "must be between 1 and 999999999999"));
        }
        let a = &mut self.accounts[i];
        let overflow = CommandError::Overflow { param: "amount" };
        let funded = a.funded_minor.checked_add(amount_minor).ok_or(overflow)?;
        let available = a
            .available_minor
            .checked_add(amount_minor)
            .ok_or(overflow)?;
        a.funded_minor = funded;
        a.available_minor = available;
        Ok(Outcome::Funded {
            available_minor: available,
        })
    }

    fn create_cardholder(
        &mut self,
        account: AccountId,
        name: &str,
        status: CardholderStatus,
        controls: &SpendingControls,
        now_s: i64,
    ) -> Result<Outcome, CommandError> {
        self.account_index(account)
            .ok_or(CommandError::NotFound { param: "account" })?;
        check_name(name)?;
        let controls = checked_controls(controls)?;
        if self.cardholders.len() >= CARDHOLDERS_MAX {
            return Err(CommandError::CapacityReached {
                what: "cardholders",
            });
        }
        let id = CardholderId::new(self.shard, self.cardholders.len() as u64);
        self.cardholders.push(Cardholder {
            id,
            account,
            name: name.to_string(),
            status,
            controls: boxed_controls(controls),
            usage: None,
            last_auth: AUTH_NONE,
        });
        self.sync_cardholder_usage(id.seq() as usize, now_s);
        Ok(Outcome::CardholderCreated(id))
    }

    fn update_cardholder(
        &mut self,
        id: CardholderId,
        name: Option<&str>,
        status: Option<CardholderStatus>,
        controls: Option<&SpendingControls>,
        now_s: i64,
    ) -> Result<Outcome, CommandError> {
        let i = self.cardholder_index(id).ok_or(CommandError::NotFound {
            param: "cardholder",
        })?;
        if let Some(n) = name {
            check_name(n)?;
        }
        let controls = controls.map(checked_controls).transpose()?;
        let ch = &mut self.cardholders[i];
        if let Some(n) = name {
            ch.name = n.to_string();
        }
        if let Some(s) = status {
            ch.status = s;
        }
        if let Some(c) = controls {
            ch.controls = boxed_controls(c);
            self.sync_cardholder_usage(i, now_s);
        }
        Ok(Outcome::Updated)
    }

    fn create_card(&mut self, cmd: &Command, now_s: i64) -> Result<Outcome, CommandError> {
        let Command::CreateCard {
            cardholder,
            pan_hash,
            last4,
            exp_month,
            exp_year,
            status,
            spending_controls,
            replacement_for,
        } = cmd
        else {
            unreachable!("create_card is only called with CreateCard");
        };
        self.cardholder_index(*cardholder)
            .ok_or(CommandError::NotFound {
                param: "cardholder",
            })?;
        if !last4.iter().all(u8::is_ascii_digit) {
            return Err(invalid("last4", "must be four digits"));
        }
        if !(1..=12).contains(exp_month) {
            return Err(invalid("exp_month", "must be 1 to 12"));
        }
        if !(2000..=2099).contains(exp_year) {
            return Err(invalid("exp_year", "must be 2000 to 2099"));
        }
        let controls = checked_controls(spending_controls)?;
        let id = CardId::new(self.shard, self.cards.len() as u64);
        let usage_root = match replacement_for {
            None => id,
            Some(old) => {
                let oi = self.card_index(*old).ok_or(CommandError::NotFound {
                    param: "replacement_for",
                })?;
                if self.cards[oi].cardholder != *cardholder {
                    return Err(invalid("replacement_for", "card of another cardholder"));
                }
                self.cards[oi].usage_root
            }
        };
        if self.cards.len() >= CARDS_MAX {
            return Err(CommandError::CapacityReached { what: "cards" });
        }
        self.cards.push(Card {
            id,
            cardholder: *cardholder,
            pan_hash: *pan_hash,
            last4: *last4,
            exp_month: *exp_month,
            exp_year: *exp_year,
            status: *status,
            controls: boxed_controls(controls),
            replacement_for: *replacement_for,
            usage_root,
            usage: None,
            last_auth: AUTH_NONE,
        });
        self.sync_card_usage(id.seq() as usize, now_s);
        Ok(Outcome::CardCreated(id))
    }

    fn update_card(
        &mut self,
        id: CardId,
        status: Option<CardStatus>,
        controls: Option<&SpendingControls>,
        now_s: i64,
    ) -> Result<Outcome, CommandError> {
        let i = self
            .card_index(id)
            .ok_or(CommandError::NotFound { param: "card" })?;
        let controls = controls.map(checked_controls).transpose()?;
        let card = &mut self.cards[i];
        if let Some(s) = status {
            // Canceled, lost and stolen are final, as in Stripe.
            let final_state = matches!(
                card.status,
                CardStatus::Canceled | CardStatus::Lost | CardStatus::Stolen
            );
            if final_state && s != card.status {
                return Err(invalid("status", "card is canceled, lost or stolen"));
            }
            card.status = s;
        }
        if let Some(c) = controls {
            card.controls = boxed_controls(c);
            self.sync_card_usage(i, now_s);
        }
        Ok(Outcome::Updated)
    }

    fn set_config(&mut self, config: &ProgramConfig) -> Result<Outcome, CommandError> {
        let mut config = config.clone();
        normalize_limits(&mut config.default_spending_limits);
        validate_limits(&config.default_spending_limits).map_err(CommandError::Controls)?;
        let ages = [
            ("hold_expiry_s", config.hold_expiry_s),
            ("hold_expiry_lodging_s", config.hold_expiry_lodging_s),
            ("retention_s", config.retention_s),
        ];
        for (param, age_s) in ages {
            if !(1..=AGE_S_MAX).contains(&age_s) {
                return Err(invalid(param, "must be between 1 second and 400 days"));
            }
        }
        if !(1..=AUTHORIZATION_SLOTS_MAX as u64).contains(&config.authorizations_max) {
            return Err(invalid(
                "authorizations_max",
                "must be between 1 and 16777216",
            ));
        }
        self.config = config;
        Ok(Outcome::ConfigSet)
    }

    /// Every card's PAN hash and id, to rebuild the routing index after recovery.
    pub fn cards_for_index(&self) -> impl Iterator<Item = ([u8; 32], CardId)> + '_ {
        self.cards.iter().map(|c| (c.pan_hash, c.id))
    }

    /// Authorizations kept (open and retained) and the program's bound on them.
    pub fn authorizations_kept(&self) -> (u64, u64) {
        (self.auths.len() as u64, self.config.authorizations_max)
    }

    /// Held and available sums per currency, sorted by currency code.
    pub fn totals_by_currency(&self) -> Vec<CurrencyTotals> {
        let mut out: Vec<CurrencyTotals> = Vec::new();
        for a in self.accounts.iter() {
            match out.iter_mut().find(|t| t.currency == a.currency) {
                Some(t) => {
                    t.held_minor = t.held_minor.saturating_add(a.held_minor);
                    t.available_minor = t.available_minor.saturating_add(a.available_minor);
                }
                None => out.push(CurrencyTotals {
                    currency: a.currency,
                    held_minor: a.held_minor,
                    available_minor: a.available_minor,
                }),
            }
        }
        out.sort_by_key(|t| t.currency);
        out
    }

    /// Reads ahead the key-index slots that `cmd` is about to look up, and nothing else.
    ///
    /// The key index holds millions of keys and a lookup is a cache miss. Applied one after
    /// another, a batch's commands take their misses one at a time, each behind hundreds of
    /// instructions of decision; read first in a tight loop of independent loads, the misses
    /// overlap and the lookups and inserts find their slots in cache. Changes no state.
    pub fn warm(&self, cmd: &Command) {
        let (key, other) = match cmd {
            Command::Authorize(r) | Command::Advice(r) | Command::Financial(r) => {
                (&r.key, r.original.as_ref())
            }
            Command::Reverse(r) => (&r.key, Some(&r.original)),
            _ => return,
        };
        self.keys.warm(key);
        if let Some(other) = other {
            self.keys.warm(other);
        }
    }

    /// Reads ahead the slots the next `n` authorization records will be written to (and
    /// allocates the next chunk of them if they reach into it).
    ///
    /// The records are appended to memory no authorization has touched yet: out of cache, so
    /// each new record's 256 bytes are four cache misses that its write waits for. Asked for
    /// before a window of commands is decided, those misses overlap (`authorize_3_limits_
    /// window/32` on the 1-3 M-hold shard: see `docs/performance-history.md`). Changes no
    /// state a command or a snapshot sees.
    pub fn warm_new_records(&mut self, n: usize) {
        for (first, count) in self.auths.ahead(n) {
            let bytes = count * std::mem::size_of::<Option<Authorization>>();
            super::keymap::prefetch_range(first.cast(), bytes);
        }
    }

    /// Number of authorization records currently kept (for tests and metrics).
    pub fn authorization_count(&self) -> usize {
        self.auths.iter().filter(|a| a.is_some()).count()
    }

    /// Number of entries in the transaction-key index.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// A copy for a snapshot, in microseconds whatever the size: the big collections share
    /// their chunks with the copy, and later writes take back what they touch.
    pub fn share(&mut self) -> ShardState {
        ShardState {
            shard: self.shard,
            config: self.config.clone(),
            accounts: self.accounts.share(),
            overdrawn: self.overdrawn.clone(),
            cardholders: self.cardholders.share(),
            cards: self.cards.share(),
            auth_base_seq: self.auth_base_seq,
            auths: self.auths.share(),
            txn_base_seq: self.txn_base_seq,
            txns: self.txns.share(),
            keys: self.keys.share(),
            early_reversals: self.early_reversals.share(),
            webhooks: self.webhooks.clone(),
            awaiting: self.awaiting.clone(),
        }
    }

    /// Postcard encoding of the whole state, for WAL snapshots.
    pub fn to_snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("state encodes")
    }

    /// Loads a snapshot and checks its invariants before trusting it.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let state: Self = postcard::from_bytes(bytes)?;
        state.check_invariants()?;
        Ok(state)
    }

    /// blake3 over a canonical encoding: every part in id order, the key index sorted.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        hash_part(
            &mut h,
            &(self.shard, &self.config, &self.accounts, &self.overdrawn),
        );
        hash_part(&mut h, &(&self.cardholders, &self.cards));
        hash_part(&mut h, &(self.auth_base_seq, &self.auths));
        hash_part(&mut h, &(self.txn_base_seq, &self.txns));
        let mut keys: Vec<(&TxnKey, &KeyEntry)> = self.keys.iter().collect();
        keys.sort_unstable_by_key(|(k, _)| **k);
        hash_part(&mut h, &keys);
        let mut early: Vec<_> = self.early_reversals.iter().collect();
        early.sort_unstable_by_key(|(k, _)| **k);
        hash_part(&mut h, &early);
        hash_part(&mut h, &(&self.webhooks, &self.awaiting));
        *h.finalize().as_bytes()
    }
}

/// Feeds one length-prefixed postcard-encoded part into the digest.
fn hash_part<T: Serialize>(h: &mut blake3::Hasher, part: &T) {
    let bytes = postcard::to_allocvec(part).expect("state encodes");
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(&bytes);
}

fn check_name(name: &str) -> Result<(), CommandError> {
    if name.is_empty() || name.len() > NAME_LEN_MAX {
        return Err(invalid("name", "must be 1 to 64 bytes"));
    }
    Ok(())
}
