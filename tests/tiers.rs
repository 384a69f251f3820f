//! Tiers under pressure: one slow publisher, small rings, a mock exchange
//! streaming instruments of all three tiers faster than the publisher
//! drains. Drops fall on T2 first, then T1, and T0 last; a T0 tick is
//! dropped only when the T0 ring itself is full (`route.rs` checks that
//! literally, tick by tick); each tier balances on its own at stop. Tokens
//! subscribed live take their tier from the rules.

#![cfg(feature = "test-hooks")]

mod util;

use std::time::{Duration, Instant};

use panda_feed::config::TiersConfig;
use panda_feed::mock::default_instruments;
use panda_feed::tier::{TIERS, Tier};
use util::{Stack, wait_until};

#[test]
fn pressure_sheds_t2_then_t1_then_t0_and_each_tier_balances() {
    const TICKS: u64 = 12_000;
    let inst = default_instruments(60);
    let nse: Vec<u32> = inst
        .iter()
        .map(|i| i.token)
        .filter(|t| t & 0xFF == 1)
        .collect();
    let other: Vec<u32> = inst
        .iter()
        .map(|i| i.token)
        .filter(|t| !matches!(t & 0xFF, 1 | 9))
        .collect();
    // T0: 8 NSE instruments by the token list, and 2 of the T2 exchanges'
    // instruments by the CSV column (which wins over the exchange rule).
    let t0_tokens = nse[..8].to_vec();
    let csv = vec![(other[0], Tier::T0), (other[1], Tier::T0)];
    let mut s = Stack::builder()
        .tag("tiers")
        .mock(|m| {
            m.rate_per_s = 6_000;
            m.seed = 14;
            m.max_ticks = Some(TICKS);
            m.heartbeat = Duration::from_millis(50);
        })
        .instruments(60)
        .engine(move |c| {
            c.publishers = 1;
            // 300 slots split 50/30/20: T0 150, T1 90, T2 60.
            c.ring_capacity = 300;
            c.publish_chunk = 16;
            // ~800 ticks/s drained against ~1,000/s of T0 alone.
            c.test_slow_publisher = Some((0, Duration::from_millis(20)));
            // Shedding order is what `drop_newest` shows; under `block` (the
            // default) full T0/T1 rings hold the socket (tests/overflow.rs).
            c.overflow = panda_feed::config::Overflow::DropNewest;
            c.tiers = TiersConfig {
                t2_exchanges: ["NFO", "CDS", "BSE", "BFO", "BCD"].map(String::from).into(),
                t0_tokens,
                ..TiersConfig::default()
            };
            c.instrument_tiers = csv;
        })
        .start();

    // When each tier first dropped (sampled every 2 ms), and the T0 ring's
    // fill whenever T0's drops grew between two samples.
    let start = Instant::now();
    let mut first: [Option<Duration>; TIERS] = [None; TIERS];
    let mut t0_drops_seen = 0;
    let mut t0_len_at_drop = Vec::new();
    let done = wait_until(Duration::from_secs(60), || {
        let c = s.engine.counts();
        for (t, f) in first.iter_mut().enumerate() {
            if f.is_none() && c.tiers[t].dropped > 0 {
                *f = Some(start.elapsed());
            }
        }
        if c.tiers[0].dropped > t0_drops_seen {
            t0_drops_seen = c.tiers[0].dropped;
            t0_len_at_drop.push(c.tiers[0].ring_len);
        }
        std::thread::sleep(Duration::from_millis(2));
        c.received >= TICKS
    });
    assert!(done, "the mock's ticks did not all arrive");
    let summary = s.engine.stop();
    let c = &summary.counts;
    let [t0, t1, t2] = c.tiers;
    eprintln!(
        "first drops: {first:?}\nT0 {t0:?}\nT1 {t1:?}\nT2 {t2:?}\nT0 ring length when T0 drops grew: {t0_len_at_drop:?}"
    );

    // Every tier got ticks; the shares gave each tier its slots.
    assert_eq!(
        [t0.ring_capacity, t1.ring_capacity, t2.ring_capacity],
        [150, 90, 60]
    );
    assert!(c.tiers.iter().all(|t| t.received > 500), "{:?}", c.tiers);
    // Drops fall on T2 first and T0 last.
    let (f0, f1, f2) = (first[0], first[1], first[2]);
    assert!(f2.is_some(), "T2 never dropped: no pressure");
    assert!(
        f1.is_none_or(|f1| f2.unwrap() <= f1),
        "T1 dropped before T2: {first:?}"
    );
    assert!(
        f0.is_none_or(|f0| f1.is_some_and(|f1| f1 <= f0) && f2.unwrap() <= f0),
        "T0 dropped before T1 and T2 did: {first:?}"
    );
    // The shed fractions follow the tiers.
    let frac = |t: &panda_feed::engine::TierCounts| t.dropped as f64 / t.received as f64;
    assert!(
        frac(&t2) >= frac(&t1) && frac(&t1) >= frac(&t0),
        "T2 {} T1 {} T0 {}",
        frac(&t2),
        frac(&t1),
        frac(&t0)
    );
    assert!(frac(&t0) < 0.5, "T0 shed like the others: {}", frac(&t0));
    // When T0 dropped, its ring was full or nearly (sampled after the
    // fact; the publisher may have taken a chunk since).
    for len in &t0_len_at_drop {
        assert!(
            *len + 2 * 16 >= 150,
            "T0 dropped with its ring at {len}/150"
        );
    }

    // The identity, per tier and in total.
    assert!(summary.identity_holds, "{summary:?}");
    assert_eq!(c.received, TICKS);
    for t in &c.tiers {
        assert_eq!(t.in_flight, 0);
        assert_eq!(t.received, t.published + t.parked + t.dropped, "{t:?}");
        assert_eq!(t.dropped, t.dropped_by_reason.ring_full, "{t:?}");
    }
    assert_eq!(c.tiers.iter().map(|t| t.received).sum::<u64>(), c.received);
    assert_eq!(
        c.tiers.iter().map(|t| t.published).sum::<u64>(),
        c.published
    );
    assert_eq!(c.tiers.iter().map(|t| t.dropped).sum::<u64>(), c.dropped);
    // The summary JSON shows them by label.
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(json["tiers"]["T2"]["dropped"], t2.dropped);
}

