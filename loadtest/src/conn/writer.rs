//! The writing side of a connection: picks the next requests from the mix, plans their
//! cards, merchants and amounts, records them as pending and sends each batch with one write.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use authswitch::iso8583::Mti;
use bytes::BytesMut;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{
    fail_pending, find_auth, ConnState, Pending, Shared, BATCH_MAX, FOLLOW_UP_PROBES_MAX,
    ORDER_COMPACT_LEN, PARTIAL_REVERSAL_PCT, PENDING_MAX, TIMER_SLACK,
};
use crate::cli::Mode;
use crate::clock::UtcStamp;
use crate::mix::Kind;
use crate::stan::StanCounter;
use crate::template::{Context, OriginalRef, Purchase, Request, AMOUNT_MINOR_MAX, NETWORK_ECHO};

pub(super) struct Writer {
    pub(super) index: u32,
    pub(super) shared: Arc<Shared>,
    pub(super) state: Arc<Mutex<ConnState>>,
    pub(super) half: OwnedWriteHalf,
    pub(super) out: BytesMut,
    pub(super) stan: StanCounter,
    pub(super) rng: StdRng,
    /// Portfolio indices of the cards this connection owns.
    pub(super) cards: Vec<u32>,
    pub(super) seq: u64,
    pub(super) intended: Vec<Instant>,
}

impl Writer {
    pub(super) async fn run(mut self, permits: Option<Arc<Semaphore>>) -> OwnedWriteHalf {
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
        let mut ticks = shared.ticks.clone();
        // What is due within one tick is sent at once; early requests count from their real
        // send time, so earliness is never counted as switch latency.
        let slack = if ticks.is_some() {
            shared.tick
        } else {
            TIMER_SLACK
        };
        let mut next_due = shared.start + Duration::from_nanos(step_ns * u64::from(self.index));
        while next_due < shared.deadline {
            let wake = next_due.checked_sub(slack).unwrap_or(next_due);
            // Tokio timers fire on the next millisecond tick, up to 1 ms late: they bring
            // the writer to within a millisecond of the due time, and the pacer's ticks
            // (when it runs) the rest of the way.
            if let Some(early) = wake.checked_sub(TIMER_SLACK) {
                if early > Instant::now() {
                    tokio::time::sleep_until(early).await;
                }
            }
            match ticks.as_mut() {
                Some(rx) => {
                    while Instant::now() < wake {
                        if rx.changed().await.is_err() {
                            // The pacer stopped at the deadline.
                            ticks = None;
                            break;
                        }
                    }
                }
                None => tokio::time::sleep_until(wake).await,
            }
            let horizon = Instant::now() + slack;
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
        // A target that stops reading (a stalled switch pushes back that way) must not hold
        // the run past its end: the write gives up when the last answers would be due. Its
        // requests are pending already, so the reader counts them as timeouts.
        let give_up = self.shared.deadline + self.shared.timeout;
        let written = tokio::time::timeout_at(give_up, self.half.write_all(&self.out)).await;
        self.out.clear();
        let Ok(result) = written else {
            return false;
        };
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
pub(super) fn pos_entry_mode(rng: &mut impl Rng) -> u16 {
    match rng.random_range(0..100u32) {
        0..50 => 51,
        50..85 => 71,
        85..95 => 10,
        _ => 901,
    }
}

pub(super) fn plan_follow_up(kind: Kind, st: &mut ConnState, rng: &mut StdRng) -> Option<Planned> {
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
pub(super) struct Planned {
    pub(super) kind: Kind,
    pub(super) card: u32,
    pub(super) merchant: u32,
    pub(super) amount_minor: i64,
    pub(super) replacement_minor: Option<i64>,
    pub(super) original: Option<OriginalRef>,
    pub(super) pos_entry_mode: u16,
}

impl Planned {
    pub(super) fn into_pending(
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

pub(super) fn release_follow_up(st: &mut ConnState, planned: &Planned) {
    if let Some(i) = planned.original.and_then(|o| find_auth(st, &o)) {
        st.open_auths[i].busy = false;
    }
}
