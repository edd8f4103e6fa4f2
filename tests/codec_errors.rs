//! Every decode and encode violation gives a precise error naming the field and the reason,
//! and no error text ever contains a field value.

use authswitch::iso8583::{
    peek_mti_stan, BitmapEncoding, Charset, DecodeError, EncodeError, Message, MessageBuilder, Mti,
    ValueFault, WireFormat,
};
use bytes::{Bytes, BytesMut};

/// An ASCII message with a binary bitmap built from raw field bytes (prefix included), so
/// tests can put anything on the wire.
fn ascii(mti: &[u8], fields: &[(u8, &[u8])]) -> Bytes {
    let mut bits: u128 = 0;
    for &(field, _) in fields {
        bits |= 1u128 << (128 - field as u32);
    }
    if bits as u64 != 0 {
        bits |= 1u128 << 127;
    }
    let mut out = mti.to_vec();
    out.extend_from_slice(&((bits >> 64) as u64).to_be_bytes());
    if bits & (1u128 << 127) != 0 {
        out.extend_from_slice(&(bits as u64).to_be_bytes());
    }
    for &(_, raw) in fields {
        out.extend_from_slice(raw);
    }
    Bytes::from(out)
}

fn decode(body: Bytes) -> Result<Message, DecodeError> {
    Message::decode(body, &WireFormat::default())
}

const PAN: &[u8] = b"164111111111111111";

#[test]
fn bad_digit_in_de4() {
    let body = ascii(b"0100", &[(2, PAN), (4, b"00000001234X"), (11, b"123456")]);
    let err = decode(body.clone()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::BadValue {
            field: 4,
            fault: ValueFault::NotDigit,
            position: 11
        }
    );
    assert_eq!(err.to_string(), "DE4: bad digit at position 11");
    // The MTI and STAN can still be read for a format-error response.
    assert_eq!(
        peek_mti_stan(&body, &WireFormat::default()),
        Some((Mti::new(100), 123456))
    );
}

#[test]
fn pan_longer_than_19() {
    let body = ascii(b"0100", &[(2, b"2041111111111111111111"), (11, b"123456")]);
    let err = decode(body.clone()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::FieldTooLong {
            field: 2,
            len: 20,
            max: 19
        }
    );
    assert_eq!(err.to_string(), "DE2: length 20 exceeds the maximum 19");
    assert_eq!(peek_mti_stan(&body, &WireFormat::default()), None);
}

#[test]
fn bitmap_announcing_de65() {
    let body = ascii(b"0100", &[(11, b"123456"), (65, b"\0\0\0\0\0\0\0\0")]);
    assert_eq!(decode(body).unwrap_err(), DecodeError::TertiaryBitmap);
}

#[test]
fn de1_set_but_secondary_bitmap_absent() {
    let mut body = b"0800".to_vec();
    body.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
    let err = decode(Bytes::from(body)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::SecondaryBitmapMissing { need: 8, have: 0 }
    );
    let mut body = b"0800".to_vec();
    body.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        decode(Bytes::from(body)).unwrap_err(),
        DecodeError::EmptySecondaryBitmap
    );
}

#[test]
fn trailing_bytes() {
    let mut body = ascii(b"0800", &[(11, b"123456")]).to_vec();
    body.extend_from_slice(b"xyz");
    assert_eq!(
        decode(Bytes::from(body)).unwrap_err(),
        DecodeError::TrailingBytes { count: 3 }
    );
}

#[test]
fn truncated_field_and_prefix() {
    let body = ascii(b"0800", &[(7, b"1121233456"), (11, b"123")]);
    let err = decode(body).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TruncatedField {
            field: 11,
            need: 6,
            have: 3
        }
    );
    assert_eq!(err.to_string(), "DE11: truncated, 3 of 6 bytes");
    let body = ascii(b"0100", &[(2, b"1")]);
    assert_eq!(
        decode(body).unwrap_err(),
        DecodeError::TruncatedPrefix { field: 2 }
    );
}

#[test]
fn bad_length_prefix() {
    let body = ascii(b"0100", &[(2, b"1A4111111111")]);
    assert_eq!(
        decode(body).unwrap_err(),
        DecodeError::BadLengthPrefix { field: 2 }
    );
}

#[test]
fn mti_and_bitmap_faults() {
    assert_eq!(
        decode(Bytes::from_static(b"01")).unwrap_err(),
        DecodeError::TruncatedMti { need: 4, have: 2 }
    );
    assert_eq!(
        decode(Bytes::from_static(b"01A0\0\0\0\0\0\0\0\0")).unwrap_err(),
        DecodeError::BadMti
    );
    assert_eq!(
        decode(Bytes::from_static(b"0100\0\0\0")).unwrap_err(),
        DecodeError::TruncatedBitmap { need: 8, have: 3 }
    );
    let hex = WireFormat {
        bitmap: BitmapEncoding::Hex,
        ..WireFormat::default()
    };
    let err = Message::decode(Bytes::from_static(b"08000020000000G00000"), &hex).unwrap_err();
    assert_eq!(err, DecodeError::BadBitmap { secondary: false });
}

