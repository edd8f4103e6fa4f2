//! How many requests a connection keeps in the switch while it is shedding.
//!
//! Under a standing overload a connection's requests fill whatever bound it has, and by
//! Little's law each served request then spends about `in flight / rate served` in the
//! switch: at the default bound of 512 on four connections, about 2 000 requests against the
//! 270 000/s one core serves, 7-8 ms each, and every batch is larger and every sync slower
//! (2026-12-07, `scripts/overload`). Shedding more of the flood and serving the rest sooner
//! is what an acquirer wants: a 91 now, or an answer in time.
//!
//! So each connection's writer keeps a cap (`OverloadCap`) on the requests it may have in the
//! switch, adapted interval by interval (`SHED_INTERVAL`) to how long its served requests
//! spent there (frame read to answer written; not the platform's time for the requests that
//! waited on an authorization webhook). The yardstick is the least such time of the last
//! second, the base: a request may wait for the batch in progress and then its own, so a
//! mean of up to two bases is not queueing, and beyond that up to
//! `server.overload_latency_target_ms` is allowed. Above it the cap comes down by a quarter,
//! otherwise it goes up by an eighth, between `CAP_FLOOR` and the connection's bound. A slow
//! disk raises the base, not the queueing, so it does not hold the cap down.
//!
//! The cap applies only while the connection sheds: for `SHED_INTERVAL` after the writer last
//! wrote a 91 of the overload policy (at the door for the bound, the read lag or the cap
//! itself, from a full or shedding shard queue, or for a missed deadline). Then the reader
//! answers 91 at the door the frames that find the cap reached (webhook calls under way do not
//! count against it). The writer publishes the cap with the instant it lapses (`SharedCap`),
//! and the reader checks that instant itself, so a connection that goes quiet does not keep
//! an old cap. A burst, a slow sync or a stall outside an overload may lower the cap but
//! sheds nothing, and under a standing overload the cap settles where the queueing meets the
//! target.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ledger::shard::SHED_INTERVAL;

/// The cap never goes below this (nor above the connection's bound), so that a connection
/// whose every request is slow still serves some.
pub const CAP_FLOOR: usize = 32;

/// Intervals over which the least latency served is the base that the mean is measured
/// against (a second).
const BASE_INTERVALS: usize = 10;

/// The cap of one connection, kept by its writer.
pub struct OverloadCap {
    /// Queueing allowed beyond one base latency before the cap comes down; zero turns the cap
    /// off.
    target: Duration,
    bound: usize,
    cap: usize,
    interval_end: Instant,
    sum: Duration,
    samples: u32,
    interval_min: Duration,
    /// The least latency of each of the last intervals (`Duration::MAX`: none).
    mins: [Duration; BASE_INTERVALS],
    next_min: usize,
    /// Until when the connection counts as shedding.
    shedding_until: Option<Instant>,
}

impl OverloadCap {
    pub fn new(target: Duration, bound: usize, now: Instant) -> Self {
        OverloadCap {
            target,
            bound,
            cap: bound,
            interval_end: now + SHED_INTERVAL,
            sum: Duration::ZERO,
            samples: 0,
            interval_min: Duration::MAX,
            mins: [Duration::MAX; BASE_INTERVALS],
            next_min: 0,
            shedding_until: None,
        }
    }

    /// Notes one served request that spent `latency` in the switch, answered at `now`; at an
    /// interval's end, moves the cap.
    pub fn served(&mut self, latency: Duration, now: Instant) {
        if self.target.is_zero() {
            return;
        }
        if self.samples == 0 && now >= self.interval_end {
            // The first answer after a quiet spell starts an interval (it does not end one),
            // and the base is learnt again.
            self.interval_end = now + SHED_INTERVAL;
            self.mins = [Duration::MAX; BASE_INTERVALS];
        }
        self.sum = self.sum.saturating_add(latency);
        self.samples = self.samples.saturating_add(1);
        self.interval_min = self.interval_min.min(latency);
        if now < self.interval_end {
            return;
        }
        let mean = self.sum / self.samples;
        self.mins[self.next_min] = self.interval_min;
        self.next_min = (self.next_min + 1) % BASE_INTERVALS;
        // A request may wait for the batch in progress before its own: up to one base is not
        // queueing. Beyond that, up to the target is allowed.
        let base = self.mins.iter().copied().min().unwrap_or(Duration::ZERO);
        let floor = CAP_FLOOR.min(self.bound);
        self.cap = if mean.saturating_sub(base) > base.saturating_add(self.target) {
            (self.cap - self.cap / 4).max(floor)
        } else {
            (self.cap + self.cap / 8 + 1).min(self.bound)
        };
        self.sum = Duration::ZERO;
        self.samples = 0;
        self.interval_min = Duration::MAX;
        self.interval_end = now + SHED_INTERVAL;
    }

