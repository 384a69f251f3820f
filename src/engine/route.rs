//! Routing on the network thread: one binary message → ticks decoded in place
//! into the ring of the publisher that owns each instrument.

use crate::ring::TickTx;
use crate::wire::{DecodeError, Message, Packet, decode};

/// What one routed message contained.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// The message was a heartbeat.
    pub heartbeat: bool,
    /// Ticks pushed onto a ring.
    pub pushed: u32,
    /// Ticks dropped because their ring was full.
    pub dropped_full: u32,
    /// Packets of an unknown length (not ticks; skipped, counted).
    pub unknown: u32,
    /// Bit `i` is set when ring `i` received a tick.
    pub touched: u64,
}

/// Routes ticks to publisher rings by instrument, so that each instrument's
/// ticks stay in order on one publisher.
#[derive(Debug)]
pub struct Router {
    rings: Vec<TickTx>,
}

/// Most publishers (rings) a router supports.
pub const MAX_RINGS: usize = 64;

/// The ring (publisher) index of `token` among `n` rings. A Fibonacci hash:
/// the token's low byte is its segment, so `token % n` would put every
/// instrument of a segment on one publisher.
#[must_use]
#[inline]
pub fn ring_for(token: u32, n: usize) -> usize {
    let h = u64::from(token.wrapping_mul(0x9E37_79B9));
    ((h * n as u64) >> 32) as usize
}

impl Router {
    /// A router over `rings` (at most [`MAX_RINGS`]).
    ///
    /// # Panics
    /// When `rings` is empty or longer than [`MAX_RINGS`] (the engine's
    /// configuration check rejects both first).
    #[must_use]
    pub fn new(rings: Vec<TickTx>) -> Self {
        assert!(
            !rings.is_empty() && rings.len() <= MAX_RINGS,
            "1..={MAX_RINGS} rings"
        );
        Self { rings }
    }

    /// The rings.
    #[must_use]
    pub fn rings(&self) -> &[TickTx] {
        &self.rings
    }

    /// Decodes `msg` and pushes each tick, stamped with `conn`, `recv_ns` and
    /// the next value of `seq`, onto its instrument's ring. Never blocks,
    /// never allocates; a full ring drops the tick and counts it.
    ///
    /// # Errors
    /// The message's [`DecodeError`]; nothing was pushed then.
    #[inline]
    pub fn route(
        &mut self,
        conn: u8,
        seq: &mut u64,
        recv_ns: u64,
        msg: &[u8],
    ) -> Result<Routed, DecodeError> {
        let mut r = Routed::default();
        let packets = match decode(msg)? {
            Message::Heartbeat => {
                r.heartbeat = true;
                return Ok(r);
            }
            Message::Packets(p) => p,
        };
        let n = self.rings.len();
        for p in packets {
            if let Packet::Unknown { .. } = p {
                r.unknown += 1;
                continue;
            }
            let i = ring_for(p.token(), n);
            *seq += 1;
            let s = *seq;
            let pushed = self.rings[i].push_with(|slot| {
                slot.decode_from(&p);
                slot.ts_recv_ns = recv_ns;
                slot.seq = s;
                slot.conn = conn;
            });
            if pushed.is_ok() {
                r.pushed += 1;
                r.touched |= 1 << i;
            } else {
                r.dropped_full += 1;
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_spreads_a_segment_over_publishers() {
        // 1000 NSE tokens (segment 1): every one is odd, `% 2` would send all
        // of them to publisher 1.
        let mut counts = [0usize; 4];
        for i in 0..1000u32 {
            counts[ring_for((i << 8) | 1, 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 150), "{counts:?}");
        assert!((0..1000).all(|t| ring_for(t, 1) == 0));
    }
}
