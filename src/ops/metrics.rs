//! `GET /metrics`: Prometheus text exposition format 0.0.4. Every family has
//! `# HELP` and `# TYPE` lines; every name starts with `panda_feed_`.

use std::fmt::Write as _;

use super::{Buckets, View};

/// Every metric family exported, documented in the README.
pub const METRIC_NAMES: &[&str] = &[
    "panda_feed_ticks_received_total",
    "panda_feed_ticks_published_total",
    "panda_feed_ticks_parked_total",
    "panda_feed_ticks_dropped_total",
    "panda_feed_send_failures_total",
    "panda_feed_malformed_messages_total",
    "panda_feed_unknown_packets_total",
    "panda_feed_messages_total",
    "panda_feed_heartbeats_total",
    "panda_feed_reconnections_total",
    "panda_feed_connection_attempts_total",
    "panda_feed_disconnected_seconds_total",
    "panda_feed_server_error_frames_total",
    "panda_feed_kafka_client_errors_total",
    "panda_feed_producer_queue_full_waits_total",
    "panda_feed_ack_samples_dropped_total",
    "panda_feed_redis_writes_total",
    "panda_feed_redis_circuit_open_drops_total",
    "panda_feed_thread_panics_total",
    "panda_feed_ops_http_requests_total",
    "panda_feed_running",
    "panda_feed_health_status",
    "panda_feed_in_flight_ticks",
    "panda_feed_ring_fill_ratio",
    "panda_feed_ring_len",
    "panda_feed_ring_capacity",
    "panda_feed_producer_queue_depth",
    "panda_feed_connection_up",
    "panda_feed_last_frame_age_seconds",
    "panda_feed_last_tick_age_seconds",
    "panda_feed_receive_rate_ticks_per_second",
    "panda_feed_publish_rate_ticks_per_second",
    "panda_feed_spool_bytes",
    "panda_feed_redis_circuit_state",
    "panda_feed_expected_tick_interval_seconds",
    "panda_feed_uptime_seconds",
    "panda_feed_build_info",
    "panda_feed_produce_latency_seconds",
    "panda_feed_ack_latency_seconds",
];

struct Out {
    s: String,
}

impl Out {
    fn family(&mut self, name: &str, typ: &str, help: &str) {
        debug_assert!(METRIC_NAMES.contains(&name), "{name}");
        let _ = writeln!(self.s, "# HELP {name} {help}");
        let _ = writeln!(self.s, "# TYPE {name} {typ}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                let _ = write!(self.s, "{k}=\"{}\"", escape(val));
            }
            self.s.push('}');
        }
        let _ = writeln!(self.s, " {v}");
    }

    fn one(&mut self, name: &str, typ: &str, help: &str, v: impl std::fmt::Display) {
        self.family(name, typ, help);
        self.sample(name, &[], v);
    }

    fn histogram(&mut self, name: &str, help: &str, b: &Buckets) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (le, n) in &b.le {
            self.sample(&bucket, &[("le", &le.to_string())], n);
        }
        self.sample(&bucket, &[("le", "+Inf")], b.count);
        self.sample(&format!("{name}_sum"), &[], b.sum_s);
        self.sample(&format!("{name}_count"), &[], b.count);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders `view`, with the HTTP response counters `http`.
