//! The network thread: one mio `Poll` over every WebSocket connection,
//! non-blocking connect and handshake, subscription, and the read loop that
//! routes ticks into the publisher rings.
//!
//! Contract: the thread never blocks on a socket (mio is edge-triggered, so
//! every readiness event is served until `WouldBlock`), never blocks on a
//! ring (a full ring drops and counts), and allocates only at connection
//! set-up. It owns every connection, so there is exactly one writer of each
//! connection's state, and reconnection is single-flight by construction.
//!
//! Supervision: every connection is a small state machine driven by
//! readiness events and by timers checked on every loop turn. Any frame
//! (heartbeats included) proves liveness; silence past the liveness window
//! closes and reconnects. Reconnects back off exponentially with jitter,
//! capped, and the backoff resets only after the connection has stayed up
//! for `healthy_after`. HTTP 403 stops retrying (`auth_failed`) until the
//! access token changes; HTTP 429 backs off long. Every reconnect resubscribes
//! the same instruments in the same modes; the per-connection `seq` goes on.

use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::Secret;
use super::route::Router;
use super::wake::{Wake, wake_touched};
use crate::clock::now_ns;
use crate::config::{IdlePolicy, Supervision};
use crate::tick::Mode;
use crate::wire::DecodeError;
use crate::wire::text::{Request, ServerText, encode_request, parse_server_text};

const REASONS: usize = DecodeError::REASONS;

/// Connection state, as shown in status and summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// TCP connect in progress.
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
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connecting,
            1 => Self::Handshaking,
            2 => Self::Open,
            3 => Self::Backoff,
            5 => Self::AuthFailed,
            _ => Self::Closed,
        }
    }
}

/// Why a connection went down, as counted in [`ConnStats::reconnects`].
pub const RECONNECT_REASONS: [&str; 7] = [
    "connect_failed",
    "handshake_failed",
    "http_403",
    "http_429",
    "closed_by_server",
    "read_error",
    "stale",
];

#[derive(Debug, Clone, Copy)]
enum Down {
    ConnectFailed = 0,
    HandshakeFailed = 1,
    Http403 = 2,
    Http429 = 3,
    ClosedByServer = 4,
    ReadError = 5,
    Stale = 6,
}

/// Counters of one connection, written by the network thread only.
#[derive(Debug)]
pub struct ConnStats {
    /// `ws_url` without credentials.
    pub url: String,
    /// Instruments assigned to this connection.
    pub instruments: usize,
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
    /// Receive time of the latest frame of any kind (ns since the epoch; 0 = none).
    pub last_frame_ns: AtomicU64,
    /// Receive time of the latest market-data message with ticks (0 = none).
    pub last_tick_ns: AtomicU64,
    /// Connection attempts (TCP connects started), the first included.
    pub attempts: AtomicU64,
    /// Times the connection went down, by [`RECONNECT_REASONS`].
    pub reconnects: [AtomicU64; RECONNECT_REASONS.len()],
    /// Total time not open after the first open, ns (closed periods only).
    pub disconnected_ns: AtomicU64,
    /// Why the connection last went down.
    pub error: Mutex<Option<String>>,
    /// The latest text `error` frame's message.
    pub last_server_error: Mutex<Option<String>>,
}

impl ConnStats {
    fn new(url: String, instruments: usize) -> Self {
        Self {
            url,
            instruments,
            state: AtomicU8::new(ConnState::Connecting as u8),
            messages: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            unknown_packets: AtomicU64::new(0),
            malformed: std::array::from_fn(|_| AtomicU64::new(0)),
            text_frames: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            last_frame_ns: AtomicU64::new(0),
            last_tick_ns: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            reconnects: std::array::from_fn(|_| AtomicU64::new(0)),
            disconnected_ns: AtomicU64::new(0),
            error: Mutex::new(None),
            last_server_error: Mutex::new(None),
        }
    }

