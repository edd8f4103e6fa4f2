//! Wire format options selectable per listener: length header, TPDU, bitmap and charset.

use serde::{Deserialize, Serialize};

/// How a frame's length is written in front of it. The length counts the bytes after the
/// header (TPDU included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthHeader {
    /// 2-byte big-endian unsigned integer.
    #[default]
    Binary2,
    /// 4-byte big-endian unsigned integer.
    Binary4,
    /// 2 ASCII digits (frames up to 99 bytes).
    Ascii2,
    /// 4 ASCII digits (frames up to 9999 bytes).
    Ascii4,
}

impl LengthHeader {
    /// Bytes the header occupies on the wire.
    pub fn header_len(self) -> usize {
        match self {
            LengthHeader::Binary2 | LengthHeader::Ascii2 => 2,
            LengthHeader::Binary4 | LengthHeader::Ascii4 => 4,
        }
    }

    /// Largest length the header can express.
    pub fn representable_len_max(self) -> usize {
        match self {
            LengthHeader::Binary2 => u16::MAX as usize,
            LengthHeader::Binary4 => u32::MAX as usize,
            LengthHeader::Ascii2 => 99,
            LengthHeader::Ascii4 => 9999,
        }
    }
}

/// How the primary and secondary bitmaps are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BitmapEncoding {
    /// 8 raw bytes per bitmap.
    #[default]
    Binary,
    /// 16 hexadecimal characters per bitmap (in the message charset).
    Hex,
}

/// How the MTI, numeric fields, text fields and length prefixes are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// Everything ASCII.
    #[default]
    Ascii,
    /// MTI, `n` and `z` fields and length prefixes packed BCD; text fields ASCII.
    Bcd,
    /// Everything EBCDIC code page 037.
    Ebcdic,
}

/// Complete description of one listener's wire format. Missing keys in a config take the
/// defaults (binary2 header, no TPDU, binary bitmap, ASCII).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WireFormat {
    pub header: LengthHeader,
    /// A 5-byte TPDU follows the length header.
    pub tpdu: bool,
    pub bitmap: BitmapEncoding,
    pub charset: Charset,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_are_snake_case_and_missing_keys_default() {
        let format: WireFormat =
            serde_json::from_str(r#"{"header": "ascii4", "charset": "ebcdic"}"#).unwrap();
        assert_eq!(
            format,
            WireFormat {
                header: LengthHeader::Ascii4,
                tpdu: false,
                bitmap: BitmapEncoding::Binary,
                charset: Charset::Ebcdic
            }
        );
        let json = serde_json::to_string(&WireFormat::default()).unwrap();
        assert_eq!(
            json,
            r#"{"header":"binary2","tpdu":false,"bitmap":"binary","charset":"ascii"}"#
        );
    }
}