#[test]
fn text_type_faults() {
    let body = ascii(b"0110", &[(39, b"0\x01")]);
    assert_eq!(
        decode(body).unwrap_err(),
        DecodeError::BadValue {
            field: 39,
            fault: ValueFault::NotAlphanumeric,
            position: 1
        }
    );
    let body = ascii(b"0100", &[(35, b"054111X")]);
    assert_eq!(
        decode(body).unwrap_err(),
        DecodeError::BadValue {
            field: 35,
            fault: ValueFault::NotTrack,
            position: 4
        }
    );
    let body = ascii(b"0100", &[(28, b"X00000100")]);
    assert_eq!(
        decode(body).unwrap_err(),
        DecodeError::BadValue {
            field: 28,
            fault: ValueFault::NotSign,
            position: 0
        }
    );
    let body = ascii(b"0100", &[(43, b"ACME\x7F")]);
    assert!(matches!(
        decode(body),
        Err(DecodeError::TruncatedField { field: 43, .. })
    ));
}

#[test]
fn bcd_and_ebcdic_faults() {
    let bcd = WireFormat {
        charset: Charset::Bcd,
        ..WireFormat::default()
    };
    // 0100, DE11 only, value with a nibble above 9.
    let body = [0x01, 0x00, 0, 0x20, 0, 0, 0, 0, 0, 0, 0x12, 0x3A, 0x56];
    assert_eq!(
        Message::decode(Bytes::copy_from_slice(&body), &bcd).unwrap_err(),
        DecodeError::BadValue {
            field: 11,
            fault: ValueFault::NotDigit,
            position: 3
        }
    );
    // DE32 of 3 digits must pad its first nibble with 0.
    let body = [0x01, 0x00, 0, 0, 0, 0x01, 0, 0, 0, 0, 0x03, 0x51, 0x23];
    assert_eq!(
        Message::decode(Bytes::copy_from_slice(&body), &bcd).unwrap_err(),
        DecodeError::BadValue {
            field: 32,
            fault: ValueFault::BadPadding,
            position: 0
        }
    );
    let ebcdic = WireFormat {
        charset: Charset::Ebcdic,
        ..WireFormat::default()
    };
    // 0110 with DE39 = 0xF0 0x00 (0x00 is no printable cp037 character).
    let body = [
        0xF0, 0xF1, 0xF1, 0xF0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0xF0, 0x00,
    ];
    assert_eq!(
        Message::decode(Bytes::copy_from_slice(&body), &ebcdic).unwrap_err(),
        DecodeError::BadValue {
            field: 39,
            fault: ValueFault::NotEbcdic,
            position: 1
        }
    );
}

#[test]
fn errors_never_show_field_values() {
    let bodies = [
        ascii(b"0100", &[(2, b"16411111111111111X")]),
        ascii(
            b"0100",
            &[(2, PAN), (35, b"374111111111111111=2812101123456789012")],
        ),
        ascii(b"0100", &[(2, PAN), (52, b"4111111111111111")]),
        ascii(b"0100", &[(2, PAN), (55, b"9994111111111111111")]),
    ];
    for body in bodies {
        let err = decode(body).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("411111"), "{shown}");
    }
}

/// Encodes a 0110 with the fields `set` puts in; returns the error, checking that the
/// output buffer is left as it was.
fn encode_error(set: impl FnOnce(&mut MessageBuilder)) -> String {
    let mut builder = MessageBuilder::new(Mti::new(110));
    set(&mut builder);
    let mut out = BytesMut::from(&b"keep"[..]);
    let err = builder
        .encode(&WireFormat::default(), &mut out)
        .unwrap_err();
    assert_eq!(
        &out[..],
        b"keep",
        "a failed encode leaves the buffer as it was"
    );
    err.to_string()
}

