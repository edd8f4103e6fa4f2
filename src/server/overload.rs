//! How many requests a connection keeps in the switch while it is shedding.
//!
//! Under a standing overload a connection's requests fill whatever bound it has, and by
//! Little's law each served request then spends about `in flight / rate served` in the
//! switch: at the default bound of 512 on four connections, about 2 000 requests against the
//! 270 000/s one core serves, 7-8 ms each, and every batch is larger and every sync slower
//! (2026-12-07, `scripts/overload`). Shedding more of the flood and serving the rest sooner
//! is what an acquirer wants: a 91 now, or an answer in time.
//!
//! So each connection's writer keeps a cap (`OverloadCap`), adapted to the mean time its
//! served requests spent in the switch (frame read to answer written; not the platform's
//! time for the requests that waited on an authorization webhook), interval by interval:
//! down by a quarter when the mean was above `server.overload_latency_target_ms`, up by an
//! eighth otherwise, between `CAP_FLOOR` and the connection's bound. The cap applies only
//! while the connection is shedding anyway: for `SHED_INTERVAL` after the writer last wrote
//! a 91 of the overload policy (at the door for the bound, the read lag or the cap itself,
//! or from a full or shedding shard queue, or a missed deadline). Then the reader answers 91
//! at the door the frames that find the cap reached (webhook calls under way not counted
//! against it). A burst, a slow sync or a stall outside an overload lowers the cap but sheds
//! nothing, and the cap is back at the bound within seconds of the latency returning under
//! target. Under a standing overload the cap settles where the mean latency meets the
//! target.

use std::time::{Duration, Instant};

use crate::ledger::shard::SHED_INTERVAL;

/// The cap never goes below this (nor above the connection's bound): with a slow disk the
/// mean may stay above target at any cap, and a cap of a few requests would then serve
/// almost nothing.
pub const CAP_FLOOR: usize = 32;

