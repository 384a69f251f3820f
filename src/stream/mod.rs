//! The downstream bar stream (README, "Downstream stream"): a loopback
//! WebSocket server that replays the last N one-minute bars of the
//! instruments a client subscribes to, then pushes their live bars.
//!
//! One thread, `stream`, owns everything here: a mio `Poll` over the
//! listener and at most `ops.stream_max_clients` non-blocking clients, the
//! consumer ends of the publishers' bar hand-offs ([`BarRx`]), the replay
//! windows and the Redis replay lists' connection. It shares only
//! [`StreamStats`] (counters) with the ops side. No async runtime.
//!
//! The feed is never slowed: the publishers push bars into bounded SPSC
//! hand-offs and never wait; this thread drains them every turn (at most
//! [`TICK`] apart) whatever the clients or Redis do. Bounds: N bars per
//! instrument, `ops.stream_max_instruments` instruments, the client count
//! (past it a connection gets `503` and is closed, counted), each client's
//! outgoing buffer (past it the client is disconnected, counted), a
//! handshake deadline ([`HANDSHAKE_DEADLINE`]) and the request size.

mod client;
mod protocol;
mod record;
mod redis_replay;
mod requests;
mod stats;
mod window;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::Utf8Bytes;

use crate::bars::BarRx;
use crate::config::RedisConfig;
pub use crate::config::stream::StreamConfig;
use crate::run_id::RunId;
use client::{Client, Gone};
use redis_replay::RedisReplay;
pub use stats::{StreamCounts, StreamStats};
use stats::{add, set};
use window::Windows;

/// Longest poll wait: how often the bar hand-offs are drained when no
/// client event arrives (bars close once a minute; 20 ms is far inside
/// their grace window and costs nothing measurable when idle).
pub const TICK: Duration = Duration::from_millis(20);

/// Time a connection has, from accept, to complete its WebSocket handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Client `i` is `Token(FIRST_CLIENT + i)`.
const FIRST_CLIENT: usize = 2;

/// The refusal a connection past `ops.stream_max_clients` gets.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 48\r\nConnection: close\r\n\r\ntoo many stream clients (ops.stream_max_clients)";

/// The stream server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The address cannot be bound.
    #[error(
        "cannot listen on ops.stream_listen {addr}: {err}; pick a free loopback port, or set \
         ops.stream_listen = \"off\""
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        err: std::io::Error,
    },
    /// The poll, waker or thread could not be created.
    #[error("cannot start the stream server: {0}")]
    Io(#[from] std::io::Error),
}

