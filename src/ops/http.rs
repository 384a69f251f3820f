//! The ops HTTP server: a small blocking HTTP/1.1 server on its own thread
//! (no async runtime). One request per connection, served in turn, with a
//! bounded request size and read/write timeouts, so a bad or slow client
//! costs at most one timeout and a fixed buffer. It serves the latest
//! [`View`](super::View); it never touches the engine.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Shared;

/// Largest request head accepted, bytes.
pub const MAX_REQUEST: usize = 8 * 1024;

/// Read and write timeout per connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Status classes counted in `panda_feed_ops_http_requests_total`.
pub const CODE_LABELS: [&str; 3] = ["2xx", "4xx", "5xx"];

/// A running server; stops on drop.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` and serves on a thread named `ops-http`.
    ///
    /// # Errors
    /// The address is invalid or cannot be bound.
    pub fn start(listen: &str, shared: Arc<Shared>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ops-http".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    // Accept errors (e.g. too many open files) are transient:
                    // the next accept may succeed.
                    if let Ok(c) = conn {
                        serve(c, &shared);
                    }
                }
            })?;
        Ok(Self {
            addr,
            stop,
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
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
        "/metrics" => {
            let counts: Vec<(&str, u64)> = CODE_LABELS
                .iter()
                .zip(&shared.http_responses)
                .map(|(k, v)| (*k, v.load(Ordering::Relaxed)))
                .collect();
            Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: super::metrics::render(&view, &counts),
            }
        }
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

/// Reads one request head, answers it, closes.
fn serve(mut c: TcpStream, shared: &Shared) {
    let _ = c.set_read_timeout(Some(IO_TIMEOUT));
    let _ = c.set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    let (resp, head_only) = loop {
        if len == buf.len() {
            break (text(431, "request head too large\n"), false);
        }
        match c.read(&mut buf[len..]) {
            Ok(0) => {
                if len == 0 {
                    // Connected and closed (e.g. a port probe): nothing to answer.
                    return;
                }
                break (text(400, "bad request: incomplete request head\n"), false);
            }
            Ok(n) => {
                len += n;
                if let Some(end) = find_head_end(&buf[..len]) {
                    let head = &buf[..end];
                    break (route(head, shared), head.starts_with(b"HEAD "));
                }
            }
            Err(_) => break (text(408, "request timeout\n"), false),
        }
    };
    let class = match resp.status {
        200..=299 => 0,
        400..=499 => 1,
        _ => 2,
    };
    shared.http_responses[class].fetch_add(1, Ordering::Relaxed);
    let header = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    let _ = c.write_all(header.as_bytes());
    if !head_only {
        let _ = c.write_all(resp.body.as_bytes());
    }
    let _ = c.flush();
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = b.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
