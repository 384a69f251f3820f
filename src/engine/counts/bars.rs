//! The bars' own accounting (README, "Bars"): `built = published + parked
//! + dropped + in_flight`, summed over publishers, with each hand-over
//! (book → producer → broker or spool) balanced on its own at the end.
//! Ops side; `Relaxed` loads of single-writer counters.

use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::super::handle::PublisherHandle;

/// What the bars did, for the summary, metrics and `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BarCounts {
    /// Bars closed and emitted by the publishers.
    pub built: u64,
    /// Delivered to `bars.topic`.
    pub published: u64,
    /// Parked in the dead-letter spool (`dlq requeue` republishes them).
    pub parked: u64,
    /// Dropped at the spool (full or unwritable).
    pub dropped: u64,
    /// In a producer queue or on the way to the spool.
    pub in_flight: i64,
    /// Ticks of a minute whose bar was already emitted (past the grace):
    /// counted, not folded.
    pub late_ticks: u64,
    /// Ticks outside their market's sessions: no bar built.
    pub closed_market_ticks: u64,
    /// Ticks without a price (`last_price` 0): not folded.
    pub unpriced_ticks: u64,
    /// Ticks of instruments the bar book had no room for.
    pub untracked_ticks: u64,
    /// `bars.clock = "exchange"`: ticks without an exchange timestamp
    /// before any with one (no time to put them at).
    pub unclocked_ticks: u64,
    /// Volume baselines reset by a reconnect or a fall within a day.
    pub volume_rebased: u64,
    /// Open bars dropped at stop because their minute had not ended.
    pub incomplete_at_stop: u64,
    /// Bars the hand-off to the ops side (stream, Redis) had no room for
    /// (their Kafka records are unaffected).
    pub handoff_dropped: u64,
}

/// One publisher's bar stages, read once.
#[derive(Debug, Clone, Copy)]
struct Stage {
    built: u64,
    produced: u64,
    refused: u64,
    delivered: u64,
    failed: u64,
    purged: u64,
    parked: u64,
    spool_full: u64,
    spool_error: u64,
}

impl Stage {
    fn read(p: &PublisherHandle) -> Option<(Self, &super::super::bar_lane::BarCounters)> {
        let b = p.bars.as_deref()?;
        let d = &p.delivery.bars;
        let s = &p.spool.counters().bars;
        Some((
            Self {
                built: b.built.load(Relaxed),
                produced: b.produced.load(Relaxed),
                refused: b.refused.load(Relaxed),
                delivered: d[0].load(Relaxed),
                failed: d[1].load(Relaxed),
                purged: d[2].load(Relaxed),
                parked: s[0].load(Relaxed),
                spool_full: s[1].load(Relaxed),
                spool_error: s[2].load(Relaxed),
            },
            b,
        ))
    }

    fn in_flight(&self) -> i64 {
        let si = super::si;
        let after = self.failed + self.purged;
        (si(self.built) - si(self.produced + self.refused))
            + (si(self.produced) - si(self.delivered + after))
            + (si(self.refused + after) - si(self.parked + self.spool_full + self.spool_error))
    }

    const fn balanced(&self) -> bool {
        let after = self.failed + self.purged;
        self.built == self.produced + self.refused
            && self.produced == self.delivered + after
            && self.refused + after == self.parked + self.spool_full + self.spool_error
    }
}

/// The bars of every publisher, summed; `None` when bars are off.
pub(crate) fn tally(pubs: &[PublisherHandle]) -> Option<BarCounts> {
    let mut out: Option<BarCounts> = None;
    for p in pubs {
        let Some((st, b)) = Stage::read(p) else {
            continue;
        };
        let o = out.get_or_insert_with(BarCounts::default);
        o.built += st.built;
        o.published += st.delivered;
        o.parked += st.parked;
        o.dropped += st.spool_full + st.spool_error;
        o.in_flight += st.in_flight();
        o.late_ticks += b.late_ticks.load(Relaxed);
        o.closed_market_ticks += b.closed_market_ticks.load(Relaxed);
        o.unpriced_ticks += b.unpriced_ticks.load(Relaxed);
        o.untracked_ticks += b.untracked_ticks.load(Relaxed);
        o.unclocked_ticks += b.unclocked_ticks.load(Relaxed);
        o.volume_rebased += b.volume_rebased.load(Relaxed);
        o.incomplete_at_stop += b.incomplete_at_stop.load(Relaxed);
        o.handoff_dropped += b.handoff_dropped.load(Relaxed);
    }
    out
}

/// At the end of a run: every publisher's bar stages balanced and nothing
/// in flight (true when bars are off).
pub(crate) fn identity_holds(pubs: &[PublisherHandle]) -> bool {
    pubs.iter()
        .filter_map(Stage::read)
        .all(|(st, _)| st.balanced() && st.in_flight() == 0)
}
