//! The WAL payload of the authorization commands, written by hand.
//!
//! A command's payload is postcard's encoding of `(now_s, command)` (`shard::encode_command`),
//! and recovery reads it back with postcard. Through serde, postcard writes a fixed byte array
//! one element at a time (the merchant data, the keys and the RRN are about a hundred bytes of
//! them), and its per-field calls cost an authorization about 1 000 instructions on the shard
//! thread (`scripts/switch-instructions`, 2026-12-07). `Authorize`, `Advice` and `Financial`,
//! nearly every record of a busy shard, are written here instead: the same bytes (a test
//! compares them with postcard's for arbitrary requests), with each array copied whole.
//!
//! Postcard's format, as used here: unsigned integers as LEB128 varints (`u8` as one raw
//! byte), signed ones zigzag-encoded first, `bool` as one byte, `Option` as a 0 or 1 byte
//! then the value, enum variants as the varint of their index, arrays, tuples and structs as
//! their elements in order with no length.

use super::command::{AuthKind, AuthRequest, Command};
use crate::domain::controls::Presence;

/// Variant indexes of `Command`, in declaration order (postcard writes the index).
const AUTHORIZE: u32 = 7;
const ADVICE: u32 = 10;
const FINANCIAL: u32 = 12;

/// The most bytes `encode_auth_command` writes: varints of at most 10 bytes (5 for the
/// variant and `stan`, 3 for the `u16`s, 1 for the unit enums), the fixed arrays, and the
/// option tags and flags.
const AUTH_PAYLOAD_MAX: usize = 10 + 5 // now_s, variant
    + 10 + 16 + 10 + 1 + 10 + 3 // card, key, content_hash, kind, amount, currency
    + (1 + 10) + (1 + 3) + 3 + (1 + 2) // billing amount and currency, mcc, country
    + 1 + 1 + (1 + 2) + (1 + 16) // presence, partial_ok, expiry, original
    + 25 + 13 + 2 + 8 + 15 + 5 + 12; // merchant, stan, rrn

/// Appends the payload of `(now_s, command)` if `command` is one of the authorization
/// commands written here; false (and nothing appended) for any other.
pub fn encode_auth_command(out: &mut Vec<u8>, now_s: i64, command: &Command) -> bool {
    let (variant, req) = match command {
        Command::Authorize(req) => (AUTHORIZE, req),
        Command::Advice(req) => (ADVICE, req),
        Command::Financial(req) => (FINANCIAL, req),
        _ => return false,
    };
    let mut w = Writer {
        buf: [0; AUTH_PAYLOAD_MAX],
        len: 0,
    };
    w.signed(now_s);
    w.unsigned(u64::from(variant));
    w.auth_request(req);
    out.extend_from_slice(&w.buf[..w.len]);
    true
}

/// A payload built on the stack and appended whole: no capacity check per byte.
struct Writer {
    buf: [u8; AUTH_PAYLOAD_MAX],
    len: usize,
}

