//! One mock-exchange connection: handshake (auth, limits), client requests,
//! and streaming the subscribed instruments from the latest snapshot. Runs on
//! the mock exchange's thread for that connection, which owns its socket and
//! subscriptions.

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::StatusCode;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Error as WsError, Message, WebSocket};

use super::market::kind_for;
use super::{ConnEntry, Shared};
use crate::Mode;
use crate::wire::MessageWriter;

fn reject(status: StatusCode, body: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(body.to_owned()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("Content-Length", body.len().into());
    resp
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// A refusal the handshake callback counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Forbidden,
    TooMany,
}

#[allow(
    clippy::result_large_err,
    reason = "tungstenite's handshake Callback fixes the ErrorResponse type"
)]
pub(super) fn serve(stream: TcpStream, id: u64, shared: &Arc<Shared>) {
    let cfg = &shared.cfg;
    // Handshake blocking, bounded in time; then non-blocking streaming.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    // Counted before the refusal is written: a client that reads its 403
    // or 429 sees the counter already moved.
    let count = |v: Verdict| {
        let c = match v {
            Verdict::Forbidden => &shared.stats.rejected_403,
            Verdict::TooMany => &shared.stats.rejected_429,
        };
        c.fetch_add(1, Ordering::SeqCst);
    };
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        shared.stats.upgrade_requests.fetch_add(1, Ordering::SeqCst);
        let delay = shared.faults.upgrade_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let query = req.uri().query().unwrap_or("");
        if req.uri().path() != "/" {
            return Err(reject(StatusCode::BAD_REQUEST, "path must be /"));
        }
        let key_ok = query_param(query, "api_key") == Some(cfg.api_key.as_str());
        let token_ok = query_param(query, "access_token") == Some(cfg.access_token.as_str());
        if !(key_ok && token_ok) {
            count(Verdict::Forbidden);
            return Err(reject(StatusCode::FORBIDDEN, "Forbidden"));
        }
        match shared.faults.reject_status.load(Ordering::SeqCst) {
            403 => {
                count(Verdict::Forbidden);
                return Err(reject(StatusCode::FORBIDDEN, "Forbidden"));
            }
            429 => {
                count(Verdict::TooMany);
                return Err(reject(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"));
            }
            _ => {}
        }
        if shared.open_connections.load(Ordering::SeqCst) >= cfg.max_connections as u64 {
            count(Verdict::TooMany);
            return Err(reject(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"));
        }
        Ok(resp)
    };
    let ws_cfg = WebSocketConfig::default().max_write_buffer_size(16 << 20);
    let ws = tungstenite::accept_hdr_with_config(stream, callback, Some(ws_cfg));
    let Ok(mut ws) = ws else { return };
    if ws.get_mut().set_nonblocking(true).is_err() {
        return;
    }
    shared.open_connections.fetch_add(1, Ordering::SeqCst);
    shared.stats.connections.fetch_add(1, Ordering::SeqCst);
    let (text_tx, text_rx) = mpsc::channel();
    {
        let mut reg = shared
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reg.insert(
            id,
            ConnEntry {
                tokens: Vec::new(),
                modes: std::collections::BTreeMap::new(),
                text_tx,
            },
        );
    }
    let mut c = Conn {
        shared,
        ws,
        subs: HashMap::new(),
        writer: MessageWriter::with_capacity(64 * 1024),
        last_seq: shared.snapshot.load().latest_seq(),
        last_sent: Instant::now(),
        id,
        market_messages: 0,
        text_queued: 0,
        disconnect: false,
        replay_at: 0,
        replay_started: None,
    };
    c.run(&text_rx);
    let mut reg = shared
        .registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    reg.remove(&id);
    drop(reg);
    shared.registry_version.fetch_add(1, Ordering::SeqCst);
    shared.open_connections.fetch_sub(1, Ordering::SeqCst);
}

struct Conn<'a> {
    shared: &'a Shared,
    ws: WebSocket<TcpStream>,
    subs: HashMap<u32, Mode>,
    writer: MessageWriter,
    last_seq: u64,
    last_sent: Instant,
    id: u64,
    market_messages: u64,
    /// Broadcast text frames queued since the last complete flush.
    text_queued: u64,
    /// Set by the `disconnect_every` fault: close cleanly after this turn.
    disconnect: bool,
    /// The next message of the replay recording.
    replay_at: usize,
    /// When this connection's replay began (its first subscribe).
    replay_started: Option<Instant>,
}

/// The connection is over (closed by either side, or broken).
struct Closed;

impl Conn<'_> {
    fn run(&mut self, text_rx: &mpsc::Receiver<String>) {
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                let _ = self.ws.close(None);
                let _ = self.ws.flush();
                return;
            }
            let busy = match self.turn(text_rx) {
                Ok(busy) => busy,
                Err(Closed) => return,
            };
            if self.disconnect {
                self.hang_up();
                return;
            }
            if self.shared.faults.flood_connection.load(Ordering::Relaxed) == self.id {
                // Bursts of 1024 (twice the feed's per-turn read budget)
                // every 200 µs: a flood that leaves a core for the feed.
                std::thread::sleep(Duration::from_micros(200));
            }
            let slow = self.shared.faults.slow_turn_ms.load(Ordering::Relaxed);
            if slow > 0 {
                std::thread::sleep(Duration::from_millis(slow));
            }
            if !busy {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    }

    /// Closes after delivering everything queued: flush (blocking), FIN,
    /// then wait (bounded) for the client to close its side.
    fn hang_up(&mut self) {
        self.shared
            .stats
            .injected_disconnects
            .fetch_add(1, Ordering::SeqCst);
        let sock = self.ws.get_mut();
        let _ = sock.set_nonblocking(false);
        let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = self.ws.flush();
        let sock = self.ws.get_mut();
        let _ = sock.shutdown(std::net::Shutdown::Write);
        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(sock, &mut buf) {
            if n == 0 {
                break;
            }
        }
    }

    /// One loop turn; `Ok(true)` if anything was read or sent.
    fn turn(&mut self, text_rx: &mpsc::Receiver<String>) -> Result<bool, Closed> {
        if self.shared.faults.stall.load(Ordering::Relaxed) {
            // Silent: keep reading requests, send nothing, and do not
            // fall behind the snapshots when the stall ends.
            self.last_seq = self.shared.snapshot.load().latest_seq();
            self.last_sent = Instant::now();
            return self.read_requests();
        }
        let mut busy = self.read_requests()?;
        while let Ok(text) = text_rx.try_recv() {
            if self.send(Message::text(text), false)? {
                self.text_queued += 1;
            } else {
                faults_count(&self.shared.stats.text_frames_unsent);
            }
            busy = true;
        }
        busy |= if self.shared.cfg.replay.is_some() {
            self.replay()?
        } else {
            self.stream_updates()?
        };
        if self.shared.faults.flood_connection.load(Ordering::Relaxed) == self.id {
            busy |= self.flood()?;
        }
        if self.last_sent.elapsed() >= self.shared.cfg.heartbeat {
            self.send(Message::binary(vec![0u8]), true)?;
            self.shared.stats.heartbeats.fetch_add(1, Ordering::SeqCst);
        }
        match self.ws.flush() {
            Ok(()) => {
                self.shared
                    .stats
                    .text_frames_flushed
                    .fetch_add(self.text_queued, Ordering::SeqCst);
                self.text_queued = 0;
            }
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return Err(Closed),
        }
        Ok(busy)
    }

    /// Sends the replay recording's due messages (all of them without a
    /// pace) as far as the client reads: a full write buffer waits for the
    /// next turn. Starts at the connection's first subscribe.
    fn replay(&mut self) -> Result<bool, Closed> {
        let Some(msgs) = self.shared.cfg.replay.clone() else {
            return Ok(false);
        };
        if self.subs.is_empty() && self.replay_started.is_none() {
            return Ok(false);
        }
        let started = *self.replay_started.get_or_insert_with(Instant::now);
        let due = self.shared.cfg.replay_rate.map_or(msgs.len(), |r| {
            let n = started.elapsed().as_secs_f64() * r as f64;
            (n as usize).min(msgs.len())
        });
        let mut sent = false;
        while self.replay_at < due {
            let m = &msgs[self.replay_at];
            if !self.send(Message::Binary(m.clone()), true)? {
                break;
            }
            let packets = m.get(..2).map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
            let st = &self.shared.stats;
            st.sent_ticks
                .fetch_add(u64::from(packets), Ordering::Relaxed);
            st.sent_messages.fetch_add(1, Ordering::Relaxed);
            st.replayed_messages.fetch_add(1, Ordering::Relaxed);
            self.replay_at += 1;
            sent = true;
        }
        Ok(sent)
    }

    /// The `flood_connection` fault: up to 1024 heartbeats per turn (as
    /// many as the write buffer takes), a turn every 200 µs or so.
    fn flood(&mut self) -> Result<bool, Closed> {
        let mut sent = 0;
        for _ in 0..1024 {
            if !self.send(Message::binary(vec![0u8]), false)? {
                break;
            }
            sent += 1;
        }
        self.shared
            .stats
            .flood_heartbeats
            .fetch_add(sent, Ordering::SeqCst);
        Ok(sent > 0)
    }

    /// Queues a message; `record` writes binary ones to the record file.
    /// Returns `false` when the message was not queued (the client is not
    /// reading and the write buffer is full).
    fn send(&mut self, msg: Message, record: bool) -> Result<bool, Closed> {
        let bytes = if record {
            Some(msg.clone().into_data())
        } else {
            None
        };
        match self.ws.write(msg) {
            // WouldBlock from write means the message is queued (tungstenite 0.30).
            Ok(()) => {}
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(WsError::WriteBufferFull(_)) => {
                // Not queued: the client is not reading. Not recorded either;
                // the caller counts what was lost.
                return Ok(false);
            }
            Err(_) => return Err(Closed),
        }
        self.last_sent = Instant::now();
        if let (Some(bytes), Some(rec)) = (bytes, &self.shared.recorder) {
            let mut w = rec
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes();
            if w.write_all(&len)
                .and_then(|()| w.write_all(&bytes))
                .is_err()
            {
                eprintln!("mock-exchange: cannot write the record file; recording is incomplete");
            }
        }
        Ok(true)
    }

    fn read_requests(&mut self) -> Result<bool, Closed> {
        let mut busy = false;
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    busy = true;
                    self.request(t.as_str())?;
                }
                Ok(Message::Close(_)) => {
                    let _ = self.ws.flush();
                    return Err(Closed);
                }
                Ok(_) => busy = true,
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => return Ok(busy),
                Err(_) => return Err(Closed),
            }
        }
    }

    fn tokens(&self, v: &Value) -> Vec<u32> {
        let Some(arr) = v.as_array() else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(arr.len());
        for t in arr {
            match t.as_u64().and_then(|t| u32::try_from(t).ok()) {
                Some(t) => out.push(t),
                // The real server silently ignores string tokens.
                None => {
                    self.shared
                        .stats
                        .ignored_tokens
                        .fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        out
    }

    fn bad_request(&self) {
        self.shared
            .stats
            .bad_requests
            .fetch_add(1, Ordering::SeqCst);
    }

    fn request(&mut self, text: &str) -> Result<(), Closed> {
        let Ok(req) = serde_json::from_str::<Value>(text) else {
            self.bad_request();
            return Ok(());
        };
        let v = &req["v"];
        let action = match req["a"].as_str() {
            Some("subscribe") => "subscribe",
            Some("unsubscribe") => "unsubscribe",
            Some("mode") => "mode",
            _ => "",
        };
        let mode = match v[0].as_str() {
            Some("ltp") => Some(Mode::Ltp),
            Some("quote") => Some(Mode::Quote),
            Some("full") => Some(Mode::Full),
            _ => None,
        };
        if !action.is_empty() && (action != "mode" || mode.is_some()) {
            // Numeric tokens only (the handler below counts the others).
            let tokens = (if action == "mode" { &v[1] } else { v })
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
                        .collect()
                })
                .unwrap_or_default();
            let mut log = self
                .shared
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if log.len() >= super::MAX_LOGGED_REQUESTS {
                log.pop_front();
            }
            log.push_back(super::MockRequest {
                conn: self.id,
                action,
                mode: mode.filter(|_| action == "mode"),
                tokens,
            });
        }
        match req["a"].as_str() {
            Some("subscribe") => {
                let limit = self.shared.cfg.max_per_connection;
                let mut refused = false;
                for t in self.tokens(v) {
                    if self.subs.contains_key(&t) {
                        continue;
                    }
                    if self.subs.len() >= limit {
                        refused = true;
                        continue;
                    }
                    self.subs.insert(t, Mode::Quote);
                }
                if refused {
                    self.shared
                        .stats
                        .error_frames
                        .fetch_add(1, Ordering::SeqCst);
                    let msg = format!(
                        r#"{{"type":"error","data":"Can't subscribe to more than {limit} instruments."}}"#
                    );
                    self.send(Message::text(msg), false)?;
                }
            }
            Some("unsubscribe") => {
                for t in self.tokens(v) {
                    self.subs.remove(&t);
                }
            }
            Some("mode") => {
                let mode = match v[0].as_str() {
                    Some("ltp") => Mode::Ltp,
                    Some("quote") => Mode::Quote,
                    Some("full") => Mode::Full,
                    _ => {
                        self.bad_request();
                        return Ok(());
                    }
                };
                for t in self.tokens(&v[1]) {
                    if let Some(m) = self.subs.get_mut(&t) {
                        *m = mode;
                    }
                }
            }
            _ => {
                self.bad_request();
                return Ok(());
            }
        }
        let mut tokens: Vec<u32> = self.subs.keys().copied().collect();
        tokens.sort_unstable();
        let modes = self.subs.iter().map(|(t, m)| (*t, *m)).collect();
        let mut reg = self
            .shared
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = reg.get_mut(&self.id) {
            e.tokens = tokens;
            e.modes = modes;
        }
        drop(reg);
        self.shared.registry_version.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn flush_message(&mut self) -> Result<(), Closed> {
        if self.writer.is_empty() {
            return Ok(());
        }
        let n = u64::from(self.writer.len());
        let msg = Message::binary(self.writer.finish().to_vec());
        self.writer.clear();
        if !self.send(msg, true)? {
            self.shared
                .stats
                .unsent_ticks
                .fetch_add(n, Ordering::SeqCst);
            return Ok(());
        }
        self.shared.stats.sent_ticks.fetch_add(n, Ordering::SeqCst);
        self.shared
            .stats
            .sent_messages
            .fetch_add(1, Ordering::SeqCst);
        self.market_messages += 1;
        let faults = &self.shared.faults;
        let every = faults.malformed_every.load(Ordering::Relaxed);
        if every > 0 && self.market_messages.is_multiple_of(every) {
            // One packet declaring 184 bytes with only 8 present: `overrun`.
            let mut bad = vec![0, 1, 0, 184];
            bad.extend_from_slice(&[0, 0, 1, 1, 0, 0, 0, 1]);
            if self.send(Message::binary(bad), true)? {
                faults_count(&self.shared.stats.injected_malformed);
            }
        }
        let every = faults.disconnect_every.load(Ordering::Relaxed);
        if every > 0 && self.market_messages.is_multiple_of(every) {
            self.disconnect = true;
        }
        Ok(())
    }

    fn stream_updates(&mut self) -> Result<bool, Closed> {
        let snap = self.shared.snapshot.load();
        let latest = snap.latest_seq();
        if latest <= self.last_seq {
            return Ok(false);
        }
        let max = self.shared.cfg.max_packets_per_message;
        let last_seq = self.last_seq;
        for step in snap.steps.iter().filter(|s| s.seq > last_seq) {
            for t in &step.updates {
                let Some(&mode) = self.subs.get(&t.token.0) else {
                    continue;
                };
                let mut tick = *t;
                tick.kind = kind_for(t, mode);
                // Flush at the cap first: then len < max <= u16::MAX, so the
                // push cannot fail; if it ever did, end the connection rather
                // than skip the tick silently.
                if self.writer.len() >= max {
                    self.flush_message()?;
                }
                self.writer.push(&tick).map_err(|_| Closed)?;
            }
        }
        // Steps older than the kept history were missed by a slow connection.
        let oldest = snap.steps.front().map_or(0, |s| s.seq);
        if oldest > self.last_seq + 1 {
            self.shared
                .stats
                .lagged_updates
                .fetch_add(oldest - self.last_seq - 1, Ordering::SeqCst);
        }
        self.last_seq = latest;
        self.flush_message()?;
        Ok(true)
    }
}

fn faults_count(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, Ordering::SeqCst);
}
