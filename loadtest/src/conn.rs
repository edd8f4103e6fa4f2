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

use authswitch::iso8583::{FrameCodec, FrameError, Message, Mti, WireFormat};
use bytes::BytesMut;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use crate::cli::Mode;
use crate::clock::UtcStamp;
use crate::merchant::Merchants;
use crate::mix::{Kind, Mix};
use crate::portfolio::Portfolio;
use crate::stan::StanCounter;
use crate::stats::{ConnStats, OTHER_CODE};
use crate::template::{
    Context, OriginalRef, Purchase, Request, RequestEncoder, AMOUNT_MINOR_MAX, NETWORK_ECHO,
    NETWORK_SIGN_ON,
};
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

struct Writer {
    index: u32,
    shared: Arc<Shared>,
    state: Arc<Mutex<ConnState>>,
    half: OwnedWriteHalf,
    out: BytesMut,
    stan: StanCounter,
    rng: StdRng,
    /// Portfolio indices of the cards this connection owns.
    cards: Vec<u32>,
    seq: u64,
    intended: Vec<Instant>,
}

impl Writer {
    async fn run(mut self, permits: Option<Arc<Semaphore>>) -> OwnedWriteHalf {
        match permits {
            Some(permits) => self.closed_loop(&permits).await,
            None => self.open_loop().await,
        }
        self.state.lock().writer_done = true;
        self.half
    }

    async fn closed_loop(&mut self, permits: &Semaphore) {
        let deadline = self.shared.deadline;
        // One timer for the whole run rather than one per batch.
        let end = tokio::time::sleep_until(deadline);
        tokio::pin!(end);
        loop {
            tokio::select! {
                permit = permits.acquire() => match permit {
                    Ok(p) => p.forget(),
                    Err(_) => return,
                },
                _ = &mut end => return,
            }
            let mut want = 1;
            while want < BATCH_MAX {
                match permits.try_acquire() {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                }
                want += 1;
            }
            let granted = self.shared.budget.claim(want as u64) as usize;
            if granted < want {
                permits.add_permits(want - granted);
            }
            let now = Instant::now();
            if granted == 0 || now >= deadline {
                return;
            }
            self.intended.clear();
            self.intended.resize(granted, now);
            if !self.send_batch().await {
                return;
            }
        }
    }

    async fn open_loop(&mut self) {
        let shared = self.shared.clone();
        let rate = u128::from(shared.rate_per_s);
        let step_ns = (1_000_000_000u128 / rate) as u64;
        let interval_ns = (u128::from(shared.connections) * 1_000_000_000 / rate) as u64;
        let interval = Duration::from_nanos(interval_ns.max(1));
        let mut next_due = shared.start + Duration::from_nanos(step_ns * u64::from(self.index));
        while next_due < shared.deadline {
            // Tokio timers fire on the next millisecond tick, up to 1 ms late: wake one tick
            // early and send what is due within it, so timer lateness is not counted as
            // switch latency. Early requests count from their real send time.
            let wake = next_due.checked_sub(TIMER_SLACK).unwrap_or(next_due);
            tokio::time::sleep_until(wake).await;
            let horizon = Instant::now() + TIMER_SLACK;
            self.intended.clear();
            while self.intended.len() < BATCH_MAX
                && next_due <= horizon
                && next_due < shared.deadline
            {
                self.intended.push(next_due);
                next_due += interval;
            }
            let granted = shared.budget.claim(self.intended.len() as u64) as usize;
            if granted == 0 {
                return;
            }
            self.intended.truncate(granted);
            if !self.send_batch().await {
                return;
            }
        }
    }

    /// Builds one request per entry of `intended` and writes them with one write. Returns
    /// false when the connection is broken.
    async fn send_batch(&mut self) -> bool {
        let built = self.build_batch();
        if built == 0 {
            return !self.state.lock().broken;
        }
        let result = self.half.write_all(&self.out).await;
        self.out.clear();
        let mut st = self.state.lock();
        if result.is_err() || st.broken {
            if !st.broken {
                fail_pending(&self.shared, &mut st);
            }
            return false;
        }
        self.shared.sent.fetch_add(built as u64, Ordering::Relaxed);
        true
    }

