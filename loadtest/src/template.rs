//! Request messages the simulated network sends: 0100 (plain and incremental), 0120, 0400
//! and 0800, framed for the configured wire format.
//!
//! Merchant fields come pre-formatted from `merchant`, the PAN from `portfolio`; the builder
//! borrows them and the numbers, so encoding a request allocates nothing beyond growing the
//! connection's output buffer.

use authswitch::iso8583::{
    swap_tpdu, EncodeError, FrameCodec, MessageBuilder, Mti, WireFormat, TPDU_LEN,
};
use bytes::BytesMut;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::UtcStamp;
use crate::merchant::Merchant;
use crate::portfolio::Card;

/// The simulated acquirer's institution id, the first six digits of every DE32.
pub const ACQUIRER_BASE: u64 = 412_345;

/// DE32 of every request: `ACQUIRER_BASE` followed by five digits drawn once per process from
/// the clock's microseconds. The switch keys a transaction on DE32, DE11 and DE7 (to the
/// second), and every run numbers its connections' STANs from the same starting points, so
/// two runs within one second (a provisioning run and the measured run right after it) sent
/// the same keys: a different request under a key already seen was answered 94, and the same
/// request was answered as a duplicate without a new hold (one 94 in about 4 million
/// requests at 16 connections, 2026-12-07). Runs in different seconds never share a key.
pub fn acquirer_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_micros());
        ACQUIRER_BASE * 100_000 + u64::from(micros % 100_000)
    })
}
/// DE49: US dollars.
pub const CURRENCY_USD: &[u8; 3] = b"840";
/// DE3: purchase from the default account.
pub const PROCESSING_PURCHASE: u64 = 0;
/// DE70 of a sign-on.
pub const NETWORK_SIGN_ON: u16 = 1;
/// DE70 of an echo test.
pub const NETWORK_ECHO: u16 = 301;
/// Our TPDU as the sender: id 0x60, destination 0001, source 0002.
pub const TPDU: [u8; TPDU_LEN] = [0x60, 0x00, 0x01, 0x00, 0x02];
/// Largest amount DE4 holds (12 digits).
pub const AMOUNT_MINOR_MAX: i64 = 999_999_999_999;

/// Identity of an earlier approved 0100, as DE90 repeats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginalRef {
    pub stan: u32,
    /// DE7 of the original, `MMDDhhmmss`.
    pub transmission: u64,
}

/// The purchase-related fields of a request.
#[derive(Clone, Copy, Debug)]
pub struct Purchase<'a> {
    pub card: &'a Card,
    pub merchant: &'a Merchant,
    pub amount_minor: i64,
    /// DE22, e.g. 051 chip, 071 contactless, 010 keyed.
    pub pos_entry_mode: u16,
}

#[derive(Clone, Copy, Debug)]
pub enum Request<'a> {
    Auth(Purchase<'a>),
    /// `amount_minor` is the increment, not the new total.
    Incremental(Purchase<'a>, OriginalRef),
    Advice(Purchase<'a>),
    /// `amount_minor` is the authorization's current total; `replacement_minor` (DE95) is
    /// what remains after a partial reversal.
    Reversal {
        purchase: Purchase<'a>,
        original: OriginalRef,
        replacement_minor: Option<i64>,
    },
    Network {
        code: u16,
    },
}

impl Request<'_> {
    pub fn mti(&self) -> Mti {
        match self {
            Request::Auth(_) | Request::Incremental(..) => Mti::AUTHORIZATION_REQUEST,
            Request::Advice(_) => Mti::AUTHORIZATION_ADVICE,
            Request::Reversal { .. } => Mti::REVERSAL_REQUEST,
            Request::Network { .. } => Mti::NETWORK_MANAGEMENT_REQUEST,
        }
    }
}

/// Per-batch values shared by the requests of one write.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub stamp: UtcStamp,
    /// Connection number, part of DE37 so RRNs differ across connections.
    pub connection: u16,
}

/// Frames requests for one wire format.
#[derive(Clone, Debug)]
pub struct RequestEncoder {
    codec: FrameCodec,
    format: WireFormat,
}

