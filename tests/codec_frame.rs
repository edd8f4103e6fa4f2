//! Framing: each length header, TPDU handling and swapping, limits checked before
//! reserving, partial frames, keepalives, and write_frame's length patching.

use authswitch::iso8583::{
    EncodeError, Frame, FrameCodec, FrameError, LengthHeader, MessageBuilder, Mti, WireFormat,
    FRAME_LEN_MAX_DEFAULT,
};
use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

fn codec(header: LengthHeader, tpdu: bool) -> FrameCodec {
    FrameCodec::new(
        &WireFormat {
            header,
            tpdu,
            ..WireFormat::default()
        },
        FRAME_LEN_MAX_DEFAULT,
    )
}

#[test]
fn each_header_kind_round_trips() {
    let cases: [(LengthHeader, &[u8]); 4] = [
        (LengthHeader::Binary2, b"\x00\x05hello"),
        (LengthHeader::Binary4, b"\x00\x00\x00\x05hello"),
        (LengthHeader::Ascii2, b"05hello"),
        (LengthHeader::Ascii4, b"0005hello"),
    ];
    for (header, wire) in cases {
        let mut codec = codec(header, false);
        let mut out = BytesMut::new();
        let frame = Frame {
            tpdu: None,
            body: Bytes::from_static(b"hello"),
        };
        codec.encode(frame.clone(), &mut out).unwrap();
        assert_eq!(&out[..], wire, "{header:?}");
        assert_eq!(codec.decode(&mut out).unwrap(), Some(frame), "{header:?}");
        assert!(out.is_empty());
    }
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let mut codec = codec(LengthHeader::Binary2, false);
    let mut buf = BytesMut::from(&b"\x00"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"\x04ab");
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert!(
        buf.capacity() >= 6,
        "room for the whole frame is reserved once the length is known"
    );
    buf.extend_from_slice(b"cd\x00\x01");
    let frame = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(&frame.body[..], b"abcd");
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert_eq!(&buf[..], b"\x00\x01");
    assert!(matches!(
        codec.decode_eof(&mut buf),
        Err(FrameError::TruncatedFrame { have: 2 })
    ));
}

#[test]
fn length_is_checked_before_reserving() {
    let mut codec = FrameCodec::new(&WireFormat::default(), 100);
    let mut buf = BytesMut::from(&b"\xFF\xFF"[..]);
    let capacity = buf.capacity();
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        FrameError::FrameTooLong {
            len: 65535,
            max: 100
        }
    ));
    assert_eq!(buf.capacity(), capacity);
    let mut codec = codec_with_max(LengthHeader::Binary4, 8192);
    let mut buf = BytesMut::from(&b"\x7F\xFF\xFF\xFF"[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::FrameTooLong {
            len: 2147483647,
            ..
        })
    ));
}

fn codec_with_max(header: LengthHeader, max: usize) -> FrameCodec {
    FrameCodec::new(
        &WireFormat {
            header,
            ..WireFormat::default()
        },
        max,
    )
}

#[test]
fn ascii_header_must_be_digits() {
    let mut codec = codec(LengthHeader::Ascii4, false);
    let mut buf = BytesMut::from(&b"00x5hello"[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::BadLengthHeader)
    ));
}

#[test]
fn zero_length_frame_is_an_empty_keepalive() {
    let mut codec = codec(LengthHeader::Binary2, true);
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x03abc"[..]);
    let keepalive = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        keepalive,
        Frame {
            tpdu: None,
            body: Bytes::new()
        }
    );
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::TruncatedTpdu { len: 3 })
    ));
    let mut out = BytesMut::new();
    codec
        .encode(
            Frame {
                tpdu: None,
                body: Bytes::new(),
            },
            &mut out,
        )
        .unwrap();
    assert_eq!(&out[..], b"\x00\x00");
}

#[test]
fn tpdu_is_read_and_swapped_on_the_response() {
    let mut codec = codec(LengthHeader::Binary2, true);
    let mut buf = BytesMut::from(&b"\x00\x0A\x60\x00\x01\x00\x02hello"[..]);
    let frame = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.tpdu, Some([0x60, 0x00, 0x01, 0x00, 0x02]));
    assert_eq!(&frame.body[..], b"hello");
    let mut out = BytesMut::new();
    codec
        .write_frame(frame.tpdu, &mut out, |dst| -> Result<(), FrameError> {
            dst.extend_from_slice(b"world!");
            Ok(())
        })
        .unwrap();
    assert_eq!(&out[..], b"\x00\x0B\x60\x00\x02\x00\x01world!");
    let err = codec.write_frame(None, &mut out, |_| -> Result<(), FrameError> { Ok(()) });
    assert!(matches!(err, Err(FrameError::MissingTpdu)));
    assert_eq!(out.len(), 13, "failed writes leave the buffer unchanged");
}

#[test]
fn write_frame_encodes_a_response_in_place() {
    let codec = codec(LengthHeader::Ascii4, false);
    let mut out = BytesMut::from(&b"prev"[..]);
    let mut builder = MessageBuilder::new(Mti::new(810));
    builder
        .set_number(11, 7)
        .set_text(39, b"00")
        .set_number(70, 301);
    codec
        .write_frame(None, &mut out, |dst| {
            builder.encode(&WireFormat::default(), dst)
        })
        .unwrap();
    let mut expected = b"prev0031".to_vec();
    expected.extend_from_slice(b"0810");
    expected.extend_from_slice(&[0x80, 0x20, 0, 0, 0x02, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(b"00000700301");
    assert_eq!(&out[..], &expected[..]);
}

#[test]
fn write_frame_refuses_bodies_over_the_limit() {
    let codec = codec_with_max(LengthHeader::Binary2, 10);
    let mut out = BytesMut::new();
    let err = codec
        .write_frame(None, &mut out, |dst| -> Result<(), EncodeError> {
            dst.extend_from_slice(&[0u8; 11]);
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(
        err,
        EncodeError::Frame(FrameError::FrameTooLong { len: 11, max: 10 })
    ));
    assert!(out.is_empty());
    // An ASCII2 header cannot express more than 99 bytes whatever the configured maximum.
    assert_eq!(
        codec_with_max(LengthHeader::Ascii2, 8192).frame_len_max(),
        99
    );
}
