//! The operator's view: samples the engine's counters once per
//! `ops.sample_ms` on the ops thread (the `run` loop), computes health,
//! writes the Redis pipeline metrics behind a circuit breaker, and publishes
//! an immutable [`View`] that the HTTP thread serves (`/metrics`, `/health`,
//! `/stats/connections`, `/ops/slow`).
//!
//! Contract: nothing here touches the hot path. The engine's threads only
//! store counters; this side reads them with relaxed loads, and histograms
//! come over the publishers' SPSC exchange. A slow or dead Redis, or a slow
//! HTTP client, delays only the ops side's own work, never a tick.

pub mod admin;
pub mod health;
pub mod http;
pub mod metrics;
pub mod redis_sink;
mod response;
pub mod slo;
mod view;

pub use crate::config::{CalendarConfig, OpsConfig, RedisConfig};
pub use view::{
    BUCKETS_S, Buckets, ConnSample, ConnView, ControlView, Shared, SlowKafka, SlowRedis, View,
};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::clock::{now_ns, rfc3339_ms};
use crate::engine::publish::SlowAck;
use crate::engine::{Counts, Engine};
use health::Thresholds;
use redis_sink::{RedisSink, WriteRecord};

#[derive(Debug, Clone, Copy)]
struct Point {
    at_ns: u64,
    received: u64,
    dropped: u64,
    failures: u64,
    fatal: u64,
    t0_dropped: u64,
}

/// The ops side of `run`. Call [`sample`](Self::sample) from the loop that
/// owns the engine.
#[derive(Debug)]
pub struct Ops {
    cfg: OpsConfig,
    thresholds: Thresholds,
    shared: Arc<Shared>,
    server: Option<http::Server>,
    window: VecDeque<Point>,
    history: Vec<VecDeque<ConnSample>>,
    prev: Option<(Instant, u64, u64, Vec<u64>)>,
    slow_kafka: VecDeque<(u64, SlowKafka, u64)>,
    slow_redis: VecDeque<(u64, SlowRedis, u64)>,
    redis: Option<RedisSink>,
    redis_interval: std::time::Duration,
    next_redis: Instant,
    published_to_redis: u64,
    last_activity_ns: u64,
    last_published: u64,
    topic: String,
    notes: Vec<String>,
    control: ControlView,
    calendar: Option<MarketHours>,
    markets_closed: Vec<bool>,
    slo: Option<slo::Slo>,
    stream: Option<Arc<crate::stream::StreamStats>>,
}

/// The calendar the ops side asks whether a connection's markets are
/// closed (`stale_feed` is not raised then), and the lists it is built from.
#[derive(Debug)]
struct MarketHours {
    holidays: crate::calendar::Holidays,
    window: crate::calendar::Calendar,
}

