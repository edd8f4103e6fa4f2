//! Building and encoding a message without heap allocation.
//!
//! The builder holds borrowed values (or numbers) in a fixed array indexed by field number;
//! `encode` validates each against the dictionary and appends MTI, bitmap(s) and fields to
//! the caller's buffer. On any error the buffer is restored to its length before the call.

use std::mem::MaybeUninit;

use bytes::{BufMut, BytesMut};

use super::dictionary::{spec, FieldSpec, FieldType, LengthKind, FIELD_LEN_MAX, FIELD_NUMBER_MAX};
use super::encoding::{ascii_to_ebcdic, check_ascii, to_logical, write_prefix, write_value};
use super::error::EncodeError;
use super::format::{BitmapEncoding, Charset, WireFormat};
use super::message::{field_bit, FieldIter, Message};
use super::mti::Mti;

/// Digits of the largest `u64`.
const U64_DIGITS_MAX: usize = 20;
/// Fixed numeric fields up to this length are padded in a small stack buffer.
const PADDED_NUMBER_LEN_MAX: usize = 64;

#[derive(Clone, Copy)]
enum Slot<'a> {
    /// Logical value: ASCII text or digits, raw bytes for `b`.
    Text(&'a [u8]),
    Number(u64),
    /// A field copied from a decoded message, already validated in `charset`: its length
    /// prefix (`prefix` bytes, none for a fixed field) and wire bytes.
    Wire {
        framed: &'a [u8],
        prefix: u8,
        logical_len: u16,
        charset: Charset,
    },
}

/// Collects field values for one message; nothing is allocated.
///
/// The slots are left uninitialized until set: `bitmap` says which hold a value. Zeroing all
/// 129 slots (3 KiB) for a response that sets a dozen cost more than encoding it.
pub struct MessageBuilder<'a> {
    mti: Mti,
    slots: [MaybeUninit<Slot<'a>>; FIELD_NUMBER_MAX as usize + 1],
    bitmap: u128,
    /// First field number that can never be set (0, 1, 65, >128), reported by `encode`.
    invalid_field: Option<u8>,
}

fn settable(field: u8) -> bool {
    (2..=FIELD_NUMBER_MAX).contains(&field) && field != 65
}

impl<'a> MessageBuilder<'a> {
    pub fn new(mti: Mti) -> Self {
        MessageBuilder {
            mti,
            slots: [const { MaybeUninit::uninit() }; FIELD_NUMBER_MAX as usize + 1],
            bitmap: 0,
            invalid_field: None,
        }
    }

    fn put(&mut self, field: u8, slot: Slot<'a>) -> &mut Self {
        if !settable(field) {
            self.invalid_field.get_or_insert(field);
            return self;
        }
        self.slots[field as usize] = MaybeUninit::new(slot);
        self.bitmap |= field_bit(field);
        self
    }

    /// Echoes `field` of `msg` exactly as received; does nothing if `msg` lacks it.
    pub fn copy_from(&mut self, msg: &'a Message, field: u8) -> &mut Self {
        let (Some((framed, prefix)), Some(logical_len)) =
            (msg.raw_with_prefix(field), msg.logical_len(field))
        else {
            return self;
        };
        let logical_len = logical_len as u16;
        self.put(
            field,
            Slot::Wire {
                framed,
                // At most 3 (`encoding::prefix_len`).
                prefix: prefix as u8,
                logical_len,
                charset: msg.charset(),
            },
        )
    }

    /// Sets a text value (ASCII; raw bytes for `b` fields).
    pub fn set_text(&mut self, field: u8, value: &'a [u8]) -> &mut Self {
        self.put(field, Slot::Text(value))
    }

    /// Sets a number in an `n`, `an` or `ans` field; zero-padded to a fixed field's length.
    pub fn set_number(&mut self, field: u8, value: u64) -> &mut Self {
        self.put(field, Slot::Number(value))
    }

    /// Removes a field.
    pub fn clear(&mut self, field: u8) -> &mut Self {
        if settable(field) {
            self.bitmap &= !field_bit(field);
        }
        self
    }

    pub fn has(&self, field: u8) -> bool {
        settable(field) && self.bitmap & field_bit(field) != 0
    }

