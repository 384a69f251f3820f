//! Civil-date arithmetic of the calendar: day numbers (days since
//! 1970-01-01), weekdays, `YYYY-MM-DD` / `HH:MM` parsing, and the US
//! daylight-time rule MCX's closing time follows. Pure; runs wherever the
//! calendar is built (main thread, ops side).

use crate::clock::civil_from_days;

/// A civil date (year, month, day).
pub type Ymd = (u32, u32, u32);

/// (year, month, day) → days since 1970-01-01 (Howard Hinnant's
/// `days_from_civil`), or `None` before 1970 or for an invalid date.
#[must_use]
pub fn days_from_civil(y: u32, m: u32, d: u32) -> Option<u32> {
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Days since 1970-01-01 → (year, month, day).
#[must_use]
pub const fn civil(days: u32) -> Ymd {
    civil_from_days(days)
}

const fn is_leap(y: u32) -> bool {
    y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400))
}

const fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Day of the week, 0 = Monday … 6 = Sunday (1970-01-01 was a Thursday).
#[must_use]
pub const fn weekday(days: u32) -> u32 {
    (days + 3) % 7
}

/// Saturday or Sunday.
#[must_use]
pub const fn is_weekend(days: u32) -> bool {
    weekday(days) >= 5
}

/// English name of the weekday of `days`.
#[must_use]
pub const fn weekday_name(days: u32) -> &'static str {
    match weekday(days) {
        0 => "Monday",
        1 => "Tuesday",
        2 => "Wednesday",
        3 => "Thursday",
        4 => "Friday",
        5 => "Saturday",
        _ => "Sunday",
    }
}

/// The `n`th (1-based) Sunday of a month.
fn nth_sunday(y: u32, m: u32, n: u32) -> Option<u32> {
    let first = days_from_civil(y, m, 1)?;
    Some(first + (6 - weekday(first)) + 7 * (n - 1))
}

/// Whether the US is on daylight time on the civil date `days`: from the
/// second Sunday of March to the day before the first Sunday of November
/// (the rule since 2007). Computed, not tabulated. MCX closes at 23:55 IST
/// on such days, else at 23:30.
#[must_use]
pub fn us_daylight_time(days: u32) -> bool {
    let (y, _, _) = civil(days);
    match (nth_sunday(y, 3, 2), nth_sunday(y, 11, 1)) {
        (Some(start), Some(end)) => (start..end).contains(&days),
        _ => false,
    }
}

/// Parses `YYYY-MM-DD` into a day number.
///
/// # Errors
/// Not that shape, or not a date (e.g. 2026-02-30), or before 1970.
pub fn parse_date(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a date YYYY-MM-DD (1970 or later)");
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| {
        s.get(r)
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|t| t.parse::<u32>().ok())
    };
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) => days_from_civil(y, m, d).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// `days` as `YYYY-MM-DD`.
#[must_use]
pub fn format_date(days: u32) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `HH:MM` (00:00..=23:59) into minutes after midnight.
///
/// # Errors
/// Not that shape, or out of range.
pub fn parse_hhmm(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time HH:MM (00:00 to 23:59)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Minutes after midnight as `HH:MM`.
#[must_use]
pub fn format_hhmm(min: u32) -> String {
    format!("{:02}:{:02}", min / 60, min % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_weekdays() {
        for days in [0, 59, 365, 10_957, 20_454, 20_813, 2_932_896] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), Some(days));
        }
        assert_eq!(parse_date("2026-11-25"), Ok(20_782));
        assert_eq!(weekday_name(20_782), "Wednesday");
        assert_eq!(weekday_name(0), "Thursday");
        assert!(is_weekend(parse_date("2026-11-28").unwrap()));
        assert!(parse_date("2026-02-29").is_err());
        assert!(parse_date("2028-02-29").is_ok());
        assert!(parse_date("1969-12-31").is_err());
        assert!(parse_date("2026-1-05").is_err());
        assert!(parse_date("2026-01-0x").is_err());
        assert_eq!(format_date(20_782), "2026-11-25");
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(parse_hhmm("09:15"), Ok(555));
        assert_eq!(parse_hhmm("23:59"), Ok(1439));
        for bad in ["24:00", "9:15", "09:60", "0915", "ab:cd", "+9:15"] {
            assert!(parse_hhmm(bad).is_err(), "{bad}");
        }
        assert_eq!(format_hhmm(1435), "23:55");
    }

    #[test]
    fn us_daylight_time_follows_the_sunday_rule() {
        let d = |s| parse_date(s).unwrap();
        // 2026: 8 March to 1 November; 2027: 14 March to 7 November.
        assert!(!us_daylight_time(d("2026-03-07")));
        assert!(us_daylight_time(d("2026-03-08")));
        assert!(us_daylight_time(d("2026-10-31")));
        assert!(!us_daylight_time(d("2026-11-01")));
        assert!(!us_daylight_time(d("2027-03-13")));
        assert!(us_daylight_time(d("2027-03-14")));
        assert!(us_daylight_time(d("2027-11-06")));
        assert!(!us_daylight_time(d("2027-11-07")));
        assert!(!us_daylight_time(d("2026-01-15")));
        assert!(us_daylight_time(d("2026-07-15")));
    }
}
