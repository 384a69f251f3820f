//! `GET /metrics`: Prometheus text exposition format 0.0.4.
//!
//! Every family is declared once, in [`FAMILIES`]: name, type, `# HELP` text
//! and label names. Rendering refers to a declaration (a private const named
//! after it), never re-types any of these, and [`METRIC_NAMES`] (the list the
//! monitoring files and the README are checked against) is derived from the
//! table. Every name starts with `panda_feed_` and is declared once (checked
//! at compile time); every declared family is rendered once, in table order
//! (checked by this module's tests).

use std::fmt::Write as _;

use super::http::{CODE_LABELS, Counts as HttpCounts};
use super::{Buckets, View};
use crate::tier::{TIERS, Tier};

/// A family's type, as `# TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets on restart).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets with `le`, plus `_sum` and `_count`.
    Histogram,
}

impl Kind {
    /// The `# TYPE` word.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric family as declared in [`FAMILIES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub kind: Kind,
    /// `# HELP` text.
    pub help: &'static str,
    /// Label names, in the order a sample gives their values (a histogram's
    /// `le` is implied).
    pub labels: &'static [&'static str],
}

/// Declares each family as a private const and lists them all in
/// [`FAMILIES`], in the same order.
macro_rules! families {
    ($($id:ident = $kind:ident $name:literal [$($label:literal),*] $help:literal;)*) => {
        $(const $id: Family = Family {
            name: $name,
            kind: Kind::$kind,
            help: $help,
            labels: &[$($label),*],
        };)*
        /// Every metric family exported, in the order `/metrics` renders
        /// them; documented in the README.
        pub const FAMILIES: &[Family] = &[$($id),*];
    };
}

