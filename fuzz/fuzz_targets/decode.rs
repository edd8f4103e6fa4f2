//! Fuzz target: frame decoding then message decoding, in every wire format.
//!
//! The first input byte picks the format (header, TPDU, bitmap, charset); the rest is the
//! byte stream. No input may panic; a message that decodes must re-encode (copying every
//! field) to exactly its body, its typed views must not panic either, and the boxed decode
//! must agree with the plain one.
//!
//! Run (stable toolchain): `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode --
//! -max_total_time=600`. Seeds in `corpus/decode/seed-*` are the golden vectors, framed.
#![no_main]

use authswitch::iso8583::{
    peek_mti_stan, BitmapEncoding, Charset, FrameCodec, LengthHeader, Message, MessageBuilder,
    WireFormat,
};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// Frames decoded per input at most, so one input cannot loop long.
const FRAMES_PER_INPUT_MAX: usize = 64;

fn format_of(selector: u8) -> WireFormat {
    let header = match selector & 0b11 {
        0 => LengthHeader::Binary2,
        1 => LengthHeader::Binary4,
        2 => LengthHeader::Ascii2,
        _ => LengthHeader::Ascii4,
    };
    let charset = match (selector >> 3) % 3 {
        0 => Charset::Ascii,
        1 => Charset::Bcd,
        _ => Charset::Ebcdic,
    };
    let bitmap = if selector & 0b100_0000 != 0 {
        BitmapEncoding::Hex
    } else {
        BitmapEncoding::Binary
    };
    WireFormat {
        header,
        tpdu: selector & 0b100 != 0,
        bitmap,
        charset,
    }
}

fn check_message(body: bytes::Bytes, format: &WireFormat) {
    let _ = peek_mti_stan(&body, format);
    let decoded = Message::decode(body.clone(), format);
    // The server's boxed decode reads exactly what the plain one reads.
    match (&decoded, Message::decode_boxed(body.clone(), format)) {
        (Ok(plain), Ok(boxed)) => {
            assert_eq!(plain.mti(), boxed.mti());
            assert!(plain.fields().eq(boxed.fields()));
            assert!(plain.fields().all(|f| plain.raw(f) == boxed.raw(f)));
        }
        (Err(plain), Err(boxed)) => assert_eq!(*plain, boxed),
        _ => panic!("decode and decode_boxed disagree on whether the body decodes"),
    }
    let Ok(msg) = decoded else {
        return;
    };
    let _ = (
        msg.pan(),
        msg.expiry(),
        msg.card_acceptor(),
        msg.original_data(),
    );
    let _ = (
        msg.replacement_amounts(),
        msg.additional_amounts(),
        msg.processing_code(),
    );
    let _ = (
        msg.transmission_time(),
        msg.local_time(),
        msg.local_date(),
        msg.stan(),
    );
    let mut builder = MessageBuilder::new(msg.mti());
    for field in msg.fields() {
        builder.copy_from(&msg, field);
    }
    let mut out = BytesMut::new();
    builder
        .encode(format, &mut out)
        .expect("a decoded message re-encodes");
    // Lowercase hex bitmaps are accepted but written uppercase; compare only canonical input.
    if format.bitmap == BitmapEncoding::Binary {
        assert_eq!(&out[..], &body[..], "decode then encode is byte-exact");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let format = format_of(selector);
    check_message(bytes::Bytes::copy_from_slice(stream), &format);
    let mut codec = FrameCodec::new(&format, 4096);
    let mut buf = BytesMut::from(stream);
    for _ in 0..FRAMES_PER_INPUT_MAX {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => check_message(frame.body, &format),
            Ok(None) | Err(_) => break,
        }
    }
});
