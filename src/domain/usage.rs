//! Spend counted against spending limits, per calendar window.
//!
//! A `Usage` belongs to a card (shared by its replacements) or a cardholder. It keeps one
//! bucket per distinct (interval, categories) of the limits that apply: the bucket holds the
//! start of the window it counts and the approved amount in it, net of reversals. Two limits
//! with the same interval and categories share a bucket, so a program default and a card
//! limit of the same shape see the same spend.
//!
//! A bucket is always complete: it has seen every amount counted in its window. A limit that
//! has no bucket yet (it was just added, or it came back after being removed) gets one built
//! from the authorization records (`Spent`: the shard walks the owner's records of the
//! window), so a limit added mid-window counts what was approved before it, at once. Every
//! count and release first drops the buckets of limits that no longer apply, so a bucket that
//! stopped counting for a while is rebuilt rather than trusted when its limit returns.

use super::calendar::{day_start_s, month_start_of_s, week_start_s, year_start_of_s};
use super::controls::{Interval, SpendingLimit};
use serde::{Deserialize, Serialize};

/// Most buckets one usage keeps (twice the limits of one list).
pub const USAGE_BUCKETS_MAX: usize = 32;

/// What the records say a limit has counted: the approved amount, net of releases, of the
/// owner's authorizations created at or after `from_s` that `limit` covers.
pub type Spent<'a> = &'a dyn Fn(&SpendingLimit, i64) -> i64;

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

/// The limits of a list that count spend over a window, each shape once, with their keys.
fn windowed(limits: &[SpendingLimit]) -> impl Iterator<Item = (&SpendingLimit, u64)> {
    limits.iter().enumerate().filter_map(|(i, limit)| {
        if limit.interval == Interval::PerAuthorization {
            return None;
        }
        let key = limit_key(limit);
        (!seen_before(limits, i, key)).then_some((limit, key))
    })
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    key: u64,
    window_start_s: i64,
    used_minor: i64,
}

impl Bucket {
    /// What it has counted in the window starting at `start_s`: nothing if it counts an
    /// earlier one (it is complete, so nothing was counted in this one yet).
    fn used_in(&self, start_s: i64) -> i64 {
        if self.window_start_s == start_s {
            self.used_minor
        } else {
            0
        }
    }

    /// Counts `amount_minor` in the window starting at `start_s`.
    fn count(&mut self, start_s: i64, amount_minor: i64) {
        if self.window_start_s != start_s {
            // A new window: what was counted before does not count any more.
            self.window_start_s = start_s;
            self.used_minor = 0;
        }
        self.used_minor = self.used_minor.saturating_add(amount_minor);
    }
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

    /// Approved spend counted by `limit` in the window containing `now_s`, or `None` when
    /// no bucket counts it (the records must tell).
    pub fn used_minor(&self, limit: &SpendingLimit, now_s: i64) -> Option<i64> {
        self.used_in(limit, window_start_s(limit.interval, now_s))
    }

    /// `used_minor` for the window starting at `start_s`.
    fn used_in(&self, limit: &SpendingLimit, start_s: i64) -> Option<i64> {
        Some(self.bucket(limit_key(limit))?.used_in(start_s))
    }

    /// True when the buckets are one per limit of `limits`, in their order, as `sync`
    /// builds them for a list of distinct limits over windows (nearly every list): bucket
    /// `i` is then limit `i`'s, and none needs dropping. A list with a shape twice, a
    /// per-authorization limit or a change since takes the general path.
    fn in_order(&self, limits: &[SpendingLimit]) -> bool {
        self.buckets.len() == limits.len()
            && self
                .buckets
                .iter()
                .zip(limits)
                .all(|(b, l)| b.key == limit_key(l))
    }

    /// Drops the buckets of limits not in `limits`: they stop counting from here on.
    fn keep_only(&mut self, limits: &[SpendingLimit]) {
        let applies = |b: &Bucket| limits.iter().any(|l| limit_key(l) == b.key);
        // Nearly always every bucket still applies: look before rewriting the list.
        if !self.buckets.iter().all(applies) {
            self.buckets.retain(applies);
        }
    }

