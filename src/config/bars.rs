//! `[bars]`: one-minute bars (README, "Bars"). Read on the main thread at
//! start-up and handed to the publishers (`crate::bars`); not live: a
//! reload keeps the bar settings the feed started with.

use serde::{Deserialize, Serialize};

use crate::bars::BarClock;

/// `[bars]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BarsConfig {
    /// Build and publish bars.
    pub enabled: bool,
    /// The Kafka topic of bar records (keyed by instrument token).
    pub topic: String,
    /// How long after its minute ends a bar waits for late ticks.
    pub grace_ms: u64,
    /// What times a tick: `"receive"` (the feed host's clock) or
    /// `"exchange"` (the exchange timestamp of full-mode packets).
    pub clock: String,
    /// Bars each publisher can hand to the ops side (the downstream stream
    /// and the Redis replay lists) before more are dropped from the
    /// hand-off, counted (the Kafka record is unaffected).
    pub handoff: u64,
}

impl Default for BarsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            topic: super::defaults::BARS_TOPIC.into(),
            grace_ms: 2000,
            clock: "receive".into(),
            handoff: 4096,
        }
    }
}

impl BarsConfig {
    /// Every problem with the settings (README "Ranges").
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        super::ranges::check(&mut p, "bars.grace_ms", self.grace_ms);
        super::ranges::check(&mut p, "bars.handoff", self.handoff);
        if self.enabled && self.topic.trim().is_empty() {
            p.push(
                "bars.topic is empty: name the bar topic (default market.bars.1m), \
                 or set bars.enabled = false"
                    .into(),
            );
        }
        if self.bar_clock().is_none() {
            p.push(format!(
                "bars.clock = {:?} is not a clock: use \"receive\" (the feed host's clock) \
                 or \"exchange\" (full-mode exchange timestamps)",
                self.clock
            ));
        }
        p
    }

    /// `clock` parsed; `None` when it names no clock.
    #[must_use]
    pub fn bar_clock(&self) -> Option<BarClock> {
        match self.clock.as_str() {
            "receive" => Some(BarClock::Receive),
            "exchange" => Some(BarClock::Exchange),
            _ => None,
        }
    }
}
