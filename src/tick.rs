//! [`Tick`]: the normalized, fixed-size, `Copy` market-data record.
//!
//! Built on the network thread from a [`Packet`] view, moved by value through
//! the SPSC rings, encoded on a publisher thread. No heap, no references: a
//! `Tick` is plain data, so pushing it through a ring is a memcpy.
//!
//! Prices are kept exactly as the exchange sent them: integer units plus the
//! segment's divisor (`docs/ARCHITECTURE.md`, "The data contract"). Timestamps are Unix seconds as sent (0 means
//! absent). Conversions to floats, percentages and text live in [`crate::json`].

use crate::wire::Packet;
use crate::wire::layout::DepthEntry;

/// A Kite instrument token. Its low byte is the exchange segment code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct InstrumentToken(pub u32);

impl InstrumentToken {
    /// Segment code: `token & 0xFF` (docs/KITE_PROTOCOL.md §4.3).
    #[must_use]
    #[inline]
    pub const fn segment(self) -> u8 {
        self.0.to_le_bytes()[0]
    }
}

/// Segment code of NSE currency derivatives (prices ÷ 10^7).
pub const SEGMENT_CDS: u8 = 3;
/// Segment code of BSE currency derivatives (prices ÷ 10^4).
pub const SEGMENT_BCD: u8 = 6;
/// Segment code of indices (not tradable).
pub const SEGMENT_INDICES: u8 = 9;
/// Segment code of NSE commodity (prices ÷ 10^4 since pykiteconnect 5.2.2).
pub const SEGMENT_NCO: u8 = 12;

/// Price divisor of a segment: CDS 10^7, BCD and NCO 10^4, every other 100.
#[must_use]
#[inline]
pub const fn price_divisor(segment: u8) -> u32 {
    match segment {
        SEGMENT_CDS => 10_000_000,
        SEGMENT_BCD | SEGMENT_NCO => 10_000,
        _ => 100,
    }
}

/// Which of the five packet layouts a tick came from. It decides the fields
/// present in the encoded tick, exactly as the packet length does in pykiteconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum PacketKind {
    /// 8-byte LTP packet.
    #[default]
    Ltp = 0,
    /// 28-byte index quote.
    IndexQuote = 1,
    /// 32-byte index full.
    IndexFull = 2,
    /// 44-byte tradable quote.
    Quote = 3,
    /// 184-byte tradable full.
    Full = 4,
}

/// Subscription mode, as named on the wire and in the config (`"ltp"`,
/// `"quote"`, `"full"`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Last traded price only.
    Ltp,
    /// Quote (no depth).
    Quote,
    /// Full, with depth.
    Full,
}

impl Mode {
    /// The protocol string.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ltp => "ltp",
            Self::Quote => "quote",
            Self::Full => "full",
        }
    }
}

impl PacketKind {
    /// The mode the packet length implies.
    #[must_use]
    pub const fn mode(self) -> Mode {
        match self {
            Self::Ltp => Mode::Ltp,
            Self::IndexQuote | Self::Quote => Mode::Quote,
            Self::IndexFull | Self::Full => Mode::Full,
        }
    }

    /// Wire length of the packet.
    #[must_use]
    pub const fn packet_len(self) -> usize {
        use crate::wire::layout::{FULL_LEN, INDEX_FULL_LEN, INDEX_QUOTE_LEN, LTP_LEN, QUOTE_LEN};
        match self {
            Self::Ltp => LTP_LEN,
            Self::IndexQuote => INDEX_QUOTE_LEN,
            Self::IndexFull => INDEX_FULL_LEN,
            Self::Quote => QUOTE_LEN,
            Self::Full => FULL_LEN,
        }
    }
}

/// Open/high/low/close in price units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ohlc {
    /// Open.
    pub open: u32,
    /// High.
    pub high: u32,
    /// Low.
    pub low: u32,
    /// Previous close.
    pub close: u32,
}

/// One depth level. An empty level is all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DepthLevel {
    /// Quantity.
    pub quantity: u32,
    /// Price in price units.
    pub price: u32,
    /// Number of orders.
    pub orders: u16,
}

/// Five buy and five sell levels, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Depth {
    /// Bids, best first.
    pub buy: [DepthLevel; 5],
    /// Offers, best first.
    pub sell: [DepthLevel; 5],
}

