//! Card numbers: validation of imported numbers and generation of new ones from the BIN.
//!
//! A generated number is the BIN, random digits, and the Luhn check digit; it is returned once
//! in the creation response and never stored (only its keyed hash and last 4 are).

use crate::iso8583::luhn_check_digit;

/// How many random numbers to try before giving up on finding an unused one.
const GENERATE_ATTEMPTS_MAX: usize = 64;

/// Checks an imported number: 12 to 19 digits with a valid Luhn check digit. The error never
/// contains the number.
pub fn validate_number(number: &str) -> Result<(), &'static str> {
    let bytes = number.as_bytes();
    if !(12..=19).contains(&bytes.len()) {
        return Err("must be 12 to 19 digits");
    }
    if !bytes.iter().all(u8::is_ascii_digit) {
        return Err("must contain digits only");
    }
    let (payload, check) = bytes.split_at(bytes.len() - 1);
    if luhn_check_digit(payload) != check[0] {
        return Err("fails the Luhn check");
    }
    Ok(())
}

/// Generates a Luhn-valid number of `len` digits starting with `bin` that `taken` rejects
/// as unused; `None` if every attempt collided.
pub fn generate_number(bin: &str, len: usize, taken: impl Fn(&[u8]) -> bool) -> Option<String> {
    assert!(
        bin.len() + 2 <= len && len <= 19,
        "config validation bounds the BIN and length"
    );
    let mut digits = Vec::with_capacity(len);
    for _ in 0..GENERATE_ATTEMPTS_MAX {
        digits.clear();
        digits.extend_from_slice(bin.as_bytes());
        let mut random = [0u8; 19];
        getrandom::fill(&mut random).ok()?;
        for r in &random[..len - bin.len() - 1] {
            digits.push(b'0' + r % 10);
        }
        let check = luhn_check_digit(&digits);
        digits.push(check);
        if !taken(&digits) {
            return String::from_utf8(digits).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_of_known_numbers() {
        assert_eq!(luhn_check_digit(b"424242424242424"), b'2');
        assert_eq!(luhn_check_digit(b"411111111111111"), b'1');
        assert_eq!(luhn_check_digit(b"7992739871"), b'3');
        assert!(validate_number("4242424242424242").is_ok());
        assert_eq!(
            validate_number("4242424242424241"),
            Err("fails the Luhn check")
        );
        assert_eq!(validate_number("42424242"), Err("must be 12 to 19 digits"));
        assert_eq!(
            validate_number("42424242424242a2"),
            Err("must contain digits only")
        );
    }

    #[test]
    fn generated_numbers_are_valid_and_avoid_taken_ones() {
        for _ in 0..100 {
            let n = generate_number("424242", 16, |_| false).unwrap();
            assert_eq!(n.len(), 16);
            assert!(n.starts_with("424242"));
            assert!(validate_number(&n).is_ok());
        }
        assert_eq!(generate_number("424242", 16, |_| true), None);
    }
}
