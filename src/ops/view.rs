//! What the ops side publishes: the immutable [`View`] the `ops-http` thread
//! serves, and its parts. Built by [`Ops::sample`](super::Ops::sample) on the
//! ops thread; swapped into [`Shared`] with `ArcSwap`, never locked.

use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::health::{self, Health};
use super::http;
use super::redis_sink::SinkStatus;
use crate::clock::now_ns;
use crate::config::OpsConfig;
use crate::engine::Counts;

/// One health sample of a connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnSample {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// State label.
    pub state: &'static str,
    /// Time since the last frame, ms.
    pub last_frame_age_ms: Option<u64>,
    /// Ticks per second since the previous sample.
    pub ticks_per_s: f64,
}

/// A connection as `/stats/connections` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnView {
    /// Index (the `connection` label of metrics).
    pub index: usize,
    /// URL without credentials.
    pub url: String,
    /// State label.
    pub state: &'static str,
    /// Instruments assigned.
    pub instruments: usize,
    /// Time since the last frame of any kind, ms.
    pub last_frame_age_ms: Option<u64>,
    /// Time since the last market-data message with ticks, ms.
    pub last_tick_age_ms: Option<u64>,
    /// Connection attempts.
    pub attempts: u64,
    /// Times down, by reason.
    pub reconnects: std::collections::BTreeMap<String, u64>,
    /// Time spent down, ms.
    pub disconnected_ms: u64,
    /// Why it last went down.
    pub error: Option<String>,
    /// The latest health samples, oldest first.
    pub history: Vec<ConnSample>,
}

/// A slow Kafka delivery as `/ops/slow` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowKafka {
    /// Delivery-report time, RFC 3339 UTC.
    pub at: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Instrument token (record key).
    pub instrument: u32,
    /// Publisher.
    pub publisher: u32,
    /// Delivery reports served in the same poll (the acknowledged batch as
    /// the publisher saw it).
    pub batch_size: u32,
    /// Receive → broker ack, ms.
    pub duration_ms: f64,
}

/// A slow Redis write as `/ops/slow` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowRedis {
    /// When it ended, RFC 3339 UTC.
    pub at: String,
    /// Commands in the pipeline.
    pub batch_size: u32,
    /// Duration, ms.
    pub duration_ms: f64,
    /// `ok` or the error.
    pub outcome: String,
}

/// Cumulative histogram buckets for the Prometheus exposition.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Buckets {
    /// (upper bound in seconds, cumulative count); `+Inf` is `count`.
    pub le: Vec<(f64, u64)>,
    /// Samples.
    pub count: u64,
    /// Sum of the samples, s (from hdrhistogram's mean: approximate).
    pub sum_s: f64,
}

/// Bucket bounds of the latency histograms, seconds.
pub const BUCKETS_S: [f64; 18] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Buckets {
    /// Buckets of a nanosecond histogram.
    #[must_use]
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self {
                le: BUCKETS_S.iter().map(|b| (*b, 0)).collect(),
                ..Self::default()
            };
        }
        Self {
            le: BUCKETS_S
                .iter()
                .map(|b| (*b, h.count_between(0, (b * 1e9) as u64)))
                .collect(),
            count: h.len(),
            sum_s: h.mean() * h.len() as f64 / 1e9,
        }
    }
}

/// Everything the HTTP thread serves, as of one sample. Immutable.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// Sample time, ns since the epoch.
    pub at_ns: u64,
    /// The engine runs and is not stopping.
    pub running: bool,
    /// Health.
    pub health: Health,
    /// Every counter.
    pub counts: Counts,
    /// Ticks received per second since the previous sample.
    pub receive_rate: f64,
    /// Ticks published per second since the previous sample.
    pub publish_rate: f64,
    /// Receive → produce call.
    pub produce_latency: Buckets,
    /// Receive → broker ack.
    pub ack_latency: Buckets,
    /// Redis sink.
    pub redis: SinkStatus,
    /// Engine threads that panicked.
    pub thread_panics: u64,
    /// Connections with their history.
    pub connections: Vec<ConnView>,
    /// Slowest Kafka deliveries in the window, slowest first.
    pub slow_kafka: Vec<SlowKafka>,
    /// Slowest Redis writes in the window, slowest first.
    pub slow_redis: Vec<SlowRedis>,
    /// `ops.expected_tick_interval_ms` in seconds.
    pub expected_tick_interval_s: f64,
    /// Window of rates and slow lists, s.
    pub window_s: u64,
    /// The control plane's state (settings version, universe, reloader).
    pub control: ControlView,
    /// The SLO gap monitor's latest round (README, "SLO monitoring").
    pub slo: crate::slo::SloView,
    /// The downstream bar stream's counters, when it runs.
    pub stream: Option<crate::stream::StreamCounts>,
}

/// The control plane's state, as the `run` loop reports it (README,
/// "Control plane").
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ControlView {
    /// Bumped by every applied reload (0 = as started).
    pub policy_version: u64,
    /// Reloads applied.
    pub reloads_applied: u64,
    /// Reloads rejected (invalid config; nothing applied).
    pub reloads_rejected: u64,
    /// The current instrument universe.
    pub universe: Option<crate::control::UniverseVersion>,
    /// The subscription reloader's counters.
    pub subscriptions: crate::control::ReloaderCounts,
}

impl View {
    pub(super) fn starting(cfg: &OpsConfig) -> Self {
        Self {
            at_ns: now_ns(),
            running: false,
            health: Health::of(vec![health::Issue {
                code: "not_running",
                severity: health::Status::Unhealthy,
                text: "the engine is starting".into(),
            }]),
            counts: Counts::default(),
            receive_rate: 0.0,
            publish_rate: 0.0,
            produce_latency: Buckets::of(&crate::engine::publish::latency_histogram()),
            ack_latency: Buckets::of(&crate::engine::publish::latency_histogram()),
            redis: SinkStatus::default(),
            thread_panics: 0,
            connections: Vec::new(),
            slow_kafka: Vec::new(),
            slow_redis: Vec::new(),
            #[allow(clippy::cast_precision_loss)]
            expected_tick_interval_s: cfg.expected_tick_interval_ms as f64 / 1000.0,
            window_s: cfg.window_s,
            control: ControlView::default(),
            slo: crate::slo::SloView::default(),
            stream: None,
        }
    }
}

/// State shared with the HTTP thread.
#[derive(Debug)]
pub struct Shared {
    /// The latest view.
    pub view: ArcSwap<View>,
    /// The HTTP server's counters: responses by status class, connections
    /// held and refused.
    pub http: http::Counters,
    /// Who may call the control endpoints (replaced by a reload).
    pub admin_auth: ArcSwap<super::admin::AdminAuth>,
    /// The way to the `run` loop's control plane, when it has one.
    pub admin: std::sync::OnceLock<super::admin::AdminSender>,
}
