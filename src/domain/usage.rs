//! Spend counted against spending limits, per calendar window.
//!
//! A `Usage` belongs to a card (shared by its replacements) or a cardholder. It keeps one
//! bucket per distinct (interval, categories) of the limits that applied: the bucket holds the
//! start of the window it counts and the approved amount in it, net of reversals. Two limits
//! with the same interval and categories share a bucket, so a program default and a card
//! limit of the same shape see the same spend. A bucket created while a window is running
//! counts from its creation (`counted_from_s`), so releasing an older authorization never
//! subtracts what was never added.

use super::calendar::{day_start_s, month_start_of_s, week_start_s, year_start_of_s};
use super::controls::{Interval, SpendingLimit};
use serde::{Deserialize, Serialize};

/// Most buckets one usage keeps (twice the limits of one list, see `evict_unused`).
pub const USAGE_BUCKETS_MAX: usize = 32;

/// Start of the window of `interval` containing `now_s` (`i64::MIN` for all_time).
pub fn window_start_s(interval: Interval, now_s: i64) -> i64 {
    match interval {
        Interval::Daily => day_start_s(now_s),
        Interval::Weekly => week_start_s(now_s),
        Interval::Monthly => month_start_of_s(now_s),
        Interval::Yearly => year_start_of_s(now_s),
        Interval::AllTime | Interval::PerAuthorization => i64::MIN,
    }
}

/// Identity of the spend a limit counts: its interval and its (sorted) categories.
fn limit_key(limit: &SpendingLimit) -> u64 {
    // FNV-1a: cheap, stable across builds and platforms (it ends up in snapshots).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    mix(limit.interval as u8);
    for c in &limit.categories {
        c.to_le_bytes().into_iter().for_each(&mut mix);
    }
    h
}

/// Whether an earlier limit in the list has the same key (so the spend is counted once).
fn seen_before(limits: &[SpendingLimit], i: usize, key: u64) -> bool {
    limits[..i].iter().any(|l| limit_key(l) == key)
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    key: u64,
    window_start_s: i64,
    counted_from_s: i64,
    used_minor: i64,
}

/// Spend per window for one card (lineage) or cardholder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    buckets: Vec<Bucket>,
}

impl Usage {
    fn bucket(&self, key: u64) -> Option<&Bucket> {
        self.buckets.iter().find(|b| b.key == key)
    }

    /// Approved spend counted by `limit` in the window containing `now_s`.
    pub fn used_minor(&self, limit: &SpendingLimit, now_s: i64) -> i64 {
        match self.bucket(limit_key(limit)) {
            Some(b) if b.window_start_s == window_start_s(limit.interval, now_s) => b.used_minor,
            _ => 0,
        }
    }

    /// Drops buckets that none of `limits` uses, so a new one fits.
    fn evict_unused(&mut self, limits: &[SpendingLimit]) {
        self.buckets
            .retain(|b| limits.iter().any(|l| limit_key(l) == b.key));
        assert!(
            self.buckets.len() < USAGE_BUCKETS_MAX,
            "usage buckets over limit"
        );
    }

    /// Counts an approved `amount_minor` in `mcc` at `now_s` against every matching limit.
    pub fn record(&mut self, limits: &[SpendingLimit], mcc: u16, amount_minor: i64, now_s: i64) {
        for (i, limit) in limits.iter().enumerate() {
            if limit.interval == Interval::PerAuthorization || !limit.covers(mcc) {
                continue;
            }
            let key = limit_key(limit);
            if seen_before(limits, i, key) {
                continue;
            }
            let start = window_start_s(limit.interval, now_s);
            let pos = self.buckets.iter().position(|b| b.key == key);
            let pos = match pos {
                Some(p) => p,
                None => {
                    if self.buckets.len() >= USAGE_BUCKETS_MAX {
                        self.evict_unused(limits);
                    }
                    let counted_from_s = now_s;
                    self.buckets.push(Bucket {
                        key,
                        window_start_s: start,
                        counted_from_s,
                        ..Default::default()
                    });
                    self.buckets.len() - 1
                }
            };
            let b = &mut self.buckets[pos];
            if b.window_start_s != start {
                // A new window: what was counted before does not count any more.
                *b = Bucket {
                    key,
                    window_start_s: start,
                    counted_from_s: start,
                    used_minor: 0,
                };
            }
            b.used_minor = b.used_minor.saturating_add(amount_minor);
        }
    }

