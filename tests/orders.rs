//! Order postbacks end to end (README, "Order postbacks"): `order` text
//! frames from the mock exchange → the engine's `orders` thread → the
//! orders topic on the embedded broker, exactly once, keyed by order id,
//! with their own identity; and parked in the spool when the broker is down.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use panda_feed::config::defaults::ORDERS_TOPIC;
use serde_json::Value;
use util::kafka::read_to_end;
use util::stack::PARTITIONS;
use util::{Stack, wait_until};

#[test]
fn order_postbacks_reach_their_topic_exactly_once_keyed_by_order_id() {
    let mut s = Stack::builder()
        .tag("orders")
        .mock(|m| m.rate_per_s = 1000)
        .start();
    assert!(wait_until(Duration::from_secs(30), || s
        .engine
        .counts()
        .received
        > 0));
    let mut sent = BTreeMap::new();
    for i in 0..20 {
        let id = format!("26112500000{i:04}");
        let status = if i % 2 == 0 { "OPEN" } else { "COMPLETE" };
        let frame: Value = serde_json::from_str(&s.mock.send_order(&id, status)).unwrap();
        sent.insert(id, frame["data"].clone());
    }
    assert!(
        wait_until(Duration::from_secs(30), || s
            .engine
            .counts()
            .orders
            .published
            == 20),
        "{:?}",
        s.engine.counts().orders
    );
    let summary = s.engine.stop();
    let o = summary.counts.orders;
    assert_eq!(
        (o.received, o.published, o.parked, o.dropped, o.in_flight),
        (20, 20, 0, 0, 0)
    );
    assert!(summary.identity_holds);
    let records = read_to_end(s.broker.bootstrap_servers(), ORDERS_TOPIC, PARTITIONS);
    assert_eq!(records.len(), 20, "exactly once");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/order.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the order schema compiles");
    let mut seqs = Vec::new();
    for (key, value) in records {
        let e: Value = serde_json::from_slice(&value).unwrap();
        if let Err(err) = validator.validate(&e) {
            panic!("{e} does not match schemas/order.schema.json: {err}");
        }
        let key = String::from_utf8(key).unwrap();
        assert_eq!(e["type"], "order_update");
        assert_eq!(e["run"], summary.run_id.to_string());
        assert_eq!(e["data"]["order_id"], key.as_str(), "keyed by order id");
        assert_eq!(&e["data"], &sent[&key], "the postback as received");
        seqs.push(e["seq"].as_u64().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    s.mock.stop();
}

#[test]
fn order_postbacks_a_down_broker_cannot_take_are_parked_and_requeued_once() {
    let mut s = Stack::builder()
        .tag("orders-down")
        .mock(|m| {
            m.rate_per_s = 200;
            m.heartbeat = Duration::from_millis(100);
        })
        .engine(|c| c.kafka.message_timeout_ms = 1000)
        .start();
    assert!(wait_until(Duration::from_secs(30), || s
        .engine
        .counts()
        .published
        > 0));
    s.broker.broker_down(1).unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = format!("26112511111{i:04}");
        s.mock.send_order(&id, "REJECTED");
        ids.push(id);
    }
    // Past message.timeout.ms with the broker down: every one parked.
    assert!(
        wait_until(Duration::from_secs(30), || s.engine.counts().orders.parked
            == 10),
        "{:?}",
        s.engine.counts().orders
    );
    s.broker.broker_up(1).unwrap();
    let spool_dir = s.spool_dir();
    let summary = s.engine.stop();
    let o = summary.counts.orders;
    assert_eq!(
        (o.received, o.published, o.parked, o.dropped),
        (10, 0, 10, 0)
    );
    assert!(summary.identity_holds, "{summary:?}");
    s.mock.stop();
    // `dlq requeue` puts them on their own topic, once each.
    let out = util::cli::output(
        util::cli::panda_feed(["dlq", "--dir"])
            .arg(&spool_dir)
            .args(["requeue", "--brokers", s.broker.bootstrap_servers()]),
    );
    assert!(out.status.success(), "{}", util::cli::stderr(&out));
    let mut keys: Vec<String> = read_to_end(s.broker.bootstrap_servers(), ORDERS_TOPIC, PARTITIONS)
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ids);
}
