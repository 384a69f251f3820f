//! The mock exchange: a simulated Kite streaming server on a loopback port,
//! speaking the real protocol (docs/KITE_PROTOCOL.md §1–4).
//!
//! Threads (none of them are the engine's): one acceptor, one generator that
//! owns the market state (`market::Market`) and publishes snapshots through `ArcSwap`, and
//! one thread per connection that reads the latest snapshot without locks and
//! streams binary messages for that connection's subscriptions. The
//! subscription registry the generator reads is behind a mutex: this is test
//! infrastructure, not the engine's hot path.
//!
//! Used by `panda-feed mock-exchange`, by `run --mock`, and by the tests.

pub mod broker;
mod conn;
mod generate;
pub(crate) mod market;
pub mod scenario;

pub use broker::EmbeddedBroker;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::defaults;

use market::Snapshot;

/// Mock exchange settings.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// `api_key` a client must present.
    pub api_key: String,
    /// `access_token` a client must present; anything else gets HTTP 403.
    pub access_token: String,
    /// Total ticks generated per second, over all subscribed instruments.
    pub rate_per_s: u64,
    /// Seed of the market random walk.
    pub seed: u64,
    /// Stop generating after this many ticks (heartbeats go on). `None` = no limit.
    pub max_ticks: Option<u64>,
    /// Write every binary message sent as a framed record (u32 BE length + bytes).
    pub record: Option<PathBuf>,
    /// Most instruments kept in the market state (least recently used evicted).
    pub max_instruments: usize,
    /// Most instruments one connection may subscribe (the real limit is 3000).
    pub max_per_connection: usize,
    /// Most concurrent connections per api_key (the real limit is 3; more get HTTP 429).
    pub max_connections: usize,
    /// Most packets in one binary message.
    pub max_packets_per_message: u16,
    /// Heartbeat period when a connection has nothing to send.
    pub heartbeat: Duration,
    /// Expiry day (days since 1970-01-01) of derivative tokens; expired ones are not streamed.
    pub expiry: HashMap<u32, u32>,
    /// The market clock at start, Unix seconds: exchange timestamps run on
    /// from here at wall-clock speed (e.g. 15:29:50 IST to cross the close).
    /// `None` = the wall clock.
    pub clock_start_s: Option<u32>,
    /// Replay these binary messages (a framed recording) to each connection
    /// once it has subscribed, in order, instead of the generated market.
    pub replay: Option<Arc<Vec<tungstenite::Bytes>>>,
    /// Replay pace, messages per second; `None` = as fast as the client
    /// reads.
    pub replay_rate: Option<u64>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: defaults::MOCK_API_KEY.into(),
            access_token: defaults::MOCK_ACCESS_TOKEN.into(),
            rate_per_s: defaults::MOCK_RATE_PER_S,
            seed: defaults::MOCK_SEED,
            max_ticks: None,
            record: None,
            max_instruments: defaults::MOCK_MAX_INSTRUMENTS,
            max_per_connection: defaults::MAX_PER_CONNECTION,
            max_connections: defaults::MAX_CONNECTIONS,
            max_packets_per_message: 200,
            heartbeat: Duration::from_millis(defaults::MOCK_HEARTBEAT_MS),
            expiry: HashMap::new(),
            clock_start_s: None,
            replay: None,
            replay_rate: None,
        }
    }
}