#[must_use]
#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
pub fn render(view: &View, http: &[(&str, u64)]) -> String {
    let c = &view.counts;
    let mut o = Out {
        s: String::with_capacity(16 * 1024),
    };
    o.one(
        "panda_feed_ticks_received_total",
        "counter",
        "Ticks decoded from market-data messages.",
        c.received,
    );
    o.one(
        "panda_feed_ticks_published_total",
        "counter",
        "Ticks whose delivery Kafka confirmed.",
        c.published,
    );
    o.one(
        "panda_feed_ticks_parked_total",
        "counter",
        "Ticks parked in the dead-letter spool.",
        c.parked,
    );
    o.family(
        "panda_feed_ticks_dropped_total",
        "counter",
        "Ticks dropped, by reason.",
    );
    let d = &c.dropped_by_reason;
    for (r, v) in [
        ("ring_full", d.ring_full),
        ("spool_full", d.spool_full),
        ("spool_error", d.spool_error),
    ] {
        o.sample("panda_feed_ticks_dropped_total", &[("reason", r)], v);
    }
    o.family(
        "panda_feed_send_failures_total",
        "counter",
        "Records Kafka did not take, by cause (each parked or dropped).",
    );
    let f = &c.failures;
    for (r, v) in [
        ("producer_queue_full", f.producer_queue_full),
        ("produce_error", f.produce_error),
        ("delivery_failed", f.delivery_failed),
        ("unflushed_at_exit", f.unflushed_at_exit),
    ] {
        o.sample("panda_feed_send_failures_total", &[("cause", r)], v);
    }
    o.family(
        "panda_feed_malformed_messages_total",
        "counter",
        "Malformed binary messages, by reason (the whole message is skipped).",
    );
    for (r, v) in c.malformed_by_reason() {
        o.sample("panda_feed_malformed_messages_total", &[("reason", r)], v);
    }
    o.one(
        "panda_feed_unknown_packets_total",
        "counter",
        "Packets of an unknown length, skipped.",
        c.unknown_packets,
    );
    let conns: Vec<String> = (0..c.connections.len()).map(|i| i.to_string()).collect();
    type ConnGet = fn(&crate::engine::ConnCounts) -> f64;
    let per_conn: [(&str, &str, &str, ConnGet); 5] = [
        (
            "panda_feed_messages_total",
            "counter",
            "Market-data messages, per connection.",
            |x| x.messages as f64,
        ),
        (
            "panda_feed_heartbeats_total",
            "counter",
            "Heartbeats, per connection.",
            |x| x.heartbeats as f64,
        ),
        (
            "panda_feed_connection_attempts_total",
            "counter",
            "Connection attempts (the first included), per connection.",
            |x| x.attempts as f64,
        ),
        (
            "panda_feed_disconnected_seconds_total",
            "counter",
            "Time spent not open after the first open, per connection.",
            |x| x.disconnected_ms as f64 / 1000.0,
        ),
        (
            "panda_feed_server_error_frames_total",
            "counter",
            "Text error frames from the server, per connection.",
            |x| x.server_errors as f64,
        ),
    ];
    for (name, typ, help, get) in per_conn {
        o.family(name, typ, help);
        for (i, x) in c.connections.iter().enumerate() {
            o.sample(name, &[("connection", &conns[i])], get(x));
        }
    }
    o.family(
        "panda_feed_reconnections_total",
        "counter",
        "Times a connection went down (and reconnected), by reason.",
    );
    for (i, x) in c.connections.iter().enumerate() {
        for (r, v) in &x.reconnects {
            o.sample(
                "panda_feed_reconnections_total",
                &[("connection", &conns[i]), ("reason", r)],
                v,
            );
        }
    }
    o.one(
        "panda_feed_kafka_client_errors_total",
        "counter",
        "Client-level errors librdkafka reported (e.g. all brokers down).",
        c.client_errors,
    );
    let pubs: Vec<String> = (0..c.publishers.len()).map(|i| i.to_string()).collect();
    o.family(
        "panda_feed_producer_queue_full_waits_total",
        "counter",
        "Waits for room in a full producer queue, per publisher.",
    );
    for (i, p) in c.publishers.iter().enumerate() {
        o.sample(
            "panda_feed_producer_queue_full_waits_total",
            &[("publisher", &pubs[i])],
            p.queue_full_waits,
        );
    }
    o.one(
        "panda_feed_ack_samples_dropped_total",
        "counter",
        "Ack-latency samples lost to a full sample buffer (samples, not ticks).",
        c.ack_samples_dropped,
    );
    let r = &view.redis;
    o.family(
        "panda_feed_redis_writes_total",
        "counter",
        "Redis pipeline writes attempted, by result.",
    );
    o.sample(
        "panda_feed_redis_writes_total",
        &[("result", "ok")],
        r.writes_ok,
    );
    o.sample(
        "panda_feed_redis_writes_total",
        &[("result", "error")],
        r.writes_error,
    );
    o.one(
        "panda_feed_redis_circuit_open_drops_total",
        "counter",
        "Redis pipeline writes dropped because the circuit was open.",
        r.circuit_open_drops,
    );
    o.one(
        "panda_feed_thread_panics_total",
        "counter",
        "Engine threads that panicked.",
        view.thread_panics,
    );
    o.family(
        "panda_feed_ops_http_requests_total",
        "counter",
        "Ops HTTP responses, by status class.",
    );
    for (k, v) in http {
        o.sample("panda_feed_ops_http_requests_total", &[("code", k)], v);
    }

    // Gauges.
    o.one(
        "panda_feed_running",
        "gauge",
        "1 while the engine runs and is not stopping.",
        u8::from(view.running),
    );
    o.one(
        "panda_feed_health_status",
        "gauge",
        "Health: 0 healthy, 1 degraded, 2 unhealthy (reasons at /health).",
        view.health.status as u8,
    );
    o.one(
        "panda_feed_in_flight_ticks",
        "gauge",
        "Ticks in a ring, a publisher or the producer queue.",
        c.in_flight,
    );
    type PubGet = fn(&crate::engine::PublisherCountsOut) -> f64;
    let per_pub: [(&str, &str, PubGet); 4] = [
        (
            "panda_feed_ring_fill_ratio",
            "Fill of a publisher ring, 0..1.",
            |p| p.ring_len as f64 / p.ring_capacity.max(1) as f64,
        ),
        ("panda_feed_ring_len", "Ticks in a publisher ring.", |p| {
            p.ring_len as f64
        }),
        (
            "panda_feed_ring_capacity",
            "Slots of a publisher ring.",
            |p| p.ring_capacity as f64,
        ),
        (
            "panda_feed_producer_queue_depth",
            "Records in a publisher's Kafka producer awaiting a delivery report.",
            |p| p.producer_queue as f64,
        ),
    ];
    for (name, help, get) in per_pub {
        o.family(name, "gauge", help);
        for (i, p) in c.publishers.iter().enumerate() {
            o.sample(name, &[("publisher", &pubs[i])], get(p));
        }
    }
    o.family(
        "panda_feed_connection_up",
        "gauge",
        "1 while a connection is open (streaming).",
    );
    for (i, x) in c.connections.iter().enumerate() {
        o.sample(
            "panda_feed_connection_up",
            &[("connection", &conns[i])],
            u8::from(x.state == "open"),
        );
    }
    type AgeGet = fn(&crate::engine::ConnCounts) -> Option<u64>;
    let ages: [(&str, &str, AgeGet); 2] = [
        (
            "panda_feed_last_frame_age_seconds",
            "Time since the last frame of any kind (heartbeats included), per connection.",
            |x| x.last_frame_age_ms,
        ),
        (
            "panda_feed_last_tick_age_seconds",
            "Time since the last market-data message with ticks, per connection.",
            |x| x.last_tick_age_ms,
        ),
    ];
    for (name, help, get) in ages {
        o.family(name, "gauge", help);
        for (i, x) in c.connections.iter().enumerate() {
            // No frame yet: the age is the uptime.
            let age = get(x).map_or(c.uptime_s, |ms| ms as f64 / 1000.0);
            o.sample(name, &[("connection", &conns[i])], age);
        }
    }
    o.one(
        "panda_feed_receive_rate_ticks_per_second",
        "gauge",
        "Ticks received per second over the last sample interval.",
        view.receive_rate,
    );
    o.one(
        "panda_feed_publish_rate_ticks_per_second",
        "gauge",
        "Ticks published per second over the last sample interval.",
        view.publish_rate,
    );
    o.one(
        "panda_feed_spool_bytes",
        "gauge",
        "Bytes in the dead-letter spool.",
        c.spool_bytes,
    );
    o.one(
        "panda_feed_redis_circuit_state",
        "gauge",
        "Redis circuit breaker: 0 closed, 1 open, 2 half-open.",
        r.state_value,
    );
    o.one(
        "panda_feed_expected_tick_interval_seconds",
        "gauge",
        "ops.expected_tick_interval_ms, for the tick-age alert.",
        view.expected_tick_interval_s,
    );
    o.one(
        "panda_feed_uptime_seconds",
        "gauge",
        "Seconds since the engine started.",
        c.uptime_s,
    );
    o.family(
        "panda_feed_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    o.sample(
        "panda_feed_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    o.histogram(
        "panda_feed_produce_latency_seconds",
        "Latency from receive to the produce call, since start.",
        &view.produce_latency,
    );
    o.histogram(
        "panda_feed_ack_latency_seconds",
        "Latency from receive to the broker's acknowledgement (delivery report), since start.",
        &view.ack_latency,
    );
    o.s
}
