//! One simulated network connection: sign-on, then a writer task that generates requests and
//! sends each batch with one write, and a reader task that matches responses to requests by
//! DE11 (they may come out of order), measures latency and sweeps timeouts.
//!
//! Cards are partitioned over connections, so an authorization and its incrementals and
//! reversals always travel on the same connection and their state (`ConnState`) is local to
//! it. Writer and reader share that state through one mutex, taken once per batch on each
//! side. At most one follow-up per authorization is in flight, so the outcome of each is
//! known before the next is sent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authswitch::iso8583::{FrameCodec, Message, Mti, WireFormat};
use bytes::BytesMut;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use self::reader::read_loop;
use self::writer::Writer;

use crate::cli::Mode;
use crate::clock::UtcStamp;
use crate::merchant::Merchants;
use crate::mix::{Kind, Mix};
use crate::portfolio::Portfolio;
use crate::stan::StanCounter;
use crate::stats::{ConnStats, OTHER_CODE};
use crate::template::{Context, OriginalRef, Request, RequestEncoder, NETWORK_SIGN_ON};
use crate::verify::AccountTrack;

/// Requests built and written together.
pub const BATCH_MAX: usize = 256;
/// Requests awaiting an answer on one connection; above `cli::IN_FLIGHT_MAX`.
pub const PENDING_MAX: usize = 131_072;
/// Approved authorizations remembered per connection as targets of follow-ups.
pub const OPEN_AUTHS_MAX: usize = 1024;
/// Random probes for an authorization without a follow-up in flight.
const FOLLOW_UP_PROBES_MAX: usize = 4;
/// Send-order queue length that triggers dropping entries already answered.
const ORDER_COMPACT_LEN: usize = 4 * PENDING_MAX;
/// How often the reader looks for timeouts and for the end of the run.
const SWEEP_INTERVAL: Duration = Duration::from_millis(5);
/// Read buffer growth step; frames are small, a read takes whatever is there.
const READ_BUF_LEN: usize = 64 * 1024;
const READ_SPARE_MIN: usize = 4 * 1024;
/// Resolution of tokio's timer wheel.
const TIMER_SLACK: Duration = Duration::from_millis(1);
/// Share of reversals that are partial (DE95), in percent.
const PARTIAL_REVERSAL_PCT: u32 = 30;

/// Everything connections share, read-only except the atomics.
pub struct Shared {
    pub portfolio: Portfolio,
    pub merchants: Merchants,
    pub mix: Mix,
    pub encoder: RequestEncoder,
    pub frame_len_max: usize,
    pub mode: Mode,
    pub connections: u32,
    pub rate_per_s: u64,
    pub timeout: Duration,
    pub start: Instant,
    /// No request is sent at or after this instant.
    pub deadline: Instant,
    /// Open loop: the pacer's period, and its ticks (`None`: pace by tokio's timers alone).
    pub tick: Duration,
    pub ticks: Option<tokio::sync::watch::Receiver<u64>>,
    pub budget: Budget,
    pub sent: AtomicU64,
    pub completed: AtomicU64,
    pub seed: u64,
}

/// Requests left to send over all connections.
pub struct Budget(AtomicU64);

impl Budget {
    pub fn new(requests_max: Option<u64>) -> Budget {
        Budget(AtomicU64::new(requests_max.unwrap_or(u64::MAX)))
    }

    /// Takes up to `want` requests from the budget; returns how many were granted.
    pub fn claim(&self, want: u64) -> u64 {
        let mut granted = 0;
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                granted = left.min(want);
                (granted > 0).then(|| left - granted)
            });
        granted
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connection {index}: connect to {addr}: {reason}")]
    Connect {
        index: u32,
        addr: String,
        reason: String,
    },
    #[error("connection {index}: no sign-on response within {timeout_ms} ms")]
    SignOnTimeout { index: u32, timeout_ms: u128 },
    #[error("connection {index}: sign-on answered with DE39={code}")]
    SignOnRejected { index: u32, code: String },
    #[error("connection {index}: closed during sign-on")]
    SignOnClosed { index: u32 },
    #[error("connection {index}: sign-on: {reason}")]
    SignOnFailed { index: u32, reason: String },
}

/// A signed-on connection, ready to carry load.
pub struct Connection {
    index: u32,
    stream: TcpStream,
    leftover: BytesMut,
    stan: StanCounter,
}

/// What a connection reports when it is done.
pub struct ConnOutcome {
    pub stats: ConnStats,
    pub tracks: HashMap<u32, AccountTrack>,
    pub last_response: Option<Instant>,
}

#[derive(Clone, Copy)]
struct OpenAuth {
    card: u32,
    merchant: u32,
    original: OriginalRef,
    held_minor: i64,
    /// A follow-up (incremental or reversal) is in flight.
    busy: bool,
}

struct Pending {
    seq: u64,
    kind: Kind,
    mti: Mti,
    sent_at: Instant,
    /// Latency origin: send time (closed loop) or intended send time (open loop).
    measure_from: Instant,
    card: Option<u32>,
    amount_minor: i64,
    replacement_minor: Option<i64>,
    original: Option<OriginalRef>,
    transmission: u64,
    merchant: u32,
}

#[derive(Default)]
struct ConnState {
    pending: HashMap<u32, Pending>,
    order: VecDeque<(u32, u64)>,
    open_auths: Vec<OpenAuth>,
    stats: ConnStats,
    tracks: HashMap<u32, AccountTrack>,
    writer_done: bool,
    broken: bool,
    last_response: Option<Instant>,
    /// Answers decoded so far, for `reader::CHECK_VALUES_EVERY`.
    answers_decoded: u64,
}

