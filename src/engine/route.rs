//! Where instruments go: [`shard`] splits them over connections (at start-up,
//! on the caller's thread), and the [`Router`] sends each decoded tick to the
//! ring of the publisher that owns its instrument, and within it to the ring
//! of the instrument's tier (on the network thread, which owns the router and
//! with it the producer halves of the rings).

use std::sync::Arc;

use crate::ring::TickTx;
use crate::slo::LastTicks;
use crate::tick::Mode;
use crate::tier::{TIERS, Tier, TierMap};
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
    /// Packets of a token unsubscribed a moment ago (not ticks; skipped,
    /// counted).
    pub after_unsubscribe: u32,
    /// Bit `i` is set when a ring of publisher `i` received a tick.
    pub touched: u64,
    /// `Some(k)`: routing stopped at packet `k` (counting from the first
    /// packet of the message), whose T0/T1 ring was full under the `block`
    /// policy; nothing from `k` on was pushed, dropped or counted, and no
    /// `seq` was taken for it. Resume with
    /// [`Router::route_from`] at `k`.
    pub held_at: Option<u16>,
    /// The ring that held the message (an index into
    /// [`Router::rings`]) when `held_at` is set.
    pub held_ring: u16,
}

/// Routes ticks to publisher rings by instrument, so that each instrument's
/// ticks stay in order on one publisher, and, per publisher, to the ring of
/// the instrument's tier (an instrument has one tier for the run, so its
/// order holds too).
#[derive(Debug)]
pub struct Router {
    /// Publisher `p`'s ring of tier `t` is `rings[p * lanes + t]`.
    rings: Vec<TickTx>,
    lanes: usize,
    tiers: Arc<TierMap>,
    /// Last-tick times for the SLO monitor (`crate::slo::table`).
    last: Arc<LastTicks>,
    /// `engine.overflow = "block"`: a full T0/T1 ring holds the message.
    block: bool,
    /// Per ring: its stall ran out (`engine.block_max_ms`), so it drops
    /// rather than holds until it has drained to half its capacity.
    shedding: Vec<bool>,
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
    /// A router over `rings` (at most [`MAX_RINGS`]), one per publisher,
    /// untiered: every tick counts as T0 ([`tiered`](Self::tiered) splits).
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
        let shedding = vec![false; rings.len()];
        Self {
            rings,
            lanes: 1,
            block: false,
            shedding,
            // Untiered: every tick is T0, on its publisher's one ring.
            tiers: Arc::new(TierMap::uniform(crate::tier::Tier::T0)),
            last: Arc::default(),
        }
    }

    /// A router over one ring per tier per publisher (at most
    /// [`MAX_RINGS`] publishers); `tiers` gives each token its tier.
    ///
    /// # Panics
    /// As [`new`](Self::new).
    #[must_use]
    pub fn tiered(rings: Vec<[TickTx; TIERS]>, tiers: Arc<TierMap>) -> Self {
        assert!(
            !rings.is_empty() && rings.len() <= MAX_RINGS,
            "1..={MAX_RINGS} publishers"
        );
        let rings: Vec<TickTx> = rings.into_iter().flatten().collect();
        Self {
            shedding: vec![false; rings.len()],
            rings,
            lanes: TIERS,
            tiers,
            last: Arc::default(),
            block: false,
        }
    }

    /// Sets the overflow policy (`engine.overflow`; a new router drops, as
    /// `drop_newest`). Only [`route_from`](Self::route_from) with
    /// `may_hold` ever holds a message.
    #[must_use]
    pub fn with_overflow(mut self, overflow: crate::config::Overflow) -> Self {
        self.block = overflow == crate::config::Overflow::Block;
        self
    }

    /// Ring `ring` (an index into [`rings`](Self::rings)) stalled a message
    /// past `engine.block_max_ms`: it drops (counted) rather than holds
    /// until it has drained to half its capacity, so a publisher that makes
    /// no progress costs each message one bounded stall, not every message.
    pub fn shed(&mut self, ring: u16) {
        if let Some(s) = self.shedding.get_mut(usize::from(ring)) {
            *s = true;
        }
    }

    /// Records each pushed tick's receive time in `last` (the SLO
    /// monitor's table; none by default).
    #[must_use]
    pub fn with_last_ticks(mut self, last: Arc<LastTicks>) -> Self {
        self.last = last;
        self
    }

    /// The last-tick table (the network thread keeps its slots in step
    /// with live subscription changes).
    #[must_use]
    pub fn last_ticks(&self) -> &LastTicks {
        &self.last
    }

    /// The rings, publisher by publisher (and, when tiered, T0, T1, T2 of
    /// each).
    #[must_use]
    pub fn rings(&self) -> &[TickTx] {
        &self.rings
    }

    /// Decodes `msg` and pushes each tick, stamped with `conn`, `recv_ns` and
    /// the next value of `seq`, onto its instrument's ring (its publisher's
    /// ring of its tier). Never blocks, never allocates; a full ring drops
    /// the tick and counts it: a T0 tick is dropped only when its T0 ring is
    /// full, whatever the T1 and T2 rings hold. A packet
    /// whose token is in `gone` (sorted; the connection unsubscribed it a
    /// moment ago) is skipped and counted, and takes no `seq`; `gone` is
    /// empty outside the moments after a live change.
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
        gone: &[u32],
    ) -> Result<Routed, DecodeError> {
        self.route_from(conn, seq, recv_ns, msg, gone, 0, false)
    }

    /// As [`route`](Self::route), from packet `from` of `msg` on (the
    /// packets before it were routed by an earlier call). With `may_hold`
    /// and the `block` policy, a tick whose T0 or T1 ring is full (and not
    /// [shedding](Self::shed)) stops the routing there: [`Routed::held_at`]
    /// says where to resume, and nothing from there on is pushed or
    /// counted. A full T2 ring drops as with `drop_newest` (README,
    /// "Overflow: block or drop"). Never blocks, never allocates.
    ///
    /// # Errors
    /// The message's [`DecodeError`]; nothing was pushed then.
    #[inline]
    #[expect(
        clippy::too_many_arguments,
        reason = "the hot path: no struct built per message"
    )]
    pub fn route_from(
        &mut self,
        conn: u8,
        seq: &mut u64,
        recv_ns: u64,
        msg: &[u8],
        gone: &[u32],
        from: u16,
        may_hold: bool,
    ) -> Result<Routed, DecodeError> {
        let mut r = Routed::default();
        let packets = match decode(msg)? {
            Message::Heartbeat => {
                r.heartbeat = true;
                return Ok(r);
            }
            Message::Packets(p) => p,
        };
        let n = self.rings.len() / self.lanes;
        let may_hold = may_hold && self.block;
        for (k, p) in packets.enumerate().skip(usize::from(from)) {
            if let Packet::Unknown { .. } = p {
                r.unknown += 1;
                continue;
            }
            if !gone.is_empty() && gone.binary_search(&p.token()).is_ok() {
                r.after_unsubscribe += 1;
                continue;
            }
            let i = ring_for(p.token(), n);
            // NB: a hash-table probe of the named tokens (none by default)
            // and a table read (`benches/decode.rs`, `route/*`); `min`
            // keeps an untiered router on its one ring per publisher.
            let lane = self.tiers.tier_of(p.token()).index().min(self.lanes - 1);
            let at = i * self.lanes + lane;
            let s = *seq + 1;
            let ring = &mut self.rings[at];
            let pushed = ring.try_push_with(|slot| {
                slot.decode_from(&p);
                slot.ts_recv_ns = recv_ns;
                slot.seq = s;
                slot.conn = conn;
            });
            if pushed.is_ok() {
                *seq = s;
                r.pushed += 1;
                r.touched |= 1 << i;
                self.last.record(p.token(), recv_ns);
                // A shedding ring holds again once it has drained to half.
                if self.shedding[at] && ring.len() <= ring.capacity() / 2 {
                    self.shedding[at] = false;
                }
            } else if may_hold && lane != Tier::T2.index() && !self.shedding[at] {
                // `k` < 2^16: the packet count is a u16 (docs/KITE_PROTOCOL.md).
                r.held_at = Some(u16::try_from(k).unwrap_or(u16::MAX));
                r.held_ring = u16::try_from(at).unwrap_or(u16::MAX);
                return Ok(r);
            } else {
                ring.count_full();
                *seq = s;
                r.dropped_full += 1;
            }
        }
        Ok(r)
    }
}

