//! The open loop's clock: a thread that ticks every `--tick-us` microseconds, so requests
//! leave close to their intended times.
//!
//! Tokio's timers fire on millisecond ticks. Paced by them alone, each connection would send
//! everything due within the next millisecond in one burst (50 requests at once at
//! 50 000/s): the switch would see bursts that no network sends, and the first requests of
//! each burst would count from a send time up to 1 ms before they were due. The pacer thread
//! sleeps with a timer slack of 1 µs (`PR_SET_TIMERSLACK`), bumps a watch value each tick,
//! and the writers send what is due by the next tick. It stops by itself at the deadline.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Starts the pacer; ticks until `deadline`, then drops its sender, which the receivers
/// see as closed.
pub fn spawn(period: Duration, deadline: Instant) -> std::io::Result<watch::Receiver<u64>> {
    let (tx, rx) = watch::channel(0u64);
    let deadline = deadline.into_std();
    std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            // SAFETY: prctl with PR_SET_TIMERSLACK takes one integer argument and only
            // changes this thread's timer slack; a failure leaves the default (50 µs).
            unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
            }
            let mut next = std::time::Instant::now() + period;
            let mut tick = 0u64;
            while next < deadline {
                let now = std::time::Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                tick += 1;
                if tx.send(tick).is_err() {
                    return;
                }
                // A late wake-up skips the ticks it missed rather than firing them at once.
                let now = std::time::Instant::now();
                next += period;
                if next < now {
                    next = now + period;
                }
            }
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticks_until_the_deadline_then_closes() {
        let period = Duration::from_micros(200);
        let started = Instant::now();
        let mut rx = spawn(period, started + Duration::from_millis(50)).unwrap();
        let mut seen = 0u32;
        while rx.changed().await.is_ok() {
            seen += 1;
            assert!(seen <= 250, "more ticks than 50 ms holds");
        }
        // The sender is gone after its last tick before the deadline, and not before it.
        assert!(started.elapsed() >= Duration::from_millis(50) - period);
        assert!(seen >= 1);
        assert!(*rx.borrow() >= u64::from(seen));
    }
}
