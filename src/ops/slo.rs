//! The SLO gap monitor on the ops side (README, "SLO monitoring"): runs a
//! round of `crate::slo::Monitor` from `Ops::sample` when one is due, over
//! the engine's current subscriptions, tier map and last-tick table and the
//! exchange calendar, and turns a tier above `slo.violation_threshold` into
//! the `slo_gap` health note.

use super::health::{Health, Issue, Status};
use crate::calendar::{Calendar, Exchange};
use crate::config::SloConfig;
use crate::engine::Engine;
use crate::slo::{Market, Monitor, Settings, SloView};

/// The monitor as the ops side runs it (in `Ops::sample`).
#[derive(Debug)]
pub struct Slo {
    monitor: Monitor,
}

impl Slo {
    /// A monitor of `cfg` (checked by `SloConfig::problems`), its first
    /// round one interval after `now_ns`.
    #[must_use]
    pub fn new(cfg: &SloConfig, now_ns: u64) -> Self {
        Self {
            monitor: Monitor::new(settings(cfg), now_ns),
        }
    }

    /// Runs a round when one is due: the engine's current subscriptions,
    /// its tier map and last-tick table, and `calendar` (none: every market
    /// counts as open, as in `run --mock`) at `now_ns`.
    pub fn observe(&mut self, engine: &Engine, calendar: Option<&Calendar>, now_ns: u64) {
        if !self.monitor.due(now_ns) {
            return;
        }
        let subs = engine.connection_subscriptions();
        let tiers = engine.tier_map();
        let table = engine.last_ticks();
        self.monitor.round(
            subs.iter().flat_map(|c| c.iter().map(|&(t, _)| t)),
            |t| tiers.tier_of(t),
            |t| table.last_ns(t),
            |t| market(calendar, t, now_ns),
            now_ns,
        );
    }

    /// The latest round.
    #[must_use]
    pub const fn view(&self) -> &SloView {
        self.monitor.view()
    }

    /// The `/health` note (`slo_gap`), when a tier is above the threshold.
    #[must_use]
    pub fn health_note(&self) -> Option<String> {
        self.monitor.health_note()
    }
}

/// The monitor's settings of `cfg` (in range once `SloConfig::problems` is
/// empty; out-of-range values are clamped, never a panic).
#[must_use]
pub fn settings(cfg: &SloConfig) -> Settings {
    use crate::config::ranges::{MAX_MS, MAX_SECS};
    let ms = |v: u64| v.min(MAX_MS).saturating_mul(1_000_000).max(1);
    let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Settings {
        interval_ns: cfg.interval_s.clamp(1, MAX_SECS) * 1_000_000_000,
        expected_ns: [
            ms(cfg.t0_expected_ms),
            ms(cfg.t1_expected_ms),
            ms(cfg.t2_expected_ms),
        ],
        sample: [n(cfg.t0_sample), n(cfg.t1_sample), n(cfg.t2_sample)],
        violation_threshold: cfg.violation_threshold,
    }
}

/// `h` with the SLO monitor's `slo_gap` note (degraded) when `slo` has one.
#[must_use]
pub fn with_note(slo: Option<&Slo>, h: Health) -> Health {
    match slo.and_then(Slo::health_note) {
        Some(text) => {
            let mut issues = h.issues;
            issues.push(Issue {
                code: "slo_gap",
                severity: Status::Degraded,
                text,
            });
            Health::of(issues)
        }
        None => h,
    }
}

/// `token`'s market at `now_ns`: closed, or open since its session's
/// opening. A segment the calendar does not know, a time outside its
/// window, or no calendar at all: open (as `stale_feed` treats them).
#[must_use]
pub fn market(calendar: Option<&Calendar>, token: u32, now_ns: u64) -> Market {
    let state = calendar.zip(Exchange::of_instrument(token, None));
    match state.and_then(|(c, ex)| c.state(ex, now_ns)) {
        Some(s) if !s.open => Market::Closed,
        Some(s) => Market::Open {
            since_ns: s.from_ns,
        },
        None => Market::Open { since_ns: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::dates::parse_date;
    use crate::calendar::{Calendar, DAY_NS, Holidays, IST_OFFSET_NS};

    #[test]
    fn the_default_settings_and_the_market_of_an_instrument() {
        let s = settings(&SloConfig::default());
        assert_eq!(s.interval_ns, 30_000_000_000);
        assert_eq!(
            s.expected_ns,
            [1_000_000_000, 5_000_000_000, 30_000_000_000]
        );
        assert_eq!(s.sample, [200, 200, 100]);
        // 2026-11-25 (a Wednesday) at 10:00 and 16:00 IST.
        let day = u64::from(parse_date("2026-11-25").unwrap()) * DAY_NS - IST_OFFSET_NS;
        let h = Holidays::load(None).unwrap();
        let cal = Calendar::new(&h, day, 1, 1);
        let infy = 408_065;
        let ten = day + 10 * 3_600_000_000_000;
        let open = day + (9 * 60 + 15) * 60_000_000_000;
        assert_eq!(
            market(Some(&cal), infy, ten),
            Market::Open { since_ns: open }
        );
        assert_eq!(
            market(Some(&cal), infy, ten + 6 * 3_600_000_000_000),
            Market::Closed
        );
        // No calendar, or a segment it does not know: open.
        assert_eq!(market(None, infy, ten), Market::Open { since_ns: 0 });
        assert_eq!(
            market(Some(&cal), 0x1234_560A, ten),
            Market::Open { since_ns: 0 }
        );
    }
}
