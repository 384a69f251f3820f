//! The SLO gap monitor's pure core: one sampling round over the subscribed
//! instruments, on a clock the caller gives (README, "SLO monitoring").
//!
//! Runs on the ops side (the `run` loop, through `Ops::sample`). Owns its
//! rotation cursors and a reused scratch list per tier; reads the last-tick
//! times through a function, so tests drive it with a fake clock and a fake
//! table.

use serde::Serialize;

use crate::tier::{TIERS, Tier};

/// The settings of `[slo]`, in the units the monitor uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// A round every this long, ns.
    pub interval_ns: u64,
    /// Each tier's expected interval between two ticks of an instrument, ns.
    pub expected_ns: [u64; TIERS],
    /// Instruments sampled per round, per tier.
    pub sample: [usize; TIERS],
    /// A tier's violation rate above this is a `/health` note (`slo_gap`).
    pub violation_threshold: f64,
}

/// Where an instrument's market is at the round's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Market {
    /// In a session that opened at `since_ns` (0: always open, or the
    /// calendar does not know the market): a gap counts from there at most.
    Open {
        /// The session's opening, ns since the epoch.
        since_ns: u64,
    },
    /// Closed: the instrument is not sampled as a violation.
    Closed,
}

/// One tier's result of the latest round.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TierRound {
    /// `T0`, `T1`, `T2`.
    pub tier: &'static str,
    /// Instruments of the tier subscribed at the round.
    pub subscribed: u64,
    /// Sampled instruments whose market was open (the rate's denominator).
    pub sampled: u64,
    /// Sampled instruments whose market was closed (not counted).
    pub closed: u64,
    /// Sampled instruments with no slot in the last-tick table (not
    /// counted; README, "SLO monitoring").
    pub untracked: u64,
    /// Open instruments whose last tick was older than twice the tier's
    /// expected interval.
    pub violations: u64,
    /// `violations / sampled` (0 when nothing was sampled).
    pub violation_rate: f64,
    /// The tier's expected interval, ms.
    pub expected_ms: u64,
    /// The oldest gap among the violations.
    pub oldest_gap: Option<Gap>,
}

/// An instrument's gap: how long since its last tick (or its session's
/// opening, or its subscription).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The instrument token.
    pub instrument: u32,
    /// The gap, ms.
    pub age_ms: u64,
}

/// The latest round, as `/metrics`, `/health` and the view show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloView {
    /// The sampling interval as the metric's `interval` label (`30s`).
    pub interval: String,
    /// Rounds so far.
    pub rounds: u64,
    /// When the latest round ran, ns since the epoch (0: none yet).
    pub at_ns: u64,
    /// Per tier, T0 first.
    pub tiers: [TierRound; TIERS],
}

impl Default for SloView {
    /// No monitor (`interval` empty): nothing to show.
    fn default() -> Self {
        Self {
            interval: String::new(),
            rounds: 0,
            at_ns: 0,
            tiers: Tier::ALL.map(|t| TierRound {
                tier: t.label(),
                ..TierRound::default()
            }),
        }
    }
}

/// The monitor: call [`due`](Self::due), then [`round`](Self::round).
#[derive(Debug)]
pub struct Monitor {
    settings: Settings,
    next_ns: u64,
    cursor: [usize; TIERS],
    scratch: [Vec<u32>; TIERS],
    view: SloView,
}

impl Monitor {
    /// A monitor whose first round is due one interval after `now_ns`.
    #[must_use]
    pub fn new(settings: Settings, now_ns: u64) -> Self {
        let secs = settings.interval_ns / 1_000_000_000;
        let interval = if settings.interval_ns.is_multiple_of(1_000_000_000) {
            format!("{secs}s")
        } else {
            format!("{}ms", settings.interval_ns / 1_000_000)
        };
        Self {
            settings,
            next_ns: now_ns.saturating_add(settings.interval_ns),
            cursor: [0; TIERS],
            scratch: Default::default(),
            view: SloView {
                interval,
                tiers: Tier::ALL.map(|t| TierRound {
                    tier: t.label(),
                    expected_ms: settings.expected_ns[t.index()] / 1_000_000,
                    ..TierRound::default()
                }),
                ..SloView::default()
            },
        }
    }

    /// The settings.
    #[must_use]
    pub const fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether a round is due at `now_ns`.
    #[must_use]
    pub const fn due(&self, now_ns: u64) -> bool {
        now_ns >= self.next_ns
    }