families! {
    TICKS_RECEIVED = Counter "panda_feed_ticks_received_total" []
        "Ticks decoded from market-data messages.";
    TICKS_PUBLISHED = Counter "panda_feed_ticks_published_total" []
        "Ticks whose delivery Kafka confirmed.";
    TICKS_PARKED = Counter "panda_feed_ticks_parked_total" []
        "Ticks parked in the dead-letter spool.";
    TICKS_DROPPED = Counter "panda_feed_ticks_dropped_total" ["reason"]
        "Ticks dropped, by reason.";
    TICKS_RECEIVED_BY_TIER = Counter "panda_feed_ticks_received_by_tier_total" ["tier"]
        "Ticks received, by instrument tier (T0 is shed last, T2 first).";
    TICKS_PUBLISHED_BY_TIER = Counter "panda_feed_ticks_published_by_tier_total" ["tier"]
        "Ticks whose delivery Kafka confirmed, by tier.";
    TICKS_PARKED_BY_TIER = Counter "panda_feed_ticks_parked_by_tier_total" ["tier"]
        "Ticks parked in the dead-letter spool, by tier.";
    TICKS_DROPPED_BY_TIER = Counter "panda_feed_ticks_dropped_by_tier_total" ["tier", "reason"]
        "Ticks dropped, by tier and reason.";
    IN_FLIGHT_TICKS_BY_TIER = Gauge "panda_feed_in_flight_ticks_by_tier" ["tier"]
        "Ticks in a ring, a publisher or the producer queue, by tier.";
    TIER_RING_FILL_RATIO = Gauge "panda_feed_tier_ring_fill_ratio" ["tier"]
        "Fill of a tier's rings over all publishers, 0..1 (0 for a tier with no slots).";
    SEND_FAILURES = Counter "panda_feed_send_failures_total" ["cause"]
        "Records Kafka did not take, by cause (each parked or dropped).";
    MALFORMED_MESSAGES = Counter "panda_feed_malformed_messages_total" ["reason"]
        "Malformed binary messages, by reason (the whole message is skipped).";
    UNKNOWN_PACKETS = Counter "panda_feed_unknown_packets_total" []
        "Packets of an unknown length, skipped.";
    MESSAGES = Counter "panda_feed_messages_total" ["connection"]
        "Market-data messages, per connection.";
    HEARTBEATS = Counter "panda_feed_heartbeats_total" ["connection"]
        "Heartbeats, per connection.";
    CONNECTION_ATTEMPTS = Counter "panda_feed_connection_attempts_total" ["connection"]
        "Connection attempts (the first included), per connection.";
    DISCONNECTED_SECONDS = Counter "panda_feed_disconnected_seconds_total" ["connection"]
        "Time spent not open after the first open, per connection.";
    SERVER_ERROR_FRAMES = Counter "panda_feed_server_error_frames_total" ["connection"]
        "Text error frames from the server, per connection.";
    BLOCKED_SECONDS = Counter "panda_feed_blocked_seconds_total" ["connection"]
        "Time a connection's socket was not read because a ring was full (engine.overflow = block).";
    BLOCK_STALLS = Counter "panda_feed_block_stalls_total" ["connection"]
        "Messages held for ring room (engine.overflow = block), per connection.";
    BLOCK_TIMEOUTS = Counter "panda_feed_block_timeouts_total" ["connection"]
        "Holds that ran past engine.block_max_ms and dropped what did not fit (ring_full).";
    RECONNECTIONS = Counter "panda_feed_reconnections_total" ["connection", "reason"]
        "Times a connection went down (and reconnected), by reason.";
    KAFKA_CLIENT_ERRORS = Counter "panda_feed_kafka_client_errors_total" []
        "Client-level errors librdkafka reported (e.g. all brokers down).";
    PRODUCER_FATAL_ERRORS = Counter "panda_feed_producer_fatal_errors_total" []
        "Fatal Kafka producer errors; each replaced the producer and parked what it held.";
    PRODUCER_QUEUE_FULL_WAITS = Counter "panda_feed_producer_queue_full_waits_total" ["publisher"]
        "Waits for room in a full producer queue, per publisher.";
    ACK_SAMPLES_DROPPED = Counter "panda_feed_ack_samples_dropped_total" []
        "Ack-latency samples lost to a full sample buffer (samples, not ticks).";
    REDIS_WRITES = Counter "panda_feed_redis_writes_total" ["result"]
        "Redis pipeline writes attempted, by result.";
    REDIS_CIRCUIT_OPEN_DROPS = Counter "panda_feed_redis_circuit_open_drops_total" []
        "Redis pipeline writes dropped because the circuit was open.";
    THREAD_PANICS = Counter "panda_feed_thread_panics_total" []
        "Engine threads that panicked.";
    OPS_HTTP_REQUESTS = Counter "panda_feed_ops_http_requests_total" ["code"]
        "Ops HTTP responses, by status class.";
    OPS_HTTP_CONNECTIONS_REFUSED = Counter "panda_feed_ops_http_connections_refused_total" []
        "Ops HTTP connections refused (503) because the server held its maximum.";
    OPS_HTTP_DENIED = Counter "panda_feed_ops_http_denied_total" []
        "Control requests refused 401/403 (no or a wrong admin token, or a non-loopback peer).";
    RELOADS = Counter "panda_feed_reloads_total" ["result"]
        "Config reloads (SIGHUP, POST /ops/reload), by result: applied or rejected.";
    SUBSCRIPTION_REQUESTS = Counter "panda_feed_subscription_requests_total" ["result"]
        "POST /ops/subscriptions requests, by result: accepted, queue_full, invalid.";
    SUBSCRIPTION_APPLICATIONS = Counter "panda_feed_subscription_applications_total" []
        "Desired subscription states handed to the network thread.";
    ORDER_POSTBACKS = Counter "panda_feed_order_postbacks_total" ["result"]
        "Order postbacks (Kite order frames): received, published, parked, dropped.";
    BARS = Counter "panda_feed_bars_total" ["result"]
        "One-minute bars: built, published, parked, dropped (README, Bars).";
    BAR_TICKS_SKIPPED = Counter "panda_feed_bar_ticks_skipped_total" ["reason"]
        "Ticks not folded into a bar: late (past the grace), closed_market, unpriced, untracked, unclocked.";
    BARS_HANDOFF_DROPPED = Counter "panda_feed_bars_handoff_dropped_total" []
        "Bars the hand-off to the ops side (stream, Redis) had no room for; their Kafka records are unaffected.";
    PACKETS_AFTER_UNSUBSCRIBE = Counter "panda_feed_packets_after_unsubscribe_total" []
        "Packets of an instrument received just after its unsubscribe: skipped, not ticks.";
    POLICY_INFO = Gauge "panda_feed_policy_info" ["policy_version"]
        "1, labelled with the settings version (bumped by every applied reload; 0 = as started).";
    UNIVERSE_INFO = Gauge "panda_feed_universe_info" ["version", "source"]
        "1, labelled with the instrument universe's version (SHA-256 of the normalised list) and source.";
    UNIVERSE_INSTRUMENTS = Gauge "panda_feed_universe_instruments" []
        "Instruments in the current universe.";
    RUNNING = Gauge "panda_feed_running" []
        "1 while the engine runs and is not stopping.";
    HEALTH_STATUS = Gauge "panda_feed_health_status" []
        "Health: 0 healthy, 1 degraded, 2 unhealthy (reasons at /health).";
    IN_FLIGHT_TICKS = Gauge "panda_feed_in_flight_ticks" []
        "Ticks in a ring, a publisher or the producer queue.";
    RING_FILL_RATIO = Gauge "panda_feed_ring_fill_ratio" ["publisher"]
        "Fill of a publisher ring, 0..1.";
    RING_LEN = Gauge "panda_feed_ring_len" ["publisher"]
        "Ticks in a publisher ring.";
    RING_CAPACITY = Gauge "panda_feed_ring_capacity" ["publisher"]
        "Slots of a publisher ring.";
    RING_BYTES = Gauge "panda_feed_ring_bytes" ["publisher"]
        "Memory of a publisher's rings: slots times the slot size, bytes.";
    PRODUCER_QUEUE_DEPTH = Gauge "panda_feed_producer_queue_depth" ["publisher"]
        "Records in a publisher's Kafka producer awaiting a delivery report.";
    CONNECTION_UP = Gauge "panda_feed_connection_up" ["connection"]
        "1 while a connection is open (streaming).";
    LAST_FRAME_AGE = Gauge "panda_feed_last_frame_age_seconds" ["connection"]
        "Time since the last frame of any kind (heartbeats included), per connection.";
    LAST_TICK_AGE = Gauge "panda_feed_last_tick_age_seconds" ["connection"]
        "Time since the last market-data message with ticks, per connection.";
    RECEIVE_RATE = Gauge "panda_feed_receive_rate_ticks_per_second" []
        "Ticks received per second over the last sample interval.";
    PUBLISH_RATE = Gauge "panda_feed_publish_rate_ticks_per_second" []
        "Ticks published per second over the last sample interval.";
    SPOOL_BYTES = Gauge "panda_feed_spool_bytes" []
        "Bytes in the dead-letter spool.";
    REDIS_CIRCUIT_STATE = Gauge "panda_feed_redis_circuit_state" []
        "Redis circuit breaker: 0 closed, 1 open, 2 half-open.";
    EXPECTED_TICK_INTERVAL = Gauge "panda_feed_expected_tick_interval_seconds" []
        "ops.expected_tick_interval_ms, for the tick-age alert.";
    UPTIME = Gauge "panda_feed_uptime_seconds" []
        "Seconds since the engine started.";
    OPS_HTTP_OPEN_CONNECTIONS = Gauge "panda_feed_ops_http_open_connections" []
        "Ops HTTP connections held now (this scrape's included).";
    BUILD_INFO = Gauge "panda_feed_build_info" ["version"]
        "Always 1; the version is a label.";
    SLO_GAP_VIOLATION_RATE = Gauge "panda_feed_slo_gap_violation_rate" ["tier", "interval"]
        "Share of a tier's sampled in-session instruments whose last tick was older than twice the tier's expected interval, latest SLO round (0..1).";
    SLO_SAMPLED = Gauge "panda_feed_slo_sampled_instruments" ["tier", "market"]
        "Instruments the latest SLO round sampled, by tier and market: open (counted), closed or untracked (not counted).";
    SLO_ROUNDS = Counter "panda_feed_slo_rounds_total" []
        "SLO gap monitor rounds (one per slo.interval_s).";
    PRODUCE_LATENCY = Histogram "panda_feed_produce_latency_seconds" []
        "Latency from receive to the produce call, since start.";
    ACK_LATENCY = Histogram "panda_feed_ack_latency_seconds" []
        "Latency from receive to the broker's acknowledgement (delivery report), since start.";
    STREAM_CLIENTS = Gauge "panda_feed_stream_clients" []
        "Downstream stream clients connected now.";
    STREAM_CLIENTS_REFUSED = Counter "panda_feed_stream_clients_refused_total" []
        "Stream connections refused (503) at ops.stream_max_clients.";
    STREAM_SLOW_DISCONNECTS = Counter "panda_feed_stream_slow_disconnects_total" []
        "Stream clients disconnected for not reading (buffer past ops.stream_client_buffer_bytes).";
    STREAM_HANDSHAKE_FAILURES = Counter "panda_feed_stream_handshake_failures_total" []
        "Stream connections whose WebSocket handshake failed or timed out.";
    STREAM_BAD_REQUESTS = Counter "panda_feed_stream_bad_requests_total" []
        "Stream client requests answered with an error frame.";
    STREAM_BARS_RECEIVED = Counter "panda_feed_stream_bars_received_total" []
        "Bars taken from the publishers' hand-offs by the stream thread.";
    STREAM_BAR_FRAMES = Counter "panda_feed_stream_bar_frames_sent_total" ["source"]
        "Bar frames sent to stream clients: live, replay_memory, replay_redis.";
    STREAM_INSTRUMENTS = Gauge "panda_feed_stream_instruments" []
        "Instruments with a replay window.";
    STREAM_OVER_LIMIT = Counter "panda_feed_stream_instruments_over_limit_total" []
        "Bars or look-ups of instruments past ops.stream_max_instruments, not kept.";
    STREAM_REDIS_WRITES = Counter "panda_feed_stream_redis_writes_total" ["result"]
        "Redis replay-list write pipelines, ok or error.";
    STREAM_REDIS_READS = Counter "panda_feed_stream_redis_reads_total" ["result"]
        "Redis replay-list reads (after a restart), ok or error.";
    STREAM_REDIS_SKIPS = Counter "panda_feed_stream_redis_circuit_open_skips_total" []
        "Redis replay-list reads or writes skipped while the circuit was open.";
    STREAM_REDIS_DROPPED = Counter "panda_feed_stream_redis_bars_dropped_total" []
        "Bars not written to the Redis replay lists (failed, circuit open or batch full).";
    STREAM_REDIS_SKIPPED = Counter "panda_feed_stream_redis_records_skipped_total" []
        "Records read back from a Redis replay list that were not its instrument's bar records.";
}