/// A running stream server; dropping it stops and joins its thread.
#[derive(Debug)]
pub struct StreamServer {
    addr: SocketAddr,
    stats: Arc<StreamStats>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// A bound stream listener, not serving yet: [`StreamServer::bind`] lets
/// `run` fail on a bad address before the engine connects anywhere, and
/// start serving once the engine's bar hand-offs exist.
#[derive(Debug)]
pub struct StreamListener {
    cfg: StreamConfig,
    listener: TcpListener,
    addr: SocketAddr,
}

impl StreamListener {
    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the `stream` thread, which drains `feeds` from now on. With
    /// `redis` (a config with a URL) bars are also kept in the Redis replay
    /// lists and read back after a restart; records are stamped with `run`.
    ///
    /// # Errors
    /// The poll, its waker or the thread cannot be created.
    pub fn start(
        self,
        redis: Option<&RedisConfig>,
        run: RunId,
        feeds: Vec<BarRx>,
    ) -> Result<StreamServer, StreamError> {
        let Self {
            cfg,
            mut listener,
            addr,
        } = self;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stats = Arc::new(StreamStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = Server {
            windows: Windows::new(cfg.replay_bars, cfg.max_instruments, run),
            redis: redis
                .filter(|r| !r.url.is_empty())
                .map(|r| RedisReplay::new(r, cfg.replay_bars, cfg.redis_ttl_s)),
            clients: (0..cfg.max_clients).map(|_| None).collect(),
            cfg,
            poll,
            listener,
            feeds,
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("stream".into())
            .spawn(move || server.run())?;
        Ok(StreamServer {
            addr,
            stats,
            stop,
            waker,
            thread: Some(thread),
        })
    }
}

impl StreamServer {
    /// Binds `cfg.listen` (connections wait in the backlog until
    /// [`StreamListener::start`]).
    ///
    /// # Errors
    /// [`StreamError::Bind`] naming the address and the fix.
    pub fn bind(cfg: StreamConfig) -> Result<StreamListener, StreamError> {
        let listener = TcpListener::bind(cfg.listen).map_err(|err| StreamError::Bind {
            addr: cfg.listen,
            err,
        })?;
        let addr = listener.local_addr()?;
        Ok(StreamListener {
            cfg,
            listener,
            addr,
        })
    }

    /// [`bind`](Self::bind), then [`StreamListener::start`].
    ///
    /// # Errors
    /// [`StreamError`] naming the address and the fix.
    pub fn start(
        cfg: StreamConfig,
        redis: Option<&RedisConfig>,
        run: RunId,
        feeds: Vec<BarRx>,
    ) -> Result<Self, StreamError> {
        Self::bind(cfg)?.start(redis, run, feeds)
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters, shared with the `stream` thread.
    #[must_use]
    pub fn stats(&self) -> Arc<StreamStats> {
        Arc::clone(&self.stats)
    }

    /// Stops the thread (it drains the hand-offs and writes Redis once
    /// more) and returns the final counters.
    #[must_use]
    pub fn stop(mut self) -> StreamCounts {
        self.shutdown();
        self.stats.snapshot()
    }

    fn shutdown(&mut self) {
        // SeqCst: read by the stream thread after its wake-up; any order
        // that makes the store visible by then would do.
        self.stop.store(true, Ordering::SeqCst);
        // A failed wake-up leaves the TICK timeout to notice the stop.
        if self.waker.wake().is_err() {
            tracing::debug!("stream: wake-up failed; stopping within one tick");
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("stream: the stream thread panicked");
        }
    }
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Everything the `stream` thread owns.
struct Server {
    cfg: StreamConfig,
    poll: Poll,
    listener: TcpListener,
    feeds: Vec<BarRx>,
    windows: Windows,
    redis: Option<RedisReplay>,
    clients: Vec<Option<Client>>,
    stats: Arc<StreamStats>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut requests = Vec::new();
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(TICK))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!("stream: poll failed: {e}; stopping the stream server");
                break;
            }
            for ev in &events {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(t) => self.client_event(t - FIRST_CLIENT, &mut requests),
                }
            }
            for slot in 0..self.clients.len() {
                if self.clients[slot].as_ref().is_some_and(|c| c.more) {
                    self.client_event(slot, &mut requests);
                }
            }
            self.drain_feeds();
            self.expire_handshakes();
            // SeqCst: pairs with the store in `StreamServer::shutdown`.
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // E.g. out of file descriptors: try again next event.
                    tracing::warn!("stream: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: mio::net::TcpStream) {
        let Some(slot) = self.clients.iter().position(Option::is_none) else {
            add(&self.stats.clients_refused, 1);
            // Best effort: read what request has arrived (closing with unread
            // bytes would reset the connection and lose the answer), answer,
            // close. The refusal fits any socket buffer.
            let mut scratch = [0u8; 4096];
            for _ in 0..4 {
                if !matches!(std::io::Read::read(&mut stream, &mut scratch), Ok(n) if n > 0) {
                    break;
                }
            }
            let _unsent_is_fine = stream.write(REFUSAL);
            let _closing_anyway = stream.shutdown(std::net::Shutdown::Write);
            return;
        };
        // Bars are small and latency matters more than packet count; a
        // failure only costs latency.
        let _nodelay_is_best_effort = stream.set_nodelay(true);
        let token = Token(FIRST_CLIENT + slot);
        if self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            add(&self.stats.handshake_failures, 1);
            return;
        }
        let deadline = Instant::now() + HANDSHAKE_DEADLINE;
        match Client::accept(stream, self.cfg.client_buffer_bytes, deadline) {
            Ok(c) => {
                let open = c.is_open();
                self.clients[slot] = Some(c);
                if open {
                    self.opened();
                }
            }
            Err(_) => add(&self.stats.handshake_failures, 1),
        }
    }

