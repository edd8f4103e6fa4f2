//! UTC calendar windows for spending limits, as Stripe counts them: daily from 00:00 UTC,
//! weekly from Sunday 00:00 UTC, monthly from the 1st, yearly from January 1. Pure integer
//! arithmetic on Unix seconds (proleptic Gregorian calendar, days-from-civil conversion).

const DAY_S: i64 = 86_400;

/// (year, month 1..=12, day 1..=31) of a day number counted from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each 400-year era's year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Day number (from 1970-01-01) of a civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of 00:00 UTC on the first day of the given month.
pub fn month_start_s(year: i64, month: u32) -> i64 {
    days_from_civil(year, month, 1) * DAY_S
}

/// Start of the UTC day containing `now_s`.
pub fn day_start_s(now_s: i64) -> i64 {
    now_s.div_euclid(DAY_S) * DAY_S
}

/// Start of the week (Sunday 00:00 UTC) containing `now_s`.
pub fn week_start_s(now_s: i64) -> i64 {
    let days = now_s.div_euclid(DAY_S);
    // 1970-01-01 was a Thursday: weekday 4 when Sunday is 0.
    let weekday = (days + 4).rem_euclid(7);
    (days - weekday) * DAY_S
}

/// Start of the calendar month (1st, 00:00 UTC) containing `now_s`.
pub fn month_start_of_s(now_s: i64) -> i64 {
    month_and_year_start_s(now_s.div_euclid(DAY_S)).0
}

/// Start of the calendar year (January 1, 00:00 UTC) containing `now_s`.
pub fn year_start_of_s(now_s: i64) -> i64 {
    month_and_year_start_s(now_s.div_euclid(DAY_S)).1
}

thread_local! {
    /// The last day asked for and its (month start, year start): a shard decides its
    /// authorizations on the same day over and over, and the civil-date conversion is a
    /// chain of divisions on every monthly or yearly limit. `i64::MIN` is no day.
    static LAST_DAY: std::cell::Cell<(i64, i64, i64)> =
        const { std::cell::Cell::new((i64::MIN, 0, 0)) };
}

/// (month start, year start) of day number `days`, memoized for the last day asked.
fn month_and_year_start_s(days: i64) -> (i64, i64) {
    LAST_DAY.with(|last| {
        let (day, month_start, year_start) = last.get();
        if day == days {
            return (month_start, year_start);
        }
        let (y, m, _) = civil_from_days(days);
        let starts = (month_start_s(y, m), month_start_s(y, 1));
        last.set((days, starts.0, starts.1));
        starts
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memoized_starts_follow_the_day_asked() {
        // 2024-02-29 12:00, then 2024-03-01 00:00 (next month), then back, then 2025-01-01.
        let leap = 19_782 * DAY_S + 43_200;
        assert_eq!(month_start_of_s(leap), days_from_civil(2024, 2, 1) * DAY_S);
        assert_eq!(year_start_of_s(leap), days_from_civil(2024, 1, 1) * DAY_S);
        let march = 19_783 * DAY_S;
        assert_eq!(month_start_of_s(march), days_from_civil(2024, 3, 1) * DAY_S);
        assert_eq!(
            month_start_of_s(march - 1),
            days_from_civil(2024, 2, 1) * DAY_S
        );
        let new_year = days_from_civil(2025, 1, 1) * DAY_S;
        assert_eq!(year_start_of_s(new_year), new_year);
        assert_eq!(
            year_start_of_s(new_year - 1),
            days_from_civil(2024, 1, 1) * DAY_S
        );
        assert_eq!(
            month_start_of_s(new_year - 1),
            days_from_civil(2024, 12, 1) * DAY_S
        );
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for d in -800_000..800_000i64 {
            if d % 997 == 0 {
                let (y, m, dd) = civil_from_days(d);
                assert_eq!(days_from_civil(y, m, dd), d);
            }
        }
    }

    #[test]
    fn window_starts() {
        // 2024-03-16 is a Saturday; 2024-03-17 a Sunday.
        let sat_end = days_from_civil(2024, 3, 16) * DAY_S + DAY_S - 1;
        let sun = days_from_civil(2024, 3, 17) * DAY_S;
        assert_eq!(week_start_s(sat_end), days_from_civil(2024, 3, 10) * DAY_S);
        assert_eq!(week_start_s(sun), sun);
        assert_eq!(day_start_s(sun + 5), sun);
        assert_eq!(month_start_of_s(sun), month_start_s(2024, 3));
        assert_eq!(year_start_of_s(sun), month_start_s(2024, 1));
        assert_eq!(month_start_s(2024, 1), 1_704_067_200);
    }
}
