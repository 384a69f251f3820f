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
use super::budget::ReadBudget;
use super::creds::Credentials;
use super::resolve::Resolver;
use super::stats::{ConnState, ConnStats, DownReason, Tally, lock};
use super::ws::{self, HandshakeStep, Mid, Ws};
use super::{ConnSpec, NetConfig};
use crate::clock::now_ns;
use crate::config::Supervision;
use crate::engine::route::Router;
use crate::engine::wake::{Wake, wake_touched};
use crate::logging::{MAX_STORED_TEXT, truncate};
use crate::wire::text::{ServerText, parse_server_text};

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
type Down = (DownReason, String);

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
        Self {
            index,
            spec,
            state: State::Start,
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
        cfg: &NetConfig,
        wakes: &[(Arc<Wake>, Thread)],
    ) {
        self.driven_turn = turn;
        self.more = false;
        loop {
            match &mut self.state {
                State::Open(ws) => {
                    let r = read_all(
                        ws,
                        self.index,
                        &mut self.seq,
                        &mut self.tally,
                        &self.stats,
                        router,
                        wakes,
                        cfg.max_text_frame_bytes,
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
                | State::Closed => return,
            }
            // Connected or upgrading: the next step consumes the socket.
            let step = match self.take() {
                State::Connecting(stream) => {
                    // Latency over throughput for small frames; a failure
                    // here only costs latency.
                    let _ = stream.set_nodelay(true);
                    let (url, generation) = self.creds.url(&self.stats.url);
                    self.attempt_generation = generation;
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
    pub(super) fn timers(
        &mut self,
        now: Instant,
        turn: u64,
        poll: &Poll,
        router: &mut Router,
        cfg: &NetConfig,
        wakes: &[(Arc<Wake>, Thread)],
    ) {
        let sup = self.sup;
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
                    self.drive(turn, router, cfg, wakes);
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
                let silent_ns = now_ns().saturating_sub(self.tally.last_frame_ns);
                if silent_ns > nanos(sup.liveness) {
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
        if !matches!(self.state, State::AuthFailed(_)) {
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
fn escaped(s: String) -> String {
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

/// Reads until `WouldBlock`, routing every binary message onto the rings
/// and waking the publishers it touched.
///
/// Allocation-free for binary messages, heartbeats, pings and pongs over
/// `ws://`: tungstenite (0.30) hands each message out as a shared slice of
/// its `BytesMut` read buffer, and once the message is dropped (here, before
/// the next read) the buffer is unique again and `reserve` reclaims its
/// space in place. Two bounded exceptions, both outside the steady state:
/// the first message after the upgrade turns the buffer into a shared one
/// (one allocation), and a backlog that fills the buffer in one read (about
/// `read_buffer_size`) or a message larger than it makes the buffer grow:
/// geometrically, and only until it holds about two reads plus the largest
/// message, since a read never takes more than `read_buffer_size`.
/// Over `wss://`, rustls's buffered reader copies each TLS record into a
/// new `Vec` (one allocation per record); avoiding that needs rustls's
/// unbuffered API under tungstenite.
///
/// # Errors
/// Why the connection is down, when it is.
#[allow(
    clippy::too_many_arguments,
    reason = "the connection's fields, split so the socket and the tally borrow apart"
)]
fn read_all(
    ws: &mut Ws,
    index: u8,
    seq: &mut u64,
    tally: &mut Tally,
    stats: &ConnStats,
    router: &mut Router,
    wakes: &[(Arc<Wake>, Thread)],
    max_text: usize,
) -> Result<bool, Down> {
    let mut budget = ReadBudget::default();
    let more = loop {
        if budget.spent() {
            // Data may be left: the caller reads again next turn.
            break true;
        }
        let msg = ws.read();
        if let Ok(m) = &msg {
            budget.charge(m.len());
        }
        match msg {
            Ok(Message::Binary(bytes)) => {
                let now = now_ns();
                tally.last_frame_ns = now;
                match router.route(index, seq, now, &bytes) {
                    Ok(r) if r.heartbeat => tally.heartbeats += 1,
                    Ok(r) => {
                        tally.messages += 1;
                        if r.pushed + r.dropped_full > 0 {
                            tally.last_tick_ns = now;
                        }
                        tally.ticks += u64::from(r.pushed + r.dropped_full);
                        tally.dropped_full += u64::from(r.dropped_full);
                        tally.unknown += u64::from(r.unknown);
                        wake_touched(wakes, r.touched);
                    }
                    Err(e) => tally.malformed[e.reason_index()] += 1,
                }
            }
            Ok(Message::Text(t)) => {
                tally.last_frame_ns = now_ns();
                tally.text_frames += 1;
                // Larger than any server message: counted, never parsed
                // (parsing and keeping it would cost its size again, per
                // frame). tungstenite has read it whole into its buffer,
                // bounded by `max_message_size` (README, "Fault drills").
                if t.len() > max_text {
                    tally.oversized_text_frames += 1;
                } else if let Ok(ServerText::Error(msg)) = parse_server_text(t.as_str()) {
                    tally.server_errors += 1;
                    *lock(&stats.last_server_error) = Some(escaped(msg));
                }
            }
            Ok(Message::Close(frame)) => {
                let why = frame.map_or_else(
                    || "closed by the server".to_owned(),
                    |f| format!("closed by the server: {} {}", f.code, f.reason),
                );
                *lock(&stats.error) = Some(escaped(why));
            }
            Ok(_) => tally.last_frame_ns = now_ns(),
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                let why = stats
                    .error()
                    .unwrap_or_else(|| "closed by the server".to_owned());
                return Err((DownReason::ClosedByServer, why));
            }
            Err(tungstenite::Error::Capacity(
                tungstenite::error::CapacityError::MessageTooLong { size, max_size },
            )) => {
                // Refused from its header: none of it was buffered.
                tally.oversized_frames += 1;
                let why = format!(
                    "{} sent a frame of {size} bytes, over the {max_size}-byte limit (twice \
                     the largest market-data message of this connection, at least 1 MiB); \
                     reconnecting",
                    stats.url
                );
                return Err((DownReason::ReadError, why));
            }
            Err(e) => {
                let why = format!("connection to {} failed: {e}", stats.url);
                return Err((DownReason::ReadError, why));
            }
        }
    };
    // Pongs to the server's pings are queued by `read`; send them now.
    ws::queued(ws.flush()).map_err(|e| {
        let why = format!("connection to {} failed: {e}", stats.url);
        (DownReason::ReadError, why)
    })?;
    Ok(more)
}