    /// A request of this connection was answered 91 by the overload policy at `now` (the
    /// cap's own included: while the cap holds requests back, the connection is still over
    /// what it may have in the switch).
    pub fn shed(&mut self, now: Instant) {
        self.shedding_until = Some(now + SHED_INTERVAL);
    }

    /// The cap to apply beside `exempt` requests (the connection's webhook calls under way),
    /// and until when it applies (`None`: not shedding, or the cap is off).
    pub fn effective(&self, exempt: usize) -> (usize, Option<Instant>) {
        if self.target.is_zero() {
            return (self.bound, None);
        }
        let cap = self.cap.saturating_add(exempt).min(self.bound);
        (cap, self.shedding_until)
    }
}

/// The cap as the writer publishes it and the reader applies it.
pub struct SharedCap {
    epoch: Instant,
    cap: AtomicUsize,
    /// Microseconds after `epoch` until which the cap applies; 0: it does not.
    until_us: AtomicU64,
}

impl SharedCap {
    pub fn new(bound: usize) -> Self {
        SharedCap {
            epoch: Instant::now(),
            cap: AtomicUsize::new(bound),
            until_us: AtomicU64::new(0),
        }
    }

    pub fn publish(&self, (cap, until): (usize, Option<Instant>)) {
        let until_us = until.map_or(0, |until| self.micros(until).max(1));
        self.cap.store(cap, Ordering::Relaxed);
        self.until_us.store(until_us, Ordering::Relaxed);
    }

