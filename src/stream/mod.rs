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

impl StreamServer {
    /// Binds `cfg.listen` and starts the `stream` thread, which drains
    /// `feeds` from now on. With `redis` (a config with a URL) bars are also
    /// kept in the Redis replay lists and read back after a restart; records
    /// are stamped with `run`.
    ///
    /// # Errors
    /// [`StreamError`] naming the address and the fix.
    pub fn start(
        cfg: StreamConfig,
        redis: Option<&RedisConfig>,
        run: RunId,
        feeds: Vec<BarRx>,
    ) -> Result<Self, StreamError> {
        let mut listener = TcpListener::bind(cfg.listen).map_err(|err| StreamError::Bind {
            addr: cfg.listen,
            err,
        })?;
        let addr = listener.local_addr()?;
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
        Ok(Self {
            addr,
            stats,
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

    /// Answers one request of client `slot`.
    fn request(&mut self, slot: usize, text: &str) -> Result<(), Gone> {
        let req = match protocol::parse(text) {
            Ok(r) => r,
            Err(e) => return self.refuse(slot, &e),
        };
        match req {
            protocol::Request::Subscribe(mut tokens) => {
                // Each token once, in the order asked.
                let mut seen = std::collections::HashSet::with_capacity(tokens.len());
                tokens.retain(|t| seen.insert(*t));
                self.subscribe(slot, &tokens)
            }
            protocol::Request::Unsubscribe(tokens) => {
                let Some(c) = self.clients[slot].as_mut() else {
                    return Ok(());
                };
                for t in &tokens {
                    c.tokens.remove(t);
                }
                c.send(protocol::unsubscribed_frame(&tokens).into())
            }
            protocol::Request::ModeBars => Ok(()),
        }
    }

    fn refuse(&mut self, slot: usize, message: &str) -> Result<(), Gone> {
        add(&self.stats.bad_requests, 1);
        match self.clients[slot].as_mut() {
            Some(c) => c.send(protocol::error_frame(message).into()),
            None => Ok(()),
        }
    }

    /// Queues the replay of `tokens` for client `slot` (asking Redis, in one
    /// pipeline, for those with no bar in memory), then its acknowledgement,
    /// and sends as much as the socket takes ([`Self::pump`]).
    fn subscribe(&mut self, slot: usize, tokens: &[u32]) -> Result<(), Gone> {
        let Some(c) = self.clients[slot].as_ref() else {
            return Ok(());
        };
        let held = c.tokens.union(&c.queued).count();
        let new = tokens
            .iter()
            .filter(|t| !c.tokens.contains(t) && !c.queued.contains(t))
            .count();
        let limit = self.cfg.max_instruments;
        if held + new > limit {
            return self.refuse(
                slot,
                &format!(
                    "subscribing {new} more tokens to the {held} held would pass {limit} \
                     (ops.stream_max_instruments); nothing was subscribed"
                ),
            );
        }
        if c.replay.len() > 2 * limit + 64 {
            return self.refuse(
                slot,
                "too many subscribes waiting for their replay; read what was sent first",
            );
        }
        self.restore_from_redis(tokens);
        let Some(c) = self.clients[slot].as_mut() else {
            return Ok(());
        };
        for &t in tokens {
            if c.queued.insert(t) {
                c.replay.push_back(client::Replay::Token(t));
            }
        }
        c.replay.push_back(client::Replay::Ack(tokens.to_vec()));
        self.pump(slot)
    }

    /// Sends client `slot`'s queued replay, one token's window at a time,
    /// while the socket takes everything written so far: a large replay
    /// follows the client's reading instead of filling its buffer (at most
    /// one window, N × 512 bytes, beyond what the socket holds). A token is
    /// subscribed (gets live bars) from its window on, so no bar is missed
    /// or sent twice.
    fn pump(&mut self, slot: usize) -> Result<(), Gone> {
        let Self {
            clients,
            windows,
            stats,
            ..
        } = self;
        let Some(c) = clients[slot].as_mut() else {
            return Ok(());
        };
        while !c.replay.is_empty() {
            if !c.try_flush()? {
                // The writable event continues it.
                return Ok(());
            }
            match c.replay.pop_front() {
                Some(client::Replay::Token(t)) => {
                    c.queued.remove(&t);
                    c.tokens.insert(t);
                    let (frames, from_redis) = windows.replay(t);
                    for f in frames {
                        c.send(f)?;
                        c.replayed += 1;
                        add(&stats.bars_replayed, 1);
                    }
                    add(&stats.bars_replayed_from_redis, from_redis as u64);
                }
                Some(client::Replay::Ack(tokens)) => {
                    let n = std::mem::take(&mut c.replayed);
                    c.send(protocol::subscribed_frame(&tokens, n).into())?;
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Reads the Redis lists of the `tokens` that have no bar in memory and
    /// were not looked up yet (a feed restart). Redis down: nothing is
    /// restored (counted); the client is served from memory.
    fn restore_from_redis(&mut self, tokens: &[u32]) {
        let Some(redis) = self.redis.as_mut() else {
            return;
        };
        let mut want: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|t| self.windows.needs_lookup(*t))
            .collect();
        want.sort_unstable();
        want.dedup();
        if want.is_empty() {
            return;
        }
        for chunk in want.chunks(redis_replay::READ_CHUNK) {
            // Redis down: the rest are not asked either (served from memory).
            let Some(lists) = redis.read(chunk, &self.stats) else {
                break;
            };
            for (t, bars) in chunk.iter().zip(lists) {
                if !self.windows.restore(*t, bars) {
                    add(&self.stats.instruments_over_limit, 1);
                }
            }
        }
        set(&self.stats.instruments, self.windows.len() as u64);
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