impl Ops {
    /// Starts the HTTP server (when `cfg.listen` is set) and prepares the
    /// Redis sink (when `redis.url` is set; it connects on its first write).
    ///
    /// # Errors
    /// Bad settings, or an address that cannot be bound (named, with the fix).
    pub fn start(cfg: OpsConfig, redis: RedisConfig, topic: &str) -> anyhow::Result<Self> {
        let mut problems = cfg.problems();
        problems.extend(redis.problems());
        if !problems.is_empty() {
            anyhow::bail!("invalid settings:\n  {}", problems.join("\n  "));
        }
        let shared = Arc::new(Shared {
            view: ArcSwap::from_pointee(View::starting(&cfg)),
            http: http::Counters::default(),
            admin_auth: ArcSwap::from_pointee(admin::AdminAuth::default()),
            admin: std::sync::OnceLock::new(),
        });
        let server = if cfg.listen.is_empty() {
            None
        } else {
            Some(
                http::Server::start(&cfg.listen, Arc::clone(&shared)).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen on ops.listen {}: {e}; pick a free port (or --ops-listen \
                         \"\" to turn the ops server off)",
                        cfg.listen
                    )
                })?,
            )
        };
        let redis_interval = std::time::Duration::from_millis(redis.interval_ms);
        let redis = (!redis.url.is_empty()).then(|| RedisSink::new(redis));
        Ok(Self {
            thresholds: thresholds(&cfg),
            cfg,
            shared,
            server,
            window: VecDeque::new(),
            history: Vec::new(),
            prev: None,
            slow_kafka: VecDeque::new(),
            slow_redis: VecDeque::new(),
            redis,
            redis_interval,
            next_redis: Instant::now(),
            published_to_redis: 0,
            last_activity_ns: 0,
            last_published: 0,
            topic: topic.to_owned(),
            notes: Vec::new(),
            calendar: None,
            markets_closed: Vec::new(),
            slo: None,
            control: ControlView::default(),
            stream: None,
        })
    }

    /// Exports the downstream bar stream's counters with every sample
    /// (README, "Downstream stream").
    pub fn set_stream(&mut self, stats: Arc<crate::stream::StreamStats>) {
        self.stream = Some(stats);
    }

    /// Standing notes shown in `/health` as `secret_file_readable` for as
    /// long as the feed runs (e.g. the access token file is readable by
    /// group/other).
    pub fn set_notes(&mut self, notes: Vec<String>) {
        self.notes = notes;
    }

    /// Uses the exchange calendar from now on: a silent connection whose
    /// instruments are all in closed markets is not `stale_feed`. Without
    /// it (the default) every silent connection is; `run` calls it unless
    /// `--mock` (the in-process mock trades around the clock). Warns once
    /// for each year of the window without a holiday list.
    ///
    /// # Errors
    /// `calendar.file` cannot be read or is not a valid holiday file.
    pub fn set_calendar(&mut self, cfg: &CalendarConfig) -> anyhow::Result<()> {
        let holidays = crate::calendar::Holidays::load(cfg.file()).map_err(anyhow::Error::msg)?;
        let back = u32::try_from(cfg.days_back).unwrap_or(u32::MAX);
        let fwd = u32::try_from(cfg.days_forward).unwrap_or(u32::MAX);
        let window = crate::calendar::Calendar::new(&holidays, now_ns(), back, fwd);
        warn_missing(&window, &[]);
        self.calendar = Some(MarketHours { holidays, window });
        Ok(())
    }

    /// Runs the SLO gap monitor from now on (README, "SLO monitoring"),
    /// with the calendar of [`set_calendar`](Self::set_calendar) if any.
    pub fn set_slo(&mut self, cfg: &crate::config::SloConfig) {
        self.slo = Some(slo::Slo::new(cfg, now_ns()));
    }

    /// Per connection slot: every exchange of its subscriptions is closed
    /// at `at_ns` (an idle slot, or an instrument of a segment the
    /// calendar does not know, counts as open). Moves the window when the
    /// IST date changed.
    fn markets_closed(&mut self, subs: &[Arc<Vec<(u32, crate::tick::Mode)>>], at_ns: u64) {
        self.markets_closed.clear();
        let Some(cal) = &mut self.calendar else {
            return;
        };
        if let Some(next) = cal.window.moved_to(&cal.holidays, at_ns) {
            warn_missing(&next, cal.window.missing());
            cal.window = next;
        }
        for conn in subs {
            let closed = all_closed(&cal.window, conn.iter().map(|&(t, _)| t), at_ns);
            self.markets_closed.push(closed);
        }
    }

    /// Opens the control endpoints (`admin.rs`): returns the queue their
    /// requests arrive on, for the `run` loop to answer; `None` when called
    /// twice.
    pub fn control_queue(&self) -> Option<admin::AdminQueue> {
        let (tx, rx) = admin::channel();
        self.shared.admin.set(tx).ok().map(|()| rx)
    }

    /// The control plane's state, shown from the next sample on (and at
    /// once in the current view).
    pub fn set_control(&mut self, c: ControlView) {
        let mut v = (*self.view()).clone();
        v.control = c.clone();
        self.control = c;
        self.shared.view.store(Arc::new(v));
    }

    /// Takes the live `[ops]` thresholds of a reload (the address, the
    /// sampling and the window need a restart).
    pub fn set_thresholds(&mut self, cfg: &OpsConfig) {
        self.cfg.stale_after_ms = cfg.stale_after_ms;
        self.cfg.ring_high_pct = cfg.ring_high_pct;
        self.cfg.drop_rate_pct = cfg.drop_rate_pct;
        self.cfg.send_failure_pct = cfg.send_failure_pct;
        self.cfg.slow_n = cfg.slow_n;
        self.cfg.expected_tick_interval_ms = cfg.expected_tick_interval_ms;
        self.thresholds = thresholds(&self.cfg);
    }

    /// Replaces the Redis sink (a reload changed `[redis]`): the new one
    /// connects on its first write; an empty URL turns Redis off.
    pub fn set_redis(&mut self, redis: RedisConfig) {
        self.redis_interval = std::time::Duration::from_millis(redis.interval_ms);
        self.next_redis = Instant::now();
        self.redis = (!redis.url.is_empty()).then(|| RedisSink::new(redis));
    }

    /// Who may call the control endpoints from now on.
    pub fn set_admin_auth(&self, auth: admin::AdminAuth) {
        self.shared.admin_auth.store(Arc::new(auth));
    }

    /// The bound HTTP address, when the server runs.
    #[must_use]
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(http::Server::local_addr)
    }

    /// The sample interval.
    #[must_use]
    pub fn sample_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.cfg.sample_ms)
    }

    /// The Redis key names, when Redis metrics are on.
    #[must_use]
    pub fn redis_keys(&self) -> Option<&[String; 5]> {
        self.redis.as_ref().map(RedisSink::keys)
    }

    /// The latest view.
    #[must_use]
    pub fn view(&self) -> Arc<View> {
        self.shared.view.load_full()
    }

    /// Samples the engine: counters, histograms, slow deliveries; writes
    /// Redis when due; computes health; publishes the view.
    pub fn sample(&mut self, engine: &mut Engine, running: bool) -> Arc<View> {
        let counts = engine.counts();
        if self.calendar.is_some() {
            self.markets_closed(&engine.connection_subscriptions(), now_ns());
        }
        if let Some(s) = &mut self.slo {
            s.observe(engine, self.calendar.as_ref().map(|c| &c.window), now_ns());
        }
        let slow = engine.take_slow_acks();
        let panics = engine.thread_panics();
        let (p, a) = engine.latency_histograms();
        let (p, a) = (Buckets::of(p), Buckets::of(a));
        self.update(counts, &slow, &panics, running, p, a)
    }

    /// Publishes the final counters after the engine stopped (health
    /// `not_running`), and writes them to Redis once more.
    pub fn finish(&mut self, summary: &crate::engine::Summary) -> Arc<View> {
        let (p, a) = (
            Buckets::of(&summary.latency_histogram),
            self.view().ack_latency.clone(),
        );
        self.next_redis = Instant::now();
        self.update(
            summary.counts.clone(),
            &[],
            &summary.thread_errors,
            false,
            p,
            a,
        )
    }

    #[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
    fn update(
        &mut self,
        counts: Counts,
        slow: &[SlowAck],
        panics: &[String],
        running: bool,
        produce_latency: Buckets,
        ack_latency: Buckets,
    ) -> Arc<View> {
        let now = Instant::now();
        let at_ns = now_ns();
        // Rates since the previous sample.
        let ticks: Vec<u64> = counts.connections.iter().map(|c| c.ticks).collect();
        let (receive_rate, publish_rate, conn_rates) = match &self.prev {
            Some((t, r, p, per)) => {
                let dt = now.duration_since(*t).as_secs_f64().max(1e-3);
                (
                    counts.received.saturating_sub(*r) as f64 / dt,
                    counts.published.saturating_sub(*p) as f64 / dt,
                    ticks
                        .iter()
                        .enumerate()
                        .map(|(i, n)| {
                            n.saturating_sub(per.get(i).copied().unwrap_or(0)) as f64 / dt
                        })
                        .collect(),
                )
            }
            None => (0.0, 0.0, vec![0.0; ticks.len()]),
        };
        self.prev = Some((now, counts.received, counts.published, ticks));
        if counts.published > self.last_published {
            self.last_activity_ns = at_ns;
        }
        self.last_published = counts.published;

        // The rate window.
        let f = &counts.failures;
        self.window.push_back(Point {
            at_ns,
            received: counts.received,
            dropped: counts.dropped,
            failures: f.producer_queue_full + f.produce_error + f.delivery_failed,
            fatal: counts.producer_fatal_errors,
            t0_dropped: counts.tiers[0].dropped,
        });
        let horizon = at_ns.saturating_sub(self.cfg.window_s * 1_000_000_000);
        while self.window.len() > 2 && self.window[1].at_ns <= horizon {
            self.window.pop_front();
        }
        let first = self.window.front().copied().unwrap_or(Point {
            at_ns,
            received: 0,
            dropped: 0,
            failures: 0,
            fatal: 0,
            t0_dropped: 0,
        });
        let window = (
            counts.received.saturating_sub(first.received),
            counts.dropped.saturating_sub(first.dropped),
            self.window
                .back()
                .map_or(0, |b| b.failures.saturating_sub(first.failures)),
        );

        // Connection history.
        self.history
            .resize_with(counts.connections.len(), VecDeque::new);
        let at = rfc3339_ms(at_ns);
        for (i, c) in counts.connections.iter().enumerate() {
            let h = &mut self.history[i];
            h.push_back(ConnSample {
                at: at.clone(),
                state: c.state,
                last_frame_age_ms: c.last_frame_age_ms,
                ticks_per_s: conn_rates.get(i).copied().unwrap_or(0.0),
            });
            while h.len() > self.cfg.history {
                h.pop_front();
            }
        }

        // Slow deliveries of the window.
        for s in slow {
            self.slow_kafka.push_back((
                s.at_ns,
                SlowKafka {
                    at: rfc3339_ms(s.at_ns),
                    topic: self.topic.clone(),
                    partition: s.partition,
                    instrument: s.instrument,
                    publisher: s.publisher,
                    batch_size: s.dr_batch,
                    duration_ms: s.duration_ns as f64 / 1e6,
                },
                s.duration_ns,
            ));
        }
        prune_slow(&mut self.slow_kafka, horizon, self.cfg.slow_n);

        // Redis, once per its interval.
        if let Some(sink) = &mut self.redis
            && now >= self.next_redis
        {
            self.next_redis = now + self.redis_interval;
            let published = counts.published.saturating_sub(self.published_to_redis);
            self.published_to_redis = counts.published;
            let v = redis_sink::Interval {
                published,
                last_activity_ns: self.last_activity_ns,
                last_tick_age_ms: counts
                    .connections
                    .iter()
                    .filter_map(|c| c.last_tick_age_ms)
                    .min(),
                send_failures: f.producer_queue_full
                    + f.produce_error
                    + f.delivery_failed
                    + f.unflushed_at_exit,
                reconnections: counts
                    .connections
                    .iter()
                    .map(|c| c.reconnects.values().sum::<u64>())
                    .sum(),
                universe_version: self.control.universe.as_ref().map(|u| u.version.clone()),
            };
            if let Some(w) = sink.write(&v) {
                record_redis(&mut self.slow_redis, w);
            }
        }
        prune_slow(&mut self.slow_redis, horizon, self.cfg.slow_n);
        let redis = self
            .redis
            .as_ref()
            .map(|r| r.status().clone())
            .unwrap_or_default();

        let health = health::evaluate(
            &health::Input {
                running,
                panics,
                connections: counts
                    .connections
                    .iter()
                    .map(|c| (c.state, c.last_frame_age_ms))
                    .collect(),
                ring_fill: counts
                    .publishers
                    .iter()
                    .map(|p| p.ring_len as f64 / p.ring_capacity.max(1) as f64)
                    .collect(),
                window,
                window_s: self.cfg.window_s,
                redis_state: redis.enabled.then_some(redis.state),
                redis_failures: redis.consecutive_failures,
                redis_error: redis.last_error.as_deref(),
                spool_bytes: counts.spool_bytes,
                fatal_in_window: counts.producer_fatal_errors.saturating_sub(first.fatal),
                t0_dropped_in_window: counts.tiers[0].dropped.saturating_sub(first.t0_dropped),
                kafka_error: counts.last_kafka_error.as_deref(),
                secret_files: &self.notes,
                markets_closed: &self.markets_closed,
            },
            &self.thresholds,
        );
        let health = slo::with_note(self.slo.as_ref(), health);
        let connections = counts
            .connections
            .iter()
            .enumerate()
            .map(|(i, c)| ConnView {
                index: i,
                url: c.url.clone(),
                state: c.state,
                instruments: c.instruments,
                last_frame_age_ms: c.last_frame_age_ms,
                last_tick_age_ms: c.last_tick_age_ms,
                attempts: c.attempts,
                reconnects: c.reconnects.clone(),
                disconnected_ms: c.disconnected_ms,
                error: c.error.clone(),
                history: self.history[i].iter().cloned().collect(),
            })
            .collect();
        let view = Arc::new(View {
            at_ns,
            running,
            health,
            receive_rate,
            publish_rate,
            produce_latency,
            ack_latency,
            redis,
            thread_panics: panics.len() as u64,
            connections,
            slow_kafka: sorted(&self.slow_kafka, self.cfg.slow_n),
            slow_redis: sorted(&self.slow_redis, self.cfg.slow_n),
            #[allow(clippy::cast_precision_loss)]
            expected_tick_interval_s: self.cfg.expected_tick_interval_ms as f64 / 1000.0,
            window_s: self.cfg.window_s,
            control: self.control.clone(),
            slo: self
                .slo
                .as_ref()
                .map(|s| s.view().clone())
                .unwrap_or_default(),
            stream: self.stream.as_ref().map(|s| s.snapshot()),
            counts,
        });
        self.shared.view.store(Arc::clone(&view));
        view
    }
}

