//! Memory budget: one shard with 1 million cards and 1 million open holds must stay under
//! 512 MiB resident. Heavy, so ignored by default; run it with
//! `cargo test --release --test ledger_memory -- --ignored --nocapture`.
//! It also prints what a snapshot copy of that shard costs the shard thread.

use authswitch::domain::controls::SpendingControls;
use authswitch::domain::entities::{Account, Card, Cardholder};
use authswitch::domain::{CardStatus, CardholderId, CardholderStatus};
use authswitch::ledger::records::Authorization;
use authswitch::ledger::testkit::{purchase, Fixture, T0_S};
use authswitch::ledger::{apply, Command, Outcome, TxnKey};

const CARDS: u64 = 1_000_000;
const CARDS_PER_HOLDER: u64 = 100;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value")
}

#[test]
fn struct_sizes_stay_compact() {
    println!(
        "size_of: Account {} Cardholder {} Card {} Authorization {}",
        std::mem::size_of::<Account>(),
        std::mem::size_of::<Cardholder>(),
        std::mem::size_of::<Card>(),
        std::mem::size_of::<Authorization>()
    );
    assert!(std::mem::size_of::<Card>() <= 128);
    assert!(std::mem::size_of::<Authorization>() <= 256);
}

#[test]
#[ignore]
fn one_million_cards_and_holds_under_512_mib() {
    let before_kib = rss_kib();
    let mut f = Fixture::new(999_999_999_999);
    let holders = CARDS / CARDS_PER_HOLDER;
    for h in 0..holders {
        let cmd = Command::CreateCardholder {
            account: f.account,
            name: format!("holder {h}"),
            status: CardholderStatus::Active,
            spending_controls: SpendingControls::default(),
        };
        assert!(matches!(
            apply(&mut f.state, &cmd, T0_S),
            Outcome::CardholderCreated(_)
        ));
    }
    for c in 1..CARDS {
        let mut pan_hash = [0u8; 32];
        pan_hash[..8].copy_from_slice(&c.to_le_bytes());
        let cmd = Command::CreateCard {
            cardholder: CardholderId::new(1, 1 + c / CARDS_PER_HOLDER),
            pan_hash,
            last4: *b"1111",
            exp_month: 12,
            exp_year: 2030,
            status: CardStatus::Active,
            spending_controls: SpendingControls::default(),
            replacement_for: None,
        };
        assert!(matches!(
            apply(&mut f.state, &cmd, T0_S),
            Outcome::CardCreated(_)
        ));
    }
    let mut req = purchase(f.card, 0, 100);
    for c in 0..CARDS {
        req.card = authswitch::domain::CardId::new(1, c);
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&(c + 1).to_le_bytes());
        k[8..].copy_from_slice(&c.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        req.key = TxnKey(k);
        let out = apply(&mut f.state, &Command::Authorize(req.clone()), T0_S);
        assert!(matches!(out, Outcome::Authorization(ref a) if a.code.is_approval()));
    }
    let used_kib = rss_kib();
    println!(
        "1M cards + 1M holds: RSS {} MiB (before {} MiB), authorizations {}",
        used_kib / 1024,
        before_kib / 1024,
        f.state.authorization_count()
    );
    assert_eq!(f.state.authorization_count(), CARDS as usize);
    f.state.check_invariants().expect("invariants hold");
    assert!(used_kib < 512 * 1024, "RSS {used_kib} KiB over 512 MiB");

    // The copy a snapshot takes shares the state's chunks; writes after it copy what they touch
    // and leave the copy as it was.
    let digest = f.state.digest();
    let started = std::time::Instant::now();
    let copy = f.state.share();
    let copy_us = started.elapsed().as_micros();
    let mut req = purchase(f.card, 0, 100);
    req.key = TxnKey([0xab; 16]);
    let out = apply(&mut f.state, &Command::Authorize(req), T0_S);
    assert!(matches!(out, Outcome::Authorization(ref a) if a.code.is_approval()));
    assert_eq!(copy.digest(), digest);
    assert_ne!(f.state.digest(), digest);
    println!("snapshot copy of that shard: {copy_us} µs");
}
