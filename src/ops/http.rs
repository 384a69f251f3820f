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
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::Shared;
use super::admin::{self, MAX_BODY};
use super::response::encode;
pub use super::response::{Response, json, route, text};

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
    /// Control requests refused `401`/`403` (`admin.rs`).
    pub denied: AtomicU64,
}

impl Counters {
    /// A snapshot.
    #[must_use]
    pub fn load(&self) -> Counts {
        Counts {
            responses: std::array::from_fn(|i| self.responses[i].load(Ordering::Relaxed)),
            open: self.open.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
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
    /// Control requests refused `401`/`403`.
    pub denied: u64,
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
            waker: Arc::clone(&waker),
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
    /// Handed with each control request, so its answer wakes the poll.
    waker: Arc<Waker>,
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
            // Answers from the control plane (their wake-up ended the poll).
            for i in 0..self.slots.len() {
                if self.slots[i]
                    .as_ref()
                    .is_some_and(|c| matches!(c.state, State::Awaiting(_)))
                {
                    self.advance(i);
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
            let (mut stream, peer) = match self.listener.accept() {
                Ok((s, a)) => (s, a.ip()),
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
                peer,
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
        if conn.advance(&self.shared, &self.waker) == Progress::Done {
            self.close(i);
        }
    }

    /// Connection `i` reached its deadline.
    fn expire(&mut self, i: usize) {
        if let Some(conn) = self.slots[i].as_mut() {
            // As a read timeout did before: answered and counted; the answer
            // is written only as far as one nonblocking pass goes.
            let late = match conn.state {
                State::Reading { .. } | State::Body { .. } => Some(text(408, "request timeout\n")),
                State::Awaiting(_) => Some(text(
                    503,
                    "the control plane did not answer within the request deadline; retry\n",
                )),
                State::Writing { .. } => None,
            };
            if let Some(resp) = late {
                conn.respond(&resp, false, &self.shared);
                let _ = conn.advance(&self.shared, &self.waker);
            }
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
    peer: IpAddr,
    deadline: Instant,
    state: State,
}

enum State {
    /// Reading the request head into a fixed buffer.
    Reading { buf: Box<[u8]>, len: usize },
    /// Reading a control request's body (at most [`MAX_BODY`] bytes).
    Body {
        method: &'static str,
        path: String,
        body: Vec<u8>,
        need: usize,
    },
    /// Waiting for the control plane's answer.
    Awaiting(std::sync::mpsc::Receiver<Response>),
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
    fn advance(&mut self, shared: &Shared, waker: &Arc<Waker>) -> Progress {
        loop {
            match &mut self.state {
                State::Awaiting(rx) => match rx.try_recv() {
                    Ok(resp) => self.respond(&resp, false, shared),
                    Err(std::sync::mpsc::TryRecvError::Empty) => return Progress::Pending,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        self.respond(
                            &text(503, "the control plane is not running\n"),
                            false,
                            shared,
                        );
                    }
                },
                State::Body {
                    method,
                    path,
                    body,
                    need,
                } => {
                    if body.len() >= *need {
                        let (method, path, body) =
                            (*method, std::mem::take(path), std::mem::take(body));
                        self.dispatch(method, &path, &body, shared, waker);
                        continue;
                    }
                    let mut chunk = [0u8; 4096];
                    let want = (*need - body.len()).min(chunk.len());
                    match self.stream.read(&mut chunk[..want]) {
                        Ok(0) => {
                            let resp =
                                text(400, "bad request: the body ended before Content-Length\n");
                            self.respond(&resp, false, shared);
                        }
                        Ok(n) => body.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => self.respond(&text(408, "request timeout\n"), false, shared),
                    }
                }
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
                                let end = from + end;
                                let sep = if buf[end..].starts_with(b"\r\n\r\n") {
                                    4
                                } else {
                                    2
                                };
                                let (head, rest) = (&buf[..end], &buf[end + sep..*len]);
                                match begin(self.peer, head, rest, shared) {
                                    Some(next) => self.state = next,
                                    None => {
                                        let resp = route(head, shared);
                                        let head_only = head.starts_with(b"HEAD ");
                                        self.respond(&resp, head_only, shared);
                                    }
                                }
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

    /// Hands a whole control request to the `run` loop.
    fn dispatch(
        &mut self,
        method: &'static str,
        path: &str,
        body: &[u8],
        shared: &Shared,
        waker: &Arc<Waker>,
    ) {
        let head = admin::Head {
            method,
            path,
            content_length: Some(body.len()),
            chunked: false,
            authorization: None,
        };
        let sent = match admin::call_of(&head, body) {
            Ok(Some(call)) => match shared.admin.get() {
                Some(tx) => tx.send(call, waker),
                None => Err(text(503, "the control plane is not running\n")),
            },
            Ok(None) => Err(text(
                405,
                format!("method {method} not allowed on {path}\n"),
            )),
            Err(resp) => Err(resp),
        };
        match sent {
            Ok(rx) => self.state = State::Awaiting(rx),
            Err(resp) => self.respond(&resp, false, shared),
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

/// A control request's next state, or `None` for a plain `GET`/`HEAD`
/// ([`route`]). `rest` is what arrived after the head.
fn begin(peer: IpAddr, head: &[u8], rest: &[u8], shared: &Shared) -> Option<State> {
    let h = match admin::parse_head(head) {
        Ok(h) => h,
        Err(resp) => return Some(answer(&resp, shared)),
    };
    let method = match h.method {
        "POST" => "POST",
        "GET" if matches!(h.path, "/ops/subscriptions" | "/stats/universe") => "GET",
        _ => return None,
    };
    if method == "POST" {
        if let Err(resp) = admin::authorize(Some(peer), h.authorization, &shared.admin_auth.load())
        {
            shared.http.denied.fetch_add(1, Ordering::Relaxed);
            return Some(answer(&resp, shared));
        }
        if h.chunked {
            return Some(answer(
                &text(411, "length required: send Content-Length, not chunks\n"),
                shared,
            ));
        }
    }
    let need = h.content_length.unwrap_or(0);
    if need > MAX_BODY {
        let resp = text(
            413,
            format!("body of {need} bytes is over the {MAX_BODY}-byte limit\n"),
        );
        return Some(answer(&resp, shared));
    }
    let mut body = Vec::with_capacity(need);
    body.extend_from_slice(&rest[..rest.len().min(need)]);
    Some(State::Body {
        method,
        path: h.path.to_owned(),
        body,
        need,
    })
}

/// `resp`, counted, as the next state.
fn answer(resp: &Response, shared: &Shared) -> State {
    shared.http.count_response(resp.status);
    State::Writing {
        out: encode(resp, false),
        pos: 0,
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
