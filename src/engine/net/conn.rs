//! One connection's state machine: resolve (on its resolver thread,
//! `resolve.rs`), connect, upgrade, subscribe, read and route within a
//! per-turn read budget (`budget.rs`), go down, back off, reconnect.
//!
//! Runs on the network thread, which owns every [`Conn`]: one writer of each
//! connection's state, so reconnection is single-flight by construction. A
//! connection owns its socket (inside its [`State`]), its [`Backoff`] and its
//! running totals ([`Tally`]); it publishes its state label and totals to its
//! [`ConnStats`].
//!
//! Allocation: on transitions (connect, upgrade, subscribe, going down:
//! error texts, the socket and its buffers) and for a text `error` frame
//! (its message is kept). A turn that reads market data, heartbeats, pings
//! or pongs, or finds nothing to do, allocates nothing over `ws://`
//! (`tests/no_alloc.rs` checks it; see `read_all` for the read buffer's
//! bounded growth and for TLS).

use std::io::ErrorKind;
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Poll, Token};
use tungstenite::Message;
use tungstenite::handshake::HandshakeError;

use super::backoff::Backoff;
use super::creds::Credentials;
use super::hold::{Held, Retry, retry};
use super::read::{Ctx, read_all};
use super::resolve::Resolver;
use super::stats::{ConnState, ConnStats, DownReason, Tally, lock};
use super::ws::{self, HandshakeStep, Mid, Ws};
use super::{ConnSpec, NetConfig};
use crate::clock::now_ns;
use crate::config::Supervision;
use crate::engine::orders::OrderTx;
use crate::engine::route::Router;
use crate::engine::wake::Wake;
use crate::logging::{MAX_STORED_TEXT, truncate};

/// Where a connection is. The one state of a connection: its published
/// label is [`State::label`].
enum State {
    /// Before the first attempt, which starts on the first timer turn.
    Start,
    /// Down; the next attempt starts at this instant.
    Waiting(Instant),
    /// Waiting for the host's address from the resolver thread.
    Resolving,
    /// TCP connect in progress.
    Connecting(TcpStream),
    /// TLS / WebSocket upgrade in progress.
    Handshaking(Box<Mid>),
    /// Subscribed and streaming.
    Open(Box<Ws>),
    /// Refused with HTTP 403 under this credentials generation; retried
    /// when the token changes.
    AuthFailed(u64),
    /// Closed at shutdown.
    Closed,
    /// No instruments assigned: not connected (README, "Live
    /// subscriptions").
    Idle,
}

impl State {
    /// The label published for this state.
    const fn label(&self) -> ConnState {
        match self {
            Self::Start | Self::Connecting(_) => ConnState::Connecting,
            Self::Resolving => ConnState::Resolving,
            Self::Handshaking(_) => ConnState::Handshaking,
            Self::Open(_) => ConnState::Open,
            Self::Waiting(_) => ConnState::Backoff,
            Self::AuthFailed(_) => ConnState::AuthFailed,
            Self::Closed => ConnState::Closed,
            Self::Idle => ConnState::Idle,
        }
    }
}

/// One connection, owned by the network thread.
pub(super) struct Conn {
    /// Index among the connections: its mio token and the ticks' `conn`.
    index: u8,
    spec: ConnSpec,
    state: State,
    /// Per-connection tick sequence; goes on across reconnects.
    seq: u64,
    stats: Arc<ConnStats>,
    creds: Arc<Credentials>,
    sup: Supervision,
    backoff: Backoff,
    attempt_started: Instant,
    /// The credentials generation of the token the current (or latest)
    /// attempt's URL carries; a 403 waits for a newer one.
    attempt_generation: u64,
    /// Since when an open connection has been down.
    down_since: Option<Instant>,
    last_ping: Instant,
    tally: Tally,
    resolver: Resolver,
    /// The read budget ran out with data left: read again next turn
    /// without waiting for readiness (mio is edge-triggered).
    more: bool,
    /// The loop turn this connection was last driven in (one budget per
    /// turn).
    driven_turn: u64,
    /// Tokens unsubscribed a moment ago (sorted): their packets still in
    /// flight from the server are skipped and counted until `gone_until`.
    gone: Vec<u32>,
    gone_until: Option<Instant>,
    /// A message waiting for ring room (`engine.overflow = "block"`,
    /// `hold.rs`): nothing more is read from the socket meanwhile.
    held: Option<Held>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("index", &self.index)
            .field("state", &self.state.label())
            .finish_non_exhaustive()
    }
}