    /// The latest round.
    #[must_use]
    pub const fn view(&self) -> &SloView {
        &self.view
    }

    /// One round at `now_ns` over the `subscribed` instruments (any order,
    /// repeats ignored): per tier, a rotating window of at most the tier's
    /// sample size over its instruments sorted by token (the window moves
    /// on by its size each round, so every instrument is sampled at least
    /// once every `ceil(n / sample)` rounds). A sampled instrument in a
    /// closed market is counted `closed`; one without a last-tick time
    /// `untracked`; any other is a violation when `now_ns` minus the later
    /// of its last tick and its session's opening exceeds twice the tier's
    /// expected interval. Allocates only to grow the scratch lists.
    pub fn round(
        &mut self,
        subscribed: impl IntoIterator<Item = u32>,
        tier_of: impl Fn(u32) -> Tier,
        mut last_ns: impl FnMut(u32) -> Option<u64>,
        mut market: impl FnMut(u32) -> Market,
        now_ns: u64,
    ) -> &SloView {
        for s in &mut self.scratch {
            s.clear();
        }
        for t in subscribed {
            self.scratch[tier_of(t).index()].push(t);
        }
        for tier in Tier::ALL {
            let k = tier.index();
            let list = &mut self.scratch[k];
            list.sort_unstable();
            list.dedup();
            let n = list.len();
            let take = self.settings.sample[k].min(n);
            let start = if n == 0 { 0 } else { self.cursor[k] % n };
            self.cursor[k] = if n == 0 { 0 } else { (start + take) % n };
            let limit = self.settings.expected_ns[k].saturating_mul(2);
            let r = &mut self.view.tiers[k];
            *r = TierRound {
                tier: tier.label(),
                subscribed: n as u64,
                expected_ms: self.settings.expected_ns[k] / 1_000_000,
                ..TierRound::default()
            };
            for j in 0..take {
                let token = list[(start + j) % n];
                let since = match market(token) {
                    Market::Closed => {
                        r.closed += 1;
                        continue;
                    }
                    Market::Open { since_ns } => since_ns,
                };
                let Some(last) = last_ns(token) else {
                    r.untracked += 1;
                    continue;
                };
                r.sampled += 1;
                let age = now_ns.saturating_sub(last.max(since));
                if age > limit {
                    r.violations += 1;
                    let ms = age / 1_000_000;
                    if r.oldest_gap.is_none_or(|g| ms > g.age_ms) {
                        r.oldest_gap = Some(Gap {
                            instrument: token,
                            age_ms: ms,
                        });
                    }
                }
            }
            #[allow(clippy::cast_precision_loss, reason = "counts of instruments")]
            if r.sampled > 0 {
                r.violation_rate = r.violations as f64 / r.sampled as f64;
            }
        }
        self.view.rounds += 1;
        self.view.at_ns = now_ns;
        // The next round one interval after this one, or after now when the
        // caller fell behind (no burst of catch-up rounds).
        self.next_ns = self
            .next_ns
            .saturating_add(self.settings.interval_ns)
            .max(now_ns.saturating_add(1));
        &self.view
    }

