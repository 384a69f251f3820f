//! Instrument tiers T0/T1/T2: what is shed last (T0) and first (T2) under
//! pressure (README, "Tiers"; `docs/ARCHITECTURE.md`, "Tiers").
//!
//! A leaf: the [`TierMap`] is built once at start-up (on the caller's
//! thread) from the `[tiers]` rules and the instruments CSV's `tier` column,
//! then shared read-only (`Arc`) by the network thread's router (one lookup
//! per tick), the publishers' producers (per delivery report) and the ops
//! side. Looking a token up never allocates: an open-addressing table of the
//! tokens given a tier by name (a multiplicative hash, load at most 1/2,
//! built once; skipped when there are none), then a 256-entry table by
//! segment (`token & 0xFF`), whose entries are the exchange rules over the
//! default tier. A token added live (a subscription
//! change) that the map does not name gets its segment's tier, so the
//! tier of a token never changes during a run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many tiers there are.
pub const TIERS: usize = 3;

/// A tier. T0 is shed last, T2 first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize, Serialize,
)]
#[repr(u8)]
pub enum Tier {
    /// Shed last: a T0 tick is dropped only when the T0 ring is full.
    T0 = 0,
    /// Shed after T2.
    #[default]
    T1 = 1,
    /// Shed first.
    T2 = 2,
}

impl Tier {
    /// Every tier, in drop order reversed (T0 first).
    pub const ALL: [Self; TIERS] = [Self::T0, Self::T1, Self::T2];

    /// The label used in the summary and in metrics (`{tier="T0"}`).
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::T0 => "T0",
            Self::T1 => "T1",
            Self::T2 => "T2",
        }
    }

    /// The index (0, 1, 2).
    #[must_use]
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Parses `T0`/`T1`/`T2` or `0`/`1`/`2` (any case, trimmed).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "T0" | "0" => Some(Self::T0),
            "T1" | "1" => Some(Self::T1),
            "T2" | "2" => Some(Self::T2),
            _ => None,
        }
    }
}

/// Segment code (`token & 0xFF`) of an exchange name as the instruments
/// dump writes it (`docs/KITE_PROTOCOL.md` §4.3), case-insensitive.
#[must_use]
pub fn exchange_segment(name: &str) -> Option<u8> {
    Some(match name.trim().to_ascii_uppercase().as_str() {
        "NSE" => 1,
        "NFO" => 2,
        "CDS" => 3,
        "BSE" => 4,
        "BFO" => 5,
        "BCD" => 6,
        "MCX" => 7,
        "MCXSX" | "MCX-SX" => 8,
        "INDICES" => 9,
        "NCO" => 12,
        _ => return None,
    })
}

/// Token → tier, fixed for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierMap {
    /// Tokens whose tier differs from their segment's, as an open-addressing
    /// table: slot = `token << 8 | (tier + 1)`, 0 = empty; a power-of-two
    /// length at least twice the tokens (empty when there are none).
    named: Box<[u64]>,
    /// `64 - log2(named.len())`: the hash's shift.
    shift: u32,
    /// Tokens in `named`.
    named_len: usize,
    /// Tier by segment code: the exchange rules over the default.
    by_segment: [Tier; 256],
}