impl Writer {
    fn auth_request(&mut self, r: &AuthRequest) {
        self.unsigned(r.card.0);
        self.bytes(&r.key.0);
        self.unsigned(r.content_hash);
        self.unsigned(auth_kind(r.kind));
        self.signed(r.amount_minor);
        self.unsigned(u64::from(r.currency));
        match r.billing_amount_minor {
            Some(v) => {
                self.byte(1);
                self.signed(v);
            }
            None => self.byte(0),
        }
        match r.billing_currency {
            Some(v) => {
                self.byte(1);
                self.unsigned(u64::from(v));
            }
            None => self.byte(0),
        }
        self.unsigned(u64::from(r.mcc));
        match r.merchant_country {
            Some(c) => {
                self.byte(1);
                self.bytes(&c);
            }
            None => self.byte(0),
        }
        self.unsigned(presence(r.presence));
        self.byte(u8::from(r.partial_ok));
        match r.expiry_presented {
            Some((yy, mm)) => self.bytes(&[1, yy, mm]),
            None => self.byte(0),
        }
        match &r.original {
            Some(key) => {
                self.byte(1);
                self.bytes(&key.0);
            }
            None => self.byte(0),
        }
        let m = &r.merchant;
        self.bytes(&m.name);
        self.bytes(&m.city);
        self.bytes(&m.country);
        self.bytes(&m.terminal_id);
        self.bytes(&m.merchant_id);
        self.unsigned(u64::from(r.stan));
        self.bytes(&r.rrn);
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    /// LEB128: seven bits a byte, low first, the high bit set on every byte but the last.
    #[inline]
    fn unsigned(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    /// Zigzag (0, -1, 1, -2, ... as 0, 1, 2, 3, ...), then LEB128.
    #[inline]
    fn signed(&mut self, v: i64) {
        self.unsigned(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Variant index of an `AuthKind` (an exhaustive match: a new kind does not compile
/// until it is given its index here and in the test's strategy).
fn auth_kind(kind: AuthKind) -> u64 {
    match kind {
        AuthKind::Purchase => 0,
        AuthKind::CashWithdrawal => 1,
        AuthKind::Refund => 2,
        AuthKind::AccountVerification => 3,
        AuthKind::BalanceInquiry => 4,
    }
}

fn presence(p: Presence) -> u64 {
    match p {
        Presence::Present => 0,
        Presence::NotPresent => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::CardId;
    use crate::ledger::command::{MerchantData, TxnKey};
    use proptest::prelude::*;

    fn postcard_payload(now_s: i64, command: &Command) -> Vec<u8> {
        postcard::to_stdvec(&(now_s, command)).unwrap()
    }

    fn kinds() -> impl Strategy<Value = AuthKind> {
        prop_oneof![
            Just(AuthKind::Purchase),
            Just(AuthKind::CashWithdrawal),
            Just(AuthKind::Refund),
            Just(AuthKind::AccountVerification),
            Just(AuthKind::BalanceInquiry),
        ]
    }

    prop_compose! {
        fn requests()(
            card in any::<u64>(), key in any::<[u8; 16]>(), content_hash in any::<u64>(),
            kind in kinds(), amount_minor in any::<i64>(), currency in any::<u16>(),
            billing_amount_minor in any::<Option<i64>>(), billing_currency in any::<Option<u16>>(),
            mcc in any::<u16>(), merchant_country in any::<Option<[u8; 2]>>(),
            present in any::<bool>(), partial_ok in any::<bool>(),
            expiry_presented in any::<Option<(u8, u8)>>(), original in any::<Option<[u8; 16]>>(),
            text in any::<[u8; 32]>(), ids in any::<[u8; 32]>(), stan in any::<u32>(),
            rrn in any::<[u8; 12]>(),
        ) -> AuthRequest {
            AuthRequest {
                card: CardId(card),
                key: TxnKey(key),
                content_hash,
                kind,
                amount_minor,
                currency,
                billing_amount_minor,
                billing_currency,
                mcc,
                merchant_country,
                presence: if present { Presence::Present } else { Presence::NotPresent },
                partial_ok,
                expiry_presented,
                original: original.map(TxnKey),
                merchant: MerchantData::new(&text[..25], &text[25..], &ids[..2], &ids[2..10],
                    &ids[10..25]),
                stan,
                rrn,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Byte for byte what postcard writes, for each of the three commands, so recovery
        /// (which reads with postcard) and every WAL written before this code read the same.
        #[test]
        fn writes_what_postcard_writes(req in requests(), now_s in any::<i64>(), which in 0..3u8) {
            let command = match which {
                0 => Command::Authorize(req),
                1 => Command::Advice(req),
                _ => Command::Financial(req),
            };
            let mut out = vec![0xAA];
            prop_assert!(encode_auth_command(&mut out, now_s, &command));
            prop_assert_eq!(out[0], 0xAA, "appends, keeps what was there");
            prop_assert_eq!(&out[1..], &postcard_payload(now_s, &command)[..]);
            let (back_now, back): (i64, Command) = postcard::from_bytes(&out[1..]).unwrap();
            prop_assert_eq!(back_now, now_s);
            prop_assert_eq!(back, command);
        }
    }

    fn writer() -> Writer {
        Writer {
            buf: [0; AUTH_PAYLOAD_MAX],
            len: 0,
        }
    }

    #[test]
    fn varints_at_their_edges() {
        for v in [
            0,
            1,
            0x7f,
            0x80,
            0x3fff,
            0x4000,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut w = writer();
            w.unsigned(v);
            assert_eq!(&w.buf[..w.len], postcard::to_stdvec(&v).unwrap(), "{v}");
        }
        for v in [0, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            let mut w = writer();
            w.signed(v);
            assert_eq!(&w.buf[..w.len], postcard::to_stdvec(&v).unwrap(), "{v}");
        }
    }

    /// The largest request there is fills the buffer exactly: `AUTH_PAYLOAD_MAX` is the
    /// true bound, so no request can write past it.
    #[test]
    fn the_largest_request_fits_exactly() {
        let req = AuthRequest {
            card: CardId(u64::MAX),
            key: TxnKey([0xFF; 16]),
            content_hash: u64::MAX,
            kind: AuthKind::BalanceInquiry,
            amount_minor: i64::MIN,
            currency: u16::MAX,
            billing_amount_minor: Some(i64::MIN),
            billing_currency: Some(u16::MAX),
            mcc: u16::MAX,
            merchant_country: Some(*b"US"),
            presence: Presence::NotPresent,
            partial_ok: true,
            expiry_presented: Some((99, 12)),
            original: Some(TxnKey([0xFF; 16])),
            merchant: MerchantData::new(&[b'A'; 25], &[b'B'; 13], b"US", &[b'T'; 8], &[b'M'; 15]),
            stan: u32::MAX,
            rrn: [b'9'; 12],
        };
        // Every variant index takes one byte; the bound counts five for it.
        let mut out = Vec::new();
        assert!(encode_auth_command(
            &mut out,
            i64::MIN,
            &Command::Financial(req)
        ));
        assert_eq!(out.len(), AUTH_PAYLOAD_MAX - 4);
    }

    #[test]
    fn other_commands_are_left_to_postcard() {
        let mut out = Vec::new();
        assert!(!encode_auth_command(&mut out, 5, &Command::ExpireHolds));
        assert!(out.is_empty());
    }
}
