//! `[tiers]`: which instruments are T0, T1 and T2, and how a publisher's
//! ring memory is split between them (README, "Tiers"). Read on the main
//! thread; [`TiersConfig::map`] turns the rules and the instruments CSV's
//! `tier` column into the [`TierMap`] the engine uses. Fixed for the run.

use serde::{Deserialize, Serialize};

use super::defaults;
use crate::tier::{TIERS, Tier, TierMap, exchange_segment};

/// `[tiers]` settings. Precedence: the instruments CSV's `tier` column, then
/// the token lists, then the exchange lists, then `default`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TiersConfig {
    /// The tier of an instrument no rule names.
    pub default: Tier,
    /// Exchanges (`NSE`, `NFO`, `CDS`, `BSE`, `BFO`, `BCD`, `MCX`, `MCXSX`,
    /// `INDICES`, `NCO`) whose instruments are T0.
    pub t0_exchanges: Vec<String>,
    /// Exchanges whose instruments are T1.
    pub t1_exchanges: Vec<String>,
    /// Exchanges whose instruments are T2.
    pub t2_exchanges: Vec<String>,
    /// Instrument tokens that are T0.
    pub t0_tokens: Vec<u32>,
    /// Instrument tokens that are T1.
    pub t1_tokens: Vec<u32>,
    /// Instrument tokens that are T2.
    pub t2_tokens: Vec<u32>,
    /// T0's share of each publisher's `engine.ring_capacity`, percent.
    pub t0_ring_pct: u64,
    /// T1's share, percent.
    pub t1_ring_pct: u64,
    /// T2's share, percent.
    pub t2_ring_pct: u64,
}

impl Default for TiersConfig {
    fn default() -> Self {
        Self {
            default: Tier::T1,
            t0_exchanges: Vec::new(),
            t1_exchanges: Vec::new(),
            t2_exchanges: Vec::new(),
            t0_tokens: Vec::new(),
            t1_tokens: Vec::new(),
            t2_tokens: Vec::new(),
            t0_ring_pct: defaults::TIER_RING_PCT[0],
            t1_ring_pct: defaults::TIER_RING_PCT[1],
            t2_ring_pct: defaults::TIER_RING_PCT[2],
        }
    }
}

impl TiersConfig {
    fn exchanges(&self) -> [(Tier, &Vec<String>); TIERS] {
        [
            (Tier::T0, &self.t0_exchanges),
            (Tier::T1, &self.t1_exchanges),
            (Tier::T2, &self.t2_exchanges),
        ]
    }

    fn tokens(&self) -> [(Tier, &Vec<u32>); TIERS] {
        [
            (Tier::T0, &self.t0_tokens),
            (Tier::T1, &self.t1_tokens),
            (Tier::T2, &self.t2_tokens),
        ]
    }

    /// The ring shares, percent, T0 first.
    #[must_use]
    pub const fn ring_pct(&self) -> [u64; TIERS] {
        [self.t0_ring_pct, self.t1_ring_pct, self.t2_ring_pct]
    }

    /// Every problem with the settings (README "Ranges"): an unknown
    /// exchange, an exchange or token in two tiers, shares that do not add
    /// up to 100.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (k, v) in [
            ("tiers.t0_ring_pct", self.t0_ring_pct),
            ("tiers.t1_ring_pct", self.t1_ring_pct),
            ("tiers.t2_ring_pct", self.t2_ring_pct),
        ] {
            super::ranges::check(&mut p, k, v);
        }
        let sum = self
            .ring_pct()
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b));
        if sum != 100 {
            p.push(format!(
                "tiers.t0_ring_pct + t1_ring_pct + t2_ring_pct = {sum}: must be 100 (default {:?})",
                defaults::TIER_RING_PCT
            ));
        }
        let mut seen_seg: [Option<Tier>; 256] = [None; 256];
        for (tier, list) in self.exchanges() {
            for name in list {
                let key = format!("tiers.{}_exchanges", tier.label().to_ascii_lowercase());
                match exchange_segment(name) {
                    None => p.push(format!(
                        "{key}: {name:?} is not an exchange (NSE, NFO, CDS, BSE, BFO, BCD, MCX, \
                         MCXSX, INDICES, NCO)"
                    )),
                    Some(s) => match seen_seg[usize::from(s)] {
                        Some(other) if other != tier => p.push(format!(
                            "{key}: {name:?} is also in {}: an exchange has one tier",
                            other.label()
                        )),
                        _ => seen_seg[usize::from(s)] = Some(tier),
                    },
                }
            }
        }
        let mut seen = std::collections::HashMap::new();
        for (tier, list) in self.tokens() {
            for &t in list {
                if let Some(other) = seen.insert(t, tier)
                    && other != tier
                {
                    p.push(format!(
                        "tiers.{}_tokens: token {t} is also in {}: a token has one tier",
                        tier.label().to_ascii_lowercase(),
                        other.label()
                    ));
                }
            }
        }
        p
    }

    /// The token → tier map of these rules and the instruments CSV's
    /// `csv` tiers (which win). Unknown exchanges are skipped
    /// ([`problems`](Self::problems) names them).
    #[must_use]
    pub fn map(&self, csv: &[(u32, Tier)]) -> TierMap {
        let segments: Vec<(u8, Tier)> = self
            .exchanges()
            .into_iter()
            .flat_map(|(t, l)| {
                l.iter()
                    .filter_map(move |n| Some((exchange_segment(n)?, t)))
            })
            .collect();
        let named: Vec<(u32, Tier)> = self
            .tokens()
            .into_iter()
            .flat_map(|(t, l)| l.iter().map(move |&tok| (tok, t)))
            .chain(csv.iter().copied())
            .collect();
        TierMap::new(self.default, &segments, &named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_build_the_map_and_bad_rules_are_named() {
        let c = TiersConfig {
            t2_exchanges: vec!["nfo".into()],
            t0_tokens: vec![(7 << 8) | 2],
            ..TiersConfig::default()
        };
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let m = c.map(&[((9 << 8) | 2, Tier::T1)]);
        assert_eq!(m.tier_of((1 << 8) | 2), Tier::T2);
        assert_eq!(m.tier_of((7 << 8) | 2), Tier::T0);
        assert_eq!(m.tier_of((9 << 8) | 2), Tier::T1);
        assert_eq!(m.tier_of((9 << 8) | 1), Tier::T1);
        let bad = TiersConfig {
            t0_exchanges: vec!["NSE".into(), "XX".into()],
            t1_exchanges: vec!["nse".into()],
            t1_tokens: vec![5],
            t2_tokens: vec![5],
            t0_ring_pct: 60,
            ..TiersConfig::default()
        };
        let p = bad.problems().join("\n");
        for want in [
            "\"XX\" is not an exchange",
            "\"nse\" is also in T0",
            "token 5 is also in T1",
            "= 110: must be 100",
        ] {
            assert!(p.contains(want), "{want}: {p}");
        }
    }
}
