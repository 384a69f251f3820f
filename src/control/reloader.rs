//! The subscription reloader: every trigger (a `POST /ops/subscriptions`,
//! the instruments file changing, a reload) changes one desired state; the
//! reloader decides when that state is handed to the network thread
//! (README, "Live subscriptions"):
//!
//! - debounce: not before `debounce` has passed since the last trigger;
//! - coalesce: every trigger until then goes into the one desired state;
//! - rate: at least `min_interval` between two applications;
//! - in flight: at most `max_in_flight` applications handed over and not
//!   yet acknowledged by the network thread;
//! - queue: at most `queue` API requests wait for one application; more are
//!   refused (`429`) and counted.
//!
//! Owned by the `run` loop (one thread); pure: time comes in as arguments,
//! so the tests drive it with a fake clock.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::SubscriptionsConfig;
use crate::engine::net::Desired;
use crate::tick::Mode;

/// `POST /ops/subscriptions`: Kite's own actions, each part optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubRequest {
    /// Tokens to subscribe (in `default_mode` unless `mode` names them).
    pub subscribe: Vec<u32>,
    /// Tokens to unsubscribe.
    pub unsubscribe: Vec<u32>,
    /// Modes to set, by mode.
    pub mode: ModeSets,
}

/// The `mode` part of a [`SubRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModeSets {
    /// Tokens to stream in `full`.
    pub full: Vec<u32>,
    /// Tokens to stream in `quote`.
    pub quote: Vec<u32>,
    /// Tokens to stream in `ltp`.
    pub ltp: Vec<u32>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `queue` requests already wait for the next application (`429`).
    QueueFull(usize),
    /// The request is inconsistent (`400`), with the words.
    Invalid(String),
    /// The result would not fit the connections (`422`), with the words.
    TooMany(String),
}

/// Counters of the reloader, for the summary and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloaderCounts {
    /// Requests accepted.
    pub requests: u64,
    /// Requests refused because the queue was full.
    pub rejected_queue_full: u64,
    /// Requests refused as invalid or too large.
    pub rejected_invalid: u64,
    /// Applications handed to the network thread.
    pub applications: u64,
    /// The desired-state version (bumped by every change).
    pub desired_version: u64,
    /// The version the network thread acknowledged last.
    pub applied_version: u64,
}

/// The reloader.
#[derive(Debug)]
pub struct Reloader {
    debounce: Duration,
    min_interval: Duration,
    max_in_flight: usize,
    queue: usize,
    capacity: usize,
    default_mode: Mode,
    desired: BTreeMap<u32, Mode>,
    /// Requests accepted since the last application started.
    queued: usize,
    /// A change not handed over yet.
    dirty: bool,
    last_trigger: Option<Instant>,
    last_application: Option<Instant>,
    in_flight: VecDeque<u64>,
    counts: ReloaderCounts,
}

impl Reloader {
    /// A reloader whose applied state is `initial` (version 0), fitting at
    /// most `capacity` instruments.
    #[must_use]
    pub fn new(
        cfg: &SubscriptionsConfig,
        initial: &[(u32, Mode)],
        capacity: usize,
        default_mode: Mode,
    ) -> Self {
        let mut r = Self {
            debounce: Duration::ZERO,
            min_interval: Duration::ZERO,
            max_in_flight: 1,
            queue: 1,
            capacity,
            default_mode,
            desired: initial.iter().copied().collect(),
            queued: 0,
            dirty: false,
            last_trigger: None,
            last_application: None,
            in_flight: VecDeque::new(),
            counts: ReloaderCounts::default(),
        };
        r.configure(cfg, default_mode);
        r
    }

    /// Takes new settings (a reload); pending changes keep waiting.
    pub fn configure(&mut self, cfg: &SubscriptionsConfig, default_mode: Mode) {
        self.debounce = Duration::from_millis(cfg.debounce_ms);
        self.min_interval = Duration::from_millis(cfg.min_interval_ms);
        self.max_in_flight = usize::try_from(cfg.max_in_flight).unwrap_or(1).max(1);
        self.queue = usize::try_from(cfg.queue).unwrap_or(usize::MAX).max(1);
        self.default_mode = default_mode;
    }

    /// The desired state now (applied or not), sorted by token.
    #[must_use]
    pub fn desired(&self) -> Vec<(u32, Mode)> {
        self.desired.iter().map(|(t, m)| (*t, *m)).collect()
    }

