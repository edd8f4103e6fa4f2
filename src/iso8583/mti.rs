//! Message type indicator (MTI): version, class, function and origin as four digits.

use std::fmt;

/// An MTI held as its decimal value: `0100` is `Mti(100)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mti(u16);

/// Largest four-digit MTI value.
pub const MTI_VALUE_MAX: u16 = 9999;

impl Mti {
    pub const AUTHORIZATION_REQUEST: Mti = Mti(100);
    pub const AUTHORIZATION_REQUEST_REPEAT: Mti = Mti(101);
    pub const AUTHORIZATION_RESPONSE: Mti = Mti(110);
    pub const AUTHORIZATION_ADVICE: Mti = Mti(120);
    pub const AUTHORIZATION_ADVICE_REPEAT: Mti = Mti(121);
    pub const AUTHORIZATION_ADVICE_RESPONSE: Mti = Mti(130);
    pub const FINANCIAL_REQUEST: Mti = Mti(200);
    pub const FINANCIAL_REQUEST_REPEAT: Mti = Mti(201);
    pub const FINANCIAL_RESPONSE: Mti = Mti(210);
    pub const REVERSAL_REQUEST: Mti = Mti(400);
    pub const REVERSAL_REQUEST_REPEAT: Mti = Mti(401);
    pub const REVERSAL_RESPONSE: Mti = Mti(410);
    pub const REVERSAL_ADVICE: Mti = Mti(420);
    pub const REVERSAL_ADVICE_REPEAT: Mti = Mti(421);
    pub const REVERSAL_ADVICE_RESPONSE: Mti = Mti(430);
    pub const NETWORK_MANAGEMENT_REQUEST: Mti = Mti(800);
    pub const NETWORK_MANAGEMENT_RESPONSE: Mti = Mti(810);

    /// `value` is the MTI read as a decimal number (0100 -> 100). Values above 9999 are a
    /// programming error.
    pub const fn new(value: u16) -> Mti {
        assert!(value <= MTI_VALUE_MAX, "an MTI has four digits");
        Mti(value)
    }

    pub const fn value(self) -> u16 {
        self.0
    }

    /// The four ASCII digits of the MTI.
    pub fn digits(self) -> [u8; 4] {
        let v = self.0;
        [
            b'0' + (v / 1000) as u8,
            b'0' + (v / 100 % 10) as u8,
            b'0' + (v / 10 % 10) as u8,
            b'0' + (v % 10) as u8,
        ]
    }

    /// The response MTI for a request or advice the switch answers; `None` otherwise.
    pub fn response(self) -> Option<Mti> {
        let response = match self.0 {
            100 | 101 => 110,
            120 | 121 => 130,
            200 | 201 => 210,
            400 | 401 => 410,
            420 | 421 => 430,
            800 => 810,
            _ => return None,
        };
        Some(Mti(response))
    }

    /// True for repeats (retransmissions): the last digit, the origin, is 1 (`0101`, `0401`).
    pub fn is_repeat(self) -> bool {
        self.0 % 10 == 1
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mti({:04})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_follow_the_1987_pairs() {
        let pairs = [
            (100, Some(110)),
            (101, Some(110)),
            (120, Some(130)),
            (121, Some(130)),
            (200, Some(210)),
            (201, Some(210)),
            (400, Some(410)),
            (401, Some(410)),
            (420, Some(430)),
            (421, Some(430)),
            (800, Some(810)),
            (110, None),
            (810, None),
            (430, None),
        ];
        for (request, response) in pairs {
            assert_eq!(
                Mti::new(request).response().map(Mti::value),
                response,
                "{request}"
            );
        }
    }

    #[test]
    fn displays_four_digits() {
        assert_eq!(Mti::new(100).to_string(), "0100");
        assert_eq!(format!("{:?}", Mti::new(810)), "Mti(0810)");
        assert_eq!(&Mti::new(420).digits(), b"0420");
        assert!(Mti::new(101).is_repeat());
        assert!(!Mti::new(100).is_repeat());
    }
}
