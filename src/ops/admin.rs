//! The control endpoints of the ops HTTP server: `POST /ops/reload`,
//! `POST /ops/validate`, `POST`/`GET /ops/subscriptions` and
//! `GET /stats/universe` (README, "Control plane").
//!
//! The `ops-http` thread parses and authorizes each request here, then hands
//! it over a bounded channel to the `run` loop, which owns the settings and
//! the reloader and answers on the request's own reply channel, waking the
//! HTTP thread's poll. The HTTP thread never waits for the answer: the
//! connection waits in its slot, within its deadline, while others are
//! served.
//!
//! Every `POST` is authorized: only loopback peers unless `ops.admin_remote`
//! is on, and, when `ops.admin_token_file` is set, only with
//! `Authorization: Bearer <token>` (compared in constant time).
//! Refusals are `403` (peer) and `401` (token), counted in
//! `panda_feed_ops_http_denied_total`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use mio::Waker;

use super::http::{Response, text};
use crate::secret::Secret;

/// Largest request body accepted, bytes (a subscription change of 9,000
/// tokens is about 100 KB).
pub const MAX_BODY: usize = 1 << 20;

/// Requests waiting for the `run` loop at once; more get `503`.
pub const QUEUE: usize = 16;

/// Who may call the mutating endpoints.
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    /// The bearer token every `POST` must carry (`ops.admin_token_file`).
    pub token: Option<Secret>,
    /// Serve `POST`s to non-loopback peers (`ops.admin_remote`).
    pub allow_remote: bool,
}

/// A control request, as handed to the `run` loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `POST /ops/reload`: load and apply the config file.
    Reload,
    /// `POST /ops/validate`: check a TOML body as a config file.
    Validate(String),
    /// `POST /ops/subscriptions`: a JSON change of the desired state.
    Subscribe(String),
    /// `GET /ops/subscriptions`: desired and applied states.
    Subscriptions,
    /// `GET /stats/universe`: the latest instrument-universe versions.
    Universe,
}

/// A request and the way back to its connection.
#[derive(Debug)]
pub struct AdminRequest {
    /// What is asked.
    pub call: Call,
    reply: SyncSender<Response>,
    waker: Arc<Waker>,
}

impl AdminRequest {
    /// Answers; the HTTP thread writes it (if the client still waits).
    pub fn answer(self, r: Response) {
        // The connection may have timed out and gone: nothing to do then.
        let _ = self.reply.try_send(r);
        let _ = self.waker.wake();
    }
}

/// The `run` loop's end of the channel.
#[derive(Debug)]
pub struct AdminQueue {
    rx: Receiver<AdminRequest>,
}

impl AdminQueue {
    /// The next waiting request, if any (never blocks).
    #[must_use]
    pub fn next(&self) -> Option<AdminRequest> {
        self.rx.try_recv().ok()
    }
}

/// The HTTP thread's end.
#[derive(Debug, Clone)]
pub struct AdminSender {
    tx: SyncSender<AdminRequest>,
}

/// A bounded channel of [`QUEUE`] requests.
#[must_use]
pub fn channel() -> (AdminSender, AdminQueue) {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    (AdminSender { tx }, AdminQueue { rx })
}

impl AdminSender {
    /// Hands `call` over; the answer arrives on the returned receiver.
    ///
    /// # Errors
    /// The queue is full or the `run` loop is gone: the response to send.
    pub fn send(&self, call: Call, waker: &Arc<Waker>) -> Result<Receiver<Response>, Response> {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        let req = AdminRequest {
            call,
            reply,
            waker: Arc::clone(waker),
        };
        match self.tx.try_send(req) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(text(
                503,
                format!("busy: {QUEUE} control requests are waiting; retry in a moment\n"),
            )),
            Err(TrySendError::Disconnected(_)) => {
                Err(text(503, "the control plane is not running\n"))
            }
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// `GET`, `HEAD`, `POST`, ...
    pub method: &'a str,
    /// The path, without query or fragment.
    pub path: &'a str,
    /// `Content-Length`, if given.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding` was given (not supported: `411`).
    pub chunked: bool,
    /// The `Authorization` header's value.
    pub authorization: Option<&'a str>,
}

/// Parses a request head (everything before the blank line).
///
/// # Errors
/// The `400` to answer.
pub fn parse_head(head: &[u8]) -> Result<Head<'_>, Response> {
    let Ok(head) = std::str::from_utf8(head) else {
        return Err(text(400, "bad request: the request head is not UTF-8\n"));
    };
    let mut lines = head.lines();
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(text(400, "bad request: expected `METHOD /path HTTP/1.1`\n"));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(text(400, "bad request: expected `METHOD /path HTTP/1.1`\n"));
    }
    let mut h = Head {
        method,
        path: target.split(['?', '#']).next().unwrap_or(target),
        content_length: None,
        chunked: false,
        authorization: None,
    };
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) if h.content_length.is_none_or(|m| m == n) => h.content_length = Some(n),
                _ => {
                    return Err(text(
                        400,
                        "bad request: Content-Length is not one non-negative integer\n",
                    ));
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = true;
        } else if name.eq_ignore_ascii_case("authorization") {
            h.authorization = Some(value);
        }
    }
    Ok(h)
}

