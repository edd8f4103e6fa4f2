//! A decoded ISO 8583 message: the frame body plus the offset of every field, no copy.
//!
//! Decoding walks the bitmap in field order, reads each field's length (fixed, or from its
//! LL/LLL prefix), checks it against the dictionary's maximum and the bytes left, validates
//! every character for the field's type, and records `(start, wire length, logical length)`.
//! Nothing is allocated: the spans live in a fixed array inside `Message`.

use bytes::Bytes;

use super::dictionary::{spec, FieldSpec, LengthKind, FIELD_LEN_MAX, FIELD_NUMBER_MAX};
use super::encoding::wire_len;
use super::encoding::{check_value, ebcdic_to_ascii, prefix_len, read_prefix, to_logical};
use super::error::DecodeError;
use super::format::{BitmapEncoding, Charset, WireFormat};
use super::mti::Mti;

/// Upper bound on a message body; above the largest valid message (MTI, two bitmaps and 127
/// fields of 999 bytes with prefixes), so it only rejects garbage.
pub const MESSAGE_LEN_MAX: usize = 131_072;

/// Where a field's value sits in the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    /// Bytes on the wire, prefix excluded.
    pub wire_len: u16,
    /// Digits or characters (bytes for `b`), what the length prefix counts.
    pub logical_len: u16,
}

/// A validated message. Field values are slices of `body`.
#[derive(Clone)]
pub struct Message {
    body: Bytes,
    charset: Charset,
    mti: Mti,
    /// Bit for field `f` (1..=128) is `1 << (128 - f)`: field 1 is the most significant bit.
    bitmap: u128,
    spans: [Span; FIELD_NUMBER_MAX as usize + 1],
}

/// Reads the MTI and bitmaps of `body`, then every field the bitmap names, recording each
/// one's span in `spans` (fields absent from the bitmap are left as they are). Validates
/// lengths, that nothing follows the last field, and with `CHECK_VALUES` the characters of
/// every value.
fn decode_spans<const CHECK_VALUES: bool>(
    body: &[u8],
    format: &WireFormat,
    spans: &mut [Span; FIELD_NUMBER_MAX as usize + 1],
) -> Result<(Mti, u128), DecodeError> {
    if body.len() > MESSAGE_LEN_MAX {
        return Err(DecodeError::MessageTooLong {
            len: body.len(),
            max: MESSAGE_LEN_MAX,
        });
    }
    let charset = format.charset;
    let (mti, mut cursor) = read_mti(body, charset)?;
    let (bitmap, after_bitmap) = read_bitmaps(body, cursor, format)?;
    cursor = after_bitmap;
    for field in FieldIter::new(bitmap) {
        let spec = spec(field);
        let (span, next) = read_field(spec, body, cursor, charset)?;
        if CHECK_VALUES {
            let wire = &body[span.start as usize..next];
            check_value(spec, charset, wire, span.logical_len as usize).map_err(
                |(fault, position)| DecodeError::BadValue {
                    field,
                    fault,
                    position,
                },
            )?;
        }
        spans[field as usize] = span;
        cursor = next;
    }
    if cursor != body.len() {
        return Err(DecodeError::TrailingBytes {
            count: body.len() - cursor,
        });
    }
    Ok((mti, bitmap))
}

pub(crate) fn field_bit(field: u8) -> u128 {
    assert!((1..=FIELD_NUMBER_MAX).contains(&field));
    1u128 << (128 - field as u32)
}

/// Present fields of a bitmap in ascending order, DE1 (the secondary bitmap) excluded. Walks
/// the bitmap as its two 64-bit halves: a shift of a `u128` by a variable amount is a
/// sequence of instructions, of a `u64` one.
#[derive(Clone, Debug)]
pub struct FieldIter {
    /// Fields 1-64 (field 1 is the most significant bit), then 65-128.
    halves: [u64; 2],
}

