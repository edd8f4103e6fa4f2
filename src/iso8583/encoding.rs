//! Charset primitives and the table-driven reading and writing of one field.
//!
//! Layout per charset (see `proto/README.md`):
//! - ASCII: values and length prefixes as ASCII characters, `b` fields raw.
//! - BCD: `n` values right-justified, packed two digits a byte, a leading `0` nibble for an
//!   odd length; `z` values left-justified, `=` as nibble `D`, a trailing `F` nibble for an odd
//!   length; LL prefix 1 BCD byte, LLL prefix 2 BCD bytes, counting digits for `n`/`z` and
//!   bytes otherwise; other text fields ASCII; `b` raw.
//! - EBCDIC: values and prefixes in code page 037 (printable subset only), `b` raw.

use bytes::{BufMut, BytesMut};

use super::dictionary::{FieldSpec, FieldType, LengthKind, FIELD_LEN_MAX};
use super::error::ValueFault;
use super::format::Charset;

/// cp037 code of each printable ASCII character 0x20..=0x7E.
const ASCII_TO_EBCDIC: [u8; 95] = [
    0x40, 0x5A, 0x7F, 0x7B, 0x5B, 0x6C, 0x50, 0x7D, 0x4D, 0x5D, 0x5C, 0x4E, //
    0x6B, 0x60, 0x4B, 0x61, 0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, //
    0xF8, 0xF9, 0x7A, 0x5E, 0x4C, 0x7E, 0x6E, 0x6F, 0x7C, 0xC1, 0xC2, 0xC3, //
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, //
    0xD7, 0xD8, 0xD9, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xBA, //
    0xE0, 0xBB, 0xB0, 0x6D, 0x79, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, //
    0x88, 0x89, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0xA2, //
    0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xC0, 0x4F, 0xD0, 0xA1,
];

/// Inverse of `ASCII_TO_EBCDIC`; 0 marks a byte outside the printable subset.
const EBCDIC_TO_ASCII: [u8; 256] = invert_ebcdic();

const fn invert_ebcdic() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < ASCII_TO_EBCDIC.len() {
        table[ASCII_TO_EBCDIC[i] as usize] = 0x20 + i as u8;
        i += 1;
    }
    table
}

/// cp037 code of a printable ASCII character; `None` outside 0x20..=0x7E.
pub fn ascii_to_ebcdic(c: u8) -> Option<u8> {
    ASCII_TO_EBCDIC.get(c.wrapping_sub(0x20) as usize).copied()
}

/// Printable ASCII character of a cp037 byte; `None` outside the printable subset.
pub fn ebcdic_to_ascii(b: u8) -> Option<u8> {
    match EBCDIC_TO_ASCII[b as usize] {
        0 => None,
        c => Some(c),
    }
}

/// Checks one logical (ASCII) character of a value at `position`.
pub fn check_char(field_type: FieldType, position: usize, c: u8) -> Result<(), ValueFault> {
    let ok = match field_type {
        FieldType::Numeric => c.is_ascii_digit(),
        FieldType::Alpha => c.is_ascii_alphabetic() || c == b' ',
        FieldType::AlphaNumeric => c.is_ascii_alphanumeric() || c == b' ',
        FieldType::AlphaNumericSpecial => (0x20..=0x7E).contains(&c),
        FieldType::Binary => true,
        FieldType::Track => c.is_ascii_digit() || c == b'=' || c == b'D',
        FieldType::SignedNumeric if position == 0 => c == b'C' || c == b'D',
        FieldType::SignedNumeric => c.is_ascii_digit(),
    };
    if ok {
        return Ok(());
    }
    Err(match field_type {
        FieldType::Numeric => ValueFault::NotDigit,
        FieldType::Alpha => ValueFault::NotAlpha,
        FieldType::AlphaNumeric => ValueFault::NotAlphanumeric,
        FieldType::Track => ValueFault::NotTrack,
        FieldType::SignedNumeric if position == 0 => ValueFault::NotSign,
        FieldType::SignedNumeric => ValueFault::NotDigit,
        FieldType::AlphaNumericSpecial | FieldType::Binary => ValueFault::NotPrintable,
    })
}

/// True when `spec` is packed as BCD nibbles in `charset`.
pub fn is_packed(spec: &FieldSpec, charset: Charset) -> bool {
    charset == Charset::Bcd && spec.is_packed_in_bcd()
}