/// The control call of `head`, if it is one (`None`: a plain `GET`).
///
/// # Errors
/// A `POST` to a path that takes none: `405`.
pub fn call_of(head: &Head<'_>, body: &[u8]) -> Result<Option<Call>, Response> {
    let body = || String::from_utf8_lossy(body).into_owned();
    Ok(Some(match (head.method, head.path) {
        ("POST", "/ops/reload") => Call::Reload,
        ("POST", "/ops/validate") => Call::Validate(body()),
        ("POST", "/ops/subscriptions") => Call::Subscribe(body()),
        ("GET", "/ops/subscriptions") => Call::Subscriptions,
        ("GET", "/stats/universe") => Call::Universe,
        ("POST", p) => {
            return Err(text(
                405,
                format!(
                    "method POST not allowed on {p}: POST serves /ops/reload, /ops/validate \
                     and /ops/subscriptions\n"
                ),
            ));
        }
        _ => return Ok(None),
    }))
}

/// Whether a `POST` from `peer` with `authorization` may proceed.
///
/// # Errors
/// The `403` (peer not allowed) or `401` (token missing or wrong) to send.
pub fn authorize(
    peer: Option<IpAddr>,
    authorization: Option<&str>,
    auth: &AdminAuth,
) -> Result<(), Response> {
    if !auth.allow_remote && !peer.is_some_and(|p| p.is_loopback()) {
        return Err(text(
            403,
            "forbidden: control requests are served to loopback clients only \
             (ops.admin_remote = false)\n",
        ));
    }
    let Some(token) = &auth.token else {
        return Ok(());
    };
    let given = authorization.and_then(|a| {
        let (scheme, rest) = a.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.expose().as_bytes()) => Ok(()),
        Some(_) => Err(text(
            401,
            "unauthorized: the bearer token is not the admin token\n",
        )),
        None => Err(text(
            401,
            "unauthorized: send `Authorization: Bearer <token>` with the token in \
             ops.admin_token_file\n",
        )),
    }
}

/// Compares without an early exit on the first differing byte (the length
/// is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(token: Option<&str>, remote: bool) -> AdminAuth {
        AdminAuth {
            token: token.map(Secret::new),
            allow_remote: remote,
        }
    }

    #[test]
    fn posts_need_a_loopback_peer_and_the_token() {
        let lo: Option<IpAddr> = Some([127, 0, 0, 1].into());
        let far: Option<IpAddr> = Some([10, 0, 0, 1].into());
        assert!(authorize(lo, None, &auth(None, false)).is_ok());
        assert_eq!(
            authorize(far, None, &auth(None, false)).unwrap_err().status,
            403
        );
        assert_eq!(
            authorize(None, None, &auth(None, false))
                .unwrap_err()
                .status,
            403
        );
        let t = auth(Some("s3cret"), false);
        assert_eq!(authorize(lo, None, &t).unwrap_err().status, 401);
        assert_eq!(
            authorize(lo, Some("Bearer nope"), &t).unwrap_err().status,
            401
        );
        assert_eq!(
            authorize(lo, Some("Basic s3cret"), &t).unwrap_err().status,
            401
        );
        assert!(authorize(lo, Some("Bearer s3cret"), &t).is_ok());
        assert!(authorize(lo, Some("bearer  s3cret "), &t).is_ok());
        let remote = auth(Some("s3cret"), true);
        assert!(authorize(far, Some("Bearer s3cret"), &remote).is_ok());
        assert_eq!(authorize(far, None, &remote).unwrap_err().status, 401);
        // The refusal never quotes the token.
        let r = authorize(lo, Some("Bearer s3cre"), &t).unwrap_err();
        assert!(!r.body.contains("s3cret"));
    }

    #[test]
    fn heads_are_parsed_strictly() {
        let h = parse_head(
            b"POST /ops/reload?x=1 HTTP/1.1\r\nContent-Length: 3\r\nAuthorization: Bearer t",
        )
        .unwrap();
        assert_eq!(
            (h.method, h.path, h.content_length, h.authorization),
            ("POST", "/ops/reload", Some(3), Some("Bearer t"))
        );
        for bad in [
            &b"POST /x HTTP/1.1\r\nContent-Length: -1"[..],
            b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4",
            b"POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999",
            b"POST x HTTP/1.1",
            b"\xff",
        ] {
            assert_eq!(parse_head(bad).unwrap_err().status, 400, "{bad:?}");
        }
        assert!(
            parse_head(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked")
                .unwrap()
                .chunked
        );
    }
}
