//! The network thread: one mio `Poll` over every WebSocket connection,
//! non-blocking connect and upgrade, subscription, and the read loop that
//! routes ticks into the publisher rings.
//!
//! Runs on the (pinned) network thread, which owns the `Poll`, every
//! connection's socket and state (`conn.rs`), and the producer halves of all
//! tick rings (through the [`Router`]). Other threads see only the
//! [`ConnStats`] it publishes and the [`Credentials`] it reads.
//!
//! Contract: the thread never blocks on a socket (mio is edge-triggered, so
//! every readiness event is served until `WouldBlock`, or until the
//! connection's read budget for the turn is spent, and then read on next
//! turn without waiting), never resolves a name itself (each connection has
//! a resolver thread), never blocks on a
//! ring (a full ring either drops and counts, or, under `engine.overflow =
//! "block"`, holds the message and stops reading that socket, retried every
//! turn with a 1 ms poll timeout: `hold.rs`), and allocates only when a connection
//! changes state (connect, upgrade, subscribe, going down). A loop turn that
//! reads market data or heartbeats, or finds nothing to do, allocates
//! nothing; `tests/no_alloc.rs` drives [`Net::turn`] to check it.
//!
//! Supervision: every connection is a small state machine driven by
//! readiness events and by timers checked on every loop turn. Any frame
//! (heartbeats included) proves liveness; silence past the liveness window
//! closes and reconnects. Reconnects back off exponentially with jitter,
//! capped, and the backoff resets only after the connection has stayed up
//! for `healthy_after` (`backoff.rs`). HTTP 403 stops retrying
//! (`auth_failed`) until the access token changes; HTTP 429 backs off long.
//! Every reconnect resubscribes the same instruments in the same modes; the
//! per-connection `seq` goes on.
//!
//! Files: `mod.rs` the loop; `conn.rs` one connection's state machine;
//! `read.rs` the read loop; `hold.rs` a message held for ring room; `ws.rs` tungstenite/mio set-up; `resolve.rs` name resolution off the
//! network thread; `budget.rs` the per-turn read budget; `backoff.rs` the
//! reconnect policy;
//! `stats.rs` the published state, reasons and counters; `creds.rs` the
//! credentials.

mod backoff;
mod budget;
mod conn;
mod creds;
mod hold;
mod read;
mod resolve;
mod stats;
pub mod subs;
mod ws;

pub use creds::Credentials;
pub use stats::{ConnState, ConnStats, DownReason};
pub use subs::{Desired, SubsHandoff};

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

use super::route::Router;
use super::wake::Wake;
use crate::clock::now_ns;
use crate::config::{IdlePolicy, Supervision};
use crate::tick::Mode;
use conn::Conn;

/// What one connection subscribes to.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    /// Instruments and their modes.
    pub tokens: Vec<(u32, Mode)>,
}

/// Settings of the network thread.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Spin (poll timeout 0) or park (poll timeout 50 ms) when idle.
    pub idle: IdlePolicy,
    /// Most instruments in one `subscribe` / `mode` request.
    pub subscribe_chunk: usize,
    /// tungstenite's read buffer, in bytes.
    pub read_buffer_size: usize,
    /// Largest WebSocket message (and frame) accepted, in bytes.
    pub max_message_size: usize,
    /// Largest server text frame parsed, bytes; larger ones are counted
    /// (`oversized_text_frames`) and dropped.
    pub max_text_frame_bytes: usize,
    /// Liveness, pings, backoff and timeouts.
    pub supervision: Supervision,
    /// Most instruments one connection holds (live changes included).
    pub max_per_connection: usize,
    /// What a full ring does (`engine.overflow`); the router is set to it.
    pub overflow: crate::config::Overflow,
    /// With `block`: the longest a message waits for ring room.
    pub block_max: Duration,
    /// Test hook (feature `test-hooks`): every lookup of connection `.0`
    /// sleeps `.1`, then fails.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub test_slow_resolver: Option<(usize, Duration)>,
}

