//! The single time source and the date arithmetic the rest of the crate
//! shares. A leaf: imports nothing from the crate.
//!
//! Runs on every thread that needs a timestamp: the network thread stamps
//! receive times with [`now_ns`], the publishers and the spool stamp
//! failures, the ops side formats times with [`rfc3339_ms`].

/// Wall-clock time in nanoseconds since the Unix epoch (vDSO, no syscall).
/// A clock before 1970 reads as 0; one past 2554 saturates.
#[must_use]
#[inline]
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
/// Howard Hinnant's `civil_from_days`, restricted to non-negative day counts
/// (a u32 of seconds spans 1970..2106).
#[inline]
pub(crate) const fn civil_from_days(days: u32) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// 9999-12-31, a bound on the day count handed to [`civil_from_days`]
/// (u64 nanoseconds end in 2554, well inside it).
const MAX_DAYS: u64 = 2_932_896;

/// `ns` (since the Unix epoch) as RFC 3339 UTC with milliseconds, e.g.
/// `2026-11-23T09:15:00.123Z`. For the ops side (allocates).
#[must_use]
pub fn rfc3339_ms(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let ms = (ns / 1_000_000) % 1000;
    let days = u32::try_from((secs / 86_400).min(MAX_DAYS)).unwrap_or(u32::MAX);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_with_milliseconds() {
        assert_eq!(
            super::rfc3339_ms(1_625_462_487_123_456_789),
            "2021-07-05T05:21:27.123Z"
        );
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn the_edges_of_u64_do_not_overflow() {
        // u64::MAX ns is 2554-07-21T23:34:33.709Z.
        assert_eq!(super::rfc3339_ms(u64::MAX), "2554-07-21T23:34:33.709Z");
        assert_eq!(super::civil_from_days(2_932_896), (9999, 12, 31));
    }
}