impl FieldIter {
    pub(crate) fn new(bitmap: u128) -> FieldIter {
        let bitmap = bitmap & !field_bit(1);
        FieldIter {
            halves: [(bitmap >> 64) as u64, bitmap as u64],
        }
    }
}

impl Iterator for FieldIter {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (half, base) = if self.halves[0] != 0 {
            (&mut self.halves[0], 1)
        } else if self.halves[1] != 0 {
            (&mut self.halves[1], 65)
        } else {
            return None;
        };
        let skip = half.leading_zeros();
        *half &= !((1u64 << 63) >> skip);
        Some(base + skip as u8)
    }
}

impl Message {
    /// Decodes and validates a whole message body (MTI onwards).
    pub fn decode(body: Bytes, format: &WireFormat) -> Result<Message, DecodeError> {
        Self::decode_checking::<true>(body, format)
    }

    /// `decode` without the character checks of the values: the MTI, the bitmaps, every
    /// field's length and place, and that nothing follows the last field are checked as
    /// `decode` checks them, but not what each value is made of. For a reader that counts and
    /// matches answers and reads only a few fields, through views that parse what they read
    /// (loadtest, which samples its answers with `decode`); never for what the switch acts on,
    /// nor for a message whose fields `MessageBuilder::copy_from` is to echo (it copies them
    /// as checked values, without checking them again).
    pub fn decode_structure(body: Bytes, format: &WireFormat) -> Result<Message, DecodeError> {
        Self::decode_checking::<false>(body, format)
    }

    /// Inlined into both: it returns a message of about 1 KiB by value, which a call would
    /// copy once more.
    #[inline(always)]
    fn decode_checking<const CHECK_VALUES: bool>(
        body: Bytes,
        format: &WireFormat,
    ) -> Result<Message, DecodeError> {
        let mut spans = [Span::default(); FIELD_NUMBER_MAX as usize + 1];
        let (mti, bitmap) = decode_spans::<CHECK_VALUES>(&body, format, &mut spans)?;
        Ok(Message {
            body,
            charset: format.charset,
            mti,
            bitmap,
            spans,
        })
    }

    /// `decode` into a heap allocation, for a message that travels between threads: the
    /// spans (about 1 KiB) are written where they stay instead of on the stack and then
    /// copied into a `Box` (one memcpy of the whole message per request).
    pub fn decode_boxed(body: Bytes, format: &WireFormat) -> Result<Box<Message>, DecodeError> {
        let mut message = Box::new(Message {
            body: Bytes::new(),
            charset: format.charset,
            // Placeholders until the MTI and bitmap are read.
            mti: Mti::AUTHORIZATION_REQUEST,
            bitmap: 0,
            spans: [Span::default(); FIELD_NUMBER_MAX as usize + 1],
        });
        message.decode_into(body, format)?;
        Ok(message)
    }

    /// Decodes `body` into this message, whatever it held: a message's allocation reused
    /// for the next (`server::connection`'s pool). Only the spans of the fields present are
    /// written; the others are never read, since every read checks the bitmap. On an error
    /// the message is left empty (no field, no body).
    pub fn decode_into(&mut self, body: Bytes, format: &WireFormat) -> Result<(), DecodeError> {
        self.clear();
        self.charset = format.charset;
        let (mti, bitmap) = decode_spans::<true>(&body, format, &mut self.spans)?;
        self.body = body;
        self.mti = mti;
        self.bitmap = bitmap;
        Ok(())
    }

    /// Drops the body (the buffer it shares with the connection's reads) and every field.
    pub fn clear(&mut self) {
        self.body = Bytes::new();
        self.bitmap = 0;
    }

    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Charset the message was decoded with.
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// The frame body this message was decoded from.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// True when field `field` is present; `has(1)` tells whether a secondary bitmap is.
    pub fn has(&self, field: u8) -> bool {
        (1..=FIELD_NUMBER_MAX).contains(&field) && self.bitmap & field_bit(field) != 0
    }

