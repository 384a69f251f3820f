//! The engine end to end: mock exchange → network thread → rings →
//! publishers → Kafka (librdkafka's mock cluster) → a stock consumer.

mod util;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use panda_feed::Tick;
use panda_feed::json::{JsonBuf, write_tick};
use panda_feed::secret::Secret;
use panda_feed::wire::{self, Message};
use util::kafka::{Consumer, Record};
use util::stack::{PARTITIONS, TOPIC};
use util::{Stack, holds_for, wait_until};

/// Every tick in a record file, in order, as (token, JSON of the tick).
fn recorded_ticks(path: &Path) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut buf = JsonBuf::with_capacity(0);
    for msg in util::read_framed(path) {
        if let Ok(Message::Packets(p)) = wire::decode(&msg) {
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
    out
}

/// The topic holds exactly the ticks of the record file: each once, with
/// identical data, in order per instrument, keyed by token, each instrument
/// on one partition; `(conn, seq)` pairs are unique. Returns the number of
/// distinct instruments.
fn assert_topic_holds_the_recording(
    records: &[Record],
    record: &Path,
    ticks: u64,
    min_instruments: usize,
) {
    let sent = recorded_ticks(record);
    assert_eq!(sent.len() as u64, ticks, "ticks in the recording");
    assert_eq!(records.len(), sent.len(), "records on the topic");

    // Expected per-instrument sequences, in send order.
    let mut want: HashMap<u32, Vec<&str>> = HashMap::new();
    for (tok, json) in &sent {
        want.entry(*tok).or_default().push(json);
    }
    assert!(
        want.len() >= min_instruments,
        "only {} instruments ticked",
        want.len()
    );
    let kinds: std::collections::HashSet<&str> = sent
        .iter()
        .filter_map(|(_, j)| j.split("\"mode\":\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(kinds.len(), 3, "modes {kinds:?}");

    let mut got: HashMap<u32, Vec<String>> = HashMap::new();
    let mut partition_of: HashMap<u32, i32> = HashMap::new();
    let mut ids = std::collections::HashSet::with_capacity(records.len());
    for r in records {
        let env = r.envelope();
        assert_eq!(env["type"], "market_tick");
        assert_eq!(env["source"], "kite");
        let tok = env["data"]["instrument_token"].as_u64().unwrap() as u32;
        assert_eq!(r.key, tok.to_string(), "key is the token in decimal");
        assert_eq!(*partition_of.entry(tok).or_insert(r.partition), r.partition);
        assert!(env["received_at"].as_str().unwrap().ends_with('Z'));
        assert!(env["recv_ns"].as_u64().unwrap() > 0);
        let id = (env["conn"].as_u64().unwrap(), env["seq"].as_u64().unwrap());
        assert!(ids.insert(id), "(conn, seq) {id:?} twice");
        // The tick object, byte for byte as `decode` prints it.
        got.entry(tok).or_default().push(r.data_text().to_owned());
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
}

#[test]
fn every_recorded_tick_reaches_kafka_exactly_once_in_order() {
    const TICKS: u64 = 100_000;
    let mut s = Stack::builder()
        .mock(|m| {
            m.rate_per_s = 50_000;
            m.seed = 7;
            m.max_ticks = Some(TICKS);
        })
        .record()
        .instruments(240)
        .start();
    let (record, consumer) = (s.record(), s.consume());
    assert!(
        wait_until(Duration::from_secs(120), || {
            let c = s.engine.counts();
            c.published == TICKS || c.dropped > 0
        }),
        "not all ticks published: {:?}",
        s.engine.counts()
    );
    let summary = s.engine.stop();
    let c = &summary.counts;
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(
        (c.received, c.published, c.dropped, c.in_flight),
        (TICKS, TICKS, 0, 0)
    );
    assert_eq!(c.malformed_total() + c.unknown_packets, 0);
    assert_eq!(s.mock.stats().sent_ticks.load(Ordering::SeqCst), TICKS);
    assert!(c.latency_ns.count == TICKS && c.latency_ns.p50 > 0);
    assert_eq!(c.connections[0].attempts, 1);
    s.mock.stop();

    let records = consumer.join(TICKS);
    assert_topic_holds_the_recording(&records, &record, TICKS, 200);
}

#[cfg(feature = "test-hooks")]
#[test]
fn slow_publisher_drops_are_counted_exactly_and_reading_goes_on() {
    const TICKS: u64 = 20_000;
    let mut s = Stack::builder()
        .mock(|m| {
            m.rate_per_s = 20_000;
            m.seed = 3;
            m.max_ticks = Some(TICKS);
            m.heartbeat = Duration::from_millis(50);
        })
        .instruments(200)
        .engine(|c| {
            // Room for 0.4 s of the fast publisher's share, so a scheduler
            // stall on this 2-core machine does not drop there; the slow
            // publisher (256 ticks per 200 ms: 1,280/s against its 10,000/s
            // share) still overflows, and drains in ~3 s at stop.
            c.ring_capacity = 4096;
            c.publish_chunk = 256;
            c.test_slow_publisher = Some((0, Duration::from_millis(200)));
            // The policy under test (`block`, the default, is tests/overflow.rs).
            c.overflow = panda_feed::config::Overflow::DropNewest;
        })
        .start();
    let engine = &mut s.engine;

    assert!(wait_until(Duration::from_secs(60), || engine
        .counts()
        .received
        >= TICKS / 2));
    let rss_at_half = util::rss_bytes();
    assert!(wait_until(Duration::from_secs(60), || engine
        .counts()
        .received
        == TICKS));
    // Generation is over; the slow ring is still backed up, and the network
    // thread keeps reading: heartbeats arrive meanwhile.
    assert!(wait_until(Duration::from_secs(10), || engine
        .counts()
        .heartbeats
        >= 5));
    let c = engine.counts();
    assert!(
        c.publishers[0].ring_len > 0,
        "slow ring drained too early: {c:?}"
    );
    assert!(c.connections[0].last_frame_age_ms.unwrap() < 1000);
    let rss_at_end = util::rss_bytes();
    assert!(
        rss_at_end < rss_at_half + 16 * 1024 * 1024,
        "RSS grew from {rss_at_half} to {rss_at_end} under overload"
    );

    let summary = s.engine.stop();
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
fn wrong_token_waits_for_a_new_token_then_recovers() {
    let mut s = Stack::builder()
        .partitions(1)
        .instruments(10)
        .engine(|c| {
            c.access_token = Secret::new("expired_token");
            c.supervision.backoff_base = Duration::from_millis(10);
        })
        .start();
    let engine = &mut s.engine;
    assert!(wait_until(Duration::from_secs(20), || engine
        .counts()
        .connections[0]
        .state
        == "auth_failed"));
    let c = engine.counts();
    let err = c.connections[0].error.clone().unwrap();
    assert!(
        err.contains("HTTP 403") && err.contains("access token"),
        "{err}"
    );
    assert!(!err.contains("expired_token"), "the token leaked: {err}");
    assert!(!format!("{c:?}").contains("expired_token"));
    // No retry storm: over an observation window far longer than the
    // backoff, the refused connection is not retried.
    let not_retried = holds_for(Duration::from_millis(1500), || {
        engine.counts().connections[0].attempts == 1
    });
    assert!(not_retried, "retried: {:?}", engine.counts().connections[0]);
    assert_eq!(engine.counts().connections[0].attempts, 1);
    assert_eq!(s.mock.stats().rejected_403.load(Ordering::SeqCst), 1);
    // The day's token arrives: it reconnects at once and streams.
    assert!(engine.set_access_token(Secret::new("mock_access_token")));
    assert!(wait_until(Duration::from_secs(20), || engine
        .counts()
        .received
        > 0));
    let c = engine.counts();
    assert_eq!(
        (c.connections[0].state, c.connections[0].attempts),
        ("open", 2)
    );
    assert_eq!(c.connections[0].reconnects["http_403"], 1);
    let summary = s.engine.stop();
    assert!(summary.identity_holds);
}

#[test]
fn seven_thousand_instruments_use_three_connections_that_all_stream() {
    let mut s = Stack::builder()
        .mock(|m| m.rate_per_s = 30_000)
        .instruments(7000)
        .start();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let c = s.engine.counts();
            c.connections.len() == 3 && c.connections.iter().all(|x| x.ticks > 0)
        }),
        "{:?}",
        s.engine.counts().connections
    );
    let subs = s.mock.subscriptions();
    assert_eq!(subs.len(), 3);
    assert!(
        subs.iter().all(|s| !s.is_empty() && s.len() <= 3000),
        "{:?}",
        subs.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(subs.iter().map(Vec::len).sum::<usize>(), 7000);
    let summary = s.engine.stop();
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(summary.counts.dropped, 0);
    assert!(summary.counts.published > 0);
}

#[test]
fn wss_to_a_plain_server_fails_cleanly_with_tls_in_the_reason() {
    // The TLS path runs (a crypto provider is installed: no panic), and a
    // server that does not speak TLS is a clear connection error.
    let mut s = Stack::builder()
        .partitions(1)
        .instruments(10)
        .engine(|c| c.ws_url = c.ws_url.replacen("ws://", "wss://", 1))
        .start();
    assert!(wait_until(Duration::from_secs(20), || s
        .engine
        .counts()
        .connections[0]
        .error
        .is_some()));
    let err = s.engine.counts().connections[0].error.clone().unwrap();
    assert!(
        err.contains("wss://127.0.0.1") && err.to_lowercase().contains("tls"),
        "{err}"
    );
    let summary = s.engine.stop();
    assert!(summary.identity_holds && summary.thread_errors.is_empty());
}

#[test]
fn flapping_exchange_loses_nothing_and_duplicates_nothing() {
    const TICKS: u64 = 120_000;
    let mut s = Stack::builder()
        .mock(|m| {
            m.rate_per_s = 50_000;
            m.seed = 5;
            m.max_ticks = Some(TICKS);
            m.heartbeat = Duration::from_millis(100);
        })
        .record()
        // ~50 ticks per message: a clean disconnect every ~1,500 ticks.
        .faults(|f| f.disconnect_every.store(30, Ordering::SeqCst))
        .instruments(240)
        .engine(|c| {
            c.supervision.backoff_base = Duration::from_millis(5);
            c.supervision.backoff_cap = Duration::from_millis(50);
        })
        .start();
    let (record, consumer) = (s.record(), s.consume());
    let stats = s.mock.stats();
    assert!(wait_until(Duration::from_secs(120), || stats
        .generated
        .load(Ordering::SeqCst)
        == TICKS));
    // Ticks generated while no connection was subscribed were never sent;
    // the contract is about what was sent. A heartbeat after generation
    // ended means the open connection has sent everything.
    let hb = stats.heartbeats.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(60), || {
            stats.heartbeats.load(Ordering::SeqCst) > hb + 1
                && s.engine.counts().published == stats.sent_ticks.load(Ordering::SeqCst)
        }),
        "{:?}",
        s.engine.counts()
    );
    let sent = stats.sent_ticks.load(Ordering::SeqCst);
    // How many ticks fall into the reconnect gaps depends on how fast this
    // (shared, 2-core) machine schedules the reconnects: measured 90-99 %
    // sent when idle, 79 % at load 10. The contract checked below is about
    // what was sent; this only guards that the test exercised the feed.
    assert!(sent > TICKS / 2, "only {sent} of {TICKS} ticks were sent");
    let summary = s.engine.stop();
    let c = &summary.counts;
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!((c.received, c.published, c.dropped), (sent, sent, 0));
    let disconnects = stats.injected_disconnects.load(Ordering::SeqCst);
    assert!(disconnects >= 20, "only {disconnects} disconnects");
    let conn = &c.connections[0];
    // Single-flight: one attempt per disconnect (plus the first), never two
    // connections at once (the mock would refuse a 4th with 429).
    assert_eq!(conn.attempts, disconnects + 1, "{conn:?}");
    assert_eq!(stats.rejected_429.load(Ordering::SeqCst), 0);
    assert_eq!(stats.connections.load(Ordering::SeqCst), disconnects + 1);
    s.mock.stop();
    // Every tick sent while connected is on the topic exactly once; modes
    // were restored after each reconnect (every instrument kept its kind,
    // which the byte-equal comparison checks).
    let records = consumer.join(sent);
    assert_topic_holds_the_recording(&records, &record, sent, 200);
}

#[test]
fn a_silent_stall_is_detected_within_the_window_and_reconnected() {
    let mut s = Stack::builder()
        .partitions(1)
        .mock(|m| m.rate_per_s = 2_000)
        .instruments(20)
        .engine(|c| {
            c.supervision.liveness = Duration::from_secs(1);
            c.supervision.backoff_base = Duration::from_millis(10);
        })
        .start();
    let engine = &mut s.engine;
    assert!(wait_until(Duration::from_secs(20), || engine
        .counts()
        .received
        > 100));
    s.mock.faults().stall.store(true, Ordering::SeqCst);
    let stalled_at = std::time::Instant::now();
    assert!(wait_until(Duration::from_secs(10), || {
        engine.counts().connections[0].reconnects["stale"] >= 1
    }));
    let detected = stalled_at.elapsed();
    assert!(
        detected <= Duration::from_secs(2),
        "stall detected after {detected:?} (window 1 s)"
    );
    let c = engine.counts();
    assert!(
        c.connections[0]
            .error
            .as_deref()
            .unwrap()
            .contains("liveness window")
    );
    // The stall ends: the reconnected feed streams again.
    s.mock.faults().stall.store(false, Ordering::SeqCst);
    let before = c.received;
    assert!(wait_until(Duration::from_secs(20), || {
        let c = engine.counts();
        c.received > before + 100 && c.connections[0].state == "open"
    }));
    let summary = s.engine.stop();
    assert!(summary.identity_holds);
    assert_eq!(summary.counts.dropped, 0);
}

#[test]
fn malformed_messages_are_counted_and_the_connection_kept() {
    const TICKS: u64 = 20_000;
    let mut s = Stack::builder()
        .mock(|m| {
            m.rate_per_s = 20_000;
            m.max_ticks = Some(TICKS);
        })
        .faults(|f| f.malformed_every.store(7, Ordering::SeqCst))
        .instruments(50)
        .start();
    assert!(wait_until(Duration::from_secs(60), || s
        .engine
        .counts()
        .published
        == TICKS));
    let summary = s.engine.stop();
    let c = &summary.counts;
    assert!(summary.identity_holds);
    let injected = s.mock.stats().injected_malformed.load(Ordering::SeqCst);
    assert!(injected > 10);
    assert_eq!(c.malformed, [0, 0, 0, injected], "all counted as overrun");
    assert_eq!(c.connections[0].attempts, 1, "the connection was kept");
    assert_eq!((c.received, c.dropped), (TICKS, 0));
}

#[test]
fn broker_down_parks_in_the_spool_and_requeue_completes_the_topic() {
    const TICKS: u64 = 20_000;
    let mut s = Stack::builder()
        .mock(|m| {
            m.rate_per_s = 5_000;
            m.seed = 9;
            m.max_ticks = Some(TICKS);
            m.heartbeat = Duration::from_millis(100);
        })
        .record()
        .engine(|c| c.kafka.message_timeout_ms = 1500)
        .start();
    let (record, spool_dir) = (s.record(), s.spool_dir());
    let engine = &mut s.engine;
    assert!(wait_until(Duration::from_secs(30), || engine
        .counts()
        .published
        > 2000));
    s.broker.broker_down(1).unwrap();
    // Longer than message.timeout.ms while ticks flow: failures are parked.
    assert!(wait_until(Duration::from_secs(30), || engine
        .counts()
        .parked
        > 1000));
    s.broker.broker_up(1).unwrap();
    let sent = settle(&mut s, TICKS);
    let summary = s.engine.stop();
    let c = &summary.counts;
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(c.dropped, 0);
    assert!(c.parked > 1000 && c.failures.delivery_failed > 0, "{c:?}");
    assert_eq!(c.received, c.published + c.parked);
    assert_eq!(c.received, sent);
    s.mock.stop();

    requeue_and_assert_the_topic_holds_the_recording(
        s.broker.bootstrap_servers(),
        &spool_dir,
        &record,
        sent,
        c.parked,
    );
}

/// `dlq stats` counts `parked` records, `dlq requeue` empties the spool, and
/// the topic then holds every recorded tick exactly once, by count and by
/// content. Returns `requeue`'s stderr.
fn requeue_and_assert_the_topic_holds_the_recording(
    brokers: &str,
    spool_dir: &Path,
    record: &Path,
    sent: u64,
    parked: u64,
) -> String {
    let out = util::cli::output(
        util::cli::panda_feed(["dlq", "--dir"])
            .arg(spool_dir)
            .arg("stats"),
    );
    assert!(out.status.success(), "{}", util::cli::stderr(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["records"], parked);
    let out = util::cli::output(
        util::cli::panda_feed(["dlq", "--dir"])
            .arg(spool_dir)
            .args(["requeue", "--brokers", brokers]),
    );
    let err = util::cli::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        panda_feed::spool::segments(spool_dir).is_empty(),
        "spool not emptied"
    );

    // Every recorded tick exactly once, by count and by content.
    let records = Consumer::spawn(brokers, TOPIC, PARTITIONS, Duration::from_secs(60)).join(sent);
    assert_eq!(records.len() as u64, sent, "records on the topic: {err}");
    let mut got: Vec<(u32, String)> = records
        .iter()
        .map(|r| (r.key.parse().unwrap(), r.data_text().to_owned()))
        .collect();
    let mut want = recorded_ticks(record);
    got.sort();
    want.sort();
    assert!(
        got == want,
        "the topic does not hold exactly the recorded ticks"
    );
    err
}

/// Waits until generation is over and every sent tick is published or
/// parked; returns how many were sent.
fn settle(s: &mut Stack, ticks: u64) -> u64 {
    let stats = s.mock.stats();
    assert!(wait_until(Duration::from_secs(60), || stats
        .generated
        .load(Ordering::SeqCst)
        == ticks));
    let hb = stats.heartbeats.load(Ordering::SeqCst);
    let engine = &mut s.engine;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let c = engine.counts();
            stats.heartbeats.load(Ordering::SeqCst) > hb + 1
                && c.published + c.parked == stats.sent_ticks.load(Ordering::SeqCst)
        }),
        "{:?}",
        engine.counts()
    );
    stats.sent_ticks.load(Ordering::SeqCst)
}

