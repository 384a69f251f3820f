//! The simulated market: per-instrument state driven by a seeded random walk,
//! published as immutable snapshots.
//!
//! Runs on the mock exchange's generator thread, which owns all state. Every
//! step it updates some subscribed instruments and publishes a new
//! [`Snapshot`] through `ArcSwap`; connection threads load it without locks.
//! State is bounded: at most `max_instruments`, least recently touched evicted
//! first, and derivatives past their expiry are dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::tick::{Depth, DepthLevel, Ohlc, PacketKind, SEGMENT_INDICES, Tick, price_divisor};

/// SplitMix64: small, fast, seedable; good enough for a market simulation.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// One generation step: the instruments that changed, with their full state.
#[derive(Debug)]
pub(crate) struct Step {
    /// Step number, from 1.
    pub(crate) seq: u64,
    /// Full-state ticks (kind `Full`/`IndexFull`) of the updated instruments.
    pub(crate) updates: Vec<Tick>,
}

/// What connection threads read: the most recent steps, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) steps: VecDeque<Arc<Step>>,
}

impl Snapshot {
    /// Steps kept for connections that fall behind.
    pub(crate) const KEEP: usize = 512;

    pub(crate) fn latest_seq(&self) -> u64 {
        self.steps.back().map_or(0, |s| s.seq)
    }
}

#[derive(Debug)]
struct State {
    tick: Tick,
    rng: Rng,
    last_touch: u64,
}

/// Generator-owned market state.
#[derive(Debug)]
pub(crate) struct Market {
    seed: u64,
    rng: Rng,
    states: HashMap<u32, State>,
    expiry: HashMap<u32, u32>,
    max_instruments: usize,
    clock: u64,
    /// Instruments evicted to stay within `max_instruments`.
    pub(crate) evicted: u64,
    /// Instruments dropped because their expiry passed.
    pub(crate) expired: u64,
}

