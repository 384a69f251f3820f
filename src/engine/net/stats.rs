//! What the network thread publishes about each connection: its state label,
//! why it went down, and its counters.
//!
//! Written by the network thread only (one writer per connection); read by
//! the ops side (`Engine::counts`, metrics, status). The network thread keeps
//! plain running totals in a [`Tally`] and stores them into the shared
//! [`ConnStats`] atomics once per loop turn, so the hot path does no atomic
//! read-modify-write.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::tick::Mode;
use crate::wire::DecodeError;

const REASONS: usize = DecodeError::REASONS;

/// A connection's state as published (status, summary, metrics). The
/// network thread's own state (`conn::State`, which carries the socket) maps
/// to it in one function; nothing else sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// TCP connect in progress (or about to start, before the first turn).
    Connecting = 0,
    /// TLS / WebSocket upgrade in progress.
    Handshaking = 1,
    /// Subscribed and streaming.
    Open = 2,
    /// Down, waiting out the backoff before the next attempt.
    Backoff = 3,
    /// Closed at shutdown.
    Closed = 4,
    /// The upgrade was refused with HTTP 403: not retried until the access
    /// token changes.
    AuthFailed = 5,
    /// Waiting for the host's address (looked up off the network thread).
    Resolving = 6,
    /// No instruments assigned (a spare connection slot, or one emptied by
    /// a live unsubscribe): not connected, not an error.
    Idle = 7,
}

impl ConnState {
    /// Stable lower-case label.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Handshaking => "handshaking",
            Self::Open => "open",
            Self::Backoff => "backoff",
            Self::Closed => "closed",
            Self::AuthFailed => "auth_failed",
            Self::Resolving => "resolving",
            Self::Idle => "idle",
        }
    }

    const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connecting,
            1 => Self::Handshaking,
            2 => Self::Open,
            3 => Self::Backoff,
            5 => Self::AuthFailed,
            6 => Self::Resolving,
            7 => Self::Idle,
            _ => Self::Closed,
        }
    }
}

/// Why a connection went down: the one list of reconnect reasons, counted in
/// [`ConnStats::reconnect_counts`] under [`DownReason::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DownReason {
    /// The TCP connect failed (refused, unreachable, DNS).
    ConnectFailed = 0,
    /// The TLS / WebSocket upgrade failed, timed out, or subscribing failed.
    HandshakeFailed = 1,
    /// The upgrade was refused with HTTP 403 (bad or expired credentials).
    Http403 = 2,
    /// The upgrade was refused with HTTP 429 (too many connections).
    Http429 = 3,
    /// The server closed the connection.
    ClosedByServer = 4,
    /// Reading or writing the socket failed.
    ReadError = 5,
    /// No frame for longer than the liveness window.
    Stale = 6,
}

impl DownReason {
    /// Every reason, in index order (`ALL[r as usize] == r`).
    pub const ALL: [Self; 7] = [
        Self::ConnectFailed,
        Self::HandshakeFailed,
        Self::Http403,
        Self::Http429,
        Self::ClosedByServer,
        Self::ReadError,
        Self::Stale,
    ];

    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Stable label, as exported in counts and metrics.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::ConnectFailed => "connect_failed",
            Self::HandshakeFailed => "handshake_failed",
            Self::Http403 => "http_403",
            Self::Http429 => "http_429",
            Self::ClosedByServer => "closed_by_server",
            Self::ReadError => "read_error",
            Self::Stale => "stale",
        }
    }
}

