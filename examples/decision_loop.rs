//! A fixed loop of authorizations for counting instructions: `scripts/decision-instructions`
//! runs it under callgrind and divides what `decide` executed by `DECISIONS`. The shard and
//! the request are `authorize_3_limits_cached`'s (benches/decision.rs): a figure that does
//! not move with the machine's noise, to compare two builds of the decision path with. It
//! says nothing about memory stalls, which the criterion benches measure.

use authswitch::ledger::testkit::{
    apply_approved, purchase, set_key_number, three_limits, Fixture,
};
use authswitch::ledger::Command;

/// Authorizations decided before `decide` runs, so that it decides on a shard in use.
const PREFILL: u64 = 10_000;
/// Authorizations `decide` makes (the script divides by this).
const DECISIONS: u64 = 100_000;

fn approve(f: &mut Fixture, cmd: &mut Command, n: u64) {
    set_key_number(cmd, n);
    apply_approved(f, cmd);
}

/// What callgrind counts (`--toggle-collect=decision_loop::decide`).
#[inline(never)]
fn decide(f: &mut Fixture, cmd: &mut Command) {
    for n in PREFILL + 1..=PREFILL + DECISIONS {
        approve(f, cmd, n);
    }
}

fn main() {
    let mut f = Fixture::new(999_999_999_999);
    three_limits(&mut f);
    let mut cmd = Command::Authorize(purchase(f.card, 0, 1));
    for n in 1..=PREFILL {
        approve(&mut f, &mut cmd, n);
    }
    decide(&mut f, &mut cmd);
    println!("{DECISIONS}");
}
