//! The engine end to end: mock exchange → network thread → rings →
//! publishers → Kafka (librdkafka's mock cluster) → a stock consumer.

mod util;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use panda_feed::Tick;
use panda_feed::engine::kafka::{EmbeddedBroker, KafkaConfig};
use panda_feed::engine::{Engine, EngineConfig, IdlePolicy, Secret};
use panda_feed::json::{JsonBuf, write_tick};
use panda_feed::mock::{MockConfig, MockExchange, default_instruments};
use panda_feed::wire::{self, Message};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use util::wait_for;

const TOPIC: &str = "market.ticks";
const PARTITIONS: i32 = 8;

/// One record as a consumer saw it.
#[derive(Debug, Clone)]
struct Record {
    partition: i32,
    key: String,
    value: String,
}

/// Reads `topic` from the beginning on a thread until `want` records arrived
/// or `timeout` passed.
fn consume(
    bootstrap: &str,
    want: usize,
    timeout: Duration,
) -> std::thread::JoinHandle<Vec<Record>> {
    let bootstrap = bootstrap.to_owned();
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "panda-feed-test")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::with_capacity(want);
        while out.len() < want && std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => out.push(Record {
                    partition: m.partition(),
                    key: String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap(),
                    value: String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
                }),
                Some(Err(e)) => panic!("consumer error: {e}"),
                None => {}
            }
        }
        out
    })
}

/// Every tick in a record file, in order, as (token, JSON of the tick).
fn recorded_ticks(path: &Path) -> Vec<(u32, String)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    let mut buf = JsonBuf::with_capacity(0);
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let msg = &rest[4..4 + len];
        rest = &rest[4 + len..];
        if let Ok(Message::Packets(p)) = wire::decode(msg) {
            for packet in p {
                let t = Tick::from_packet(&packet).expect("mock sends known kinds");
                buf.clear();
                write_tick(&t, &mut buf).unwrap();
                out.push((
                    t.token.0,
                    String::from_utf8(buf.as_bytes().to_vec()).unwrap(),
                ));
            }
        }
    }
    assert!(rest.is_empty(), "record file ends mid-record");
    out
}

fn engine_config(mock: &MockExchange, brokers: &str, n_instruments: usize) -> EngineConfig {
    EngineConfig {
        ws_url: mock.ws_url(),
        api_key: Secret::new("mock_api_key"),
        access_token: Secret::new("mock_access_token"),
        instruments: default_instruments(n_instruments)
            .iter()
            .map(|i| (i.token, i.mode.unwrap()))
            .collect(),
        publishers: 2,
        idle: IdlePolicy::Park,
        kafka: KafkaConfig {
            brokers: brokers.to_owned(),
            linger_ms: 2,
            ..KafkaConfig::default()
        },
        ..EngineConfig::default()
    }
}

