//! Scenario helpers of the mock exchange: a settable market clock
//! ([`parse_clock`]: start the market at, say, 15:29:50 IST to cross the
//! close), replay of a framed recording ([`read_framed`]) and order
//! postbacks on demand ([`order_frame`], the shape of
//! docs/KITE_PROTOCOL.md §3). Test infrastructure, on the caller's thread.

use serde_json::json;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`), or `None` before 1970.
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<u32> {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u32::try_from(era * 146_097 + doe - 719_468).ok()
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS` followed by `Z` or a `±HH:MM`
/// offset (`2026-11-25T15:29:50+05:30`).
///
/// # Errors
/// Anything else, with the expected form.
pub fn parse_clock(s: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "{s:?} is not a time like 2026-11-25T15:29:50+05:30 (or ...Z for UTC), at or \
             after 1970"
        )
    };
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let t = s.get(r).ok_or_else(bad)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let max_day = match mo {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => 0,
    };
    if d == 0 || d > max_day || h > 23 || mi > 59 || se > 59 {
        return Err(bad());
    }
    let offset: i64 = match &s[19..] {
        "Z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh = i64::from(num(20..22)?);
            let om = i64::from(num(23..25)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(i64::from(y), mo, d).ok_or_else(bad)?;
    let secs = i64::from(days) * 86_400 + i64::from(h * 3600 + mi * 60 + se) - offset;
    u32::try_from(secs).map_err(|_| bad())
}

/// The messages of a framed recording (`--record`, or a generated corpus:
/// each a u32 big-endian length, then the message), for `--replay`.
///
/// # Errors
/// The file cannot be read, or a record is truncated or longer than
/// `max_message` bytes: named, with its offset.
pub fn read_framed(
    path: &std::path::Path,
    max_message: usize,
) -> Result<Vec<tungstenite::Bytes>, String> {
    let data = std::fs::read(path)
        .map_err(|e| format!("cannot read replay file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let bad = |what: &str| {
            format!(
                "replay file {} is not a framed recording: {what} at byte {at}",
                path.display()
            )
        };
        let len = data
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| bad("a truncated length"))?;
        if len > max_message {
            return Err(bad(&format!(
                "a record of {len} bytes (over {max_message})"
            )));
        }
        let msg = data
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| bad("a truncated record"))?;
        out.push(tungstenite::Bytes::copy_from_slice(msg));
        at += 4 + len;
    }
    Ok(out)
}

/// An `order` text frame for `order_id` with `status` (`OPEN`, `COMPLETE`,
/// `CANCELLED`, `REJECTED`, ...), stamped `at_s` (Unix seconds, shown in
/// IST as Kite does).
#[must_use]
pub fn order_frame(order_id: &str, status: &str, at_s: u32) -> String {
    let ist = crate::clock::rfc3339_ms((u64::from(at_s) + 19_800) * 1_000_000_000);
    // "2026-11-25 15:29:50", IST, as Kite's postbacks write it.
    let ts = format!("{} {}", &ist[..10], &ist[11..19]);
    let filled = if status == "COMPLETE" { 1 } else { 0 };
    json!({
        "type": "order",
        "data": {
            "user_id": "AB1234",
            "app_id": 1234,
            "placed_by": "AB1234",
            "order_id": order_id,
            "exchange_order_id": format!("1{order_id}"),
            "parent_order_id": null,
            "status": status,
            "status_message": null,
            "status_message_raw": null,
            "order_timestamp": ts,
            "exchange_update_timestamp": ts,
            "exchange_timestamp": ts,
            "variety": "regular",
            "exchange": "NSE",
            "tradingsymbol": "INFY",
            "instrument_token": 408_065,
            "order_type": "LIMIT",
            "transaction_type": "BUY",
            "validity": "DAY",
            "product": "CNC",
            "quantity": 1,
            "disclosed_quantity": 0,
            "price": 1500.0,
            "trigger_price": 0,
            "average_price": if filled == 1 { 1500.0 } else { 0.0 },
            "filled_quantity": filled,
            "pending_quantity": 1 - filled,
            "cancelled_quantity": 0,
            "unfilled_quantity": 0,
            "market_protection": 0,
            "meta": {},
            "tag": null,
            "guid": format!("mock-{order_id}"),
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_times_parse_with_their_offset() {
        // 2026-11-25T15:29:50+05:30 = 09:59:50Z (`date -d ... +%s`: 1795600790).
        assert_eq!(parse_clock("2026-11-25T15:29:50+05:30"), Ok(1_795_600_790));
        assert_eq!(parse_clock("2026-11-25T09:59:50Z"), Ok(1_795_600_790));
        assert_eq!(parse_clock("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_clock("2024-02-29T00:00:00Z"), Ok(1_709_164_800));
        for bad in [
            "2026-11-25 15:29:50Z",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T15:29:50",
            "2026-11-25T15:29:50+5:30",
            "1969-12-31T23:59:59Z",
            "2026-11-25T15:29:50+05:30x",
            "+026-11-25T15:29:50Z",
            "",
        ] {
            assert!(parse_clock(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn order_frames_are_kite_shaped() {
        let f: serde_json::Value = serde_json::from_str(&order_frame("42", "COMPLETE", 0)).unwrap();
        assert_eq!(f["type"], "order");
        assert_eq!(f["data"]["order_id"], "42");
        assert_eq!(f["data"]["order_timestamp"], "1970-01-01 05:30:00");
        assert_eq!(f["data"]["filled_quantity"], 1);
    }
}