const N_FAMILIES: usize = FAMILIES.len();

const NAMES: [&str; N_FAMILIES] = {
    let mut out = [""; N_FAMILIES];
    let mut i = 0;
    while i < N_FAMILIES {
        out[i] = FAMILIES[i].name;
        i += 1;
    }
    out
};

/// Every metric family's name (from [`FAMILIES`], same order).
pub const METRIC_NAMES: &[&str] = &NAMES;

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// Each name declared once, under the common prefix, with help text.
const _: () = {
    const PREFIX: &[u8] = b"panda_feed_";
    let mut i = 0;
    while i < N_FAMILIES {
        let name = FAMILIES[i].name.as_bytes();
        assert!(
            name.len() > PREFIX.len() && same(name.split_at(PREFIX.len()).0, PREFIX),
            "a metric name does not start with panda_feed_"
        );
        assert!(!FAMILIES[i].help.is_empty(), "a metric has no help text");
        let mut j = i + 1;
        while j < N_FAMILIES {
            assert!(
                !same(name, FAMILIES[j].name.as_bytes()),
                "a metric name is declared twice"
            );
            j += 1;
        }
        i += 1;
    }
};

struct Out {
    s: String,
}

impl Out {
    /// `# HELP` and `# TYPE` of `f`.
    fn header(&mut self, f: &Family) {
        let _ = writeln!(self.s, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(self.s, "# TYPE {} {}", f.name, f.kind.as_str());
    }

    /// One sample of `f` with its label values, in declaration order.
    fn sample(&mut self, f: &Family, values: &[&str], v: impl std::fmt::Display) {
        debug_assert!(f.kind != Kind::Histogram, "{}", f.name);
        debug_assert_eq!(values.len(), f.labels.len(), "{}", f.name);
        self.series(f.name, "", f.labels, values, v);
    }

    /// `f` with its one unlabelled sample.
    fn one(&mut self, f: &Family, v: impl std::fmt::Display) {
        self.header(f);
        self.sample(f, &[], v);
    }

    fn histogram(&mut self, f: &Family, b: &Buckets) {
        debug_assert!(
            f.kind == Kind::Histogram && f.labels.is_empty(),
            "{}",
            f.name
        );
        self.header(f);
        for (le, n) in &b.le {
            self.series(f.name, "_bucket", &["le"], &[&le.to_string()], n);
        }
        self.series(f.name, "_bucket", &["le"], &["+Inf"], b.count);
        self.series(f.name, "_sum", &[], &[], b.sum_s);
        self.series(f.name, "_count", &[], &[], b.count);
    }

    fn series(
        &mut self,
        name: &str,
        suffix: &str,
        keys: &[&str],
        values: &[&str],
        v: impl std::fmt::Display,
    ) {
        self.s.push_str(name);
        self.s.push_str(suffix);
        if !keys.is_empty() {
            self.s.push('{');
            for (i, (k, val)) in keys.iter().zip(values).enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                let _ = write!(self.s, "{k}=\"{}\"", escape(val));
            }
            self.s.push('}');
        }
        let _ = writeln!(self.s, " {v}");
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders `view`, with the HTTP server's counters `http`.
#[must_use]
#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
pub fn render(view: &View, http: &HttpCounts) -> String {
    let c = &view.counts;
    let mut o = Out {
        s: String::with_capacity(16 * 1024),
    };
    o.one(&TICKS_RECEIVED, c.received);
    o.one(&TICKS_PUBLISHED, c.published);
    o.one(&TICKS_PARKED, c.parked);
    o.header(&TICKS_DROPPED);
    let d = &c.dropped_by_reason;
    for (r, v) in [
        ("ring_full", d.ring_full),
        ("spool_full", d.spool_full),
        ("spool_error", d.spool_error),
    ] {
        o.sample(&TICKS_DROPPED, &[r], v);
    }
    render_tiers(&mut o, &c.tiers);
    o.header(&SEND_FAILURES);
    let f = &c.failures;
    for (r, v) in [
        ("producer_queue_full", f.producer_queue_full),
        ("produce_error", f.produce_error),
        ("delivery_failed", f.delivery_failed),
        ("unflushed_at_exit", f.unflushed_at_exit),
    ] {
        o.sample(&SEND_FAILURES, &[r], v);
    }
    o.header(&MALFORMED_MESSAGES);
    for (r, v) in c.malformed_by_reason() {
        o.sample(&MALFORMED_MESSAGES, &[r], v);
    }
    o.one(&UNKNOWN_PACKETS, c.unknown_packets);
    let conns: Vec<String> = (0..c.connections.len()).map(|i| i.to_string()).collect();
    type ConnGet = fn(&crate::engine::ConnCounts) -> f64;
    let per_conn: [(&Family, ConnGet); 8] = [
        (&MESSAGES, |x| x.messages as f64),
        (&HEARTBEATS, |x| x.heartbeats as f64),
        (&CONNECTION_ATTEMPTS, |x| x.attempts as f64),
        (&DISCONNECTED_SECONDS, |x| x.disconnected_ms as f64 / 1000.0),
        (&SERVER_ERROR_FRAMES, |x| x.server_errors as f64),
        (&BLOCKED_SECONDS, |x| x.blocked_ms as f64 / 1000.0),
        (&BLOCK_STALLS, |x| x.block_stalls as f64),
        (&BLOCK_TIMEOUTS, |x| x.block_timeouts as f64),
    ];
    for (family, get) in per_conn {
        o.header(family);
        for (i, x) in c.connections.iter().enumerate() {
            o.sample(family, &[&conns[i]], get(x));
        }
    }
    o.header(&RECONNECTIONS);
    for (i, x) in c.connections.iter().enumerate() {
        for (r, v) in &x.reconnects {
            o.sample(&RECONNECTIONS, &[&conns[i], r], v);
        }
    }
    o.one(&KAFKA_CLIENT_ERRORS, c.client_errors);
    o.one(&PRODUCER_FATAL_ERRORS, c.producer_fatal_errors);
    let pubs: Vec<String> = (0..c.publishers.len()).map(|i| i.to_string()).collect();
    o.header(&PRODUCER_QUEUE_FULL_WAITS);
    for (i, p) in c.publishers.iter().enumerate() {
        o.sample(&PRODUCER_QUEUE_FULL_WAITS, &[&pubs[i]], p.queue_full_waits);
    }
    o.one(&ACK_SAMPLES_DROPPED, c.ack_samples_dropped);
    let r = &view.redis;
    o.header(&REDIS_WRITES);
    o.sample(&REDIS_WRITES, &["ok"], r.writes_ok);
    o.sample(&REDIS_WRITES, &["error"], r.writes_error);
    o.one(&REDIS_CIRCUIT_OPEN_DROPS, r.circuit_open_drops);
    o.one(&THREAD_PANICS, view.thread_panics);
    o.header(&OPS_HTTP_REQUESTS);
    for (k, v) in CODE_LABELS.iter().zip(http.responses) {
        o.sample(&OPS_HTTP_REQUESTS, &[k], v);
    }
    o.one(&OPS_HTTP_CONNECTIONS_REFUSED, http.refused);
    o.one(&OPS_HTTP_DENIED, http.denied);
    let ctl = &view.control;
    o.header(&RELOADS);
    o.sample(&RELOADS, &["applied"], ctl.reloads_applied);
    o.sample(&RELOADS, &["rejected"], ctl.reloads_rejected);
    let s = &ctl.subscriptions;
    o.header(&SUBSCRIPTION_REQUESTS);
    o.sample(&SUBSCRIPTION_REQUESTS, &["accepted"], s.requests);
    o.sample(
        &SUBSCRIPTION_REQUESTS,
        &["queue_full"],
        s.rejected_queue_full,
    );
    o.sample(&SUBSCRIPTION_REQUESTS, &["invalid"], s.rejected_invalid);
    o.one(&SUBSCRIPTION_APPLICATIONS, s.applications);
    o.header(&ORDER_POSTBACKS);
    let od = &c.orders;
    for (r, v) in [
        ("received", od.received),
        ("published", od.published),
        ("parked", od.parked),
        ("dropped", od.dropped),
    ] {
        o.sample(&ORDER_POSTBACKS, &[r], v);
    }
    let b = c.bars.unwrap_or_default();
    o.header(&BARS);
    for (r, v) in [
        ("built", b.built),
        ("published", b.published),
        ("parked", b.parked),
        ("dropped", b.dropped),
    ] {
        o.sample(&BARS, &[r], v);
    }
    o.header(&BAR_TICKS_SKIPPED);
    for (r, v) in [
        ("late", b.late_ticks),
        ("closed_market", b.closed_market_ticks),
        ("unpriced", b.unpriced_ticks),
        ("untracked", b.untracked_ticks),
        ("unclocked", b.unclocked_ticks),
    ] {
        o.sample(&BAR_TICKS_SKIPPED, &[r], v);
    }
    o.one(&BARS_HANDOFF_DROPPED, b.handoff_dropped);
    o.one(&PACKETS_AFTER_UNSUBSCRIBE, c.after_unsubscribe);
    o.header(&POLICY_INFO);
    o.sample(&POLICY_INFO, &[&ctl.policy_version.to_string()], 1);
    o.header(&UNIVERSE_INFO);
    if let Some(u) = &ctl.universe {
        o.sample(&UNIVERSE_INFO, &[&u.version, &u.source], 1);
    }
    o.one(
        &UNIVERSE_INSTRUMENTS,
        ctl.universe.as_ref().map_or(0, |u| u.rows),
    );

    // Gauges.
    o.one(&RUNNING, u8::from(view.running));
    o.one(&HEALTH_STATUS, view.health.status as u8);
    o.one(&IN_FLIGHT_TICKS, c.in_flight);
    type PubGet = fn(&crate::engine::PublisherCountsOut) -> f64;
    let per_pub: [(&Family, PubGet); 5] = [
        (&RING_FILL_RATIO, |p| {
            p.ring_len as f64 / p.ring_capacity.max(1) as f64
        }),
        (&RING_LEN, |p| p.ring_len as f64),
        (&RING_CAPACITY, |p| p.ring_capacity as f64),
        (&RING_BYTES, |p| p.ring_bytes as f64),
        (&PRODUCER_QUEUE_DEPTH, |p| p.producer_queue as f64),
    ];
    for (family, get) in per_pub {
        o.header(family);
        for (i, p) in c.publishers.iter().enumerate() {
            o.sample(family, &[&pubs[i]], get(p));
        }
    }
    o.header(&CONNECTION_UP);
    for (i, x) in c.connections.iter().enumerate() {
        o.sample(&CONNECTION_UP, &[&conns[i]], u8::from(x.state == "open"));
    }
    type AgeGet = fn(&crate::engine::ConnCounts) -> Option<u64>;
    let ages: [(&Family, AgeGet); 2] = [
        (&LAST_FRAME_AGE, |x| x.last_frame_age_ms),
        (&LAST_TICK_AGE, |x| x.last_tick_age_ms),
    ];
    for (family, get) in ages {
        o.header(family);
        for (i, x) in c.connections.iter().enumerate() {
            // No frame yet: the age is the uptime.
            let age = get(x).map_or(c.uptime_s, |ms| ms as f64 / 1000.0);
            o.sample(family, &[&conns[i]], age);
        }
    }
    o.one(&RECEIVE_RATE, view.receive_rate);
    o.one(&PUBLISH_RATE, view.publish_rate);
    o.one(&SPOOL_BYTES, c.spool_bytes);
    o.one(&REDIS_CIRCUIT_STATE, r.state_value);
    o.one(&EXPECTED_TICK_INTERVAL, view.expected_tick_interval_s);
    o.one(&UPTIME, c.uptime_s);
    o.one(&OPS_HTTP_OPEN_CONNECTIONS, http.open);
    o.header(&BUILD_INFO);
    o.sample(&BUILD_INFO, &[env!("CARGO_PKG_VERSION")], 1);
    render_slo(&mut o, &view.slo);
    o.histogram(&PRODUCE_LATENCY, &view.produce_latency);
    o.histogram(&ACK_LATENCY, &view.ack_latency);
    render_stream(&mut o, &view.stream.unwrap_or_default());
    o.s
}

mod parts;
use parts::{render_slo, render_stream, render_tiers};

#[cfg(test)]
mod tests {
    use super::super::{Buckets, View};
    use super::{FAMILIES, Family, Kind, METRIC_NAMES, render};
    use crate::config::OpsConfig;
    use crate::engine::{ConnCounts, PublisherCountsOut};
    use crate::ops::http::Counts;

    /// A view with every per-connection and per-publisher family populated,
    /// and a label value that needs escaping.
    fn populated() -> View {
        let mut v = View::starting(&OpsConfig::default());
        let c = &mut v.counts;
        c.received = 12345;
        c.malformed[1] = 9;
        c.uptime_s = 12.5;
        for i in 0..3u64 {
            let mut x = ConnCounts {
                state: if i == 1 { "open" } else { "backoff" },
                messages: 100 + i,
                last_frame_age_ms: (i != 2).then_some(250 * i),
                ..ConnCounts::default()
            };
            x.reconnects.insert("stale".into(), i);
            x.reconnects.insert("we\"ird\\\n".into(), 2);
            c.connections.push(x);
        }
        for i in 0..2u64 {
            c.publishers.push(PublisherCountsOut {
                ring_capacity: 1024,
                ring_len: 17 * i,
                ..PublisherCountsOut::default()
            });
        }
        let mut h = crate::engine::publish::latency_histogram();
        for n in [5_000u64, 70_000, 3_000_000, 900_000_000] {
            h.record(n).unwrap();
        }
        v.produce_latency = Buckets::of(&h);
        v.control.policy_version = 3;
        v.slo.interval = "30s".into();
        v.control.universe = Some(
            crate::control::Universe::new(&[(1, crate::tick::Mode::Full)], "file:/x \"y\"", 0, 1)
                .current()
                .clone(),
        );
        v
    }

    /// The label names of a sample line's `{...}` part.
    fn label_names(labels: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = labels;
        while let Some((name, after)) = rest.split_once("=\"") {
            names.push(name.trim_start_matches(',').to_owned());
            let mut escaped = false;
            let end = after
                .char_indices()
                .find(|&(_, ch)| {
                    let close = ch == '"' && !escaped;
                    escaped = ch == '\\' && !escaped;
                    close
                })
                .map(|(i, _)| i)
                .expect("closing quote");
            rest = &after[end + 1..];
        }
        names
    }

    #[test]
    fn every_declared_family_is_rendered_once_in_order_with_its_type_and_labels() {
        let counts = Counts {
            responses: [5, 1, 0],
            open: 1,
            refused: 2,
            denied: 0,
        };
        let out = render(&populated(), &counts);
        let mut rendered = Vec::new();
        let mut current: Option<&Family> = None;
        let mut samples = vec![0; FAMILIES.len()];
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                let i = FAMILIES.iter().position(|f| f.name == name).unwrap();
                assert_eq!(help, FAMILIES[i].help);
                rendered.push(name);
                current = Some(&FAMILIES[i]);
                continue;
            }
            let f = current.expect("a sample before any family");
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert_eq!(rest, format!("{} {}", f.name, f.kind.as_str()));
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let (name, labels) = series
                .split_once('{')
                .map_or((series, ""), |(n, l)| (n, l.strip_suffix('}').unwrap()));
            let labels = label_names(labels);
            if f.kind == Kind::Histogram {
                let suffix = name.strip_prefix(f.name).unwrap();
                let want: &[&str] = if suffix == "_bucket" { &["le"] } else { &[] };
                assert!(["_bucket", "_sum", "_count"].contains(&suffix), "{line}");
                assert_eq!(labels, want, "{line}");
            } else {
                assert_eq!(name, f.name, "{line}");
                assert_eq!(labels, f.labels, "{line}");
            }
            samples[FAMILIES.iter().position(|x| x == f).unwrap()] += 1;
        }
        assert_eq!(rendered, METRIC_NAMES, "rendered once each, in table order");
        for (f, n) in FAMILIES.iter().zip(samples) {
            assert!(n > 0, "{} has no sample", f.name);
        }
        assert!(out.contains("panda_feed_ops_http_connections_refused_total 2\n"));
        assert!(out.contains("panda_feed_ops_http_requests_total{code=\"2xx\"} 5\n"));
        assert!(out.contains(r#"reason="we\"ird\\\n"} 2"#), "{out}");
    }
}