/// A broker that stalls instead of refusing: every response delayed past
/// `message.timeout.ms` while the broker still appends what it receives.
/// librdkafka times those records out, some of them after the broker wrote
/// them ("possibly persisted"); they are parked with that status, and
/// `dlq requeue` finds those on the topic instead of writing them twice.
#[test]
fn a_stalled_broker_then_requeue_leaves_every_tick_on_the_topic_exactly_once() {
    const TICKS: u64 = 40_000;
    let mut s = Stack::builder()
        .mock(|m| {
            m.rate_per_s = 5_000;
            m.seed = 11;
            m.max_ticks = Some(TICKS);
            m.heartbeat = Duration::from_millis(100);
        })
        .record()
        .engine(|c| c.kafka.message_timeout_ms = 1000)
        .start();
    let (record, spool_dir) = (s.record(), s.spool_dir());
    let engine = &mut s.engine;
    assert!(wait_until(Duration::from_secs(30), || engine
        .counts()
        .published
        > 2000));
    // A stall parks records librdkafka had already sent ("possibly
    // written") only if requests were in flight when it began; on this shared
    // 2-core machine the first stall does not always catch one, so stall up
    // to three times until the spool holds some.
    let possibly = |dir: &Path| {
        panda_feed::spool::segments(dir)
            .iter()
            .filter_map(|seg| panda_feed::spool::read_segment(seg).ok())
            .flat_map(|(recs, _)| recs)
            .filter(|r| r.persisted == panda_feed::spool::Persisted::Possibly)
            .count()
    };
    for _ in 0..3 {
        let parked = engine.counts().parked;
        s.broker.set_rtt(1, Duration::from_millis(2500)).unwrap();
        assert!(wait_until(Duration::from_secs(30), || engine
            .counts()
            .parked
            > parked + 500));
        s.broker.set_rtt(1, Duration::ZERO).unwrap();
        if possibly(&spool_dir) > 0 {
            break;
        }
    }
    let sent = settle(&mut s, TICKS);
    let summary = s.engine.stop();
    let c = &summary.counts;
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(c.dropped, 0);
    assert_eq!(c.received, sent);
    assert!(c.failures.delivery_failed > 0, "{c:?}");
    s.mock.stop();
    // Timed-out records are marked as possibly written.
    let possibly: usize = panda_feed::spool::segments(&spool_dir)
        .iter()
        .flat_map(|seg| panda_feed::spool::read_segment(seg).unwrap().0)
        .filter(|r| r.persisted == panda_feed::spool::Persisted::Possibly)
        .count();
    assert!(possibly > 0, "no parked record is marked possibly written");
    let err = requeue_and_assert_the_topic_holds_the_recording(
        s.broker.bootstrap_servers(),
        &spool_dir,
        &record,
        sent,
        c.parked,
    );
    // The stalled broker did write some of them: requeue found those.
    assert!(err.contains("found"), "{err}");
}

