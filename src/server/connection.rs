//! One ISO 8583 connection: a reader task and a writer task around a bounded reply channel.
//!
//! The reader turns bytes into frames, frames into messages, and messages into jobs for the
//! shards (or answers them itself). Before it takes a request it takes one in-flight permit.
//! At `in_flight_per_connection_max` it stops reading, so TCP holds the peer back. A
//! connection that stays at its bound for `DOOR_AFTER` has a standing backlog, not a burst:
//! from then on, requests past the bound are answered at the door, 91 without asking the
//! ledger (`authswitch_door_shed_total`), so a flood is answered at once instead of waiting
//! in the socket buffers, until half the permits are free again. The door has as many slots
//! as there are permits; once they are taken too (the peer does not read its answers), the
//! reader waits, and our memory stays bounded. The door also takes the frames of reads made
//! while the reader itself is behind its peer (`server::backlog`, counted in
//! `authswitch_backlog_shed_total`). The writer encodes every answer that is ready
//! into one buffer and writes it with one syscall, then returns the permits and slots.
//! Answers may leave in a different order than their requests arrived (pipelining).
//!
//! The connection ends when the peer closes, on a framing error, on a timeout (idle, or a
//! frame that arrives too slowly), or on shutdown; in every case the writer first answers
//! every request already read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore, SemaphorePermit, TryAcquireError};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::iso8583::{peek_mti_stan, FrameCodec, FrameError, Message};
use crate::ledger::shard::{Answer, Failure, Job, Outgoing, Reply, WireCtx};
use crate::ledger::Outcome;
use crate::metrics::{handles, Reject};
use crate::server::backlog::ReadLag;
use crate::server::dispatch::{dispatch, Dispatch};
use crate::server::overload::{OverloadCap, SharedCap};
use crate::server::webhook::Deferred;
use crate::server::Shared;
use crate::server::{respond, rxstamp};

/// Answers written with one `write` at most.
const WRITE_COALESCE_MAX: usize = 256;
/// How long a connection stays at its in-flight bound, held back by TCP, before requests past
/// the bound are answered 91 at the door: the shards' shedding interval, so that bursts and
/// brief stalls are served as they are there.
const DOOR_AFTER: Duration = crate::ledger::shard::SHED_INTERVAL;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Decoded-message boxes a connection keeps for reuse (`MessagePool`).
const POOLED_MESSAGES_MAX: usize = 256;

/// Boxes of decoded requests, handed back by the writer once their answers are written and
/// reused by the reader for the next requests (served or answered at the door). A boxed
/// `Message` (about 1 KiB, its field table) is larger than what glibc serves from its
/// per-thread cache, so a new one for every request took malloc's slower path, and its free
/// another on the writer's side.
/// A bounded lock-free queue: at most `POOLED_MESSAGES_MAX` boxes wait (their bodies
/// released), beyond that they are freed, and an empty pool means a new box.
struct MessagePool {
    tx: crossbeam_channel::Sender<Box<Message>>,
    rx: crossbeam_channel::Receiver<Box<Message>>,
}

impl MessagePool {
    fn new(max: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(max);
        MessagePool { tx, rx }
    }

    /// Decodes `body` into a pooled box, or a new one when none waits.
    fn decode(
        &self,
        body: bytes::Bytes,
        wire: &crate::iso8583::WireFormat,
    ) -> Result<Box<Message>, crate::iso8583::DecodeError> {
        match self.rx.try_recv() {
            Ok(mut message) => match message.decode_into(body, wire) {
                Ok(()) => Ok(message),
                Err(error) => {
                    // Left empty by the failed decode: back to the pool for the next request.
                    self.give(message);
                    Err(error)
                }
            },
            Err(_) => Message::decode_boxed(body, wire),
        }
    }

    /// Takes back a request's box once its answer is encoded.
    fn give(&self, mut message: Box<Message>) {
        message.clear();
        let _ = self.tx.try_send(message);
    }
}

