//! Framing of ISO 8583 messages on a TCP stream: length header, optional TPDU, body.
//!
//! Wire layout: `[length header][TPDU, 5 bytes, if configured][message body]`. The header
//! (2 or 4 bytes, binary big-endian or ASCII digits) counts the bytes after it. The length is
//! checked against `frame_len_max` before any buffer space is reserved. A zero length is a
//! keepalive: it yields a `Frame` with an empty body and no TPDU.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::error::FrameError;
use super::format::{LengthHeader, WireFormat};

/// Default largest frame (bytes after the length header) a listener accepts.
pub const FRAME_LEN_MAX_DEFAULT: usize = 8192;
/// Bytes of a TPDU: id (1), destination address (2), source address (2).
pub const TPDU_LEN: usize = 5;

/// One framed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub tpdu: Option<[u8; TPDU_LEN]>,
    pub body: Bytes,
}

/// A request's TPDU as written on its response: destination and source exchanged.
pub fn swap_tpdu(tpdu: [u8; TPDU_LEN]) -> [u8; TPDU_LEN] {
    [tpdu[0], tpdu[3], tpdu[4], tpdu[1], tpdu[2]]
}

/// `Decoder`/`Encoder` of frames for one listener.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    header: LengthHeader,
    tpdu: bool,
    frame_len_max: usize,
}

impl FrameCodec {
    /// `frame_len_max` bounds the bytes after the header; it is capped at what the header
    /// can express.
    pub fn new(format: &WireFormat, frame_len_max: usize) -> Self {
        let frame_len_max = frame_len_max.min(format.header.representable_len_max());
        FrameCodec {
            header: format.header,
            tpdu: format.tpdu,
            frame_len_max,
        }
    }

    pub fn frame_len_max(&self) -> usize {
        self.frame_len_max
    }

    /// Writes header (+ swapped tpdu) then lets `body` append, then patches the length;
    /// errors if body exceeds frame_len_max. Used to encode responses without a copy.
    /// On error `dst` is restored to its previous length.
    pub fn write_frame<E>(
        &self,
        tpdu: Option<[u8; TPDU_LEN]>,
        dst: &mut BytesMut,
        body: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<FrameError>,
    {
        self.write_with(tpdu.map(swap_tpdu), dst, body)
    }

    fn write_with<E>(
        &self,
        tpdu: Option<[u8; TPDU_LEN]>,
        dst: &mut BytesMut,
        body: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<FrameError>,
    {
        let start = dst.len();
        let header_len = self.header.header_len();
        let result = self
            .write_tpdu(tpdu, header_len, dst)
            .map_err(E::from)
            .and_then(|()| {
                body(dst)?;
                let len = dst.len() - start - header_len;
                if len > self.frame_len_max {
                    return Err(FrameError::FrameTooLong {
                        len,
                        max: self.frame_len_max,
                    }
                    .into());
                }
                self.patch_header(&mut dst[start..start + header_len], len);
                Ok(())
            });
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    fn write_tpdu(
        &self,
        tpdu: Option<[u8; TPDU_LEN]>,
        header_len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        dst.put_bytes(0, header_len);
        match (self.tpdu, tpdu) {
            (true, Some(tpdu)) => dst.extend_from_slice(&tpdu),
            (true, None) => return Err(FrameError::MissingTpdu),
            (false, Some(_)) => return Err(FrameError::UnexpectedTpdu),
            (false, None) => {}
        }
        Ok(())
    }

    fn patch_header(&self, header: &mut [u8], len: usize) {
        assert!(len <= self.header.representable_len_max());
        match self.header {
            LengthHeader::Binary2 => header.copy_from_slice(&(len as u16).to_be_bytes()),
            LengthHeader::Binary4 => header.copy_from_slice(&(len as u32).to_be_bytes()),
            LengthHeader::Ascii2 | LengthHeader::Ascii4 => {
                let mut rest = len;
                for slot in header.iter_mut().rev() {
                    *slot = b'0' + (rest % 10) as u8;
                    rest /= 10;
                }
            }
        }
    }

    fn read_header(&self, src: &[u8]) -> Result<usize, FrameError> {
        match self.header {
            LengthHeader::Binary2 => Ok(u16::from_be_bytes([src[0], src[1]]) as usize),
            LengthHeader::Binary4 => {
                Ok(u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize)
            }
            LengthHeader::Ascii2 | LengthHeader::Ascii4 => {
                src.iter().try_fold(0usize, |acc, &c| {
                    if c.is_ascii_digit() {
                        Ok(acc * 10 + (c - b'0') as usize)
                    } else {
                        Err(FrameError::BadLengthHeader)
                    }
                })
            }
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let header_len = self.header.header_len();
        if src.len() < header_len {
            return Ok(None);
        }
        let len = self.read_header(&src[..header_len])?;
        if len > self.frame_len_max {
            return Err(FrameError::FrameTooLong {
                len,
                max: self.frame_len_max,
            });
        }
        if src.len() < header_len + len {
            src.reserve(header_len + len - src.len());
            return Ok(None);
        }
        src.advance(header_len);
        let mut frame = src.split_to(len);
        if len == 0 {
            return Ok(Some(Frame {
                tpdu: None,
                body: Bytes::new(),
            }));
        }
        let tpdu = if self.tpdu {
            if len < TPDU_LEN {
                return Err(FrameError::TruncatedTpdu { len });
            }
            let mut tpdu = [0u8; TPDU_LEN];
            tpdu.copy_from_slice(&frame[..TPDU_LEN]);
            frame.advance(TPDU_LEN);
            Some(tpdu)
        } else {
            None
        };
        Ok(Some(Frame {
            tpdu,
            body: frame.freeze(),
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::TruncatedFrame { have: src.len() }),
        }
    }
}

/// Writes the frame's TPDU as given (not swapped): this is the sender's side.
impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        if frame.body.is_empty() {
            // Keepalive: a bare zero length, never a TPDU.
            let start = dst.len();
            dst.put_bytes(0, self.header.header_len());
            self.patch_header(&mut dst[start..], 0);
            return Ok(());
        }
        self.write_with(
            frame.tpdu,
            dst,
            |out: &mut BytesMut| -> Result<(), FrameError> {
                out.extend_from_slice(&frame.body);
                Ok(())
            },
        )
    }
}
