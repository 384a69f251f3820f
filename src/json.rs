//! Tick → JSON, into a caller-owned reused buffer, with no allocation per tick.
//!
//! Runs on the publisher threads and in `panda-feed decode`. The object is the
//! data contract (`docs/ARCHITECTURE.md`, `schemas/tick.schema.json`): pykiteconnect 5.x
//! keys, present per packet kind exactly as the official parser emits them and
//! in its key order, with three deliberate differences:
//! - prices are the exact decimal `raw / divisor` (`1573.7`, `72.7475`; a whole
//!   value keeps one fractional digit, `1575.0`, so it stays a float for typed
//!   readers); a float parse of that text equals pykiteconnect's value bit for bit;
//! - timestamps are RFC 3339 UTC (`"2021-07-05T05:11:27Z"`), `null` when the raw value is 0;
//! - nothing else differs: `change` is pykiteconnect's f64 percentage (shortest
//!   round-trip text), or the integer `0` when close is 0.

use crate::clock::civil_from_days;
use crate::fields::{FieldSelection, Part};
use crate::run_id::RunId;
use crate::tick::{DepthLevel, PacketKind, Tick};

/// Upper bound of the encoded length of any tick, in bytes (a full CDS tick
/// with every field at `u32::MAX` is 1,121 bytes; `tests::full_tick_layout_and_bound`).
pub const MAX_TICK_JSON_LEN: usize = 1536;

/// A [`JsonBuf`] had less than [`MAX_TICK_JSON_LEN`] bytes left; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonBufFull;

impl std::fmt::Display for JsonBufFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JSON buffer has less than {MAX_TICK_JSON_LEN} bytes left"
        )
    }
}

impl std::error::Error for JsonBufFull {}

/// A fixed-capacity output buffer, allocated once and reused for every tick.
///
/// NB: writes go straight into a preallocated byte array with inline digit
/// formatting; the first encoder, built on `Vec::extend_from_slice`, spent
/// most of its time in small variable-length `memcpy` calls (478 ns → see the
/// README for the current figure of a full tick).
#[derive(Debug)]
pub struct JsonBuf {
    buf: Box<[u8]>,
    len: usize,
}

const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

#[inline]
const fn digit_count(v: u32) -> usize {
    match v {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1_000..=9_999 => 4,
        10_000..=99_999 => 5,
        100_000..=999_999 => 6,
        1_000_000..=9_999_999 => 7,
        10_000_000..=99_999_999 => 8,
        100_000_000..=999_999_999 => 9,
        _ => 10,
    }
}