impl Default for NetConfig {
    fn default() -> Self {
        use crate::config::defaults;
        Self {
            idle: IdlePolicy::Park,
            subscribe_chunk: defaults::SUBSCRIBE_CHUNK,
            read_buffer_size: defaults::READ_BUFFER_SIZE,
            max_message_size: defaults::MAX_MESSAGE_BYTES,
            max_text_frame_bytes: defaults::MAX_TEXT_FRAME_BYTES,
            supervision: Supervision::default(),
            max_per_connection: defaults::MAX_PER_CONNECTION,
            overflow: crate::config::Overflow::default(),
            block_max: Duration::from_millis(defaults::BLOCK_MAX_MS),
            #[cfg(feature = "test-hooks")]
            test_slow_resolver: None,
        }
    }
}

/// What the network thread exchanges with the rest of the engine besides
/// the tick rings: live subscription changes in, order postbacks out.
#[derive(Debug, Default)]
pub struct Links {
    /// Desired subscription states from the control plane.
    pub subs: Arc<SubsHandoff>,
    /// The order ring's producer end (with `kafka.orders_topic`).
    pub orders: Option<super::orders::OrderTx>,
}

/// The waker's token; connection `i` has `Token(i)`.
const WAKE: Token = Token(usize::MAX);

/// Readiness events served per `poll` (more wait for the next turn).
const EVENTS: usize = 64;

/// While a message waits for ring room, the loop wakes at least this often
/// to retry it (a timer, never a spin: README, "Overflow: block or drop").
const HOLD_RETRY: Duration = Duration::from_millis(1);

/// The network thread's state.
pub struct Net {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    router: Router,
    wakes: Vec<(Arc<Wake>, Thread)>,
    stop: Arc<AtomicBool>,
    cfg: NetConfig,
    /// Loop turns so far (each connection gets one read budget per turn).
    turn: u64,
    /// Live subscription changes from the control plane.
    subs: Arc<SubsHandoff>,
    /// The desired-state version applied last.
    subs_applied: u64,
    /// Order postbacks go here (when `kafka.orders_topic` is set).
    orders: Option<super::orders::OrderTx>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("conns", &self.conns)
            .finish_non_exhaustive()
    }
}

/// A handle that stops the network thread promptly.
#[derive(Debug, Clone)]
pub struct NetStopper {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl NetStopper {
    /// Wakes the loop (e.g. a live subscription change is waiting).
    pub fn wake(&self) {
        // A failed wake only delays the change to the next poll timeout.
        let _ = self.waker.wake();
    }

    /// Asks the loop to stop and wakes it.
    pub fn stop(&self) {
        // SeqCst (Relaxed would do): the flag carries no other data.
        self.stop.store(true, Ordering::SeqCst);
        // A failed wake only delays the stop to the next poll timeout.
        let _ = self.waker.wake();
    }
}

impl Net {
    /// Sets up the poll and the connections (the first attempts start on
    /// the first turn, on the network thread) and returns the thread state
    /// with its stopper. `stats[i]` belongs to `specs[i]`; bit `i` of a
    /// routed message's `touched` set wakes `wakes[i]`. A spec with no
    /// instruments is a spare slot (idle) that a live change can fill;
    /// changes arrive through `subs`.
    ///
    /// # Errors
    /// The poll or its waker cannot be created, or a resolver thread cannot
    /// be spawned.
    ///
    /// # Panics
    /// When `stats` is shorter than `specs`.
    pub fn new(
        creds: &Arc<Credentials>,
        specs: Vec<ConnSpec>,
        stats: &[Arc<ConnStats>],
        router: Router,
        wakes: Vec<(Arc<Wake>, Thread)>,
        cfg: NetConfig,
        links: Links,
    ) -> std::io::Result<(Self, NetStopper)> {
        let Links { subs, orders } = links;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let stop = Arc::new(AtomicBool::new(false));
        let seed = now_ns();
        let mut conns = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let index = u8::try_from(i).unwrap_or(u8::MAX);
            #[cfg(feature = "test-hooks")]
            let slow = cfg.test_slow_resolver.filter(|h| h.0 == i).map(|h| h.1);
            #[cfg(not(feature = "test-hooks"))]
            let slow = None;
            let resolver = resolve::Resolver::spawn(index, Arc::clone(&waker), slow)?;
            conns.push(Conn::new(
                index,
                spec,
                Arc::clone(&stats[i]),
                Arc::clone(creds),
                cfg.supervision,
                seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                resolver,
            ));
        }
        let stopper = NetStopper {
            stop: Arc::clone(&stop),
            waker,
        };
        let net = Self {
            poll,
            events: Events::with_capacity(EVENTS),
            conns,
            router: router.with_overflow(cfg.overflow),
            wakes,
            stop,
            cfg,
            turn: 0,
            subs,
            subs_applied: 0,
            orders,
        };
        Ok((net, stopper))
    }

