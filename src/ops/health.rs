//! Health: stable reason codes, each with a severity and a text, from one
//! sample of the counters and the last minute of them.

use serde::Serialize;

/// Overall status: the worst severity among the issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing wrong.
    Healthy = 0,
    /// Running and publishing, with something an operator should look at.
    Degraded = 1,
    /// Not doing its job (not running, no connection open, auth refused).
    Unhealthy = 2,
}

impl Status {
    /// Lowercase label.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// Every health reason code, in a stable order (documented in the README).
pub const CODES: [&str; 14] = [
    "not_running",
    "disconnected",
    "auth_failed",
    "ring_high",
    "drop_rate_high",
    "send_failure_rate_high",
    "stale_feed",
    "redis_circuit_open",
    "redis_unavailable",
    "spool_not_empty",
    "producer_fatal",
    "secret_file_readable",
    "t0_dropped",
    "slo_gap",
];

/// One reason the feed is not healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Stable reason code, one of [`CODES`].
    pub code: &'static str,
    /// How bad it is.
    pub severity: Status,
    /// What is wrong, with the numbers.
    pub text: String,
}

/// Health as served by `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The worst severity among `issues`, or healthy.
    pub status: Status,
    /// Every current issue.
    pub issues: Vec<Issue>,
}

impl Health {
    /// Health with the given issues.
    #[must_use]
    pub fn of(issues: Vec<Issue>) -> Self {
        Self {
            status: issues
                .iter()
                .map(|i| i.severity)
                .max()
                .unwrap_or(Status::Healthy),
            issues,
        }
    }
}

/// Thresholds, from `[ops]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Ring fill above which `ring_high` is raised, 0..1.
    pub ring_high: f64,
    /// Drops over received in the window above which `drop_rate_high`.
    pub drop_rate: f64,
    /// Send failures over received in the window above which
    /// `send_failure_rate_high`.
    pub send_failure_rate: f64,
    /// An open connection silent (no frame at all) this long is stale, ms.
    pub stale_after_ms: u64,
}

/// What health is computed from.
#[derive(Debug, Clone, Default)]
pub struct Input<'a> {
    /// The engine runs and is not stopping.
    pub running: bool,
    /// Engine threads that panicked.
    pub panics: &'a [String],
    /// Per connection: (state label, last frame age ms).
    pub connections: Vec<(&'static str, Option<u64>)>,
    /// Per ring: fill 0..1.
    pub ring_fill: Vec<f64>,
    /// Over the window: (received, dropped, send failures) deltas.
    pub window: (u64, u64, u64),
    /// Window length, s.
    pub window_s: u64,
    /// Redis breaker state label (`closed`, `open`, `half_open`), if enabled.
    pub redis_state: Option<&'static str>,
    /// Consecutive failed Redis writes (while closed).
    pub redis_failures: u32,
    /// The latest Redis error.
    pub redis_error: Option<&'a str>,
    /// Bytes in the dead-letter spool.
    pub spool_bytes: u64,
    /// Fatal producer errors (each replaced a producer) within the window.
    pub fatal_in_window: u64,
    /// T0 ticks dropped within the window (README "Tiers": only when T0's
    /// own ring was full).
    pub t0_dropped_in_window: u64,
    /// The latest Kafka error.
    pub kafka_error: Option<&'a str>,
    /// Secret files readable by group/other (one warning text each).
    pub secret_files: &'a [String],
    /// Per connection: every instrument of it is in a closed market now
    /// (the exchange calendar); such a connection is not `stale_feed`.
    /// Shorter than `connections` (or empty) where unknown: open.
    pub markets_closed: &'a [bool],
}

fn issue(code: &'static str, severity: Status, text: String) -> Issue {
    debug_assert!(CODES.contains(&code));
    Issue {
        code,
        severity,
        text,
    }
}