fn digits<const N: usize>(mut value: u64) -> [u8; N] {
    let mut out = [b'0'; N];
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    assert!(value == 0, "value does not fit {N} digits");
    out
}

fn amount(amount_minor: i64) -> u64 {
    assert!((0..=AMOUNT_MINOR_MAX).contains(&amount_minor));
    amount_minor as u64
}

/// DE90: MTI 0100, STAN, DE7, acquirer (11), forwarder (11, zeros).
pub fn original_data(original: &OriginalRef) -> [u8; 42] {
    let mut out = [b'0'; 42];
    out[..4].copy_from_slice(b"0100");
    out[4..10].copy_from_slice(&digits::<6>(original.stan.into()));
    out[10..20].copy_from_slice(&digits::<10>(original.transmission));
    out[20..31].copy_from_slice(&digits::<11>(acquirer_id()));
    out
}

/// DE95: transaction and settlement amounts that remain, zero fees.
pub fn replacement_amounts(remaining_minor: i64) -> [u8; 42] {
    let mut out = [b'0'; 42];
    let value = digits::<12>(amount(remaining_minor));
    out[..12].copy_from_slice(&value);
    out[12..24].copy_from_slice(&value);
    out
}

impl RequestEncoder {
    pub fn new(format: WireFormat, frame_len_max: usize) -> RequestEncoder {
        RequestEncoder {
            codec: FrameCodec::new(&format, frame_len_max),
            format,
        }
    }

    pub fn format(&self) -> &WireFormat {
        &self.format
    }

    /// Appends one framed request to `out`; on error `out` is unchanged.
    pub fn write(
        &self,
        out: &mut BytesMut,
        ctx: &Context,
        stan: u32,
        request: &Request<'_>,
    ) -> Result<(), EncodeError> {
        let rrn: [u8; 12] = digits(
            u64::from(ctx.stamp.day_of_year) * 1_000_000_000
                + u64::from(ctx.connection % 1000) * 1_000_000
                + u64::from(stan),
        );
        let de90;
        let de95;
        let mut msg = MessageBuilder::new(request.mti());
        msg.set_number(7, ctx.stamp.transmission())
            .set_number(11, stan.into());
        match request {
            Request::Network { code } => {
                msg.set_number(70, (*code).into());
            }
            Request::Auth(p) | Request::Advice(p) => {
                set_purchase(&mut msg, p, ctx, &rrn);
            }
            Request::Incremental(p, original) => {
                set_purchase(&mut msg, p, ctx, &rrn);
                de90 = original_data(original);
                msg.set_text(90, &de90);
            }
            Request::Reversal {
                purchase,
                original,
                replacement_minor,
            } => {
                set_purchase(&mut msg, purchase, ctx, &rrn);
                de90 = original_data(original);
                msg.set_text(90, &de90);
                if let Some(remaining) = replacement_minor {
                    de95 = replacement_amounts(*remaining);
                    msg.set_text(95, &de95);
                }
            }
        }
        let tpdu = self.format.tpdu.then(|| swap_tpdu(TPDU));
        self.codec
            .write_frame(tpdu, out, |body| msg.encode(&self.format, body))
    }
}

