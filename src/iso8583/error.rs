//! Error enums of the codec, one per layer: frame, message decode, message encode.
//!
//! No variant carries a field value: errors end up in logs, and DE2, DE35, DE45, DE52 and
//! DE55 are secrets. Variants name the field and the reason, plus lengths and offsets.

use std::fmt;

/// Why a field's bytes are not a valid value of its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueFault {
    /// A character of an `n` field is not a digit (or a BCD nibble is above 9).
    NotDigit,
    /// A character of an `a` field is not a letter or space.
    NotAlpha,
    /// A character of an `an` field is not a letter, digit or space.
    NotAlphanumeric,
    /// A character of an `ans` field is outside printable ASCII.
    NotPrintable,
    /// A character of a `z` field is not a digit or track separator.
    NotTrack,
    /// The first character of an `x+n` field is not `C` or `D`.
    NotSign,
    /// The padding nibble of an odd-length BCD value is not the canonical one.
    BadPadding,
    /// An EBCDIC byte outside the printable subset of code page 037.
    NotEbcdic,
}

impl fmt::Display for ValueFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueFault::NotDigit => "bad digit",
            ValueFault::NotAlpha => "not alphabetic",
            ValueFault::NotAlphanumeric => "not alphanumeric",
            ValueFault::NotPrintable => "not printable",
            ValueFault::NotTrack => "not track data",
            ValueFault::NotSign => "sign is not C or D",
            ValueFault::BadPadding => "bad BCD padding nibble",
            ValueFault::NotEbcdic => "byte outside printable EBCDIC",
        })
    }
}

/// A message body that is not a valid ISO 8583:1987 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {len} bytes exceeds the maximum {max}")]
    MessageTooLong { len: usize, max: usize },
    #[error("MTI truncated: {have} of {need} bytes")]
    TruncatedMti { need: usize, have: usize },
    #[error("MTI is not four digits")]
    BadMti,
    #[error("primary bitmap truncated: {have} of {need} bytes")]
    TruncatedBitmap { need: usize, have: usize },
    #[error("DE1 set but the secondary bitmap is absent: {have} of {need} bytes")]
    SecondaryBitmapMissing { need: usize, have: usize },
    #[error("{} bitmap is not hexadecimal", if *.secondary { "secondary" } else { "primary" })]
    BadBitmap { secondary: bool },
    #[error("DE1 set but the secondary bitmap announces no field")]
    EmptySecondaryBitmap,
    #[error("bitmap announces DE65 (tertiary bitmap), which ISO 8583:1987 does not define")]
    TertiaryBitmap,
    #[error("DE{field}: length prefix truncated")]
    TruncatedPrefix { field: u8 },
    #[error("DE{field}: bad length prefix")]
    BadLengthPrefix { field: u8 },
    #[error("DE{field}: length {len} exceeds the maximum {max}")]
    FieldTooLong { field: u8, len: usize, max: usize },
    #[error("DE{field}: truncated, {have} of {need} bytes")]
    TruncatedField { field: u8, need: usize, have: usize },
    #[error("DE{field}: {fault} at position {position}")]
    BadValue {
        field: u8,
        fault: ValueFault,
        position: usize,
    },
    #[error("{count} trailing bytes after the last field")]
    TrailingBytes { count: usize },
}

/// A message that cannot be encoded as asked.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("DE{field} cannot be set (valid fields: 2..=64, 66..=128)")]
    InvalidField { field: u8 },
    #[error("DE{field}: length {len} exceeds the maximum {max}")]
    FieldTooLong { field: u8, len: usize, max: usize },
    #[error("DE{field}: length {len}, the fixed length is {expected}")]
    WrongLength {
        field: u8,
        len: usize,
        expected: usize,
    },
    #[error("DE{field}: {fault} at position {position}")]
    BadValue {
        field: u8,
        fault: ValueFault,
        position: usize,
    },
    #[error("DE{field} cannot hold digits, set_number does not apply")]
    NotNumeric { field: u8 },
    #[error("DE{field}: number has {digits} digits, the field holds {max}")]
    NumberTooLarge {
        field: u8,
        digits: usize,
        max: usize,
    },
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
}

/// A byte stream that is not a sequence of valid frames, or an I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the maximum {max}")]
    FrameTooLong { len: usize, max: usize },
    #[error("length header is not decimal digits")]
    BadLengthHeader,
    #[error("frame of {len} bytes is shorter than the 5-byte TPDU")]
    TruncatedTpdu { len: usize },
    #[error("listener expects a TPDU but the frame has none")]
    MissingTpdu,
    #[error("frame has a TPDU but the listener does not use TPDUs")]
    UnexpectedTpdu,
    #[error("connection closed inside a frame ({have} bytes buffered)")]
    TruncatedFrame { have: usize },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
