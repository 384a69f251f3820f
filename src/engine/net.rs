//! The network thread: one mio `Poll` over every WebSocket connection,
//! non-blocking connect and handshake, subscription, and the read loop that
//! routes ticks into the publisher rings.
//!
//! Contract: the thread never blocks on a socket (mio is edge-triggered, so
//! every readiness event is served until `WouldBlock`), never blocks on a
//! ring (a full ring drops and counts), and allocates only at connection
//! set-up. It owns every connection, so there is exactly one writer of each
//! connection's state. Reconnection is not built yet: a connection that fails
//! stays failed, with its error in the status line and the summary.

use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::publish::Wake;
use super::route::Router;
use super::{IdlePolicy, Secret, now_ns};
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
    /// Failed (error recorded); not retried yet.
    Failed = 3,
    /// Closed by the server or by shutdown.
    Closed = 4,
}

impl ConnState {
    /// Stable lower-case label.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Handshaking => "handshaking",
            Self::Open => "open",
            Self::Failed => "failed",
            Self::Closed => "closed",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connecting,
            1 => Self::Handshaking,
            2 => Self::Open,
            3 => Self::Failed,
            _ => Self::Closed,
        }
    }
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
    /// Why the connection failed or closed.
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
            error: Mutex::new(None),
            last_server_error: Mutex::new(None),
        }
    }

    /// Current state.
    #[must_use]
    pub fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Why the connection failed or closed, if it did.
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
    /// Full URL, with credentials: never printed.
    pub url: Secret,
    /// Instruments and their modes.
    pub tokens: Vec<(u32, Mode)>,
}

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;
type Mid = MidHandshake<ClientHandshake<MaybeTlsStream<TcpStream>>>;

enum State {
    Connecting(TcpStream),
    Handshaking(Box<Mid>),
    Open(Box<Ws>),
    Done,
}

struct Conn {
    index: u8,
    spec: ConnSpec,
    state: State,
    seq: u64,
    subscribe_chunk: usize,
    stats: Arc<ConnStats>,
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
}

/// Settings of the network thread.
#[derive(Debug, Clone)]
pub(crate) struct NetConfig {
    pub idle: IdlePolicy,
    pub subscribe_chunk: usize,
    pub read_buffer_size: usize,
    pub max_message_size: usize,
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
    /// Sets up the poll, starts every TCP connect, and returns the thread
    /// state with its stopper. `stats[i]` belongs to `specs[i]`.
    pub(crate) fn new(
        specs: Vec<ConnSpec>,
        stats: &[Arc<ConnStats>],
        router: Router,
        wakes: Vec<(Arc<Wake>, Thread)>,
        cfg: NetConfig,
    ) -> std::io::Result<(Self, NetStopper)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut conns = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let stats = Arc::clone(&stats[i]);
            let mut conn = Conn {
                index: u8::try_from(i).unwrap_or(u8::MAX),
                spec,
                state: State::Done,
                seq: 0,
                subscribe_chunk: cfg.subscribe_chunk,
                stats,
                messages: 0,
                ticks: 0,
                dropped_full: 0,
                heartbeats: 0,
                unknown: 0,
                malformed: [0; REASONS],
                text_frames: 0,
                server_errors: 0,
                last_frame_ns: 0,
            };
            match resolve(conn.spec.url.expose()).and_then(|addr| {
                let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
                poll.registry()
                    .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                    .map_err(|e| format!("register: {e}"))?;
                Ok(s)
            }) {
                Ok(s) => conn.state = State::Connecting(s),
                Err(e) => conn.fail(e),
            }
            conns.push(conn);
        }
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

    /// The loop: serve readiness events until stopped, then close politely.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let timeout = match self.cfg.idle {
            IdlePolicy::Spin => Some(Duration::ZERO),
            IdlePolicy::Park => Some(Duration::from_millis(250)),
        };
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                for c in &mut self.conns {
                    c.fail(format!("poll failed: {e}"));
                }
                break;
            }
            for ev in &events {
                if let Some(c) = self.conns.get_mut(ev.token().0) {
                    c.drive(&mut self.router, &self.cfg, &self.wakes);
                }
            }
            for c in &mut self.conns {
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

/// Wakes the publishers of the rings in `touched` that are parked.
///
/// NB: the fence pairs with the publisher's `SeqCst` store of `sleeping`
/// before it re-checks its ring: without it the ring's tail store (Release)
/// may be reordered after our load of `sleeping` (StoreLoad, allowed even
/// on x86), both sides miss each other, and the publisher sleeps out its
/// park timeout with ticks waiting.
#[inline]
fn wake_publishers(wakes: &[(Arc<Wake>, Thread)], touched: u64) {
    if touched == 0 {
        return;
    }
    std::sync::atomic::fence(Ordering::SeqCst);
    for (i, (wake, thread)) in wakes.iter().enumerate() {
        if touched & (1 << i) != 0 && wake.sleeping.load(Ordering::SeqCst) {
            thread.unpark();
        }
    }
}

impl Conn {
    fn set_state(&self, s: ConnState) {
        self.stats.state.store(s as u8, Ordering::Relaxed);
    }

    fn fail(&mut self, why: String) {
        self.state = State::Done;
        *lock(&self.stats.error) = Some(why);
        self.set_state(ConnState::Failed);
    }

    fn closed(&mut self, why: String) {
        self.state = State::Done;
        *lock(&self.stats.error) = Some(why);
        self.set_state(ConnState::Closed);
    }

    fn close(&mut self) {
        if let State::Open(ws) = &mut self.state {
            // Best effort: a polite close frame; the socket closes on drop.
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        if !matches!(self.state, State::Done) {
            self.state = State::Done;
            self.set_state(ConnState::Closed);
        }
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
                            self.fail(format!("cannot connect to {}: {e}", self.stats.url));
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
                            self.fail(format!("cannot connect to {}: {e}", self.stats.url));
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
                    let request = match self.spec.url.expose().into_client_request() {
                        Ok(mut r) => {
                            r.headers_mut().insert(
                                "X-Kite-Version",
                                tungstenite::http::HeaderValue::from_static("3"),
                            );
                            r
                        }
                        Err(e) => {
                            self.fail(format!("bad WebSocket URL {}: {e}", self.stats.url));
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
                State::Done => return,
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
                    self.fail(format!("cannot subscribe on {}: {e}", self.stats.url));
                    return false;
                }
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
                self.fail(why);
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
            ws.write(Message::text(text.clone()))?;
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
                ws.write(Message::text(text.clone()))?;
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
                            self.ticks += u64::from(r.pushed + r.dropped_full);
                            self.dropped_full += u64::from(r.dropped_full);
                            self.unknown += u64::from(r.unknown);
                            wake_publishers(wakes, r.touched);
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
                    self.closed(why);
                    return;
                }
                Err(e) => {
                    self.fail(format!("connection to {} failed: {e}", self.stats.url));
                    return;
                }
            }
        }
        // Pongs to the server's pings are queued by `read`; send them now.
        match ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => self.fail(format!("connection to {} failed: {e}", self.stats.url)),
        }
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