/// Why a read loop stopped the connection, and the words for it.
pub(super) type Down = (DownReason, String);

/// How long after an unsubscribe the server's packets for the removed
/// tokens are skipped (and counted) rather than routed.
const GONE_GRACE: Duration = Duration::from_secs(10);

impl Conn {
    pub(super) fn new(
        index: u8,
        spec: ConnSpec,
        stats: Arc<ConnStats>,
        creds: Arc<Credentials>,
        sup: Supervision,
        seed: u64,
        resolver: Resolver,
    ) -> Self {
        let now = Instant::now();
        let generation = creds.generation();
        let state = if spec.tokens.is_empty() {
            State::Idle
        } else {
            State::Start
        };
        Self {
            index,
            spec,
            state,
            seq: 0,
            stats,
            creds,
            sup,
            backoff: Backoff::of(&sup, seed),
            attempt_started: now,
            attempt_generation: generation,
            down_since: None,
            last_ping: now,
            tally: Tally::default(),
            resolver,
            more: false,
            driven_turn: u64::MAX,
            gone: Vec::new(),
            gone_until: None,
            held: None,
        }
    }

    /// The instruments this connection holds now.
    pub(super) fn tokens(&self) -> &[(u32, crate::tick::Mode)] {
        &self.spec.tokens
    }

