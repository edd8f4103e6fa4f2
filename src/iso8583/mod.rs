//! ISO 8583:1987 codec: field dictionary, charsets, message decode/encode and TCP framing.
//!
//! Layers, each in its own file: `dictionary` (the field table from `proto/`), `encoding`
//! (charsets and one field), `message` (zero-copy decode), `views` (typed reads), `builder`
//! (allocation-free encode), `frame` (length header and TPDU).

mod builder;
mod dictionary;
mod encoding;
mod error;
mod format;
mod frame;
mod message;
mod mti;
mod views;

pub use builder::MessageBuilder;
pub use dictionary::{
    dictionary, Dictionary, FieldSpec, FieldType, LengthKind, FIELD_LEN_MAX, FIELD_NUMBER_MAX,
};
pub use encoding::{ascii_to_ebcdic, ebcdic_to_ascii};
pub use error::{DecodeError, EncodeError, FrameError, ValueFault};
pub use format::{BitmapEncoding, Charset, LengthHeader, WireFormat};
pub use frame::{swap_tpdu, Frame, FrameCodec, FRAME_LEN_MAX_DEFAULT, TPDU_LEN};
pub use message::{peek_mti_stan, FieldIter, Message, MESSAGE_LEN_MAX};
pub use mti::{Mti, MTI_VALUE_MAX};
pub use views::{
    luhn_check_digit, parse_digits, AdditionalAmount, AdditionalAmounts, CardAcceptor,
    CurrencyCode, Expiry, LocalTime, MaskedPan, MonthDay, OriginalData, Pan, ProcessingCode,
    ReplacementAmounts, Text, TransmissionTime, ADDITIONAL_AMOUNTS_MAX, PAN_LEN_MAX, PAN_LEN_MIN,
};