/// Counters of one connection, written by the network thread only.
#[derive(Debug)]
pub struct ConnStats {
    /// `ws_url` without credentials.
    pub url: String,
    /// Instruments assigned to this connection now.
    pub instruments: AtomicU64,
    /// The subscriptions assigned to this connection (token, mode), sorted
    /// by token: what it subscribes on every (re)connect, and what a live
    /// change has been applied to. Replaced on a change (control plane),
    /// never on the hot path.
    pub subscriptions: ArcSwap<Vec<(u32, Mode)>>,
    /// Packets for an instrument that this connection unsubscribed from a
    /// moment ago (the server had sent them already): skipped and counted,
    /// neither ticks nor errors.
    pub after_unsubscribe: AtomicU64,
    /// Live subscription changes applied to this connection.
    pub changes_applied: AtomicU64,
    /// Order postbacks (`order` text frames) received.
    pub order_frames: AtomicU64,
    state: AtomicU8,
    /// Binary messages with market data.
    pub messages: AtomicU64,
    /// Ticks received (decoded packets), pushed or dropped.
    pub ticks: AtomicU64,
    /// Ticks dropped because their ring was full.
    pub dropped_full: AtomicU64,
    /// Heartbeats received.
    pub heartbeats: AtomicU64,
    /// Packets of unknown length, skipped.
    pub unknown_packets: AtomicU64,
    /// Malformed binary messages by [`DecodeError::reason_index`].
    pub malformed: [AtomicU64; REASONS],
    /// Text frames received.
    pub text_frames: AtomicU64,
    /// Text `error` frames received.
    pub server_errors: AtomicU64,
    /// Text frames over `zerodha.max_text_frame_bytes`: counted, not parsed.
    pub oversized_text_frames: AtomicU64,
    /// Frames over the connection's frame limit, refused from their header
    /// (the connection went down as `read_error`).
    pub oversized_frames: AtomicU64,
    /// Receive time of the latest frame of any kind (ns since the epoch; 0 = none).
    pub last_frame_ns: AtomicU64,
    /// Receive time of the latest market-data message with ticks (0 = none).
    pub last_tick_ns: AtomicU64,
    /// Connection attempts (TCP connects started), the first included.
    pub attempts: AtomicU64,
    /// Times the connection went down, indexed by [`DownReason`].
    reconnects: [AtomicU64; DownReason::COUNT],
    /// Total time not open after the first open, ns (closed periods only).
    pub disconnected_ns: AtomicU64,
    /// Messages held for ring room (`engine.overflow = "block"`).
    pub block_stalls: AtomicU64,
    /// Holds that ran out (`engine.block_max_ms`): the rest of the message
    /// was routed with drops counted (`ring_full`).
    pub block_timeouts: AtomicU64,
    /// Time spent holding (not reading this socket), ns.
    pub blocked_ns: AtomicU64,
    /// Why the connection last went down (foreign parts cut and escaped:
    /// [`truncate`](crate::logging::truncate)).
    pub error: Mutex<Option<String>>,
    /// The latest text `error` frame's message, cut to
    /// [`MAX_STORED_TEXT`](crate::logging::MAX_STORED_TEXT) and escaped.
    pub last_server_error: Mutex<Option<String>>,
}

impl ConnStats {
    pub(super) fn new(url: String, subscriptions: Vec<(u32, Mode)>) -> Self {
        let state = if subscriptions.is_empty() {
            ConnState::Idle
        } else {
            ConnState::Connecting
        };
        Self {
            url,
            instruments: AtomicU64::new(subscriptions.len() as u64),
            subscriptions: ArcSwap::from_pointee(subscriptions),
            after_unsubscribe: AtomicU64::new(0),
            changes_applied: AtomicU64::new(0),
            order_frames: AtomicU64::new(0),
            state: AtomicU8::new(state as u8),
            messages: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            unknown_packets: AtomicU64::new(0),
            malformed: std::array::from_fn(|_| AtomicU64::new(0)),
            text_frames: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            oversized_text_frames: AtomicU64::new(0),
            oversized_frames: AtomicU64::new(0),
            last_frame_ns: AtomicU64::new(0),
            last_tick_ns: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            reconnects: std::array::from_fn(|_| AtomicU64::new(0)),
            disconnected_ns: AtomicU64::new(0),
            block_stalls: AtomicU64::new(0),
            block_timeouts: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
            error: Mutex::new(None),
            last_server_error: Mutex::new(None),
        }
    }

    /// Current state.
    #[must_use]
    pub fn state(&self) -> ConnState {
        // Relaxed: a label for display; nothing is read through it.
        ConnState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(super) fn set_state(&self, s: ConnState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// Times the connection went down for `reason`.
    #[must_use]
    pub fn reconnects(&self, reason: DownReason) -> u64 {
        self.reconnects[reason as usize].load(Ordering::Relaxed)
    }

    /// `(label, count)` for every [`DownReason`], in [`DownReason::ALL`]
    /// order.
    pub fn reconnect_counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DownReason::ALL
            .into_iter()
            .map(|r| (r.label(), self.reconnects(r)))
    }

    /// Why the connection last went down, if it did.
    #[must_use]
    pub fn error(&self) -> Option<String> {
        lock(&self.error).clone()
    }

    /// The latest text `error` frame, if any.
    #[must_use]
    pub fn last_server_error(&self) -> Option<String> {
        lock(&self.last_server_error).clone()
    }
}

/// Locks `m`, ignoring poison (the data are plain values, valid after any
/// panic).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The network thread's running totals of one connection, stored into its
/// [`ConnStats`] once per loop turn.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) messages: u64,
    pub(super) ticks: u64,
    pub(super) dropped_full: u64,
    pub(super) heartbeats: u64,
    pub(super) unknown: u64,
    pub(super) after_unsubscribe: u64,
    pub(super) orders: u64,
    pub(super) malformed: [u64; REASONS],
    pub(super) text_frames: u64,
    pub(super) server_errors: u64,
    pub(super) oversized_text_frames: u64,
    pub(super) oversized_frames: u64,
    pub(super) last_frame_ns: u64,
    pub(super) last_tick_ns: u64,
    pub(super) attempts: u64,
    pub(super) reconnects: [u64; DownReason::COUNT],
    /// Closed periods only; the current one is added at each store.
    pub(super) disconnected_ns: u64,
    /// Messages held for ring room (`engine.overflow = "block"`).
    pub(super) block_stalls: u64,
    /// Holds that ran out (`engine.block_max_ms`) and dropped.
    pub(super) block_timeouts: u64,
    /// Time spent holding, summed over holds, ns.
    pub(super) blocked_ns: u64,
    /// When the latest hold ended: liveness counts from here too.
    pub(super) unblocked_ns: u64,
}

