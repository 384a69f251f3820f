//! The `block` overflow policy on the network thread: a binary message
//! whose T0/T1 ring is full is held (its payload kept, the socket not read
//! further), retried every loop turn, and after `engine.block_max_ms`
//! routed with drops counted (README, "Overflow: block or drop";
//! `docs/ARCHITECTURE.md`, "Overflow").
//!
//! Runs on the network thread; the hot path. Holding allocates nothing: the
//! held payload is tungstenite's shared slice of the connection's read
//! buffer, which is not read again until the message is released (then the
//! buffer is unique again and reused in place, as `read.rs` explains).

use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::stats::Tally;
use crate::clock::now_ns;
use crate::engine::route::{Routed, Router};
use crate::engine::wake::{Wake, wake_touched};

/// A message waiting for ring room.
#[derive(Debug)]
pub(super) struct Held {
    /// The whole message (packets before `at` were routed already).
    msg: tungstenite::Bytes,
    /// When it was read: the ticks keep their receive time, so latency
    /// shows the stall.
    recv_ns: u64,
    /// The first packet not routed yet.
    at: u16,
    /// The ring that was full.
    ring: u16,
    /// When the hold began.
    since: Instant,
}

impl Held {
    /// A message `r` stopped at (`r.held_at` is set).
    pub(super) fn new(msg: tungstenite::Bytes, recv_ns: u64, r: &Routed) -> Self {
        Self {
            msg,
            recv_ns,
            at: r.held_at.unwrap_or(0),
            ring: r.held_ring,
            since: Instant::now(),
        }
    }
}

/// What a retry needs besides the held message.
pub(super) struct Retry<'a> {
    pub(super) index: u8,
    pub(super) gone: &'a [u32],
    pub(super) wakes: &'a [(Arc<Wake>, Thread)],
    /// `engine.block_max_ms`.
    pub(super) block_max: Duration,
    /// Give up now (the connection is going down or the engine is
    /// stopping): route what fits, drop and count the rest, shed nothing.
    pub(super) force: bool,
}

/// Counts a routed message's ticks (the whole message or one resumed part)
/// and wakes the publishers it pushed to; `now` is the clock in ns.
#[inline]
pub(super) fn account(tally: &mut Tally, r: &Routed, now: u64, wakes: &[(Arc<Wake>, Thread)]) {
    tally.after_unsubscribe += u64::from(r.after_unsubscribe);
    if r.pushed + r.dropped_full > 0 {
        tally.last_tick_ns = now;
    }
    tally.ticks += u64::from(r.pushed + r.dropped_full);
    tally.dropped_full += u64::from(r.dropped_full);
    tally.unknown += u64::from(r.unknown);
    wake_touched(wakes, r.touched);
}

/// Retries the held message, if any. Returns `true` when nothing is held
/// any more (read on), `false` while it still waits for room. Past
/// `block_max` the ring that held it is shed (`Router::shed`) and the rest
/// of the message is routed with drops counted.
#[inline]
pub(super) fn retry(
    held: &mut Option<Held>,
    cx: &Retry<'_>,
    seq: &mut u64,
    tally: &mut Tally,
    router: &mut Router,
) -> bool {
    let Some(h) = held.as_mut() else {
        return true;
    };
    let now = Instant::now();
    let waited = now.saturating_duration_since(h.since);
    let timed_out = !cx.force && waited >= cx.block_max;
    if timed_out {
        router.shed(h.ring);
    }
    let may_hold = !(cx.force || timed_out);
    match router.route_from(cx.index, seq, h.recv_ns, &h.msg, cx.gone, h.at, may_hold) {
        Ok(r) => {
            account(tally, &r, now_ns(), cx.wakes);
            if let Some(at) = r.held_at {
                h.at = at;
                h.ring = r.held_ring;
                return false;
            }
        }
        // Not reached: the message decoded when it was first routed.
        Err(e) => tally.malformed[e.reason_index()] += 1,
    }
    tally.block_timeouts += u64::from(timed_out);
    tally.blocked_ns = tally
        .blocked_ns
        .saturating_add(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
    // Liveness restarts now: we read nothing while holding (conn.rs).
    tally.unblocked_ns = now_ns();
    *held = None;
    true
}
