//! Typed views on edge cases: short DE43, DE54 entries, blank DE95 fees, track 2 with `D`,
//! alphabetic currency codes, PANs outside 12..=19 digits.

use authswitch::iso8583::{Charset, CurrencyCode, Message, MessageBuilder, Mti, WireFormat};
use bytes::BytesMut;

fn message(fields: &[(u8, &[u8])], charset: Charset) -> Message {
    let format = WireFormat {
        charset,
        ..WireFormat::default()
    };
    let mut builder = MessageBuilder::new(Mti::new(100));
    for &(field, value) in fields {
        builder.set_text(field, value);
    }
    let mut out = BytesMut::new();
    builder.encode(&format, &mut out).unwrap();
    Message::decode(out.freeze(), &format).unwrap()
}

const CHARSETS: [Charset; 3] = [Charset::Ascii, Charset::Bcd, Charset::Ebcdic];

/// DE7's digits come back as sent in every charset, the same ten digits as the parsed time's
/// number (what the transaction key hashes); none without DE7. And the fields of a message
/// with both bitmaps come out in order, on either side of DE64/DE65.
#[test]
fn transmission_time_digits_and_field_order() {
    for charset in CHARSETS {
        let msg = message(
            &[
                (7, b"1207141500"),
                (11, b"000123"),
                (64, b"00000000"),
                (70, b"301"),
            ],
            charset,
        );
        assert_eq!(msg.transmission_time_digits(), Some(*b"1207141500"));
        assert_eq!(msg.transmission_time().unwrap().as_number(), 1_207_141_500);
        assert_eq!(
            msg.fields().collect::<Vec<_>>(),
            [7, 11, 64, 70],
            "{charset:?}"
        );
        let msg = message(&[(2, b"4242424242424242"), (128, b"00000000")], charset);
        assert_eq!(msg.transmission_time_digits(), None);
        assert_eq!(msg.fields().collect::<Vec<_>>(), [2, 128], "{charset:?}");
    }
}

#[test]
fn card_acceptor_accepts_shorter_values() {
    // DE43 is fixed 40 on the wire; senders leave sub-fields blank or lowercase the country.
    let blank = format!("{:<40}", "CORNER SHOP");
    let msg = message(&[(43, blank.as_bytes())], Charset::Ascii);
    let acceptor = msg.card_acceptor().unwrap();
    assert_eq!(acceptor.name.as_str(), "CORNER SHOP");
    assert_eq!(acceptor.city.as_str(), "");
    assert_eq!(acceptor.country, None);
    let lower = format!("{:<25}{:<13}fr", "CORNER SHOP", "PARIS");
    let msg = message(&[(43, lower.as_bytes())], Charset::Ebcdic);
    let acceptor = msg.card_acceptor().unwrap();
    assert_eq!(acceptor.name.as_str(), "CORNER SHOP");
    assert_eq!(acceptor.city.as_str(), "PARIS");
    assert_eq!(acceptor.country, Some(*b"FR"));
}

#[test]
fn additional_amounts_are_split_into_entries() {
    let value = b"1001840C0000000150002002840D000000000250";
    for charset in CHARSETS {
        let amounts = message(&[(54, value)], charset)
            .additional_amounts()
            .unwrap();
        let entries: Vec<_> = amounts.iter().copied().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (
                entries[0].account_type,
                entries[0].amount_type,
                entries[0].currency
            ),
            (10, 1, 840)
        );
        assert_eq!(entries[0].amount_minor, 15000);
        assert_eq!((entries[1].account_type, entries[1].amount_type), (20, 2));
        assert_eq!(entries[1].amount_minor, -250);
    }
    let broken = message(&[(54, b"1001840C00000001500")], Charset::Ascii);
    assert_eq!(
        broken.additional_amounts(),
        None,
        "19 characters is not a whole entry"
    );
}

#[test]
fn replacement_amounts_with_blank_fees() {
    let value = b"000000001000000000000900                  ";
    let msg = message(&[(95, &value[..42])], Charset::Ascii);
    let amounts = msg.replacement_amounts().unwrap();
    assert_eq!(amounts.transaction_amount_minor, 1000);
    assert_eq!(amounts.settlement_amount_minor, 900);
    assert_eq!(
        (amounts.transaction_fee_minor, amounts.settlement_fee_minor),
        (0, 0)
    );
}