/// The home slot of `token` in a table of `64 - shift` bits (Fibonacci
/// hashing: the token's low byte is its segment, so plain masking would
/// crowd each segment together).
#[inline]
const fn slot_of(token: u32, shift: u32) -> usize {
    ((token as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

impl Default for TierMap {
    /// Every token in [`Tier::default`].
    fn default() -> Self {
        Self::uniform(Tier::default())
    }
}

impl TierMap {
    /// Every token in `tier`.
    #[must_use]
    pub fn uniform(tier: Tier) -> Self {
        Self {
            named: Box::default(),
            shift: 64,
            named_len: 0,
            by_segment: [tier; 256],
        }
    }

    /// The map of `default`, the `segments` rules (segment code → tier) and
    /// the `named` tokens, later entries winning over earlier ones: give
    /// the `[tiers]` token lists first and the CSV column last (the
    /// precedence is CSV column > token list > exchange rule > default).
    #[must_use]
    pub fn new(default: Tier, segments: &[(u8, Tier)], named: &[(u32, Tier)]) -> Self {
        let mut by_segment = [default; 256];
        for &(s, t) in segments {
            by_segment[usize::from(s)] = t;
        }
        let mut last: BTreeMap<u32, Tier> = BTreeMap::new();
        for &(tok, t) in named {
            last.insert(tok, t);
        }
        last.retain(|&tok, t| by_segment[usize::from(tok.to_le_bytes()[0])] != *t);
        if last.is_empty() {
            return Self {
                by_segment,
                ..Self::uniform(default)
            };
        }
        let len = (last.len() * 2).next_power_of_two();
        let shift = 64 - len.trailing_zeros();
        let mut named = vec![0u64; len].into_boxed_slice();
        for (&tok, &t) in &last {
            let mut i = slot_of(tok, shift);
            while named[i] != 0 {
                i = (i + 1) & (len - 1);
            }
            named[i] = (u64::from(tok) << 8) | (t as u64 + 1);
        }
        Self {
            named,
            shift,
            named_len: last.len(),
            by_segment,
        }
    }

    /// The tier of `token`. Never allocates: a probe of the named tokens'
    /// table (skipped when there are none; about one slot read at load
    /// 1/2), then the segment table.
    #[must_use]
    #[inline]
    pub fn tier_of(&self, token: u32) -> Tier {
        if !self.named.is_empty() {
            let mask = self.named.len() - 1;
            let mut i = slot_of(token, self.shift);
            loop {
                let e = self.named[i];
                if e == 0 {
                    break;
                }
                if (e >> 8) as u32 == token {
                    return Tier::ALL[(e & 0xFF) as usize - 1];
                }
                i = (i + 1) & mask;
            }
        }
        self.by_segment[usize::from(token.to_le_bytes()[0])]
    }

    /// The tiers some token can have: a tier no token can reach gets no
    /// ring memory.
    #[must_use]
    pub fn reachable(&self) -> [bool; TIERS] {
        let mut r = [false; TIERS];
        for t in &self.by_segment {
            r[t.index()] = true;
        }
        for &e in self.named.iter().filter(|&&e| e != 0) {
            r[(e & 0xFF) as usize - 1] = true;
        }
        r
    }

    /// Tokens named with a tier other than their segment's.
    #[must_use]
    pub const fn named_len(&self) -> usize {
        self.named_len
    }
}

/// Splits `capacity` ring slots over the tiers by `pct` (each tier's share
/// in percent), among the `reachable` tiers only (renormalized); T0 gets
/// what rounding leaves. A reachable tier gets at least one slot; an
/// unreachable one none.
#[must_use]
pub fn split_capacity(
    capacity: usize,
    pct: [u64; TIERS],
    reachable: [bool; TIERS],
) -> [usize; TIERS] {
    let weight = |t: usize| if reachable[t] { pct[t].max(1) } else { 0 };
    let total = (0..TIERS).map(weight).fold(0u64, u64::saturating_add);
    let mut out = [0usize; TIERS];
    if total == 0 {
        return out;
    }
    let cap = capacity as u128;
    for (t, o) in out.iter_mut().enumerate() {
        let share = cap * u128::from(weight(t)) / u128::from(total);
        *o = usize::try_from(share).unwrap_or(usize::MAX);
        if reachable[t] {
            *o = (*o).max(1);
        }
    }
    let used: usize = out.iter().sum();
    let first = (0..TIERS).find(|&t| reachable[t]).unwrap_or(0);
    out[first] += capacity.saturating_sub(used);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_named_over_segment_over_default() {
        let nse = |n: u32| (n << 8) | 1;
        let nfo = |n: u32| (n << 8) | 2;
        // NFO is T2 by rule; token list says nse(5) T2 and nfo(7) T0; the
        // CSV (later) says nse(5) T0.
        let m = TierMap::new(
            Tier::T1,
            &[(2, Tier::T2)],
            &[(nse(5), Tier::T2), (nfo(7), Tier::T0), (nse(5), Tier::T0)],
        );
        assert_eq!(m.tier_of(nse(1)), Tier::T1);
        assert_eq!(m.tier_of(nfo(1)), Tier::T2);
        assert_eq!(m.tier_of(nfo(7)), Tier::T0);
        assert_eq!(m.tier_of(nse(5)), Tier::T0);
        // A token added live, unknown to the map: its segment's tier.
        assert_eq!(m.tier_of(nfo(999_999)), Tier::T2);
        assert_eq!(m.reachable(), [true, true, true]);
        // Named the same as its segment: not stored.
        let m = TierMap::new(Tier::T1, &[], &[(nse(5), Tier::T1)]);
        assert_eq!((m.named_len(), m.reachable()), (0, [false, true, false]));
    }

    #[test]
    fn every_named_token_is_found_among_many() {
        let named: Vec<(u32, Tier)> = (0..9000u32)
            .map(|i| ((i << 8) | (1 + i % 6), Tier::ALL[(i % 3) as usize]))
            .collect();
        let m = TierMap::new(Tier::T1, &[], &named);
        for &(tok, t) in &named {
            assert_eq!(m.tier_of(tok), t, "{tok}");
        }
        // Tokens not named: their segment's tier (the default here).
        assert!((9000..20_000u32).all(|i| m.tier_of((i << 8) | 1) == Tier::T1));
        assert_eq!(m.tier_of(0), Tier::T1);
        assert_eq!(m.named_len(), 6000);
    }

    #[test]
    fn tiers_parse_both_spellings() {
        for (s, t) in [("T0", Tier::T0), ("t1", Tier::T1), (" 2 ", Tier::T2)] {
            assert_eq!(Tier::parse(s), Some(t));
        }
        assert_eq!(Tier::parse("T3"), None);
        assert_eq!(exchange_segment("nfo"), Some(2));
        assert_eq!(exchange_segment("XYZ"), None);
    }

    #[test]
    fn capacity_goes_to_reachable_tiers_only() {
        assert_eq!(split_capacity(100, [50, 30, 20], [true; 3]), [50, 30, 20]);
        assert_eq!(
            split_capacity(1000, [50, 30, 20], [false, true, false]),
            [0, 1000, 0]
        );
        assert_eq!(
            split_capacity(10, [50, 30, 20], [true, false, true]),
            [8, 0, 2]
        );
        let s = split_capacity(7, [34, 33, 33], [true; 3]);
        assert_eq!(s.iter().sum::<usize>(), 7);
        assert!(s.iter().all(|&c| c >= 1));
        assert_eq!(
            split_capacity(2, [1, 1, 98], [true; 3])
                .iter()
                .sum::<usize>(),
            3
        );
    }
}