/// Wire bytes of a value of `logical_len` digits/characters.
pub fn wire_len(spec: &FieldSpec, charset: Charset, logical_len: usize) -> usize {
    if is_packed(spec, charset) {
        logical_len.div_ceil(2)
    } else {
        logical_len
    }
}

/// Wire bytes of the length prefix of `spec` in `charset` (0 for fixed fields).
pub fn prefix_len(spec: &FieldSpec, charset: Charset) -> usize {
    match (spec.length, charset) {
        (LengthKind::Fixed, _) => 0,
        (LengthKind::LlVar, Charset::Bcd) => 1,
        (LengthKind::LllVar, Charset::Bcd) => 2,
        (LengthKind::LlVar, _) => 2,
        (LengthKind::LllVar, _) => 3,
    }
}

/// Reads a length prefix of `prefix.len()` bytes; `None` if it is not decimal.
pub fn read_prefix(prefix: &[u8], charset: Charset) -> Option<usize> {
    let mut value = 0usize;
    match charset {
        Charset::Bcd => {
            for &b in prefix {
                let (hi, lo) = (b >> 4, b & 0x0F);
                if hi > 9 || lo > 9 {
                    return None;
                }
                value = value * 100 + (hi * 10 + lo) as usize;
            }
        }
        Charset::Ascii | Charset::Ebcdic => {
            for &b in prefix {
                let c = if charset == Charset::Ebcdic {
                    ebcdic_to_ascii(b)?
                } else {
                    b
                };
                if !c.is_ascii_digit() {
                    return None;
                }
                value = value * 10 + (c - b'0') as usize;
            }
        }
    }
    Some(value)
}

/// Writes the length prefix of a value of `logical_len` (no-op for fixed fields).
#[inline]
pub fn write_prefix(spec: &FieldSpec, charset: Charset, logical_len: usize, out: &mut BytesMut) {
    assert!(logical_len <= FIELD_LEN_MAX);
    let digits = match spec.length {
        LengthKind::Fixed => return,
        LengthKind::LlVar => 2,
        LengthKind::LllVar => 3,
    };
    match charset {
        Charset::Bcd => {
            if digits == 3 {
                out.put_u8((logical_len / 100) as u8);
            }
            let low = logical_len % 100;
            out.put_u8((((low / 10) << 4) | (low % 10)) as u8);
        }
        Charset::Ascii | Charset::Ebcdic => {
            let text = [
                b'0' + (logical_len / 100) as u8,
                b'0' + (logical_len / 10 % 10) as u8,
                b'0' + (logical_len % 10) as u8,
            ];
            let text = &text[3 - digits..];
            if charset == Charset::Ascii {
                out.extend_from_slice(text);
            } else {
                out.extend(text.iter().map(|&c| to_charset(charset, c)));
            }
        }
    }
}

/// One ASCII character as written in `charset` (text fields; BCD writes text as ASCII).
fn to_charset(charset: Charset, c: u8) -> u8 {
    match charset {
        Charset::Ebcdic => ascii_to_ebcdic(c).unwrap_or(0x40),
        Charset::Ascii | Charset::Bcd => c,
    }
}

/// Validates the wire bytes of a value of `logical_len` (already known to fit).
pub fn check_value(
    spec: &FieldSpec,
    charset: Charset,
    wire: &[u8],
    logical_len: usize,
) -> Result<(), (ValueFault, usize)> {
    if spec.field_type == FieldType::Binary {
        return Ok(());
    }
    if is_packed(spec, charset) {
        return check_packed(spec.field_type, wire, logical_len);
    }
    if charset != Charset::Ebcdic {
        return check_ascii(spec.field_type, wire);
    }
    for (position, &b) in wire.iter().enumerate() {
        let c = ebcdic_to_ascii(b).ok_or((ValueFault::NotEbcdic, position))?;
        check_char(spec.field_type, position, c).map_err(|fault| (fault, position))?;
    }
    Ok(())
}

