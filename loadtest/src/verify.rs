//! Balance verification: what the responses said against what the switch's admin API shows.
//!
//! The generator records, per account, the change of `held` it expects from the approvals it
//! saw (authorizations, incrementals and advices add; reversals release down to DE95 or to
//! zero). After the run each account's balance is compared with the one read before it:
//!
//! - held moved by exactly the expected amount;
//! - nothing appeared or vanished: `available + held + spent` is unchanged (no funding
//!   happens during the run), i.e. `funded − spent − held = available` still holds;
//! - no approval beyond funds: the non-advice holds added (net of what reversals released)
//!   fit in what was available before, and without advices (which may overdraw)
//!   `available ≥ 0`. The check is on the net: an approval beyond funds that a reversal
//!   released again before the end is not seen (that would take the switch's order of
//!   decisions, which the responses on several connections do not give).
//!
//! An account that had a request time out or fail is skipped: whether the switch applied it
//! is unknown. A run in which every account was skipped verified nothing, and fails.

use serde::Serialize;

/// An Issuing balance as the admin API shows it, minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    pub available_minor: i64,
    pub held_minor: i64,
    pub spent_minor: i64,
}

/// What the responses seen for one account imply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountTrack {
    /// Approved amounts not reversed, advices included.
    pub held_delta_minor: i64,
    /// Part of `held_delta_minor` that came from advices.
    pub advice_minor: i64,
    /// A request of this account had no clear outcome (timeout, error).
    pub uncertain: bool,
}

impl AccountTrack {
    pub fn hold(&mut self, amount_minor: i64) {
        self.held_delta_minor = self
            .held_delta_minor
            .checked_add(amount_minor)
            .expect("held delta overflows i64");
    }

    pub fn advice(&mut self, amount_minor: i64) {
        self.hold(amount_minor);
        self.advice_minor = self
            .advice_minor
            .checked_add(amount_minor)
            .expect("advice total overflows i64");
    }

    pub fn release(&mut self, amount_minor: i64) {
        self.hold(-amount_minor);
    }

    /// Sums the tracks of the same account from two connections.
    pub fn merge(&mut self, other: &AccountTrack) {
        self.hold(other.held_delta_minor);
        self.advice_minor = self
            .advice_minor
            .checked_add(other.advice_minor)
            .expect("advice total overflows i64");
        self.uncertain |= other.uncertain;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// `held` did not move by what the approvals and reversals add up to.
    Held,
    /// `available + held + spent` changed: money appeared or vanished.
    Conservation,
    /// Approved beyond the funds available, with no advice to explain it.
    BeyondFunds,
}

/// One failed check of one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub account: String,
    pub kind: MismatchKind,
    pub expected_minor: i64,
    pub actual_minor: i64,
}

fn total(b: &Balance) -> Option<i64> {
    b.available_minor
        .checked_add(b.held_minor)?
        .checked_add(b.spent_minor)
}

/// Checks one account; returns every failed check.
pub fn check_account(
    account: &str,
    before: &Balance,
    after: &Balance,
    track: &AccountTrack,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut push = |kind, expected_minor, actual_minor| {
        out.push(Mismatch {
            account: account.to_string(),
            kind,
            expected_minor,
            actual_minor,
        })
    };
    let expected_held = before.held_minor.saturating_add(track.held_delta_minor);
    if after.held_minor != expected_held {
        push(MismatchKind::Held, expected_held, after.held_minor);
    }
    let (total_before, total_after) = (total(before), total(after));
    if total_before != total_after {
        push(
            MismatchKind::Conservation,
            total_before.unwrap_or(i64::MAX),
            total_after.unwrap_or(i64::MAX),
        );
    }
    // Advices may overdraw; nothing else may, whether the account had advices or not.
    let approved = track.held_delta_minor.saturating_sub(track.advice_minor);
    if track.advice_minor == 0 && after.available_minor < 0 {
        push(MismatchKind::BeyondFunds, 0, after.available_minor);
    } else if approved > before.available_minor.max(0) {
        push(MismatchKind::BeyondFunds, before.available_minor, approved);
    }
    out
}

/// Result of verifying every account, as reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub accounts_checked: u64,
    /// Accounts skipped because a request of theirs had no clear outcome.
    pub accounts_skipped: u64,
    pub mismatches: Vec<Mismatch>,
}

/// Mismatches kept in the report; the count beyond is still reflected in `ok`.
pub const MISMATCHES_REPORTED_MAX: usize = 100;