pub async fn serve(socket: TcpStream, shared: Arc<Shared>, shutdown: CancellationToken) {
    let _ = socket.set_nodelay(true);
    // Without receive stamps (not Linux) `receive_wait_seconds` stays empty.
    let _ = super::rxstamp::enable(&socket);
    let peer = socket.peer_addr().ok();
    let (rd, wr) = socket.into_split();
    let in_flight_max = shared.config.server.in_flight_per_connection_max;
    // Room for every in-flight answer plus as many answered at the door.
    let (tx, rx) = mpsc::channel(2 * in_flight_max);
    let permits = Arc::new(Semaphore::new(in_flight_max));
    let door = Arc::new(Semaphore::new(in_flight_max));
    // The overload cap (`server::overload`): set by the writer, applied by the reader.
    let cap = Arc::new(SharedCap::new(in_flight_max));
    let pool = Arc::new(MessagePool::new(POOLED_MESSAGES_MAX.min(in_flight_max)));
    let writer = tokio::spawn(write_loop(
        wr,
        rx,
        [permits.clone(), door.clone()],
        cap.clone(),
        pool.clone(),
        shared.clone(),
    ));
    let end = read_loop(rd, tx, [permits, door], &cap, &pool, &shared, shutdown).await;
    tracing::debug!(?peer, reason = end, "connection reader finished");
    // The writer ends once every request read has been answered (all senders dropped).
    let _ = writer.await;
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    tx: mpsc::Sender<Outgoing>,
    [permits, door]: [Arc<Semaphore>; 2],
    cap: &SharedCap,
    pool: &MessagePool,
    shared: &Shared,
    shutdown: CancellationToken,
) -> &'static str {
    let server = &shared.config.server;
    let mut codec = FrameCodec::new(&shared.config.wire, server.frame_len_max);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let idle = Duration::from_secs(server.idle_timeout_s);
    let frame_timeout = Duration::from_millis(server.frame_read_timeout_ms);
    let mut partial_since: Option<Instant> = None;
    // Since when the connection has had no free permit (cleared once half are free again).
    let mut at_bound_since: Option<Instant> = None;
    let half_bound = (server.in_flight_per_connection_max / 2).max(1);
    let mut lag = ReadLag::new(
        Duration::from_millis(server.read_lag_target_ms),
        Instant::now(),
    );
    // The frames of the last read are answered at the door: the reader is behind.
    let mut shed_read = false;
    // How long the last read's newest bytes had waited in the receive queue (if stamped), and
    // the frames completed since that read (`receive_wait_seconds`).
    let mut receive_wait: Option<Duration> = None;
    let mut frames_read = 0u64;
    let in_flight_max = server.in_flight_per_connection_max;
    // When the bytes being taken apart were read, or the reader last waited: the arrival of
    // every frame they complete. One clock read per read, not one per frame: the clock was
    // 3.6 % of the switch's samples at twice its capacity (`scripts/overload`).
    let mut read_at = Instant::now();
    loop {
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    match receive_wait.take() {
                        Some(wait) if frames_read > 0 => {
                            handles().receive_wait_seconds.record_n(wait, frames_read);
                        }
                        _ => {}
                    }
                    frames_read = 0;
                    break;
                }
                Err(error) => return framing_error(&error),
            };
            // A whole frame arrived: the peer is making progress, so the slow-sender clock
            // restarts at the next partial frame (and never runs while we hold reads back).
            partial_since = None;
            if frame.body.is_empty() {
                handles().reject(Reject::ZeroLength);
                continue;
            }
            frames_read += 1;
            let now = read_at;
            let frame = if shed_read {
                let shed = &handles().backlog_shed;
                match answer_with_slot(frame, now, &door, &tx, pool, shared, shed) {
                    Some(frame) => frame,
                    None => continue,
                }
            } else {
                frame
            };
            // The request's arrival: when it was read, or when the reader took it after
            // waiting for room.
            let mut arrived = now;
            // While the connection sheds, the door also answers what finds its overload cap
            // reached (`server::overload`; the cap is the bound otherwise).
            let in_flight = in_flight_max - permits.available_permits().min(in_flight_max);
            let frame = if cap.reached(now, in_flight, in_flight_max) {
                let shed = &handles().cap_shed;
                match answer_at_door_waiting(frame, now, &door, &tx, pool, shared, shed).await {
                    Ok((Some(frame), after)) => {
                        arrived = after;
                        read_at = after;
                        frame
                    }
                    Ok((None, after)) => {
                        read_at = after;
                        continue;
                    }
                    Err(()) => return "closed",
                }
            } else {
                frame
            };
            // One permit per request. At the bound the reader waits for one, so a burst or
            // a brief stall is served late rather than refused. Once the connection has been
            // at its bound for `DOOR_AFTER` (a standing backlog, not a burst), requests are
            // answered 91 at the door while door slots last; past those too (the peer does
            // not read its answers), the reader waits (backpressure).
            let frame = match permits.try_acquire() {
                Ok(permit) => {
                    permit.forget();
                    if permits.available_permits() >= half_bound {
                        at_bound_since = None;
                    }
                    frame
                }
                Err(TryAcquireError::Closed) => return "closed",
                Err(TryAcquireError::NoPermits) => {
                    match admit_at_bound(
                        frame,
                        &permits,
                        &door,
                        &mut at_bound_since,
                        &tx,
                        pool,
                        shared,
                    )
                    .await
                    {
                        Admit::Take(frame) => {
                            arrived = Instant::now();
                            read_at = arrived;
                            frame
                        }
                        Admit::Answered => {
                            // It waited (for `DOOR_AFTER` at least): the clock moved on.
                            read_at = Instant::now();
                            continue;
                        }
                        Admit::Closed => return "closed",
                    }
                }
            };
            match take_frame(frame, arrived, &tx, pool, shared) {
                Ok(true) => {}
                Ok(false) => permits.add_permits(1),
                Err(end) => {
                    permits.add_permits(1);
                    return end;
                }
            }
        }
        partial_since = if buf.is_empty() {
            None
        } else {
            partial_since.or(Some(Instant::now()))
        };
        let deadline = match partial_since {
            Some(since) => since + frame_timeout,
            None => Instant::now() + idle,
        };
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let slow_sender = partial_since.is_some();
        match read_more(&mut rd, &mut buf, deadline, slow_sender, &shutdown).await {
            Ok((0, _, _)) => return "eof",
            Ok((_, waited, stamp)) => {
                let now = Instant::now();
                read_at = now;
                receive_wait = rxstamp::read_lag(std::time::SystemTime::now(), stamp);
                if waited {
                    // What arrived while the reader waited is fresh: it was caught up.
                    lag.caught_up(now);
                }
                shed_read = lag.after_read(now);
            }
            Err(end) => return end,
        }
    }
}

