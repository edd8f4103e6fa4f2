//! Tests of response tracking, the timeout sweep, follow-up planning and the budget.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use authswitch::iso8583::{Message, MessageBuilder, Mti, WireFormat, FRAME_LEN_MAX_DEFAULT};
use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;

use super::reader::{apply, on_frames, sweep, CHECK_VALUES_EVERY};
use super::writer::{plan_follow_up, Planned};
use super::{Budget, ConnState, OpenAuth, Pending, Shared};
use crate::cli::Mode;
use crate::clock::UtcStamp;
use crate::merchant::Merchants;
use crate::mix::Kind;
use crate::template::{Context, OriginalRef, RequestEncoder};

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
        tick: Duration::from_micros(100),
        ticks: None,
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

#[test]
fn answers_are_checked_whole_in_a_sample_and_by_structure_otherwise() {
    let shared = shared();
    let format = WireFormat::default();
    let mut codec = authswitch::iso8583::FrameCodec::new(&format, FRAME_LEN_MAX_DEFAULT);
    let mut st = ConnState::default();
    let mut buf = BytesMut::new();
    // CHECK_VALUES_EVERY + 1 answers, each with a control character in DE41: the first and
    // the last are decoded with their values checked, and count as errors.
    let n = CHECK_VALUES_EVERY as u32 + 1;
    for stan in 1..=n {
        st.pending.insert(stan, pending(Kind::Auth, 0, 100));
        let mut body = BytesMut::new();
        MessageBuilder::new(Mti::new(110))
            .set_number(11, stan.into())
            .set_text(39, b"00")
            .set_text(41, b"TERM0001")
            .encode(&format, &mut body)
            .unwrap();
        let at = body.windows(8).position(|w| w == b"TERM0001").unwrap();
        body[at + 4] = 0x01;
        codec
            .write_frame(None, &mut buf, |out| {
                out.extend_from_slice(&body);
                Ok::<(), authswitch::iso8583::FrameError>(())
            })
            .unwrap();
    }
    let mut released = 0;
    on_frames(
        &shared,
        &mut st,
        &mut codec,
        &mut buf,
        Instant::now(),
        None,
        &mut released,
    )
    .unwrap();
    assert_eq!(st.stats.errors, 2);
    assert_eq!(st.stats.responses, u64::from(n) - 2);
    assert_eq!(released, n as usize - 2);
    // The two refused answers are still pending (they time out); the others were matched.
    assert_eq!(st.pending.len(), 2);
    assert!(st.pending.contains_key(&1) && st.pending.contains_key(&n));
    assert!(buf.is_empty());
}
