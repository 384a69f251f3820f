//! `[kafka]`: the producer settings, their validation and the librdkafka
//! configuration built from them. Read on the main thread at start-up; the
//! publishers receive the built producer.

use std::collections::BTreeMap;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

use super::defaults;

/// Kafka producer settings (`[kafka]` in the config file). `Debug` shows the
/// keys of `extra` but not their values (they may be passwords).
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`; empty with `run --mock` starts the embedded broker.
    pub brokers: String,
    /// Topic every tick is published to.
    pub topic: String,
    /// `linger.ms`: how long librdkafka waits to fill a batch.
    pub linger_ms: u32,
    /// `batch.size` in bytes.
    pub batch_size: u32,
    /// `compression.type`: none, gzip, snappy or lz4. `none` by default: on
    /// a feed host next to its brokers it is the cheapest in CPU (lz4 cost
    /// 34 % more CPU per tick; README "Performance", "Compression").
    pub compression: String,
    /// `message.timeout.ms`: a record not delivered by then fails.
    pub message_timeout_ms: u32,
    /// `queue.buffering.max.messages`: the producer queue bound.
    pub queue_max_messages: u32,
    /// Longest a publisher waits (polling) for room in a full producer queue
    /// before dropping the tick as `producer_queue_full`, in milliseconds.
    pub queue_full_wait_ms: u32,
    /// Longest the shutdown flush waits for delivery reports, in milliseconds.
    pub flush_timeout_ms: u32,
    /// Extra librdkafka properties, applied last (e.g. `"security.protocol" = "SSL"`).
    pub extra: BTreeMap<String, String>,
    /// Topic of order postbacks (Kite's `order` text frames), keyed by
    /// order id; empty = not published (only counted).
    pub orders_topic: String,
    /// Where the publishers' records go: `kafka`, or `blackhole` (encoded,
    /// then discarded and counted as published at once: the engine's own
    /// cost, without a broker; README "Performance").
    pub sink: String,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            topic: defaults::TOPIC.into(),
            linger_ms: 5,
            batch_size: 1_000_000,
            compression: "none".into(),
            message_timeout_ms: 30_000,
            queue_max_messages: 500_000,
            queue_full_wait_ms: 5_000,
            flush_timeout_ms: 10_000,
            extra: BTreeMap::new(),
            orders_topic: defaults::ORDERS_TOPIC.into(),
            sink: "kafka".into(),
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("linger_ms", &self.linger_ms)
            .field("batch_size", &self.batch_size)
            .field("compression", &self.compression)
            .field("message_timeout_ms", &self.message_timeout_ms)
            .field("queue_max_messages", &self.queue_max_messages)
            .field("extra_keys", &self.extra.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KafkaConfig {
    /// `msg` with the value of every `extra` property replaced by
    /// `<redacted>`: librdkafka echoes rejected values, and `extra` is where
    /// SASL/SSL passwords live.
    #[must_use]
    pub fn redact(&self, msg: &str) -> String {
        let mut out = msg.to_owned();
        for v in self.extra.values().filter(|v| v.len() >= 3) {
            out = out.replace(v.as_str(), "<redacted>");
        }
        out
    }

    /// Problems with the settings, each naming the value and the fix.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for k in self.extra.keys() {
            if matches!(
                k.as_str(),
                "delivery.report.only.error" | "enable.idempotence" | "acks" | "bootstrap.servers"
            ) {
                p.push(format!(
                    "kafka.extra.\"{k}\" cannot be overridden: the accounting needs every \
                     delivery report, idempotence and acks=all (use kafka.brokers for the brokers)"
                ));
            }
        }
        if self.topic.is_empty() || self.topic.contains('\0') {
            p.push(format!(
                "kafka.topic {:?} is not a topic name; use e.g. \"{}\"",
                self.topic,
                defaults::TOPIC
            ));
        }
        if !["kafka", "blackhole"].contains(&self.sink.as_str()) {
            p.push(format!(
                "kafka.sink {:?} is not kafka or blackhole (blackhole discards every record: \
                 for measuring the engine alone)",
                self.sink
            ));
        }
        if !["none", "gzip", "snappy", "lz4"].contains(&self.compression.as_str()) {
            p.push(format!(
                "kafka.compression {:?} is not one of none, gzip, snappy, lz4",
                self.compression
            ));
        }
        for (k, v) in [
            ("kafka.linger_ms", self.linger_ms),
            ("kafka.batch_size", self.batch_size),
            ("kafka.message_timeout_ms", self.message_timeout_ms),
            ("kafka.queue_max_messages", self.queue_max_messages),
            ("kafka.queue_full_wait_ms", self.queue_full_wait_ms),
            ("kafka.flush_timeout_ms", self.flush_timeout_ms),
        ] {
            super::ranges::check(&mut p, k, v);
        }
        p
    }

    /// The librdkafka configuration of one publisher's producer.
    #[must_use]
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", self.batch_size.to_string())
            .set("compression.type", &self.compression)
            .set("message.timeout.ms", self.message_timeout_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                self.queue_max_messages.to_string(),
            )
            .set_log_level(RDKafkaLogLevel::Warning);
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}