    /// Current state.
    #[must_use]
    pub fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Ordering::Relaxed))
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one connection subscribes to.
#[derive(Debug, Clone)]
pub(crate) struct ConnSpec {
    /// Instruments and their modes.
    pub tokens: Vec<(u32, Mode)>,
}

/// The API key and the current access token, shared by the ops side (which
/// replaces the token when its file changes) and the network thread (which
/// reads it at each connection attempt). Never on the hot path.
#[derive(Debug)]
pub struct Credentials {
    api_key: Secret,
    token: Mutex<Secret>,
    generation: AtomicU64,
}

impl Credentials {
    /// Credentials with an initial token.
    #[must_use]
    pub fn new(api_key: Secret, token: Secret) -> Self {
        Self {
            api_key,
            token: Mutex::new(token),
            generation: AtomicU64::new(0),
        }
    }

    /// Replaces the access token; connections waiting after an HTTP 403
    /// retry at once. Returns `false` (and changes nothing) when it is the
    /// same token.
    pub fn set_token(&self, token: Secret) -> bool {
        let mut t = lock(&self.token);
        if *t == token {
            return false;
        }
        *t = token;
        drop(t);
        self.generation.fetch_add(1, Ordering::SeqCst);
        true
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// `base?api_key=…&access_token=…`, percent-encoded.
    fn url(&self, base: &str) -> Secret {
        let token = lock(&self.token).clone();
        Secret::new(format!(
            "{base}?api_key={}&access_token={}",
            percent_encode(self.api_key.expose()),
            percent_encode(token.expose())
        ))
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;
type Mid = MidHandshake<ClientHandshake<MaybeTlsStream<TcpStream>>>;

enum State {
    /// Next attempt at this instant.
    Waiting(Instant),
    Connecting(TcpStream),
    Handshaking(Box<Mid>),
    Open(Box<Ws>),
    /// HTTP 403 under this credentials generation.
    AuthFailed(u64),
    Done,
}

struct Conn {
    index: u8,
    spec: ConnSpec,
    state: State,
    seq: u64,
    subscribe_chunk: usize,
    stats: Arc<ConnStats>,
    creds: Arc<Credentials>,
    sup: Supervision,
    /// Consecutive failed attempts (reset after `healthy_after` open).
    failures: u32,
    attempt_started: Instant,
    opened_at: Option<Instant>,
    down_since: Option<Instant>,
    last_ping: Instant,
    rng: u64,
    attempts: u64,
    reconnects: [u64; RECONNECT_REASONS.len()],
    disconnected_ns: u64,
    // Local running totals, stored to `stats` after each event batch.
    messages: u64,
    ticks: u64,
    dropped_full: u64,
    heartbeats: u64,
    unknown: u64,
    malformed: [u64; REASONS],
    text_frames: u64,
    server_errors: u64,
    last_frame_ns: u64,
    last_tick_ns: u64,
}

/// Settings of the network thread.
#[derive(Debug, Clone)]
pub(crate) struct NetConfig {
    pub idle: IdlePolicy,
    pub subscribe_chunk: usize,
    pub read_buffer_size: usize,
    pub max_message_size: usize,
    pub supervision: Supervision,
}

const WAKE: Token = Token(usize::MAX);

/// The network thread's state.
pub(crate) struct Net {
    poll: Poll,
    conns: Vec<Conn>,
    router: Router,
    wakes: Vec<(Arc<Wake>, Thread)>,
    stop: Arc<AtomicBool>,
    cfg: NetConfig,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// A handle that stops the network thread promptly.
#[derive(Debug, Clone)]
pub(crate) struct NetStopper {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl NetStopper {
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // A failed wake only delays the stop to the next poll timeout.
        let _ = self.waker.wake();
    }
}

/// Resolves `url`'s host and port (blocking DNS, at set-up only).
fn resolve(url: &str) -> Result<SocketAddr, String> {
    let req = url
        .into_client_request()
        .map_err(|e| format!("not a WebSocket URL: {e}"))?;
    let uri = req.uri();
    let host = uri.host().ok_or_else(|| "the URL has no host".to_owned())?;
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("wss") => 443,
        _ => 80,
    });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolved to no address"))
}

impl Net {
    /// Sets up the poll and the connections (the first attempts start on
    /// the thread's first turn) and returns the thread state with its
    /// stopper. `stats[i]` belongs to `specs[i]`.
    pub(crate) fn new(
        creds: &Arc<Credentials>,
        specs: Vec<ConnSpec>,
        stats: &[Arc<ConnStats>],
        router: Router,
        wakes: Vec<(Arc<Wake>, Thread)>,
        cfg: NetConfig,
    ) -> std::io::Result<(Self, NetStopper)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let stop = Arc::new(AtomicBool::new(false));
        let now = Instant::now();
        let seed = now_ns();
        let conns = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| Conn {
                index: u8::try_from(i).unwrap_or(u8::MAX),
                spec,
                state: State::Waiting(now),
                seq: 0,
                subscribe_chunk: cfg.subscribe_chunk,
                stats: Arc::clone(&stats[i]),
                creds: Arc::clone(creds),
                sup: cfg.supervision,
                failures: 0,
                attempt_started: now,
                opened_at: None,
                down_since: None,
                last_ping: now,
                rng: seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                attempts: 0,
                reconnects: [0; RECONNECT_REASONS.len()],
                disconnected_ns: 0,
                messages: 0,
                ticks: 0,
                dropped_full: 0,
                heartbeats: 0,
                unknown: 0,
                malformed: [0; REASONS],
                text_frames: 0,
                server_errors: 0,
                last_frame_ns: 0,
                last_tick_ns: 0,
            })
            .collect();
        let stopper = NetStopper {
            stop: Arc::clone(&stop),
            waker,
        };
        Ok((
            Self {
                poll,
                conns,
                router,
                wakes,
                stop,
                cfg,
            },
            stopper,
        ))
    }