    /// The loop: serve readiness events and timers until stopped, then close
    /// politely. Dropping the router at the end abandons the rings, so the
    /// publishers drain and stop.
    pub fn run(mut self) {
        // Park: timers (liveness, backoff) are checked at least every 50 ms.
        let timeout = match self.cfg.idle {
            IdlePolicy::Spin => Duration::ZERO,
            IdlePolicy::Park => Duration::from_millis(50),
        };
        // Relaxed: the flag carries no other data; the waker ends the poll.
        while !self.stop.load(Ordering::Relaxed) {
            match self.turn(timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!("network thread: poll failed: {e}; stopping");
                    break;
                }
            }
        }
        self.close();
    }

    /// One loop turn: wait up to `timeout` for readiness (not at all when a
    /// connection has data left from the previous turn), serve every event
    /// within each connection's read budget, read on where a budget ran out,
    /// then run every connection's timers and publish its counters.
    /// [`run`](Self::run) calls it in a loop; tests call it to step the
    /// thread. Allocates nothing unless a connection changes state.
    ///
    /// # Errors
    /// `poll` failed (`Interrupted` included; the caller retries).
    pub fn turn(&mut self, timeout: Duration) -> std::io::Result<()> {
        let pending = self.conns.iter().any(Conn::has_more);
        let timeout = if pending {
            Duration::ZERO
        } else if self.conns.iter().any(Conn::is_held) {
            timeout.min(HOLD_RETRY)
        } else {
            timeout
        };
        self.poll.poll(&mut self.events, Some(timeout))?;
        self.turn = self.turn.wrapping_add(1);
        let turn = self.turn;
        for ev in &self.events {
            if let Some(c) = self.conns.get_mut(ev.token().0)
                && !c.driven_in(turn)
            {
                c.drive(
                    turn,
                    &mut self.router,
                    &mut self.orders,
                    &self.cfg,
                    &self.wakes,
                );
            }
        }
        for c in &mut self.conns {
            if (c.has_more() || c.is_held()) && !c.driven_in(turn) {
                c.drive(
                    turn,
                    &mut self.router,
                    &mut self.orders,
                    &self.cfg,
                    &self.wakes,
                );
            }
        }
        let now = Instant::now();
        if let Some(d) = self.subs.pending(self.subs_applied) {
            self.apply(&d, now);
        }
        for c in &mut self.conns {
            c.timers(
                now,
                turn,
                &self.poll,
                &mut self.router,
                &mut self.orders,
                &self.cfg,
                &self.wakes,
            );
            c.store_stats(now);
        }
        Ok(())
    }

    /// Applies a desired subscription state: plans the per-connection
    /// deltas (`subs.rs`) and has each touched connection apply its own;
    /// untouched connections are not called. A state that does not fit is
    /// refused whole (the control plane checks first, so this is a
    /// backstop) and logged; the version is acknowledged either way, so the
    /// control plane is never stuck waiting.
    fn apply(&mut self, d: &Desired, now: Instant) {
        let current: Vec<&[(u32, crate::tick::Mode)]> =
            self.conns.iter().map(Conn::tokens).collect();
        match subs::plan(&current, &d.tokens, self.cfg.max_per_connection) {
            Ok(plan) => {
                // The SLO monitor's table follows (README, "SLO monitoring").
                let mut before: Vec<u32> =
                    current.iter().flat_map(|c| c.iter().map(|t| t.0)).collect();
                before.sort_unstable();
                let after: Vec<u32> = d.tokens.iter().map(|t| t.0).collect();
                self.router.last_ticks().sync(&before, &after, now_ns());
                for (c, delta) in self.conns.iter_mut().zip(plan) {
                    if !delta.is_empty() {
                        c.apply(delta, &self.cfg, now);
                    }
                }
            }
            Err(e) => tracing::error!("subscriptions version {}: {e}; not applied", d.version),
        }
        self.subs_applied = d.version;
        self.subs.set_applied(d.version);
    }

    /// Closes every connection politely (a close frame each) and publishes
    /// the final counters.
    pub fn close(&mut self) {
        let now = Instant::now();
        for c in &mut self.conns {
            c.release_held(&mut self.router, &self.cfg, &self.wakes);
            c.close();
            c.store_stats(now);
        }
    }
}

