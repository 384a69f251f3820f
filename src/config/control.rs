//! `[subscriptions]`: the live-subscription reloader's settings (README,
//! "Live subscriptions"). Read on the main thread; the `run` loop's
//! reloader (`crate::control`) consumes them. Live: a reload applies them.

use serde::{Deserialize, Serialize};

use super::defaults;

/// `[subscriptions]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriptionsConfig {
    /// Quiet time after the last trigger before a change is applied, ms.
    pub debounce_ms: u64,
    /// Shortest time between two applications, ms.
    pub min_interval_ms: u64,
    /// Applications handed to the network thread and not yet acknowledged.
    pub max_in_flight: u64,
    /// `POST /ops/subscriptions` requests waiting for one application; more
    /// get `429`.
    pub queue: u64,
    /// How often the instruments file is checked for a change (by content),
    /// ms; 0 = never.
    pub watch_ms: u64,
    /// Universe versions kept for `/stats/universe`.
    pub universe_history: u64,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        Self {
            debounce_ms: defaults::SUBS_DEBOUNCE_MS,
            min_interval_ms: defaults::SUBS_MIN_INTERVAL_MS,
            max_in_flight: 1,
            queue: defaults::SUBS_QUEUE,
            watch_ms: defaults::SUBS_WATCH_MS,
            universe_history: defaults::UNIVERSE_HISTORY,
        }
    }
}

impl SubscriptionsConfig {
    /// Every problem with the settings (README "Ranges").
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (k, v) in [
            ("subscriptions.debounce_ms", self.debounce_ms),
            ("subscriptions.min_interval_ms", self.min_interval_ms),
            ("subscriptions.max_in_flight", self.max_in_flight),
            ("subscriptions.queue", self.queue),
            ("subscriptions.watch_ms", self.watch_ms),
            ("subscriptions.universe_history", self.universe_history),
        ] {
            super::ranges::check(&mut p, k, v);
        }
        p
    }
}