    /// The loop: serve readiness events and timers until stopped, then close
    /// politely.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(64);
        // Park: timers (liveness, backoff) are checked at least every 50 ms.
        let timeout = match self.cfg.idle {
            IdlePolicy::Spin => Some(Duration::ZERO),
            IdlePolicy::Park => Some(Duration::from_millis(50)),
        };
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("network thread: poll failed: {e}; stopping");
                break;
            }
            for ev in &events {
                if let Some(c) = self.conns.get_mut(ev.token().0) {
                    c.drive(&mut self.router, &self.cfg, &self.wakes);
                }
            }
            let now = Instant::now();
            for c in &mut self.conns {
                c.timers(now, &self.poll, &mut self.router, &self.cfg, &self.wakes);
                c.store_stats();
            }
        }
        for c in &mut self.conns {
            c.close();
            c.store_stats();
        }
        // Dropping the router abandons the rings: publishers drain and stop.
    }
}

impl Conn {
    fn set_state(&self, s: ConnState) {
        self.stats.state.store(s as u8, Ordering::Relaxed);
    }

    /// The connection went down: count why, and schedule the next attempt
    /// (or wait for a new token after HTTP 403).
    fn down(&mut self, reason: Down, why: String) {
        let sup = self.sup;
        let now = Instant::now();
        self.reconnects[reason as usize] += 1;
        *lock(&self.stats.error) = Some(why);
        if let Some(opened) = self.opened_at.take() {
            self.down_since = Some(now);
            if now.duration_since(opened) >= sup.healthy_after {
                self.failures = 0;
            }
        }
        self.failures = self.failures.saturating_add(1);
        match reason {
            Down::Http403 => {
                self.state = State::AuthFailed(self.creds.generation());
                self.set_state(ConnState::AuthFailed);
            }
            _ => {
                let mut delay = self.backoff();
                if matches!(reason, Down::Http429) {
                    delay = delay.max(sup.backoff_429);
                }
                self.state = State::Waiting(now + delay);
                self.set_state(ConnState::Backoff);
            }
        }
    }

