//! Whether a connection's reader is keeping up with its peer: how long ago it last found its
//! socket empty.
//!
//! The shards' CoDel and the door at the in-flight bound both act on requests the reader has
//! already taken. When the reader itself falls behind (the machine's CPU is short, not a
//! shard), neither sees anything: requests wait in the peer's send buffer and in ours, and a
//! served request may have waited seconds there before the switch's own clock starts. The
//! bytes waiting in our receive buffer do not measure that queue (TCP's window keeps it to
//! about one window while the rest waits at the sender, and it runs empty between windows),
//! but the reader's lag does: a reader that keeps up finds its socket empty again and again,
//! one that is behind always finds more to read. So the reader notes when it last had to
//! wait for data (`caught_up`, at the end of the wait), and the lag of a read is the time
//! since.
//!
//! Once a read has lagged `SHED_INTERVAL` (a standing queue, not a burst), the frames of every
//! read that lags more than `target` are answered 91 at the door, which costs a decode and an
//! encode instead of a decision. The reader then soon catches up, serves what it reads within
//! `target` of catching up (those requests have not waited long), and sheds the rest until it
//! catches up again. The state ends once `SHED_INTERVAL` has passed without a read lagging
//! more than `target`.

use std::time::{Duration, Instant};

use crate::ledger::shard::SHED_INTERVAL;

/// The reader's lag behind its socket, and whether it sheds.
pub struct ReadLag {
    /// Lag above which a read is behind; zero turns shedding off.
    target: Duration,
    /// When the reader last finished waiting for data (or the connection started).
    caught_up_at: Instant,
    /// The last read that lagged more than `target`.
    last_over: Option<Instant>,
    shedding: bool,
}

impl ReadLag {
    pub fn new(target: Duration, now: Instant) -> Self {
        ReadLag {
            target,
            caught_up_at: now,
            last_over: None,
            shedding: false,
        }
    }

    /// The reader found its socket empty and waited for data until `now`: it has caught up
    /// with its peer, and what it reads next is fresh.
    pub fn caught_up(&mut self, now: Instant) {
        self.caught_up_at = now;
    }

    /// A read at `now` returned data; true if its frames are to be answered 91 at the door.
    pub fn after_read(&mut self, now: Instant) -> bool {
        if self.target.is_zero() {
            return false;
        }
        let lag = now.saturating_duration_since(self.caught_up_at);
        let over = lag > self.target;
        if over {
            self.last_over = Some(now);
            if lag >= SHED_INTERVAL {
                self.shedding = true;
            }
        } else {
            let quiet = self
                .last_over
                .is_none_or(|at| now.saturating_duration_since(at) >= SHED_INTERVAL);
            if quiet {
                self.shedding = false;
            }
        }
        self.shedding && over
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const TARGET: Duration = Duration::from_millis(2);

    #[test]
    fn a_burst_is_read_a_standing_backlog_is_shed() {
        let t0 = Instant::now();
        let mut lag = ReadLag::new(TARGET, t0);
        // A burst: 99 ms of reads that always find more, then the socket is empty.
        for i in 1..100 {
            assert!(!lag.after_read(t0 + i * MS), "burst shed at {i} ms");
        }
        lag.caught_up(t0 + 100 * MS);
        // Reads that find more for a whole interval: shedding starts at its end.
        for i in 101..200 {
            assert!(!lag.after_read(t0 + i * MS), "shed early at {i} ms");
        }
        assert!(lag.after_read(t0 + 200 * MS), "standing backlog not shed");
        // While shedding: caught up, what is read within the target is served, what is read
        // later is shed again.
        lag.caught_up(t0 + 201 * MS);
        assert!(!lag.after_read(t0 + 202 * MS));
        assert!(!lag.after_read(t0 + 203 * MS));
        assert!(lag.after_read(t0 + 204 * MS));
        lag.caught_up(t0 + 210 * MS);
        assert!(!lag.after_read(t0 + 211 * MS));
        // No read over target for a whole interval: shedding ends, and a new queue gets its
        // full interval again before anything is shed.
        lag.caught_up(t0 + 303 * MS);
        assert!(!lag.after_read(t0 + 304 * MS));
        for i in 305..403 {
            assert!(!lag.after_read(t0 + i * MS), "shed again at {i} ms");
        }
        assert!(lag.after_read(t0 + 403 * MS));
    }

    #[test]
    fn shedding_stays_on_while_the_reader_keeps_falling_behind() {
        let t0 = Instant::now();
        let mut lag = ReadLag::new(TARGET, t0);
        assert!(lag.after_read(t0 + 100 * MS));
        // For a second: caught up every 5 ms, reads every 1 ms; the ones within the target
        // are served, the later ones shed.
        for i in 100..1100u32 {
            let now = t0 + i * MS;
            if i % 5 == 0 {
                lag.caught_up(now);
                continue;
            }
            let expected = i % 5 > 2;
            assert_eq!(lag.after_read(now), expected, "at {i} ms");
        }
    }

    #[test]
    fn zero_target_never_sheds() {
        let t0 = Instant::now();
        let mut lag = ReadLag::new(Duration::ZERO, t0);
        for i in 0..500 {
            assert!(!lag.after_read(t0 + i * MS));
        }
    }
}