/// Checks a whole ASCII value (the hot path of decode and encode). Digits and printable
/// text, nearly every byte of a request, are checked eight bytes at a time; the other types
/// through a class table. Only a value that fails is walked again, byte by byte, to name the
/// first bad character.
pub fn check_ascii(field_type: FieldType, value: &[u8]) -> Result<(), (ValueFault, usize)> {
    let ok = match field_type {
        FieldType::Binary => true,
        FieldType::Numeric => all_words(value, b'0', digit_word_bad),
        FieldType::AlphaNumericSpecial => all_words(value, b' ', printable_word_bad),
        FieldType::Alpha => all_in_class(value, CLASS_ALPHA),
        FieldType::AlphaNumeric => all_in_class(value, CLASS_ALPHANUMERIC),
        FieldType::Track => all_in_class(value, CLASS_TRACK),
        FieldType::SignedNumeric => match value.split_first() {
            Some((&sign, digits)) => {
                (sign == b'C' || sign == b'D') && all_words(digits, b'0', digit_word_bad)
            }
            None => true,
        },
    };
    if ok {
        return Ok(());
    }
    let bad = value.iter().enumerate().find_map(|(position, &c)| {
        check_char(field_type, position, c)
            .err()
            .map(|f| (f, position))
    });
    assert!(bad.is_some(), "fast and slow character checks disagree");
    Err(bad.unwrap_or((ValueFault::NotPrintable, 0)))
}

/// Eight bytes of a word, each with its high bit.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
/// One in every byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;

/// Non-zero when a byte of `w` is not an ASCII digit: its high nibble must be 3, and adding 6
/// to its low nibble must not carry out of it (once every high nibble is 3, no byte carries
/// into the next).
fn digit_word_bad(w: u64) -> u64 {
    let (threes, high_nibbles) = (0x30 * ONES, 0xF0 * ONES);
    ((w & high_nibbles) ^ threes) | ((w.wrapping_add(0x06 * ONES) & high_nibbles) ^ threes)
}

/// Non-zero when a byte of `w` is outside 0x20..=0x7E: some byte is below 0x20 (a borrow
/// reaches the high bit of a byte whose own high bit is clear), or above 0x7E (adding 1 sets
/// the high bit, or it was set).
fn printable_word_bad(w: u64) -> u64 {
    let below = w.wrapping_sub(0x20 * ONES) & !w & HIGH_BITS;
    let above = (w.wrapping_add(ONES) | w) & HIGH_BITS;
    below | above
}

/// Whether `word_bad` finds no bad byte in `value`, read eight bytes at a time without a
/// copy: a last partial word is read as the value's last eight bytes (overlapping what was
/// checked), a value of four to seven bytes as its first four and last four, and a shorter
/// one is filled out with `good`, a byte that passes.
#[inline(always)]
fn all_words(value: &[u8], good: u8, word_bad: impl Fn(u64) -> u64) -> bool {
    let word = |at: usize| u64::from_le_bytes(value[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(value[at..at + 4].try_into().expect("4 bytes"));
    let n = value.len();
    if n >= 8 {
        let mut bad = word_bad(word(n - 8));
        let mut at = 0;
        while at + 8 < n {
            bad |= word_bad(word(at));
            at += 8;
        }
        bad == 0
    } else if n >= 4 {
        word_bad(u64::from(half(0)) | u64::from(half(n - 4)) << 32) == 0
    } else {
        let mut bytes = [good; 8];
        for (slot, &c) in bytes.iter_mut().zip(value) {
            *slot = c;
        }
        word_bad(u64::from_le_bytes(bytes)) == 0
    }
}

const CLASS_ALPHA: u8 = 1;
const CLASS_ALPHANUMERIC: u8 = 2;
const CLASS_TRACK: u8 = 4;

/// The classes (`CLASS_*` bits) of each byte, as `check_char` defines them.
const CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut class = 0;
        if b.is_ascii_alphabetic() || b == b' ' {
            class |= CLASS_ALPHA;
        }
        if b.is_ascii_alphanumeric() || b == b' ' {
            class |= CLASS_ALPHANUMERIC;
        }
        if b.is_ascii_digit() || b == b'=' || b == b'D' {
            class |= CLASS_TRACK;
        }
        table[c] = class;
        c += 1;
    }
    table
};

/// Whether every byte of `value` is in `class`, without a branch per byte.
fn all_in_class(value: &[u8], class: u8) -> bool {
    value
        .iter()
        .fold(class, |acc, &c| acc & CLASSES[c as usize])
        == class
}

fn check_packed(
    field_type: FieldType,
    wire: &[u8],
    logical_len: usize,
) -> Result<(), (ValueFault, usize)> {
    for (position, nibble, is_pad) in nibbles(field_type, wire, logical_len) {
        if is_pad {
            let pad = if field_type == FieldType::Track {
                0x0F
            } else {
                0
            };
            if nibble != pad {
                return Err((ValueFault::BadPadding, position));
            }
            continue;
        }
        let ok = nibble <= 9 || (field_type == FieldType::Track && nibble == 0x0D);
        if !ok {
            let fault = if field_type == FieldType::Track {
                ValueFault::NotTrack
            } else {
                ValueFault::NotDigit
            };
            return Err((fault, position));
        }
    }
    Ok(())
}

