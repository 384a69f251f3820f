//! Encoding [`Tick`]s back into Kite binary packets and messages.
//!
//! The inverse of [`decode`](super::decode), used by the mock exchange, the
//! benchmarks and the round-trip property tests. Writes into caller-owned,
//! reused buffers; never allocates once the buffer has grown to its working size.

use crate::tick::{PacketKind, Tick};

#[inline]
fn put(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends the packet body for `tick` (its [`PacketKind`] picks the layout),
/// without the u16 length prefix.
pub fn encode_packet(tick: &Tick, out: &mut Vec<u8>) {
    let o = &tick.ohlc;
    put(out, tick.token.0);
    put(out, tick.last_price);
    match tick.kind {
        PacketKind::Ltp => {}
        PacketKind::IndexQuote | PacketKind::IndexFull => {
            for v in [o.high, o.low, o.open, o.close] {
                put(out, v);
            }
            out.extend_from_slice(&tick.index_change.to_be_bytes());
            if tick.kind == PacketKind::IndexFull {
                put(out, tick.exchange_timestamp);
            }
        }
        PacketKind::Quote | PacketKind::Full => {
            for v in [
                tick.last_traded_quantity,
                tick.average_traded_price,
                tick.volume_traded,
                tick.total_buy_quantity,
                tick.total_sell_quantity,
                o.open,
                o.high,
                o.low,
                o.close,
            ] {
                put(out, v);
            }
            if tick.kind == PacketKind::Full {
                for v in [
                    tick.last_trade_time,
                    tick.oi,
                    tick.oi_day_high,
                    tick.oi_day_low,
                    tick.exchange_timestamp,
                ] {
                    put(out, v);
                }
                for l in tick.depth.buy.iter().chain(&tick.depth.sell) {
                    put(out, l.quantity);
                    put(out, l.price);
                    out.extend_from_slice(&l.orders.to_be_bytes());
                    out.extend_from_slice(&[0, 0]);
                }
            }
        }
    }
}

/// Why a packet could not be appended to a [`MessageWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The message already holds `u16::MAX` packets.
    Full,
    /// A raw packet body longer than `u16::MAX` bytes.
    PacketTooLong,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Full => "message already holds 65535 packets",
            Self::PacketTooLong => "packet body longer than 65535 bytes",
        })
    }
}

impl std::error::Error for WriteError {}

/// Builds one binary message (u16 count, then length-prefixed packets) in a
/// reused buffer.
///
/// ```
/// use panda_feed::{Tick, PacketKind, wire::{self, MessageWriter, Message}};
/// let mut w = MessageWriter::with_capacity(1024);
/// w.push(&Tick { last_price: 157_370, ..Tick::for_token(408_065, PacketKind::Ltp) }).unwrap();
/// let Ok(Message::Packets(p)) = wire::decode(w.finish()) else { panic!() };
/// assert_eq!(p.packet_count(), 1);
/// ```
#[derive(Debug)]
pub struct MessageWriter {
    buf: Vec<u8>,
    count: u16,
}

impl MessageWriter {
    /// A writer whose buffer starts with `bytes` of capacity.
    #[must_use]
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(2));
        buf.extend_from_slice(&[0, 0]);
        Self { buf, count: 0 }
    }

    /// Starts a new message, keeping the buffer's capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&[0, 0]);
        self.count = 0;
    }

    /// Packets in the current message.
    #[must_use]
    pub const fn len(&self) -> u16 {
        self.count
    }

    /// `true` when no packet has been pushed since the last [`clear`](Self::clear).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the current message occupies.
    #[must_use]
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// Appends one packet for `tick`.
    ///
    /// # Errors
    /// [`WriteError::Full`] when the message already holds `u16::MAX` packets.
    pub fn push(&mut self, tick: &Tick) -> Result<(), WriteError> {
        let count = self.count.checked_add(1).ok_or(WriteError::Full)?;
        // Every packet length (≤ 184) fits the u16 prefix.
        let len = tick.kind.packet_len() as u16;
        self.buf.extend_from_slice(&len.to_be_bytes());
        encode_packet(tick, &mut self.buf);
        self.count = count;
        Ok(())
    }

    /// Appends a raw packet body (any length ≤ `u16::MAX`), for tests and fault injection.
    ///
    /// # Errors
    /// `Err(())` when the body is longer than `u16::MAX` or the message is full.
    #[allow(
        clippy::result_unit_err,
        reason = "test/fault-injection helper; nothing to hand back"
    )]
    pub fn push_raw(&mut self, body: &[u8]) -> Result<(), ()> {
        let len = u16::try_from(body.len()).map_err(|_| ())?;
        let count = self.count.checked_add(1).ok_or(())?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(body);
        self.count = count;
        Ok(())
    }

    /// Patches the packet count and returns the finished message bytes.
    pub fn finish(&mut self) -> &[u8] {
        self.buf[..2].copy_from_slice(&self.count.to_be_bytes());
        &self.buf
    }
}