impl Market {
    pub(crate) fn new(seed: u64, max_instruments: usize, expiry: HashMap<u32, u32>) -> Self {
        Self {
            seed,
            rng: Rng::new(seed),
            states: HashMap::new(),
            expiry,
            max_instruments: max_instruments.max(1),
            clock: 0,
            evicted: 0,
            expired: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// `true` when `token` is a derivative whose expiry day is before `today`.
    pub(crate) fn is_expired(&self, token: u32, today: u32) -> bool {
        self.expiry.get(&token).is_some_and(|&d| d < today)
    }

    /// Drops expired contracts; returns how many.
    pub(crate) fn remove_expired(&mut self, today: u32) -> usize {
        let before = self.states.len();
        let expiry = &self.expiry;
        self.states
            .retain(|t, _| expiry.get(t).is_none_or(|&d| d >= today));
        let n = before - self.states.len();
        self.expired += n as u64;
        n
    }

    fn fresh(&self, token: u32, now_s: u32) -> State {
        let mut rng = Rng::new(self.seed ^ u64::from(token).wrapping_mul(0xA24B_AED4_963E_E407));
        let mut t = Tick::for_token(token, PacketKind::Full);
        if t.segment == SEGMENT_INDICES {
            t.kind = PacketKind::IndexFull;
        }
        let div = u64::from(price_divisor(t.segment));
        // A base price of 50.00 .. 5000.00 in currency units (CDS 50 .. 100).
        let base = if div >= 10_000_000 {
            50 + rng.below(50)
        } else {
            50 + rng.below(4950)
        };
        let last = u32::try_from(base * div).unwrap_or(u32::MAX / 2);
        t.last_price = last;
        t.ohlc = Ohlc {
            open: last,
            high: last,
            low: last,
            close: last,
        };
        t.average_traded_price = last;
        t.exchange_timestamp = now_s;
        t.last_trade_time = now_s;
        State {
            tick: t,
            rng,
            last_touch: 0,
        }
    }

    /// Makes sure `token` has state (evicting the least recently touched if
    /// full), marks it used.
    pub(crate) fn touch(&mut self, token: u32, now_s: u32) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(s) = self.states.get_mut(&token) {
            s.last_touch = clock;
            return;
        }
        // NB: a linear scan for the least recently touched; eviction only
        // happens when a new instrument arrives at the bound (cold in the mock).
        if self.states.len() >= self.max_instruments
            && let Some((&victim, _)) = self.states.iter().min_by_key(|(_, s)| s.last_touch)
        {
            self.states.remove(&victim);
            self.evicted += 1;
        }
        let mut s = self.fresh(token, now_s);
        s.last_touch = clock;
        self.states.insert(token, s);
    }

    /// Advances `token` one random-walk step and returns its full state.
    pub(crate) fn update(&mut self, token: u32, now_s: u32) -> Tick {
        self.touch(token, now_s);
        let s = self.states.get_mut(&token).expect("touched above");
        let t = &mut s.tick;
        let rng = &mut s.rng;
        let div = u64::from(t.price_divisor);
        let tick_size = (div / 20).max(1); // 0.05 in currency units
        let steps = rng.below(7) as i64 - 3;
        let moved = (i64::from(t.last_price) + steps * tick_size as i64)
            .clamp(tick_size as i64, i64::from(u32::MAX / 2));
        t.last_price = moved as u32;
        t.ohlc.high = t.ohlc.high.max(t.last_price);
        t.ohlc.low = t.ohlc.low.min(t.last_price);
        t.exchange_timestamp = now_s;
        if t.segment != SEGMENT_INDICES {
            let qty = 1 + rng.below(500) as u32;
            t.last_traded_quantity = qty;
            let vol = u64::from(t.volume_traded);
            t.average_traded_price = u32::try_from(
                (u64::from(t.average_traded_price) * vol
                    + u64::from(t.last_price) * u64::from(qty))
                    / (vol + u64::from(qty)).max(1),
            )
            .unwrap_or(t.last_price);
            t.volume_traded = t.volume_traded.saturating_add(qty);
            t.total_buy_quantity = 1_000 + rng.below(100_000) as u32;
            t.total_sell_quantity = 1_000 + rng.below(100_000) as u32;
            t.last_trade_time = now_s;
            let oi_step = rng.below(201) as i64 - 100;
            t.oi = (i64::from(t.oi) + oi_step).clamp(0, i64::from(u32::MAX)) as u32;
            t.oi_day_high = t.oi_day_high.max(t.oi);
            t.oi_day_low = if t.oi_day_low == 0 {
                t.oi
            } else {
                t.oi_day_low.min(t.oi)
            };
            let mut depth = Depth::default();
            for i in 0..5u32 {
                let off = u32::try_from(tick_size).unwrap_or(1) * (i + 1);
                depth.buy[i as usize] = DepthLevel {
                    quantity: 1 + rng.below(2_000) as u32,
                    price: t.last_price.saturating_sub(off),
                    orders: 1 + rng.below(40) as u16,
                };
                depth.sell[i as usize] = DepthLevel {
                    quantity: 1 + rng.below(2_000) as u32,
                    price: t.last_price.saturating_add(off),
                    orders: 1 + rng.below(40) as u16,
                };
            }
            t.depth = depth;
        }
        *t
    }

    /// Picks one of `active` uniformly (generator's own RNG).
    pub(crate) fn pick(&mut self, active: &[u32]) -> Option<u32> {
        if active.is_empty() {
            return None;
        }
        Some(active[self.rng.below(active.len() as u64) as usize])
    }
}

/// The packet kind a subscription `mode` gets for a full-state tick.
pub(crate) fn kind_for(tick: &Tick, mode: crate::Mode) -> PacketKind {
    let index = tick.segment == SEGMENT_INDICES;
    match (mode, index) {
        (crate::Mode::Ltp, _) => PacketKind::Ltp,
        (crate::Mode::Quote, true) => PacketKind::IndexQuote,
        (crate::Mode::Quote, false) => PacketKind::Quote,
        (crate::Mode::Full, true) => PacketKind::IndexFull,
        (crate::Mode::Full, false) => PacketKind::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_walk() {
        let mut a = Market::new(7, 10, HashMap::new());
        let mut b = Market::new(7, 10, HashMap::new());
        for i in 0..100 {
            assert_eq!(
                a.update(408_065, 1_700_000_000 + i),
                b.update(408_065, 1_700_000_000 + i)
            );
        }
        let t = a.update(408_065, 1);
        assert!(t.ohlc.low <= t.last_price && t.last_price <= t.ohlc.high);
        assert!(t.depth.buy[0].price < t.depth.sell[0].price);
    }

    #[test]
    fn lru_bound_and_expiry() {
        let mut m = Market::new(1, 3, HashMap::from([(2, 100)]));
        for tok in [1, 2, 3] {
            m.touch(tok, 0);
        }
        m.touch(1, 0); // 2 is now least recent
        m.touch(4, 0);
        assert_eq!((m.len(), m.evicted), (3, 1));
        m.touch(2, 0);
        assert_eq!(m.remove_expired(101), 1);
        assert!(m.is_expired(2, 101) && !m.is_expired(2, 100));
    }

    #[test]
    fn index_state_is_index_full() {
        let mut m = Market::new(1, 3, HashMap::new());
        let t = m.update(256_265, 5);
        assert_eq!(t.kind, PacketKind::IndexFull);
        assert_eq!(kind_for(&t, crate::Mode::Quote), PacketKind::IndexQuote);
    }
}