#[test]
fn every_recorded_tick_reaches_kafka_exactly_once_in_order() {
    const TICKS: u64 = 100_000;
    const INSTRUMENTS: usize = 240;
    let dir = tempdir();
    let record = dir.join("sent.bin");
    let broker = EmbeddedBroker::start(1, TOPIC, PARTITIONS).unwrap();
    let mock = MockExchange::start(MockConfig {
        rate_per_s: 50_000,
        seed: 7,
        max_ticks: Some(TICKS),
        record: Some(record.clone()),
        ..MockConfig::default()
    })
    .unwrap();
    let consumer = consume(
        broker.bootstrap_servers(),
        TICKS as usize,
        Duration::from_secs(120),
    );
    let mut engine = Engine::start(engine_config(
        &mock,
        broker.bootstrap_servers(),
        INSTRUMENTS,
    ))
    .unwrap();
    assert!(
        wait_for(Duration::from_secs(120), || {
            let c = engine.counts();
            c.published == TICKS || c.dropped > 0
        }),
        "not all ticks published: {:?}",
        engine.counts()
    );
    let summary = engine.stop();
    let c = &summary.counts;
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(
        (c.received, c.published, c.dropped, c.in_flight),
        (TICKS, TICKS, 0, 0)
    );
    assert_eq!(c.malformed_total() + c.unknown_packets, 0);
    assert_eq!(mock.stats().sent_ticks.load(Ordering::SeqCst), TICKS);
    assert!(c.latency_ns.count == TICKS && c.latency_ns.p50 > 0);
    mock.stop();

    let records = consumer.join().unwrap();
    let sent = recorded_ticks(&record);
    assert_eq!(sent.len(), TICKS as usize);
    assert_eq!(records.len(), sent.len(), "records on the topic");

    // Expected per-instrument sequences, in send order.
    let mut want: HashMap<u32, Vec<&str>> = HashMap::new();
    for (tok, json) in &sent {
        want.entry(*tok).or_default().push(json);
    }
    assert!(want.len() >= 200, "only {} instruments ticked", want.len());
    let kinds: std::collections::HashSet<&str> = sent
        .iter()
        .filter_map(|(_, j)| j.split("\"mode\":\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(kinds.len(), 3, "modes {kinds:?}");

    // Records per instrument in topic order; each instrument on one partition.
    let mut got: HashMap<u32, Vec<String>> = HashMap::new();
    let mut partition_of: HashMap<u32, i32> = HashMap::new();
    let mut seqs = Vec::with_capacity(records.len());
    for r in &records {
        let env: serde_json::Value = serde_json::from_str(&r.value).expect("envelope is JSON");
        assert_eq!(env["type"], "market_tick");
        assert_eq!(env["source"], "kite");
        let tok = env["data"]["instrument_token"].as_u64().unwrap() as u32;
        assert_eq!(r.key, tok.to_string(), "key is the token in decimal");
        assert_eq!(*partition_of.entry(tok).or_insert(r.partition), r.partition);
        assert!(env["received_at"].as_str().unwrap().ends_with('Z'));
        assert!(env["recv_ns"].as_u64().unwrap() > 0);
        seqs.push(env["seq"].as_u64().unwrap());
        // The tick object, byte for byte as `decode` prints it.
        let data = &r.value[r.value.find(",\"data\":").unwrap() + 8..r.value.len() - 1];
        got.entry(tok).or_default().push(data.to_owned());
    }
    for (tok, w) in &want {
        let g = got.get(tok).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(g.len(), w.len(), "instrument {tok}: count");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert_eq!(
                a, b,
                "instrument {tok}: tick {i} differs or is out of order"
            );
        }
    }
    // One connection: sequence numbers are exactly 1..=N, each once.
    seqs.sort_unstable();
    assert!(
        seqs.iter().copied().eq(1..=TICKS),
        "seq is not 1..=N once each"
    );
}

#[test]
fn slow_publisher_drops_are_counted_exactly_and_reading_goes_on() {
    const TICKS: u64 = 20_000;
    let broker = EmbeddedBroker::start(1, TOPIC, PARTITIONS).unwrap();
    let mock = MockExchange::start(MockConfig {
        rate_per_s: 20_000,
        seed: 3,
        max_ticks: Some(TICKS),
        heartbeat: Duration::from_millis(50),
        ..MockConfig::default()
    })
    .unwrap();
    let mut cfg = engine_config(&mock, broker.bootstrap_servers(), 200);
    cfg.ring_capacity = 64;
    cfg.publish_chunk = 8;
    cfg.test_slow_publisher = Some((0, Duration::from_millis(200)));
    let mut engine = Engine::start(cfg).unwrap();

    let rss_mid = || util::rss_bytes();
    assert!(wait_for(Duration::from_secs(60), || engine
        .counts()
        .received
        >= TICKS / 2));
    let rss_at_half = rss_mid();
    assert!(wait_for(Duration::from_secs(60), || engine
        .counts()
        .received
        == TICKS));
    // Generation is over; the slow ring is still backed up, and the network
    // thread keeps reading: heartbeats arrive meanwhile.
    assert!(wait_for(Duration::from_secs(10), || engine
        .counts()
        .heartbeats
        >= 5));
    let c = engine.counts();
    assert!(
        c.publishers[0].ring_len > 0,
        "slow ring drained too early: {c:?}"
    );
    assert!(c.connections[0].last_frame_age_ms.unwrap() < 1000);
    let rss_at_end = rss_mid();
    assert!(
        rss_at_end < rss_at_half + 16 * 1024 * 1024,
        "RSS grew from {rss_at_half} to {rss_at_end} under overload"
    );

    let summary = engine.stop();
    let c = &summary.counts;
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(c.received, TICKS);
    assert_eq!(c.in_flight, 0);
    assert_eq!(
        c.received,
        c.published + c.dropped,
        "offered = published + dropped"
    );
    assert_eq!(c.dropped, c.dropped_by_reason.ring_full);
    assert!(
        c.publishers[0].dropped_ring_full > 0,
        "the slow ring dropped nothing"
    );
    assert_eq!(
        c.publishers[1].dropped_ring_full, 0,
        "the fast ring dropped"
    );
    assert_eq!(
        c.publishers[0].pushed + c.publishers[0].dropped_ring_full + c.publishers[1].pushed,
        TICKS
    );
}

#[test]
fn wrong_token_is_a_clear_error_not_a_crash() {
    let broker = EmbeddedBroker::start(1, TOPIC, 1).unwrap();
    let mock = MockExchange::start(MockConfig::default()).unwrap();
    let mut cfg = engine_config(&mock, broker.bootstrap_servers(), 10);
    cfg.access_token = Secret::new("expired_token");
    let mut engine = Engine::start(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(20), || engine.all_connections_down()));
    let c = engine.counts();
    let err = c.connections[0].error.clone().unwrap();
    assert!(
        err.contains("HTTP 403") && err.contains("access token"),
        "{err}"
    );
    assert!(!err.contains("expired_token"), "the token leaked: {err}");
    assert_eq!(c.connections[0].state, "failed");
    let summary = engine.stop();
    assert!(summary.identity_holds);
    assert_eq!(summary.counts.received, 0);
    assert_eq!(mock.stats().rejected_403.load(Ordering::SeqCst), 1);
}

