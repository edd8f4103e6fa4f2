//! Typed views of the fields the switch reads, as small owned values (no heap allocation).
//!
//! Every view decodes from the message's charset, so the switch sees the same values for
//! ASCII, BCD and EBCDIC traffic. A view returns `None` when the field is absent or its
//! content does not fit the view (for example a PAN shorter than 12 digits).

use std::fmt;

use super::dictionary::FIELD_LEN_MAX;
use super::format::Charset;
use super::message::Message;
use super::mti::Mti;

/// Shortest and longest PAN accepted by `Pan` (ISO/IEC 7812).
pub const PAN_LEN_MIN: usize = 12;
pub const PAN_LEN_MAX: usize = 19;

/// A currency field (DE49, DE50, DE51; `an 3` in the 1987 dictionary) as sent. The view does
/// not judge the code: mapping an alphabetic code to its number, and what an unknown code
/// means, is the caller's business. A present field is never `None`, so a caller cannot take
/// a code it does not understand for an absent one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurrencyCode {
    /// Three digits: an ISO 4217 numeric code (`840`), known or not.
    Numeric(u16),
    /// Three letters, uppercased: an ISO 4217 alphabetic code (`EUR`), known or not.
    Alpha([u8; 3]),
    /// Anything else (a mix of digits and letters, other characters).
    Unreadable,
}

impl CurrencyCode {
    fn from_value(value: &[u8]) -> Option<CurrencyCode> {
        let code = match value {
            [_, _, _] if value.iter().all(u8::is_ascii_digit) => {
                CurrencyCode::Numeric(parse_digits(value)? as u16)
            }
            [a, b, c] if value.iter().all(u8::is_ascii_alphabetic) => CurrencyCode::Alpha([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
                c.to_ascii_uppercase(),
            ]),
            _ => CurrencyCode::Unreadable,
        };
        Some(code)
    }

    /// The numeric code when the field carried digits.
    pub fn numeric(self) -> Option<u16> {
        match self {
            CurrencyCode::Numeric(n) => Some(n),
            _ => None,
        }
    }
}

/// Parses ASCII digits into a number; `None` on an empty input, a non-digit or overflow.
pub fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    // Up to 19 digits cannot overflow: no check per digit, one for them all at the end.
    if digits.len() <= 19 {
        let mut value = 0u64;
        let mut bad = false;
        for &c in digits {
            let digit = c.wrapping_sub(b'0');
            bad |= digit > 9;
            value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
        }
        return (!bad).then_some(value);
    }
    digits.iter().try_fold(0u64, |acc, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add((c - b'0') as u64)
    })
}

/// `s` without trailing spaces.
fn trim_spaces(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    &s[..end]
}

/// A primary account number. Has no `Display`: print `masked()`. `Debug` is masked too.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pan {
    digits: [u8; PAN_LEN_MAX],
    len: u8,
}

impl Pan {
    /// A PAN from 12..=19 ASCII digits.
    pub fn from_digits(digits: &[u8]) -> Option<Pan> {
        if !(PAN_LEN_MIN..=PAN_LEN_MAX).contains(&digits.len())
            || !digits.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        let mut pan = Pan {
            digits: [0; PAN_LEN_MAX],
            len: digits.len() as u8,
        };
        pan.digits[..digits.len()].copy_from_slice(digits);
        Some(pan)
    }

    /// The digits in clear. Handle with care: never log or persist them.
    pub fn as_digits(&self) -> &[u8] {
        &self.digits[..self.len as usize]
    }

    pub fn last4(&self) -> [u8; 4] {
        let d = self.as_digits();
        [
            d[d.len() - 4],
            d[d.len() - 3],
            d[d.len() - 2],
            d[d.len() - 1],
        ]
    }

    /// First six and last four digits, the rest as `*`: `411111******1111`.
    pub fn masked(&self) -> MaskedPan {
        MaskedPan(*self)
    }

    /// True when the Luhn (mod 10) check digit is right.
    pub fn luhn_valid(&self) -> bool {
        let (payload, check) = self.as_digits().split_at(self.as_digits().len() - 1);
        luhn_check_digit(payload) == check[0]
    }
}