/// Counters of a running mock exchange.
#[derive(Debug, Default)]
pub struct MockStats {
    /// Ticks generated (market updates of subscribed instruments).
    pub generated: AtomicU64,
    /// Packets sent to clients.
    pub sent_ticks: AtomicU64,
    /// Binary market-data messages sent.
    pub sent_messages: AtomicU64,
    /// Heartbeats sent.
    pub heartbeats: AtomicU64,
    /// Heartbeats sent by the `flood_connection` fault.
    pub flood_heartbeats: AtomicU64,
    /// Upgrade requests received (before the verdict, and before the
    /// `upgrade_delay_ms` fault's sleep).
    pub upgrade_requests: AtomicU64,
    /// Upgrades accepted.
    pub connections: AtomicU64,
    /// Upgrades refused with 403 (bad credentials).
    pub rejected_403: AtomicU64,
    /// Upgrades refused with 429 (too many connections).
    pub rejected_429: AtomicU64,
    /// Text `error` frames sent (e.g. the 3000-instrument limit).
    pub error_frames: AtomicU64,
    /// Broadcast text frames written out whole to the socket (the kernel
    /// holds at most its buffers' worth of them unread by the client).
    pub text_frames_flushed: AtomicU64,
    /// Broadcast text frames not sent: the client's write buffer was full.
    pub text_frames_unsent: AtomicU64,
    /// Generator steps a slow connection missed because the snapshot history
    /// moved on.
    pub lagged_updates: AtomicU64,
    /// Ticks not sent because a client's write buffer was full (not recorded).
    pub unsent_ticks: AtomicU64,
    /// Non-numeric tokens in requests, ignored as the real server ignores them.
    pub ignored_tokens: AtomicU64,
    /// Client text frames that were not valid requests.
    pub bad_requests: AtomicU64,
    /// Messages of a `replay` recording sent.
    pub replayed_messages: AtomicU64,
    /// Connections closed by the `disconnect_every` fault.
    pub injected_disconnects: AtomicU64,
    /// Malformed messages sent by the `malformed_every` fault.
    pub injected_malformed: AtomicU64,
}

/// Faults the mock exchange injects, changeable while it runs (tests set
/// them directly; `mock-exchange` flags set their start values).
#[derive(Debug, Default)]
pub struct Faults {
    /// Close each connection cleanly (everything queued is delivered first,
    /// then FIN) after it has sent this many market-data messages; 0 = never.
    pub disconnect_every: AtomicU64,
    /// Send nothing at all (no data, no heartbeats) while keeping the TCP
    /// connection open: a silent stall.
    pub stall: AtomicBool,
    /// After every Nth market-data message, send a malformed one (a packet
    /// whose declared length overruns the message); 0 = never. Recorded.
    pub malformed_every: AtomicU64,
    /// Refuse upgrades: 0 = no, 403 or 429 = with that status.
    pub reject_status: AtomicU64,
    /// Sleep this long (ms) on every turn of each connection: a slow server.
    pub slow_turn_ms: AtomicU64,
    /// Sleep this long (ms) after reading an upgrade request, before
    /// answering it (with 101, 403 or 429): an upgrade kept in flight.
    pub upgrade_delay_ms: AtomicU64,
    /// The connection with this id (1 = the first accepted; 0 = none)
    /// floods: besides its market data it sends bursts of 1024 heartbeats,
    /// one about every 200 µs (up to ~5 M/s), as many as the client takes.
    pub flood_connection: AtomicU64,
    /// Instruments that get no market updates (subscribed, but stalled:
    /// the rest of the connection streams on). Sorted.
    stalled_tokens: Mutex<Vec<u32>>,
    stalled_version: AtomicU64,
}

impl Faults {
    /// Stops the market updates of `tokens` (the connection streams on).
    pub fn stall_tokens(&self, tokens: &[u32]) {
        let mut s = self
            .stalled_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.extend_from_slice(tokens);
        s.sort_unstable();
        s.dedup();
        self.stalled_version.fetch_add(1, Ordering::SeqCst);
    }

    /// Resumes the market updates of `tokens`.
    pub fn resume_tokens(&self, tokens: &[u32]) {
        let mut s = self
            .stalled_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.retain(|t| !tokens.contains(t));
        self.stalled_version.fetch_add(1, Ordering::SeqCst);
    }

    /// The version of the stalled list (bumped by every change; no lock).
    pub(crate) fn stalled_version(&self) -> u64 {
        self.stalled_version.load(Ordering::SeqCst)
    }

    /// The stalled instruments and the version of that list.
    pub(crate) fn stalled(&self) -> (u64, Vec<u32>) {
        let s = self
            .stalled_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.stalled_version.load(Ordering::SeqCst), s.clone())
    }
}

pub(crate) struct ConnEntry {
    tokens: Vec<u32>,
    modes: std::collections::BTreeMap<u32, crate::tick::Mode>,
    text_tx: Sender<String>,
}

