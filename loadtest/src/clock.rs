//! UTC calendar fields for DE7, DE12, DE13 and DE37 from the system clock, without a date
//! library: the civil-from-days conversion of the proleptic Gregorian calendar.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC instant split into the fields ISO 8583 messages carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcStamp {
    pub year: i64,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// 1..=366.
    pub day_of_year: u16,
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

impl UtcStamp {
    pub fn now() -> UtcStamp {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        UtcStamp::from_unix_s(secs)
    }

    pub fn from_unix_s(unix_s: u64) -> UtcStamp {
        let days = (unix_s / 86_400) as i64;
        let rem = unix_s % 86_400;
        let (year, month, day) = authswitch::domain::calendar::civil_from_days(days);
        let (month, day) = (month as u8, day as u8);
        const BEFORE: [u16; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap_extra = u16::from(month > 2 && is_leap(year));
        UtcStamp {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            day_of_year: BEFORE[month as usize - 1] + day as u16 + leap_extra,
        }
    }

    /// DE7, `MMDDhhmmss`.
    pub fn transmission(&self) -> u64 {
        self.month_day() * 1_000_000 + self.time_of_day()
    }

    /// DE12, `hhmmss`.
    pub fn time_of_day(&self) -> u64 {
        self.hour as u64 * 10_000 + self.minute as u64 * 100 + self.second as u64
    }

    /// DE13, `MMDD`.
    pub fn month_day(&self) -> u64 {
        self.month as u64 * 100 + self.day as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // 2023-11-14 22:13:20 UTC, day 318.
        let t = UtcStamp::from_unix_s(1_700_000_000);
        assert_eq!((t.year, t.month, t.day), (2023, 11, 14));
        assert_eq!(
            (t.hour, t.minute, t.second, t.day_of_year),
            (22, 13, 20, 318)
        );
        assert_eq!(t.transmission(), 1114221320);
        assert_eq!(t.time_of_day(), 221320);
        assert_eq!(t.month_day(), 1114);
        // 2024-02-29 00:00:00 and 2024-12-31 23:59:59 (leap year).
        let t = UtcStamp::from_unix_s(1_709_164_800);
        assert_eq!((t.year, t.month, t.day, t.day_of_year), (2024, 2, 29, 60));
        let t = UtcStamp::from_unix_s(1_735_689_599);
        assert_eq!((t.month, t.day, t.day_of_year, t.hour), (12, 31, 366, 23));
        let t = UtcStamp::from_unix_s(0);
        assert_eq!((t.year, t.month, t.day, t.day_of_year), (1970, 1, 1, 1));
    }
}