/// The Luhn (mod 10) check digit, as an ASCII digit, for `payload`: a card number without
/// its last digit, ASCII digits only.
pub fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &c)| {
            let d = u32::from(c - b'0');
            // Doubling starts at the digit next to the (missing) check digit.
            if i % 2 == 0 {
                let doubled = d * 2;
                doubled / 10 + doubled % 10
            } else {
                d
            }
        })
        .sum();
    b'0' + ((10 - sum % 10) % 10) as u8
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

/// Display form of a PAN with the middle digits hidden.
pub struct MaskedPan(Pan);

impl fmt::Display for MaskedPan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.as_digits();
        let len = digits.len();
        for (i, &c) in digits.iter().enumerate() {
            let shown = i < 6 || i >= len - 4;
            f.write_str(if shown { digit_str(c) } else { "*" })?;
        }
        Ok(())
    }
}

fn digit_str(c: u8) -> &'static str {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    DIGITS[(c.wrapping_sub(b'0') % 10) as usize]
}

/// Short printable text of at most `N` bytes, owned (identifiers, codes, names).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: u8,
}

impl<const N: usize> Text<N> {
    /// Text from printable ASCII of at most `N` bytes.
    pub fn new(value: &[u8]) -> Option<Text<N>> {
        if value.len() > N
            || N > u8::MAX as usize
            || !value.iter().all(|c| (0x20..0x7F).contains(c))
        {
            return None;
        }
        let mut text = Text {
            buf: [0; N],
            len: value.len() as u8,
        };
        text.buf[..value.len()].copy_from_slice(value);
        Some(text)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The text without trailing spaces.
    pub fn trimmed(&self) -> &str {
        self.as_str().trim_end_matches(' ')
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// DE3: transaction type and the accounts it moves money from and to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessingCode {
    pub transaction_type: u8,
    pub from_account: u8,
    pub to_account: u8,
}

/// DE7: transmission date and time in UTC, `MMDDhhmmss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransmissionTime {
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl TransmissionTime {
    fn from_digits(d: &[u8]) -> Option<TransmissionTime> {
        let pair = |i: usize| Some(parse_digits(d.get(i..i + 2)?)? as u8);
        Some(TransmissionTime {
            month: pair(0)?,
            day: pair(2)?,
            hour: pair(4)?,
            minute: pair(6)?,
            second: pair(8)?,
        })
    }

    /// The ten digits as one number, `MMDDhhmmss`.
    pub fn as_number(&self) -> u64 {
        [self.month, self.day, self.hour, self.minute, self.second]
            .iter()
            .fold(0u64, |acc, &p| acc * 100 + p as u64)
    }
}

/// DE12: local time `hhmmss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

/// DE13 and other `MMDD` dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonthDay {
    pub month: u8,
    pub day: u8,
}

/// DE14 or the track 2 expiry, `YYMM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    pub year: u8,
    pub month: u8,
}

/// DE43 split into its 1987 sub-fields; shorter values are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardAcceptor {
    /// Name, trailing spaces removed (up to 25 characters).
    pub name: Text<25>,
    /// City, trailing spaces removed (up to 13 characters).
    pub city: Text<13>,
    /// ISO 3166 alpha-2 country code from the last two characters, when they are letters.
    pub country: Option<[u8; 2]>,
}

/// DE90: identifies the original transaction of a reversal or advice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginalData {
    pub mti: Mti,
    pub stan: u32,
    pub transmission_time: TransmissionTime,
    pub acquirer_id: u64,
    pub forwarding_id: u64,
}

/// DE95: actual amounts after a partial reversal, in minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplacementAmounts {
    pub transaction_amount_minor: i64,
    pub settlement_amount_minor: i64,
    /// Fees as signed minor units: `D` (debit) positive, `C` (credit) negative.
    pub transaction_fee_minor: i64,
    pub settlement_fee_minor: i64,
}

/// One 20-character entry of DE54.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdditionalAmount {
    pub account_type: u8,
    pub amount_type: u8,
    /// ISO 4217 numeric currency code.
    pub currency: u16,
    /// `C` (credit) positive, `D` (debit) negative, as the 1987 standard reads for balances.
    pub amount_minor: i64,
}