/// A normalized tick. Fields a packet kind does not carry are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Tick {
    /// Receive time stamped by the network thread, ns since the Unix epoch (0 if unset).
    pub ts_recv_ns: u64,
    /// Per-connection sequence number of this tick: 1 for the first tick a
    /// connection received, then +1 per tick (0 if unset).
    pub seq: u64,
    /// Instrument token.
    pub token: InstrumentToken,
    /// Divisor of every price field: 100, 10^4 or 10^7 ([`price_divisor`]).
    pub price_divisor: u32,
    /// Last traded price.
    pub last_price: u32,
    /// Last traded quantity.
    pub last_traded_quantity: u32,
    /// Average traded price.
    pub average_traded_price: u32,
    /// Volume traded today.
    pub volume_traded: u32,
    /// Total pending buy quantity.
    pub total_buy_quantity: u32,
    /// Total pending sell quantity.
    pub total_sell_quantity: u32,
    /// OHLC.
    pub ohlc: Ohlc,
    /// Index packets only: the signed absolute change vs close, in price units,
    /// as sent (pykiteconnect ignores it; not part of the JSON contract).
    pub index_change: i32,
    /// Last trade time, Unix seconds (0 = absent).
    pub last_trade_time: u32,
    /// Open interest.
    pub oi: u32,
    /// Open interest day high.
    pub oi_day_high: u32,
    /// Open interest day low.
    pub oi_day_low: u32,
    /// Exchange timestamp, Unix seconds (0 = absent).
    pub exchange_timestamp: u32,
    /// Market depth (full packets only).
    pub depth: Depth,
    /// Packet layout this tick came from.
    pub kind: PacketKind,
    /// Segment code (`token & 0xFF`).
    pub segment: u8,
    /// `false` only for the indices segment (9).
    pub tradable: bool,
    /// Index of the WebSocket connection the tick arrived on (0 if unset).
    pub conn: u8,
}

#[inline]
fn level(e: &DepthEntry) -> DepthLevel {
    DepthLevel {
        quantity: e.quantity.get(),
        price: e.price.get(),
        orders: e.orders.get(),
    }
}

impl Tick {
    /// A tick carrying only the instrument-derived fields of `token`.
    #[must_use]
    #[inline]
    pub fn for_token(token: u32, kind: PacketKind) -> Self {
        let token = InstrumentToken(token);
        let segment = token.segment();
        Self {
            token,
            segment,
            kind,
            price_divisor: price_divisor(segment),
            tradable: segment != SEGMENT_INDICES,
            ..Self::default()
        }
    }

    /// Decodes `packet` into `self` in place, overwriting every field except
    /// `ts_recv_ns`, `seq` and `conn`; returns `false` (leaving `self` untouched) for
    /// [`Packet::Unknown`].
    ///
    /// This is the hot-path form: writing straight into the destination (a
    /// ring slot, a reused tick) avoids building a 216-byte temporary and
    /// copying it, whose narrow stores followed by wide loads stall store
    /// forwarding. NB: a full packet decoded into a slot went from 23.6 ns
    /// (build + copy) to 13.7 ns (`cargo bench --bench decode`, README).
    #[inline]
    pub fn decode_from(&mut self, packet: &Packet<'_>) -> bool {
        let (token, kind) = match *packet {
            Packet::Ltp(p) => (p.token.get(), PacketKind::Ltp),
            Packet::IndexQuote(p) => (p.token.get(), PacketKind::IndexQuote),
            Packet::IndexFull(p) => (p.quote.token.get(), PacketKind::IndexFull),
            Packet::Quote(p) => (p.token.get(), PacketKind::Quote),
            Packet::Full(p) => (p.quote.token.get(), PacketKind::Full),
            Packet::Unknown { .. } => return false,
        };
        let token = InstrumentToken(token);
        let segment = token.segment();
        self.token = token;
        self.segment = segment;
        self.kind = kind;
        self.price_divisor = price_divisor(segment);
        self.tradable = segment != SEGMENT_INDICES;
        self.index_change = 0;
        match *packet {
            Packet::Ltp(p) => {
                self.last_price = p.last_price.get();
                self.clear_quote();
                self.ohlc = Ohlc::default();
                self.clear_full();
            }
            Packet::IndexQuote(p) => {
                self.set_index(p);
                self.clear_full();
            }
            Packet::IndexFull(p) => {
                self.set_index(&p.quote);
                self.clear_full();
                self.exchange_timestamp = p.exchange_timestamp.get();
            }
            Packet::Quote(p) => {
                self.set_quote(p);
                self.clear_full();
            }
            Packet::Full(p) => {
                self.set_quote(&p.quote);
                self.last_trade_time = p.last_trade_time.get();
                self.oi = p.oi.get();
                self.oi_day_high = p.oi_day_high.get();
                self.oi_day_low = p.oi_day_low.get();
                self.exchange_timestamp = p.exchange_timestamp.get();
                let (buy, sell) = p.depth.split_at(5);
                for (dst, src) in self.depth.buy.iter_mut().zip(buy) {
                    *dst = level(src);
                }
                for (dst, src) in self.depth.sell.iter_mut().zip(sell) {
                    *dst = level(src);
                }
            }
            Packet::Unknown { .. } => {}
        }
        true
    }

