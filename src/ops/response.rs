//! The ops HTTP server's responses: the [`Response`] type and its bytes,
//! and the read-only `GET` endpoints ([`route`]), served from the latest
//! [`View`](super::View). Runs on the `ops-http` thread (`http.rs`).

use super::Shared;

/// The response bytes: status line, headers and (unless `head_only`) body.
pub(super) fn encode(resp: &Response, head_only: bool) -> Vec<u8> {
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

/// A `text/plain` response.
pub fn text(status: u16, body: impl Into<String>) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

/// A pretty JSON response (a `500` if `v` cannot be encoded).
pub fn json(status: u16, v: &impl serde::Serialize) -> Response {
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

const INDEX: &str = "panda-feed ops endpoints:\n  GET /metrics            Prometheus text format 0.0.4\n  GET /health             status and issues (200 healthy or degraded, 503 unhealthy)\n  GET /stats/connections  connection states and their last health samples\n  GET /ops/slow           slowest Kafka deliveries and Redis writes of the window\n  GET /stats/slo          the SLO gap monitor's latest round per tier\n  GET /stats/universe     the instrument universe's latest versions\n  GET /ops/subscriptions  desired and applied subscriptions per connection\n  POST /ops/subscriptions change subscriptions (JSON; admin)\n  POST /ops/reload        reload the config file (admin)\n  POST /ops/validate      check a TOML body as the config file (admin)\n";

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
        return text(
            405,
            format!("method {method} not allowed: use GET (POST only on /ops/*)\n"),
        );
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
                    "policy_version": view.control.policy_version,
                    "universe_version": view.control.universe.as_ref().map(|u| &u.version),
                    "universe_instruments": view.control.universe.as_ref().map(|u| u.rows),
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
        "/stats/slo" => json(200, &view.slo),
        _ => text(404, format!("not found: {path}\n\n{INDEX}")),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}