    /// Builds the buckets `limits` lack, for the windows containing `now_s`, from `spent`.
    pub fn sync(&mut self, limits: &[SpendingLimit], now_s: i64, spent: Spent<'_>) {
        self.keep_only(limits);
        for (limit, key) in windowed(limits) {
            if self.bucket(key).is_none() {
                self.rebuild(limit, key, now_s, spent);
            }
        }
    }

    fn rebuild(&mut self, limit: &SpendingLimit, key: u64, now_s: i64, spent: Spent<'_>) {
        assert!(
            self.buckets.len() < USAGE_BUCKETS_MAX,
            "usage buckets over limit"
        );
        let start = window_start_s(limit.interval, now_s);
        self.buckets.push(Bucket {
            key,
            window_start_s: start,
            used_minor: spent(limit, start),
        });
    }

    /// Counts an approved `amount_minor` in `mcc`, of an authorization made at `made_s`, at
    /// `now_s` against every matching limit. The records already include it (`spent` sees
    /// it), so a bucket built here does not add it again.
    ///
    /// An authorization counts in the window it was made in, as `release` and the records
    /// (`spent`) count it: a later increment to it (an incremental authorization, an advice
    /// raising it) counts there too, so in no current window once that window has ended.
    pub fn record(
        &mut self,
        limits: &[SpendingLimit],
        mcc: u16,
        amount_minor: i64,
        (made_s, now_s): (i64, i64),
        spent: Spent<'_>,
    ) {
        let current = |limit: &SpendingLimit| {
            made_s == now_s
                || window_start_s(limit.interval, made_s) == window_start_s(limit.interval, now_s)
        };
        if self.in_order(limits) {
            for (b, limit) in self.buckets.iter_mut().zip(limits) {
                if limit.covers(mcc) && current(limit) {
                    b.count(window_start_s(limit.interval, now_s), amount_minor);
                }
            }
            return;
        }
        self.keep_only(limits);
        for (limit, key) in windowed(limits) {
            if !limit.covers(mcc) || !current(limit) {
                continue;
            }
            let start = window_start_s(limit.interval, now_s);
            match self.buckets.iter_mut().find(|b| b.key == key) {
                Some(b) => b.count(start, amount_minor),
                None => self.rebuild(limit, key, now_s, spent),
            }
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
        self.keep_only(limits);
        for (limit, key) in windowed(limits) {
            if !limit.covers(mcc) {
                continue;
            }
            let start = window_start_s(limit.interval, created_s);
            if let Some(b) = self.buckets.iter_mut().find(|b| b.key == key) {
                if b.window_start_s == start {
                    b.used_minor = (b.used_minor - amount_minor).max(0);
                }
            }
        }
    }
}

/// How much more may be approved in `mcc` at `now_s` under `limits` (`i64::MAX` if no limit
/// applies). Never negative. A limit without a bucket asks `spent`.
pub fn headroom_minor(
    limits: &[SpendingLimit],
    usage: Option<&Usage>,
    mcc: u16,
    now_s: i64,
    spent: Spent<'_>,
) -> i64 {
    let mut room = i64::MAX;
    let in_order = usage.filter(|u| u.in_order(limits));
    for (i, limit) in limits.iter().enumerate().filter(|(_, l)| l.covers(mcc)) {
        let used = match limit.interval {
            Interval::PerAuthorization => 0,
            interval => {
                let start = window_start_s(interval, now_s);
                let counted = match in_order {
                    Some(u) => Some(u.buckets[i].used_in(start)),
                    None => usage.and_then(|u| u.used_in(limit, start)),
                };
                counted.unwrap_or_else(|| spent(limit, start))
            }
        };
        room = room.min((limit.amount_minor - used).max(0));
    }
    room
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn lim(amount_minor: i64, interval: Interval, categories: Vec<u16>) -> SpendingLimit {
        SpendingLimit {
            amount_minor,
            interval,
            categories,
        }
    }

    /// The authorization records a shard would walk: (created_s, mcc, counted).
    #[derive(Default)]
    struct Records(RefCell<Vec<(i64, u16, i64)>>);

    impl Records {
        fn add(&self, created_s: i64, mcc: u16, amount: i64) {
            self.0.borrow_mut().push((created_s, mcc, amount));
        }

        fn spent(&self, limit: &SpendingLimit, from_s: i64) -> i64 {
            let r = self.0.borrow();
            r.iter()
                .filter(|(t, mcc, _)| *t >= from_s && limit.covers(*mcc))
                .map(|(_, _, a)| a)
                .sum()
        }
    }

    /// An approval as the shard counts it: into the records first, then the usage.
    fn approve(u: &mut Usage, r: &Records, limits: &[SpendingLimit], t: i64, mcc: u16, a: i64) {
        r.add(t, mcc, a);
        u.record(limits, mcc, a, (t, t), &|l, from| r.spent(l, from));
    }

    fn room(u: &Usage, r: &Records, limits: &[SpendingLimit], t: i64, mcc: u16) -> i64 {
        headroom_minor(limits, Some(u), mcc, t, &|l, from| r.spent(l, from))
    }

    /// Buckets one per limit in the list's order take the fast path (`in_order`); the same
    /// limits listed in another order, or with a shape twice, take the general one. Both
    /// count and answer alike, across a window's end.
    #[test]
    fn buckets_in_the_limits_order_or_not_count_the_same() {
        let daily = lim(10_000, Interval::Daily, vec![]);
        let weekly = lim(25_000, Interval::Weekly, vec![]);
        let groceries = lim(4_000, Interval::Daily, vec![5411]);
        let lists = [
            vec![daily.clone(), weekly.clone(), groceries.clone()],
            vec![groceries.clone(), daily.clone(), weekly.clone()],
            vec![
                daily.clone(),
                weekly.clone(),
                groceries.clone(),
                daily.clone(),
            ],
        ];
        // 2024-03-15 (a Friday) 10:00 UTC, then the next day.
        let t = 1_710_496_800;
        let (mut u, r) = (Usage::default(), Records::default());
        u.sync(&lists[0], t, &|l, from| r.spent(l, from));
        assert!(u.in_order(&lists[0]));
        for (n, limits) in lists.iter().enumerate() {
            assert_eq!(u.in_order(limits), n == 0, "list {n}");
        }
        let mut rooms = Vec::new();
        for (step, (dt, mcc, amount)) in [(0, 5411, 1_500), (60, 5812, 3_000), (86_400, 5411, 800)]
            .into_iter()
            .enumerate()
        {
            // Each step counts through one of the lists, then every list answers.
            let limits = &lists[step % lists.len()];
            approve(&mut u, &r, limits, t + dt, mcc, amount);
            let answers: Vec<_> = lists
                .iter()
                .map(|l| (room(&u, &r, l, t + dt, 5411), room(&u, &r, l, t + dt, 5812)))
                .collect();
            assert!(
                answers.iter().all(|a| *a == answers[0]),
                "step {step}: {answers:?}"
            );
            rooms.push(answers[0]);
        }
        // Daily 10 000 (all), weekly 25 000 (all), daily 4 000 in groceries (5411).
        assert_eq!(rooms, [(2_500, 8_500), (2_500, 5_500), (3_200, 9_200)]);
    }

    #[test]
    fn record_and_headroom_with_categories() {
        let limits = vec![
            lim(10_000, Interval::Daily, vec![]),
            lim(3_000, Interval::Daily, vec![5812]),
            lim(2_500, Interval::PerAuthorization, vec![]),
        ];
        let (mut u, r) = (Usage::default(), Records::default());
        let t = 1_700_000_000;
        assert_eq!(room(&u, &r, &limits, t, 5812), 2_500);
        approve(&mut u, &r, &limits, t, 5812, 2_000);
        assert_eq!(room(&u, &r, &limits, t, 5812), 1_000);
        assert_eq!(room(&u, &r, &limits, t, 5411), 2_500);
        approve(&mut u, &r, &limits, t, 5411, 2_500);
        assert_eq!(u.used_minor(&limits[0], t), Some(4_500));
        assert_eq!(u.used_minor(&limits[1], t), Some(2_000));
        u.release(&limits, 5812, 2_000, t);
        assert_eq!(u.used_minor(&limits[0], t), Some(2_500));
        assert_eq!(u.used_minor(&limits[1], t), Some(0));
    }

    #[test]
    fn same_shape_limits_share_a_bucket() {
        let limits = vec![
            lim(500, Interval::Daily, vec![]),
            lim(900, Interval::Daily, vec![]),
        ];
        let (mut u, r) = (Usage::default(), Records::default());
        approve(&mut u, &r, &limits, 0, 1, 400);
        assert_eq!(u.buckets.len(), 1);
        assert_eq!(u.used_minor(&limits[1], 0), Some(400));
        assert_eq!(room(&u, &r, &limits, 0, 1), 100);
    }

    #[test]
    fn release_from_a_past_window_changes_nothing() {
        let limits = vec![lim(500, Interval::Daily, vec![])];
        let (mut u, r) = (Usage::default(), Records::default());
        approve(&mut u, &r, &limits, 86_399, 1, 400);
        approve(&mut u, &r, &limits, 86_400, 1, 100);
        u.release(&limits, 1, 400, 86_399);
        assert_eq!(u.used_minor(&limits[0], 86_400), Some(100));
        // The next day starts from zero; a bucket of an earlier window answers 0, not None.
        assert_eq!(u.used_minor(&limits[0], 2 * 86_400), Some(0));
    }

    #[test]
    fn limit_added_mid_window_counts_what_was_approved_before_it() {
        let (mut u, r) = (Usage::default(), Records::default());
        // Approved while the card had no limits: only the records saw it.
        r.add(1_000, 5411, 300);
        r.add(1_100, 5812, 50);
        let limits = vec![
            lim(500, Interval::Daily, vec![]),
            lim(100, Interval::Daily, vec![5812]),
        ];
        assert_eq!(room(&u, &r, &limits, 2_000, 5411), 150);
        assert_eq!(room(&u, &r, &limits, 2_000, 5812), 50);
        u.sync(&limits, 2_000, &|l, from| r.spent(l, from));
        assert_eq!(u.used_minor(&limits[0], 2_000), Some(350));
        assert_eq!(u.used_minor(&limits[1], 2_000), Some(50));
        approve(&mut u, &r, &limits, 2_500, 5411, 100);
        assert_eq!(u.used_minor(&limits[0], 2_500), Some(450));
        // The earlier authorization is reversed: counted, so taken back (from its record too).
        r.0.borrow_mut()[0].2 = 0;
        u.release(&limits, 5411, 300, 1_000);
        assert_eq!(u.used_minor(&limits[0], 2_500), Some(150));
        // Spend of yesterday never counts.
        r.add(-10, 5411, 1_000);
        let mut fresh = Usage::default();
        fresh.sync(&limits, 2_500, &|l, from| r.spent(l, from));
        assert_eq!(fresh.used_minor(&limits[0], 2_500), Some(150));
    }

    #[test]
    fn a_bucket_built_by_a_count_does_not_add_the_amount_twice() {
        let (mut u, r) = (Usage::default(), Records::default());
        r.add(10, 1, 200);
        let limits = vec![lim(1_000, Interval::Weekly, vec![])];
        approve(&mut u, &r, &limits, 20, 1, 300);
        assert_eq!(u.used_minor(&limits[0], 20), Some(500));
    }

    #[test]
    fn a_limit_removed_then_added_back_is_rebuilt_from_the_records() {
        let daily = vec![lim(1_000, Interval::Daily, vec![])];
        let weekly = vec![lim(5_000, Interval::Weekly, vec![])];
        let (mut u, r) = (Usage::default(), Records::default());
        approve(&mut u, &r, &daily, 100, 1, 100);
        // Under other limits the daily bucket stops counting and is dropped ...
        approve(&mut u, &r, &weekly, 200, 1, 250);
        assert_eq!(u.used_minor(&daily[0], 200), None);
        // ... so when the daily limit returns it is built again, with both approvals.
        assert_eq!(room(&u, &r, &daily, 300, 1), 650);
        u.sync(&daily, 300, &|l, from| r.spent(l, from));
        assert_eq!(u.used_minor(&daily[0], 300), Some(350));
        assert_eq!(u.used_minor(&weekly[0], 300), None);
    }
}
