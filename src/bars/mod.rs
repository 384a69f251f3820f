//! One-minute bars (README, "Bars"): per instrument, OHLC of `last_price`,
//! volume from `volume_traded` deltas and a tick count, aligned to exchange
//! minutes and emitted once the minute is over and its grace window has
//! passed.
//!
//! Threads: bars are built on the publisher thread that owns the instrument
//! (its ticks already arrive there, in order), published to `bars.topic`
//! by the same producer, and handed to the ops side (the downstream stream
//! and the Redis replay lists) over a bounded SPSC ring per publisher
//! ([`BarTx`] → [`BarRx`]; full = dropped from the hand-off and counted,
//! never waited on).

pub mod book;

pub use book::{BarBook, BarClock, BookStats};

use crate::json::JsonBuf;
use crate::run_id::RunId;

/// One closed one-minute bar. Prices are raw units of the instrument's
/// `price_divisor`, like a [`Tick`](crate::Tick)'s. Fixed size, `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bar {
    /// Instrument token.
    pub token: u32,
    /// Divisor of every price field (100, 10^4 or 10^7).
    pub price_divisor: u32,
    /// Start of the minute, ns since the Unix epoch (inclusive).
    pub start_ns: u64,
    /// End of the minute, ns since the Unix epoch (exclusive): `start + 60 s`.
    pub end_ns: u64,
    /// First `last_price` of the minute.
    pub open: u32,
    /// Highest `last_price`.
    pub high: u32,
    /// Lowest `last_price`.
    pub low: u32,
    /// Last `last_price`.
    pub close: u32,
    /// Volume traded in the minute (sum of `volume_traded` increases).
    pub volume: u64,
    /// Ticks folded into the bar.
    pub ticks: u32,
}

/// What the engine needs to build bars (from `[bars]` and the calendar).
#[derive(Debug, Clone, Default)]
pub struct BarSettings {
    /// Build bars (default off for a bare engine; `run` turns them on per
    /// `bars.enabled`).
    pub enabled: bool,
    /// The bar topic.
    pub topic: String,
    /// How long after its minute ends a bar waits for late ticks.
    pub grace: std::time::Duration,
    /// What times a tick.
    pub clock: BarClock,
    /// Room in each publisher's hand-off to the ops side.
    pub handoff: usize,
    /// The exchange calendar: ticks outside their market's sessions build
    /// no bar. `None`: every minute is open.
    pub calendar: Option<std::sync::Arc<crate::calendar::Calendar>>,
}

impl BarSettings {
    /// The settings of `[bars]` (no calendar yet: the caller adds it).
    #[must_use]
    pub fn from_config(c: &crate::config::BarsConfig) -> Self {
        Self {
            enabled: c.enabled,
            topic: c.topic.clone(),
            grace: std::time::Duration::from_millis(c.grace_ms),
            clock: c.bar_clock().unwrap_or_default(),
            handoff: usize::try_from(c.handoff).unwrap_or(usize::MAX),
            calendar: None,
        }
    }
}

/// The publisher's end of the bar hand-off to the ops side.
pub type BarTx = rtrb::Producer<Bar>;
/// The ops side's end of the bar hand-off.
pub type BarRx = rtrb::Consumer<Bar>;

/// Longest record [`write_bar`] produces (a generous bound).
pub const MAX_BAR_JSON_LEN: usize = 512;

/// Appends the published Kafka record value of `bar`, documented by
/// `schemas/bar.schema.json`:
///
/// `{"type":"bar_1m","source":"kite","run":"R","instrument_token":T,`
/// `"start":"…Z","end":"…Z","open":O,"high":H,"low":L,"close":C,`
/// `"volume":V,"ticks":N}`
///
/// The bar covers `[start, end)`; prices are exact decimals, like a tick's.
/// Never allocates.
///
/// # Errors
/// [`crate::json::JsonBufFull`] when `out` has less than
/// [`MAX_BAR_JSON_LEN`] bytes left; nothing is written then.
///
/// ```
/// use panda_feed::bars::{Bar, write_bar};
/// use panda_feed::{json::JsonBuf, run_id::RunId};
/// let bar = Bar {
///     token: 408_065, price_divisor: 100,
///     start_ns: 1_764_056_100_000_000_000, end_ns: 1_764_056_160_000_000_000,
///     open: 157_370, high: 157_500, low: 157_005, close: 157_400,
///     volume: 1_250, ticks: 42,
/// };
/// let mut out = JsonBuf::with_capacity(4096);
/// write_bar(&bar, RunId(1), &mut out).unwrap();
/// assert_eq!(out.as_bytes(), concat!(
///     r#"{"type":"bar_1m","source":"kite","run":"0000000000000001","instrument_token":408065,"#,
///     r#""start":"2025-11-25T07:35:00Z","end":"2025-11-25T07:36:00Z","#,
///     r#""open":1573.7,"high":1575.0,"low":1570.05,"close":1574.0,"volume":1250,"ticks":42}"#,
/// ).as_bytes());
/// ```
pub fn write_bar(bar: &Bar, run: RunId, out: &mut JsonBuf) -> Result<(), crate::json::JsonBufFull> {
    if out.remaining() < MAX_BAR_JSON_LEN {
        return Err(crate::json::JsonBufFull);
    }
    let secs = |ns: u64| u32::try_from(ns / 1_000_000_000).unwrap_or(u32::MAX);
    out.put(br#"{"type":"bar_1m","source":"kite","run":""#);
    out.put(&run.hex());
    out.put(br#"","instrument_token":"#);
    out.put_u32(bar.token);
    out.put(br#","start":"#);
    out.put_timestamp(secs(bar.start_ns));
    out.put(br#","end":"#);
    out.put_timestamp(secs(bar.end_ns));
    for (k, v) in [
        (&br#","open":"#[..], bar.open),
        (br#","high":"#, bar.high),
        (br#","low":"#, bar.low),
        (br#","close":"#, bar.close),
    ] {
        out.put(k);
        out.put_price(v, bar.price_divisor);
    }
    out.put(br#","volume":"#);
    out.put_u64(bar.volume);
    out.put(br#","ticks":"#);
    out.put_u32(bar.ticks);
    out.put(b"}");
    Ok(())
}

#[cfg(test)]
mod tests;
