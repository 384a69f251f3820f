//! tungstenite over a mio `TcpStream`: resolving and dialing, the upgrade
//! request, subscribing, and the words for a failed handshake.
//!
//! Runs on the network thread, at connection set-up only (everything here
//! may allocate), except [`resolve`], which blocks and runs on a connection's
//! resolver thread (`resolve.rs`); the steady-state read loop is in
//! `conn.rs`.

use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::{ClientHandshake, Request, Response};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::NetConfig;
use crate::secret::Secret;
use crate::tick::Mode;
use crate::wire::text::{Request as KiteRequest, encode_request};

/// An open WebSocket.
pub(super) type Ws = WebSocket<MaybeTlsStream<TcpStream>>;
/// An upgrade waiting for the socket.
pub(super) type Mid = MidHandshake<ClientHandshake<MaybeTlsStream<TcpStream>>>;
/// One step of the upgrade.
pub(super) type HandshakeStep =
    Result<(Ws, Response), HandshakeError<ClientHandshake<MaybeTlsStream<TcpStream>>>>;

/// Resolves `url`'s host and port (blocking DNS: never on the network
/// thread).
pub(super) fn resolve(url: &str) -> Result<SocketAddr, String> {
    let req = url
        .into_client_request()
        .map_err(|e| format!("not a WebSocket URL: {e}"))?;
    let uri = req.uri();
    let host = uri.host().ok_or_else(|| "the URL has no host".to_owned())?;
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("wss") => 443,
        _ => 80,
    });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolved to no address"))
}

/// Starts a non-blocking TCP connect to `addr` registered under `token`.
pub(super) fn dial(addr: SocketAddr, poll: &Poll, token: Token) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    poll.registry()
        .register(&mut s, token, Interest::READABLE | Interest::WRITABLE)
        .map_err(|e| format!("register: {e}"))?;
    Ok(s)
}

/// The largest frame (and message) a connection subscribed to
/// `instruments` accepts, bytes: room for twice the largest market-data
/// message it can get (every instrument in full mode), at least 1 MiB and
/// `max_text_frame_bytes`, at most `max_message_size`.
///
/// tungstenite reads a frame whole into its read buffer before handing it
/// out, and keeps the buffer; a frame over this limit is refused from its
/// header, before any of it is buffered (the connection then goes down as
/// `read_error` and reconnects). So a hostile 16 MB frame costs no memory,
/// and the read buffer of a connection stays within about twice this limit
/// (README, "Fault drills": huge text frames).
pub(super) fn frame_limit(cfg: &NetConfig, instruments: usize) -> usize {
    let market = 2 + instruments.saturating_mul(2 + crate::wire::layout::FULL_LEN);
    market
        .saturating_mul(2)
        .max(1 << 20)
        .max(cfg.max_text_frame_bytes)
        .min(cfg.max_message_size)
}

/// Starts the TLS / WebSocket upgrade on a connected `stream`, with the
/// credentials in `url`, the read settings of `cfg` and frames of at most
/// `max_frame` bytes ([`frame_limit`]).
///
/// # Errors
/// The URL is not a WebSocket URL (the message names `shown`, the URL
/// without credentials).
pub(super) fn start_handshake(
    stream: TcpStream,
    url: &Secret,
    shown: &str,
    cfg: &NetConfig,
    max_frame: usize,
) -> Result<HandshakeStep, String> {
    let ws_cfg = WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_size)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame));
    let mut request: Request = url
        .expose()
        .into_client_request()
        .map_err(|e| format!("bad WebSocket URL {shown}: {e}"))?;
    request.headers_mut().insert(
        "X-Kite-Version",
        tungstenite::http::HeaderValue::from_static("3"),
    );
    Ok(tungstenite::client_tls_with_config(
        request,
        stream,
        Some(ws_cfg),
        None,
    ))
}

/// Sends `subscribe` and `mode` requests for `tokens` in chunks of at most
/// `chunk` instruments.
///
/// # Errors
/// The socket failed.
pub(super) fn subscribe(
    ws: &mut Ws,
    tokens: &[(u32, Mode)],
    chunk: usize,
) -> Result<(), tungstenite::Error> {
    apply_delta(ws, &[], tokens, &[], chunk)
}

