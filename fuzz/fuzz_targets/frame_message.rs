//! Fuzz target: the frame codec and the ISO 8583 message decoder on arbitrary bytes, in every
//! wire format. No input may panic; every frame body is within the limit; a decoded message
//! re-reads its own fields without error.
#![no_main]

use authswitch::iso8583::{
    peek_mti_stan, BitmapEncoding, Charset, FrameCodec, LengthHeader, Message, WireFormat,
};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

const FRAME_LEN_MAX: usize = 8192;
/// Frames decoded from one input at most (each consumes at least a header).
const FRAMES_MAX: usize = 4096;

fn format_from(pick: u8) -> WireFormat {
    WireFormat {
        header: match pick & 3 {
            0 => LengthHeader::Binary2,
            1 => LengthHeader::Binary4,
            2 => LengthHeader::Ascii2,
            _ => LengthHeader::Ascii4,
        },
        tpdu: pick & 4 != 0,
        bitmap: if pick & 8 != 0 {
            BitmapEncoding::Hex
        } else {
            BitmapEncoding::Binary
        },
        charset: match (pick >> 4) % 3 {
            0 => Charset::Ascii,
            1 => Charset::Bcd,
            _ => Charset::Ebcdic,
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let format = format_from(pick);
    let mut codec = FrameCodec::new(&format, FRAME_LEN_MAX);
    let mut buf = BytesMut::from(rest);
    for _ in 0..FRAMES_MAX {
        let frame = match codec.decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => break,
        };
        assert!(frame.body.len() <= FRAME_LEN_MAX);
        let _ = peek_mti_stan(&frame.body, &format);
        if let Ok(message) = Message::decode(frame.body.clone(), &format) {
            let _ = message.stan();
            for n in 2..=128u8 {
                let _ = message.raw(n);
            }
        }
    }
});