/// Whether every instrument of `tokens` is in a closed market at `at_ns`:
/// `false` for none, or for one of a segment the calendar does not know.
fn all_closed(
    window: &crate::calendar::Calendar,
    tokens: impl Iterator<Item = u32>,
    at_ns: u64,
) -> bool {
    use crate::calendar::Exchange;
    // One bit per exchange seen; bit 15: a segment the calendar does not know.
    let mut seen = 0u16;
    for token in tokens {
        seen |= Exchange::of_instrument(token, None).map_or(1 << 15, |e| 1 << e.index());
    }
    seen != 0
        && seen & (1 << 15) == 0
        && Exchange::ALL
            .iter()
            .filter(|e| seen & (1 << e.index()) != 0)
            .all(|&e| window.is_open(e, at_ns) == Some(false))
}

/// Warns once for each (year, list) of `window` without a holiday list
/// that `before` did not already lack.
fn warn_missing(window: &crate::calendar::Calendar, before: &[(u32, crate::calendar::List)]) {
    for (year, list) in window.missing() {
        if !before.contains(&(*year, *list)) {
            tracing::warn!(
                "calendar: no {} holiday list for {year}: its weekdays count as trading days \
                 (stale_feed may be raised on its holidays); add the year's file \
                 (calendar.file, README \"Calendar\")",
                list.label()
            );
        }
    }
}

