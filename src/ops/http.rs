//! The ops HTTP server: HTTP/1.1, one request per connection, no async
//! runtime. It serves the latest [`View`](super::View); it never touches the
//! engine.
//!
//! One thread, `ops-http`, runs a mio `Poll` and owns everything the server
//! holds: the nonblocking listener, at most [`MAX_CONNECTIONS`] nonblocking
//! connections each with a fixed [`MAX_REQUEST`]-byte request buffer, and the
//! response being written. It shares with the rest of the process only
//! [`Shared`]: it loads the view and stores its [`Counters`].
//!
//! Bounds, whatever the clients do:
//! - connections: beyond [`MAX_CONNECTIONS`] a new one gets a best-effort
//!   `503` and is closed at once, counted in
//!   `panda_feed_ops_http_connections_refused_total` (and as a 5xx response);
//! - time: each connection has one total deadline, [`REQUEST_DEADLINE`] from
//!   accept, for its whole request head to arrive and its response to be
//!   written. Reaching it while reading answers `408` (best effort); while
//!   writing, closes. A client sending a byte a second cannot extend it;
//! - size: a request head over [`MAX_REQUEST`] bytes is answered `431`;
//! - shutdown: dropping the [`Server`] wakes the poll through a mio `Waker`
//!   and joins the thread; nothing waits on a client, so it returns in well
//!   under [`TICK`] whatever is connected (the tick is only the fallback
//!   should the wake-up fail).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::Shared;

/// Largest request head accepted, bytes.
pub const MAX_REQUEST: usize = 8 * 1024;

/// Total time a connection has, from accept, to send its request head and
/// receive the response.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// Connections held at once; more are refused.
pub const MAX_CONNECTIONS: usize = 64;

/// Longest poll wait: the fallback for noticing a stop.
pub const TICK: Duration = Duration::from_millis(100);

/// Status classes counted in `panda_feed_ops_http_requests_total`.
pub const CODE_LABELS: [&str; 3] = ["2xx", "4xx", "5xx"];

/// The server's counters, written by the `ops-http` thread.
#[derive(Debug, Default)]
pub struct Counters {
    /// Responses by status class, in [`CODE_LABELS`] order.
    pub responses: [AtomicU64; CODE_LABELS.len()],
    /// Connections held now.
    pub open: AtomicU64,
    /// Connections refused because [`MAX_CONNECTIONS`] were held.
    pub refused: AtomicU64,
}