    /// Appends the encoded message to `out`, validating every value against the dictionary.
    pub fn encode(&self, format: &WireFormat, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_into(format, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_into(&self, format: &WireFormat, out: &mut BytesMut) -> Result<(), EncodeError> {
        if let Some(field) = self.invalid_field {
            return Err(EncodeError::InvalidField { field });
        }
        write_mti(self.mti, format.charset, out);
        let mut bitmap = self.bitmap;
        if bitmap & (u64::MAX as u128) != 0 {
            bitmap |= field_bit(1);
        }
        write_bitmap((bitmap >> 64) as u64, format, out);
        if bitmap & field_bit(1) != 0 {
            write_bitmap(bitmap as u64, format, out);
        }
        for field in FieldIter::new(bitmap) {
            let spec = spec(field);
            assert!(self.bitmap & field_bit(field) != 0, "DE{field} not set");
            // SAFETY: a data field's bit is set in `self.bitmap` only by `put`, which writes its
            // slot first (checked just above); `FieldIter` never yields bit 1, the only bit
            // added here.
            let slot = unsafe { self.slots[field as usize].assume_init() };
            match slot {
                Slot::Text(value) => write_checked(spec, format.charset, value, out)?,
                Slot::Number(value) => write_number(spec, format.charset, value, out)?,
                Slot::Wire {
                    framed,
                    prefix,
                    logical_len,
                    charset,
                } => {
                    if charset == format.charset {
                        // Prefix and value as they came: the bytes re-encoding would write.
                        out.extend_from_slice(framed);
                    } else {
                        let wire = &framed[usize::from(prefix)..];
                        write_converted(spec, format.charset, wire, logical_len, charset, out);
                    }
                }
            }
        }
        Ok(())
    }
}

fn write_mti(mti: Mti, charset: Charset, out: &mut BytesMut) {
    let digits = mti.digits();
    match charset {
        Charset::Ascii => out.extend_from_slice(&digits),
        Charset::Ebcdic => out.extend(digits.iter().map(|&d| 0xF0 + (d - b'0'))),
        Charset::Bcd => {
            out.put_u8((digits[0] - b'0') << 4 | (digits[1] - b'0'));
            out.put_u8((digits[2] - b'0') << 4 | (digits[3] - b'0'));
        }
    }
}

fn write_bitmap(bits: u64, format: &WireFormat, out: &mut BytesMut) {
    if format.bitmap == BitmapEncoding::Binary {
        out.put_u64(bits);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for shift in (0..16).rev() {
        let c = HEX[(bits >> (shift * 4) & 0xF) as usize];
        let c = match format.charset {
            Charset::Ebcdic => ascii_to_ebcdic(c).unwrap_or(0),
            Charset::Ascii | Charset::Bcd => c,
        };
        out.put_u8(c);
    }
}

/// Validates a logical value for `spec`, then writes prefix and value.
fn write_checked(
    spec: &FieldSpec,
    charset: Charset,
    value: &[u8],
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let field = spec.number;
    let (len, max) = (value.len(), spec.len_max as usize);
    if spec.length == LengthKind::Fixed && len != max {
        return Err(EncodeError::WrongLength {
            field,
            len,
            expected: max,
        });
    }
    if len > max {
        return Err(EncodeError::FieldTooLong { field, len, max });
    }
    check_ascii(spec.field_type, value).map_err(|(fault, position)| EncodeError::BadValue {
        field,
        fault,
        position,
    })?;

    if charset == Charset::Ebcdic && spec.field_type != FieldType::Binary {
        // Only printable ASCII has a cp037 code; the types above already imply it.
        assert!(value.iter().all(|&c| ascii_to_ebcdic(c).is_some()));
    }
    write_prefix(spec, charset, len, out);
    write_value(spec, charset, value, out);
    Ok(())
}

fn write_number(
    spec: &FieldSpec,
    charset: Charset,
    value: u64,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let field = spec.number;
    // Digits are valid text too: currency codes (DE49-51, `an`) are set as numbers.
    let digits_allowed = matches!(
        spec.field_type,
        FieldType::Numeric | FieldType::AlphaNumeric | FieldType::AlphaNumericSpecial
    );
    if !digits_allowed {
        return Err(EncodeError::NotNumeric { field });
    }
    let mut digits = [b'0'; U64_DIGITS_MAX];
    let mut rest = value;
    let mut count = 0;
    while count == 0 || rest > 0 {
        digits[U64_DIGITS_MAX - 1 - count] = b'0' + (rest % 10) as u8;
        rest /= 10;
        count += 1;
    }
    let max = spec.len_max as usize;
    if count > max {
        return Err(EncodeError::NumberTooLarge {
            field,
            digits: count,
            max,
        });
    }
    if spec.length != LengthKind::Fixed {
        write_digits(spec, charset, &digits[U64_DIGITS_MAX - count..], out);
        return Ok(());
    }
    // Fixed fields are zero-padded; the longest (DE90, 42) exceeds u64 digits.
    if max <= PADDED_NUMBER_LEN_MAX {
        let mut padded = [b'0'; PADDED_NUMBER_LEN_MAX];
        let tail = max.min(U64_DIGITS_MAX);
        padded[max - tail..max].copy_from_slice(&digits[U64_DIGITS_MAX - tail..]);
        write_digits(spec, charset, &padded[..max], out);
        return Ok(());
    }
    let mut padded = [b'0'; FIELD_LEN_MAX];
    let tail = max.min(U64_DIGITS_MAX);
    padded[max - tail..max].copy_from_slice(&digits[U64_DIGITS_MAX - tail..]);
    write_digits(spec, charset, &padded[..max], out);
    Ok(())
}

/// Writes the digits `write_number` made, without validating them again: digits are valid in
/// every type it writes numbers to, and it has checked they fit (a fixed field gets exactly
/// its length). `write_checked` walked each of them once more, for a fifth of a generator's
/// request building.
fn write_digits(spec: &FieldSpec, charset: Charset, digits: &[u8], out: &mut BytesMut) {
    debug_assert!(check_ascii(spec.field_type, digits).is_ok());
    debug_assert!(
        digits.len() <= spec.len_max as usize
            && (spec.length != LengthKind::Fixed || digits.len() == spec.len_max as usize)
    );
    write_prefix(spec, charset, digits.len(), out);
    write_value(spec, charset, digits, out);
}

/// Writes a value copied from a message in another charset, through its logical form.
fn write_converted(
    spec: &FieldSpec,
    charset: Charset,
    wire: &[u8],
    logical_len: u16,
    source: Charset,
    out: &mut BytesMut,
) {
    let logical_len = logical_len as usize;
    write_prefix(spec, charset, logical_len, out);
    let mut logical = [0u8; FIELD_LEN_MAX];
    let n = to_logical(spec, source, wire, logical_len, &mut logical);
    write_value(spec, charset, &logical[..n], out);
}