/// Reads what the socket holds; when it holds nothing (the reader has caught up with its
/// peer), waits for more until `deadline`: the end of a frame already started
/// (`slow_sender`), else the idle timeout. Returns the bytes read and whether it waited.
async fn read_more(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    deadline: Instant,
    slow_sender: bool,
    shutdown: &CancellationToken,
) -> Result<(usize, bool, Option<std::time::SystemTime>), &'static str> {
    if shutdown.is_cancelled() {
        return Err("shutdown");
    }
    match rxstamp::try_read(rd, buf) {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        read => {
            // A read that never waits takes no part in tokio's cooperative budget by itself:
            // without this a peer that always has data would keep its worker thread from the
            // other connections (and from its own writer) for as long as its flood lasts.
            tokio::task::coop::consume_budget().await;
            return read
                .map(|(n, stamp)| (n, false, stamp))
                .map_err(|_| "read error");
        }
    }
    let read = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Err("shutdown"),
        read = tokio::time::timeout_at(deadline.into(), rxstamp::read(rd, buf)) => read,
    };
    match read {
        Ok(read) => read
            .map(|(n, stamp)| (n, true, stamp))
            .map_err(|_| "read error"),
        Err(_) if slow_sender => {
            handles().reject(Reject::SlowSender);
            tracing::info!("closing a connection whose frame arrived too slowly");
            Err("slow sender")
        }
        Err(_) => {
            handles().reject(Reject::IdleTimeout);
            Err("idle")
        }
    }
}

fn framing_error(error: &FrameError) -> &'static str {
    let reason = if matches!(error, FrameError::FrameTooLong { .. }) {
        Reject::TooLong
    } else {
        Reject::Malformed
    };
    handles().reject(reason);
    tracing::warn!(%error, "closing a connection after a framing error");
    "framing error"
}

/// What the reader does with a frame that found every in-flight permit taken.
enum Admit {
    /// Take the ordinary path: it holds a permit now.
    Take(crate::iso8583::Frame),
    /// Answered at the door.
    Answered,
    /// The connection is closing.
    Closed,
}

