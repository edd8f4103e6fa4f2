//! Merchant countries: ISO 3166-1 numeric (DE19, DE43 trailer) to alpha-2 (what spending
//! controls name), and validation of alpha-2 codes given by the admin API.

use super::country_table::COUNTRIES;

/// Alpha-2 code of the country with this ISO 3166-1 numeric code.
pub fn alpha2_from_numeric(numeric: u16) -> Option<[u8; 2]> {
    COUNTRIES
        .binary_search_by_key(&numeric, |row| row.0)
        .ok()
        .map(|i| COUNTRIES[i].1)
}

/// Alpha-2 code from three ASCII digits (DE19 as sent on the wire).
pub fn alpha2_from_numeric_ascii(digits: &[u8]) -> Option<[u8; 2]> {
    if digits.len() != 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    alpha2_from_numeric(n)
}

/// Whether `code` (uppercase) is an assigned ISO 3166-1 alpha-2 code.
pub fn is_alpha2(code: [u8; 2]) -> bool {
    COUNTRIES.iter().any(|row| row.1 == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_to_alpha2() {
        assert_eq!(alpha2_from_numeric(840), Some(*b"US"));
        assert_eq!(alpha2_from_numeric(826), Some(*b"GB"));
        assert_eq!(alpha2_from_numeric(250), Some(*b"FR"));
        assert_eq!(alpha2_from_numeric(4), Some(*b"AF"));
        assert_eq!(alpha2_from_numeric(999), None);
        assert_eq!(alpha2_from_numeric_ascii(b"276"), Some(*b"DE"));
        assert_eq!(alpha2_from_numeric_ascii(b"040"), Some(*b"AT"));
        assert_eq!(alpha2_from_numeric_ascii(b"84"), None);
        assert_eq!(alpha2_from_numeric_ascii(b"8a0"), None);
    }

    #[test]
    fn alpha2_validation() {
        assert!(is_alpha2(*b"US"));
        assert!(!is_alpha2(*b"us"));
        assert!(!is_alpha2(*b"ZZ"));
    }

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(COUNTRIES.len(), 249);
    }
}
