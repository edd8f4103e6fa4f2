//! Golden vectors: hand-laid-out messages (tests/golden/*.hex, made by make_golden.py from the
//! standard, not by our encoder) must decode to the exact field values, and encode back to
//! the exact bytes, in each charset and bitmap encoding.

use authswitch::iso8583::{
    BitmapEncoding, Charset, CurrencyCode, Message, MessageBuilder, Mti, WireFormat, FIELD_LEN_MAX,
};
use bytes::{Bytes, BytesMut};

const MESSAGES: [(&str, &[u8]); 7] = [
    (
        "0100",
        &[
            2, 3, 4, 7, 11, 12, 13, 14, 18, 22, 25, 32, 37, 41, 42, 43, 49, 52, 55,
        ],
    ),
    (
        "0110",
        &[2, 3, 4, 7, 11, 12, 13, 32, 37, 38, 39, 41, 42, 49],
    ),
    (
        "0120",
        &[2, 3, 4, 7, 11, 12, 13, 18, 32, 37, 38, 39, 41, 42, 43, 49],
    ),
    ("0400", &[2, 3, 4, 7, 11, 32, 37, 41, 42, 49, 90, 95]),
    ("0420", &[3, 4, 7, 11, 32, 35, 37, 39, 41, 42, 49, 90]),
    ("0800", &[7, 11, 70]),
    ("0810", &[7, 11, 39, 70]),
];

const ENCODINGS: [&str; 4] = ["ascii_binbitmap", "ascii_hexbitmap", "bcd", "ebcdic"];

/// Logical value of each field the vectors use (same as make_golden.py).
fn expected(field: u8) -> &'static [u8] {
    match field {
        2 => b"4111111111111111",
        3 => b"000000",
        4 => b"000000012345",
        7 => b"1121233456",
        11 => b"123456",
        12 => b"183456",
        13 => b"1121",
        14 => b"2812",
        18 => b"5411",
        22 => b"051",
        25 => b"00",
        32 => b"12345",
        35 => b"4111111111111111=28121011",
        37 => b"432112345678",
        38 => b"A1B2C3",
        39 => b"00",
        41 => b"TERM0001",
        42 => b"MERCHANT0000001",
        43 => b"ACME COFFEE ROASTERS     SAN FRANCISCOUS",
        49 => b"840",
        52 => &[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF],
        55 => &[0x9F, 0x02, 0x06, 0x00, 0x00, 0x00, 0x01, 0x23, 0x45],
        70 => b"301",
        90 => b"010012345611212334560000001234500000000000",
        95 => b"000000005000000000005000D00000150C00000000",
        _ => panic!("no golden value for DE{field}"),
    }
}

fn format_of(encoding: &str) -> WireFormat {
    let mut format = WireFormat::default();
    match encoding {
        "ascii_binbitmap" => {}
        "ascii_hexbitmap" => format.bitmap = BitmapEncoding::Hex,
        "bcd" => format.charset = Charset::Bcd,
        "ebcdic" => format.charset = Charset::Ebcdic,
        other => panic!("unknown encoding {other}"),
    }
    format
}

