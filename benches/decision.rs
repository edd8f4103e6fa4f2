//! Decision + apply of one `Authorize` on a shard whose card has three spending limits
//! (daily, weekly, monthly) and whose cardholder has a category block list: the hot path of
//! the shard thread, without the WAL. Each iteration is a new transaction key, so every one
//! is a real approval that places a hold.

use authswitch::domain::controls::{Interval, SpendingControls, SpendingLimit};
use authswitch::ledger::testkit::{admin, purchase, Fixture, T0_S};
use authswitch::ledger::{apply, Command, Outcome, TxnKey};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn limits() -> SpendingControls {
    let limit = |amount_minor, interval| SpendingLimit {
        amount_minor,
        interval,
        categories: vec![],
    };
    SpendingControls {
        spending_limits: vec![
            limit(900_000_000_000, Interval::Daily),
            limit(900_000_000_000, Interval::Weekly),
            limit(900_000_000_000, Interval::Monthly),
        ],
        ..Default::default()
    }
}

fn bench_authorize(c: &mut Criterion) {
    let mut f = Fixture::new(999_999_999_999);
    let cmd = Command::UpdateCard {
        card: f.card,
        status: None,
        spending_controls: Some(limits()),
    };
    admin(&mut f.state, cmd, T0_S);
    let holder = SpendingControls {
        blocked_categories: vec![7995],
        ..Default::default()
    };
    let cmd = Command::UpdateCardholder {
        cardholder: f.cardholder,
        name: None,
        status: None,
        spending_controls: Some(holder),
    };
    admin(&mut f.state, cmd, T0_S);
    let mut cmd = Command::Authorize(purchase(f.card, 0, 1));
    let mut n: u64 = 0;
    c.bench_function("authorize_3_limits", |b| {
        b.iter(|| {
            n += 1;
            if let Command::Authorize(req) = &mut cmd {
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&n.to_le_bytes());
                req.key = TxnKey(k);
            }
            let out = apply(&mut f.state, black_box(&cmd), T0_S);
            assert!(matches!(out, Outcome::Authorization(ref a) if a.code.is_approval()));
            black_box(out);
        })
    });
}

criterion_group!(benches, bench_authorize);
criterion_main!(benches);