    /// Takes back `amount_minor` of an authorization made at `created_s` (reversal, expiry,
    /// partial capture release), only from windows that counted it and are still current.
    pub fn release(
        &mut self,
        limits: &[SpendingLimit],
        mcc: u16,
        amount_minor: i64,
        created_s: i64,
    ) {
        for (i, limit) in limits.iter().enumerate() {
            if limit.interval == Interval::PerAuthorization || !limit.covers(mcc) {
                continue;
            }
            let key = limit_key(limit);
            if seen_before(limits, i, key) {
                continue;
            }
            let start = window_start_s(limit.interval, created_s);
            if let Some(b) = self.buckets.iter_mut().find(|b| b.key == key) {
                if b.window_start_s == start && created_s >= b.counted_from_s {
                    b.used_minor = (b.used_minor - amount_minor).max(0);
                }
            }
        }
    }
}

/// How much more may be approved in `mcc` at `now_s` under `limits` (`i64::MAX` if no limit
/// applies). Never negative.
pub fn headroom_minor(
    limits: &[SpendingLimit],
    usage: Option<&Usage>,
    mcc: u16,
    now_s: i64,
) -> i64 {
    let mut room = i64::MAX;
    for limit in limits.iter().filter(|l| l.covers(mcc)) {
        let used = match (limit.interval, usage) {
            (Interval::PerAuthorization, _) | (_, None) => 0,
            (_, Some(u)) => u.used_minor(limit, now_s),
        };
        room = room.min((limit.amount_minor - used).max(0));
    }
    room
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(amount_minor: i64, interval: Interval, categories: Vec<u16>) -> SpendingLimit {
        SpendingLimit {
            amount_minor,
            interval,
            categories,
        }
    }

    #[test]
    fn record_and_headroom_with_categories() {
        let limits = vec![
            lim(10_000, Interval::Daily, vec![]),
            lim(3_000, Interval::Daily, vec![5812]),
            lim(2_500, Interval::PerAuthorization, vec![]),
        ];
        let mut u = Usage::default();
        let t = 1_700_000_000;
        assert_eq!(headroom_minor(&limits, Some(&u), 5812, t), 2_500);
        u.record(&limits, 5812, 2_000, t);
        assert_eq!(headroom_minor(&limits, Some(&u), 5812, t), 1_000);
        assert_eq!(headroom_minor(&limits, Some(&u), 5411, t), 2_500);
        u.record(&limits, 5411, 2_500, t);
        assert_eq!(u.used_minor(&limits[0], t), 4_500);
        assert_eq!(u.used_minor(&limits[1], t), 2_000);
        u.release(&limits, 5812, 2_000, t);
        assert_eq!(u.used_minor(&limits[0], t), 2_500);
        assert_eq!(u.used_minor(&limits[1], t), 0);
    }

    #[test]
    fn same_shape_limits_share_a_bucket() {
        let limits = vec![
            lim(500, Interval::Daily, vec![]),
            lim(900, Interval::Daily, vec![]),
        ];
        let mut u = Usage::default();
        u.record(&limits, 1, 400, 0);
        assert_eq!(u.used_minor(&limits[1], 0), 400);
        assert_eq!(headroom_minor(&limits, Some(&u), 1, 0), 100);
    }

    #[test]
    fn release_from_a_past_window_changes_nothing() {
        let limits = vec![lim(500, Interval::Daily, vec![])];
        let mut u = Usage::default();
        u.record(&limits, 1, 400, 86_399);
        u.record(&limits, 1, 100, 86_400);
        u.release(&limits, 1, 400, 86_399);
        assert_eq!(u.used_minor(&limits[0], 86_400), 100);
    }

    #[test]
    fn limit_added_mid_window_does_not_release_older_spend() {
        let limits = vec![lim(500, Interval::Daily, vec![])];
        let mut u = Usage::default();
        u.record(&limits, 1, 100, 1_000);
        u.release(&limits, 1, 100, 999);
        assert_eq!(u.used_minor(&limits[0], 1_000), 100);
    }
}