/// Sends a live change in chunks of at most `chunk` tokens: `unsubscribe`
/// the removed tokens, `subscribe` the added ones, then one `mode` request
/// per mode for the added and the re-moded ones (Kite subscribes in
/// `quote`; docs/KITE_PROTOCOL.md). Allocates (control plane).
///
/// # Errors
/// Writing to the socket failed (queued frames are not errors).
pub(super) fn apply_delta(
    ws: &mut Ws,
    unsubscribe: &[u32],
    subscribe: &[(u32, Mode)],
    remode: &[(u32, Mode)],
    chunk: usize,
) -> Result<(), tungstenite::Error> {
    let chunk = chunk.max(1);
    let mut text = String::new();
    for c in unsubscribe.chunks(chunk) {
        encode_request(KiteRequest::Unsubscribe(c), &mut text);
        queued(ws.write(Message::text(text.clone())))?;
    }
    let added: Vec<u32> = subscribe.iter().map(|t| t.0).collect();
    for c in added.chunks(chunk) {
        encode_request(KiteRequest::Subscribe(c), &mut text);
        queued(ws.write(Message::text(text.clone())))?;
    }
    for mode in [Mode::Ltp, Mode::Quote, Mode::Full] {
        let of_mode: Vec<u32> = subscribe
            .iter()
            .chain(remode)
            .filter(|t| t.1 == mode)
            .map(|t| t.0)
            .collect();
        for c in of_mode.chunks(chunk) {
            encode_request(KiteRequest::Mode(mode, c), &mut text);
            queued(ws.write(Message::text(text.clone())))?;
        }
    }
    queued(ws.flush())
}

/// tungstenite's `write` queues the frame before it tries the socket (and
/// `flush` keeps what it could not send), so `WouldBlock` means "queued,
/// flush later", not failure.
pub(super) fn queued(r: Result<(), tungstenite::Error>) -> Result<(), tungstenite::Error> {
    match r {
        Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        r => r,
    }
}

/// What a refused or failed upgrade means, with the fix.
pub(super) fn describe_handshake_error(url: &str, e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(resp) => {
            let status = resp.status();
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                .unwrap_or_default();
            let hint = match status.as_u16() {
                403 => {
                    "the api_key or access token was rejected; check --api-key / \
                     ZERODHA__API_KEY and the token in --access-token-file / \
                     ZERODHA__ACCESS_TOKEN (Kite tokens expire daily)"
                }
                429 => "too many connections or requests for this api_key (at most 3 sockets)",
                _ => "the server refused the WebSocket upgrade",
            };
            let body = if body.is_empty() {
                String::new()
            } else {
                format!(" (server said: {})", body.trim())
            };
            format!("upgrade refused by {url}: HTTP {status}: {hint}{body}")
        }
        other if url.starts_with("wss://") => format!(
            "WebSocket handshake with {url} failed: {other} (is the server speaking TLS on \
             this port? a plain server needs ws://)"
        ),
        other => format!("WebSocket handshake with {url} failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_takes_the_scheme_default_port_and_rejects_non_urls() {
        assert_eq!(resolve("ws://127.0.0.1/").unwrap().port(), 80);
        assert_eq!(resolve("wss://127.0.0.1/").unwrap().port(), 443);
        assert_eq!(resolve("ws://[::1]:9001/").unwrap().port(), 9001);
        assert!(resolve("http//nope").is_err());
    }

    #[test]
    fn the_frame_limit_fits_the_largest_market_message_and_no_more() {
        let cfg = NetConfig::default();
        assert_eq!(frame_limit(&cfg, 1), 1 << 20);
        let full = 2 + 3000 * (2 + crate::wire::layout::FULL_LEN);
        assert_eq!(frame_limit(&cfg, 3000), 2 * full);
        let small = NetConfig {
            max_message_size: 100_000,
            ..NetConfig::default()
        };
        assert_eq!(frame_limit(&small, 3000), 100_000);
    }

    #[test]
    fn a_refused_upgrade_names_the_status_and_the_fix() {
        let resp = tungstenite::http::Response::builder()
            .status(403)
            .body(Some(b"bad token".to_vec()))
            .unwrap();
        let why = describe_handshake_error("ws://h/", &tungstenite::Error::Http(Box::new(resp)));
        assert!(why.contains("HTTP 403"), "{why}");
        assert!(why.contains("access token was rejected"), "{why}");
        assert!(why.contains("server said: bad token"), "{why}");
    }
}