    /// Present data elements in ascending order (2..=128; DE1 is the bitmap, not listed).
    pub fn fields(&self) -> impl Iterator<Item = u8> + '_ {
        FieldIter::new(self.bitmap)
    }

    /// Value bytes as on the wire (prefix excluded), in the message's charset.
    pub fn raw(&self, field: u8) -> Option<&[u8]> {
        let span = self.span(field)?;
        let start = span.start as usize;
        Some(&self.body[start..start + span.wire_len as usize])
    }

    /// The field as it was on the wire: its length prefix (none for a fixed field) followed by
    /// `raw(field)`, and the prefix's length. A prefix is the value's length in the message's
    /// charset, each length having one form, so the same field re-encoded in the same
    /// charset is these bytes.
    pub fn raw_with_prefix(&self, field: u8) -> Option<(&[u8], usize)> {
        let span = self.span(field)?;
        let prefix = prefix_len(spec(field), self.charset);
        let start = span.start as usize;
        Some((
            &self.body[start - prefix..start + span.wire_len as usize],
            prefix,
        ))
    }

    /// Bytes of `raw(field)` as a zero-copy `Bytes` handle.
    pub fn raw_bytes(&self, field: u8) -> Option<Bytes> {
        let span = self.span(field)?;
        let start = span.start as usize;
        Some(self.body.slice(start..start + span.wire_len as usize))
    }

    /// The value's logical form (ASCII text or digits; raw bytes for `b` fields) whatever
    /// the charset, written into `out`.
    pub fn value<'b>(&self, field: u8, out: &'b mut [u8; FIELD_LEN_MAX]) -> Option<&'b [u8]> {
        let span = self.span(field)?;
        let wire = self.raw(field)?;
        let n = to_logical(
            spec(field),
            self.charset,
            wire,
            span.logical_len as usize,
            out,
        );
        Some(&out[..n])
    }

    /// Length the field's prefix counts (digits for `n`/`z`, characters, or bytes).
    pub fn logical_len(&self, field: u8) -> Option<usize> {
        Some(self.span(field)?.logical_len as usize)
    }

    pub(crate) fn span(&self, field: u8) -> Option<Span> {
        if field < 2 || !self.has(field) {
            return None;
        }
        Some(self.spans[field as usize])
    }
}

impl std::fmt::Debug for Message {
    /// Lists MTI and field numbers only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("mti", &self.mti)
            .field("charset", &self.charset)
            .field("fields", &FieldList(self.bitmap))
            .finish()
    }
}

struct FieldList(u128);

impl std::fmt::Debug for FieldList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(FieldIter::new(self.0)).finish()
    }
}

/// Wire bytes of the MTI in `charset`.
pub(crate) fn mti_len(charset: Charset) -> usize {
    if charset == Charset::Bcd {
        2
    } else {
        4
    }
}

pub(crate) fn read_mti(body: &[u8], charset: Charset) -> Result<(Mti, usize), DecodeError> {
    let need = mti_len(charset);
    let wire = body.get(..need).ok_or(DecodeError::TruncatedMti {
        need,
        have: body.len(),
    })?;
    let mut value: u16 = 0;
    let mut push = |digit: u8| -> Result<(), DecodeError> {
        if digit > 9 {
            return Err(DecodeError::BadMti);
        }
        value = value * 10 + digit as u16;
        Ok(())
    };
    for &b in wire {
        match charset {
            Charset::Bcd => {
                push(b >> 4)?;
                push(b & 0x0F)?;
            }
            Charset::Ascii => push(b.wrapping_sub(b'0'))?,
            Charset::Ebcdic => push(b.wrapping_sub(0xF0))?,
        }
    }
    Ok((Mti::new(value), need))
}