/// A fatal producer error (injected as librdkafka's test API raises it for
/// a fenced idempotent producer): the publisher replaces its producer, what
/// the old one held is parked (counted as delivery failures), the feed goes
/// on publishing, and after `dlq requeue` nothing is lost or duplicated.
#[cfg(feature = "test-hooks")]
#[test]
fn a_fatal_producer_error_replaces_the_producer_and_loses_nothing() {
    const TICKS: u64 = 20_000;
    let mut s = Stack::builder()
        .mock(|m| {
            m.rate_per_s = 10_000;
            m.seed = 13;
            m.max_ticks = Some(TICKS);
            m.heartbeat = Duration::from_millis(100);
        })
        .record()
        .engine(|c| c.test_fatal_publisher = Some((0, 3_000)))
        .start();
    let (record, spool_dir) = (s.record(), s.spool_dir());
    let sent = settle(&mut s, TICKS);
    let summary = s.engine.stop();
    let c = &summary.counts;
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(c.producer_fatal_errors, 1, "{c:?}");
    assert_eq!(c.dropped, 0);
    assert_eq!(c.received, sent);
    // Publishing went on after the replacement.
    assert!(c.published > sent / 2, "{c:?}");
    assert!(
        c.last_kafka_error
            .as_deref()
            .is_some_and(|e| e.contains("atal")),
        "{c:?}"
    );
    s.mock.stop();
    if c.parked > 0 {
        requeue_and_assert_the_topic_holds_the_recording(
            s.broker.bootstrap_servers(),
            &spool_dir,
            &record,
            sent,
            c.parked,
        );
    } else {
        let records = Consumer::spawn(
            s.broker.bootstrap_servers(),
            TOPIC,
            PARTITIONS,
            Duration::from_secs(60),
        )
        .join(sent);
        assert_eq!(records.len() as u64, sent);
    }
}