/// Verifies all accounts: `ids[i]` has balances `before[i]`, `after[i]` and track `tracks[i]`.
pub fn verify_all(
    ids: &[String],
    before: &[Balance],
    after: &[Balance],
    tracks: &[AccountTrack],
) -> VerifyReport {
    assert!(ids.len() == before.len() && ids.len() == after.len() && ids.len() == tracks.len());
    let mut report = VerifyReport {
        ok: true,
        ..VerifyReport::default()
    };
    for i in 0..ids.len() {
        if tracks[i].uncertain {
            report.accounts_skipped += 1;
            continue;
        }
        report.accounts_checked += 1;
        let found = check_account(&ids[i], &before[i], &after[i], &tracks[i]);
        if !found.is_empty() {
            report.ok = false;
        }
        let room = MISMATCHES_REPORTED_MAX.saturating_sub(report.mismatches.len());
        report.mismatches.extend(found.into_iter().take(room));
    }
    if report.accounts_checked == 0 && !ids.is_empty() {
        // Every account had a request without a clear outcome: nothing was verified.
        report.ok = false;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance(available: i64, held: i64, spent: i64) -> Balance {
        Balance {
            available_minor: available,
            held_minor: held,
            spent_minor: spent,
        }
    }

    #[test]
    fn consistent_account_passes() {
        let mut track = AccountTrack::default();
        track.hold(1_000);
        track.hold(250);
        track.release(400);
        assert_eq!(track.held_delta_minor, 850);
        let before = balance(10_000, 100, 50);
        let after = balance(9_150, 950, 50);
        assert_eq!(check_account("acct_1", &before, &after, &track), []);
    }

    #[test]
    fn held_and_conservation_mismatches_are_named() {
        let mut track = AccountTrack::default();
        track.hold(1_000);
        let before = balance(10_000, 0, 0);
        // Held 900 instead of 1000, and 100 vanished.
        let after = balance(9_000, 900, 0);
        assert_eq!(
            check_account("acct_1", &before, &after, &track),
            [
                Mismatch {
                    account: "acct_1".into(),
                    kind: MismatchKind::Held,
                    expected_minor: 1_000,
                    actual_minor: 900
                },
                Mismatch {
                    account: "acct_1".into(),
                    kind: MismatchKind::Conservation,
                    expected_minor: 10_000,
                    actual_minor: 9_900
                }
            ]
        );
    }

    #[test]
    fn overdraft_is_an_error_only_without_advices() {
        let mut track = AccountTrack::default();
        track.hold(1_500);
        let before = balance(1_000, 0, 0);
        let after = balance(-500, 1_500, 0);
        let found = check_account("a", &before, &after, &track);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, MismatchKind::BeyondFunds);
        assert_eq!((found[0].expected_minor, found[0].actual_minor), (0, -500));

        let mut advised = AccountTrack::default();
        advised.hold(900);
        advised.advice(600);
        assert_eq!(advised.held_delta_minor, 1_500);
        assert_eq!(check_account("a", &before, &after, &advised), []);
    }

    #[test]
    fn an_advice_does_not_hide_other_approvals_beyond_funds() {
        // 1 000 available; an approval of 1 000 000 and an advice of 1.
        let mut track = AccountTrack::default();
        track.hold(1_000_000);
        track.advice(1);
        let before = balance(1_000, 0, 0);
        let after = balance(-999_001, 1_000_001, 0);
        let found = check_account("a", &before, &after, &track);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, MismatchKind::BeyondFunds);
        assert_eq!(
            (found[0].expected_minor, found[0].actual_minor),
            (1_000, 1_000_000)
        );
    }

    #[test]
    fn verify_all_skips_uncertain_accounts_and_merges() {
        let ids = vec!["a".to_string(), "b".to_string()];
        let mut a = AccountTrack::default();
        a.hold(10);
        let mut a2 = AccountTrack::default();
        a2.advice(5);
        a.merge(&a2);
        assert_eq!((a.held_delta_minor, a.advice_minor), (15, 5));
        let b = AccountTrack {
            uncertain: true,
            ..AccountTrack::default()
        };
        let before = [balance(100, 0, 0), balance(100, 0, 0)];
        let after = [balance(85, 15, 0), balance(0, 0, 0)];
        let report = verify_all(&ids, &before, &after, &[a, b]);
        assert!(report.ok);
        assert_eq!((report.accounts_checked, report.accounts_skipped), (1, 1));
        let after = [balance(86, 15, 0), balance(0, 0, 0)];
        let report = verify_all(&ids, &before, &after, &[a, b]);
        assert!(!report.ok);
        assert_eq!(report.mismatches[0].kind, MismatchKind::Conservation);
        // Every account skipped: nothing verified, which is not a pass.
        let report = verify_all(&ids, &before, &after, &[b, b]);
        assert!(!report.ok && report.mismatches.is_empty());
        assert_eq!((report.accounts_checked, report.accounts_skipped), (0, 2));
    }
}
