//! The last-tick table: per subscribed instrument, when its latest tick was
//! pushed onto a ring (README, "SLO monitoring"; `docs/ARCHITECTURE.md`,
//! "SLO gap monitor").
//!
//! Contract: allocated once at start-up for the universe's capacity
//! (`max_connections × max_per_connection` instruments); never grows, never
//! locks. One writer, the network thread: [`LastTicks::record`] (one probe
//! and one relaxed store per pushed tick, from `Router::route`) and
//! [`LastTicks::sync`] (when a live subscription change is applied; cold).
//! The caller's thread fills it with the first instruments before the
//! network thread starts (the spawn orders those stores before its reads).
//! Any thread reads it ([`LastTicks::last_ns`], the ops side's sampler).
//!
//! Layout: open addressing with linear probing over two parallel arrays,
//! `tokens` (0 = empty, `u32::MAX` = a removed instrument's tombstone) and
//! `last_ns`; a power-of-two length with load at most 3/4, and probes of
//! at most [`MAX_PROBE`] slots, so a lookup for a token that is not there
//! ends within a few cache lines. An instrument that finds no slot within
//! that many probes is untracked (counted, [`LastTicks::untracked`]).

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// Longest probe sequence: beyond it an instrument is untracked.
pub const MAX_PROBE: usize = 32;

const EMPTY: u32 = 0;
const TOMBSTONE: u32 = u32::MAX;

/// The last-tick time of every tracked instrument.
#[derive(Debug)]
pub struct LastTicks {
    tokens: Box<[AtomicU32]>,
    last_ns: Box<[AtomicU64]>,
    /// `len - 1`; unused when `tokens` is empty.
    mask: usize,
    /// `64 - log2(len)`: the hash's shift.
    shift: u32,
    /// Instruments that got no slot (subscribed now, not tracked).
    untracked: AtomicU64,
    /// Instruments that have a slot now.
    tracked: AtomicU64,
}

