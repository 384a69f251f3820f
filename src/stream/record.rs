//! A bar record read back from a Redis replay list, turned back into the
//! fixed-size [`Bar`] and the [`RunId`] it was published with (64 bytes
//! instead of ~220 of text), on the `stream` thread. A record is kept only
//! if encoding it again gives exactly the stored bytes, so a replay after a
//! restart sends what the previous run published, byte for byte.

use serde::Deserialize;

use crate::bars::{Bar, MAX_BAR_JSON_LEN, write_bar};
use crate::json::JsonBuf;
use crate::run_id::RunId;

#[derive(Deserialize)]
struct Record<'a> {
    run: &'a str,
    instrument_token: u32,
    start: &'a str,
    end: &'a str,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: u64,
    ticks: u32,
}

/// `YYYY-MM-DDTHH:MM:SSZ` → ns since the epoch.
fn parse_time(s: &str) -> Option<u64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let days = crate::calendar::dates::parse_date(date).ok()?;
    let mut hms = time.split(':').map(|p| {
        (p.len() == 2 && p.bytes().all(|c| c.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    });
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some((u64::from(days) * 86_400 + h * 3600 + m * 60 + sec) * 1_000_000_000)
}

/// Raw price units of `v` at `divisor` (exactness is checked by the caller).
fn raw(v: f64, divisor: u32) -> Option<u32> {
    let r = (v * f64::from(divisor)).round();
    // In range of u32 (the comparison is exact for these magnitudes).
    (r.is_finite() && (0.0..=f64::from(u32::MAX)).contains(&r)).then_some(r as u32)
}

/// The bar and run of `text`, if it is a record `write_bar` would write
/// exactly so; `scratch` is reused for the check.
pub(super) fn parse(text: &[u8], scratch: &mut JsonBuf) -> Option<(Bar, RunId)> {
    if text.len() > MAX_BAR_JSON_LEN {
        return None;
    }
    let r: Record<'_> = serde_json::from_slice(text).ok()?;
    if r.run.len() != 16 {
        return None;
    }
    let run = RunId(u64::from_str_radix(r.run, 16).ok()?);
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the segment is the low byte"
    )]
    let divisor = crate::tick::price_divisor(r.instrument_token as u8);
    let bar = Bar {
        token: r.instrument_token,
        price_divisor: divisor,
        start_ns: parse_time(r.start)?,
        end_ns: parse_time(r.end)?,
        open: raw(r.open, divisor)?,
        high: raw(r.high, divisor)?,
        low: raw(r.low, divisor)?,
        close: raw(r.close, divisor)?,
        volume: r.volume,
        ticks: r.ticks,
    };
    scratch.clear();
    write_bar(&bar, run, scratch).ok()?;
    (scratch.as_bytes() == text).then_some((bar, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_exactly_or_are_refused() {
        let mut scratch = JsonBuf::with_capacity(4096);
        let mut out = JsonBuf::with_capacity(4096);
        for (token, divisor, open) in [
            (408_065u32, 100u32, 157_370u32),
            (0x0100_0003, 10_000_000, 1),
            (0x0100_0003, 10_000_000, 4_294_967_295),
            (0x0100_0006, 10_000, 727_475),
        ] {
            let bar = Bar {
                token,
                price_divisor: divisor,
                start_ns: 1_764_056_100_000_000_000,
                end_ns: 1_764_056_160_000_000_000,
                open,
                high: open,
                low: 0,
                close: open / 2,
                volume: u64::MAX,
                ticks: 42,
            };
            out.clear();
            write_bar(&bar, RunId(0xdead_beef), &mut out).unwrap();
            assert_eq!(
                parse(out.as_bytes(), &mut scratch),
                Some((bar, RunId(0xdead_beef))),
                "{}",
                String::from_utf8_lossy(out.as_bytes())
            );
        }
        for bad in [
            &b"nope"[..],
            br#"{"type":"bar_1m"}"#,
            // A price with more digits than the divisor allows.
            br#"{"type":"bar_1m","source":"kite","run":"00000000deadbeef","instrument_token":408065,"start":"2025-11-25T07:35:00Z","end":"2025-11-25T07:36:00Z","open":1573.701,"high":1575.0,"low":1570.05,"close":1574.0,"volume":1250,"ticks":42}"#,
            br#"{"type":"bar_1m","source":"kite","run":"00000000deadbeef","instrument_token":408065,"start":"2025-11-25T25:35:00Z","end":"2025-11-25T07:36:00Z","open":1573.7,"high":1575.0,"low":1570.05,"close":1574.0,"volume":1250,"ticks":42}"#,
        ] {
            assert_eq!(parse(bad, &mut scratch), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