/// Reads the primary bitmap at `cursor`, and the secondary one if DE1 is set.
pub(crate) fn read_bitmaps(
    body: &[u8],
    cursor: usize,
    format: &WireFormat,
) -> Result<(u128, usize), DecodeError> {
    let size = match format.bitmap {
        BitmapEncoding::Binary => 8,
        BitmapEncoding::Hex => 16,
    };
    let have = body.len().saturating_sub(cursor);
    let primary = body
        .get(cursor..cursor + size)
        .ok_or(DecodeError::TruncatedBitmap { need: size, have })?;
    let primary = read_bitmap(primary, format, false)?;
    let mut bitmap = (primary as u128) << 64;
    let mut next = cursor + size;
    if bitmap & field_bit(1) != 0 {
        let have = body.len() - next;
        let secondary = body
            .get(next..next + size)
            .ok_or(DecodeError::SecondaryBitmapMissing { need: size, have })?;
        let secondary = read_bitmap(secondary, format, true)?;
        if secondary == 0 {
            return Err(DecodeError::EmptySecondaryBitmap);
        }
        bitmap |= secondary as u128;
        next += size;
    }
    if bitmap & field_bit(65) != 0 {
        return Err(DecodeError::TertiaryBitmap);
    }
    Ok((bitmap, next))
}

fn read_bitmap(wire: &[u8], format: &WireFormat, secondary: bool) -> Result<u64, DecodeError> {
    if format.bitmap == BitmapEncoding::Binary {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(wire);
        return Ok(u64::from_be_bytes(bytes));
    }
    let mut value: u64 = 0;
    for &b in wire {
        let c = match format.charset {
            Charset::Ebcdic => ebcdic_to_ascii(b).unwrap_or(0),
            Charset::Ascii | Charset::Bcd => b,
        };
        let nibble = (c as char)
            .to_digit(16)
            .ok_or(DecodeError::BadBitmap { secondary })?;
        value = value << 4 | nibble as u64;
    }
    Ok(value)
}

/// Reads the extent of one field at `cursor`: returns its span and the offset after it.
/// Checks the prefix and the length, not the characters.
pub(crate) fn read_field(
    spec: &FieldSpec,
    body: &[u8],
    cursor: usize,
    charset: Charset,
) -> Result<(Span, usize), DecodeError> {
    let field = spec.number;
    let prefix_bytes = prefix_len(spec, charset);
    let logical_len = if spec.length == LengthKind::Fixed {
        spec.len_max as usize
    } else {
        let prefix = body
            .get(cursor..cursor + prefix_bytes)
            .ok_or(DecodeError::TruncatedPrefix { field })?;
        read_prefix(prefix, charset).ok_or(DecodeError::BadLengthPrefix { field })?
    };
    if logical_len > spec.len_max as usize {
        let max = spec.len_max as usize;
        return Err(DecodeError::FieldTooLong {
            field,
            len: logical_len,
            max,
        });
    }
    let start = cursor + prefix_bytes;
    let need = wire_len(spec, charset, logical_len);
    let have = body.len() - start;
    if need > have {
        return Err(DecodeError::TruncatedField { field, need, have });
    }
    let span = Span {
        start: start as u32,
        wire_len: need as u16,
        logical_len: logical_len as u16,
    };
    Ok((span, start + need))
}

/// Best effort for format-error responses: MTI and STAN of a body that failed to decode.
/// Walks fields 2..=10 by their lengths only; `None` if DE11 cannot be reached or read.
pub fn peek_mti_stan(body: &[u8], format: &WireFormat) -> Option<(Mti, u32)> {
    let charset = format.charset;
    let (mti, cursor) = read_mti(body, charset).ok()?;
    let (bitmap, mut cursor) = read_bitmaps(body, cursor, format).ok()?;
    if bitmap & field_bit(11) == 0 {
        return None;
    }
    for field in FieldIter::new(bitmap).take_while(|&f| f <= 11) {
        let (span, next) = read_field(spec(field), body, cursor, charset).ok()?;
        if field == 11 {
            let wire = &body[span.start as usize..next];
            check_value(spec(11), charset, wire, 6).ok()?;
            let mut digits = [0u8; 6];
            to_logical(spec(11), charset, wire, 6, &mut digits);
            return Some((mti, super::views::parse_digits(&digits)? as u32));
        }
        cursor = next;
    }
    None
}
