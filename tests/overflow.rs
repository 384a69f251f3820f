//! The overflow policy under a burst (README, "Overflow: block or drop"):
//! small rings, one slow publisher, a mock exchange sending faster than it
//! drains. Under `block` (the default) nothing is lost, the connection
//! stays up although it is not read for longer than the liveness window,
//! and every tick the mock sent is published; past `engine.block_max_ms`
//! the rest is dropped and counted (`ring_full`) and the identity holds;
//! `drop_newest` drops as before and never holds.

#![cfg(feature = "test-hooks")]

mod util;

use std::time::Duration;

use panda_feed::config::Overflow;
use panda_feed::engine::{EngineConfig, Summary};
use util::{Stack, wait_until};

/// A burst of `ticks` at 10,000 ticks/s against publisher 0, which takes
/// 256 ticks per `slow`: rings of 256 slots fill within milliseconds.
fn burst(
    tag: &'static str,
    ticks: u64,
    slow: Duration,
    f: impl FnOnce(&mut EngineConfig) + 'static,
) -> (Summary, u64) {
    let mut s = Stack::builder()
        .tag(tag)
        .mock(move |m| {
            m.rate_per_s = 10_000;
            m.seed = 15;
            m.max_ticks = Some(ticks);
            m.heartbeat = Duration::from_millis(50);
        })
        .instruments(60)
        .engine(move |c| {
            c.ring_capacity = 256;
            c.publish_chunk = 256;
            c.test_slow_publisher = Some((0, slow));
            f(c);
        })
        .start();
    let engine = &mut s.engine;
    let done = wait_until(Duration::from_secs(90), || {
        let c = engine.counts();
        c.received >= ticks && c.in_flight == 0
    });
    let c = engine.counts();
    assert!(done, "the burst did not get through: {c:?}");
    let stats = s.mock.stats();
    let lagged = stats
        .lagged_updates
        .load(std::sync::atomic::Ordering::SeqCst)
        + stats.unsent_ticks.load(std::sync::atomic::Ordering::SeqCst);
    (s.engine.stop(), lagged)
}

#[test]
fn block_loses_nothing_and_the_held_connection_stays_up() {
    const TICKS: u64 = 4_000;
    // Each hold lasts up to one slow chunk (500 ms), longer than the
    // liveness window (250 ms): only a liveness check that knows we chose
    // not to read keeps the connection up.
    let (summary, lagged) = burst("overflow-block", TICKS, Duration::from_millis(500), |c| {
        c.overflow = Overflow::Block;
        c.block_max = Duration::from_secs(10);
        c.supervision.liveness = Duration::from_millis(250);
    });
    let c = &summary.counts;
    eprintln!("{:?}", c.connections[0]);
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(lagged, 0, "the mock had to skip ticks");
    assert_eq!(c.received, TICKS);
    assert_eq!((c.dropped, c.dropped_by_reason.ring_full), (0, 0));
    assert_eq!(c.published, TICKS, "every tick received is published");
    let conn = &c.connections[0];
    assert!(
        conn.block_stalls > 0,
        "no message was ever held: no pressure"
    );
    assert_eq!(conn.block_timeouts, 0);
    assert!(conn.blocked_ms > 1000, "held {} ms", conn.blocked_ms);
    assert_eq!(
        conn.reconnects.values().sum::<u64>(),
        0,
        "the connection went down: {:?}",
        conn.reconnects
    );
    assert_eq!(conn.attempts, 1);
}

#[test]
fn block_past_its_bound_drops_counts_and_balances() {
    const TICKS: u64 = 3_000;
    // A publisher stuck for 400 ms per chunk against a 20 ms bound.
    let (summary, _) = burst("overflow-bound", TICKS, Duration::from_millis(400), |c| {
        c.overflow = Overflow::Block;
        c.block_max = Duration::from_millis(20);
    });
    let c = &summary.counts;
    eprintln!("{:?}", c.connections[0]);
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(c.received, TICKS);
    assert_eq!(c.in_flight, 0);
    assert!(c.dropped > 0, "nothing dropped past the bound");
    assert_eq!(c.dropped, c.dropped_by_reason.ring_full);
    assert_eq!(c.received, c.published + c.dropped);
    assert_eq!(
        c.dropped,
        c.publishers
            .iter()
            .map(|p| p.dropped_ring_full)
            .sum::<u64>()
    );
    let conn = &c.connections[0];
    assert!(
        conn.block_timeouts > 0 && conn.block_stalls >= conn.block_timeouts,
        "{conn:?}"
    );
    assert_eq!(
        conn.reconnects.values().sum::<u64>(),
        0,
        "{:?}",
        conn.reconnects
    );
}

#[test]
fn drop_newest_drops_and_never_holds() {
    const TICKS: u64 = 3_000;
    let (summary, _) = burst("overflow-drop", TICKS, Duration::from_millis(150), |c| {
        c.overflow = Overflow::DropNewest;
    });
    let c = &summary.counts;
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(c.received, TICKS);
    assert!(c.dropped > 0, "nothing dropped: no pressure");
    assert_eq!(c.dropped, c.dropped_by_reason.ring_full);
    assert_eq!(c.received, c.published + c.dropped);
    let conn = &c.connections[0];
    assert_eq!(
        (conn.block_stalls, conn.block_timeouts, conn.blocked_ms),
        (0, 0, 0)
    );
}

#[test]
fn ring_bytes_sizes_the_rings_and_the_summary_shows_it() {
    let dir = util::TempDir::new("overflow-ring-bytes");
    let summary = dir.join("summary.json");
    let out = util::cli::output(
        util::cli::feed_run(["--mock", "--duration", "1", "--summary"])
            .arg(&summary)
            .env("ENGINE__RING_BYTES", "1048576")
            .env("ENGINE__RING_CAPACITY", "8"),
    );
    assert!(out.status.success(), "{}", util::cli::stderr(&out));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    // ring_bytes wins: 1 MiB / 216-byte slots = 4854 slots (1,048,464 bytes).
    let p = &s["publishers"][0];
    assert_eq!(p["ring_capacity"], 4854, "{s:#}");
    assert_eq!(p["ring_bytes"], 4854 * 216, "{s:#}");
    assert_eq!(s["identity_holds"], true);
}
