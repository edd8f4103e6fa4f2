//! Decision + apply of one `Authorize` on a shard whose card has three spending limits
//! (daily, weekly, monthly) and whose cardholder has a category block list: the hot path of
//! the shard thread, without the WAL. Each iteration is a new transaction key, so every one
//! is a real approval that places a hold. `authorize_3_limits_other_account_webhook` is the
//! same with an authorization webhook set on another account of the shard: the cost of the
//! platform checks for an account without an endpoint. The shard holds 1M to 3M open holds
//! while it is measured (see `PREFILL`). `authorize_3_limits_cached` is the first on a shard
//! of 10 000 to 60 000 holds whose key index stays in cache: the decision's own work without
//! most of the memory misses, and a steadier figure to compare two builds with.

use authswitch::domain::Currency;
use authswitch::ledger::testkit::{
    admin, apply_approved, purchase, set_key_number, three_limits, Fixture, T0_S,
};
use authswitch::ledger::{Command, Outcome, TimeoutDecision, WebhookConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench_authorize(c: &mut Criterion) {
    run(c, "authorize_3_limits", false, BIG);
    run(c, "authorize_3_limits_other_account_webhook", true, BIG);
    run(c, "authorize_3_limits_cached", false, CACHED);
    run_windows(c);
}

/// A second account of the shard with a decision endpoint.
fn other_account_webhook(f: &mut Fixture) {
    let currency = Currency::from_numeric(840).expect("usd");
    let Outcome::AccountCreated(account) =
        admin(&mut f.state, Command::CreateAccount { currency }, T0_S)
    else {
        panic!("account not created")
    };
    let webhook = WebhookConfig {
        url: "http://127.0.0.1:9/decide".into(),
        secret: "whsec_0123456789abcdef".into(),
        deadline_ms: 300,
        on_timeout: TimeoutDecision::Decline,
    };
    let cmd = Command::SetAuthorizationWebhook {
        account,
        webhook: Some(webhook),
    };
    admin(&mut f.state, cmd, T0_S);
}

/// Holds already open when measuring starts, and the most a shard gets to before it is
/// rebuilt (outside the timed part): the decision is measured on a shard of 1M to 3M holds,
/// whose key index does not fit in cache, and memory stays bounded however long it runs.
const PREFILL: u64 = 1_000_000;
const HOLDS_MAX: u64 = 3_000_000;

/// Holds open at the start and at most: the big shard, and one that stays in cache.
#[derive(Clone, Copy)]
struct Size {
    prefill: u64,
    max: u64,
}

const BIG: Size = Size {
    prefill: PREFILL,
    max: HOLDS_MAX,
};
const CACHED: Size = Size {
    prefill: 10_000,
    max: 60_000,
};

/// The shard the bench runs on, with `prefill` holds open. Keys are numbered from 1.
fn shard(webhook_elsewhere: bool, prefill: u64) -> Fixture {
    let mut f = Fixture::new(999_999_999_999);
    if webhook_elsewhere {
        other_account_webhook(&mut f);
    }
    three_limits(&mut f);
    let mut cmd = Command::Authorize(purchase(f.card, 0, 1));
    for n in 1..=prefill {
        authorize(&mut f, &mut cmd, n);
    }
    f
}

/// One approval under key `n`.
fn authorize(f: &mut Fixture, cmd: &mut Command, n: u64) {
    set_key_number(cmd, n);
    apply_approved(f, cmd);
}

fn run(c: &mut Criterion, name: &str, webhook_elsewhere: bool, size: Size) {
    let mut f = shard(webhook_elsewhere, size.prefill);
    let mut cmd = Command::Authorize(purchase(f.card, 0, 1));
    let mut n = size.prefill;
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut timed = std::time::Duration::ZERO;
            let mut left = iters;
            // Each pass adds at least one hold, and a full shard is rebuilt.
            while left > 0 {
                if n >= size.max {
                    f = shard(webhook_elsewhere, size.prefill);
                    n = size.prefill;
                }
                let pass = left.min(size.max - n);
                let started = std::time::Instant::now();
                for _ in 0..pass {
                    n += 1;
                    authorize(&mut f, &mut cmd, n);
                }
                timed += started.elapsed();
                left -= pass;
            }
            timed
        })
    });
}

/// Authorizations as the shard thread takes them from its queue: `WINDOW` at a time, their
/// key-index slots (`ShardState::warm`) and the slots their records will fill
/// (`ShardState::warm_new_records`) read ahead before each is decided and applied. Reported per
/// authorization (criterion's throughput in elements).
const WINDOW: u64 = 32;

fn run_windows(c: &mut Criterion) {
    let mut f = shard(false, PREFILL);
    let mut cmds: Vec<Command> = (0..WINDOW)
        .map(|_| Command::Authorize(purchase(f.card, 0, 1)))
        .collect();
    let mut n = PREFILL;
    let mut group = c.benchmark_group("authorize_3_limits_window");
    group.throughput(Throughput::Elements(WINDOW));
    group.bench_function("32", |b| {
        b.iter_custom(|iters| {
            let mut timed = std::time::Duration::ZERO;
            for _ in 0..iters {
                if n + WINDOW > HOLDS_MAX {
                    f = shard(false, PREFILL);
                    n = PREFILL;
                }
                let started = std::time::Instant::now();
                for cmd in cmds.iter_mut() {
                    n += 1;
                    set_key_number(cmd, n);
                    f.state.warm(cmd);
                }
                f.state.warm_new_records(cmds.len());
                for cmd in &cmds {
                    apply_approved(&mut f, cmd);
                }
                timed += started.elapsed();
            }
            timed
        })
    });
    group.finish();
}

criterion_group!(benches, bench_authorize);
criterion_main!(benches);