    /// Whether a frame read at `now` with `in_flight` requests in the switch (of at most
    /// `bound`) finds the cap reached. At the bound the cap does not apply: the bound and its
    /// door do.
    pub fn reached(&self, now: Instant, in_flight: usize, bound: usize) -> bool {
        let cap = self.cap.load(Ordering::Relaxed);
        cap < bound && in_flight >= cap && self.micros(now) < self.until_us.load(Ordering::Relaxed)
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds one interval of samples starting at `start`, one a millisecond: the first of
    /// `base`, the others of `latency`; returns the cap at its end.
    fn interval(cap: &mut OverloadCap, start: Instant, base: Duration, latency: Duration) -> usize {
        cap.served(base, start);
        for i in 1..100 {
            let before = cap.effective(0).0;
            cap.served(latency, start + i * MS);
            assert_eq!(cap.effective(0).0, before, "moved at {i} ms");
        }
        cap.served(latency, start + 100 * MS);
        cap.effective(0).0
    }

    #[test]
    fn the_cap_follows_the_queueing_between_floor_and_bound() {
        let t0 = Instant::now();
        let mut cap = OverloadCap::new(2 * MS, 512, t0);
        // Requests that take 5 ms where the quickest took 1 ms (4 ms of waiting, more than one
        // base and the target): down by a quarter each interval, to the floor and no further.
        let mut expected = 512;
        let mut start = t0;
        for _ in 0..12 {
            expected = (expected - expected / 4).max(CAP_FLOOR);
            assert_eq!(interval(&mut cap, start, MS, 5 * MS), expected);
            start += 100 * MS;
        }
        assert_eq!(expected, CAP_FLOOR);
        // 3 ms, within one base and the target: up by an eighth (and one) each interval, to
        // the bound.
        for _ in 0..40 {
            expected = (expected + expected / 8 + 1).min(512);
            assert_eq!(interval(&mut cap, start, MS, 3 * MS), expected);
            start += 100 * MS;
        }
        assert_eq!(expected, 512);
    }

    #[test]
    fn a_slow_disk_is_not_queueing() {
        // Every request takes 30 ms or 31 ms: nothing waits for anything but the disk, and the
        // cap stays at the bound.
        let t0 = Instant::now();
        let mut cap = OverloadCap::new(2 * MS, 512, t0);
        let mut start = t0;
        for _ in 0..5 {
            assert_eq!(interval(&mut cap, start, 30 * MS, 31 * MS), 512);
            start += 100 * MS;
        }
        // Waiting for the batch in progress is not queueing: 60 ms is still within one base
        // and the target. 70 ms is not.
        assert_eq!(interval(&mut cap, start, 30 * MS, 60 * MS), 512);
        start += 100 * MS;
        for _ in 0..3 {
            interval(&mut cap, start, 30 * MS, 70 * MS);
            start += 100 * MS;
        }
        // Once down, it comes back up though every request still takes 30 ms.
        assert_eq!(cap.effective(0).0, 216);
        assert_eq!(interval(&mut cap, start, 30 * MS, 31 * MS), 244);
    }

    #[test]
    fn the_base_is_the_least_latency_of_the_last_second() {
        let t0 = Instant::now();
        let mut cap = OverloadCap::new(2 * MS, 512, t0);
        // A quick interval, then ones whose quickest took 10 ms and the rest 11 ms: queueing
        // against the base of 1 ms while the quick interval is among the last ten, then 1 ms
        // above their own base.
        assert_eq!(interval(&mut cap, t0, MS, MS), 512);
        let mut start = t0 + 100 * MS;
        let mut expected = 512;
        for _ in 0..9 {
            expected -= expected / 4;
            assert_eq!(interval(&mut cap, start, 10 * MS, 11 * MS), expected);
            start += 100 * MS;
        }
        expected += expected / 8 + 1;
        assert_eq!(interval(&mut cap, start, 10 * MS, 11 * MS), expected);
    }

    #[test]
    fn a_quiet_spell_starts_a_new_interval() {
        let t0 = Instant::now();
        let mut cap = OverloadCap::new(2 * MS, 512, t0);
        cap.served(MS, t0);
        cap.served(10 * MS, t0 + 100 * MS);
        assert_eq!(cap.effective(0).0, 384);
        // Seconds later, a slow first answer starts a new interval and a new base: 50 ms
        // answers after it are not queueing against the 1 ms of before.
        let t1 = t0 + 5_000 * MS;
        assert_eq!(interval(&mut cap, t1, 50 * MS, 50 * MS), 433);
    }

    #[test]
    fn the_cap_applies_only_while_shedding_and_not_to_webhook_calls() {
        let t0 = Instant::now();
        let mut cap = OverloadCap::new(2 * MS, 512, t0);
        interval(&mut cap, t0, MS, 50 * MS);
        let t1 = t0 + 100 * MS;
        assert_eq!(
            cap.effective(0),
            (384, None),
            "lowered, but nothing shed yet"
        );
        let shared = SharedCap::new(512);
        shared.publish(cap.effective(0));
        assert!(!shared.reached(t1, 500, 512), "not shedding");
        cap.shed(t1);
        assert_eq!(cap.effective(10), (394, Some(t1 + 100 * MS)));
        assert_eq!(cap.effective(500).0, 512, "never above the bound");
        shared.publish(cap.effective(0));
        assert!(shared.reached(t1 + MS, 384, 512));
        assert!(!shared.reached(t1 + MS, 383, 512), "under the cap");
        assert!(shared.reached(t1 + 99 * MS, 511, 512));
        assert!(
            !shared.reached(t1 + 101 * MS, 511, 512),
            "an interval without a shed ends it, though nothing was published since"
        );
        shared.publish(cap.effective(128));
        assert!(
            !shared.reached(t1 + MS, 511, 512),
            "at the bound the door decides"
        );
    }

    #[test]
    fn a_small_bound_is_its_own_floor_and_zero_target_is_off() {
        let t0 = Instant::now();
        let mut cap = OverloadCap::new(2 * MS, 8, t0);
        assert_eq!(interval(&mut cap, t0, MS, 5 * MS), 8);
        let mut off = OverloadCap::new(Duration::ZERO, 512, t0);
        off.shed(t0);
        for i in 0..1_000 {
            off.served(if i % 2 == 0 { MS } else { 50 * MS }, t0 + i * MS);
        }
        assert_eq!(off.effective(0), (512, None));
    }
}