    fn build_batch(&mut self) -> usize {
        let shared = self.shared.clone();
        let ctx = Context {
            stamp: UtcStamp::now(),
            connection: self.index as u16,
        };
        let now = Instant::now();
        let state = self.state.clone();
        let mut st = state.lock();
        if st.broken {
            return 0;
        }
        let mut built = 0;
        for i in 0..self.intended.len() {
            if st.pending.len() >= PENDING_MAX {
                st.stats.dropped += 1;
                continue;
            }
            let roll = self.rng.random_range(0..shared.mix.total());
            let planned = self.plan(shared.mix.pick(roll), &mut st);
            let stan = self.free_stan(&st);
            let measure_from = match shared.mode {
                Mode::Closed => now,
                Mode::Open => self.intended[i].min(now),
            };
            if self.encode(&shared, &ctx, stan, &planned) {
                self.seq += 1;
                let pending = planned.into_pending(self.seq, now, measure_from, &ctx);
                st.stats.sent += 1;
                st.stats.sent_by_kind[pending.kind.index()] += 1;
                st.order.push_back((stan, self.seq));
                st.pending.insert(stan, pending);
                built += 1;
            } else {
                st.stats.errors += 1;
                release_follow_up(&mut st, &planned);
            }
        }
        if st.order.len() > ORDER_COMPACT_LEN {
            let ConnState { order, pending, .. } = &mut *st;
            order.retain(|(stan, seq)| pending.get(stan).is_some_and(|p| p.seq == *seq));
        }
        built
    }

    /// The next STAN not awaiting an answer (wrapped STANs can meet a slow request).
    fn free_stan(&mut self, st: &ConnState) -> u32 {
        loop {
            let stan = self.stan.next_stan();
            if !st.pending.contains_key(&stan) {
                return stan;
            }
        }
    }

    fn encode(&mut self, shared: &Shared, ctx: &Context, stan: u32, p: &Planned) -> bool {
        let request = match p.kind {
            Kind::Echo => Request::Network { code: NETWORK_ECHO },
            kind => {
                let purchase = Purchase {
                    card: &shared.portfolio.cards[p.card as usize],
                    merchant: &shared.merchants.all()[p.merchant as usize],
                    amount_minor: p.amount_minor,
                    pos_entry_mode: p.pos_entry_mode,
                };
                match (kind, p.original) {
                    (Kind::Incremental, Some(original)) => Request::Incremental(purchase, original),
                    (Kind::Reversal, Some(original)) => Request::Reversal {
                        purchase,
                        original,
                        replacement_minor: p.replacement_minor,
                    },
                    (Kind::Advice, _) => Request::Advice(purchase),
                    _ => Request::Auth(purchase),
                }
            }
        };
        shared
            .encoder
            .write(&mut self.out, ctx, stan, &request)
            .is_ok()
    }

    /// Chooses card, merchant and amounts for a request of `kind`; a follow-up without an
    /// authorization to follow becomes a plain authorization.
    fn plan(&mut self, kind: Kind, st: &mut ConnState) -> Planned {
        let rng = &mut self.rng;
        if matches!(kind, Kind::Incremental | Kind::Reversal) {
            if let Some(planned) = plan_follow_up(kind, st, rng) {
                return planned;
            }
        }
        let kind = match kind {
            Kind::Incremental | Kind::Reversal => Kind::Auth,
            other => other,
        };
        let card = self.cards[rng.random_range(0..self.cards.len())];
        let merchant_index = self.shared.merchants.pick_index(rng);
        let merchant = &self.shared.merchants.all()[merchant_index];
        Planned {
            kind,
            card,
            merchant: merchant_index as u32,
            amount_minor: merchant.amount_minor(rng),
            replacement_minor: None,
            original: None,
            pos_entry_mode: pos_entry_mode(rng),
        }
    }
}

/// DE22 by share of card-present traffic: chip, contactless, keyed, magnetic stripe.
fn pos_entry_mode(rng: &mut impl Rng) -> u16 {
    match rng.random_range(0..100u32) {
        0..50 => 51,
        50..85 => 71,
        85..95 => 10,
        _ => 901,
    }
}