    #[inline]
    fn clear_quote(&mut self) {
        self.last_traded_quantity = 0;
        self.average_traded_price = 0;
        self.volume_traded = 0;
        self.total_buy_quantity = 0;
        self.total_sell_quantity = 0;
    }

    #[inline]
    fn clear_full(&mut self) {
        self.last_trade_time = 0;
        self.oi = 0;
        self.oi_day_high = 0;
        self.oi_day_low = 0;
        self.exchange_timestamp = 0;
        self.depth = Depth::default();
    }

    #[inline]
    fn set_index(&mut self, p: &crate::wire::layout::IndexQuotePacket) {
        self.last_price = p.last_price.get();
        self.clear_quote();
        self.ohlc = Ohlc {
            open: p.open.get(),
            high: p.high.get(),
            low: p.low.get(),
            close: p.close.get(),
        };
        self.index_change = p.change.get();
    }

    #[inline]
    fn set_quote(&mut self, p: &crate::wire::layout::QuotePacket) {
        self.last_price = p.last_price.get();
        self.last_traded_quantity = p.last_traded_quantity.get();
        self.average_traded_price = p.average_traded_price.get();
        self.volume_traded = p.volume_traded.get();
        self.total_buy_quantity = p.total_buy_quantity.get();
        self.total_sell_quantity = p.total_sell_quantity.get();
        self.ohlc = Ohlc {
            open: p.open.get(),
            high: p.high.get(),
            low: p.low.get(),
            close: p.close.get(),
        };
    }

    /// Builds a tick from a packet view; `None` for [`Packet::Unknown`].
    /// Convenient off the hot path; the hot path uses [`decode_from`](Self::decode_from).
    #[must_use]
    #[inline]
    pub fn from_packet(packet: &Packet<'_>) -> Option<Self> {
        let mut t = Self::default();
        t.decode_from(packet).then_some(t)
    }

    /// The mode implied by the packet kind.
    #[must_use]
    #[inline]
    pub const fn mode(&self) -> Mode {
        self.kind.mode()
    }

    /// A price field as the official client's float: `raw as f64 / divisor`
    /// (true division, never multiplication by a reciprocal, for bit parity).
    #[must_use]
    #[inline]
    pub fn price_f64(&self, raw: u32) -> f64 {
        f64::from(raw) / f64::from(self.price_divisor)
    }

    /// `change` as pykiteconnect computes it: `((last - close) * 100) / close`
    /// in f64 on the divided prices; `None` when close is 0 (the client's
    /// integer `0`) or for LTP packets (no `change` key).
    #[must_use]
    #[inline]
    pub fn change_pct(&self) -> Option<f64> {
        if self.kind == PacketKind::Ltp || self.ohlc.close == 0 {
            return None;
        }
        let last = self.price_f64(self.last_price);
        let close = self.price_f64(self.ohlc.close);
        Some(((last - close) * 100.0) / close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisor_per_segment() {
        for seg in 0u8..=255 {
            let want = match seg {
                3 => 10_000_000,
                6 | 12 => 10_000,
                _ => 100,
            };
            assert_eq!(price_divisor(seg), want, "segment {seg}");
        }
    }

    #[test]
    fn tradable_only_outside_indices() {
        assert!(!Tick::for_token(256_265, PacketKind::IndexFull).tradable);
        assert!(Tick::for_token(408_065, PacketKind::Ltp).tradable);
        assert_eq!(InstrumentToken(0x1234_5609).segment(), 9);
    }

    #[test]
    fn tick_is_plain_fixed_size_data() {
        fn is_copy<T: Copy + Send + 'static>() {}
        is_copy::<Tick>();
        assert!(
            size_of::<Tick>() <= 256,
            "Tick grew to {} bytes",
            size_of::<Tick>()
        );
    }
}