#[test]
fn track2_with_d_separator_gives_pan_and_expiry() {
    for charset in CHARSETS {
        let msg = message(&[(35, b"5500000000000004D2601201")], charset);
        let pan = msg.pan().unwrap();
        assert_eq!(pan.as_digits(), b"5500000000000004", "{charset:?}");
        assert!(pan.luhn_valid());
        let expiry = msg.expiry().unwrap();
        assert_eq!((expiry.year, expiry.month), (26, 1));
    }
}

#[test]
fn currency_codes_are_reported_as_sent() {
    for charset in CHARSETS {
        let msg = message(&[(49, b"978"), (50, b"eur"), (51, b"9X9")], charset);
        assert_eq!(
            msg.currency_transaction(),
            Some(CurrencyCode::Numeric(978)),
            "{charset:?}"
        );
        assert_eq!(
            msg.currency_settlement(),
            Some(CurrencyCode::Alpha(*b"EUR"))
        );
        assert_eq!(
            msg.currency_cardholder_billing(),
            Some(CurrencyCode::Unreadable),
            "present, so never None"
        );
        assert_eq!(
            msg.currency_transaction().and_then(CurrencyCode::numeric),
            Some(978)
        );
        assert_eq!(
            msg.currency_settlement().and_then(CurrencyCode::numeric),
            None
        );
        let absent = message(&[(11, b"000001")], charset);
        assert_eq!(absent.currency_transaction(), None);
    }
}

#[test]
fn views_refuse_values_they_cannot_represent() {
    let msg = message(
        &[(2, b"41111111111"), (49, b"USD"), (14, b"2913")],
        Charset::Ascii,
    );
    assert_eq!(msg.pan(), None, "11 digits is too short for a PAN");
    // DE49 is `an 3`: an alphabetic code is reported as such, never as absent.
    assert_eq!(
        msg.currency_transaction(),
        Some(CurrencyCode::Alpha(*b"USD"))
    );
    // The view reports what is there; checking that month 13 is invalid is the caller's job.
    let expiry = msg.expiry().unwrap();
    assert_eq!((expiry.year, expiry.month), (29, 13));
    let empty = message(&[], Charset::Ascii);
    assert_eq!(empty.stan(), None);
    assert_eq!(empty.fields().count(), 0);
}

/// A message decoded into the box of an earlier one (the connection's pool) reads only its
/// own fields: none of the earlier message's, whatever it had; a body that fails to decode
/// leaves it empty.
#[test]
fn decode_into_a_used_message_keeps_nothing_of_it() {
    let format = WireFormat::default();
    let mut builder = MessageBuilder::new(Mti::new(100));
    builder
        .set_text(2, b"4242424242424242")
        .set_text(3, b"000000")
        .set_text(4, b"000000001250")
        .set_text(43, &[b'A'; 40])
        .set_text(128, b"00000000");
    let mut out = BytesMut::new();
    builder.encode(&format, &mut out).unwrap();
    let big = out.split().freeze();
    let mut builder = MessageBuilder::new(Mti::new(800));
    builder.set_text(11, b"000123").set_text(70, b"301");
    builder.encode(&format, &mut out).unwrap();
    let small = out.split().freeze();

    let mut message = Message::decode_boxed(big.clone(), &format).unwrap();
    message.decode_into(small.clone(), &format).unwrap();
    assert_eq!(message.mti(), Mti::new(800));
    assert_eq!(message.fields().collect::<Vec<_>>(), [11, 70]);
    assert_eq!(
        (message.raw(11), message.raw(70)),
        (Some(&b"000123"[..]), Some(&b"301"[..]))
    );
    for field in [2, 3, 4, 43, 128] {
        assert_eq!(
            (message.has(field), message.raw(field)),
            (false, None),
            "DE{field}"
        );
    }
    assert_eq!(message.body(), &small);

    assert!(message.decode_into(big.slice(..10), &format).is_err());
    assert_eq!(message.fields().count(), 0);
    assert!(message.body().is_empty());
    message.decode_into(big.clone(), &format).unwrap();
    assert_eq!(message.raw(4), Some(&b"000000001250"[..]));
    assert_eq!(message.fields().collect::<Vec<_>>(), [2, 3, 4, 43, 128]);
}