fn plan_follow_up(kind: Kind, st: &mut ConnState, rng: &mut StdRng) -> Option<Planned> {
    if st.open_auths.is_empty() {
        return None;
    }
    let slot = (0..FOLLOW_UP_PROBES_MAX)
        .map(|_| rng.random_range(0..st.open_auths.len()))
        .find(|&i| !st.open_auths[i].busy)?;
    let auth = &mut st.open_auths[slot];
    auth.busy = true;
    let held = auth.held_minor;
    let (amount_minor, replacement_minor) = if kind == Kind::Incremental {
        let increment = (held * rng.random_range(5..30) / 100).max(100);
        (increment.min(AMOUNT_MINOR_MAX - held), None)
    } else if held >= 200 && rng.random_range(0..100) < PARTIAL_REVERSAL_PCT {
        (held, Some(rng.random_range(held / 10..=held * 9 / 10)))
    } else {
        (held, None)
    };
    Some(Planned {
        kind,
        card: auth.card,
        merchant: auth.merchant,
        amount_minor,
        replacement_minor,
        original: Some(auth.original),
        pos_entry_mode: 51,
    })
}

/// A request chosen but not yet encoded.
struct Planned {
    kind: Kind,
    card: u32,
    merchant: u32,
    amount_minor: i64,
    replacement_minor: Option<i64>,
    original: Option<OriginalRef>,
    pos_entry_mode: u16,
}

impl Planned {
    fn into_pending(
        self,
        seq: u64,
        sent_at: Instant,
        measure_from: Instant,
        ctx: &Context,
    ) -> Pending {
        let mti = match self.kind {
            Kind::Auth | Kind::Incremental => Mti::AUTHORIZATION_REQUEST,
            Kind::Advice => Mti::AUTHORIZATION_ADVICE,
            Kind::Reversal => Mti::REVERSAL_REQUEST,
            Kind::Echo => Mti::NETWORK_MANAGEMENT_REQUEST,
        };
        Pending {
            seq,
            kind: self.kind,
            mti,
            sent_at,
            measure_from,
            card: (self.kind != Kind::Echo).then_some(self.card),
            amount_minor: self.amount_minor,
            replacement_minor: self.replacement_minor,
            original: self.original,
            transmission: ctx.stamp.transmission(),
            merchant: self.merchant,
        }
    }
}

fn find_auth(st: &ConnState, original: &OriginalRef) -> Option<usize> {
    st.open_auths.iter().position(|a| a.original == *original)
}

fn release_follow_up(st: &mut ConnState, planned: &Planned) {
    if let Some(i) = planned.original.and_then(|o| find_auth(st, &o)) {
        st.open_auths[i].busy = false;
    }
}

fn track<'a>(st: &'a mut ConnState, shared: &Shared, card: u32) -> &'a mut AccountTrack {
    let account = shared.portfolio.cards[card as usize].account;
    st.tracks.entry(account).or_default()
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