fn set_purchase<'a>(
    msg: &mut MessageBuilder<'a>,
    p: &Purchase<'a>,
    ctx: &Context,
    rrn: &'a [u8; 12],
) {
    msg.set_text(2, p.card.pan_digits())
        .set_number(3, PROCESSING_PURCHASE)
        .set_number(4, amount(p.amount_minor))
        .set_number(12, ctx.stamp.time_of_day())
        .set_number(13, ctx.stamp.month_day())
        .set_number(14, p.card.expiry_yymm.into())
        .set_number(18, p.merchant.mcc.into())
        .set_number(22, p.pos_entry_mode.into())
        .set_number(25, 0)
        .set_number(32, acquirer_id())
        .set_text(37, rrn)
        .set_text(41, &p.merchant.terminal_id)
        .set_text(42, &p.merchant.acceptor_id)
        .set_text(43, &p.merchant.name_location)
        .set_text(49, CURRENCY_USD);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merchant::Merchants;
    use authswitch::iso8583::{
        BitmapEncoding, Charset, Frame, LengthHeader, Message, Pan, FRAME_LEN_MAX_DEFAULT,
    };
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use tokio_util::codec::Decoder;

    fn decode_one(format: &WireFormat, buf: &mut BytesMut) -> Frame {
        let mut codec = FrameCodec::new(format, FRAME_LEN_MAX_DEFAULT);
        let frame = codec.decode(buf).unwrap().unwrap();
        assert!(buf.is_empty(), "exactly one frame");
        frame
    }

    fn formats() -> Vec<WireFormat> {
        let mut all = Vec::new();
        for (header, tpdu, bitmap, charset) in [
            (
                LengthHeader::Binary2,
                false,
                BitmapEncoding::Binary,
                Charset::Ascii,
            ),
            (
                LengthHeader::Binary4,
                true,
                BitmapEncoding::Hex,
                Charset::Ascii,
            ),
            (
                LengthHeader::Ascii4,
                false,
                BitmapEncoding::Binary,
                Charset::Bcd,
            ),
            (
                LengthHeader::Binary2,
                true,
                BitmapEncoding::Hex,
                Charset::Ebcdic,
            ),
        ] {
            all.push(WireFormat {
                header,
                tpdu,
                bitmap,
                charset,
            });
        }
        all
    }

    fn fixture() -> (Card, Merchants, Context) {
        let card = Card::new(Pan::from_digits(b"4111111111111111").unwrap(), 3012, 0);
        let merchants = Merchants::generate(&mut StdRng::seed_from_u64(1));
        let ctx = Context {
            stamp: UtcStamp::from_unix_s(1_700_000_000),
            connection: 7,
        };
        (card, merchants, ctx)
    }

    fn encode(format: WireFormat, ctx: &Context, stan: u32, request: &Request) -> Message {
        let encoder = RequestEncoder::new(format, FRAME_LEN_MAX_DEFAULT);
        let mut out = BytesMut::new();
        encoder.write(&mut out, ctx, stan, request).unwrap();
        let frame = decode_one(&format, &mut out);
        assert_eq!(frame.tpdu, format.tpdu.then_some(TPDU));
        Message::decode(frame.body, &format).unwrap()
    }

    #[test]
    fn auth_carries_every_field_in_every_format() {
        let (card, merchants, ctx) = fixture();
        let merchant = &merchants.all()[0];
        let purchase = Purchase {
            card: &card,
            merchant,
            amount_minor: 1234,
            pos_entry_mode: 51,
        };
        for format in formats() {
            let msg = encode(format, &ctx, 42, &Request::Auth(purchase));
            assert_eq!(msg.mti(), Mti::new(100));
            assert_eq!(msg.pan().unwrap().as_digits(), b"4111111111111111");
            assert_eq!(msg.processing_code().unwrap().transaction_type, 0);
            assert_eq!(msg.amount_transaction(), Some(1234));
            assert_eq!(msg.transmission_time().unwrap().as_number(), 1114221320);
            assert_eq!(msg.stan(), Some(42));
            let time = msg.local_time().unwrap();
            assert_eq!((time.hour, time.minute, time.second), (22, 13, 20));
            let date = msg.local_date().unwrap();
            assert_eq!((date.month, date.day), (11, 14));
            let expiry = msg.expiry().unwrap();
            assert_eq!((expiry.year, expiry.month), (30, 12));
            assert_eq!(msg.mcc(), Some(5411));
            assert_eq!(msg.pos_entry_mode(), Some(51));
            assert_eq!(msg.pos_condition_code(), Some(0));
            let acquirer = msg.acquirer_id().unwrap();
            assert_eq!(acquirer.as_str(), acquirer_id().to_string());
            assert_eq!(acquirer.as_str().len(), 11);
            assert!(acquirer.as_str().starts_with("412345"));
            assert_eq!(msg.rrn().unwrap().as_str(), "318007000042");
            assert_eq!(msg.terminal_id().unwrap().as_bytes(), &merchant.terminal_id);
            assert_eq!(msg.merchant_id().unwrap().as_bytes(), &merchant.acceptor_id);
            let acceptor = msg.card_acceptor().unwrap();
            assert_eq!(acceptor.name.trimmed(), "FRESH MARKET 00100");
            assert_eq!(
                acceptor.country,
                Some([merchant.name_location[38], merchant.name_location[39]])
            );
            assert_eq!(
                msg.currency_transaction().and_then(|c| c.numeric()),
                Some(840)
            );
            assert!(!msg.has(90) && !msg.has(95) && !msg.has(70));
        }
    }

    #[test]
    fn incremental_and_reversal_name_the_original() {
        let (card, merchants, ctx) = fixture();
        let purchase = Purchase {
            card: &card,
            merchant: &merchants.all()[40],
            amount_minor: 500,
            pos_entry_mode: 71,
        };
        let original = OriginalRef {
            stan: 999_999,
            transmission: 1231235959,
        };
        for format in formats() {
            let msg = encode(format, &ctx, 1, &Request::Incremental(purchase, original));
            assert_eq!(msg.mti(), Mti::new(100));
            assert_eq!(msg.amount_transaction(), Some(500));
            let de90 = msg.original_data().unwrap();
            assert_eq!(de90.mti, Mti::new(100));
            assert_eq!(de90.stan, 999_999);
            assert_eq!(de90.transmission_time.as_number(), 1231235959);
            assert_eq!(de90.acquirer_id, acquirer_id());
            assert_eq!(de90.forwarding_id, 0);
            assert!(!msg.has(95));

            let partial = Request::Reversal {
                purchase,
                original,
                replacement_minor: Some(120),
            };
            let msg = encode(format, &ctx, 2, &partial);
            assert_eq!(msg.mti(), Mti::new(400));
            assert_eq!(msg.amount_transaction(), Some(500));
            assert_eq!(msg.original_data().unwrap().stan, 999_999);
            let de95 = msg.replacement_amounts().unwrap();
            assert_eq!(de95.transaction_amount_minor, 120);
            assert_eq!(de95.settlement_amount_minor, 120);
            assert_eq!(
                (de95.transaction_fee_minor, de95.settlement_fee_minor),
                (0, 0)
            );

            let full = Request::Reversal {
                purchase,
                original,
                replacement_minor: None,
            };
            let msg = encode(format, &ctx, 3, &full);
            assert!(msg.has(90) && !msg.has(95));
        }
    }

    #[test]
    fn advice_and_network_messages() {
        let (card, merchants, ctx) = fixture();
        let purchase = Purchase {
            card: &card,
            merchant: &merchants.all()[0],
            amount_minor: 0,
            pos_entry_mode: 10,
        };
        for format in formats() {
            let msg = encode(format, &ctx, 9, &Request::Advice(purchase));
            assert_eq!(msg.mti(), Mti::new(120));
            assert_eq!(msg.amount_transaction(), Some(0));
            let msg = encode(format, &ctx, 10, &Request::Network { code: NETWORK_ECHO });
            assert_eq!(msg.mti(), Mti::new(800));
            assert_eq!(msg.network_management_code(), Some(301));
            assert_eq!(msg.stan(), Some(10));
            assert_eq!(msg.fields().collect::<Vec<_>>(), [7, 11, 70]);
        }
    }

    #[test]
    fn sub_fields_are_laid_out_by_position() {
        let original = OriginalRef {
            stan: 12,
            transmission: 101000000,
        };
        let de90 = original_data(&original);
        assert_eq!(&de90[..20], b"01000000120101000000");
        assert_eq!(de90[20..31], digits::<11>(acquirer_id()));
        assert_eq!(&de90[20..26], b"412345");
        assert_eq!(&de90[31..], b"00000000000");
        assert_eq!(
            &replacement_amounts(1500),
            b"000000001500000000001500000000000000000000"
        );
    }
}