/// One [`ConnStats`] per spec, for `url` (without credentials).
#[must_use]
pub fn new_stats(url: &str, specs: &[ConnSpec]) -> Vec<Arc<ConnStats>> {
    specs
        .iter()
        .map(|s| Arc::new(ConnStats::new(url.to_owned(), s.tokens.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::sync::atomic::Ordering::Relaxed;

    fn cfg() -> NetConfig {
        NetConfig {
            subscribe_chunk: 100,
            read_buffer_size: 64 * 1024,
            max_message_size: 1 << 20,
            ..NetConfig::default()
        }
    }

    /// A port on which nothing listens.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn net_to(url: &str) -> (Net, NetStopper, Vec<Arc<ConnStats>>) {
        let specs = vec![ConnSpec {
            tokens: vec![(256_265, Mode::Full)],
        }];
        let stats = new_stats(url, &specs);
        let creds = Arc::new(Credentials::new(Secret::new("k"), Secret::new("t")));
        let (tx, _rx, _) = crate::ring::tick_ring(16);
        let (net, stopper) = Net::new(
            &creds,
            specs,
            &stats,
            Router::new(vec![tx]),
            vec![],
            cfg(),
            Links::default(),
        )
        .unwrap();
        (net, stopper, stats)
    }

    #[test]
    fn a_refused_connect_backs_off_with_its_reason_and_closes_at_shutdown() {
        let url = format!("ws://127.0.0.1:{}/", closed_port());
        let (mut net, _stopper, stats) = net_to(&url);
        let s = &stats[0];
        assert_eq!(s.state(), ConnState::Connecting, "before the first turn");
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.reconnects(DownReason::ConnectFailed) == 0 && Instant::now() < deadline {
            net.turn(Duration::from_millis(10)).unwrap();
        }
        assert_eq!(s.reconnects(DownReason::ConnectFailed), 1);
        assert_eq!(s.attempts.load(Relaxed), 1);
        assert_eq!(s.state(), ConnState::Backoff);
        let err = s.error().unwrap();
        assert!(
            err.starts_with(&format!("cannot connect to {url}")),
            "{err}"
        );
        net.close();
        assert_eq!(s.state(), ConnState::Closed);
    }

    #[test]
    fn the_stopper_ends_a_parked_loop_promptly() {
        let url = format!("ws://127.0.0.1:{}/", closed_port());
        let (net, stopper, stats) = net_to(&url);
        let h = std::thread::spawn(move || net.run());
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats[0].attempts.load(Relaxed) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t0 = Instant::now();
        stopper.stop();
        h.join().unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(stats[0].state(), ConnState::Closed);
    }
}