/// The spool's cap follows the disk: with the broker gone and the cap hit,
/// a `dlq purge` from another process frees room, and parking resumes at
/// once (no `spool_full` for the records that fit again) and the
/// `spool_bytes` gauge drops within one sample.
#[test]
fn a_purge_while_the_feed_runs_frees_the_spool_cap() {
    // With the broker gone, librdkafka times out everything it queued in
    // one sweep: hundreds of records hit the spool at once, more than a purge
    // frees, and `spool_full` would rise again within the same instant. A
    // producer queue of 20 records (full → parked after 5 ms) turns the
    // failures into a steady stream of ~200/s, so the room a purge frees
    // lasts seconds and the check below is not a race with the refill.
    const CAP: u64 = 150_000;
    let mut s = Stack::builder()
        .mock(|m| {
            m.rate_per_s = 200;
            m.seed = 17;
            m.heartbeat = Duration::from_millis(100);
        })
        .engine(|c| {
            c.kafka.message_timeout_ms = 500;
            c.kafka.queue_max_messages = 20;
            c.kafka.queue_full_wait_ms = 5;
            c.spool.max_bytes = CAP;
            c.spool.segment_bytes = 10_000;
        })
        .start();
    let spool_dir = s.spool_dir();
    let engine = &mut s.engine;
    assert!(wait_until(Duration::from_secs(30), || engine
        .counts()
        .published
        > 200));
    s.broker.broker_down(1).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || engine
            .counts()
            .dropped_by_reason
            .spool_full
            > 0),
        "{:?}",
        engine.counts()
    );
    let out = util::cli::output(
        util::cli::panda_feed(["dlq", "--dir"])
            .arg(&spool_dir)
            .args(["purge", "--older-than", "0s"]),
    );
    assert!(out.status.success(), "{}", util::cli::stderr(&out));
    let c = engine.counts();
    let (full, parked) = (c.dropped_by_reason.spool_full, c.parked);
    // Parking resumes: the next records fit again and none of them is
    // dropped as spool_full.
    assert!(
        wait_until(Duration::from_secs(10), || engine.counts().parked
            >= parked + 50),
        "parking did not resume: {:?}",
        engine.counts()
    );
    let c = engine.counts();
    assert_eq!(
        c.dropped_by_reason.spool_full, full,
        "records were dropped as spool_full with room on disk: {c:?}"
    );
    assert!(c.spool_bytes < CAP, "{c:?}");
    s.broker.broker_up(1).unwrap();
    let summary = s.engine.stop();
    assert!(summary.identity_holds, "{summary:?}");
}