impl Counters {
    /// A snapshot.
    #[must_use]
    pub fn load(&self) -> Counts {
        Counts {
            responses: std::array::from_fn(|i| self.responses[i].load(Ordering::Relaxed)),
            open: self.open.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    fn count_response(&self, status: u16) {
        let class = match status {
            200..=299 => 0,
            400..=499 => 1,
            _ => 2,
        };
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of [`Counters`], as `/metrics` renders it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Responses by status class, in [`CODE_LABELS`] order.
    pub responses: [u64; CODE_LABELS.len()],
    /// Connections held now.
    pub open: u64,
    /// Connections refused at the bound.
    pub refused: u64,
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKE: Token = Token(usize::MAX);

/// A running server; stops on drop.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` and serves on a thread named `ops-http`.
    ///
    /// # Errors
    /// The address is invalid or cannot be bound.
    pub fn start(listen: &str, shared: Arc<Shared>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut event_loop = Loop {
            poll,
            listener,
            slots: (0..MAX_CONNECTIONS).map(|_| None).collect(),
            shared,
            stop: Arc::clone(&stop),
            retry_accept: None,
        };
        let thread = std::thread::Builder::new()
            .name("ops-http".into())
            .spawn(move || event_loop.run())?;
        Ok(Self {
            addr,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Should the wake fail, the loop sees `stop` within one tick.
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `ops-http` thread's state.
struct Loop {
    poll: Poll,
    listener: TcpListener,
    /// Connection `i` has token `i`.
    slots: Vec<Option<Conn>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    /// An accept failed (e.g. too many open files): when to try again, as
    /// the edge-triggered listener may not report the waiting connections
    /// again.
    retry_accept: Option<Instant>,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(MAX_CONNECTIONS + 2);
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let next = self
                .slots
                .iter()
                .flatten()
                .map(|c| c.deadline)
                .chain(self.retry_accept)
                .min()
                .map_or(TICK, |d| d.saturating_duration_since(now).min(TICK));
            if let Err(e) = self.poll.poll(&mut events, Some(next)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("ops: the HTTP server stops: poll failed: {e}");
                return;
            }
            for event in &events {
                match event.token() {
                    WAKE => {}
                    LISTENER => self.accept(),
                    Token(i) => self.advance(i),
                }
            }
            let now = Instant::now();
            if self.retry_accept.is_some_and(|t| now >= t) {
                self.accept();
            }
            for i in 0..self.slots.len() {
                if self.slots[i].as_ref().is_some_and(|c| now >= c.deadline) {
                    self.expire(i);
                }
            }
        }
    }

    /// Accepts every waiting connection, holding each in a free slot or
    /// refusing it.
    fn accept(&mut self) {
        self.retry_accept = None;
        loop {
            let mut stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    // Transient (e.g. too many open files): the next accept
                    // may succeed.
                    self.retry_accept = Some(Instant::now() + TICK);
                    return;
                }
            };
            let counters = &self.shared.http;
            let Some(i) = self.slots.iter().position(Option::is_none) else {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                let resp = text(503, "too many connections\n");
                counters.count_response(resp.status);
                // One nonblocking write into an empty socket buffer; then closed.
                let _ = stream.write(&encode(&resp, false));
                continue;
            };
            if self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            counters.open.fetch_add(1, Ordering::Relaxed);
            self.slots[i] = Some(Conn {
                stream,
                deadline: Instant::now() + REQUEST_DEADLINE,
                state: State::Reading {
                    buf: vec![0; MAX_REQUEST].into_boxed_slice(),
                    len: 0,
                },
            });
            // Data may have arrived with the connection.
            self.advance(i);
        }
    }

    /// Moves connection `i` as far as its socket allows; closes it when done.
    fn advance(&mut self, i: usize) {
        let Some(conn) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if conn.advance(&self.shared) == Progress::Done {
            self.close(i);
        }
    }

    /// Connection `i` reached its deadline.
    fn expire(&mut self, i: usize) {
        if let Some(conn) = self.slots[i].as_mut()
            && matches!(conn.state, State::Reading { .. })
        {
            // As a read timeout did before: answered 408 and counted; the
            // answer is written only as far as one nonblocking pass goes.
            conn.respond(&text(408, "request timeout\n"), false, &self.shared);
            let _ = conn.advance(&self.shared);
        }
        self.close(i);
    }

    fn close(&mut self, i: usize) {
        if let Some(mut conn) = self.slots[i].take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.shared.http.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

struct Conn {
    stream: TcpStream,
    deadline: Instant,
    state: State,
}

enum State {
    /// Reading the request head into a fixed buffer.
    Reading { buf: Box<[u8]>, len: usize },
    /// Writing the response.
    Writing { out: Vec<u8>, pos: usize },
}

#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// Waiting for the socket.
    Pending,
    /// Answered (or nothing to answer): close.
    Done,
}

impl Conn {
    /// Reads and writes until the socket would block or the exchange is over.
    fn advance(&mut self, shared: &Shared) -> Progress {
        loop {
            match &mut self.state {
                State::Reading { buf, len } => {
                    if *len == buf.len() {
                        self.respond(&text(431, "request head too large\n"), false, shared);
                        continue;
                    }
                    match self.stream.read(&mut buf[*len..]) {
                        Ok(0) => {
                            if *len == 0 {
                                // Connected and closed (e.g. a port probe):
                                // nothing to answer.
                                return Progress::Done;
                            }
                            let resp = text(400, "bad request: incomplete request head\n");
                            self.respond(&resp, false, shared);
                        }
                        Ok(n) => {
                            let from = len.saturating_sub(3);
                            *len += n;
                            if let Some(end) = find_head_end(&buf[from..*len]) {
                                let head = &buf[..from + end];
                                let resp = route(head, shared);
                                let head_only = head.starts_with(b"HEAD ");
                                self.respond(&resp, head_only, shared);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => self.respond(&text(408, "request timeout\n"), false, shared),
                    }
                }
                State::Writing { out, pos } => {
                    if *pos == out.len() {
                        return Progress::Done;
                    }
                    match self.stream.write(&out[*pos..]) {
                        Ok(0) => return Progress::Done,
                        Ok(n) => *pos += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return Progress::Done,
                    }
                }
            }
        }
    }

    /// Counts `resp` and switches to writing it.
    fn respond(&mut self, resp: &Response, head_only: bool, shared: &Shared) {
        shared.http.count_response(resp.status);
        self.state = State::Writing {
            out: encode(resp, head_only),
            pos: 0,
        };
    }
}

/// The response bytes: status line, headers and (unless `head_only`) body.
fn encode(resp: &Response, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(resp.body.as_bytes());
    }
    out
}

/// A response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

fn json(status: u16, v: &impl serde::Serialize) -> Response {
    match serde_json::to_string_pretty(v) {
        Ok(mut body) => {
            body.push('\n');
            Response {
                status,
                content_type: "application/json",
                body,
            }
        }
        Err(e) => text(500, format!("cannot encode the response: {e}\n")),
    }
}

const INDEX: &str = "panda-feed ops endpoints:\n  GET /metrics            Prometheus text format 0.0.4\n  GET /health             status and issues (200 healthy or degraded, 503 unhealthy)\n  GET /stats/connections  connection states and their last health samples\n  GET /ops/slow           slowest Kafka deliveries and Redis writes of the window\n";

/// Routes one request head (everything before the blank line).
#[must_use]
pub fn route(head: &[u8], shared: &Shared) -> Response {
    let Ok(head) = std::str::from_utf8(head) else {
        return text(400, "bad request: the request head is not UTF-8\n");
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return text(400, "bad request: expected `METHOD /path HTTP/1.1`\n");
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return text(400, "bad request: expected `METHOD /path HTTP/1.1`\n");
    }
    if method != "GET" && method != "HEAD" {
        return text(405, format!("method {method} not allowed: use GET\n"));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let view = shared.view.load();
    match path {
        "/" => text(200, INDEX),
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: super::metrics::render(&view, &shared.http.load()),
        },
        "/health" => {
            let h = &view.health;
            let status = if h.status == super::health::Status::Unhealthy {
                503
            } else {
                200
            };
            json(
                status,
                &serde_json::json!({
                    "status": h.status,
                    "issues": h.issues,
                    "at": crate::clock::rfc3339_ms(view.at_ns),
                    "received": view.counts.received,
                    "published": view.counts.published,
                    "parked": view.counts.parked,
                    "dropped": view.counts.dropped,
                    "in_flight": view.counts.in_flight,
                }),
            )
        }
        "/stats/connections" => json(
            200,
            &serde_json::json!({
                "at": crate::clock::rfc3339_ms(view.at_ns),
                "connections": view.connections,
            }),
        ),
        "/ops/slow" => json(
            200,
            &serde_json::json!({
                "at": crate::clock::rfc3339_ms(view.at_ns),
                "window_s": view.window_s,
                "kafka": view.slow_kafka,
                "redis": view.slow_redis,
            }),
        ),
        _ => text(404, format!("not found: {path}\n\n{INDEX}")),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Where the request head ends (the blank line starts) in `b`.
fn find_head_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = b.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::find_head_end;

    #[test]
    fn the_head_end_is_found_however_the_bytes_arrive() {
        let req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nbody";
        let whole = find_head_end(req).unwrap();
        assert_eq!(&req[..whole], b"GET /health HTTP/1.1\r\nHost: x");
        // Fed in pieces of every size, scanning only from three bytes before
        // the new data, as the server does.
        for step in 1..req.len() {
            let mut len: usize = 0;
            let found = loop {
                let from = len.saturating_sub(3);
                len = (len + step).min(req.len());
                if let Some(end) = find_head_end(&req[from..len]) {
                    break Some(from + end);
                }
                if len == req.len() {
                    break None;
                }
            };
            assert_eq!(found, Some(whole), "step {step}");
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.0\n\n"), Some(14));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