/// Entries of DE54, at most `ADDITIONAL_AMOUNTS_MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdditionalAmounts {
    entries: [Option<AdditionalAmount>; ADDITIONAL_AMOUNTS_MAX],
}

/// DE54 holds 120 characters, six entries of 20.
pub const ADDITIONAL_AMOUNTS_MAX: usize = 6;
const ADDITIONAL_AMOUNT_LEN: usize = 20;

impl AdditionalAmounts {
    pub fn iter(&self) -> impl Iterator<Item = &AdditionalAmount> {
        self.entries.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Signed `x+n` amount: `C`/`D` then digits; `debit_positive` chooses the sign convention.
fn signed_amount(value: &[u8], debit_positive: bool) -> Option<i64> {
    let (&sign, digits) = value.split_first()?;
    let magnitude = i64::try_from(parse_digits(digits)?).ok()?;
    match (sign, debit_positive) {
        (b'D', true) | (b'C', false) => Some(magnitude),
        (b'C', true) | (b'D', false) => magnitude.checked_neg(),
        _ => None,
    }
}

impl Message {
    /// Logical value of `field` in a stack buffer, passed to `f`.
    /// ASCII values are their own logical form and are read in place; other charsets are
    /// converted into a stack buffer first (zeroing 1 KiB per view is not free).
    fn with_value<T>(&self, field: u8, f: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        if self.charset() == Charset::Ascii {
            return f(self.raw(field)?);
        }
        let mut buf = [0u8; FIELD_LEN_MAX];
        f(self.value(field, &mut buf)?)
    }

    fn number(&self, field: u8) -> Option<u64> {
        self.with_value(field, parse_digits)
    }

    fn text<const N: usize>(&self, field: u8) -> Option<Text<N>> {
        self.with_value(field, Text::new)
    }

    fn amount(&self, field: u8) -> Option<i64> {
        i64::try_from(self.number(field)?).ok()
    }

    /// PAN from DE2, or from the track 2 data of DE35 (digits before the separator).
    pub fn pan(&self) -> Option<Pan> {
        if self.has(2) {
            return self.with_value(2, Pan::from_digits);
        }
        self.with_value(35, |track| {
            let end = track.iter().position(|&c| c == b'=' || c == b'D')?;
            Pan::from_digits(&track[..end])
        })
    }

    /// DE3.
    pub fn processing_code(&self) -> Option<ProcessingCode> {
        self.with_value(3, |d| {
            Some(ProcessingCode {
                transaction_type: parse_digits(&d[0..2])? as u8,
                from_account: parse_digits(&d[2..4])? as u8,
                to_account: parse_digits(&d[4..6])? as u8,
            })
        })
    }

    /// DE4 in minor units.
    pub fn amount_transaction(&self) -> Option<i64> {
        self.amount(4)
    }

    /// DE5 in minor units.
    pub fn amount_settlement(&self) -> Option<i64> {
        self.amount(5)
    }

    /// DE6 in minor units.
    pub fn amount_cardholder_billing(&self) -> Option<i64> {
        self.amount(6)
    }

    /// DE54 entries; malformed entries (wrong length, bad digits) make the view `None`.
    pub fn additional_amounts(&self) -> Option<AdditionalAmounts> {
        self.with_value(54, |value| {
            if value.len() % ADDITIONAL_AMOUNT_LEN != 0 {
                return None;
            }
            let mut amounts = AdditionalAmounts {
                entries: [None; ADDITIONAL_AMOUNTS_MAX],
            };
            let chunks = value.chunks_exact(ADDITIONAL_AMOUNT_LEN);
            for (slot, entry) in amounts.entries.iter_mut().zip(chunks) {
                *slot = Some(AdditionalAmount {
                    account_type: parse_digits(&entry[0..2])? as u8,
                    amount_type: parse_digits(&entry[2..4])? as u8,
                    currency: parse_digits(&entry[4..7])? as u16,
                    amount_minor: signed_amount(&entry[7..20], false)?,
                });
            }
            Some(amounts)
        })
    }

    /// DE49 as sent; `None` only when the field is absent.
    pub fn currency_transaction(&self) -> Option<CurrencyCode> {
        self.with_value(49, CurrencyCode::from_value)
    }

    /// DE50 as sent; `None` only when the field is absent.
    pub fn currency_settlement(&self) -> Option<CurrencyCode> {
        self.with_value(50, CurrencyCode::from_value)
    }

    /// DE51 as sent; `None` only when the field is absent.
    pub fn currency_cardholder_billing(&self) -> Option<CurrencyCode> {
        self.with_value(51, CurrencyCode::from_value)
    }

    /// DE11.
    pub fn stan(&self) -> Option<u32> {
        Some(self.number(11)? as u32)
    }

    /// DE37.
    pub fn rrn(&self) -> Option<Text<12>> {
        self.text(37)
    }

    /// DE7.
    pub fn transmission_time(&self) -> Option<TransmissionTime> {
        self.with_value(7, TransmissionTime::from_digits)
    }

    /// DE7's ten digits as sent (`MMDDhhmmss`), when `transmission_time` reads it.
    pub fn transmission_time_digits(&self) -> Option<[u8; 10]> {
        self.with_value(7, |d| {
            let digits: [u8; 10] = d.get(..10)?.try_into().ok()?;
            digits.iter().all(u8::is_ascii_digit).then_some(digits)
        })
    }

    /// DE12.
    pub fn local_time(&self) -> Option<LocalTime> {
        self.with_value(12, |d| {
            Some(LocalTime {
                hour: parse_digits(&d[0..2])? as u8,
                minute: parse_digits(&d[2..4])? as u8,
                second: parse_digits(&d[4..6])? as u8,
            })
        })
    }

    /// DE13.
    pub fn local_date(&self) -> Option<MonthDay> {
        self.with_value(13, |d| {
            Some(MonthDay {
                month: parse_digits(&d[0..2])? as u8,
                day: parse_digits(&d[2..4])? as u8,
            })
        })
    }

    /// DE14, or the four digits after the separator of DE35.
    pub fn expiry(&self) -> Option<Expiry> {
        let parse = |d: &[u8]| {
            Some(Expiry {
                year: parse_digits(d.get(0..2)?)? as u8,
                month: parse_digits(d.get(2..4)?)? as u8,
            })
        };
        if self.has(14) {
            return self.with_value(14, parse);
        }
        self.with_value(35, |track| {
            let separator = track.iter().position(|&c| c == b'=' || c == b'D')?;
            parse(track.get(separator + 1..)?)
        })
    }

    /// DE18 merchant category code.
    pub fn mcc(&self) -> Option<u16> {
        Some(self.number(18)? as u16)
    }

    /// DE19 ISO 3166 numeric country code of the acquirer.
    pub fn acquiring_country(&self) -> Option<u16> {
        Some(self.number(19)? as u16)
    }

    /// DE22.
    pub fn pos_entry_mode(&self) -> Option<u16> {
        Some(self.number(22)? as u16)
    }

    /// DE25.
    pub fn pos_condition_code(&self) -> Option<u8> {
        Some(self.number(25)? as u8)
    }

    /// DE32 as sent (leading zeros kept).
    pub fn acquirer_id(&self) -> Option<Text<11>> {
        self.text(32)
    }

    /// DE33 as sent.
    pub fn forwarding_id(&self) -> Option<Text<11>> {
        self.text(33)
    }

    /// DE38.
    pub fn approval_code(&self) -> Option<Text<6>> {
        self.text(38)
    }

    /// DE39.
    pub fn response_code(&self) -> Option<[u8; 2]> {
        self.with_value(39, |v| Some([v[0], v[1]]))
    }

    /// DE41.
    pub fn terminal_id(&self) -> Option<Text<8>> {
        self.text(41)
    }

    /// DE42.
    pub fn merchant_id(&self) -> Option<Text<15>> {
        self.text(42)
    }

    /// DE43: name (25), city (13), country (2). Shorter values are split as far as they go;
    /// the country is taken from the last two characters when they are letters and lie
    /// beyond the name.
    pub fn card_acceptor(&self) -> Option<CardAcceptor> {
        self.with_value(43, |v| {
            let name_end = v.len().min(25);
            let tail = &v[v.len().saturating_sub(2)..];
            let country = (v.len() >= 27 && tail.iter().all(u8::is_ascii_alphabetic))
                .then(|| [tail[0].to_ascii_uppercase(), tail[1].to_ascii_uppercase()]);
            let city_end = if country.is_some() {
                v.len() - 2
            } else {
                v.len()
            };
            let city = v
                .get(name_end..city_end.min(38).max(name_end))
                .unwrap_or(&[]);
            Some(CardAcceptor {
                name: Text::new(trim_spaces(&v[..name_end]))?,
                city: Text::new(trim_spaces(city))?,
                country,
            })
        })
    }

    /// DE90.
    pub fn original_data(&self) -> Option<OriginalData> {
        self.with_value(90, |d| {
            Some(OriginalData {
                mti: Mti::new(parse_digits(&d[0..4])? as u16),
                stan: parse_digits(&d[4..10])? as u32,
                transmission_time: TransmissionTime::from_digits(&d[10..20])?,
                acquirer_id: parse_digits(&d[20..31])?,
                forwarding_id: parse_digits(&d[31..42])?,
            })
        })
    }

    /// DE95. Fee sub-fields that are blank or zeros read as 0.
    pub fn replacement_amounts(&self) -> Option<ReplacementAmounts> {
        self.with_value(95, |d| {
            let fee = |s: &[u8]| {
                if s.iter().all(|&c| c == b' ' || c == b'0') {
                    Some(0)
                } else {
                    signed_amount(s, true)
                }
            };
            Some(ReplacementAmounts {
                transaction_amount_minor: i64::try_from(parse_digits(&d[0..12])?).ok()?,
                settlement_amount_minor: i64::try_from(parse_digits(&d[12..24])?).ok()?,
                transaction_fee_minor: fee(&d[24..33])?,
                settlement_fee_minor: fee(&d[33..42])?,
            })
        })
    }

    /// DE70.
    pub fn network_management_code(&self) -> Option<u16> {
        Some(self.number(70)? as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digits parse exactly up to `u64::MAX` (20 digits) and not past it; anything but a digit,
    /// anywhere, is `None`.
    #[test]
    fn parse_digits_at_its_edges() {
        assert_eq!(parse_digits(b""), None);
        assert_eq!(parse_digits(b"0"), Some(0));
        assert_eq!(parse_digits(b"000000001250"), Some(1_250));
        assert_eq!(
            parse_digits(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(parse_digits(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_digits(b"18446744073709551616"), None);
        assert_eq!(parse_digits(b"00000000000000000001250"), Some(1_250));
        for bad in [
            &b"12a4"[..],
            b"/",
            b":",
            b"1 ",
            b" 1",
            b"123456789012345678x",
        ] {
            assert_eq!(parse_digits(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pan_masks_and_checks_luhn() {
        let pan = Pan::from_digits(b"4111111111111111").unwrap();
        assert_eq!(pan.masked().to_string(), "411111******1111");
        assert_eq!(format!("{pan:?}"), "Pan(411111******1111)");
        assert_eq!(&pan.last4(), b"1111");
        assert!(pan.luhn_valid());
        assert!(!Pan::from_digits(b"4111111111111112").unwrap().luhn_valid());
        assert!(Pan::from_digits(b"41111111111").is_none());
        assert!(Pan::from_digits(b"41111111111111111111").is_none());
        assert!(Pan::from_digits(b"411111111111111a").is_none());
    }

    #[test]
    fn signed_amounts_follow_the_sign_convention() {
        assert_eq!(signed_amount(b"D00000150", true), Some(150));
        assert_eq!(signed_amount(b"C00000150", true), Some(-150));
        assert_eq!(signed_amount(b"C000000001000", false), Some(1000));
        assert_eq!(signed_amount(b"X00000150", true), None);
        assert_eq!(parse_digits(b"99999999999999999999"), None);
    }
}
