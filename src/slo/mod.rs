//! SLO gap monitoring (README, "SLO monitoring"; `docs/ARCHITECTURE.md`,
//! "SLO gap monitor"): every `slo.interval_s`, a sample of each tier's
//! subscribed instruments is checked for a last tick older than twice the
//! tier's expected interval while the instrument's market is open.
//!
//! - [`table`]: the last-tick table the network thread writes (one relaxed
//!   store per pushed tick) and the ops side reads.
//! - [`monitor`]: the pure sampling round, on a clock the caller gives.
//! - here: [`Slo`], the ops side's glue: the settings, the engine's
//!   subscriptions, tiers and table, and the exchange calendar.

pub mod monitor;
pub mod table;

pub use monitor::{Market, Monitor, Settings, SloView, TierRound};
pub use table::LastTicks;

use crate::calendar::{Calendar, Exchange};
use crate::config::SloConfig;
use crate::engine::Engine;
use crate::ops::health::{Health, Issue, Status};

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
            monitor: Monitor::new(cfg.settings(), now_ns),
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