/// Connects, signs on (0800 DE70=001) and waits for the 0810 with DE39=00.
pub async fn open(
    index: u32,
    count: u32,
    addr: &str,
    encoder: &RequestEncoder,
    frame_len_max: usize,
    timeout: Duration,
) -> Result<Connection, ConnError> {
    let connect_error = |e: std::io::Error| ConnError::Connect {
        index,
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    let mut stream = TcpStream::connect(addr).await.map_err(connect_error)?;
    stream.set_nodelay(true).map_err(connect_error)?;
    // Without stamps (not Linux) the report has no read lag; nothing else changes.
    let _ = authswitch::server::rxstamp::enable(&stream);
    let mut stan = StanCounter::for_connection(index, count);
    let sign_on_stan = stan.next_stan();
    let ctx = Context {
        stamp: UtcStamp::now(),
        connection: index as u16,
    };
    let mut out = BytesMut::new();
    let request = Request::Network {
        code: NETWORK_SIGN_ON,
    };
    let failed = |reason: String| ConnError::SignOnFailed { index, reason };
    encoder
        .write(&mut out, &ctx, sign_on_stan, &request)
        .map_err(|e| failed(e.to_string()))?;
    stream
        .write_all(&out)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let wait = read_sign_on(
        &mut stream,
        index,
        sign_on_stan,
        encoder.format(),
        frame_len_max,
    );
    let leftover =
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ConnError::SignOnTimeout {
                index,
                timeout_ms: timeout.as_millis(),
            })??;
    Ok(Connection {
        index,
        stream,
        leftover,
        stan,
    })
}

async fn read_sign_on(
    stream: &mut TcpStream,
    index: u32,
    stan: u32,
    format: &WireFormat,
    frame_len_max: usize,
) -> Result<BytesMut, ConnError> {
    let mut codec = FrameCodec::new(format, frame_len_max);
    let mut buf = BytesMut::with_capacity(READ_BUF_LEN);
    let failed = |reason: String| ConnError::SignOnFailed { index, reason };
    loop {
        while let Some(frame) = codec.decode(&mut buf).map_err(|e| failed(e.to_string()))? {
            if frame.body.is_empty() {
                continue;
            }
            let msg = Message::decode(frame.body, format).map_err(|e| failed(e.to_string()))?;
            if msg.mti() != Mti::NETWORK_MANAGEMENT_RESPONSE || msg.stan() != Some(stan) {
                continue;
            }
            return match msg.response_code() {
                Some(code) if &code == b"00" => Ok(buf),
                code => Err(ConnError::SignOnRejected {
                    index,
                    code: String::from_utf8_lossy(&code.unwrap_or(OTHER_CODE)).into_owned(),
                }),
            };
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if n == 0 {
            return Err(ConnError::SignOnClosed { index });
        }
    }
}

/// Runs a signed-on connection until its writer stops and every request is answered or
/// timed out.
pub async fn drive(shared: Arc<Shared>, conn: Connection, window: u32) -> ConnOutcome {
    let Connection {
        index,
        stream,
        leftover,
        stan,
    } = conn;
    let (read_half, write_half) = stream.into_split();
    let state = Arc::new(Mutex::new(ConnState::default()));
    let permits = (shared.mode == Mode::Closed).then(|| Arc::new(Semaphore::new(window as usize)));
    let writer = Writer {
        index,
        shared: shared.clone(),
        state: state.clone(),
        half: write_half,
        out: BytesMut::with_capacity(READ_BUF_LEN),
        stan,
        rng: StdRng::seed_from_u64(shared.seed ^ (u64::from(index) << 32 | 0x5eed)),
        cards: (index as usize..shared.portfolio.cards.len())
            .step_by(shared.connections as usize)
            .map(|c| c as u32)
            .collect(),
        seq: 0,
        intended: Vec::with_capacity(BATCH_MAX),
    };
    assert!(!writer.cards.is_empty(), "every connection owns a card");
    let write_task = tokio::spawn(writer.run(permits.clone()));
    read_loop(&shared, &state, read_half, leftover, permits.as_deref()).await;
    // The writer may be parked on the semaphore or a timer: it sees `broken` or the
    // deadline; a write error ends it too. Wait for it so its batches are counted.
    let mut half = write_task.await.ok();
    if let Some(half) = half.as_mut() {
        let _ = half.shutdown().await;
    }
    let mut st = state.lock();
    ConnOutcome {
        stats: std::mem::take(&mut st.stats),
        tracks: std::mem::take(&mut st.tracks),
        last_response: st.last_response,
    }
}

fn find_auth(st: &ConnState, original: &OriginalRef) -> Option<usize> {
    st.open_auths.iter().position(|a| a.original == *original)
}

/// A request whose outcome is unknown: its account cannot be verified and its
/// authorization cannot be followed up any more.
fn forget(st: &mut ConnState, account: Option<u32>, p: &Pending) {
    if let Some(account) = account {
        st.tracks.entry(account).or_default().uncertain = true;
    }
    if let Some(i) = p.original.and_then(|o| find_auth(st, &o)) {
        st.open_auths.swap_remove(i);
    }
}

/// The connection is gone: every pending request is an error and its account uncertain.
fn fail_pending(shared: &Shared, st: &mut ConnState) {
    st.broken = true;
    st.order.clear();
    let pending = std::mem::take(&mut st.pending);
    st.stats.errors += pending.len() as u64;
    for p in pending.values() {
        let account = p.card.map(|c| shared.portfolio.cards[c as usize].account);
        forget(st, account, p);
    }
}

mod reader;
mod writer;

#[cfg(test)]
mod tests;