/// One client request as the mock exchange received it (tests read the
/// server side of a live subscription change from these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockRequest {
    /// The connection (numbered from 1 in accept order).
    pub conn: u64,
    /// `subscribe`, `unsubscribe` or `mode`.
    pub action: &'static str,
    /// The mode of a `mode` request.
    pub mode: Option<crate::tick::Mode>,
    /// The numeric tokens of the request.
    pub tokens: Vec<u32>,
}

/// Requests kept in the log; older ones are dropped (and counted).
pub const MAX_LOGGED_REQUESTS: usize = 100_000;

pub(crate) struct Shared {
    cfg: MockConfig,
    snapshot: ArcSwap<Snapshot>,
    registry: Mutex<HashMap<u64, ConnEntry>>,
    registry_version: AtomicU64,
    requests: Mutex<std::collections::VecDeque<MockRequest>>,
    stop: AtomicBool,
    stats: MockStats,
    recorder: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    open_connections: AtomicU64,
    faults: Faults,
}

/// A running mock exchange. Dropping it stops it.
#[derive(Debug)]
pub struct MockExchange {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Errors starting the mock exchange.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {err}; pick a free port or use port 0")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        err: std::io::Error,
    },
    /// The record file could not be created.
    #[error("cannot create record file {path}: {err}")]
    Record {
        /// Path.
        path: String,
        /// Cause.
        err: std::io::Error,
    },
    /// A thread could not be spawned.
    #[error("cannot spawn mock exchange thread: {0}")]
    Spawn(std::io::Error),
}

pub(crate) fn today_days() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs / 86_400).unwrap_or(u32::MAX)
}

pub(crate) fn now_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

impl MockExchange {
    /// Binds, spawns the acceptor and generator threads, and returns.
    ///
    /// # Errors
    /// [`MockError`] when the address cannot be bound, the record file cannot
    /// be created, or a thread cannot be spawned.
    pub fn start(cfg: MockConfig) -> Result<Self, MockError> {
        let listener = TcpListener::bind(cfg.listen).map_err(|err| MockError::Bind {
            addr: cfg.listen,
            err,
        })?;
        let addr = listener.local_addr().map_err(|err| MockError::Bind {
            addr: cfg.listen,
            err,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|err| MockError::Bind { addr, err })?;
        let recorder = match &cfg.record {
            None => None,
            Some(p) => Some(Mutex::new(std::io::BufWriter::new(
                std::fs::File::create(p).map_err(|err| MockError::Record {
                    path: p.display().to_string(),
                    err,
                })?,
            ))),
        };
        let shared = Arc::new(Shared {
            cfg,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            registry: Mutex::new(HashMap::new()),
            registry_version: AtomicU64::new(0),
            requests: Mutex::new(std::collections::VecDeque::new()),
            stop: AtomicBool::new(false),
            stats: MockStats::default(),
            recorder,
            open_connections: AtomicU64::new(0),
            faults: Faults::default(),
        });
        let mut threads = Vec::new();
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("mock-gen".into())
                .spawn(move || generate::generate(&s))
                .map_err(MockError::Spawn)?,
        );
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("mock-accept".into())
                .spawn(move || accept(&listener, &s))
                .map_err(MockError::Spawn)?,
        );
        Ok(Self {
            addr,
            shared,
            threads,
        })
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://` URL of the server, with the `/` path Kite requires.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The fault switches.
    #[must_use]
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Live counters.
    #[must_use]
    pub fn stats(&self) -> &MockStats {
        &self.shared.stats
    }

    /// Instruments currently subscribed, per open connection (sorted).
    #[must_use]
    pub fn subscriptions(&self) -> Vec<Vec<u32>> {
        let reg = self
            .shared
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<Vec<u32>> = reg.values().map(|c| c.tokens.clone()).collect();
        v.sort();
        v
    }

    /// Each open connection's subscriptions and their modes, by connection
    /// number (the server's own state).
    #[must_use]
    pub fn subscription_modes(
        &self,
    ) -> std::collections::BTreeMap<u64, std::collections::BTreeMap<u32, crate::tick::Mode>> {
        let reg = self
            .shared
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reg.iter().map(|(id, c)| (*id, c.modes.clone())).collect()
    }