fn load(mti: &str, encoding: &str) -> Bytes {
    let path = format!(
        "{}/tests/golden/{mti}_{encoding}.hex",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|part| part.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(hex.len() % 2 == 0, "{path}: odd number of hex digits");
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect::<Vec<u8>>();
    Bytes::from(bytes)
}

#[test]
fn every_vector_decodes_to_the_exact_field_values() {
    for (mti, fields) in MESSAGES {
        for encoding in ENCODINGS {
            let msg = Message::decode(load(mti, encoding), &format_of(encoding))
                .unwrap_or_else(|e| panic!("{mti} {encoding}: {e}"));
            assert_eq!(msg.mti().to_string(), mti, "{encoding}");
            assert_eq!(msg.fields().collect::<Vec<_>>(), fields, "{mti} {encoding}");
            assert_eq!(
                msg.has(1),
                fields.iter().any(|&f| f > 64),
                "{mti} {encoding}"
            );
            for &field in fields {
                let mut buf = [0u8; FIELD_LEN_MAX];
                let value = msg.value(field, &mut buf);
                assert_eq!(value, Some(expected(field)), "{mti} {encoding} DE{field}");
            }
        }
    }
}

#[test]
fn decode_then_copy_every_field_gives_back_the_same_bytes() {
    for (mti, _) in MESSAGES {
        for encoding in ENCODINGS {
            let format = format_of(encoding);
            let wire = load(mti, encoding);
            let msg = Message::decode(wire.clone(), &format).unwrap();
            let mut builder = MessageBuilder::new(msg.mti());
            for field in msg.fields() {
                builder.copy_from(&msg, field);
            }
            let mut out = BytesMut::new();
            builder.encode(&format, &mut out).unwrap();
            assert_eq!(&out[..], &wire[..], "{mti} {encoding}");
        }
    }
}

#[test]
fn encoding_the_logical_values_gives_the_golden_bytes() {
    for (mti, fields) in MESSAGES {
        for encoding in ENCODINGS {
            let mut builder = MessageBuilder::new(Mti::new(mti.parse().unwrap()));
            for &field in fields {
                builder.set_text(field, expected(field));
            }
            let mut out = BytesMut::new();
            builder.encode(&format_of(encoding), &mut out).unwrap();
            assert_eq!(&out[..], &load(mti, encoding)[..], "{mti} {encoding}");
        }
    }
}

#[test]
fn copying_between_charsets_translates_each_field() {
    for (mti, _) in MESSAGES {
        for from in ENCODINGS {
            let msg = Message::decode(load(mti, from), &format_of(from)).unwrap();
            for to in ENCODINGS {
                let mut builder = MessageBuilder::new(msg.mti());
                for field in msg.fields() {
                    builder.copy_from(&msg, field);
                }
                let mut out = BytesMut::new();
                builder.encode(&format_of(to), &mut out).unwrap();
                assert_eq!(&out[..], &load(mti, to)[..], "{mti} {from} -> {to}");
            }
        }
    }
}

#[test]
fn typed_views_of_the_0100() {
    for encoding in ENCODINGS {
        let msg = Message::decode(load("0100", encoding), &format_of(encoding)).unwrap();
        let pan = msg.pan().unwrap();
        assert_eq!(pan.as_digits(), b"4111111111111111");
        assert_eq!(pan.masked().to_string(), "411111******1111");
        let code = msg.processing_code().unwrap();
        assert_eq!(
            (code.transaction_type, code.from_account, code.to_account),
            (0, 0, 0)
        );
        assert_eq!(msg.amount_transaction(), Some(12345));
        assert_eq!(msg.stan(), Some(123456));
        let time = msg.transmission_time().unwrap();
        assert_eq!(
            (time.month, time.day, time.hour, time.minute, time.second),
            (11, 21, 23, 34, 56)
        );
        assert_eq!(time.as_number(), 1121233456);
        let local = msg.local_time().unwrap();
        assert_eq!((local.hour, local.minute, local.second), (18, 34, 56));
        let date = msg.local_date().unwrap();
        assert_eq!((date.month, date.day), (11, 21));
        let expiry = msg.expiry().unwrap();
        assert_eq!((expiry.year, expiry.month), (28, 12));
        assert_eq!(msg.mcc(), Some(5411));
        assert_eq!(msg.pos_entry_mode(), Some(51));
        assert_eq!(msg.pos_condition_code(), Some(0));
        assert_eq!(msg.acquirer_id().unwrap().as_str(), "12345");
        assert_eq!(msg.rrn().unwrap().as_str(), "432112345678");
        assert_eq!(msg.terminal_id().unwrap().as_str(), "TERM0001");
        assert_eq!(msg.merchant_id().unwrap().as_str(), "MERCHANT0000001");
        let acceptor = msg.card_acceptor().unwrap();
        assert_eq!(acceptor.name.as_str(), "ACME COFFEE ROASTERS");
        assert_eq!(acceptor.city.as_str(), "SAN FRANCISCO");
        assert_eq!(acceptor.country, Some(*b"US"));
        assert_eq!(msg.currency_transaction(), Some(CurrencyCode::Numeric(840)));
        assert_eq!(msg.raw(52), Some(expected(52)));
        assert_eq!(msg.acquiring_country(), None);
        assert_eq!(msg.response_code(), None);
    }
}

#[test]
fn typed_views_of_responses_reversals_and_network_management() {
    for encoding in ENCODINGS {
        let format = format_of(encoding);
        let resp = Message::decode(load("0110", encoding), &format).unwrap();
        assert_eq!(resp.response_code(), Some(*b"00"));
        assert_eq!(resp.approval_code().unwrap().as_str(), "A1B2C3");

        let reversal = Message::decode(load("0400", encoding), &format).unwrap();
        let original = reversal.original_data().unwrap();
        assert_eq!(original.mti, Mti::new(100));
        assert_eq!(original.stan, 123456);
        assert_eq!(original.transmission_time.as_number(), 1121233456);
        assert_eq!((original.acquirer_id, original.forwarding_id), (12345, 0));
        let replaced = reversal.replacement_amounts().unwrap();
        assert_eq!(replaced.transaction_amount_minor, 5000);
        assert_eq!(replaced.settlement_amount_minor, 5000);
        assert_eq!(replaced.transaction_fee_minor, 150);
        assert_eq!(replaced.settlement_fee_minor, 0);

        let advice = Message::decode(load("0420", encoding), &format).unwrap();
        assert!(!advice.has(2));
        assert_eq!(advice.pan().unwrap().as_digits(), b"4111111111111111");
        let expiry = advice.expiry().unwrap();
        assert_eq!((expiry.year, expiry.month), (28, 12));

        let echo = Message::decode(load("0800", encoding), &format).unwrap();
        assert_eq!(echo.network_management_code(), Some(301));
        assert_eq!(echo.mti().response(), Some(Mti::new(810)));
    }
}

#[test]
fn peek_reads_mti_and_stan_of_a_body_that_fails_to_decode() {
    for encoding in ENCODINGS {
        let format = format_of(encoding);
        let mut body = load("0100", encoding).to_vec();
        body.push(0x00);
        let body = Bytes::from(body);
        assert!(Message::decode(body.clone(), &format).is_err());
        let peeked = authswitch::iso8583::peek_mti_stan(&body, &format);
        assert_eq!(peeked, Some((Mti::new(100), 123456)), "{encoding}");
    }
}

#[test]
fn debug_output_of_a_message_shows_no_values() {
    let msg = Message::decode(load("0100", "ascii_binbitmap"), &WireFormat::default()).unwrap();
    let shown = format!("{msg:?} {:?}", msg.pan());
    assert!(!shown.contains("4111111111111111"), "{shown}");
    assert!(shown.contains("411111******1111"), "{shown}");
    assert!(
        shown.contains("fields: [2, 3, 4, 7, 11, 12, 13, 14, 18, 22, 25, 32"),
        "{shown}"
    );
}
