//! Redis pipeline metrics, written by the ops thread as one atomic pipeline
//! per interval (never per tick), behind a circuit breaker so that a slow or
//! dead Redis can never hold up anything but its own writes.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::RedisConfig;
use crate::secret::redact_url;

/// Circuit breaker state; the gauge value is the discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Writes go through.
    Closed = 0,
    /// Writes are dropped (counted) until the cooldown ends.
    Open = 1,
    /// A bounded number of probe writes decide: success closes, failure reopens.
    HalfOpen = 2,
}

impl BreakerState {
    /// Label.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// closed → open after `threshold` consecutive failures; open → half-open
/// after `cooldown`; half-open → closed on a success, open on a failure.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: BreakerState,
    failures: u32,
    threshold: u32,
    cooldown: Duration,
    opened_at: Option<Instant>,
    probes: u32,
    max_probes: u32,
}

impl Breaker {
    /// A closed breaker.
    #[must_use]
    pub fn new(threshold: u32, cooldown: Duration, max_probes: u32) -> Self {
        Self {
            state: BreakerState::Closed,
            failures: 0,
            threshold: threshold.max(1),
            cooldown,
            opened_at: None,
            probes: 0,
            max_probes: max_probes.max(1),
        }
    }

    /// Current state.
    #[must_use]
    pub const fn state(&self) -> BreakerState {
        self.state
    }

    /// Consecutive failures so far.
    #[must_use]
    pub const fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether a write may be attempted now (a half-open probe counts).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                if self
                    .opened_at
                    .is_some_and(|t| now.duration_since(t) >= self.cooldown)
                {
                    self.state = BreakerState::HalfOpen;
                    self.probes = 1;
                    true
                } else {
                    false
                }
            }
            BreakerState::HalfOpen => {
                if self.probes < self.max_probes {
                    self.probes += 1;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// A write succeeded.
    pub fn success(&mut self) {
        self.state = BreakerState::Closed;
        self.failures = 0;
        self.opened_at = None;
    }

    /// A write failed.
    pub fn failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let open = match self.state {
            BreakerState::Closed => self.failures >= self.threshold,
            BreakerState::HalfOpen | BreakerState::Open => true,
        };
        if open {
            self.state = BreakerState::Open;
            self.opened_at = Some(now);
        }
    }
}

/// The values of one interval's pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interval {
    /// Ticks published since the previous successful write.
    pub published: u64,
    /// Time of the latest published tick, ns since the epoch (0 = none yet).
    pub last_activity_ns: u64,
    /// Youngest last-tick age over the connections, ms.
    pub last_tick_age_ms: Option<u64>,
    /// Send failures since start.
    pub send_failures: u64,
    /// Reconnections since start.
    pub reconnections: u64,
    /// The instrument universe's version (README, "Live subscriptions").
    pub universe_version: Option<String>,
}

/// One Redis write, for `/ops/slow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteRecord {
    /// When it ended, ns since the epoch.
    pub at_ns: u64,
    /// How long it took, ns.
    pub duration_ns: u64,
    /// Commands in the pipeline.
    pub commands: u32,
    /// `ok` or the error.
    pub outcome: String,
}

/// Counters and state of the sink, for metrics and health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkStatus {
    /// Whether Redis metrics are configured.
    pub enabled: bool,
    /// Breaker state label.
    pub state: &'static str,
    /// Breaker state as the gauge value.
    pub state_value: u8,
    /// Successful pipelines.
    pub writes_ok: u64,
    /// Failed pipelines.
    pub writes_error: u64,
    /// Pipelines dropped because the circuit was open.
    pub circuit_open_drops: u64,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// The latest error (password redacted).
    pub last_error: Option<String>,
    /// The URL, password redacted.
    pub url: String,
}

/// Writes the pipeline metrics.
pub struct RedisSink {
    cfg: RedisConfig,
    client: Option<redis::Client>,
    conn: Option<redis::Connection>,
    breaker: Breaker,
    pending: u64,
    status: SinkStatus,
    keys: [String; 5],
    /// `key_prefix:universe_version`.
    universe_key: String,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("cfg", &self.cfg)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Key suffixes, after `key_prefix` and a colon.
pub const KEY_SUFFIXES: [&str; 5] = [
    "count",
    "last_activity",
    "last_tick_age_ms",
    "send_failures",
    "reconnections",
];

impl RedisSink {
    /// A sink for `cfg` (which must have a URL). Does not connect yet: the
    /// first write does, so an unreachable Redis never delays start-up.
    #[must_use]
    pub fn new(cfg: RedisConfig) -> Self {
        let client = redis::Client::open(cfg.url.as_str()).ok();
        let status = SinkStatus {
            enabled: true,
            state: BreakerState::Closed.label(),
            url: redact_url(&cfg.url),
            last_error: client
                .is_none()
                .then(|| format!("invalid redis.url {}", redact_url(&cfg.url))),
            ..SinkStatus::default()
        };
        let keys = KEY_SUFFIXES.map(|s| format!("{}:{s}", cfg.key_prefix));
        let universe_key = format!("{}:universe_version", cfg.key_prefix);
        Self {
            breaker: Breaker::new(
                cfg.breaker_failures,
                Duration::from_millis(cfg.breaker_cooldown_ms),
                cfg.half_open_probes,
            ),
            universe_key,
            cfg,
            client,
            conn: None,
            pending: 0,
            status,
            keys,
        }
    }