impl JsonBuf {
    /// A buffer of `capacity` bytes (at least [`MAX_TICK_JSON_LEN`]).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity.max(MAX_TICK_JSON_LEN)].into_boxed_slice(),
            len: 0,
        }
    }

    /// Forgets the contents, keeping the allocation.
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The bytes written since the last [`clear`](Self::clear).
    #[must_use]
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Bytes written.
    #[must_use]
    #[inline]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// `true` when nothing has been written.
    #[must_use]
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that can still be written.
    #[must_use]
    #[inline]
    pub const fn remaining(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Appends raw bytes.
    ///
    /// # Panics
    /// When `s` does not fit; callers check [`remaining`](Self::remaining) first.
    pub fn put(&mut self, s: &[u8]) {
        self.with_writer(|w| w.put(s));
    }

    /// Appends `v` in decimal.
    ///
    /// # Panics
    /// When fewer than 10 bytes remain.
    pub fn put_u32(&mut self, v: u32) {
        self.with_writer(|w| w.put_u32(v));
    }

    /// Appends `raw / divisor` as an exact decimal. `divisor` is a power of
    /// ten (100, 10^4 or 10^7); the fraction is trimmed of trailing zeros but
    /// keeps at least one digit (`1575.0`, `72.7475`, `0.0000001`).
    ///
    /// # Panics
    /// When fewer than 22 bytes remain.
    pub fn put_price(&mut self, raw_units: u32, divisor: u32) {
        self.with_writer(|w| w.put_price(raw_units, divisor));
    }

    /// Appends `v` in decimal.
    ///
    /// # Panics
    /// When fewer than 20 bytes remain.
    pub fn put_u64(&mut self, v: u64) {
        self.with_writer(|w| w.put_u64(v));
    }

    /// Appends Unix seconds as a quoted RFC 3339 UTC timestamp, or `null` for 0.
    ///
    /// # Panics
    /// When fewer than 22 bytes remain.
    pub fn put_timestamp(&mut self, unix_s: u32) {
        self.with_writer(|w| w.put_timestamp(unix_s));
    }

    /// Runs `f` on a cursor over the free space and commits what it wrote.
    #[inline(always)]
    fn with_writer(&mut self, f: impl FnOnce(&mut Writer<'_>)) {
        let mut w = Writer {
            buf: &mut self.buf[self.len..],
            len: 0,
        };
        f(&mut w);
        self.len += w.len;
    }
}

/// A cursor over free buffer space. NB: a local with `len` in a register;
/// formatting through `&mut JsonBuf` stored and reloaded `len` on every call,
/// a serial dependency through memory that cost ~35% of a full tick.
struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    #[inline(always)]
    fn put(&mut self, s: &[u8]) {
        let end = self.len + s.len();
        self.buf[self.len..end].copy_from_slice(s);
        self.len = end;
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    #[inline(always)]
    fn put_u32(&mut self, mut v: u32) {
        let n = digit_count(v);
        let out = &mut self.buf[self.len..self.len + n];
        let mut i = n;
        while v >= 100 {
            let r = (v % 100) as usize * 2;
            v /= 100;
            i -= 2;
            out[i] = DIGIT_PAIRS[r];
            out[i + 1] = DIGIT_PAIRS[r + 1];
        }
        if v >= 10 {
            let r = v as usize * 2;
            out[i - 2] = DIGIT_PAIRS[r];
            out[i - 1] = DIGIT_PAIRS[r + 1];
        } else {
            out[i - 1] = b'0' + v as u8;
        }
        self.len += n;
    }

    /// NB: dispatches to a copy per divisor so the divisions are by constants
    /// (multiply + shift); a runtime `raw / divisor` costs a hardware divide
    /// per price, 23 per full tick.
    #[inline(always)]
    fn put_price(&mut self, raw_units: u32, divisor: u32) {
        match divisor {
            100 => self.put_price_by::<100, 2>(raw_units),
            10_000 => self.put_price_by::<10_000, 4>(raw_units),
            10_000_000 => self.put_price_by::<10_000_000, 7>(raw_units),
            d => self.put_price_slow(raw_units, d),
        }
    }

    #[inline(always)]
    fn put_price_by<const DIV: u32, const WIDTH: usize>(&mut self, raw_units: u32) {
        self.put_u32(raw_units / DIV);
        self.put_fraction(raw_units % DIV, WIDTH);
    }

    #[cold]
    fn put_price_slow(&mut self, raw_units: u32, divisor: u32) {
        let divisor = divisor.max(1);
        self.put_u32(raw_units / divisor);
        self.put_fraction(raw_units % divisor, digit_count(divisor) - 1);
    }

    /// `.` and `frac` as `width` digits, trailing zeros trimmed, at least one digit.
    #[inline(always)]
    fn put_fraction(&mut self, mut frac: u32, mut width: usize) {
        self.byte(b'.');
        if frac == 0 {
            self.byte(b'0');
            return;
        }
        while frac.is_multiple_of(10) {
            frac /= 10;
            width -= 1;
        }
        for _ in digit_count(frac)..width {
            self.byte(b'0');
        }
        self.put_u32(frac);
    }

    #[inline]
    fn put_timestamp(&mut self, unix_s: u32) {
        if unix_s == 0 {
            self.put(b"null");
            return;
        }
        let mut b = *b"\"0000-00-00T00:00:00Z\"";
        let (y, m, d) = civil_from_days(unix_s / 86_400);
        let sod = unix_s % 86_400;
        let put2 = |b: &mut [u8; 22], at: usize, v: u32| {
            let r = v as usize * 2;
            b[at] = DIGIT_PAIRS[r];
            b[at + 1] = DIGIT_PAIRS[r + 1];
        };
        put2(&mut b, 1, y / 100);
        put2(&mut b, 3, y % 100);
        put2(&mut b, 6, m);
        put2(&mut b, 9, d);
        put2(&mut b, 12, sod / 3600);
        put2(&mut b, 15, sod / 60 % 60);
        put2(&mut b, 18, sod % 60);
        self.put(&b);
    }

    #[inline]
    fn put_u64(&mut self, v: u64) {
        let mut b = itoa::Buffer::new();
        self.put(b.format(v).as_bytes());
    }

    /// Nanoseconds since the epoch as a quoted RFC 3339 UTC timestamp with
    /// microseconds (`"2021-07-05T05:21:27.123456Z"`), or `null` for 0.
    #[inline]
    fn put_timestamp_us(&mut self, unix_ns: u64) {
        if unix_ns == 0 {
            self.put(b"null");
            return;
        }
        let secs = u32::try_from(unix_ns / 1_000_000_000).unwrap_or(u32::MAX);
        let micros = (unix_ns % 1_000_000_000 / 1000) as u32;
        let start = self.len;
        self.put_timestamp(secs.max(1)); // ≥ 1: never the `null` form
        // Overwrite the closing `Z"` with `.uuuuuuZ"`.
        self.len = start + 20;
        self.byte(b'.');
        let mut digits = [b'0'; 6];
        let mut m = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        self.put(&digits);
        self.put(b"Z\"");
    }

    #[inline(always)]
    fn key_price(&mut self, key: &[u8], raw_units: u32, divisor: u32) {
        self.put(key);
        self.put_price(raw_units, divisor);
    }

    #[inline(always)]
    fn key_u32(&mut self, key: &[u8], v: u32) {
        self.put(key);
        self.put_u32(v);
    }

    #[inline]
    fn levels(&mut self, levels: &[DepthLevel; 5], divisor: u32) {
        self.byte(b'[');
        for (i, l) in levels.iter().enumerate() {
            self.put(if i == 0 {
                b"{\"quantity\":"
            } else {
                b",{\"quantity\":"
            });
            self.put_u32(l.quantity);
            self.key_price(b",\"price\":", l.price, divisor);
            self.key_u32(b",\"orders\":", u32::from(l.orders));
            self.byte(b'}');
        }
        self.byte(b']');
    }
}

/// Longest envelope [`write_envelope`] can produce.
pub const MAX_ENVELOPE_LEN: usize = MAX_TICK_JSON_LEN + 224;

/// Appends the published Kafka record value of `tick` (`docs/ARCHITECTURE.md`, "The data contract"), the
/// envelope documented by `schemas/envelope.schema.json`:
///
/// `{"type":"market_tick","source":"kite","run":"R","conn":C,"seq":S,`
/// `"received_at":"…Z","recv_ns":N,"data":{…tick…}}`
///
/// `run` is the run's id (16 hex digits), so `(run, conn, seq)` identifies
/// the tick across runs: the consumer's dedupe key;
/// `received_at` is the receive time as RFC 3339 UTC with microseconds;
/// `recv_ns` the same instant in nanoseconds since the Unix epoch (`null` and
/// 0 when unset); `seq` the
/// per-connection tick sequence number and `conn` the connection index.
/// Never allocates.
///
/// # Errors
/// [`JsonBufFull`] when `out` has less than [`MAX_ENVELOPE_LEN`] bytes left;
/// nothing is written then.
///
/// ```
/// use panda_feed::{Tick, PacketKind, json::{JsonBuf, write_envelope}, run_id::RunId};
/// let mut t = Tick { last_price: 157_370, ..Tick::for_token(408_065, PacketKind::Ltp) };
/// t.seq = 7;
/// t.ts_recv_ns = 1_625_462_487_123_456_789;
/// let mut out = JsonBuf::with_capacity(4096);
/// write_envelope(&t, RunId(0x00c0_ffee_0000_0001), &mut out).unwrap();
/// assert_eq!(out.as_bytes(), concat!(
///     r#"{"type":"market_tick","source":"kite","run":"00c0ffee00000001","conn":0,"seq":7,"#,
///     r#""received_at":"2021-07-05T05:21:27.123456Z","recv_ns":1625462487123456789,"#,
///     r#""data":{"tradable":true,"mode":"ltp","instrument_token":408065,"last_price":1573.7}}"#,
/// ).as_bytes());
/// ```
pub fn write_envelope(tick: &Tick, run: RunId, out: &mut JsonBuf) -> Result<(), JsonBufFull> {
    write_envelope_with(tick, run, FieldSelection::ALL, out)
}

/// [`write_envelope`] with only the optional parts `fields` selects for the
/// tick's mode (`[fields]`, [`crate::fields`]): an unselected part's keys
/// are left out, never written as `null`. [`FieldSelection::ALL`] writes
/// exactly what [`write_envelope`] writes. Never allocates.
///
/// # Errors
/// [`JsonBufFull`] when `out` has less than [`MAX_ENVELOPE_LEN`] bytes left;
/// nothing is written then.
///
/// ```
/// use panda_feed::{Tick, PacketKind, Mode, json::{JsonBuf, write_envelope_with}, run_id::RunId};
/// use panda_feed::fields::{FieldSelection, Part};
/// let t = Tick { last_price: 157_370, ..Tick::for_token(408_065, PacketKind::Quote) };
/// let no_ohlc = FieldSelection::ALL.with(Mode::Quote, Part::Ohlc, false);
/// let mut out = JsonBuf::with_capacity(4096);
/// write_envelope_with(&t, RunId(1), no_ohlc, &mut out).unwrap();
/// let text = std::str::from_utf8(out.as_bytes()).unwrap();
/// assert!(!text.contains("ohlc") && text.contains(r#""change":0}}"#));
/// ```
pub fn write_envelope_with(
    tick: &Tick,
    run: RunId,
    fields: FieldSelection,
    out: &mut JsonBuf,
) -> Result<(), JsonBufFull> {
    if out.remaining() < MAX_ENVELOPE_LEN {
        return Err(JsonBufFull);
    }
    out.with_writer(|w| {
        w.put(br#"{"type":"market_tick","source":"kite","run":""#);
        w.put(&run.hex());
        w.put(br#"","conn":"#);
        w.put_u32(u32::from(tick.conn));
        w.put(br#","seq":"#);
        w.put_u64(tick.seq);
        w.put(br#","received_at":"#);
        w.put_timestamp_us(tick.ts_recv_ns);
        w.put(br#","recv_ns":"#);
        w.put_u64(tick.ts_recv_ns);
        w.put(br#","data":"#);
        w.tick(tick, fields);
        w.byte(b'}');
    });
    Ok(())
}

/// Appends the JSON object of `tick` to `out` (no trailing newline).
///
/// Never allocates.
///
/// # Errors
/// [`JsonBufFull`] when `out` has less than [`MAX_TICK_JSON_LEN`] bytes left;
/// nothing is written then.
///
/// ```
/// use panda_feed::{Tick, PacketKind, json::{JsonBuf, write_tick}};
/// let t = Tick { last_price: 157_370, ..Tick::for_token(408_065, PacketKind::Ltp) };
/// let mut out = JsonBuf::with_capacity(4096);
/// write_tick(&t, &mut out).unwrap();
/// assert_eq!(out.as_bytes(), br#"{"tradable":true,"mode":"ltp","instrument_token":408065,"last_price":1573.7}"#);
/// ```
pub fn write_tick(tick: &Tick, out: &mut JsonBuf) -> Result<(), JsonBufFull> {
    write_tick_with(tick, FieldSelection::ALL, out)
}

/// [`write_tick`] with only the optional parts `fields` selects for the
/// tick's mode (see [`write_envelope_with`]). Never allocates.
///
/// # Errors
/// [`JsonBufFull`] when `out` has less than [`MAX_TICK_JSON_LEN`] bytes left;
/// nothing is written then.
pub fn write_tick_with(
    tick: &Tick,
    fields: FieldSelection,
    out: &mut JsonBuf,
) -> Result<(), JsonBufFull> {
    if out.remaining() < MAX_TICK_JSON_LEN {
        return Err(JsonBufFull);
    }
    out.with_writer(|w| w.tick(tick, fields));
    Ok(())
}

impl Writer<'_> {
    /// NB: the selection is tested once per part, on bits loaded once per
    /// tick; with every part on the branches are always taken and the
    /// all-on path writes the same bytes with the same calls as before
    /// selection existed (README "Performance": `json/full`, `json/full_no_depth`).
    fn tick(&mut self, tick: &Tick, fields: FieldSelection) {
        const DEPTH: u8 = Part::Depth as u8;
        const OI: u8 = Part::Oi as u8;
        const OHLC: u8 = Part::Ohlc as u8;
        const TIMESTAMPS: u8 = Part::Timestamps as u8;
        let out = self;
        let div = tick.price_divisor;
        let mode = tick.kind.mode();
        let sel = fields.parts_of(mode);
        out.put(if tick.tradable {
            b"{\"tradable\":true"
        } else {
            b"{\"tradable\":false"
        });
        out.put(match mode {
            crate::Mode::Ltp => b",\"mode\":\"ltp\"",
            crate::Mode::Quote => b",\"mode\":\"quote\"",
            crate::Mode::Full => b",\"mode\":\"full\"",
        });
        out.key_u32(b",\"instrument_token\":", tick.token.0);
        out.key_price(b",\"last_price\":", tick.last_price, div);
        let o = &tick.ohlc;
        match tick.kind {
            PacketKind::Ltp => {
                out.byte(b'}');
                return;
            }
            PacketKind::IndexQuote | PacketKind::IndexFull => {
                if sel & OHLC != 0 {
                    out.key_price(b",\"ohlc\":{\"high\":", o.high, div);
                    out.key_price(b",\"low\":", o.low, div);
                    out.key_price(b",\"open\":", o.open, div);
                    out.key_price(b",\"close\":", o.close, div);
                }
            }
            PacketKind::Quote | PacketKind::Full => {
                out.key_u32(b",\"last_traded_quantity\":", tick.last_traded_quantity);
                out.key_price(
                    b",\"average_traded_price\":",
                    tick.average_traded_price,
                    div,
                );
                out.key_u32(b",\"volume_traded\":", tick.volume_traded);
                out.key_u32(b",\"total_buy_quantity\":", tick.total_buy_quantity);
                out.key_u32(b",\"total_sell_quantity\":", tick.total_sell_quantity);
                if sel & OHLC != 0 {
                    out.key_price(b",\"ohlc\":{\"open\":", o.open, div);
                    out.key_price(b",\"high\":", o.high, div);
                    out.key_price(b",\"low\":", o.low, div);
                    out.key_price(b",\"close\":", o.close, div);
                }
            }
        }
        // The `}` closing `ohlc` rides with the next key: one copy, as before.
        out.put(if sel & OHLC != 0 {
            b"},\"change\":"
        } else {
            b",\"change\":"
        });
        match tick.change_pct() {
            // `change_pct` is finite: close > 0 and both prices are finite.
            Some(pct) => out.put(ryu::Buffer::new().format(pct).as_bytes()),
            None => out.byte(b'0'),
        }
        match tick.kind {
            PacketKind::IndexFull if sel & TIMESTAMPS != 0 => {
                out.put(b",\"exchange_timestamp\":");
                out.put_timestamp(tick.exchange_timestamp);
            }
            PacketKind::Full => {
                if sel & TIMESTAMPS != 0 {
                    out.put(b",\"last_trade_time\":");
                    out.put_timestamp(tick.last_trade_time);
                }
                if sel & OI != 0 {
                    out.key_u32(b",\"oi\":", tick.oi);
                    out.key_u32(b",\"oi_day_high\":", tick.oi_day_high);
                    out.key_u32(b",\"oi_day_low\":", tick.oi_day_low);
                }
                if sel & TIMESTAMPS != 0 {
                    out.put(b",\"exchange_timestamp\":");
                    out.put_timestamp(tick.exchange_timestamp);
                }
                if sel & DEPTH != 0 {
                    out.put(b",\"depth\":{\"buy\":");
                    out.levels(&tick.depth.buy, div);
                    out.put(b",\"sell\":");
                    out.levels(&tick.depth.sell, div);
                    out.byte(b'}');
                }
            }
            _ => {}
        }
        out.byte(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Depth, Ohlc};

    fn price(raw_units: u32, div: u32) -> String {
        let mut b = JsonBuf::with_capacity(0);
        b.put_price(raw_units, div);
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    fn ts(s: u32) -> String {
        let mut b = JsonBuf::with_capacity(0);
        b.put_timestamp(s);
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    fn encode(t: &Tick) -> Vec<u8> {
        let mut b = JsonBuf::with_capacity(0);
        write_tick(t, &mut b).unwrap();
        b.as_bytes().to_vec()
    }

    #[test]
    fn integers_in_decimal() {
        for v in [
            0u32,
            1,
            9,
            10,
            99,
            100,
            12_345,
            999_999_999,
            1_000_000_000,
            u32::MAX,
        ] {
            let mut b = JsonBuf::with_capacity(0);
            b.put_u32(v);
            assert_eq!(b.as_bytes(), v.to_string().as_bytes());
        }
    }

    #[test]
    fn full_buffer_is_an_error_not_a_panic() {
        let mut b = JsonBuf::with_capacity(0);
        b.put(&[b' '; 100]);
        let t = Tick::for_token(1, PacketKind::Full);
        assert_eq!(write_tick(&t, &mut b), Err(JsonBufFull));
        assert_eq!(b.len(), 100, "nothing written");
    }

    #[test]
    fn prices_are_exact_decimals() {
        assert_eq!(price(157_370, 100), "1573.7");
        assert_eq!(price(157_500, 100), "1575.0");
        assert_eq!(price(0, 100), "0.0");
        assert_eq!(price(1, 100), "0.01");
        assert_eq!(price(10, 100), "0.1");
        assert_eq!(price(1_005, 100), "10.05");
        assert_eq!(price(70_000, 10_000_000), "0.007");
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
        let out = encode(&t);
        assert!(out.len() <= MAX_TICK_JSON_LEN, "{} bytes", out.len());
        assert_eq!(
            out.len(),
            1121,
            "the longest tick; update the MAX_TICK_JSON_LEN doc"
        );
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
        let s = String::from_utf8(encode(&t)).unwrap();
        assert!(
            s.contains(r#""change":0,"#) || s.ends_with(r#""change":0}"#),
            "{s}"
        );
    }
}