/// Retriable Produce errors injected into the broker: librdkafka retries them
/// under the idempotent producer, and the topic ends up holding every tick
/// exactly once.
///
/// One request in flight per connection, because of the mock cluster:
/// librdkafka's mock validates idempotent sequence numbers only for
/// transactional producers (`rd_kafka_mock_validate_records` returns early
/// without a `TransactionalId`). With 5 in flight, a request R2 sent behind a
/// failed R1 is appended by the mock where a real broker would refuse it
/// (`OUT_OF_ORDER_SEQUENCE_NUMBER`). librdkafka then reads R2's success as
/// proof that R1 was persisted and acknowledges R1's records implicitly
/// (`rd_kafka_dr_implicit_ack`), though the mock never appended them: 1 run
/// in 6 lost 1–4 of 20,000 records that way. Against a real broker the
/// production setting (5 in flight) is the safe one Kafka documents.
#[test]
fn retriable_produce_errors_are_retried_without_duplicates() {
    use rdkafka::types::RDKafkaRespErr;
    const TICKS: u64 = 20_000;
    let mut s = Stack::builder()
        .mock(|m| {
            m.rate_per_s = 10_000;
            m.seed = 13;
            m.max_ticks = Some(TICKS);
        })
        .record()
        .instruments(240)
        .engine(|c| {
            c.kafka
                .extra
                .insert("max.in.flight.requests.per.connection".into(), "1".into());
        })
        .start();
    let (record, consumer) = (s.record(), s.consume());
    assert!(wait_until(Duration::from_secs(30), || s
        .engine
        .counts()
        .published
        > 1000));
    let mut errs = Vec::new();
    for _ in 0..10 {
        // Retriable, and not persisted by the broker.
        errs.push(RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
        errs.push(RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
    }
    s.broker.push_produce_errors(errs).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || s.engine.counts().published
            == TICKS),
        "{:?}",
        s.engine.counts()
    );
    let summary = s.engine.stop();
    let c = &summary.counts;
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!((c.parked, c.dropped), (0, 0), "{c:?}");
    s.mock.stop();
    let records = consumer.join(TICKS);
    assert_topic_holds_the_recording(&records, &record, TICKS, 200);
}

