//! Big-endian, byte-aligned views of the five Kite binary packet layouts.
//!
//! Pure data: every struct is `#[repr(C)]`, `Unaligned` and derives zerocopy's
//! `FromBytes`, so a `&[u8]` of the exact length is reinterpreted in place with
//! no copy, no `unsafe` of our own and no alignment requirement. Field offsets
//! follow `docs/KITE_PROTOCOL.md` §4.4–4.7; the `const` assertions at the bottom pin
//! the sizes the packet kinds are selected by.

use zerocopy::byteorder::big_endian::{I32, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// LTP packet (8 bytes): token and last traded price.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct LtpPacket {
    /// Instrument token; its low byte is the segment code.
    pub token: U32,
    /// Last traded price, in price units (÷ segment divisor).
    pub last_price: U32,
}

/// Index quote packet (28 bytes). Note the OHLC order: high, low, open, close.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct IndexQuotePacket {
    /// Instrument token.
    pub token: U32,
    /// Index value.
    pub last_price: U32,
    /// Day high.
    pub high: U32,
    /// Day low.
    pub low: U32,
    /// Day open.
    pub open: U32,
    /// Previous close.
    pub close: U32,
    /// Signed absolute change vs close in price units. The official client
    /// ignores it and recomputes a percentage; we keep it on the [`Tick`](crate::Tick).
    pub change: I32,
}

/// Index full packet (32 bytes): the quote plus the exchange timestamp.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct IndexFullPacket {
    /// The 28-byte quote part.
    pub quote: IndexQuotePacket,
    /// Exchange timestamp, Unix seconds.
    pub exchange_timestamp: U32,
}

/// Tradable quote packet (44 bytes). OHLC order: open, high, low, close.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct QuotePacket {
    /// Instrument token.
    pub token: U32,
    /// Last traded price.
    pub last_price: U32,
    /// Last traded quantity.
    pub last_traded_quantity: U32,
    /// Average traded price (VWAP).
    pub average_traded_price: U32,
    /// Volume traded today.
    pub volume_traded: U32,
    /// Total pending buy quantity.
    pub total_buy_quantity: U32,
    /// Total pending sell quantity.
    pub total_sell_quantity: U32,
    /// Day open.
    pub open: U32,
    /// Day high.
    pub high: U32,
    /// Day low.
    pub low: U32,
    /// Previous close.
    pub close: U32,
}

/// One market-depth level (12 bytes, the last two are padding).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct DepthEntry {
    /// Quantity at this level.
    pub quantity: U32,
    /// Price of this level.
    pub price: U32,
    /// Number of orders (u16, as the official client reads it).
    pub orders: U16,
    /// Padding; ignored.
    pub pad: [u8; 2],
}

/// Tradable full packet (184 bytes): quote, timestamps, OI, 5 buy + 5 sell levels.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct FullPacket {
    /// The 44-byte quote part.
    pub quote: QuotePacket,
    /// Last trade time, Unix seconds.
    pub last_trade_time: U32,
    /// Open interest.
    pub oi: U32,
    /// Day high of open interest.
    pub oi_day_high: U32,
    /// Day low of open interest.
    pub oi_day_low: U32,
    /// Exchange timestamp, Unix seconds.
    pub exchange_timestamp: U32,
    /// Depth: entries 0–4 are buy (best first), 5–9 are sell (best first).
    pub depth: [DepthEntry; 10],
}

/// Packet length of an LTP packet.
pub const LTP_LEN: usize = 8;
/// Packet length of an index quote packet.
pub const INDEX_QUOTE_LEN: usize = 28;
/// Packet length of an index full packet.
pub const INDEX_FULL_LEN: usize = 32;
/// Packet length of a tradable quote packet.
pub const QUOTE_LEN: usize = 44;
/// Packet length of a tradable full packet.
pub const FULL_LEN: usize = 184;

const _: () = assert!(size_of::<LtpPacket>() == LTP_LEN);
const _: () = assert!(size_of::<IndexQuotePacket>() == INDEX_QUOTE_LEN);
const _: () = assert!(size_of::<IndexFullPacket>() == INDEX_FULL_LEN);
const _: () = assert!(size_of::<QuotePacket>() == QUOTE_LEN);
const _: () = assert!(size_of::<DepthEntry>() == 12);
const _: () = assert!(size_of::<FullPacket>() == FULL_LEN);