    /// Exponential backoff with "equal jitter": uniform in [d/2, d].
    fn backoff(&mut self) -> Duration {
        let sup = &self.sup;
        let exp = self.failures.saturating_sub(1).min(20);
        let d = sup
            .backoff_base
            .saturating_mul(1 << exp)
            .min(sup.backoff_cap);
        // xorshift64*: jitter only, no statistical needs.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let half = d / 2;
        half + Duration::from_nanos(r % (u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1)))
    }

    /// Starts a TCP connect (set-up: resolves the host, allocates).
    fn connect(&mut self, poll: &Poll) {
        self.attempts += 1;
        self.attempt_started = Instant::now();
        self.set_state(ConnState::Connecting);
        let token = Token(usize::from(self.index));
        let r = resolve(&self.stats.url).and_then(|addr| {
            let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            poll.registry()
                .register(&mut s, token, Interest::READABLE | Interest::WRITABLE)
                .map_err(|e| format!("register: {e}"))?;
            Ok(s)
        });
        match r {
            Ok(s) => self.state = State::Connecting(s),
            Err(e) => {
                let why = format!("cannot connect to {}: {e}", self.stats.url);
                self.down(Down::ConnectFailed, why);
            }
        }
        // The URL with credentials is built at the handshake, from the
        // token current then.
    }

    /// Timers: start due attempts, retry after a token change, time out
    /// slow attempts, detect silent connections, send pings, reset backoff.
    fn timers(
        &mut self,
        now: Instant,
        poll: &Poll,
        router: &mut Router,
        cfg: &NetConfig,
        wakes: &[(Arc<Wake>, Thread)],
    ) {
        let sup = self.sup;
        let ws_url = self.stats.url.clone();
        match &mut self.state {
            State::Waiting(at) if now >= *at => {
                self.connect(poll);
                // A connect refused on loopback is reported at once.
                self.drive(router, cfg, wakes);
            }
            State::AuthFailed(generation) if self.creds.generation() != *generation => {
                self.connect(poll);
            }
            State::Connecting(_) | State::Handshaking(_)
                if now.duration_since(self.attempt_started) > sup.connect_timeout =>
            {
                self.state = State::Done;
                self.down(
                    Down::HandshakeFailed,
                    format!(
                        "connecting to {ws_url} took longer than {:?}",
                        sup.connect_timeout
                    ),
                );
            }
            State::Open(ws) => {
                let silent_ns = now_ns().saturating_sub(self.last_frame_ns);
                if silent_ns > u64::try_from(sup.liveness.as_nanos()).unwrap_or(u64::MAX) {
                    self.state = State::Done;
                    self.down(
                        Down::Stale,
                        format!(
                            "no frame from {ws_url} for {} ms (liveness window {} ms); reconnecting",
                            silent_ns / 1_000_000,
                            sup.liveness.as_millis()
                        ),
                    );
                    return;
                }
                if let Some(every) = sup.ping_interval
                    && now.duration_since(self.last_ping) >= every
                {
                    self.last_ping = now;
                    // A failed ping shows up as a read or write error next.
                    let _ = ws.write(Message::Ping(tungstenite::Bytes::new()));
                    let _ = ws.flush();
                }
                if self.failures > 0
                    && self
                        .opened_at
                        .is_some_and(|t| now.duration_since(t) >= sup.healthy_after)
                {
                    self.failures = 0;
                }
            }
            _ => {}
        }
    }

    /// Advances the connection as far as readiness allows, waking the
    /// publishers it pushed ticks to after each message.
    fn drive(&mut self, router: &mut Router, cfg: &NetConfig, wakes: &[(Arc<Wake>, Thread)]) {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Connecting(stream) => {
                    match stream.take_error() {
                        Ok(None) => {}
                        Ok(Some(e)) | Err(e) => {
                            let why = format!("cannot connect to {}: {e}", self.stats.url);
                            self.down(Down::ConnectFailed, why);
                            return;
                        }
                    }
                    match stream.peer_addr() {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::NotConnected => {
                            self.state = State::Connecting(stream);
                            return;
                        }
                        Err(e) => {
                            let why = format!("cannot connect to {}: {e}", self.stats.url);
                            self.down(Down::ConnectFailed, why);
                            return;
                        }
                    }
                    // Latency over throughput for small frames; a failure
                    // here only costs latency.
                    let _ = stream.set_nodelay(true);
                    self.set_state(ConnState::Handshaking);
                    let ws_cfg = WebSocketConfig::default()
                        .read_buffer_size(cfg.read_buffer_size)
                        .max_message_size(Some(cfg.max_message_size))
                        .max_frame_size(Some(cfg.max_message_size));
                    let url = self.creds.url(&self.stats.url);
                    let request = match url.expose().into_client_request() {
                        Ok(mut r) => {
                            r.headers_mut().insert(
                                "X-Kite-Version",
                                tungstenite::http::HeaderValue::from_static("3"),
                            );
                            r
                        }
                        Err(e) => {
                            let why = format!("bad WebSocket URL {}: {e}", self.stats.url);
                            self.down(Down::HandshakeFailed, why);
                            return;
                        }
                    };
                    let r =
                        tungstenite::client_tls_with_config(request, stream, Some(ws_cfg), None);
                    if !self.after_handshake_step(r) {
                        return;
                    }
                }
                State::Handshaking(mid) => {
                    if !self.after_handshake_step(mid.handshake()) {
                        return;
                    }
                }
                State::Open(mut ws) => {
                    self.read_all(&mut ws, router, wakes);
                    if matches!(self.state, State::Done) && self.stats.state() == ConnState::Open {
                        self.state = State::Open(ws);
                    }
                    return;
                }
                other @ (State::Waiting(_) | State::AuthFailed(_) | State::Done) => {
                    self.state = other;
                    return;
                }
            }
        }
    }

    /// Handles one handshake step; returns `true` when the connection opened
    /// (and was subscribed) so the caller goes on to read.
    fn after_handshake_step(
        &mut self,
        r: Result<
            (Ws, tungstenite::handshake::client::Response),
            HandshakeError<ClientHandshake<MaybeTlsStream<TcpStream>>>,
        >,
    ) -> bool {
        match r {
            Ok((mut ws, _)) => {
                if let Err(e) = self.subscribe(&mut ws) {
                    let why = format!("cannot subscribe on {}: {e}", self.stats.url);
                    self.down(Down::HandshakeFailed, why);
                    return false;
                }
                let now = Instant::now();
                if let Some(since) = self.down_since.take() {
                    self.disconnected_ns +=
                        u64::try_from(now.duration_since(since).as_nanos()).unwrap_or(u64::MAX);
                }
                self.opened_at = Some(now);
                self.last_ping = now;
                // The liveness window starts at the open.
                self.last_frame_ns = now_ns();
                self.set_state(ConnState::Open);
                self.state = State::Open(Box::new(ws));
                true
            }
            Err(HandshakeError::Interrupted(mid)) => {
                self.state = State::Handshaking(Box::new(mid));
                false
            }
            Err(HandshakeError::Failure(e)) => {
                let why = describe_handshake_error(&self.stats.url, &e);
                let reason = match &e {
                    tungstenite::Error::Http(r) if r.status() == 403 => Down::Http403,
                    tungstenite::Error::Http(r) if r.status() == 429 => Down::Http429,
                    _ => Down::HandshakeFailed,
                };
                self.down(reason, why);
                false
            }
        }
    }

    /// Sends `subscribe` and `mode` requests in chunks (set-up: allocates).
    fn subscribe(&self, ws: &mut Ws) -> Result<(), tungstenite::Error> {
        let chunk = self.subscribe_chunk.max(1);
        let tokens: Vec<u32> = self.spec.tokens.iter().map(|t| t.0).collect();
        let mut text = String::new();
        for c in tokens.chunks(chunk) {
            encode_request(Request::Subscribe(c), &mut text);
            queued(ws.write(Message::text(text.clone())))?;
        }
        for mode in [Mode::Ltp, Mode::Quote, Mode::Full] {
            let of_mode: Vec<u32> = self
                .spec
                .tokens
                .iter()
                .filter(|t| t.1 == mode)
                .map(|t| t.0)
                .collect();
            for c in of_mode.chunks(chunk) {
                encode_request(Request::Mode(mode, c), &mut text);
                queued(ws.write(Message::text(text.clone())))?;
            }
        }
        match ws.flush() {
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            r => r,
        }
    }

    /// Reads until `WouldBlock`, routing every binary message.
    fn read_all(&mut self, ws: &mut Ws, router: &mut Router, wakes: &[(Arc<Wake>, Thread)]) {
        loop {
            match ws.read() {
                Ok(Message::Binary(bytes)) => {
                    let now = now_ns();
                    self.last_frame_ns = now;
                    match router.route(self.index, &mut self.seq, now, &bytes) {
                        Ok(r) if r.heartbeat => self.heartbeats += 1,
                        Ok(r) => {
                            self.messages += 1;
                            if r.pushed + r.dropped_full > 0 {
                                self.last_tick_ns = now;
                            }
                            self.ticks += u64::from(r.pushed + r.dropped_full);
                            self.dropped_full += u64::from(r.dropped_full);
                            self.unknown += u64::from(r.unknown);
                            wake_touched(wakes, r.touched);
                        }
                        Err(e) => self.malformed[e.reason_index()] += 1,
                    }
                }
                Ok(Message::Text(t)) => {
                    self.last_frame_ns = now_ns();
                    self.text_frames += 1;
                    if let Ok(ServerText::Error(msg)) = parse_server_text(t.as_str()) {
                        self.server_errors += 1;
                        *lock(&self.stats.last_server_error) = Some(msg.to_owned());
                    }
                }
                Ok(Message::Close(frame)) => {
                    let why = frame.map_or_else(
                        || "closed by the server".to_owned(),
                        |f| format!("closed by the server: {} {}", f.code, f.reason),
                    );
                    *lock(&self.stats.error) = Some(why);
                }
                Ok(_) => self.last_frame_ns = now_ns(),
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    let why = self
                        .stats
                        .error()
                        .unwrap_or_else(|| "closed by the server".to_owned());
                    self.down(Down::ClosedByServer, why);
                    return;
                }
                Err(e) => {
                    let why = format!("connection to {} failed: {e}", self.stats.url);
                    self.down(Down::ReadError, why);
                    return;
                }
            }
        }
        // Pongs to the server's pings are queued by `read`; send them now.
        match ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => {
                let why = format!("connection to {} failed: {e}", self.stats.url);
                self.down(Down::ReadError, why);
            }
        }
    }

    fn close(&mut self) {
        if let State::Open(ws) = &mut self.state {
            // Best effort: a polite close frame; the socket closes on drop.
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        // An auth failure stays visible in the final summary.
        if !matches!(self.state, State::AuthFailed(_)) {
            self.set_state(ConnState::Closed);
        }
        self.state = State::Done;
    }

    fn store_stats(&self) {
        let s = &self.stats;
        s.messages.store(self.messages, Ordering::Relaxed);
        s.ticks.store(self.ticks, Ordering::Relaxed);
        s.dropped_full.store(self.dropped_full, Ordering::Relaxed);
        s.heartbeats.store(self.heartbeats, Ordering::Relaxed);
        s.unknown_packets.store(self.unknown, Ordering::Relaxed);
        for (a, v) in s.malformed.iter().zip(self.malformed) {
            a.store(v, Ordering::Relaxed);
        }
        s.text_frames.store(self.text_frames, Ordering::Relaxed);
        s.server_errors.store(self.server_errors, Ordering::Relaxed);
        s.last_frame_ns.store(self.last_frame_ns, Ordering::Relaxed);
        s.last_tick_ns.store(self.last_tick_ns, Ordering::Relaxed);
        s.attempts.store(self.attempts, Ordering::Relaxed);
        for (a, v) in s.reconnects.iter().zip(self.reconnects) {
            a.store(v, Ordering::Relaxed);
        }
        let current = self.down_since.map_or(0, |t| {
            u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
        });
        s.disconnected_ns
            .store(self.disconnected_ns + current, Ordering::Relaxed);
    }
}
/// tungstenite's `write` queues the frame before it tries the socket, so
/// `WouldBlock` means "queued, flush later", not failure.
fn queued(r: Result<(), tungstenite::Error>) -> Result<(), tungstenite::Error> {
    match r {
        Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        r => r,
    }
}