impl Tally {
    /// Stores the totals; `down_now_ns` is the length of the current closed
    /// period (0 when open). No allocation.
    pub(super) fn store(&self, s: &ConnStats, down_now_ns: u64) {
        // Relaxed throughout: each is a single-writer counter read for
        // display and accounting; no other memory is published through it.
        s.messages.store(self.messages, Ordering::Relaxed);
        s.ticks.store(self.ticks, Ordering::Relaxed);
        s.dropped_full.store(self.dropped_full, Ordering::Relaxed);
        s.heartbeats.store(self.heartbeats, Ordering::Relaxed);
        s.unknown_packets.store(self.unknown, Ordering::Relaxed);
        s.after_unsubscribe
            .store(self.after_unsubscribe, Ordering::Relaxed);
        s.order_frames.store(self.orders, Ordering::Relaxed);
        for (a, v) in s.malformed.iter().zip(self.malformed) {
            a.store(v, Ordering::Relaxed);
        }
        s.text_frames.store(self.text_frames, Ordering::Relaxed);
        s.server_errors.store(self.server_errors, Ordering::Relaxed);
        s.oversized_text_frames
            .store(self.oversized_text_frames, Ordering::Relaxed);
        s.oversized_frames
            .store(self.oversized_frames, Ordering::Relaxed);
        s.last_frame_ns.store(self.last_frame_ns, Ordering::Relaxed);
        s.last_tick_ns.store(self.last_tick_ns, Ordering::Relaxed);
        s.attempts.store(self.attempts, Ordering::Relaxed);
        for (a, v) in s.reconnects.iter().zip(self.reconnects) {
            a.store(v, Ordering::Relaxed);
        }
        s.disconnected_ns.store(
            self.disconnected_ns.saturating_add(down_now_ns),
            Ordering::Relaxed,
        );
        s.block_stalls.store(self.block_stalls, Ordering::Relaxed);
        s.block_timeouts
            .store(self.block_timeouts, Ordering::Relaxed);
        s.blocked_ns.store(self.blocked_ns, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order_and_keep_their_labels() {
        for (i, r) in DownReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
        }
        // Exported in counts, metrics and the README: these strings are API.
        let labels: Vec<_> = DownReason::ALL.map(DownReason::label).to_vec();
        assert_eq!(
            labels,
            [
                "connect_failed",
                "handshake_failed",
                "http_403",
                "http_429",
                "closed_by_server",
                "read_error",
                "stale",
            ]
        );
    }

    #[test]
    fn reconnect_counts_follow_the_tally() {
        let s = ConnStats::new("ws://x/".into(), vec![(1, Mode::Full)]);
        let mut t = Tally::default();
        t.reconnects[DownReason::Stale as usize] = 3;
        t.reconnects[DownReason::Http429 as usize] = 1;
        t.store(&s, 0);
        let counts: Vec<_> = s.reconnect_counts().collect();
        assert_eq!(counts.len(), DownReason::COUNT);
        assert!(counts.contains(&("stale", 3)));
        assert!(counts.contains(&("http_429", 1)));
        assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), 4);
    }

    #[test]
    fn state_labels_round_trip_through_the_atomic() {
        let s = ConnStats::new("ws://x/".into(), vec![(1, Mode::Full)]);
        assert_eq!(s.state().label(), "connecting");
        for st in [
            ConnState::Connecting,
            ConnState::Handshaking,
            ConnState::Open,
            ConnState::Backoff,
            ConnState::Closed,
            ConnState::AuthFailed,
            ConnState::Resolving,
            ConnState::Idle,
        ] {
            s.set_state(st);
            assert_eq!(s.state(), st);
        }
        assert_eq!(ConnState::AuthFailed.label(), "auth_failed");
    }
}