async fn read_loop(
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
        let closed = tokio::select! {
            read = half.read_buf(&mut buf) => !matches!(read, Ok(n) if n > 0),
            _ = tick.tick() => false,
        };
        let now = Instant::now();
        let (released, done) = {
            let mut st = state.lock();
            let mut released = 0;
            let framing = on_frames(shared, &mut st, &mut codec, &mut buf, now, &mut released);
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

fn on_frames(
    shared: &Shared,
    st: &mut ConnState,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    now: Instant,
    released: &mut usize,
) -> Result<(), FrameError> {
    while let Some(frame) = codec.decode(buf)? {
        if frame.body.is_empty() {
            continue;
        }
        let Ok(msg) = Message::decode(frame.body, shared.encoder.format()) else {
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
        st.stats.record_latency_us(latency.as_micros() as u64);
        let code = msg.response_code().unwrap_or(OTHER_CODE);
        st.stats.count_code(code, 1);
        apply(shared, st, &p, &code, &msg);
    }
    Ok(())
}

/// Updates the expected balances and the follow-up targets from one answered request.
fn apply(shared: &Shared, st: &mut ConnState, p: &Pending, code: &[u8; 2], msg: &Message) {
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
fn sweep(shared: &Shared, st: &mut ConnState, now: Instant) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    use authswitch::iso8583::{MessageBuilder, FRAME_LEN_MAX_DEFAULT};

    const T: u64 = 1122334455;

    fn shared() -> Shared {
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        Shared {
            portfolio: crate::portfolio::synthesize(4, 2, &mut rng),
            merchants: Merchants::generate(&mut rng),
            mix: "auth=1".parse().unwrap(),
            encoder: RequestEncoder::new(WireFormat::default(), FRAME_LEN_MAX_DEFAULT),
            frame_len_max: FRAME_LEN_MAX_DEFAULT,
            mode: Mode::Closed,
            connections: 1,
            rate_per_s: 1,
            timeout: Duration::from_secs(1),
            start: now,
            deadline: now + Duration::from_secs(1),
            budget: Budget::new(None),
            sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            seed: 1,
        }
    }

    fn response(mti: u16, stan: u32, code: &[u8; 2], amount_minor: Option<u64>) -> Message {
        let format = WireFormat::default();
        let mut builder = MessageBuilder::new(Mti::new(mti));
        builder.set_number(11, stan.into()).set_text(39, code);
        if let Some(amount) = amount_minor {
            builder.set_number(4, amount);
        }
        let mut out = BytesMut::new();
        builder.encode(&format, &mut out).unwrap();
        Message::decode(out.freeze(), &format).unwrap()
    }

    fn pending(kind: Kind, card: u32, amount_minor: i64) -> Pending {
        let planned = Planned {
            kind,
            card,
            merchant: 0,
            amount_minor,
            replacement_minor: None,
            original: None,
            pos_entry_mode: 51,
        };
        let ctx = Context {
            stamp: UtcStamp::from_unix_s(0),
            connection: 0,
        };
        let now = Instant::now();
        let mut p = planned.into_pending(1, now, now, &ctx);
        p.transmission = T;
        p
    }

    fn follow_up(kind: Kind, amount_minor: i64, replacement: Option<i64>, stan: u32) -> Pending {
        let mut p = pending(kind, 0, amount_minor);
        p.replacement_minor = replacement;
        p.original = Some(OriginalRef {
            stan,
            transmission: T,
        });
        p
    }

    #[test]
    fn tracking_follows_approvals_incrementals_and_reversals() {
        let shared = shared();
        let mut st = ConnState::default();
        // Card 0 draws on account 0 (round robin over 2 accounts).
        apply(
            &shared,
            &mut st,
            &pending(Kind::Auth, 0, 1_000),
            b"00",
            &response(110, 10, b"00", None),
        );
        assert_eq!(st.tracks[&0].held_delta_minor, 1_000);
        assert_eq!(st.open_auths.len(), 1);
        assert_eq!(
            st.open_auths[0].original,
            OriginalRef {
                stan: 10,
                transmission: T
            }
        );

        st.open_auths[0].busy = true;
        let inc = follow_up(Kind::Incremental, 200, None, 10);
        apply(
            &shared,
            &mut st,
            &inc,
            b"00",
            &response(110, 11, b"00", None),
        );
        assert_eq!(st.tracks[&0].held_delta_minor, 1_200);
        assert_eq!(
            (st.open_auths[0].held_minor, st.open_auths[0].busy),
            (1_200, false)
        );

        let partial = follow_up(Kind::Reversal, 1_200, Some(500), 10);
        apply(
            &shared,
            &mut st,
            &partial,
            b"00",
            &response(410, 12, b"00", None),
        );
        assert_eq!(st.tracks[&0].held_delta_minor, 500);
        assert_eq!(st.open_auths[0].held_minor, 500);

        let declined = follow_up(Kind::Incremental, 100, None, 10);
        apply(
            &shared,
            &mut st,
            &declined,
            b"51",
            &response(110, 13, b"51", None),
        );
        assert_eq!(st.tracks[&0].held_delta_minor, 500);

        let full = follow_up(Kind::Reversal, 500, None, 10);
        apply(
            &shared,
            &mut st,
            &full,
            b"00",
            &response(410, 14, b"00", None),
        );
        assert_eq!(st.tracks[&0].held_delta_minor, 0);
        assert!(st.open_auths.is_empty());
    }

    #[test]
    fn declines_hold_nothing_partial_approvals_and_advices_hold() {
        let shared = shared();
        let mut st = ConnState::default();
        // Card 1 draws on account 1.
        apply(
            &shared,
            &mut st,
            &pending(Kind::Auth, 1, 900),
            b"51",
            &response(110, 20, b"51", None),
        );
        assert_eq!(st.tracks.get(&1).map(|t| t.held_delta_minor), None);
        apply(
            &shared,
            &mut st,
            &pending(Kind::Auth, 1, 900),
            b"10",
            &response(110, 21, b"10", Some(300)),
        );
        assert_eq!(st.tracks[&1].held_delta_minor, 300);
        assert_eq!(st.open_auths[0].held_minor, 300);
        apply(
            &shared,
            &mut st,
            &pending(Kind::Advice, 1, 700),
            b"00",
            &response(130, 22, b"00", None),
        );
        assert_eq!(
            (st.tracks[&1].held_delta_minor, st.tracks[&1].advice_minor),
            (1_000, 700)
        );
        apply(
            &shared,
            &mut st,
            &pending(Kind::Echo, 1, 0),
            b"00",
            &response(810, 23, b"00", None),
        );
        assert_eq!(st.tracks[&1].held_delta_minor, 1_000);
    }

    #[test]
    fn sweep_times_out_only_expired_live_requests() {
        let shared = shared();
        let mut st = ConnState::default();
        let now = Instant::now();
        let mut old = pending(Kind::Auth, 2, 100);
        old.sent_at = now - Duration::from_secs(2);
        old.seq = 1;
        let mut fresh = pending(Kind::Auth, 3, 100);
        fresh.seq = 3;
        st.pending.insert(5, old);
        st.pending.insert(7, fresh);
        // (6, 2) was answered already; (5, 1) expired; (7, 3) is fresh.
        st.order.extend([(5, 1), (6, 2), (7, 3)]);
        assert_eq!(sweep(&shared, &mut st, now), 1);
        assert_eq!(st.stats.timeouts, 1);
        assert_eq!(st.order, [(7, 3)]);
        assert!(st.pending.contains_key(&7) && !st.pending.contains_key(&5));
        // Card 2 draws on account 0: unknown outcome, not verifiable.
        assert!(st.tracks[&0].uncertain);
        assert!(!st.tracks.contains_key(&1));
    }

    #[test]
    fn follow_up_marks_the_authorization_busy_and_bounds_amounts() {
        let mut st = ConnState::default();
        let mut rng = StdRng::seed_from_u64(9);
        assert!(plan_follow_up(Kind::Reversal, &mut st, &mut rng).is_none());
        st.open_auths.push(OpenAuth {
            card: 3,
            merchant: 17,
            original: OriginalRef {
                stan: 4,
                transmission: T,
            },
            held_minor: 10_000,
            busy: false,
        });
        let p = plan_follow_up(Kind::Incremental, &mut st, &mut rng).unwrap();
        assert_eq!((p.card, p.merchant, p.original.unwrap().stan), (3, 17, 4));
        assert!((500..3_000).contains(&p.amount_minor), "{}", p.amount_minor);
        assert!(st.open_auths[0].busy);
        assert!(
            plan_follow_up(Kind::Reversal, &mut st, &mut rng).is_none(),
            "busy"
        );
        st.open_auths[0].busy = false;
        for _ in 0..50 {
            let p = plan_follow_up(Kind::Reversal, &mut st, &mut rng).unwrap();
            assert_eq!(p.amount_minor, 10_000);
            if let Some(left) = p.replacement_minor {
                assert!((1_000..=9_000).contains(&left));
            }
            st.open_auths[0].busy = false;
        }
    }

    #[test]
    fn budget_hands_out_what_is_left() {
        let budget = Budget::new(Some(5));
        assert_eq!(budget.claim(3), 3);
        assert_eq!(budget.claim(3), 2);
        assert_eq!(budget.claim(3), 0);
        assert_eq!(Budget::new(None).claim(256), 256);
    }
}