/// The health thresholds of the `[ops]` percentages.
fn thresholds(cfg: &OpsConfig) -> Thresholds {
    Thresholds {
        ring_high: cfg.ring_high_pct / 100.0,
        drop_rate: cfg.drop_rate_pct / 100.0,
        send_failure_rate: cfg.send_failure_pct / 100.0,
        stale_after_ms: cfg.stale_after_ms,
    }
}

fn record_redis(q: &mut VecDeque<(u64, SlowRedis, u64)>, w: WriteRecord) {
    #[allow(clippy::cast_precision_loss)]
    q.push_back((
        w.at_ns,
        SlowRedis {
            at: rfc3339_ms(w.at_ns),
            batch_size: w.commands,
            duration_ms: w.duration_ns as f64 / 1e6,
            outcome: w.outcome,
        },
        w.duration_ns,
    ));
}

/// Drops entries older than `horizon`, and bounds the rest to the `4 × n`
/// slowest.
fn prune_slow<T>(q: &mut VecDeque<(u64, T, u64)>, horizon: u64, n: usize) {
    q.retain(|e| e.0 > horizon);
    if q.len() > 4 * n {
        q.make_contiguous()
            .sort_unstable_by_key(|e| std::cmp::Reverse(e.2));
        q.truncate(n);
    }
}

