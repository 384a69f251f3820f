//! Key → partition is librdkafka's default partitioner's, with the batched
//! enqueue (README, "Performance"): every tick record of an instrument is on
//! partition `crc32(key) % partitions` (`consistent_random` for a non-empty
//! key), exactly where one `rd_kafka_produce` per record put it, so
//! consumers and the rest of the stack see the same partitioning.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use panda_feed::config::defaults::TOPIC;
use util::kafka::read_to_end_with_partitions;
use util::stack::PARTITIONS;
use util::{Stack, wait_until};

/// CRC-32 (IEEE, reflected; zlib's and librdkafka's `rd_crc32`).
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn crc32_matches_the_reference_check_value() {
    // The standard check value of CRC-32/ISO-HDLC.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn every_record_lands_on_the_default_partitioners_partition_for_its_key() {
    let mut s = Stack::builder()
        .tag("partition")
        .mock(|m| m.rate_per_s = 5000)
        .start();
    assert!(wait_until(Duration::from_secs(60), || s
        .engine
        .counts()
        .published
        > 5000));
    let summary = s.engine.stop();
    s.mock.stop();
    assert!(summary.identity_holds, "{summary:?}");
    let records = read_to_end_with_partitions(s.broker.bootstrap_servers(), TOPIC, PARTITIONS);
    assert_eq!(records.len() as u64, summary.counts.published);
    let mut by_key: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    for (p, key, _) in &records {
        #[allow(clippy::cast_possible_wrap)] // % 8
        let want = (crc32(key) % PARTITIONS as u32) as i32;
        assert_eq!(
            *p,
            want,
            "key {} on partition {p}, the default partitioner says {want}",
            String::from_utf8_lossy(key)
        );
        by_key.insert(key.clone(), *p);
    }
    let used: std::collections::BTreeSet<_> = by_key.values().collect();
    assert!(used.len() > 4, "keys spread over the partitions: {used:?}");
}

#[test]
fn a_full_producer_queue_is_retried_in_order_and_every_tick_lands_once() {
    // A producer queue of 64 records under 20 k ticks/s: nearly every
    // batch is refused part-way and retried from the refused record. The
    // wait is long, so nothing is parked: every tick must be on the topic
    // once, and each instrument's ticks in receive order.
    let mut s = Stack::builder()
        .tag("partition-queue-full")
        .mock(|m| m.rate_per_s = 20_000)
        .engine(|c| {
            c.kafka.queue_max_messages = 64;
            c.kafka.queue_full_wait_ms = 30_000;
        })
        .start();
    assert!(wait_until(Duration::from_secs(60), || s
        .engine
        .counts()
        .published
        > 20_000));
    // The feed ends, then the publishers drain what they hold (waiting on
    // the full queue as in a run: a stop would park the rest at once).
    s.mock.stop();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let c = s.engine.counts();
            c.in_flight == 0 && c.received == c.published + c.parked + c.dropped
        }),
        "{:?}",
        s.engine.counts()
    );
    let summary = s.engine.stop();
    let c = &summary.counts;
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!((c.parked, c.dropped), (0, 0), "{c:?}");
    let waits: u64 = c.publishers.iter().map(|p| p.queue_full_waits).sum();
    assert!(waits > 0, "the queue was never full: {c:?}");
    let records = read_to_end_with_partitions(s.broker.bootstrap_servers(), TOPIC, PARTITIONS);
    assert_eq!(records.len() as u64, c.published, "exactly once");
    // Per key, in partition (offset) order: (conn, seq) strictly rising.
    let mut last: BTreeMap<Vec<u8>, (u64, u64)> = BTreeMap::new();
    for (_, key, value) in &records {
        let e: serde_json::Value = serde_json::from_slice(value).unwrap();
        let at = (e["conn"].as_u64().unwrap(), e["seq"].as_u64().unwrap());
        if let Some(prev) = last.insert(key.clone(), at) {
            assert!(
                prev < at,
                "key {}: {prev:?} then {at:?}",
                String::from_utf8_lossy(key)
            );
        }
    }
}