/// Nibbles of a packed value as (logical position, nibble, is padding).
fn nibbles(
    field_type: FieldType,
    wire: &[u8],
    logical_len: usize,
) -> impl Iterator<Item = (usize, u8, bool)> + '_ {
    let odd = logical_len % 2 == 1;
    // `n` pads in front (right-justified), `z` pads at the end (left-justified).
    let pad_front = odd && field_type != FieldType::Track;
    let pad_back = odd && field_type == FieldType::Track;
    let total = wire.len() * 2;
    (0..total).map(move |i| {
        let byte = wire[i / 2];
        let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0F };
        let is_pad = (pad_front && i == 0) || (pad_back && i == total - 1);
        let position = if pad_front { i.saturating_sub(1) } else { i };
        (position, nibble, is_pad)
    })
}

/// Writes the logical (ASCII) form of a valid value into `out`, returning its length.
/// `out` must hold `logical_len` bytes.
pub fn to_logical(
    spec: &FieldSpec,
    charset: Charset,
    wire: &[u8],
    logical_len: usize,
    out: &mut [u8],
) -> usize {
    assert!(out.len() >= logical_len);
    if is_packed(spec, charset) {
        let mut n = 0;
        for (_, nibble, is_pad) in nibbles(spec.field_type, wire, logical_len) {
            if !is_pad {
                out[n] = if nibble == 0x0D { b'=' } else { b'0' + nibble };
                n += 1;
            }
        }
        return n;
    }
    let convert = charset == Charset::Ebcdic && spec.field_type != FieldType::Binary;
    for (slot, &b) in out.iter_mut().zip(wire) {
        *slot = if convert {
            ebcdic_to_ascii(b).unwrap_or(b'?')
        } else {
            b
        };
    }
    wire.len()
}

/// Writes a valid logical value (ASCII, or raw for `b`) in `charset`, without prefix.
pub fn write_value(spec: &FieldSpec, charset: Charset, value: &[u8], out: &mut BytesMut) {
    if is_packed(spec, charset) {
        write_packed(spec.field_type, value, out);
        return;
    }
    if charset == Charset::Ebcdic && spec.field_type != FieldType::Binary {
        out.extend(value.iter().map(|&c| to_charset(charset, c)));
    } else {
        out.extend_from_slice(value);
    }
}

fn write_packed(field_type: FieldType, value: &[u8], out: &mut BytesMut) {
    let nibble_of = |c: u8| {
        if c == b'=' || c == b'D' {
            0x0D
        } else {
            c.wrapping_sub(b'0')
        }
    };
    let odd = value.len() % 2 == 1;
    let mut digits = value.iter().map(|&c| nibble_of(c));
    if odd && field_type != FieldType::Track {
        out.put_u8(digits.next().unwrap_or(0));
    }
    while let Some(hi) = digits.next() {
        let lo = digits.next().unwrap_or(0x0F);
        out.put_u8((hi << 4) | lo);
    }
}

#[cfg(test)]
mod tests {
    use super::super::dictionary::spec;
    use super::*;

    /// The word-at-a-time and table checks answer as `check_char` does, byte by byte: every
    /// byte value at every position of values of every length up to 20 (so in whole words,
    /// in the last partial one, and after the sign), against every type.
    #[test]
    fn check_ascii_agrees_with_check_char_on_every_byte() {
        let types = [
            FieldType::Numeric,
            FieldType::Alpha,
            FieldType::AlphaNumeric,
            FieldType::AlphaNumericSpecial,
            FieldType::Binary,
            FieldType::Track,
            FieldType::SignedNumeric,
        ];
        let slow = |t: FieldType, value: &[u8]| -> Result<(), (ValueFault, usize)> {
            for (position, &c) in value.iter().enumerate() {
                check_char(t, position, c).map_err(|fault| (fault, position))?;
            }
            Ok(())
        };
        for t in types {
            // A value that passes: digits pass every type but the sign's position.
            for len in 0..=20 {
                let mut value = vec![b'7'; len];
                if t == FieldType::SignedNumeric && len > 0 {
                    value[0] = b'C';
                }
                if t == FieldType::Alpha {
                    value.fill(b'Q');
                }
                assert_eq!(check_ascii(t, &value), Ok(()), "{t:?} len {len}");
                for position in 0..len {
                    for b in 0..=255u8 {
                        let mut v = value.clone();
                        v[position] = b;
                        assert_eq!(
                            check_ascii(t, &v),
                            slow(t, &v),
                            "{t:?} len {len} byte {b:#04x} at {position}"
                        );
                    }
                }
            }
        }
        // Two bad bytes: the first is named.
        assert_eq!(
            check_ascii(FieldType::Numeric, b"12345678901x3y"),
            Err((ValueFault::NotDigit, 11))
        );
        assert_eq!(
            check_ascii(FieldType::AlphaNumericSpecial, b"ABC\x7f\x00"),
            Err((ValueFault::NotPrintable, 3))
        );
    }