/// Tokens subscribed live (not in the map built at start) take their tier
/// from the rules by segment, and from the token lists.
#[test]
fn tokens_added_live_take_their_tier_from_the_rules() {
    use panda_feed::engine::net::Desired;
    let inst = default_instruments(60);
    let all: Vec<(u32, panda_feed::Mode)> = inst
        .iter()
        .map(|i| (i.token, i.mode.expect("default instruments have a mode")))
        .collect();
    let nse: Vec<(u32, panda_feed::Mode)> =
        all.iter().copied().filter(|(t, _)| t & 0xFF == 1).collect();
    let nfo: Vec<u32> = all.iter().map(|x| x.0).filter(|t| t & 0xFF == 2).collect();
    let t0_token = nfo[0];
    let mut s = Stack::builder()
        .tag("tiers-live")
        .mock(|m| m.rate_per_s = 2_000)
        .engine(move |c| {
            c.instruments = nse;
            c.tiers = TiersConfig {
                t2_exchanges: vec!["NFO".into()],
                t0_tokens: vec![t0_token],
                ..TiersConfig::default()
            };
        })
        .start();
    assert!(wait_until(Duration::from_secs(30), || s
        .engine
        .counts()
        .tiers[1]
        .received
        > 200));
    let c = s.engine.counts();
    assert_eq!(
        (c.tiers[0].received, c.tiers[2].received),
        (0, 0),
        "{:?}",
        c.tiers
    );
    // Only T1 (the default) is subscribed yet, but the rules can reach T0
    // and T2, so their rings got slots at start for tokens added later.
    assert!(c.tiers.iter().all(|t| t.ring_capacity > 0), "{:?}", c.tiers);

    let mut tokens = all;
    tokens.sort_unstable();
    s.engine.set_subscriptions(Desired { version: 1, tokens });
    assert!(wait_until(Duration::from_secs(30), || s
        .engine
        .subscriptions_applied()
        == 1));
    assert!(wait_until(Duration::from_secs(30), || {
        let c = s.engine.counts();
        c.tiers[0].received > 0 && c.tiers[2].received > 50
    }));
    let summary = s.engine.stop();
    assert!(summary.identity_holds, "{summary:?}");
    let t = &summary.counts.tiers;
    // One NFO token is T0 by the list; the other NFO tokens are T2 by the
    // exchange rule: T2 gets more.
    assert!(t[2].received > t[0].received, "{t:?}");
}