#[test]
fn a_full_spool_drops_with_a_count_and_the_feed_keeps_running() {
    let mut s = Stack::builder()
        .mock(|m| m.rate_per_s = 5_000)
        .engine(|c| {
            c.kafka.message_timeout_ms = 1000;
            c.spool.max_bytes = 200_000;
        })
        .start();
    let engine = &mut s.engine;
    assert!(wait_until(Duration::from_secs(30), || engine
        .counts()
        .published
        > 500));
    s.broker.broker_down(1).unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        engine.counts().dropped_by_reason.spool_full > 100
    }));
    let c = engine.counts();
    assert!(
        c.last_spool_error
            .as_deref()
            .unwrap()
            .contains("spool is full")
    );
    assert!(c.parked > 0);
    // Still reading: the connection is open and ticks keep arriving.
    let before = c.received;
    assert!(wait_until(Duration::from_secs(10), || engine
        .counts()
        .received
        > before + 1000));
    assert_eq!(engine.counts().connections[0].state, "open");
    s.broker.broker_up(1).unwrap();
    let spool_dir = s.spool_dir();
    let summary = s.engine.stop();
    assert!(summary.identity_holds, "{summary:?}");
    assert!(panda_feed::spool::dir_bytes(&spool_dir) <= 200_000);
}

#[cfg(feature = "test-hooks")]
#[test]
fn a_publisher_panic_is_reported_and_what_it_held_is_parked() {
    let s = Stack::builder()
        .mock(|m| m.rate_per_s = 5_000)
        .engine(|c| {
            // Slow delivery so the panicking publisher holds undelivered records.
            c.kafka.linger_ms = 1000;
            c.test_panic_publisher = Some((0, 500));
        })
        .start();
    assert!(wait_until(Duration::from_secs(30), || !s
        .engine
        .thread_panics()
        .is_empty()));
    let p = s.engine.thread_panics();
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("publisher 0 panicked: test hook"), "{p:?}");
    let summary = s.engine.stop();
    assert!(!summary.identity_holds, "a panicked thread fails the run");
    assert_eq!(summary.thread_errors, p);
    // Its producer was dropped while unwinding: what it held was parked.
    assert!(summary.counts.parked > 0, "{:?}", summary.counts);
}