    proptest::proptest! {
        /// Values of several bad bytes, drawn near the classes' edges, answer alike too.
        #[test]
        fn check_ascii_agrees_with_check_char_on_mixed_values(
            value in proptest::collection::vec(
                proptest::sample::select(vec![
                    0x00u8, 0x1F, 0x20, b'/', b'0', b'9', b':', b'=', b'@', b'A', b'C', b'D',
                    b'Z', b'[', b'`', b'a', b'z', b'{', 0x7E, 0x7F, 0x80, 0xB0, 0xF0, 0xFF,
                ]),
                0..40,
            ),
        ) {
            for t in [
                FieldType::Numeric,
                FieldType::Alpha,
                FieldType::AlphaNumeric,
                FieldType::AlphaNumericSpecial,
                FieldType::Track,
                FieldType::SignedNumeric,
            ] {
                let slow = value
                    .iter()
                    .enumerate()
                    .find_map(|(i, &c)| check_char(t, i, c).err().map(|f| (f, i)));
                proptest::prop_assert_eq!(check_ascii(t, &value).err(), slow, "{:?}", t);
            }
        }
    }

    #[test]
    fn ebcdic_table_round_trips_printable_ascii() {
        for c in 0x20u8..=0x7E {
            let e = ascii_to_ebcdic(c).unwrap();
            assert_eq!(ebcdic_to_ascii(e), Some(c));
        }
        assert_eq!(ascii_to_ebcdic(b'0'), Some(0xF0));
        assert_eq!(ascii_to_ebcdic(b'A'), Some(0xC1));
        assert_eq!(ascii_to_ebcdic(b' '), Some(0x40));
        assert_eq!(ascii_to_ebcdic(0x7F), None);
        assert_eq!(ebcdic_to_ascii(0x00), None);
    }

    #[test]
    fn packed_numeric_pads_in_front_and_track_at_the_end() {
        let mut out = BytesMut::new();
        write_value(spec(2), Charset::Bcd, b"411111111111111", &mut out);
        assert_eq!(&out[..], &[0x04, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11]);
        let mut out = BytesMut::new();
        write_value(spec(35), Charset::Bcd, b"41=251", &mut out);
        assert_eq!(&out[..], &[0x41, 0xD2, 0x51]);
        let mut out = BytesMut::new();
        write_value(spec(35), Charset::Bcd, b"41=25", &mut out);
        assert_eq!(&out[..], &[0x41, 0xD2, 0x5F]);
        let mut logical = [0u8; 8];
        let n = to_logical(spec(35), Charset::Bcd, &out, 5, &mut logical);
        assert_eq!(&logical[..n], b"41=25");
    }

    #[test]
    fn prefixes_in_each_charset() {
        let mut out = BytesMut::new();
        write_prefix(spec(2), Charset::Ascii, 16, &mut out);
        write_prefix(spec(55), Charset::Ascii, 7, &mut out);
        write_prefix(spec(2), Charset::Bcd, 16, &mut out);
        write_prefix(spec(55), Charset::Bcd, 123, &mut out);
        write_prefix(spec(2), Charset::Ebcdic, 16, &mut out);
        assert_eq!(&out[..], b"16007\x16\x01\x23\xF1\xF6");
        assert_eq!(read_prefix(b"16", Charset::Ascii), Some(16));
        assert_eq!(read_prefix(&[0x01, 0x23], Charset::Bcd), Some(123));
        assert_eq!(read_prefix(&[0xF1, 0xF6], Charset::Ebcdic), Some(16));
        assert_eq!(read_prefix(b"1a", Charset::Ascii), None);
        assert_eq!(read_prefix(&[0x1A], Charset::Bcd), None);
    }
}