impl Default for LastTicks {
    /// An empty table: tracks nothing.
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl LastTicks {
    /// A table for up to `instruments` at once (load at most 3/4); an
    /// empty one (tracks nothing, every call a no-op) for 0.
    #[must_use]
    pub fn with_capacity(instruments: usize) -> Self {
        let len = if instruments == 0 {
            0
        } else {
            (instruments.saturating_mul(4) / 3 + 1).next_power_of_two()
        };
        Self {
            tokens: (0..len).map(|_| AtomicU32::new(EMPTY)).collect(),
            last_ns: (0..len).map(|_| AtomicU64::new(0)).collect(),
            mask: len.saturating_sub(1),
            shift: 64 - len.max(1).trailing_zeros(),
            untracked: AtomicU64::new(0),
            tracked: AtomicU64::new(0),
        }
    }

    /// Slots (memory: 12 bytes each).
    #[must_use]
    pub fn slots(&self) -> usize {
        self.tokens.len()
    }

    /// The home slot of `token` (Fibonacci hashing: the low byte of a token
    /// is its segment, so masking alone would crowd each segment).
    #[inline]
    fn home(&self, token: u32) -> usize {
        // The shift keeps only `log2(len)` bits: the cast cannot truncate.
        (u64::from(token).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize & self.mask
    }

    /// The slot of `token`, if it has one.
    #[inline]
    fn find(&self, token: u32) -> Option<usize> {
        if self.tokens.is_empty() || token == TOMBSTONE {
            return None;
        }
        let mut i = self.home(token);
        for _ in 0..MAX_PROBE {
            // Acquire: pairs with the Release in `insert`, so a reader that
            // finds the token sees the slot's initial time too.
            let t = self.tokens[i].load(Acquire);
            if t == EMPTY {
                return None;
            }
            if t == token {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Network thread, per pushed tick: `token`'s latest tick was received
    /// at `ns`. A probe of about one slot and one store; nothing for an
    /// untracked token. Never blocks, never allocates.
    #[inline]
    pub fn record(&self, token: u32, ns: u64) {
        if let Some(i) = self.find(token) {
            // Relaxed: the time is the only data; the ops side needs it
            // eventually, not ordered with anything else.
            self.last_ns[i].store(ns, Relaxed);
        }
    }

    /// When `token`'s latest tick was received (or, before its first, when
    /// it was subscribed), ns since the epoch; `None` when it is not
    /// tracked. Any thread.
    #[must_use]
    pub fn last_ns(&self, token: u32) -> Option<u64> {
        // Relaxed: a time slightly behind the writer's only makes the
        // instrument look older by the writer's last few nanoseconds.
        self.find(token).map(|i| self.last_ns[i].load(Relaxed))
    }

    /// Instruments subscribed now that have no slot.
    #[must_use]
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Relaxed)
    }

    /// Instruments that have a slot now.
    #[must_use]
    pub fn tracked(&self) -> u64 {
        self.tracked.load(Relaxed)
    }

    /// The writer: gives `token` a slot whose time starts at `now_ns` (its
    /// subscription), reusing the first tombstone on its probe path;
    /// counts it untracked when there is none within [`MAX_PROBE`].
    fn insert(&self, token: u32, now_ns: u64) {
        if token == EMPTY || token == TOMBSTONE || self.tokens.is_empty() {
            self.untracked.fetch_add(1, Relaxed);
            return;
        }
        let mut i = self.home(token);
        let mut free = None;
        for _ in 0..MAX_PROBE {
            let t = self.tokens[i].load(Relaxed);
            if t == token {
                return;
            }
            if t == TOMBSTONE && free.is_none() {
                free = Some(i);
            }
            if t == EMPTY {
                free = free.or(Some(i));
                break;
            }
            i = (i + 1) & self.mask;
        }
        let Some(i) = free else {
            self.untracked.fetch_add(1, Relaxed);
            return;
        };
        self.last_ns[i].store(now_ns, Relaxed);
        // Release: pairs with the Acquire in `find` (the time above first).
        self.tokens[i].store(token, Release);
        self.tracked.fetch_add(1, Relaxed);
    }

    /// The writer: `token` is no longer subscribed. Its slot becomes a
    /// tombstone, or empty when the next slot is empty (no probe passes
    /// through it then), so tombstones do not pile up.
    fn remove(&self, token: u32) {
        let Some(i) = self.find(token) else {
            return;
        };
        let next_empty = self.tokens[(i + 1) & self.mask].load(Relaxed) == EMPTY;
        let mark = if next_empty { EMPTY } else { TOMBSTONE };
        self.tokens[i].store(mark, Release);
        self.tracked.fetch_sub(1, Relaxed);
    }

    /// The writer (the network thread; the caller's thread before it
    /// starts): the subscriptions changed from `before` to `after` (each
    /// sorted by token, unique). Removed instruments lose their slot; added
    /// ones get one, their time starting at `now_ns`; the untracked count
    /// is recomputed. Cold: a merge of the two lists, no allocation.
    pub fn sync(&self, before: &[u32], after: &[u32], now_ns: u64) {
        let (mut a, mut b) = (0, 0);
        while a < before.len() || b < after.len() {
            match (before.get(a), after.get(b)) {
                (Some(x), Some(y)) if x == y => {
                    a += 1;
                    b += 1;
                }
                (Some(x), Some(y)) if x < y => {
                    self.remove(*x);
                    a += 1;
                }
                (Some(x), None) => {
                    self.remove(*x);
                    a += 1;
                }
                (_, Some(y)) => {
                    self.insert(*y, now_ns);
                    b += 1;
                }
                (None, None) => break,
            }
        }
        // Untracked instruments of `before` that are still subscribed get
        // another chance: recount from the final state.
        let mut untracked = 0;
        for &t in after {
            if self.find(t).is_none() {
                self.insert(t, now_ns);
                untracked += u64::from(self.find(t).is_none());
            }
        }
        self.untracked.store(untracked, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_instruments_record_and_removed_ones_stop() {
        let t = LastTicks::with_capacity(9000);
        assert_eq!(t.slots(), 16_384);
        let tokens: Vec<u32> = (1..=9000u32).map(|i| (i << 8) | 1).collect();
        t.sync(&[], &tokens, 5);
        assert_eq!((t.tracked(), t.untracked()), (9000, 0));
        assert!(tokens.iter().all(|&x| t.last_ns(x) == Some(5)));
        t.record(tokens[17], 99);
        assert_eq!(t.last_ns(tokens[17]), Some(99));
        // Not subscribed: no slot, nothing recorded.
        t.record(7, 1);
        assert_eq!(t.last_ns(7), None);
        // Half removed, a new half added: every current one is found.
        let after: Vec<u32> = (4501..=13_500u32).map(|i| (i << 8) | 1).collect();
        t.sync(&tokens, &after, 50);
        assert_eq!((t.tracked(), t.untracked()), (9000, 0));
        assert_eq!(t.last_ns(tokens[0]), None);
        assert_eq!(t.last_ns(after[0]), Some(5), "kept, with its time");
        assert_eq!(t.last_ns(after[8999]), Some(50), "new: its subscription");
    }

    #[test]
    fn an_instrument_without_a_slot_is_counted_untracked() {
        let t = LastTicks::with_capacity(2);
        assert_eq!(t.slots(), 4);
        let tokens = [1u32, 2, 3, 4, 5, 6];
        t.sync(&[], &tokens, 1);
        assert_eq!((t.tracked(), t.untracked()), (4, 2));
        // Two leave: the two untracked ones get their slots.
        let after = [3u32, 4, 5, 6];
        t.sync(&tokens, &after, 2);
        assert_eq!((t.tracked(), t.untracked()), (4, 0));
        assert!(after.iter().all(|&x| t.last_ns(x).is_some()));
        // The reserved values are never tracked; an empty table tracks none.
        t.sync(&after, &[0, 3, u32::MAX], 3);
        assert_eq!(t.untracked(), 2);
        let none = LastTicks::with_capacity(0);
        none.sync(&[], &[1], 1);
        none.record(1, 2);
        assert_eq!((none.last_ns(1), none.untracked()), (None, 1));
    }
}
