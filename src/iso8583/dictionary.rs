//! The ISO 8583:1987 field dictionary, kept as data in `proto/iso8583-1987.csv`.
//!
//! The CSV is compiled into the binary with `include_str!` and parsed once, on first use, into
//! a static table indexed by field number. The codec is driven entirely by this table: adding
//! or changing a field means editing the CSV, not the code.

use std::sync::OnceLock;

/// Largest field number of a message with a secondary bitmap.
pub const FIELD_NUMBER_MAX: u8 = 128;
/// Largest value length any field may declare (LLLVAR upper bound).
pub const FIELD_LEN_MAX: usize = 999;

const DICTIONARY_CSV: &str = include_str!("../../proto/iso8583-1987.csv");

/// Character class of a field's value (ISO 8583 attribute notation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `n`: digits only.
    Numeric,
    /// `a`: letters (spaces accepted as padding).
    Alpha,
    /// `an`: letters and digits (spaces accepted as padding).
    AlphaNumeric,
    /// `ans`: printable ASCII 0x20..=0x7E.
    AlphaNumericSpecial,
    /// `b`: raw bytes; the length counts bytes.
    Binary,
    /// `z`: track 2/3 data: digits and the `=` (or `D`) separator.
    Track,
    /// `x+n`: `C` (credit) or `D` (debit) followed by digits; the length counts the sign too.
    SignedNumeric,
}

/// How the length of a field is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthKind {
    Fixed,
    /// Two-digit length prefix.
    LlVar,
    /// Three-digit length prefix.
    LllVar,
}

/// One row of the dictionary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub number: u8,
    pub field_type: FieldType,
    pub length: LengthKind,
    /// Exact length (fixed) or maximum length (variable), in digits/characters, or bytes for
    /// binary fields.
    pub len_max: u16,
    pub description: &'static str,
}

impl FieldSpec {
    /// True when the BCD charset packs this field two digits per byte.
    pub fn is_packed_in_bcd(&self) -> bool {
        matches!(self.field_type, FieldType::Numeric | FieldType::Track)
    }
}

/// The parsed table; index = field number, entries 0 and 1 are `None` (MTI and bitmap are not
/// data elements in this table).
pub struct Dictionary {
    fields: [Option<FieldSpec>; FIELD_NUMBER_MAX as usize + 1],
}

impl Dictionary {
    /// The spec of a data element 2..=128, or `None` for numbers outside the dictionary.
    pub fn field(&self, number: u8) -> Option<&FieldSpec> {
        self.fields.get(number as usize)?.as_ref()
    }
}

/// The dictionary compiled into this binary.
pub fn dictionary() -> &'static Dictionary {
    static TABLE: OnceLock<Dictionary> = OnceLock::new();
    TABLE.get_or_init(|| match parse(DICTIONARY_CSV) {
        Ok(table) => table,
        // The CSV is part of the binary; a broken one is a build defect, caught by tests.
        Err(line) => panic!("proto/iso8583-1987.csv: invalid line {line}"),
    })
}

/// Spec of `number`; panics only if the embedded dictionary lacks a field 2..=128, which the
/// parser already refuses.
pub(crate) fn spec(number: u8) -> &'static FieldSpec {
    match dictionary().field(number) {
        Some(spec) => spec,
        None => panic!("field {number} is not in the dictionary (callers pass 2..=128)"),
    }
}

/// Parses the CSV; on error returns the 1-based line number of the bad line.
fn parse(csv: &'static str) -> Result<Dictionary, usize> {
    let mut fields = [None; FIELD_NUMBER_MAX as usize + 1];
    let mut expected: u8 = 2;
    for (index, line) in csv.lines().enumerate() {
        let line_no = index + 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with("field,") {
            continue;
        }
        let spec = parse_row(line).ok_or(line_no)?;
        if spec.number != expected {
            return Err(line_no);
        }
        fields[spec.number as usize] = Some(spec);
        expected = expected.checked_add(1).ok_or(line_no)?;
    }
    if expected != FIELD_NUMBER_MAX + 1 {
        return Err(csv.lines().count());
    }
    Ok(Dictionary { fields })
}

fn parse_row(line: &'static str) -> Option<FieldSpec> {
    let mut columns = line.splitn(5, ',');
    let number: u8 = columns.next()?.trim().parse().ok()?;
    let field_type = match columns.next()?.trim() {
        "n" => FieldType::Numeric,
        "a" => FieldType::Alpha,
        "an" => FieldType::AlphaNumeric,
        "ans" => FieldType::AlphaNumericSpecial,
        "b" => FieldType::Binary,
        "z" => FieldType::Track,
        "x+n" => FieldType::SignedNumeric,
        _ => return None,
    };
    let length = match columns.next()?.trim() {
        "fixed" => LengthKind::Fixed,
        "llvar" => LengthKind::LlVar,
        "lllvar" => LengthKind::LllVar,
        _ => return None,
    };
    let len_max: u16 = columns.next()?.trim().parse().ok()?;
    let description = columns.next()?.trim();
    let limit = match length {
        LengthKind::LlVar => 99,
        _ => FIELD_LEN_MAX as u16,
    };
    if len_max == 0 || len_max > limit {
        return None;
    }
    Some(FieldSpec {
        number,
        field_type,
        length,
        len_max,
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_has_every_field_from_2_to_128() {
        let dict = dictionary();
        assert!(dict.field(0).is_none());
        assert!(dict.field(1).is_none());
        assert!(dict.field(129).is_none());
        for number in 2..=FIELD_NUMBER_MAX {
            assert_eq!(dict.field(number).map(|f| f.number), Some(number));
        }
    }

    #[test]
    fn dictionary_rows_match_the_1987_standard() {
        let pan = spec(2);
        assert_eq!(
            (pan.field_type, pan.length, pan.len_max),
            (FieldType::Numeric, LengthKind::LlVar, 19)
        );
        let track2 = spec(35);
        assert_eq!((track2.field_type, track2.len_max), (FieldType::Track, 37));
        assert_eq!(spec(43).len_max, 40);
        assert_eq!(spec(52).field_type, FieldType::Binary);
        assert_eq!(spec(55).length, LengthKind::LllVar);
        assert_eq!(
            (spec(28).field_type, spec(28).len_max),
            (FieldType::SignedNumeric, 9)
        );
        assert_eq!(spec(90).len_max, 42);
        assert_eq!(spec(95).len_max, 42);
    }

    #[test]
    fn parser_rejects_gaps_and_bad_rows() {
        assert_eq!(
            parse("field,type\n2,n,llvar,19,PAN\n4,n,fixed,12,x\n").err(),
            Some(3)
        );
        assert_eq!(parse("2,q,fixed,1,bad type\n").err(), Some(1));
        assert_eq!(parse("2,n,llvar,100,too long for llvar\n").err(), Some(1));
        assert_eq!(parse("2,n,llvar,19,PAN\n").err(), Some(1));
    }
}