/// Answers a frame at the door (`answer_at_door`, counted in `shed`) while a door slot is
/// free; the frame comes back when it is to take the ordinary path instead.
fn answer_with_slot(
    frame: crate::iso8583::Frame,
    arrived: Instant,
    door: &Semaphore,
    tx: &mpsc::Sender<Outgoing>,
    pool: &MessagePool,
    shared: &Shared,
    shed: &metrics::Counter,
) -> Option<crate::iso8583::Frame> {
    let Ok(slot) = door.try_acquire() else {
        return Some(frame);
    };
    answer_in_slot(slot, frame, arrived, tx, pool, shared, shed)
}

/// Answers a frame at the door in a door slot already taken, which then stays taken until the
/// writer has written the answer; the frame comes back (and the slot with it) when it is to
/// take the ordinary path instead.
fn answer_in_slot(
    slot: SemaphorePermit<'_>,
    frame: crate::iso8583::Frame,
    arrived: Instant,
    tx: &mpsc::Sender<Outgoing>,
    pool: &MessagePool,
    shared: &Shared,
    shed: &metrics::Counter,
) -> Option<crate::iso8583::Frame> {
    match answer_at_door(frame, arrived, tx, pool, shared, shed) {
        Ok(()) => {
            slot.forget();
            None
        }
        // The slot is returned when dropped.
        Err(frame) => Some(frame),
    }
}

/// Answers a frame at the door (`answer_at_door`, counted in `shed`), waiting for a door slot
/// if none is free (they come back as the writer writes the answers, or never when the peer
/// does not read them: backpressure). The frame comes back when it is to take the ordinary
/// path instead; `Err` when the connection is closing. Also returns the time after the wait:
/// `arrived` when a slot was free at once, the clock's reading after waiting for one.
async fn answer_at_door_waiting(
    frame: crate::iso8583::Frame,
    arrived: Instant,
    door: &Semaphore,
    tx: &mpsc::Sender<Outgoing>,
    pool: &MessagePool,
    shared: &Shared,
    shed: &metrics::Counter,
) -> Result<(Option<crate::iso8583::Frame>, Instant), ()> {
    // Only the reader takes door slots, so with one free `acquire` returns it at once (and,
    // as every acquire, counts against tokio's cooperative budget: a reader shedding a flood
    // yields every 128 answers); the clock is read again only after a wait.
    let waits = door.available_permits() == 0;
    let slot = door.acquire().await.map_err(|_| ())?;
    let after = if waits { Instant::now() } else { arrived };
    Ok((
        answer_in_slot(slot, frame, after, tx, pool, shared, shed),
        after,
    ))
}

/// Waits for a permit until the connection has been at its bound for `DOOR_AFTER`; from then
/// on answers at the door, waiting when need be for whichever comes first, a door slot or a
/// permit. Both stay taken only while the peer does not read its answers (backpressure);
/// door slots alone run out whenever the reader answers a slot's worth of frames before the
/// writer has run, and the reader then must not wait for a permit that a slow batch holds.
async fn admit_at_bound(
    frame: crate::iso8583::Frame,
    permits: &Semaphore,
    door: &Semaphore,
    at_bound_since: &mut Option<Instant>,
    tx: &mpsc::Sender<Outgoing>,
    pool: &MessagePool,
    shared: &Shared,
) -> Admit {
    let since = *at_bound_since.get_or_insert_with(Instant::now);
    let frame = match tokio::time::timeout_at((since + DOOR_AFTER).into(), permits.acquire()).await
    {
        Ok(Ok(permit)) => {
            permit.forget();
            return Admit::Take(frame);
        }
        Ok(Err(_)) => return Admit::Closed,
        Err(_) => frame,
    };
    let frame = tokio::select! {
        biased;
        permit = permits.acquire() => {
            return match permit {
                Ok(permit) => {
                    permit.forget();
                    Admit::Take(frame)
                }
                Err(_) => Admit::Closed,
            };
        }
        slot = door.acquire() => {
            let Ok(slot) = slot else {
                return Admit::Closed;
            };
            let arrived = Instant::now();
            match answer_in_slot(slot, frame, arrived, tx, pool, shared, &handles().door_shed) {
                None => return Admit::Answered,
                // Not answerable at the door (the slot went back): it waits for a permit.
                Some(frame) => frame,
            }
        }
    };
    match permits.acquire().await {
        Ok(permit) => {
            permit.forget();
            Admit::Take(frame)
        }
        Err(_) => Admit::Closed,
    }
}