    /// The counters.
    #[must_use]
    pub const fn counts(&self) -> ReloaderCounts {
        self.counts
    }

    /// Applies an API request to the desired state; returns the version it
    /// will be applied in. Nothing changes when it is refused.
    ///
    /// # Errors
    /// [`Refused`]: the queue is full, the request is inconsistent, or the
    /// result would not fit.
    pub fn request(&mut self, req: &SubRequest, now: Instant) -> Result<u64, Refused> {
        if self.queued >= self.queue {
            self.counts.rejected_queue_full += 1;
            return Err(Refused::QueueFull(self.queue));
        }
        let next = match self.changed_by(req) {
            Ok(n) => n,
            Err(e) => {
                self.counts.rejected_invalid += 1;
                return Err(e);
            }
        };
        self.counts.requests += 1;
        let before = self.counts.desired_version;
        let v = self.set(next, now);
        if v != before {
            // Only a change waits for an application.
            self.queued += 1;
        }
        Ok(v)
    }

    /// Replaces the whole desired state (the instruments file changed, or a
    /// reload named another one); returns the version it will be applied
    /// in.
    ///
    /// # Errors
    /// The list does not fit; nothing changes.
    pub fn replace(&mut self, list: &[(u32, Mode)], now: Instant) -> Result<u64, Refused> {
        let next: BTreeMap<u32, Mode> = list.iter().copied().collect();
        self.fits(next.len())?;
        Ok(self.set(next, now))
    }

    /// The state to hand to the network thread now, if one is due;
    /// `applied` is the version the network thread acknowledged.
    pub fn due(&mut self, now: Instant, applied: u64) -> Option<Desired> {
        while self.in_flight.front().is_some_and(|&v| v <= applied) {
            self.in_flight.pop_front();
        }
        self.counts.applied_version = applied;
        let quiet = self
            .last_trigger
            .is_none_or(|t| now.saturating_duration_since(t) >= self.debounce);
        let spaced = self
            .last_application
            .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
        if !(self.dirty && quiet && spaced && self.in_flight.len() < self.max_in_flight) {
            return None;
        }
        self.dirty = false;
        self.queued = 0;
        self.last_application = Some(now);
        self.in_flight.push_back(self.counts.desired_version);
        self.counts.applications += 1;
        Some(Desired {
            version: self.counts.desired_version,
            tokens: self.desired(),
        })
    }

    fn set(&mut self, next: BTreeMap<u32, Mode>, now: Instant) -> u64 {
        self.last_trigger = Some(now);
        if next != self.desired {
            self.desired = next;
            self.counts.desired_version += 1;
            self.dirty = true;
        }
        self.counts.desired_version
    }

    fn fits(&self, n: usize) -> Result<(), Refused> {
        if n > self.capacity {
            return Err(Refused::TooMany(format!(
                "{n} instruments would not fit: the connections hold at most {} \
                 (zerodha.max_connections × zerodha.max_per_connection)",
                self.capacity
            )));
        }
        Ok(())
    }