/// Evaluates every rule.
#[must_use]
#[allow(clippy::cast_precision_loss)] // ratios of counters, shown as percentages
pub fn evaluate(i: &Input<'_>, t: &Thresholds) -> Health {
    use Status::{Degraded, Unhealthy};
    let mut v = Vec::new();
    if !i.panics.is_empty() {
        v.push(issue(
            "not_running",
            Unhealthy,
            format!("an engine thread panicked: {}", i.panics.join("; ")),
        ));
    } else if !i.running {
        v.push(issue(
            "not_running",
            Unhealthy,
            "the engine is not running (starting or stopping)".into(),
        ));
    }
    let auth: Vec<usize> = (0..i.connections.len())
        .filter(|&c| i.connections[c].0 == "auth_failed")
        .collect();
    if !auth.is_empty() {
        v.push(issue(
            "auth_failed",
            Unhealthy,
            format!(
                "connection(s) {auth:?} refused with HTTP 403: the api_key or access token was \
                 rejected; write a new token to the token file (or SIGHUP)"
            ),
        ));
    }
    let down: Vec<usize> = (0..i.connections.len())
        .filter(|&c| !matches!(i.connections[c].0, "open" | "auth_failed" | "idle"))
        .collect();
    if i.running && !down.is_empty() {
        let open = i.connections.iter().filter(|c| c.0 == "open").count();
        v.push(issue(
            "disconnected",
            if open == 0 { Unhealthy } else { Degraded },
            format!(
                "{} of {} connection(s) not open: {down:?}",
                down.len(),
                i.connections.len()
            ),
        ));
    }
    for (p, f) in i.ring_fill.iter().enumerate() {
        if *f > t.ring_high {
            v.push(issue(
                "ring_high",
                Degraded,
                format!(
                    "ring {p} is {:.1}% full (threshold {:.0}%): its publisher cannot keep up",
                    f * 100.0,
                    t.ring_high * 100.0
                ),
            ));
        }
    }
    let (recv, dropped, failed) = i.window;
    let rate = |n: u64| n as f64 / recv.max(1) as f64;
    if dropped > 0 && rate(dropped) > t.drop_rate {
        v.push(issue(
            "drop_rate_high",
            Degraded,
            format!(
                "{dropped} of {recv} ticks dropped in the last {}s ({:.2}%, threshold {:.2}%)",
                i.window_s,
                rate(dropped) * 100.0,
                t.drop_rate * 100.0
            ),
        ));
    }
    if failed > 0 && rate(failed) > t.send_failure_rate {
        v.push(issue(
            "send_failure_rate_high",
            Degraded,
            format!(
                "{failed} Kafka send failures for {recv} ticks in the last {}s ({:.2}%, \
                 threshold {:.2}%)",
                i.window_s,
                rate(failed) * 100.0,
                t.send_failure_rate * 100.0
            ),
        ));
    }
    for (c, (state, age)) in i.connections.iter().enumerate() {
        if *state == "open"
            && let Some(age) = age
            && *age > t.stale_after_ms
            && i.markets_closed.get(c) != Some(&true)
        {
            v.push(issue(
                "stale_feed",
                Degraded,
                format!(
                    "connection {c}: no frame for {age} ms (threshold {} ms)",
                    t.stale_after_ms
                ),
            ));
        }
    }
    match i.redis_state {
        Some("open" | "half_open") => v.push(issue(
            "redis_circuit_open",
            Degraded,
            format!(
                "Redis circuit {}: pipeline metrics are being dropped (counted); last error: {}",
                i.redis_state.unwrap_or_default(),
                i.redis_error.unwrap_or("none")
            ),
        )),
        Some(_) if i.redis_failures > 0 => v.push(issue(
            "redis_unavailable",
            Degraded,
            format!(
                "{} consecutive Redis write(s) failed: {}",
                i.redis_failures,
                i.redis_error.unwrap_or("unknown error")
            ),
        )),
        _ => {}
    }
    for note in i.secret_files {
        v.push(issue("secret_file_readable", Degraded, note.clone()));
    }
    if i.fatal_in_window > 0 {
        v.push(issue(
            "producer_fatal",
            Unhealthy,
            format!(
                "{} fatal Kafka producer error(s) in the last {}s: the producer was replaced and \
                 what it held parked (run `panda-feed dlq requeue`); a repeat means the broker or \
                 another producer fences this one; last error: {}",
                i.fatal_in_window,
                i.window_s,
                i.kafka_error.unwrap_or("none")
            ),
        ));
    }
    if i.t0_dropped_in_window > 0 {
        v.push(issue(
            "t0_dropped",
            Degraded,
            format!(
                "{} T0 ticks dropped in the last {}s: the T0 rings were full (T1 and T2 were \
                 shed first); the publishers cannot keep up: add publishers, raise \
                 engine.ring_capacity or tiers.t0_ring_pct, or move instruments out of T0",
                i.t0_dropped_in_window, i.window_s
            ),
        ));
    }
    if i.spool_bytes > 0 {
        v.push(issue(
            "spool_not_empty",
            Degraded,
            format!(
                "the dead-letter spool holds {} bytes: see `panda-feed dlq stats`, then \
                 `dlq requeue`",
                i.spool_bytes
            ),
        ));
    }
    Health::of(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        ring_high: 0.8,
        drop_rate: 0.01,
        send_failure_rate: 0.01,
        stale_after_ms: 3000,
    };

    fn ok() -> Input<'static> {
        Input {
            running: true,
            connections: vec![("open", Some(5)), ("open", Some(7))],
            ring_fill: vec![0.1],
            window: (10_000, 0, 0),
            window_s: 60,
            redis_state: Some("closed"),
            ..Input::default()
        }
    }

    fn codes(h: &Health) -> Vec<&str> {
        h.issues.iter().map(|i| i.code).collect()
    }

    #[test]
    fn healthy_when_nothing_is_wrong() {
        let h = evaluate(&ok(), &T);
        assert_eq!(h.status, Status::Healthy, "{h:?}");
        assert!(h.issues.is_empty());
    }

    #[test]
    fn each_rule_raises_its_code_with_its_severity() {
        let mut i = ok();
        i.connections[1] = ("backoff", None);
        i.ring_fill = vec![0.9];
        i.window = (10_000, 200, 150);
        i.connections[0].1 = Some(4000);
        i.redis_state = Some("open");
        i.spool_bytes = 10;
        let h = evaluate(&i, &T);
        assert_eq!(
            codes(&h),
            [
                "disconnected",
                "ring_high",
                "drop_rate_high",
                "send_failure_rate_high",
                "stale_feed",
                "redis_circuit_open",
                "spool_not_empty"
            ]
        );
        assert_eq!(h.status, Status::Degraded);

        let mut i = ok();
        let notes = [
            "the access token file t is readable by group/other (mode 644); run: chmod 600 t"
                .to_owned(),
        ];
        i.secret_files = &notes;
        let h = evaluate(&i, &T);
        assert_eq!(codes(&h), ["secret_file_readable"]);
        assert_eq!(h.status, Status::Degraded);
        assert!(h.issues[0].text.contains("chmod 600"), "{h:?}");

        let mut i = ok();
        i.t0_dropped_in_window = 3;
        let h = evaluate(&i, &T);
        assert_eq!(codes(&h), ["t0_dropped"]);
        assert_eq!(h.status, Status::Degraded);
        assert!(h.issues[0].text.contains("3 T0 ticks"), "{h:?}");

        let mut i = ok();
        i.fatal_in_window = 1;
        i.kafka_error = Some("Local: Fatal error: test");
        let h = evaluate(&i, &T);
        assert_eq!(codes(&h), ["producer_fatal"]);
        assert_eq!(h.status, Status::Unhealthy);
        assert!(h.issues[0].text.contains("Fatal error: test"), "{h:?}");

        let mut i = ok();
        i.connections = vec![("backoff", None)];
        assert_eq!(evaluate(&i, &T).status, Status::Unhealthy);
        i.connections = vec![("auth_failed", None)];
        assert_eq!(codes(&evaluate(&i, &T)), ["auth_failed"]);
        let mut i = ok();
        i.running = false;
        assert_eq!(codes(&evaluate(&i, &T)), ["not_running"]);
        let mut i = ok();
        i.redis_failures = 2;
        i.redis_error = Some("connection refused");
        assert_eq!(codes(&evaluate(&i, &T)), ["redis_unavailable"]);
    }

    #[test]
    fn a_silent_connection_on_a_closed_market_is_not_stale() {
        let mut i = ok();
        i.connections = vec![("open", Some(60_000)), ("open", Some(60_000))];
        i.markets_closed = &[true, false];
        let h = evaluate(&i, &T);
        assert_eq!(codes(&h), ["stale_feed"]);
        assert!(h.issues[0].text.starts_with("connection 1:"), "{h:?}");
        i.markets_closed = &[true, true];
        assert!(evaluate(&i, &T).issues.is_empty());
        i.markets_closed = &[];
        assert_eq!(evaluate(&i, &T).issues.len(), 2);
    }

    #[test]
    fn rates_at_the_threshold_are_not_raised() {
        let mut i = ok();
        i.window = (10_000, 100, 100);
        assert!(evaluate(&i, &T).issues.is_empty());
    }
}