    /// Applies a live change (control plane, on the network thread;
    /// allocates): an open connection sends the chunked requests at once;
    /// any other takes the new list on its next connect; one left with no
    /// instruments closes politely and goes idle, and an idle one given
    /// instruments connects on the next turn. An untouched connection is
    /// not called.
    pub(super) fn apply(&mut self, d: super::subs::ConnDelta, cfg: &NetConfig, now: Instant) {
        self.spec.tokens = d.after;
        self.stats.instruments.store(
            self.spec.tokens.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.stats
            .subscriptions
            .store(Arc::new(self.spec.tokens.clone()));
        self.stats
            .changes_applied
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.spec.tokens.is_empty() {
            self.close();
            self.gone.clear();
            self.gone_until = None;
            self.down_since = None;
            self.enter(State::Idle);
            return;
        }
        if matches!(self.state, State::Idle | State::Closed) {
            self.backoff = Backoff::of(&self.sup, now_ns() ^ u64::from(self.index));
            self.enter(State::Start);
            return;
        }
        let State::Open(ws) = &mut self.state else {
            return;
        };
        // The frame limit follows the connection's instruments.
        let limit = ws::frame_limit(cfg, self.spec.tokens.len());
        ws.set_config(|c| {
            c.max_message_size = Some(limit);
            c.max_frame_size = Some(limit);
        });
        let r = ws::apply_delta(
            ws,
            &d.unsubscribe,
            &d.subscribe,
            &d.remode,
            cfg.subscribe_chunk,
        );
        // Packets of the removed tokens already sent by the server are
        // skipped (and counted) for a grace period; a token subscribed again
        // is live again at once.
        self.gone.extend_from_slice(&d.unsubscribe);
        self.gone.sort_unstable();
        self.gone.dedup();
        let kept = &self.spec.tokens;
        self.gone
            .retain(|t| kept.binary_search_by_key(t, |x| x.0).is_err());
        self.gone_until = Some(now + GONE_GRACE);
        if let Err(e) = r {
            let why = format!("cannot change subscriptions on {}: {e}", self.stats.url);
            self.down(DownReason::ReadError, why, now);
        }
    }

    /// The one way to change state: the label follows.
    fn enter(&mut self, s: State) {
        self.state = s;
        self.stats.set_state(self.state.label());
    }

    /// Takes the state out to consume it (the socket moves into the next
    /// step); the caller [`enter`](Self::enter)s the next one. The
    /// placeholder is never published.
    fn take(&mut self) -> State {
        std::mem::replace(&mut self.state, State::Closed)
    }

    /// The connection went down at `now`: count why, and schedule the next
    /// attempt (or wait for a new token after HTTP 403).
    fn down(&mut self, reason: DownReason, why: String, now: Instant) {
        self.tally.reconnects[reason as usize] += 1;
        // `why` may quote the server (a refused upgrade's body, a close
        // reason, an error): cut and escaped before anyone shows it.
        *lock(&self.stats.error) = Some(escaped(why));
        if matches!(self.state, State::Open(_)) {
            self.down_since = Some(now);
        }
        let next = match reason {
            DownReason::Http403 => {
                self.backoff.failed(now);
                // The generation the refused URL was built with, not the
                // current one: a token written during the attempt retries.
                State::AuthFailed(self.attempt_generation)
            }
            DownReason::Http429 => State::Waiting(now + self.backoff.failed_throttled(now)),
            _ => State::Waiting(now + self.backoff.failed(now)),
        };
        // Drops the socket, if any (closing it deregisters it from the poll).
        self.enter(next);
    }

    /// Starts an attempt: asks the resolver thread for the host's address
    /// (set-up: allocates; never blocks). The URL with credentials is built
    /// at the upgrade, from the token current then.
    fn connect(&mut self, now: Instant) {
        self.tally.attempts += 1;
        self.attempt_started = now;
        match self.resolver.request(&self.stats.url) {
            Ok(()) => self.enter(State::Resolving),
            Err(e) => {
                let why = format!("cannot resolve {}: {e}", self.stats.url);
                self.down(DownReason::ConnectFailed, why, now);
            }
        }
    }

    /// The address arrived: starts the non-blocking TCP connect.
    fn dial(&mut self, addr: Result<std::net::SocketAddr, String>, poll: &Poll, now: Instant) {
        match addr.and_then(|a| ws::dial(a, poll, Token(usize::from(self.index)))) {
            Ok(s) => self.enter(State::Connecting(s)),
            Err(e) => {
                let why = format!("cannot connect to {}: {e}", self.stats.url);
                self.down(DownReason::ConnectFailed, why, now);
            }
        }
    }

    /// Whether the read budget ran out with data left (see [`drive`]).
    ///
    /// [`drive`]: Self::drive
    pub(super) const fn has_more(&self) -> bool {
        self.more
    }

    /// Whether a message waits for ring room (retried every turn).
    pub(super) const fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Routes a held message now, dropping (and counting) what does not
    /// fit: the connection is no longer open, or the engine is stopping.
    pub(super) fn release_held(
        &mut self,
        router: &mut Router,
        cfg: &NetConfig,
        wakes: &[(Arc<Wake>, Thread)],
    ) {
        let rx = Retry {
            index: self.index,
            gone: &self.gone,
            wakes,
            block_max: cfg.block_max,
            force: true,
        };
        retry(&mut self.held, &rx, &mut self.seq, &mut self.tally, router);
    }

    /// Whether this connection was driven in loop turn `turn` already.
    pub(super) const fn driven_in(&self, turn: u64) -> bool {
        self.driven_turn == turn
    }

    /// Advances the connection as far as readiness allows, within one
    /// turn's read budget, waking the publishers it pushed ticks to. `turn`
    /// is the loop turn (one budget per turn).
    pub(super) fn drive(
        &mut self,
        turn: u64,
        router: &mut Router,
        orders: &mut Option<OrderTx>,
        cfg: &NetConfig,
        wakes: &[(Arc<Wake>, Thread)],
    ) {
        self.driven_turn = turn;
        self.more = false;
        if self.held.is_some() && !matches!(self.state, State::Open(_)) {
            self.release_held(router, cfg, wakes);
        }
        loop {
            match &mut self.state {
                State::Open(ws) => {
                    let r = read_all(
                        ws,
                        Ctx {
                            index: self.index,
                            stats: &self.stats,
                            wakes,
                            max_text: cfg.max_text_frame_bytes,
                            gone: &self.gone,
                            block_max: cfg.block_max,
                        },
                        &mut self.seq,
                        &mut self.tally,
                        router,
                        orders,
                        &mut self.held,
                    );
                    match r {
                        Ok(more) => self.more = more,
                        Err((reason, why)) => self.down(reason, why, Instant::now()),
                    }
                    return;
                }
                State::Connecting(stream) => match connected(stream) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        let why = format!("cannot connect to {}: {e}", self.stats.url);
                        self.down(DownReason::ConnectFailed, why, Instant::now());
                        return;
                    }
                },
                State::Handshaking(_) => {}
                State::Start
                | State::Waiting(_)
                | State::Resolving
                | State::AuthFailed(_)
                | State::Closed
                | State::Idle => return,
            }
            // Connected or upgrading: the next step consumes the socket.
            let step = match self.take() {
                State::Connecting(stream) => {
                    // Latency over throughput for small frames; a failure
                    // here only costs latency.
                    let _ = stream.set_nodelay(true);
                    let (url, generation) = self.creds.url(&self.stats.url);
                    self.attempt_generation = generation;
                    // Follows live changes (`apply`).
                    let max_frame = ws::frame_limit(cfg, self.spec.tokens.len());
                    match ws::start_handshake(stream, &url, &self.stats.url, cfg, max_frame) {
                        Ok(step) => step,
                        Err(why) => {
                            self.down(DownReason::HandshakeFailed, why, Instant::now());
                            return;
                        }
                    }
                }
                State::Handshaking(mid) => mid.handshake(),
                other => {
                    // Not reached (matched above); put it back unchanged.
                    self.state = other;
                    return;
                }
            };
            if !self.after_handshake_step(step, cfg) {
                return;
            }
            // Opened: read whatever already arrived.
        }
    }

    /// Handles one upgrade step; returns `true` when the connection opened
    /// (and was subscribed).
    fn after_handshake_step(&mut self, step: HandshakeStep, cfg: &NetConfig) -> bool {
        match step {
            Ok((mut ws, _)) => {
                if let Err(e) = ws::subscribe(&mut ws, &self.spec.tokens, cfg.subscribe_chunk) {
                    let why = format!("cannot subscribe on {}: {e}", self.stats.url);
                    self.down(DownReason::HandshakeFailed, why, Instant::now());
                    return false;
                }
                let now = Instant::now();
                if let Some(since) = self.down_since.take() {
                    self.tally.disconnected_ns += nanos(now.saturating_duration_since(since));
                }
                self.backoff.opened(now);
                self.last_ping = now;
                // The liveness window starts at the open.
                self.tally.last_frame_ns = now_ns();
                self.enter(State::Open(Box::new(ws)));
                true
            }
            Err(HandshakeError::Interrupted(mid)) => {
                self.enter(State::Handshaking(Box::new(mid)));
                false
            }
            Err(HandshakeError::Failure(e)) => {
                let why = ws::describe_handshake_error(&self.stats.url, &e);
                let reason = match &e {
                    tungstenite::Error::Http(r) if r.status() == 403 => DownReason::Http403,
                    tungstenite::Error::Http(r) if r.status() == 429 => DownReason::Http429,
                    _ => DownReason::HandshakeFailed,
                };
                self.down(reason, why, Instant::now());
                false
            }
        }
    }

    /// Timers, on every loop turn: start due attempts, retry after a token
    /// change, time out slow attempts, detect silent connections, send
    /// pings, reset the backoff once healthy. No allocation unless a
    /// transition happens.
    #[allow(
        clippy::too_many_arguments,
        reason = "the network thread's parts, borrowed apart from its connections"
    )]
    pub(super) fn timers(
        &mut self,
        now: Instant,
        turn: u64,
        poll: &Poll,
        router: &mut Router,
        orders: &mut Option<OrderTx>,
        cfg: &NetConfig,
        wakes: &[(Arc<Wake>, Thread)],
    ) {
        let sup = self.sup;
        if self.gone_until.is_some_and(|t| now >= t) {
            // Keeps its capacity: no allocation on the next change.
            self.gone.clear();
            self.gone_until = None;
        }
        match &mut self.state {
            State::Start => self.connect(now),
            State::Waiting(at) if now >= *at => self.connect(now),
            State::AuthFailed(generation) if self.creds.generation() != *generation => {
                self.connect(now);
            }
            State::Resolving => {
                if let Some(addr) = self.resolver.try_answer() {
                    self.dial(addr, poll, now);
                    // A connect refused on loopback is reported at once.
                    self.drive(turn, router, orders, cfg, wakes);
                } else if now.saturating_duration_since(self.attempt_started) > sup.connect_timeout
                {
                    let why = format!(
                        "resolving the host of {} took longer than {:?}",
                        self.stats.url, sup.connect_timeout
                    );
                    self.down(DownReason::ConnectFailed, why, now);
                }
            }
            State::Connecting(_) | State::Handshaking(_)
                if now.saturating_duration_since(self.attempt_started) > sup.connect_timeout =>
            {
                let why = format!(
                    "connecting to {} took longer than {:?}",
                    self.stats.url, sup.connect_timeout
                );
                drop(self.take());
                self.down(DownReason::HandshakeFailed, why, now);
            }
            State::Open(ws) => {
                // Time spent holding a message is not silence: we chose not
                // to read (README, "Overflow: block or drop").
                let since = self.tally.last_frame_ns.max(self.tally.unblocked_ns);
                let silent_ns = now_ns().saturating_sub(since);
                if self.held.is_none() && silent_ns > nanos(sup.liveness) {
                    let why = format!(
                        "no frame from {} for {} ms (liveness window {} ms); reconnecting",
                        self.stats.url,
                        silent_ns / 1_000_000,
                        sup.liveness.as_millis()
                    );
                    self.down(DownReason::Stale, why, now);
                    return;
                }
                if let Some(every) = sup.ping_interval
                    && now.saturating_duration_since(self.last_ping) >= every
                {
                    self.last_ping = now;
                    // A failed ping shows up as a read or write error next.
                    let _ = ws.write(Message::Ping(tungstenite::Bytes::new()));
                    let _ = ws.flush();
                }
                self.backoff.check_healthy(now);
            }
            _ => {}
        }
    }

    /// At shutdown: a polite close frame, then `closed` (an auth failure
    /// stays visible in the final summary).
    pub(super) fn close(&mut self) {
        if let State::Open(ws) = &mut self.state {
            // Best effort; the socket closes on drop.
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        if !matches!(self.state, State::AuthFailed(_) | State::Idle) {
            self.enter(State::Closed);
        }
    }

    /// Stores the running totals into the shared stats (every turn; no
    /// allocation).
    pub(super) fn store_stats(&self, now: Instant) {
        let down_now = self
            .down_since
            .map_or(0, |t| nanos(now.saturating_duration_since(t)));
        self.tally.store(&self.stats, down_now);
    }
}

/// Foreign text as stored for the summary, HTTP and logs: cut to
/// [`MAX_STORED_TEXT`] and escaped (no line can be forged with it).
pub(super) fn escaped(s: String) -> String {
    match truncate(&s, MAX_STORED_TEXT) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(t) => t,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether a non-blocking connect has completed.
fn connected(stream: &TcpStream) -> std::io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}
