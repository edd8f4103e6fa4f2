//! Property: any message built from the dictionary (random subset of fields, random valid
//! values for each type and length) in any charset and bitmap encoding encodes, decodes back
//! to the same values, and re-encodes byte-exact.

use std::collections::BTreeSet;

use authswitch::iso8583::{
    dictionary, BitmapEncoding, Charset, FieldType, LengthKind, Message, MessageBuilder, Mti,
    WireFormat, FIELD_LEN_MAX,
};
use bytes::BytesMut;
use proptest::prelude::*;

/// Keeps generated variable fields short enough for many cases per second in debug builds.
const VAR_LEN_MAX: usize = 80;

fn alphabet(field_type: FieldType, position: usize) -> &'static [u8] {
    const DIGITS: &[u8] = b"0123456789";
    match field_type {
        FieldType::Numeric => DIGITS,
        FieldType::Alpha => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ",
        FieldType::AlphaNumeric => b"ABCXYZabcxyz0123456789 ",
        FieldType::AlphaNumericSpecial => b" !\"#$%&'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}~",
        FieldType::Track => b"0123456789=",
        FieldType::SignedNumeric if position == 0 => b"CD",
        FieldType::SignedNumeric => DIGITS,
        FieldType::Binary => &[],
    }
}

fn field_value(field: u8) -> BoxedStrategy<(u8, Vec<u8>)> {
    let spec = *dictionary().field(field).expect("field in dictionary");
    let len_max = spec.len_max as usize;
    let len = if spec.length == LengthKind::Fixed {
        Just(len_max).boxed()
    } else {
        (0..=len_max.min(VAR_LEN_MAX)).boxed()
    };
    len.prop_flat_map(move |len| proptest::collection::vec(any::<u8>(), len))
        .prop_map(move |seed| {
            let value = seed
                .iter()
                .enumerate()
                .map(|(i, &s)| match spec.field_type {
                    FieldType::Binary => s,
                    t => {
                        let chars = alphabet(t, i);
                        chars[s as usize % chars.len()]
                    }
                })
                .collect();
            (field, value)
        })
        .boxed()
}

fn message() -> impl Strategy<Value = (u16, Vec<(u8, Vec<u8>)>)> {
    let field = (2u8..=128).prop_filter("DE65 is the tertiary bitmap", |&f| f != 65);
    (0u16..=9999, proptest::collection::btree_set(field, 0..30)).prop_flat_map(
        |(mti, fields): (u16, BTreeSet<u8>)| {
            let values: Vec<_> = fields.into_iter().map(field_value).collect();
            (Just(mti), values)
        },
    )
}

fn format() -> impl Strategy<Value = WireFormat> {
    let charset = prop_oneof![
        Just(Charset::Ascii),
        Just(Charset::Bcd),
        Just(Charset::Ebcdic)
    ];
    let bitmap = prop_oneof![Just(BitmapEncoding::Binary), Just(BitmapEncoding::Hex)];
    (charset, bitmap).prop_map(|(charset, bitmap)| WireFormat {
        charset,
        bitmap,
        ..WireFormat::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_decode_encode_is_identity((mti, fields) in message(), format in format()) {
        let mut builder = MessageBuilder::new(Mti::new(mti));
        for (field, value) in &fields {
            builder.set_text(*field, value);
        }
        let mut wire = BytesMut::new();
        builder.encode(&format, &mut wire).unwrap();
        let wire = wire.freeze();

        let msg = Message::decode(wire.clone(), &format).unwrap();
        prop_assert_eq!(msg.mti().value(), mti);
        let numbers: Vec<u8> = fields.iter().map(|(f, _)| *f).collect();
        prop_assert_eq!(msg.fields().collect::<Vec<_>>(), numbers);
        prop_assert_eq!(msg.has(1), fields.iter().any(|(f, _)| *f > 64));
        for (field, value) in &fields {
            let mut buf = [0u8; FIELD_LEN_MAX];
            prop_assert_eq!(msg.value(*field, &mut buf), Some(&value[..]), "DE{}", field);
        }

        let mut echo = MessageBuilder::new(msg.mti());
        for field in msg.fields() {
            echo.copy_from(&msg, field);
        }
        let mut again = BytesMut::new();
        echo.encode(&format, &mut again).unwrap();
        prop_assert_eq!(&again[..], &wire[..]);
    }

    #[test]
    fn decode_never_panics_on_mutated_messages(
        (mti, fields) in message(),
        format in format(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut builder = MessageBuilder::new(Mti::new(mti));
        for (field, value) in &fields {
            builder.set_text(*field, value);
        }
        let mut wire = BytesMut::new();
        builder.encode(&format, &mut wire).unwrap();
        for (index, byte) in flips {
            let i = index.index(wire.len());
            wire[i] ^= byte;
        }
        let keep = cut.index(wire.len() + 1);
        wire.truncate(keep);
        let body = wire.freeze();
        let _ = authswitch::iso8583::peek_mti_stan(&body, &format);
        let decoded = Message::decode(body.clone(), &format);
        // The boxed decode (the server's) reads exactly what the plain one reads.
        match (&decoded, Message::decode_boxed(body.clone(), &format)) {
            (Ok(plain), Ok(boxed)) => {
                prop_assert_eq!(plain.mti(), boxed.mti());
                prop_assert_eq!(plain.fields().collect::<Vec<_>>(), boxed.fields().collect::<Vec<_>>());
                for field in plain.fields() {
                    prop_assert_eq!(plain.raw(field), boxed.raw(field), "DE{}", field);
                }
            }
            (Err(plain), Err(boxed)) => prop_assert_eq!(*plain, boxed),
            (plain, boxed) => prop_assert!(false, "decode {:?} but decode_boxed {:?}", plain.is_ok(), boxed.is_ok()),
        }
        if let Ok(msg) = decoded {
            let mut echo = MessageBuilder::new(msg.mti());
            for field in msg.fields() {
                echo.copy_from(&msg, field);
            }
            let mut again = BytesMut::new();
            echo.encode(&format, &mut again).unwrap();
            if format.bitmap == BitmapEncoding::Binary {
                prop_assert_eq!(&again[..], &body[..]);
            }
        }
    }
}
