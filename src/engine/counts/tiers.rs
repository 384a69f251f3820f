//! The accounting per tier: each publisher's stage counters of one tier
//! (its tier's ring, the publisher's, the producer's and the spool's tier
//! counts), summed over publishers into [`TierCounts`], and the identity
//! `received_t = published_t + parked_t + dropped_t + in_flight_t` for each
//! tier `t`. Runs on the ops side, like the rest of `counts`.

use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::{Counts, DropReasons, PublisherHandle, Stage, si};
use crate::tier::{TIERS, Tier};

/// One tier's counters, summed over publishers.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TierCounts {
    /// Ring slots of this tier, over all publishers.
    pub ring_capacity: usize,
    /// Ticks of this tier in its rings.
    pub ring_len: u64,
    /// Ticks of this tier received (pushed onto its rings or dropped there).
    pub received: u64,
    /// Ticks whose delivery Kafka confirmed.
    pub published: u64,
    /// Ticks parked in the dead-letter spool.
    pub parked: u64,
    /// Ticks dropped, all reasons.
    pub dropped: u64,
    /// Drops by reason.
    pub dropped_by_reason: DropReasons,
    /// Ticks in a ring, a publisher or the producer queue.
    pub in_flight: i64,
}

impl Stage {
    /// Tier `t`'s share of publisher `p`'s stage.
    fn of_tier(p: &PublisherHandle, t: usize) -> Self {
        let (r, c, d) = (&p.rings[t], &p.counters.by_tier[t], &p.delivery.by_tier[t]);
        let sc = &p.spool.counters().by_tier[t];
        Self {
            capacity: r.capacity(),
            pushed: r.pushed(),
            dropped_ring_full: r.dropped_full(),
            popped: c.popped.load(Relaxed),
            produced: c.produced.load(Relaxed),
            queue_full: c.dropped_queue_full.load(Relaxed),
            produce_error: c.dropped_produce_error.load(Relaxed),
            delivered: d[0].load(Relaxed),
            failed: d[1].load(Relaxed),
            purged: d[2].load(Relaxed),
            parked: sc[0].load(Relaxed),
            spool_full: sc[1].load(Relaxed),
            spool_error: sc[2].load(Relaxed),
            ..Self::default()
        }
    }
}

/// Every tier's counters, summed over `pubs`.
pub(super) fn tally(pubs: &[PublisherHandle]) -> [TierCounts; TIERS] {
    let mut out = [TierCounts::default(); TIERS];
    for p in pubs {
        for (t, o) in out.iter_mut().enumerate() {
            let st = Stage::of_tier(p, t);
            o.ring_capacity += st.capacity;
            o.ring_len += st.pushed.saturating_sub(st.popped);
            o.received += st.pushed + st.dropped_ring_full;
            o.published += st.delivered;
            o.parked += st.parked;
            o.dropped_by_reason.ring_full += st.dropped_ring_full;
            o.dropped_by_reason.spool_full += st.spool_full;
            o.dropped_by_reason.spool_error += st.spool_error;
            o.in_flight += st.in_flight();
        }
    }
    for o in &mut out {
        o.dropped = o.dropped_by_reason.total();
    }
    out
}

/// Each tier balances on its own at the end of a run (every stage of every
/// publisher, nothing in flight), and the tiers add up to the totals.
pub(super) fn identity_holds(c: &Counts, pubs: &[PublisherHandle]) -> bool {
    let per_stage = pubs
        .iter()
        .all(|p| (0..TIERS).all(|t| Stage::of_tier(p, t).balanced()));
    let per_tier = c.tiers.iter().all(|t| {
        t.in_flight == 0 && si(t.received) == si(t.published + t.parked + t.dropped) + t.in_flight
    });
    let sum = |f: fn(&TierCounts) -> u64| c.tiers.iter().map(f).sum::<u64>();
    per_stage
        && per_tier
        && sum(|t| t.received) == c.received
        && sum(|t| t.published) == c.published
        && sum(|t| t.parked) == c.parked
        && sum(|t| t.dropped) == c.dropped
}

/// Serializes the tiers as `{"T0": …, "T1": …, "T2": …}`.
pub(super) fn as_map<S: serde::Serializer>(
    tiers: &[TierCounts; TIERS],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(TIERS))?;
    for (t, c) in Tier::ALL.iter().zip(tiers) {
        map.serialize_entry(t.label(), c)?;
    }
    map.end()
}