/// The cap of one connection, kept by its writer.
pub struct OverloadCap {
    /// Mean latency above which the cap comes down; zero turns the cap off.
    target: Duration,
    bound: usize,
    cap: usize,
    interval_end: Instant,
    sum: Duration,
    samples: u32,
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
            shedding_until: None,
        }
    }

    /// Notes one served request that spent `latency` in the switch, answered at `now`; at an
    /// interval's end, moves the cap.
    pub fn served(&mut self, latency: Duration, now: Instant) {
        if self.target.is_zero() {
            return;
        }
        self.sum = self.sum.saturating_add(latency);
        self.samples = self.samples.saturating_add(1);
        if now < self.interval_end {
            return;
        }
        let mean = self.sum / self.samples;
        let floor = CAP_FLOOR.min(self.bound);
        self.cap = if mean > self.target {
            (self.cap - self.cap / 4).max(floor)
        } else {
            (self.cap + self.cap / 8 + 1).min(self.bound)
        };
        self.sum = Duration::ZERO;
        self.samples = 0;
        self.interval_end = now + SHED_INTERVAL;
    }

    /// A request of this connection was answered 91 by the overload policy at `now`.
    pub fn shed(&mut self, now: Instant) {
        self.shedding_until = Some(now + SHED_INTERVAL);
    }

    /// The requests the connection may have in the switch at `now` beside `exempt` ones (its
    /// webhook calls under way): the cap while it sheds, else the bound. At the bound or
    /// above, the cap does not apply (the bound and its door do).
    pub fn effective(&self, now: Instant, exempt: usize) -> usize {
        let shedding = self.shedding_until.is_some_and(|until| now < until);
        if self.target.is_zero() || !shedding {
            return self.bound;
        }
        self.cap.saturating_add(exempt).min(self.bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds one interval of samples of `latency` starting at `start`; returns the cap at its
    /// end (as it applies while shedding).
    fn interval(cap: &mut OverloadCap, start: Instant, latency: Duration) -> usize {
        cap.shed(start);
        for i in 0..99 {
            let before = cap.effective(start + i * MS, 0);
            cap.served(latency, start + i * MS);
            assert_eq!(cap.effective(start + i * MS, 0), before, "moved at {i} ms");
        }
        let end = start + 100 * MS;
        cap.served(latency, end);
        cap.shed(end);
        cap.effective(end, 0)
    }

    #[test]
    fn the_cap_follows_the_mean_latency_between_floor_and_bound() {
        let t0 = Instant::now();
        let mut cap = OverloadCap::new(2 * MS, 512, t0);
        // Over target: down by a quarter each interval, to the floor and no further.
        let mut expected = 512;
        let mut start = t0;
        for _ in 0..12 {
            expected = (expected - expected / 4).max(CAP_FLOOR);
            assert_eq!(interval(&mut cap, start, 3 * MS), expected);
            start += 100 * MS;
        }
        assert_eq!(expected, CAP_FLOOR);
        // On target: up by an eighth (and one) each interval, to the bound and no further.
        for _ in 0..40 {
            expected = (expected + expected / 8 + 1).min(512);
            assert_eq!(interval(&mut cap, start, 2 * MS), expected);
            start += 100 * MS;
        }
        assert_eq!(expected, 512);
    }

    #[test]
    fn the_mean_decides_not_the_last_sample() {
        let t0 = Instant::now();
        let mut cap = OverloadCap::new(2 * MS, 512, t0);
        cap.shed(t0);
        // 90 samples of 1 ms and 10 of 10 ms: mean 1.9 ms, under target.
        for i in 0..90 {
            cap.served(MS, t0 + i * MS);
        }
        for i in 90..100 {
            cap.served(10 * MS, t0 + (i + 1) * MS);
        }
        cap.shed(t0 + 100 * MS);
        assert_eq!(cap.effective(t0 + 100 * MS, 0), 512);
        // 80 of 1 ms and 20 of 10 ms: mean 2.8 ms, over.
        let t1 = t0 + 100 * MS;
        for i in 0..80 {
            cap.served(MS, t1 + i * MS);
        }
        for i in 80..100 {
            cap.served(10 * MS, t1 + (i + 1) * MS);
        }
        cap.shed(t1 + 100 * MS);
        assert_eq!(cap.effective(t1 + 100 * MS, 0), 384);
    }

    #[test]
    fn the_cap_applies_only_while_shedding_and_not_to_webhook_calls() {
        let t0 = Instant::now();
        let mut cap = OverloadCap::new(2 * MS, 512, t0);
        for i in 0..=100 {
            cap.served(50 * MS, t0 + i * MS);
        }
        let t1 = t0 + 100 * MS;
        assert_eq!(cap.effective(t1, 0), 512, "lowered, but nothing shed yet");
        cap.shed(t1);
        assert_eq!(cap.effective(t1 + MS, 0), 384);
        assert_eq!(
            cap.effective(t1 + MS, 10),
            394,
            "webhook calls do not count"
        );
        assert_eq!(cap.effective(t1 + MS, 500), 512, "never above the bound");
        assert_eq!(cap.effective(t1 + 99 * MS, 0), 384);
        assert_eq!(
            cap.effective(t1 + 100 * MS, 0),
            512,
            "an interval without a shed ends it"
        );
        cap.shed(t1 + 150 * MS);
        assert_eq!(cap.effective(t1 + 200 * MS, 0), 384);
    }

    #[test]
    fn a_small_bound_is_its_own_floor_and_zero_target_is_off() {
        let t0 = Instant::now();
        let mut cap = OverloadCap::new(2 * MS, 8, t0);
        assert_eq!(interval(&mut cap, t0, 5 * MS), 8);
        let mut off = OverloadCap::new(Duration::ZERO, 512, t0);
        off.shed(t0);
        for i in 0..1_000 {
            off.served(50 * MS, t0 + i * MS);
            off.shed(t0 + i * MS);
        }
        assert_eq!(off.effective(t0 + 999 * MS, 0), 512);
    }
}