/// Answers a request at the door: 91 for anything the ledger would decide (counted in `shed`),
/// the usual answer for network management (it costs nothing to give). The frame comes back
/// when it is not a request we can answer this way (undecodable, or a message type we never
/// answer); it then waits for an in-flight permit and takes the ordinary path.
fn answer_at_door(
    frame: crate::iso8583::Frame,
    arrived: Instant,
    tx: &mpsc::Sender<Outgoing>,
    pool: &MessagePool,
    shared: &Shared,
    shed: &metrics::Counter,
) -> Result<(), crate::iso8583::Frame> {
    let Ok(request) = pool.decode(frame.body.clone(), &shared.config.wire) else {
        return Err(frame);
    };
    if request.mti().response().is_none() {
        pool.give(request);
        return Err(frame);
    }
    let de39 = match dispatch_network(&request) {
        Some(de39) => de39,
        None => {
            shed.increment(1);
            *b"91"
        }
    };
    let ctx = WireCtx {
        request,
        arrived,
        tpdu: frame.tpdu,
    };
    let _ = tx.try_send(Outgoing::Door { ctx, de39 });
    Ok(())
}

/// The local answer of a network-management message (0800), `None` for anything else.
fn dispatch_network(request: &Message) -> Option<[u8; 2]> {
    if request.mti().value() != 800 {
        return None;
    }
    match crate::server::dispatch::network_management(request) {
        Dispatch::Local(de39) => Some(de39),
        _ => Some(*b"30"),
    }
}

