//! A minimal HTTP/1.1 client for the ops endpoints: one request per
//! connection, as the server serves them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// `method path` with `body` (and a bearer `token`, if given) to `addr`;
/// returns (status, body).
pub(crate) fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the ops server");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"));
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
    (status, body)
}

/// `GET path`, as JSON (panics on another status than 200).
pub(crate) fn get_json(addr: &str, path: &str) -> Value {
    let (code, body) = call(addr, "GET", path, None, "");
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// The value of the first sample of `name` (with `labels` as a substring
/// of its label set, e.g. `result="applied"`) in a `/metrics` text.
pub(crate) fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split([' ', '{']).next() == Some(name) && (labels.is_empty() || l.contains(labels))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
