//! The reading side of a connection: decodes responses, matches them to pending requests
//! by DE11, records latency and DE39, updates the expected balances, and times out requests
//! that stay unanswered.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use authswitch::iso8583::{FrameCodec, FrameError, Message};
use authswitch::server::rxstamp;
use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::{
    fail_pending, find_auth, forget, ConnState, OpenAuth, Pending, Shared, OPEN_AUTHS_MAX,
    READ_BUF_LEN, READ_SPARE_MIN, SWEEP_INTERVAL,
};
use crate::mix::Kind;
use crate::stats::OTHER_CODE;
use crate::template::OriginalRef;
use crate::verify::AccountTrack;

pub(super) fn track<'a>(st: &'a mut ConnState, shared: &Shared, card: u32) -> &'a mut AccountTrack {
    let account = shared.portfolio.cards[card as usize].account;
    st.tracks.entry(account).or_default()
}

pub(super) async fn read_loop(
    shared: &Shared,
    state: &Mutex<ConnState>,
    mut half: OwnedReadHalf,
    mut buf: BytesMut,
    permits: Option<&Semaphore>,
) {
    let mut codec = FrameCodec::new(shared.encoder.format(), shared.frame_len_max);
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        if buf.capacity() - buf.len() < READ_SPARE_MIN {
            buf.reserve(READ_BUF_LEN);
        }
        let (closed, stamp) = tokio::select! {
            read = rxstamp::read(&mut half, &mut buf) => match read {
                Ok((n, stamp)) if n > 0 => (false, stamp),
                _ => (true, None),
            },
            _ = tick.tick() => (false, None),
        };
        let now = Instant::now();
        let lag = rxstamp::read_lag(SystemTime::now(), stamp);
        let (released, done) = {
            let mut st = state.lock();
            let mut released = 0;
            let framing = on_frames(
                shared,
                &mut st,
                &mut codec,
                &mut buf,
                now,
                lag,
                &mut released,
            );
            released += sweep(shared, &mut st, now);
            if closed || framing.is_err() || st.broken {
                released += st.pending.len();
                if !st.broken {
                    fail_pending(shared, &mut st);
                }
            }
            let done = st.broken || (st.writer_done && st.pending.is_empty());
            (released, done)
        };
        if let Some(permits) = permits {
            permits.add_permits(released);
        }
        shared
            .completed
            .fetch_add(released as u64, Ordering::Relaxed);
        if done {
            return;
        }
    }
}

/// One answer in this many, the first on each connection included, is decoded with the
/// characters of every value checked (`Message::decode`); the others with their structure
/// checked (MTI, bitmaps, every field's length and place, nothing trailing) and only the
/// fields loadtest reads parsed (`Message::decode_structure`). A switch that sends bad
/// characters still shows in the errors, with about one in this many of its bad answers, and
/// loadtest's core goes to offering the load: in `scripts/overload` (600 000 answers a second
/// on loadtest's one core) the answers waited milliseconds in its receive queues while it
/// checked every byte of each.
pub(super) const CHECK_VALUES_EVERY: u64 = 16;

/// Takes the answers complete in `buf`, read at `now`; `lag` is how long before `now` the
/// read's last bytes arrived, when the kernel stamped them (`rxstamp`).
pub(super) fn on_frames(
    shared: &Shared,
    st: &mut ConnState,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    now: Instant,
    lag: Option<Duration>,
    released: &mut usize,
) -> Result<(), FrameError> {
    while let Some(frame) = codec.decode(buf)? {
        if frame.body.is_empty() {
            continue;
        }
        // Every answer's structure is checked; the characters of its values only in a
        // sample (see `CHECK_VALUES_EVERY`).
        let check_values = st.answers_decoded % CHECK_VALUES_EVERY == 0;
        st.answers_decoded += 1;
        let format = shared.encoder.format();
        let decoded = if check_values {
            Message::decode(frame.body, format)
        } else {
            Message::decode_structure(frame.body, format)
        };
        let Ok(msg) = decoded else {
            st.stats.errors += 1;
            continue;
        };
        let Some(stan) = msg.stan() else {
            st.stats.errors += 1;
            continue;
        };
        let Some(p) = st.pending.remove(&stan) else {
            st.stats.late += 1;
            continue;
        };
        *released += 1;
        st.last_response = Some(now);
        let account = p.card.map(|c| shared.portfolio.cards[c as usize].account);
        if Some(msg.mti()) != p.mti.response() {
            st.stats.errors += 1;
            forget(st, account, &p);
            continue;
        }
        st.stats.responses += 1;
        let latency = now.saturating_duration_since(p.measure_from);
        let code = msg.response_code().unwrap_or(OTHER_CODE);
        st.stats.record_response(latency.as_micros() as u64, code);
        if let Some(lag) = lag {
            st.stats.record_read_lag_us(lag.as_micros() as u64);
        }
        st.stats.count_code(code, 1);
        apply(shared, st, &p, &code, &msg);
    }
    Ok(())
}

/// Updates the expected balances and the follow-up targets from one answered request.
pub(super) fn apply(
    shared: &Shared,
    st: &mut ConnState,
    p: &Pending,
    code: &[u8; 2],
    msg: &Message,
) {
    let approved = code == b"00" || code == b"10";
    let Some(card) = p.card else { return };
    let slot = p.original.and_then(|o| find_auth(st, &o));
    if let Some(i) = slot {
        st.open_auths[i].busy = false;
    }
    match p.kind {
        Kind::Auth if approved => {
            // 10 is a partial approval: DE4 of the response is what was held.
            let held = match code {
                b"10" => msg.amount_transaction().unwrap_or(p.amount_minor),
                _ => p.amount_minor,
            };
            track(st, shared, card).hold(held);
            if st.open_auths.len() < OPEN_AUTHS_MAX {
                st.open_auths.push(OpenAuth {
                    card,
                    merchant: p.merchant,
                    original: OriginalRef {
                        stan: msg.stan().unwrap_or(0),
                        transmission: p.transmission,
                    },
                    held_minor: held,
                    busy: false,
                });
            }
        }
        Kind::Incremental if code == b"00" => {
            track(st, shared, card).hold(p.amount_minor);
            if let Some(i) = slot {
                st.open_auths[i].held_minor += p.amount_minor;
            }
        }
        Kind::Reversal if code == b"00" => {
            let remaining = p.replacement_minor.unwrap_or(0);
            track(st, shared, card).release(p.amount_minor - remaining);
            match (slot, p.replacement_minor) {
                (Some(i), Some(remaining)) => st.open_auths[i].held_minor = remaining,
                (Some(i), None) => {
                    st.open_auths.swap_remove(i);
                }
                (None, _) => {}
            }
        }
        Kind::Advice if code == b"00" => track(st, shared, card).advice(p.amount_minor),
        _ => {}
    }
}

/// Times out requests unanswered for longer than the timeout; returns how many.
pub(super) fn sweep(shared: &Shared, st: &mut ConnState, now: Instant) -> usize {
    let mut expired = 0;
    while let Some(&(stan, seq)) = st.order.front() {
        let live = st.pending.get(&stan).is_some_and(|p| p.seq == seq);
        if live {
            let sent_at = st.pending[&stan].sent_at;
            if now.saturating_duration_since(sent_at) < shared.timeout {
                break;
            }
            let p = st.pending.remove(&stan).expect("checked live above");
            st.stats.timeouts += 1;
            let account = p.card.map(|c| shared.portfolio.cards[c as usize].account);
            forget(st, account, &p);
            expired += 1;
        }
        st.order.pop_front();
    }
    expired
}