/// Splits `instruments` over at most `max_connections` connections of at
/// most `per_connection` each, balanced.
///
/// # Errors
/// When they do not fit, naming the counts and the fix.
pub fn shard(
    instruments: &[(u32, Mode)],
    per_connection: usize,
    max_connections: usize,
) -> Result<Vec<Vec<(u32, Mode)>>, String> {
    if instruments.is_empty() {
        return Err("no instruments to subscribe; give --instruments CSV".into());
    }
    let per = per_connection.max(1);
    let n = instruments.len().div_ceil(per);
    if n > max_connections {
        return Err(format!(
            "{} instruments need {n} connections of at most {per}, but the limit is \
             {max_connections} (Kite allows 3 × 3000 per api_key); subscribe fewer \
             instruments or shard them over feed hosts",
            instruments.len()
        ));
    }
    let base = instruments.len() / n;
    let extra = instruments.len() % n;
    let mut out = Vec::with_capacity(n);
    let mut at = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        out.push(instruments[at..at + len].to_vec());
        at += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_balanced_and_bounded() {
        let v: Vec<(u32, Mode)> = (0..7000).map(|t| (t, Mode::Full)).collect();
        let s = shard(&v, 3000, 3).unwrap();
        assert_eq!(
            s.iter().map(Vec::len).collect::<Vec<_>>(),
            [2334, 2333, 2333]
        );
        assert_eq!(s.concat(), v);
        let err = shard(&v, 3000, 2).unwrap_err();
        assert!(err.contains("7000 instruments need 3 connections"), "{err}");
        assert!(shard(&[], 3000, 3).is_err());
    }

    /// An LTP-only message of `tokens` (docs/KITE_PROTOCOL.md: count, then
    /// length-prefixed 8-byte packets).
    fn ltp_message(tokens: &[u32]) -> Vec<u8> {
        let mut m = u16::try_from(tokens.len()).unwrap().to_be_bytes().to_vec();
        for t in tokens {
            m.extend_from_slice(&8u16.to_be_bytes());
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&12_345u32.to_be_bytes());
        }
        m
    }

    #[test]
    fn packets_of_a_token_just_unsubscribed_are_skipped_counted_and_take_no_seq() {
        let (tx, mut rx, _) = crate::ring::tick_ring(16);
        let mut router = Router::new(vec![tx]);
        let mut seq = 0;
        let msg = ltp_message(&[257, 513, 769]);
        let r = router.route(0, &mut seq, 1, &msg, &[257, 769]).unwrap();
        assert_eq!((r.pushed, r.after_unsubscribe, seq), (1, 2, 1));
        let mut got = Vec::new();
        rx.pop_chunk(16, |ts| got.extend(ts.iter().map(|t| (t.token.0, t.seq))));
        assert_eq!(got, [(513, 1)]);
        let r = router.route(0, &mut seq, 2, &msg, &[]).unwrap();
        assert_eq!((r.pushed, r.after_unsubscribe, seq), (3, 0, 4));
    }

    #[test]
    fn a_full_ring_drops_t2_and_takes_t0_which_drops_only_when_its_own_ring_is_full() {
        let (t0, t1, t2) = ((1 << 8) | 1, (2 << 8) | 1, (3 << 8) | 1);
        let map = TierMap::new(Tier::T1, &[], &[(t0, Tier::T0), (t2, Tier::T2)]);
        let (mut txs, mut rxs, mut cs) = (Vec::new(), Vec::new(), Vec::new());
        for cap in [3, 2, 2] {
            let (tx, rx, c) = crate::ring::tick_ring(cap);
            txs.push(tx);
            rxs.push(rx);
            cs.push(c);
        }
        let lanes: [TickTx; TIERS] = txs.try_into().unwrap();
        let mut router = Router::tiered(vec![lanes], Arc::new(map));
        let mut seq = 0;
        let mut send = |tokens: &[u32]| {
            router
                .route(0, &mut seq, 1, &ltp_message(tokens), &[])
                .unwrap()
        };
        // T2 and T1 fill up and drop; every T0 tick still gets in.
        let r = send(&[t2, t2, t2, t2, t1, t1, t1, t0, t0, t0]);
        assert_eq!((r.pushed, r.dropped_full), (7, 3));
        let dropped = |cs: &[Arc<crate::ring::RingCounters>]| {
            cs.iter().map(|c| c.dropped_full()).collect::<Vec<_>>()
        };
        assert_eq!(dropped(&cs), [0, 1, 2]);
        // T0 drops only now that its own ring is full.
        let r = send(&[t0]);
        assert_eq!((r.pushed, r.dropped_full), (0, 1));
        assert_eq!(dropped(&cs), [1, 1, 2]);
        // Each tier's ring holds only its tier, in order.
        let mut got = Vec::new();
        rxs[0].pop_chunk(16, |ts| got.extend(ts.iter().map(|t| (t.token.0, t.seq))));
        assert_eq!(got, [(t0, 8), (t0, 9), (t0, 10)]);
    }

    #[test]
    fn block_holds_at_the_first_packet_that_does_not_fit_and_resumes_there() {
        let (tx, mut rx, c) = crate::ring::tick_ring(2);
        let mut router = Router::new(vec![tx]).with_overflow(crate::config::Overflow::Block);
        let mut seq = 0;
        let msg = ltp_message(&[257, 513, 769, 1025]);
        let r = router
            .route_from(0, &mut seq, 1, &msg, &[], 0, true)
            .unwrap();
        assert_eq!(
            (r.pushed, r.dropped_full, r.held_at, seq),
            (2, 0, Some(2), 2)
        );
        assert_eq!(c.dropped_full(), 0, "a held tick is not a drop");
        // Still no room: held at the same packet, nothing taken.
        let r = router
            .route_from(0, &mut seq, 1, &msg, &[], 2, true)
            .unwrap();
        assert_eq!((r.pushed, r.held_at, seq), (0, Some(2), 2));
        rx.pop_chunk(16, |_| {});
        let r = router
            .route_from(0, &mut seq, 1, &msg, &[], 2, true)
            .unwrap();
        assert_eq!((r.pushed, r.held_at, seq), (2, None, 4));
        let mut got = Vec::new();
        rx.pop_chunk(16, |ts| got.extend(ts.iter().map(|t| (t.token.0, t.seq))));
        assert_eq!(got, [(769, 3), (1025, 4)], "in order, each once");
        // `route` (and `may_hold = false`) never holds: drop and count.
        router
            .route(0, &mut seq, 1, &ltp_message(&[1, 2, 3]), &[])
            .unwrap();
        assert_eq!((c.pushed(), c.dropped_full()), (6, 1));
    }

    #[test]
    fn a_shed_ring_drops_until_it_has_drained_to_half_and_t2_never_holds() {
        let (tx, mut rx, c) = crate::ring::tick_ring(4);
        let mut router = Router::new(vec![tx]).with_overflow(crate::config::Overflow::Block);
        let mut seq = 0;
        let r = router
            .route_from(0, &mut seq, 1, &ltp_message(&[1; 5]), &[], 0, true)
            .unwrap();
        assert_eq!((r.pushed, r.held_at), (4, Some(4)));
        router.shed(r.held_ring);
        let r = router
            .route_from(0, &mut seq, 1, &ltp_message(&[1; 5]), &[], 4, true)
            .unwrap();
        assert_eq!((r.dropped_full, r.held_at), (1, None));
        rx.pop_chunk(3, |_| {}); // 1 left: at most half, but shedding ends on a push
        let r = router
            .route_from(0, &mut seq, 1, &ltp_message(&[1; 4]), &[], 0, true)
            .unwrap();
        assert_eq!(
            (r.pushed, r.held_at),
            (3, Some(3)),
            "holds again once drained"
        );
        assert_eq!(c.dropped_full(), 1);

        let t2 = (3 << 8) | 1;
        let map = TierMap::new(Tier::T1, &[], &[(t2, Tier::T2)]);
        let lanes: [TickTx; TIERS] = [1, 1, 1].map(|n| crate::ring::tick_ring(n).0);
        let mut router = Router::tiered(vec![lanes], Arc::new(map))
            .with_overflow(crate::config::Overflow::Block);
        let r = router
            .route_from(0, &mut seq, 1, &ltp_message(&[t2, t2, 7, 7]), &[], 0, true)
            .unwrap();
        assert_eq!(
            (r.pushed, r.dropped_full, r.held_at),
            (2, 1, Some(3)),
            "T2 drops, T1 holds"
        );
    }

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