#[test]
fn encode_validates_against_the_dictionary() {
    let cases: [(String, EncodeError); 6] = [
        (
            encode_error(|b| {
                b.set_text(2, b"41111111111111111111");
            }),
            EncodeError::FieldTooLong {
                field: 2,
                len: 20,
                max: 19,
            },
        ),
        (
            encode_error(|b| {
                b.set_text(39, b"0");
            }),
            EncodeError::WrongLength {
                field: 39,
                len: 1,
                expected: 2,
            },
        ),
        (
            encode_error(|b| {
                b.set_text(4, b"00000000012A");
            }),
            EncodeError::BadValue {
                field: 4,
                fault: ValueFault::NotDigit,
                position: 11,
            },
        ),
        (
            encode_error(|b| {
                b.set_number(11, 1_234_567);
            }),
            EncodeError::NumberTooLarge {
                field: 11,
                digits: 7,
                max: 6,
            },
        ),
        (
            encode_error(|b| {
                b.set_number(52, 1);
            }),
            EncodeError::NotNumeric { field: 52 },
        ),
        (
            encode_error(|b| {
                b.set_number(11, 1).set_text(65, b"x");
            }),
            EncodeError::InvalidField { field: 65 },
        ),
    ];
    for (got, expected) in cases {
        assert_eq!(got, expected.to_string());
    }
}

#[test]
fn set_number_zero_pads_fixed_fields_and_not_variable_ones() {
    let mut out = BytesMut::new();
    let mut builder = MessageBuilder::new(Mti::new(810));
    builder
        .set_number(11, 42)
        .set_number(32, 12345)
        .set_number(70, 1);
    builder.encode(&WireFormat::default(), &mut out).unwrap();
    let mut expected = b"0810".to_vec();
    expected.extend_from_slice(&[0x80, 0x20, 0, 0x01, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(b"0000420512345001");
    assert_eq!(&out[..], &expected[..]);
}

#[test]
fn decode_structure_skips_only_the_characters_of_values() {
    let format = WireFormat::default();
    // A bad digit in DE4 and a control character in DE41: `decode` refuses the message,
    // `decode_structure` takes it and every field reads where it lies.
    let body = ascii(
        b"0110",
        &[
            (4, b"00000001234X"),
            (11, b"123456"),
            (39, b"00"),
            (41, b"TERM\x01001"),
        ],
    );
    assert!(matches!(
        Message::decode(body.clone(), &format),
        Err(DecodeError::BadValue { field: 4, .. })
    ));
    let message = Message::decode_structure(body, &format).unwrap();
    assert_eq!(message.mti(), Mti::new(110));
    assert_eq!(message.stan(), Some(123456));
    assert_eq!(message.response_code(), Some(*b"00"));
    assert_eq!(message.raw(41), Some(&b"TERM\x01001"[..]));
    // The amount's view parses what it reads, so a bad digit reads as no amount.
    assert_eq!(message.amount_transaction(), None);
    // The structure is still checked: a field cut short, and bytes after the last field.
    let short = ascii(b"0110", &[(11, b"1234")]);
    assert!(Message::decode_structure(short, &format).is_err());
    let trailing = ascii(b"0110", &[(11, b"123456"), (39, b"00")]);
    let mut extra = trailing.to_vec();
    extra.push(b'9');
    assert_eq!(
        Message::decode_structure(Bytes::from(extra), &format).unwrap_err(),
        DecodeError::TrailingBytes { count: 1 }
    );
}

#[test]
fn a_number_encodes_as_its_zero_padded_digits_set_as_text_in_every_charset() {
    use authswitch::iso8583::{dictionary, FieldType, LengthKind};
    // `set_number` writes its digits unchecked; `set_text` checks them. For every field that
    // takes numbers, in every charset, both must put the same bytes on the wire.
    let values = [0u64, 7, 42, 123_456, 999_999_999_999, u64::MAX];
    let mut compared = 0;
    for charset in [Charset::Ascii, Charset::Ebcdic, Charset::Bcd] {
        let format = WireFormat {
            charset,
            ..WireFormat::default()
        };
        for field in 2..=128u8 {
            let Some(spec) = dictionary().field(field) else {
                continue;
            };
            if field == 65
                || !matches!(
                    spec.field_type,
                    FieldType::Numeric | FieldType::AlphaNumeric | FieldType::AlphaNumericSpecial
                )
            {
                continue;
            }
            for value in values {
                let digits = value.to_string();
                let max = spec.len_max as usize;
                if digits.len() > max {
                    continue;
                }
                let text = if spec.length == LengthKind::Fixed {
                    format!("{value:0>max$}")
                } else {
                    digits
                };
                let encode = |builder: &mut MessageBuilder| {
                    let mut out = BytesMut::new();
                    builder.encode(&format, &mut out).map(|()| out)
                };
                let mut by_number = MessageBuilder::new(Mti::new(110));
                by_number.set_number(field, value);
                let mut by_text = MessageBuilder::new(Mti::new(110));
                by_text.set_text(field, text.as_bytes());
                assert_eq!(
                    encode(&mut by_number).unwrap(),
                    encode(&mut by_text).unwrap(),
                    "DE{field} {value} in {charset:?}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 300, "{compared}");
}