/// Decodes one frame and routes it: to a shard, to a local answer, or (when not even the MTI
/// and STAN can be read) to the end of the connection. `Ok(false)`: nothing will be answered.
fn take_frame(
    frame: crate::iso8583::Frame,
    arrived: Instant,
    tx: &mpsc::Sender<Outgoing>,
    pool: &MessagePool,
    shared: &Shared,
) -> Result<bool, &'static str> {
    let wire = &shared.config.wire;
    let request = match pool.decode(frame.body.clone(), wire) {
        Ok(message) => message,
        Err(error) => {
            let Some((mti, stan)) = peek_mti_stan(&frame.body, wire) else {
                handles().reject(Reject::Undecodable);
                tracing::warn!(%error, "closing a connection after an undecodable message");
                return Err("undecodable");
            };
            handles().reject(Reject::Malformed);
            tracing::info!(%error, %mti, stan, "format error answered with DE39 30");
            let encoded =
                respond::format_error(mti, stan, frame.tpdu, shared).ok_or("undecodable")?;
            let _ = tx.try_send(Outgoing::Encoded(encoded));
            return Ok(true);
        }
    };
    let ctx = WireCtx {
        request,
        arrived,
        tpdu: frame.tpdu,
    };
    match dispatch(&ctx.request, &shared.ledger) {
        Dispatch::Local(de39) => {
            let _ = tx.try_send(Outgoing::Local { ctx, de39 });
        }
        Dispatch::Shard(shard, work) => {
            let deadline = arrived + shared.request_deadline;
            let reply = Reply::Wire {
                tx: tx.clone(),
                ctx,
            };
            shared.ledger.submit(
                shard,
                Job {
                    work,
                    reply,
                    queued: arrived,
                    deadline,
                },
            );
        }
        Dispatch::Ignore => {
            handles().reject(Reject::UnknownMti);
            tracing::info!(mti = %ctx.request.mti(), "message type not answered; dropped");
            return Ok(false);
        }
    }
    Ok(true)
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    [permits, door]: [Arc<Semaphore>; 2],
    cap: Arc<SharedCap>,
    pool: Arc<MessagePool>,
    shared: Arc<Shared>,
) {
    // However the writer ends (a failed write, a peer that does not read, a panic), a reader
    // waiting for a permit or a door slot is woken and ends too.
    let _close = CloseOnDrop([permits.clone(), door.clone()]);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let server = &shared.config.server;
    let mut overload = OverloadCap::new(
        Duration::from_millis(server.overload_latency_target_ms),
        server.in_flight_per_connection_max,
        Instant::now(),
    );
    let write_timeout = Duration::from_millis(server.write_timeout_ms);
    // Requests waiting for their platform's decision (server/webhook.rs): they keep their
    // permit until their final answer, which comes back through `deferred`, is written.
    let mut deferred = Deferred::new(server.in_flight_per_connection_max);
    let mut rx_open = true;
    let mut published = (server.in_flight_per_connection_max, None);
    loop {
        // Each answer with whether it comes from a shard (not a webhook's final answer).
        let first = tokio::select! {
            item = rx.recv(), if rx_open => match item {
                Some(item) => (item, true),
                None => {
                    rx_open = false;
                    continue;
                }
            },
            Some(item) = deferred.recv(), if deferred.outstanding() > 0 => (item, false),
            else => break,
        };
        // Answers written, by what they hold: [in-flight permits, door slots].
        let mut answered = [0usize; 2];
        let now = Instant::now();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some((item, from_shard)) = next.take() {
            match overload_signal(&item) {
                Signal::Served(arrived) if from_shard => {
                    overload.served(now.saturating_duration_since(arrived), now);
                }
                Signal::Shed => overload.shed(now),
                _ => {}
            }
            let slot = slot_of(&item);
            let recycle = |message| pool.give(message);
            answered[slot] += usize::from(deferred.encode(item, &shared, &mut out, recycle));
            taken += 1;
            if taken < WRITE_COALESCE_MAX {
                next = match rx.try_recv() {
                    Ok(item) => Some((item, true)),
                    Err(_) => deferred.try_recv().map(|item| (item, false)),
                };
            }
        }
        let effective = overload.effective(deferred.outstanding());
        if effective != published {
            if effective.0 != published.0 {
                tracing::debug!(cap = effective.0, "connection overload cap");
            }
            cap.publish(effective);
            published = effective;
        }
        if answered == [0, 0] {
            continue;
        }
        match tokio::time::timeout(write_timeout, wr.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                handles().reject(Reject::SlowReader);
                tracing::info!("closing a connection that does not take its responses");
                return;
            }
        }
        out.clear();
        permits.add_permits(answered[0]);
        door.add_permits(answered[1]);
    }
    let _ = wr.shutdown().await;
}

/// Closes the connection's semaphores when dropped.
struct CloseOnDrop([Arc<Semaphore>; 2]);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        for semaphore in &self.0 {
            semaphore.close();
        }
    }
}

/// What an answer tells the overload cap (`server::overload`).
enum Signal {
    /// A request decided by a shard, which arrived then.
    Served(Instant),
    /// Answered 91 by the overload policy.
    Shed,
    Other,
}

fn overload_signal(item: &Outgoing) -> Signal {
    match item {
        Outgoing::Decided {
            answer: Ok(Answer::Outcome(Outcome::AwaitingPlatform(_))),
            ..
        } => Signal::Other,
        Outgoing::Decided {
            ctx,
            answer: Ok(Answer::Outcome(_)),
        } => Signal::Served(ctx.arrived),
        Outgoing::Decided {
            answer: Err(Failure::Overloaded | Failure::Deadline),
            ..
        } => Signal::Shed,
        Outgoing::Door {
            de39: [b'9', b'1'], ..
        } => Signal::Shed,
        _ => Signal::Other,
    }
}

/// Which bound an answer was counted against: 0 in-flight permits, 1 door slots.
fn slot_of(item: &Outgoing) -> usize {
    usize::from(matches!(item, Outgoing::Door { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_that_ends_in_a_panic_still_wakes_the_reader() {
        let permits = Arc::new(Semaphore::new(0));
        let door = Arc::new(Semaphore::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let guard = CloseOnDrop([permits.clone(), door.clone()]);
            let writer = tokio::spawn(async move {
                let _close = guard;
                panic!("the writer fails");
            });
            assert!(writer.await.unwrap_err().is_panic());
            // The reader's waits end instead of waiting forever.
            assert!(permits.acquire().await.is_err());
            assert!(door.acquire().await.is_err());
        });
    }
}
