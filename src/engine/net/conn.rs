//! One connection's state machine: connect, upgrade, subscribe, read and
//! route, go down, back off, reconnect.
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
use super::stats::{ConnState, ConnStats, DownReason, Tally, lock};
use super::ws::{self, HandshakeStep, Mid, Ws};
use super::{ConnSpec, NetConfig};
use crate::clock::now_ns;
use crate::config::Supervision;
use crate::engine::route::Router;
use crate::engine::wake::{Wake, wake_touched};
use crate::wire::text::{ServerText, parse_server_text};

/// Where a connection is. The one state of a connection: its published
/// label is [`State::label`].
enum State {
    /// Before the first attempt, which starts on the first timer turn.
    Start,
    /// Down; the next attempt starts at this instant.
    Waiting(Instant),
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
    /// Since when an open connection has been down.
    down_since: Option<Instant>,
    last_ping: Instant,
    tally: Tally,
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
        now: Instant,
    ) -> Self {
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
            down_since: None,
            last_ping: now,
            tally: Tally::default(),
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
        *lock(&self.stats.error) = Some(why);
        if matches!(self.state, State::Open(_)) {
            self.down_since = Some(now);
        }
        let next = match reason {
            DownReason::Http403 => {
                self.backoff.failed(now);
                State::AuthFailed(self.creds.generation())
            }
            DownReason::Http429 => State::Waiting(now + self.backoff.failed_throttled(now)),
            _ => State::Waiting(now + self.backoff.failed(now)),
        };
        // Drops the socket, if any (closing it deregisters it from the poll).
        self.enter(next);
    }

    /// Starts a TCP connect (set-up: resolves the host, allocates). The URL
    /// with credentials is built at the upgrade, from the token current then.
    fn connect(&mut self, poll: &Poll, now: Instant) {
        self.tally.attempts += 1;
        self.attempt_started = now;
        match ws::dial(&self.stats.url, poll, Token(usize::from(self.index))) {
            Ok(s) => self.enter(State::Connecting(s)),
            Err(e) => {
                let why = format!("cannot connect to {}: {e}", self.stats.url);
                self.down(DownReason::ConnectFailed, why, now);
            }
        }
    }

    /// Advances the connection as far as readiness allows, waking the
    /// publishers it pushed ticks to.
    pub(super) fn drive(
        &mut self,
        router: &mut Router,
        cfg: &NetConfig,
        wakes: &[(Arc<Wake>, Thread)],
    ) {
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
                    );
                    if let Err((reason, why)) = r {
                        self.down(reason, why, Instant::now());
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
                State::Start | State::Waiting(_) | State::AuthFailed(_) | State::Closed => return,
            }
            // Connected or upgrading: the next step consumes the socket.
            let step = match self.take() {
                State::Connecting(stream) => {
                    // Latency over throughput for small frames; a failure
                    // here only costs latency.
                    let _ = stream.set_nodelay(true);
                    let url = self.creds.url(&self.stats.url);
                    match ws::start_handshake(stream, &url, &self.stats.url, cfg) {
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
        poll: &Poll,
        router: &mut Router,
        cfg: &NetConfig,
        wakes: &[(Arc<Wake>, Thread)],
    ) {
        let sup = self.sup;
        match &mut self.state {
            State::Start => {
                self.connect(poll, now);
                // A connect refused on loopback is reported at once.
                self.drive(router, cfg, wakes);
            }
            State::Waiting(at) if now >= *at => {
                self.connect(poll, now);
                self.drive(router, cfg, wakes);
            }
            State::AuthFailed(generation) if self.creds.generation() != *generation => {
                self.connect(poll, now);
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
fn read_all(
    ws: &mut Ws,
    index: u8,
    seq: &mut u64,
    tally: &mut Tally,
    stats: &ConnStats,
    router: &mut Router,
    wakes: &[(Arc<Wake>, Thread)],
) -> Result<(), Down> {
    loop {
        match ws.read() {
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
                if let Ok(ServerText::Error(msg)) = parse_server_text(t.as_str()) {
                    tally.server_errors += 1;
                    *lock(&stats.last_server_error) = Some(msg.to_owned());
                }
            }
            Ok(Message::Close(frame)) => {
                let why = frame.map_or_else(
                    || "closed by the server".to_owned(),
                    |f| format!("closed by the server: {} {}", f.code, f.reason),
                );
                *lock(&stats.error) = Some(why);
            }
            Ok(_) => tally.last_frame_ns = now_ns(),
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                let why = stats
                    .error()
                    .unwrap_or_else(|| "closed by the server".to_owned());
                return Err((DownReason::ClosedByServer, why));
            }
            Err(e) => {
                let why = format!("connection to {} failed: {e}", stats.url);
                return Err((DownReason::ReadError, why));
            }
        }
    }
    // Pongs to the server's pings are queued by `read`; send them now.
    ws::queued(ws.flush()).map_err(|e| {
        let why = format!("connection to {} failed: {e}", stats.url);
        (DownReason::ReadError, why)
    })
}
