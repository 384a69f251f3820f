//! `[slo]`: the SLO gap monitor's sampling interval, each tier's expected
//! tick interval and sample size, and the `/health` threshold (README, "SLO
//! monitoring"). Read on the main thread at start-up; the ops side builds
//! the monitor from it (`crate::slo`). Not live: a reload keeps the
//! settings the feed started with.

use serde::{Deserialize, Serialize};

use super::defaults;

/// `[slo]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SloConfig {
    /// A sampling round every this many seconds (also the metric's
    /// `interval` label, e.g. `30s`).
    pub interval_s: u64,
    /// T0's expected interval between two ticks of one instrument, ms: a
    /// last tick older than twice this, in session, is a violation.
    pub t0_expected_ms: u64,
    /// T1's expected interval, ms.
    pub t1_expected_ms: u64,
    /// T2's expected interval, ms.
    pub t2_expected_ms: u64,
    /// T0 instruments sampled per round (0: the tier is not sampled).
    pub t0_sample: u64,
    /// T1 instruments sampled per round.
    pub t1_sample: u64,
    /// T2 instruments sampled per round.
    pub t2_sample: u64,
    /// A tier's violation rate (0..1) above this is a `/health` note
    /// (`slo_gap`).
    pub violation_threshold: f64,
}

impl Default for SloConfig {
    fn default() -> Self {
        Self {
            interval_s: defaults::SLO_INTERVAL_S,
            t0_expected_ms: defaults::SLO_EXPECTED_MS[0],
            t1_expected_ms: defaults::SLO_EXPECTED_MS[1],
            t2_expected_ms: defaults::SLO_EXPECTED_MS[2],
            t0_sample: defaults::SLO_SAMPLE[0],
            t1_sample: defaults::SLO_SAMPLE[1],
            t2_sample: defaults::SLO_SAMPLE[2],
            violation_threshold: defaults::SLO_VIOLATION_THRESHOLD,
        }
    }
}

impl SloConfig {
    /// Every problem with the settings (README "Ranges").
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (k, v) in [
            ("slo.interval_s", self.interval_s),
            ("slo.t0_expected_ms", self.t0_expected_ms),
            ("slo.t1_expected_ms", self.t1_expected_ms),
            ("slo.t2_expected_ms", self.t2_expected_ms),
            ("slo.t0_sample", self.t0_sample),
            ("slo.t1_sample", self.t1_sample),
            ("slo.t2_sample", self.t2_sample),
        ] {
            super::ranges::check(&mut p, k, v);
        }
        let t = self.violation_threshold;
        if !(t.is_finite() && (0.0..=1.0).contains(&t)) {
            p.push(format!(
                "slo.violation_threshold = {t} must be a fraction of the sampled instruments, \
                 0..1 (e.g. 0.01 for 1%)"
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named_with_the_fix() {
        let c = SloConfig {
            interval_s: 0,
            t1_sample: 1 << 40,
            violation_threshold: f64::NAN,
            ..SloConfig::default()
        };
        let p = c.problems().join("\n");
        assert!(p.contains("slo.interval_s = 0 is out of range"), "{p}");
        assert!(p.contains("slo.t1_sample"), "{p}");
        assert!(p.contains("slo.violation_threshold = NaN"), "{p}");
        assert!(SloConfig::default().problems().is_empty());
    }
}
