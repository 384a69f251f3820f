//! Tick → JSON, into a caller-owned reused buffer, with no allocation per tick.
//!
//! Runs on the publisher threads and in `panda-feed decode`. The object is the
//! data contract of DESIGN §2 (`schemas/tick.schema.json`): pykiteconnect 5.x
//! keys, present per packet kind exactly as the official parser emits them and
//! in its key order, with three deliberate differences:
//! - prices are the exact decimal `raw / divisor` (`1573.7`, `72.7475`; a whole
//!   value keeps one fractional digit, `1575.0`, so it stays a float for typed
//!   readers); a float parse of that text equals pykiteconnect's value bit for bit;
//! - timestamps are RFC 3339 UTC (`"2021-07-05T05:11:27Z"`), `null` when the raw value is 0;
//! - nothing else differs: `change` is pykiteconnect's f64 percentage (shortest
//!   round-trip text), or the integer `0` when close is 0.

use crate::tick::{DepthLevel, PacketKind, Tick};

/// Upper bound of the encoded length of any tick, in bytes. Callers that
/// reserve this much once never see the encoder allocate.
pub const MAX_TICK_JSON_LEN: usize = 1536;

#[inline]
fn raw(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
}

#[inline]
fn uint(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Writes `raw / divisor` as an exact decimal. `divisor` is a power of ten
/// (100, 10^4 or 10^7); the fraction is trimmed of trailing zeros but keeps at
/// least one digit.
#[inline]
pub fn write_price(out: &mut Vec<u8>, raw_units: u32, divisor: u32) {
    uint(out, raw_units / divisor);
    out.push(b'.');
    let mut frac = raw_units % divisor;
    if frac == 0 {
        out.push(b'0');
        return;
    }
    // Digits of the fraction, most significant first, zero-padded to the
    // divisor's width: 10^k has k fractional digits.
    let mut digits = [b'0'; 10];
    let mut width = 0;
    let mut d = divisor;
    while d > 1 {
        d /= 10;
        width += 1;
    }
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    let mut end = width;
    while end > 1 && digits[end - 1] == b'0' {
        end -= 1;
    }
    out.extend_from_slice(&digits[..end]);
}

/// Writes Unix seconds as a quoted RFC 3339 UTC timestamp, or `null` for 0.
#[inline]
pub fn write_timestamp(out: &mut Vec<u8>, unix_s: u32) {
    if unix_s == 0 {
        raw(out, b"null");
        return;
    }
    let mut b = *b"\"0000-00-00T00:00:00Z\"";
    let (y, m, d) = civil_from_days(unix_s / 86_400);
    let sod = unix_s % 86_400;
    let put2 = |b: &mut [u8; 22], at: usize, v: u32| {
        b[at] = b'0' + (v / 10) as u8;
        b[at + 1] = b'0' + (v % 10) as u8;
    };
    put2(&mut b, 1, y / 100);
    put2(&mut b, 3, y % 100);
    put2(&mut b, 6, m);
    put2(&mut b, 9, d);
    put2(&mut b, 12, sod / 3600);
    put2(&mut b, 15, sod / 60 % 60);
    put2(&mut b, 18, sod % 60);
    out.extend_from_slice(&b);
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
/// Howard Hinnant's `civil_from_days`, restricted to non-negative day counts
/// (a u32 of seconds spans 1970..2106).
#[inline]
const fn civil_from_days(days: u32) -> (u32, u32, u32) {
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

#[inline]
fn key_price(out: &mut Vec<u8>, key: &[u8], raw_units: u32, divisor: u32) {
    raw(out, key);
    write_price(out, raw_units, divisor);
}

#[inline]
fn key_uint(out: &mut Vec<u8>, key: &[u8], v: u32) {
    raw(out, key);
    uint(out, v);
}

#[inline]
fn write_levels(out: &mut Vec<u8>, levels: &[DepthLevel; 5], divisor: u32) {
    out.push(b'[');
    for (i, l) in levels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        key_uint(out, b"{\"quantity\":", l.quantity);
        key_price(out, b",\"price\":", l.price, divisor);
        raw(out, b",\"orders\":");
        uint(out, l.orders);
        out.push(b'}');
    }
    out.push(b']');
}

/// Appends the JSON object of `tick` to `out` (no trailing newline).
///
/// Allocation-free when `out` has [`MAX_TICK_JSON_LEN`] bytes of spare capacity.
///
/// ```
/// use panda_feed::{Tick, PacketKind, json::write_tick};
/// let t = Tick { last_price: 157_370, ..Tick::for_token(408_065, PacketKind::Ltp) };
/// let mut out = Vec::new();
/// write_tick(&t, &mut out);
/// assert_eq!(out, br#"{"tradable":true,"mode":"ltp","instrument_token":408065,"last_price":1573.7}"#);
/// ```
pub fn write_tick(tick: &Tick, out: &mut Vec<u8>) {
    out.reserve(MAX_TICK_JSON_LEN);
    let div = tick.price_divisor;
    raw(
        out,
        if tick.tradable {
            b"{\"tradable\":true"
        } else {
            b"{\"tradable\":false"
        },
    );
    raw(out, b",\"mode\":\"");
    raw(out, tick.mode().as_str().as_bytes());
    key_uint(out, b"\",\"instrument_token\":", tick.token.0);
    key_price(out, b",\"last_price\":", tick.last_price, div);
    let o = &tick.ohlc;
    match tick.kind {
        PacketKind::Ltp => {
            out.push(b'}');
            return;
        }
        PacketKind::IndexQuote | PacketKind::IndexFull => {
            key_price(out, b",\"ohlc\":{\"high\":", o.high, div);
            key_price(out, b",\"low\":", o.low, div);
            key_price(out, b",\"open\":", o.open, div);
            key_price(out, b",\"close\":", o.close, div);
        }
        PacketKind::Quote | PacketKind::Full => {
            key_uint(
                out,
                b",\"last_traded_quantity\":",
                tick.last_traded_quantity,
            );
            key_price(
                out,
                b",\"average_traded_price\":",
                tick.average_traded_price,
                div,
            );
            key_uint(out, b",\"volume_traded\":", tick.volume_traded);
            key_uint(out, b",\"total_buy_quantity\":", tick.total_buy_quantity);
            key_uint(out, b",\"total_sell_quantity\":", tick.total_sell_quantity);
            key_price(out, b",\"ohlc\":{\"open\":", o.open, div);
            key_price(out, b",\"high\":", o.high, div);
            key_price(out, b",\"low\":", o.low, div);
            key_price(out, b",\"close\":", o.close, div);
        }
    }
    raw(out, b"},\"change\":");
    match tick.change_pct() {
        Some(pct) => raw(out, ryu::Buffer::new().format(pct).as_bytes()),
        None => out.push(b'0'),
    }
    match tick.kind {
        PacketKind::IndexFull => {
            raw(out, b",\"exchange_timestamp\":");
            write_timestamp(out, tick.exchange_timestamp);
        }
        PacketKind::Full => {
            raw(out, b",\"last_trade_time\":");
            write_timestamp(out, tick.last_trade_time);
            key_uint(out, b",\"oi\":", tick.oi);
            key_uint(out, b",\"oi_day_high\":", tick.oi_day_high);
            key_uint(out, b",\"oi_day_low\":", tick.oi_day_low);
            raw(out, b",\"exchange_timestamp\":");
            write_timestamp(out, tick.exchange_timestamp);
            raw(out, b",\"depth\":{\"buy\":");
            write_levels(out, &tick.depth.buy, div);
            raw(out, b",\"sell\":");
            write_levels(out, &tick.depth.sell, div);
            out.push(b'}');
        }
        _ => {}
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Depth, Ohlc};

    fn price(raw_units: u32, div: u32) -> String {
        let mut v = Vec::new();
        write_price(&mut v, raw_units, div);
        String::from_utf8(v).unwrap()
    }

    fn ts(s: u32) -> String {
        let mut v = Vec::new();
        write_timestamp(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn prices_are_exact_decimals() {
        assert_eq!(price(157_370, 100), "1573.7");
        assert_eq!(price(157_500, 100), "1575.0");
        assert_eq!(price(0, 100), "0.0");
        assert_eq!(price(1, 100), "0.01");
        assert_eq!(price(727_475_000, 10_000_000), "72.7475");
        assert_eq!(price(1, 10_000_000), "0.0000001");
        assert_eq!(price(3_782_000, 10_000), "378.2");
        assert_eq!(price(u32::MAX, 100), "42949672.95");
        assert_eq!(price(u32::MAX, 10_000_000), "429.4967295");
    }

    #[test]
    fn price_text_parses_to_the_official_float() {
        for &(r, d) in &[
            (157_370u32, 100u32),
            (727_475_000, 10_000_000),
            (7, 10_000),
            (u32::MAX, 10_000),
        ] {
            let parsed: f64 = price(r, d).parse().unwrap();
            assert_eq!(parsed.to_bits(), (f64::from(r) / f64::from(d)).to_bits());
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(ts(0), "null");
        assert_eq!(ts(1), "\"1970-01-01T00:00:01Z\"");
        assert_eq!(ts(1_625_461_887), "\"2021-07-05T05:11:27Z\"");
        assert_eq!(ts(951_782_400), "\"2000-02-29T00:00:00Z\"");
        assert_eq!(ts(u32::MAX), "\"2106-02-07T06:28:15Z\"");
    }

    #[test]
    fn full_tick_layout_and_bound() {
        let lvl = DepthLevel {
            quantity: u32::MAX,
            price: u32::MAX,
            orders: u16::MAX,
        };
        let t = Tick {
            last_price: u32::MAX,
            last_traded_quantity: u32::MAX,
            average_traded_price: u32::MAX,
            volume_traded: u32::MAX,
            total_buy_quantity: u32::MAX,
            total_sell_quantity: u32::MAX,
            ohlc: Ohlc {
                open: u32::MAX,
                high: u32::MAX,
                low: u32::MAX,
                close: 1,
            },
            last_trade_time: u32::MAX,
            oi: u32::MAX,
            oi_day_high: u32::MAX,
            oi_day_low: u32::MAX,
            exchange_timestamp: u32::MAX,
            depth: Depth {
                buy: [lvl; 5],
                sell: [lvl; 5],
            },
            ..Tick::for_token(u32::MAX - 252, PacketKind::Full) // segment 3: longest prices
        };
        let mut out = Vec::new();
        write_tick(&t, &mut out);
        assert!(out.len() <= MAX_TICK_JSON_LEN, "{} bytes", out.len());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["depth"]["sell"][4]["orders"], 65_535);
        assert_eq!(v["exchange_timestamp"], "2106-02-07T06:28:15Z");
    }

    #[test]
    fn close_zero_is_integer_change() {
        let t = Tick {
            last_price: 100,
            ..Tick::for_token(408_065, PacketKind::Quote)
        };
        let mut out = Vec::new();
        write_tick(&t, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains(r#""change":0,"#) || s.ends_with(r#""change":0}"#),
            "{s}"
        );
    }
}
