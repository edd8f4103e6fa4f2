//! Responses: outcome → response message → frame bytes, appended to the writer's buffer.
//!
//! A response echoes the request's DE2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42 and 49 where
//! present (plus DE90/DE95 on reversals and DE70 on network management), and adds DE38 on
//! approvals and DE39 always. A partial approval (DE39 10) carries the approved amount in DE4
//! and the requested amount in DE54 (amount type 57, "original amount"); a balance inquiry
//! carries the available balance in DE54 (amount type 02). See `proto/dialect.md`.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::iso8583::{FrameCodec, Message, MessageBuilder, Mti};
use crate::ledger::shard::{Answer, Failure, Outgoing};
use crate::metrics::handles;
use crate::server::dispatch::WireAnswer;
use crate::server::Shared;

/// Fields echoed from request to response.
const ECHO_FIELDS: [u8; 12] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49];
/// Extra echoes by message class.
const ECHO_REVERSAL: [u8; 2] = [90, 95];
const ECHO_NETWORK: [u8; 1] = [70];

/// Appends the answer of `item` to `out`; hands the request's box to `recycle` once done
/// with it.
pub fn encode(
    item: Outgoing,
    shared: &Shared,
    out: &mut BytesMut,
    recycle: impl FnOnce(Box<Message>),
) {
    match item {
        Outgoing::Encoded(frame) => out.extend_from_slice(&frame),
        Outgoing::Local { ctx, de39 } | Outgoing::Door { ctx, de39 } => {
            let answer = WireAnswer::code(de39);
            write_response(&ctx.request, ctx.tpdu, &answer, shared, out);
            record(&ctx.request, ctx.arrived, de39);
            recycle(ctx.request);
        }
        Outgoing::Decided { ctx, answer } => {
            let decided = matches!(answer, Ok(Answer::Outcome(_)));
            let answer = match answer {
                Ok(Answer::Outcome(outcome)) => WireAnswer::from_outcome(&outcome, &ctx.request),
                Ok(Answer::Query(_) | Answer::Totals(_)) => WireAnswer::code(*b"96"),
                Err(Failure::Overloaded | Failure::Deadline) => WireAnswer::code(*b"91"),
                Err(Failure::Storage) => WireAnswer::code(*b"96"),
            };
            write_response(&ctx.request, ctx.tpdu, &answer, shared, out);
            let elapsed = record(&ctx.request, ctx.arrived, answer.de39);
            if decided {
                handles().decided_request_seconds.record(elapsed);
            }
            recycle(ctx.request);
        }
    }
}

/// Counts one answer; returns how long the switch held its request.
fn record(request: &Message, arrived: Instant, de39: [u8; 2]) -> Duration {
    let elapsed = arrived.elapsed();
    handles().request(request.mti().value(), de39, elapsed);
    elapsed
}

/// Appends one response frame. When it does not fit a frame, the ledger has acted already:
/// a minimal response (`write_minimal`) goes instead of nothing.
fn write_response(
    request: &Message,
    tpdu: Option<[u8; 5]>,
    answer: &WireAnswer,
    shared: &Shared,
    out: &mut BytesMut,
) {
    let Some(mti) = request.mti().response() else {
        return;
    };
    let wire = &shared.config.wire;
    let codec = outgoing_codec(wire);
    let builder = full_response(mti, request, answer);
    // A frame that fails leaves `out` as it was (`FrameCodec::write_frame`).
    let result = codec.write_frame(tpdu, out, |body| builder.encode(wire, body));
    if let Err(error) = result {
        tracing::warn!(%error, mti = %mti, "response does not fit a frame; answering minimally");
        write_minimal(mti, request, tpdu, answer, shared, out);
    }
}

/// The codec responses are written with. Only what the length header can express bounds
/// them: `server.frame_len_max` protects our reader from the peer, and a response adds
/// DE38, DE39 and DE54 to a request that fitted it, so holding responses to it dropped
/// answers to requests the ledger had decided.
fn outgoing_codec(wire: &crate::iso8583::WireFormat) -> FrameCodec {
    FrameCodec::new(wire, wire.header.representable_len_max())
}

/// The response with every echoed and added field.
fn full_response<'a>(mti: Mti, request: &'a Message, answer: &'a WireAnswer) -> MessageBuilder<'a> {
    let mut builder = MessageBuilder::new(mti);
    let amount_echo = answer.amount_minor.is_none();
    for field in ECHO_FIELDS {
        if request.has(field) && (field != 4 || amount_echo) {
            builder.copy_from(request, field);
        }
    }
    let extra: &[u8] = match request.mti().value() / 100 % 10 {
        4 => &ECHO_REVERSAL,
        8 => &ECHO_NETWORK,
        _ => &[],
    };
    for &field in extra {
        if request.has(field) {
            builder.copy_from(request, field);
        }
    }
    if let Some(amount) = answer.amount_minor {
        builder.set_number(4, amount);
    }
    if let Some(code) = &answer.approval_code {
        builder.set_text(38, code);
    }
    builder.set_text(39, &answer.de39);
    if let Some(entry) = &answer.de54 {
        builder.set_text(54, entry);
    }
    builder
}

/// The smallest answer the network can match to its request: MTI, DE11 and DE39, with DE37
/// when that still fits, and the approved amount of a partial approval (DE39 10 means nothing
/// without it). Logged and dropped only if not even that fits (a TPDU and a 99-byte ASCII
/// header leave room for it, so that would be our bug).
fn write_minimal(
    mti: Mti,
    request: &Message,
    tpdu: Option<[u8; 5]>,
    answer: &WireAnswer,
    shared: &Shared,
    out: &mut BytesMut,
) {
    let wire = &shared.config.wire;
    let codec = outgoing_codec(wire);
    let mut last = None;
    for echo in [&[11u8, 37][..], &[11]] {
        let mut builder = MessageBuilder::new(mti);
        for &field in echo.iter().filter(|f| request.has(**f)) {
            builder.copy_from(request, field);
        }
        if let Some(amount) = answer.amount_minor {
            builder.set_number(4, amount);
        }
        builder.set_text(39, &answer.de39);
        match codec.write_frame(tpdu, out, |body| builder.encode(wire, body)) {
            Ok(()) => return,
            Err(error) => last = Some(error),
        }
    }
    if let Some(error) = last {
        tracing::error!(%error, mti = %mti, "cannot encode even a minimal response");
    }
}

/// A complete format-error response (DE39 30) for a body that did not decode, built from its
/// MTI and STAN alone.
pub fn format_error(mti: Mti, stan: u32, tpdu: Option<[u8; 5]>, shared: &Shared) -> Option<Bytes> {
    let response = mti.response()?;
    let mut builder = MessageBuilder::new(response);
    builder.set_number(11, u64::from(stan));
    builder.set_text(39, b"30");
    let codec = outgoing_codec(&shared.config.wire);
    let mut out = BytesMut::with_capacity(64);
    let result = codec.write_frame(tpdu, &mut out, |body| {
        builder.encode(&shared.config.wire, body)
    });
    match result {
        Ok(()) => {
            handles().request(mti.value(), *b"30", std::time::Duration::ZERO);
            Some(out.freeze())
        }
        Err(error) => {
            tracing::error!(%error, "cannot encode a format-error response");
            None
        }
    }
}