    /// Every valid request received so far (the latest
    /// [`MAX_LOGGED_REQUESTS`]), in arrival order per connection.
    #[must_use]
    pub fn requests(&self) -> Vec<MockRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Sends an order postback (`{"type":"order","data":{…}}`, the fields
    /// of docs/KITE_PROTOCOL.md §3) for `order_id` with `status` on every
    /// open connection; returns the frame.
    pub fn send_order(&self, order_id: &str, status: &str) -> String {
        let frame = scenario::order_frame(order_id, status, now_s());
        self.broadcast_text(&frame);
        frame
    }

    /// Sends a text frame (e.g. `{"type":"order","data":{…}}`) on every open connection.
    pub fn broadcast_text(&self, text: &str) {
        let reg = self
            .shared
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in reg.values() {
            // A connection that just closed has dropped its receiver; nothing to deliver.
            let _ = c.text_tx.send(text.to_owned());
        }
    }

    /// Stops every thread, flushes the record file, and waits for them.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            // A panicked mock thread has already printed its panic; the test
            // using the mock sees the consequences in its own assertions.
            let _ = t.join();
        }
        if let Some(rec) = &self.shared.recorder {
            let mut w = rec
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = std::io::Write::flush(&mut *w);
        }
    }
}

impl Drop for MockExchange {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut conn_threads = Vec::new();
    let mut next_id = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                next_id += 1;
                let s = Arc::clone(shared);
                let id = next_id;
                match std::thread::Builder::new()
                    .name(format!("mock-conn-{id}"))
                    .spawn(move || conn::serve(stream, id, &s))
                {
                    Ok(h) => conn_threads.push(h),
                    Err(e) => eprintln!("mock-exchange: cannot spawn connection thread: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                eprintln!("mock-exchange: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        conn_threads.retain(|h: &JoinHandle<()>| !h.is_finished());
    }
    for h in conn_threads {
        let _ = h.join();
    }
}

/// The embedded default instrument set of `run --mock` and the tests: two
/// indices and 298 synthetic instruments over the NSE (1), NFO (2), CDS (3),
/// BSE (4), MCX (5) and BCD (6) segments, so every price divisor and packet
/// kind appears. Modes cycle full, quote, ltp.
#[must_use]
pub fn default_instruments(n: usize) -> Vec<crate::instruments::Instrument> {
    use crate::tick::Mode;
    let modes = [Mode::Full, Mode::Quote, Mode::Ltp];
    let mut v = vec![
        crate::instruments::Instrument {
            token: 256_265,
            tradingsymbol: "NIFTY 50".into(),
            name: "NIFTY 50".into(),
            exchange: "NSE".into(),
            expiry_day: None,
            mode: Some(Mode::Full),
            tier: None,
        },
        crate::instruments::Instrument {
            token: 260_105,
            tradingsymbol: "NIFTY BANK".into(),
            name: "NIFTY BANK".into(),
            exchange: "NSE".into(),
            expiry_day: None,
            mode: Some(Mode::Quote),
            tier: None,
        },
    ];
    let segments: [(u32, &str); 6] = [
        (1, "NSE"),
        (2, "NFO"),
        (3, "CDS"),
        (4, "BSE"),
        (5, "MCX"),
        (6, "BCD"),
    ];
    let mut i = 0u32;
    while v.len() < n {
        // NSE gets half the instruments, the other segments share the rest.
        let (seg, exch) = if i.is_multiple_of(2) {
            segments[0]
        } else {
            segments[1 + (i as usize / 2) % 5]
        };
        let token = ((10_000 + i) << 8) | seg;
        v.push(crate::instruments::Instrument {
            token,
            tradingsymbol: format!("SYM{i}"),
            name: format!("Synthetic {i}"),
            exchange: exch.into(),
            expiry_day: None,
            mode: Some(modes[i as usize % 3]),
            tier: None,
        });
        i += 1;
    }
    v.truncate(n);
    v
}