    /// The desired state after `req`, or why it is refused.
    fn changed_by(&self, req: &SubRequest) -> Result<BTreeMap<u32, Mode>, Refused> {
        let invalid = |s: String| Err(Refused::Invalid(s));
        let modes = [
            (Mode::Full, &req.mode.full),
            (Mode::Quote, &req.mode.quote),
            (Mode::Ltp, &req.mode.ltp),
        ];
        let mut mode_of: BTreeMap<u32, Mode> = BTreeMap::new();
        for (m, list) in modes {
            for &t in list {
                if mode_of.insert(t, m).is_some_and(|old| old != m) {
                    return invalid(format!("token {t} is given two modes"));
                }
            }
        }
        let all = req
            .subscribe
            .iter()
            .chain(&req.unsubscribe)
            .chain(mode_of.keys());
        if let Some(t) = all.into_iter().find(|&&t| t == 0) {
            return invalid(format!("token {t} is not an instrument token"));
        }
        if let Some(t) = req.subscribe.iter().find(|t| req.unsubscribe.contains(t)) {
            return invalid(format!("token {t} is both subscribed and unsubscribed"));
        }
        let mut next = self.desired.clone();
        for t in &req.unsubscribe {
            if mode_of.contains_key(t) {
                return invalid(format!("token {t} is unsubscribed and given a mode"));
            }
            next.remove(t);
        }
        for &t in &req.subscribe {
            let m = mode_of.get(&t).copied();
            let e = next.entry(t).or_insert(self.default_mode);
            if let Some(m) = m {
                *e = m;
            }
        }
        for (&t, &m) in &mode_of {
            match next.get_mut(&t) {
                Some(e) => *e = m,
                None => {
                    return invalid(format!(
                        "token {t} is given a mode but is not subscribed; add it to \"subscribe\""
                    ));
                }
            }
        }
        self.fits(next.len())?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SubscriptionsConfig {
        SubscriptionsConfig::default()
    }

    fn sub(t: &[u32]) -> SubRequest {
        SubRequest {
            subscribe: t.to_vec(),
            ..SubRequest::default()
        }
    }

    #[test]
    fn ten_triggers_in_300_ms_are_one_application_and_the_eleventh_waits_its_turn() {
        let t0 = Instant::now();
        let mut r = Reloader::new(&cfg(), &[(1, Mode::Full)], 9000, Mode::Full);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        for i in 0..10u32 {
            let v = r.request(&sub(&[100 + i]), ms(u64::from(i) * 30)).unwrap();
            assert_eq!(v, u64::from(i) + 1);
        }
        assert_eq!(
            r.request(&sub(&[999]), ms(300)),
            Err(Refused::QueueFull(10))
        );
        assert_eq!(r.counts().rejected_queue_full, 1);
        // Debounce: 1 s after the last trigger (at 270 ms).
        assert!(r.due(ms(1269), 0).is_none());
        let d = r.due(ms(1270), 0).unwrap();
        assert_eq!((d.version, d.tokens.len()), (10, 11));
        assert!(r.due(ms(1300), 0).is_none(), "one application");
        // Triggers during the application: one more, 5 s after the first.
        r.request(&sub(&[500]), ms(1300)).unwrap();
        r.request(&sub(&[501]), ms(1350)).unwrap();
        assert!(r.due(ms(3000), 0).is_none(), "first not acknowledged");
        assert!(r.due(ms(6269), 10).is_none(), "min interval");
        let d = r.due(ms(6270), 10).unwrap();
        assert_eq!((d.version, d.tokens.len()), (12, 13));
        assert!(r.due(ms(20_000), 12).is_none(), "nothing left");
        assert_eq!(r.counts().applications, 2);
    }

    #[test]
    fn requests_are_checked_whole() {
        let t = Instant::now();
        let mut r = Reloader::new(&cfg(), &[(1, Mode::Full), (2, Mode::Ltp)], 3, Mode::Quote);
        let bad = [
            SubRequest {
                subscribe: vec![3],
                unsubscribe: vec![3],
                ..SubRequest::default()
            },
            SubRequest {
                mode: ModeSets {
                    full: vec![7],
                    ..ModeSets::default()
                },
                ..SubRequest::default()
            },
            SubRequest {
                mode: ModeSets {
                    full: vec![1],
                    ltp: vec![1],
                    ..ModeSets::default()
                },
                ..SubRequest::default()
            },
            sub(&[0]),
        ];
        for b in &bad {
            assert!(matches!(r.request(b, t), Err(Refused::Invalid(_))), "{b:?}");
        }
        assert!(matches!(
            r.request(&sub(&[3, 4]), t),
            Err(Refused::TooMany(_))
        ));
        assert_eq!(r.desired(), [(1, Mode::Full), (2, Mode::Ltp)], "unchanged");
        let v = r
            .request(
                &SubRequest {
                    subscribe: vec![3],
                    unsubscribe: vec![2],
                    mode: ModeSets {
                        ltp: vec![1],
                        ..ModeSets::default()
                    },
                },
                t,
            )
            .unwrap();
        assert_eq!(v, 1);
        assert_eq!(r.desired(), [(1, Mode::Ltp), (3, Mode::Quote)]);
    }

    #[test]
    fn a_no_op_change_hands_nothing_over() {
        let t = Instant::now();
        let mut r = Reloader::new(&cfg(), &[(1, Mode::Full)], 10, Mode::Full);
        assert_eq!(r.request(&sub(&[1]), t), Ok(0));
        assert!(r.due(t + Duration::from_secs(10), 0).is_none());
        assert_eq!(r.replace(&[(1, Mode::Full)], t), Ok(0));
        assert!(r.due(t + Duration::from_secs(20), 0).is_none());
    }
}