#[test]
fn seven_thousand_instruments_use_three_connections_that_all_stream() {
    let broker = EmbeddedBroker::start(1, TOPIC, PARTITIONS).unwrap();
    let mock = MockExchange::start(MockConfig {
        rate_per_s: 30_000,
        ..MockConfig::default()
    })
    .unwrap();
    let mut engine = Engine::start(engine_config(&mock, broker.bootstrap_servers(), 7000)).unwrap();
    assert!(
        wait_for(Duration::from_secs(60), || {
            let c = engine.counts();
            c.connections.len() == 3 && c.connections.iter().all(|x| x.ticks > 0)
        }),
        "{:?}",
        engine.counts().connections
    );
    let subs = mock.subscriptions();
    assert_eq!(subs.len(), 3);
    assert!(
        subs.iter().all(|s| !s.is_empty() && s.len() <= 3000),
        "{:?}",
        subs.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(subs.iter().map(Vec::len).sum::<usize>(), 7000);
    let summary = engine.stop();
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(summary.counts.dropped, 0);
    assert!(summary.counts.published > 0);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "panda-feed-test-{}-{}",
        std::process::id(),
        panda_feed::engine::now_ns()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn wss_to_a_plain_server_fails_cleanly_with_tls_in_the_reason() {
    // The TLS path runs (a crypto provider is installed: no panic), and a
    // server that does not speak TLS is a clear connection error.
    let broker = EmbeddedBroker::start(1, TOPIC, 1).unwrap();
    let mock = MockExchange::start(MockConfig::default()).unwrap();
    let mut cfg = engine_config(&mock, broker.bootstrap_servers(), 10);
    cfg.ws_url = format!("wss://{}/", mock.addr());
    let mut engine = Engine::start(cfg).unwrap();
    assert!(wait_for(Duration::from_secs(20), || engine.all_connections_down()));
    let err = engine.counts().connections[0].error.clone().unwrap();
    assert!(
        err.contains("wss://127.0.0.1") && err.to_lowercase().contains("tls"),
        "{err}"
    );
    let summary = engine.stop();
    assert!(summary.identity_holds && summary.thread_errors.is_empty());
}