    fn opened(&self) {
        add(&self.stats.clients_accepted, 1);
        self.sync_clients();
    }

    fn sync_clients(&self) {
        let n = self
            .clients
            .iter()
            .flatten()
            .filter(|c| c.is_open())
            .count();
        set(&self.stats.clients, n as u64);
    }

    fn remove(&mut self, slot: usize, why: Gone) {
        if self.clients.get_mut(slot).and_then(Option::take).is_none() {
            return;
        }
        match why {
            Gone::Slow => add(&self.stats.slow_disconnects, 1),
            Gone::Handshake => add(&self.stats.handshake_failures, 1),
            Gone::Closed => {}
        }
        self.sync_clients();
    }

    fn client_event(&mut self, slot: usize, requests: &mut Vec<String>) {
        let Some(Some(c)) = self.clients.get_mut(slot) else {
            return;
        };
        if !c.is_open() {
            match c.advance() {
                Ok(true) => self.opened(),
                Ok(false) => return,
                Err(g) => return self.remove(slot, g),
            }
        }
        requests.clear();
        let read = match &mut self.clients[slot] {
            Some(c) => c.read_requests(requests),
            None => return,
        };
        for text in requests.drain(..) {
            if let Err(g) = self.request(slot, &text) {
                return self.remove(slot, g);
            }
        }
        if let Err(g) = self.pump(slot) {
            return self.remove(slot, g);
        }
        let flushed = match &mut self.clients[slot] {
            Some(c) => c.flush(),
            None => return,
        };
        if let Err(g) = read.and(flushed) {
            self.remove(slot, g);
        }
    }

    /// Takes every bar the publishers handed off: into the windows, to the
    /// subscribed clients, and into the next Redis pipeline.
    fn drain_feeds(&mut self) {
        let mut got = 0u64;
        for i in 0..self.feeds.len() {
            while let Ok(bar) = self.feeds[i].pop() {
                got += 1;
                if !self.windows.push(bar) {
                    add(&self.stats.instruments_over_limit, 1);
                }
                let Some(frame) = self.windows.encode(&bar) else {
                    continue;
                };
                self.fan_out(bar.token, &frame);
                if let Some(r) = self.redis.as_mut() {
                    r.queue(bar.token, frame, &self.stats);
                }
            }
        }
        if got == 0 {
            return;
        }
        add(&self.stats.bars_received, got);
        set(&self.stats.instruments, self.windows.len() as u64);
        for slot in 0..self.clients.len() {
            if let Some(Err(g)) = self.clients[slot].as_mut().map(Client::flush) {
                self.remove(slot, g);
            }
        }
        if let Some(r) = self.redis.as_mut() {
            r.flush(&self.stats);
        }
    }

    fn fan_out(&mut self, token: u32, frame: &Utf8Bytes) {
        for slot in 0..self.clients.len() {
            let Some(c) = self.clients[slot].as_mut() else {
                continue;
            };
            if !c.is_open() || !c.tokens.contains(&token) {
                continue;
            }
            match c.send(frame.clone()) {
                Ok(()) => add(&self.stats.bars_sent, 1),
                Err(g) => self.remove(slot, g),
            }
        }
    }

    fn expire_handshakes(&mut self) {
        let now = Instant::now();
        for slot in 0..self.clients.len() {
            if self.clients[slot]
                .as_ref()
                .and_then(|c| c.deadline)
                .is_some_and(|d| now >= d)
            {
                self.remove(slot, Gone::Handshake);
            }
        }
    }
}