    /// The full key names, in [`KEY_SUFFIXES`] order.
    #[must_use]
    pub fn keys(&self) -> &[String; 5] {
        &self.keys
    }

    /// Status for metrics and health.
    #[must_use]
    pub fn status(&self) -> &SinkStatus {
        &self.status
    }

    /// Writes one interval, unless the circuit is open (then the write is
    /// dropped and counted; the published count carries over, so the Redis
    /// counter catches up after recovery). Returns the write's record when
    /// one was attempted.
    pub fn write(&mut self, v: &Interval) -> Option<WriteRecord> {
        self.pending += v.published;
        let now = Instant::now();
        if !self.breaker.allow(now) {
            self.status.circuit_open_drops += 1;
            self.sync_state();
            return None;
        }
        let started = Instant::now();
        let (commands, result) = self.try_write(v);
        let duration = started.elapsed();
        let outcome = match result {
            Ok(()) => {
                self.pending = 0;
                self.breaker.success();
                self.status.writes_ok += 1;
                self.status.last_error = None;
                "ok".to_owned()
            }
            Err(e) => {
                // A broken connection is rebuilt by the next attempt.
                self.conn = None;
                self.breaker.failure(Instant::now());
                self.status.writes_error += 1;
                let msg = redact_secret(&e.to_string(), &self.cfg.url);
                self.status.last_error = Some(msg.clone());
                msg
            }
        };
        self.sync_state();
        Some(WriteRecord {
            at_ns: crate::clock::now_ns(),
            duration_ns: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            commands,
            outcome,
        })
    }

    fn sync_state(&mut self) {
        let s = self.breaker.state();
        self.status.state = s.label();
        self.status.state_value = s as u8;
        self.status.consecutive_failures = self.breaker.failures();
    }

    fn try_write(&mut self, v: &Interval) -> (u32, redis::RedisResult<()>) {
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        if self.conn.is_none() {
            let Some(client) = &self.client else {
                return (
                    0,
                    Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "invalid redis.url",
                    ))),
                );
            };
            match client.get_connection_with_timeout(timeout).and_then(|c| {
                c.set_read_timeout(Some(timeout))?;
                c.set_write_timeout(Some(timeout))?;
                Ok(c)
            }) {
                Ok(c) => self.conn = Some(c),
                Err(e) => return (0, Err(e)),
            }
        }
        let ttl = self.cfg.ttl_s;
        let [count, activity, age, failures, reconnections] = &self.keys;
        let mut p = redis::pipe();
        p.atomic();
        p.cmd("INCRBY").arg(count).arg(self.pending).ignore();
        p.cmd("EXPIRE").arg(count).arg(ttl).ignore();
        let mut commands = 2;
        if v.last_activity_ns > 0 {
            p.cmd("SET")
                .arg(activity)
                .arg(crate::clock::rfc3339_ms(v.last_activity_ns))
                .arg("EX")
                .arg(ttl)
                .ignore();
            commands += 1;
        }
        if let Some(a) = v.last_tick_age_ms {
            p.cmd("SET").arg(age).arg(a).arg("EX").arg(ttl).ignore();
            commands += 1;
        }
        p.cmd("SET")
            .arg(failures)
            .arg(v.send_failures)
            .arg("EX")
            .arg(ttl)
            .ignore();
        p.cmd("SET")
            .arg(reconnections)
            .arg(v.reconnections)
            .arg("EX")
            .arg(ttl)
            .ignore();
        commands += 2;
        if let Some(u) = &v.universe_version {
            p.cmd("SET")
                .arg(&self.universe_key)
                .arg(u)
                .arg("EX")
                .arg(ttl)
                .ignore();
            commands += 1;
        }
        let Some(conn) = self.conn.as_mut() else {
            return (commands, Ok(()));
        };
        (commands, p.query::<()>(conn))
    }
}

/// `text` with the password of `url` (if any) replaced by `***`.
fn redact_secret(text: &str, url: &str) -> String {
    // Parsed like the client parses it: every spelling of the password and
    // of secret query values (README "Security").
    crate::secret::redact_in(text, url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_the_threshold_and_probes_after_the_cooldown() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(60), 1);
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.failure(t0);
            assert_eq!(b.state(), BreakerState::Closed);
        }
        assert!(b.allow(t0));
        b.failure(t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(59)));
        assert!(b.allow(t0 + Duration::from_secs(60)));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(t0 + Duration::from_secs(60)), "one probe only");
        b.failure(t0 + Duration::from_secs(61));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.allow(t0 + Duration::from_secs(121)));
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1), 1);
        b.failure(t0);
        b.success();
        b.failure(t0);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("redis://:hunter2@10.0.0.1:6379/2"),
            "redis://:***@10.0.0.1:6379/2"
        );
        assert_eq!(
            redact_url("redis://user:hunter2@h:1/0"),
            "redis://user:***@h:1/0"
        );
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        let cfg = RedisConfig {
            url: "redis://:hunter2@h:1/0".into(),
            ..RedisConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert_eq!(
            redact_secret("auth failed for hunter2", &cfg.url),
            "auth failed for ***"
        );
        assert!(cfg.problems().is_empty());
        let bad = RedisConfig {
            url: "http://:hunter2@h".into(),
            ..RedisConfig::default()
        };
        let p = bad.problems();
        assert_eq!(p.len(), 1);
        assert!(!p[0].contains("hunter2"), "{p:?}");
    }
}