fn describe_handshake_error(url: &str, e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(resp) => {
            let status = resp.status();
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                .unwrap_or_default();
            let hint = match status.as_u16() {
                403 => {
                    "the api_key or access token was rejected; check --api-key / \
                     ZERODHA__API_KEY and the token in --access-token-file / \
                     ZERODHA__ACCESS_TOKEN (Kite tokens expire daily)"
                }
                429 => "too many connections or requests for this api_key (at most 3 sockets)",
                _ => "the server refused the WebSocket upgrade",
            };
            let body = if body.is_empty() {
                String::new()
            } else {
                format!(" (server said: {})", body.trim())
            };
            format!("upgrade refused by {url}: HTTP {status}: {hint}{body}")
        }
        other if url.starts_with("wss://") => format!(
            "WebSocket handshake with {url} failed: {other} (is the server speaking TLS on \
             this port? a plain server needs ws://)"
        ),
        other => format!("WebSocket handshake with {url} failed: {other}"),
    }
}

/// Splits `instruments` over at most `max_connections` connections of at
/// most `per_connection` each, balanced.
///
/// # Errors
/// When they do not fit, naming the counts and the fix.
pub fn shard(
    instruments: &[(u32, Mode)],
    per_connection: usize,
    max_connections: usize,
) -> Result<Vec<Vec<(u32, Mode)>>, String> {
    if instruments.is_empty() {
        return Err("no instruments to subscribe; give --instruments CSV".into());
    }
    let per = per_connection.max(1);
    let n = instruments.len().div_ceil(per);
    if n > max_connections {
        return Err(format!(
            "{} instruments need {n} connections of at most {per}, but the limit is \
             {max_connections} (Kite allows 3 × 3000 per api_key); subscribe fewer \
             instruments or shard them over feed hosts",
            instruments.len()
        ));
    }
    let base = instruments.len() / n;
    let extra = instruments.len() % n;
    let mut out = Vec::with_capacity(n);
    let mut at = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        out.push(instruments[at..at + len].to_vec());
        at += len;
    }
    Ok(out)
}

pub(crate) fn new_stats(url: &str, specs: &[ConnSpec]) -> Vec<Arc<ConnStats>> {
    specs
        .iter()
        .map(|s| Arc::new(ConnStats::new(url.to_owned(), s.tokens.len())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_balanced_and_bounded() {
        let v: Vec<(u32, Mode)> = (0..7000).map(|t| (t, Mode::Full)).collect();
        let s = shard(&v, 3000, 3).unwrap();
        assert_eq!(
            s.iter().map(Vec::len).collect::<Vec<_>>(),
            [2334, 2333, 2333]
        );
        assert_eq!(s.concat(), v);
        let err = shard(&v, 3000, 2).unwrap_err();
        assert!(err.contains("7000 instruments need 3 connections"), "{err}");
        assert!(shard(&[], 3000, 3).is_err());
    }
}