fn sorted<T: Clone>(q: &VecDeque<(u64, T, u64)>, n: usize) -> Vec<T> {
    let mut v: Vec<_> = q.iter().collect();
    v.sort_unstable_by_key(|e| std::cmp::Reverse(e.2));
    v.into_iter().take(n).map(|e| e.1.clone()).collect()
}

#[cfg(test)]
mod tests {
    use crate::calendar::dates::parse_date;
    use crate::calendar::{Calendar, DAY_NS, Holidays, IST_OFFSET_NS};

    /// ns of `date` at `hh:mm` IST.
    fn ist(date: &str, hh: u64, mm: u64) -> u64 {
        u64::from(parse_date(date).unwrap()) * DAY_NS + (hh * 60 + mm) * 60_000_000_000
            - IST_OFFSET_NS
    }

    #[test]
    fn a_connection_is_closed_only_when_all_its_markets_are() {
        let h = Holidays::load(None).unwrap();
        let cal = Calendar::new(&h, ist("2026-11-25", 12, 0), 14, 7);
        // INFY (NSE), NIFTY 50 (index, NSE hours), an MCX future.
        let (nse, nifty, mcx) = (408_065, 256_265, 53_253_383);
        let at = |hh, mm| ist("2026-11-25", hh, mm);
        assert!(super::all_closed(&cal, [nse, nifty].into_iter(), at(16, 0)));
        assert!(!super::all_closed(
            &cal,
            [nse, nifty].into_iter(),
            at(10, 0)
        ));
        // MCX trades into the evening: the connection is not closed.
        assert!(!super::all_closed(&cal, [nse, mcx].into_iter(), at(16, 0)));
        assert!(super::all_closed(&cal, [nse, mcx].into_iter(), at(23, 45)));
        // Saturday; and the empty / unknown-segment cases count as open.
        assert!(super::all_closed(
            &cal,
            [mcx].into_iter(),
            ist("2026-11-28", 12, 0)
        ));
        assert!(!super::all_closed(&cal, std::iter::empty(), at(16, 0)));
        assert!(!super::all_closed(
            &cal,
            [nse, 0x1234_560A].into_iter(),
            at(16, 0)
        ));
    }
}