    /// The `/health` note: tiers whose violation rate is above the
    /// threshold, with the numbers and what to do; `None` when none is.
    #[must_use]
    pub fn health_note(&self) -> Option<String> {
        let t = self.settings.violation_threshold;
        let over: Vec<String> = self
            .view
            .tiers
            .iter()
            .filter(|r| r.sampled > 0 && r.violation_rate > t)
            .map(|r| {
                let worst = r.oldest_gap.map_or_else(String::new, |g| {
                    format!("; oldest: instrument {}, {} ms", g.instrument, g.age_ms)
                });
                format!(
                    "{}: {} of {} sampled instruments ({:.2}%) had no tick for more than 2 × \
                     {} ms{worst}",
                    r.tier,
                    r.violations,
                    r.sampled,
                    r.violation_rate * 100.0,
                    r.expected_ms,
                )
            })
            .collect();
        (!over.is_empty()).then(|| {
            format!(
                "SLO gaps above slo.violation_threshold = {:.2}% in the last {} round: {}; check \
                 the connections and subscriptions of these instruments, or raise \
                 slo.tN_expected_ms if they trade less often",
                t * 100.0,
                self.view.interval,
                over.join("; ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn settings() -> Settings {
        Settings {
            interval_ns: S,
            expected_ns: [500_000_000, 5 * S, 30 * S],
            sample: [200, 200, 100],
            violation_threshold: 0.001,
        }
    }

    /// 200 T0 instruments, every one ticking at `now - 100 ms` except
    /// `stalled`, whose last tick was at `stalled_at`.
    fn t0_round(m: &mut Monitor, now: u64, stalled_at: u64, market: Market) -> TierRound {
        let tokens: Vec<u32> = (1..=200u32).map(|i| (i << 8) | 1).collect();
        let stalled = tokens[57];
        m.round(
            tokens.iter().copied(),
            |_| Tier::T0,
            |t| {
                Some(if t == stalled {
                    stalled_at
                } else {
                    now - S / 10
                })
            },
            |_| market,
            now,
        )
        .tiers[0]
            .clone()
    }

    #[test]
    fn one_stalled_instrument_of_200_in_t0_is_a_rate_of_0_005_and_0_when_closed() {
        let now = 1_000 * S;
        let mut m = Monitor::new(settings(), now - S);
        assert!(m.due(now) && !m.due(now - 1));
        let open = Market::Open { since_ns: 0 };
        // Silent for 0.9 s: within 2 × 500 ms.
        let r = t0_round(&mut m, now, now - 9 * S / 10, open);
        assert_eq!((r.sampled, r.violations, r.violation_rate), (200, 0, 0.0));
        assert!(m.health_note().is_none());
        // Silent for 1.2 s: one violation in 200.
        let r = t0_round(&mut m, now + S, now - S / 5, open);
        assert_eq!((r.sampled, r.violations), (200, 1));
        assert!((r.violation_rate - 0.005).abs() < 1e-12, "{r:?}");
        let oldest = r.oldest_gap.unwrap();
        assert_eq!((oldest.instrument, oldest.age_ms), ((58 << 8) | 1, 1200));
        let note = m.health_note().unwrap();
        assert!(
            note.contains("T0: 1 of 200 sampled instruments (0.50%)"),
            "{note}"
        );
        // Its market closed: nothing sampled as a violation.
        let r = t0_round(&mut m, now + 2 * S, now - S / 5, Market::Closed);
        assert_eq!((r.closed, r.sampled, r.violations), (200, 0, 0));
        assert!(r.violation_rate.abs() < f64::EPSILON);
        assert!(m.health_note().is_none());
        assert_eq!(m.view().rounds, 3);
        assert_eq!(m.view().interval, "1s");
    }

    #[test]
    fn a_gap_counts_from_the_session_opening_at_most() {
        let now = 1_000 * S;
        let mut m = Monitor::new(settings(), now);
        // Last tick yesterday; the session opened 0.5 s ago: no violation yet.
        let r = t0_round(
            &mut m,
            now,
            10,
            Market::Open {
                since_ns: now - S / 2,
            },
        );
        assert_eq!(r.violations, 0);
        let r = t0_round(
            &mut m,
            now,
            10,
            Market::Open {
                since_ns: now - 2 * S,
            },
        );
        assert_eq!(r.violations, 1);
    }

    #[test]
    fn the_sample_rotates_over_a_larger_tier_and_untracked_ones_are_not_counted() {
        let mut s = settings();
        s.sample = [3, 3, 3];
        let mut m = Monitor::new(s, 0);
        let tokens = [50u32, 10, 40, 20, 30, 10];
        let mut seen = Vec::new();
        for round in 0..2 {
            let r = m.round(
                tokens,
                |t| if t == 30 { Tier::T2 } else { Tier::T1 },
                |t| {
                    seen.push((round, t));
                    (t != 40).then_some(0)
                },
                |_| Market::Open { since_ns: 0 },
                100 * S,
            );
            assert_eq!(r.tiers[1].subscribed, 4);
            assert_eq!(r.tiers[2].subscribed, 1);
        }
        // T1 sorted: 10 20 40 50; round 0 takes 10 20 40, round 1 50 10 20.
        let t1: Vec<_> = seen.iter().filter(|x| x.1 != 30).copied().collect();
        assert_eq!(t1, [(0, 10), (0, 20), (0, 40), (1, 50), (1, 10), (1, 20)]);
        let r = &m.view().tiers[1];
        assert_eq!((r.sampled, r.untracked, r.violations), (3, 0, 3));
        assert_eq!(m.view().tiers[0].subscribed, 0);
        assert!(m.view().tiers[0].violation_rate.abs() < f64::EPSILON);
    }
}
