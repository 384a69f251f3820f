//! One downstream client on the `stream` thread: its non-blocking
//! WebSocket (handshake first, bounded in time), its subscribed tokens and
//! its bounded outgoing buffer. A write that would grow the buffer past
//! `ops.stream_client_buffer_bytes` ends the client as [`Gone::Slow`]; the
//! server never waits for a client.

use std::collections::{HashSet, VecDeque};
use std::io::ErrorKind;
use std::time::Instant;

use mio::net::TcpStream;
use tungstenite::handshake::server::{NoCallback, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Error as WsError, Message, Utf8Bytes, WebSocket};

/// Largest client message, bytes (a subscribe of ~9000 tokens fits).
pub(super) const MAX_REQUEST_BYTES: usize = 128 * 1024;
/// Most requests read from one client per event (the rest wait for the
/// next turn, so one chatty client cannot hold the thread).
const MAX_REQUESTS_PER_TURN: usize = 64;

/// Why a client is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gone {
    /// It closed, or the connection broke.
    Closed,
    /// Its outgoing buffer passed the bound.
    Slow,
    /// The handshake failed or timed out.
    Handshake,
}

type Mid = MidHandshake<ServerHandshake<TcpStream, NoCallback>>;

enum Conn {
    Handshaking(Box<Mid>),
    Open(Box<WebSocket<TcpStream>>),
    Done,
}

/// A client.
pub(super) struct Client {
    conn: Conn,
    /// Handshake deadline (`None` once open).
    pub(super) deadline: Option<Instant>,
    /// Subscribed instrument tokens (live bars are sent for these).
    pub(super) tokens: HashSet<u32>,
    /// Replays not sent yet, in order: a token's window, then the
    /// acknowledgement of the request that asked for it.
    pub(super) replay: VecDeque<Replay>,
    /// The tokens in `replay` (each queued once).
    pub(super) queued: HashSet<u32>,
    /// Bars replayed since the last acknowledgement.
    pub(super) replayed: usize,
    /// The last read stopped at [`MAX_REQUESTS_PER_TURN`]: read again next
    /// turn (no new readiness edge comes for what is already buffered).
    pub(super) more: bool,
}

/// One step of a subscribe's replay, sent when the socket has room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Replay {
    /// The window of a token; the token is subscribed when it is sent.
    Token(u32),
    /// `{"type":"subscribed",…}` for these tokens.
    Ack(Vec<u32>),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("open", &self.is_open())
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

/// The WebSocket settings of a client with an outgoing bound of
/// `buffer_bytes`.
fn ws_config(buffer_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size((buffer_bytes / 4).min(64 * 1024))
        .max_write_buffer_size(buffer_bytes)
        .max_message_size(Some(MAX_REQUEST_BYTES))
        .max_frame_size(Some(MAX_REQUEST_BYTES))
}

impl Client {
    /// Starts the server handshake on an accepted (registered) stream.
    pub(super) fn accept(
        stream: TcpStream,
        buffer_bytes: usize,
        deadline: Instant,
    ) -> Result<Self, Gone> {
        let conn = match tungstenite::accept_with_config(stream, Some(ws_config(buffer_bytes))) {
            Ok(ws) => Conn::Open(Box::new(ws)),
            Err(HandshakeError::Interrupted(mid)) => Conn::Handshaking(Box::new(mid)),
            Err(HandshakeError::Failure(_)) => return Err(Gone::Handshake),
        };
        let open = matches!(conn, Conn::Open(_));
        Ok(Self {
            conn,
            deadline: (!open).then_some(deadline),
            tokens: HashSet::new(),
            replay: VecDeque::new(),
            queued: HashSet::new(),
            replayed: 0,
            more: false,
        })
    }

    /// Whether the handshake is done.
    pub(super) fn is_open(&self) -> bool {
        matches!(self.conn, Conn::Open(_))
    }

    /// Continues the handshake; `Ok(true)` when it completed now.
    pub(super) fn advance(&mut self) -> Result<bool, Gone> {
        match std::mem::replace(&mut self.conn, Conn::Done) {
            Conn::Handshaking(mid) => match (*mid).handshake() {
                Ok(ws) => {
                    self.conn = Conn::Open(Box::new(ws));
                    self.deadline = None;
                    Ok(true)
                }
                Err(HandshakeError::Interrupted(mid)) => {
                    self.conn = Conn::Handshaking(Box::new(mid));
                    Ok(false)
                }
                Err(HandshakeError::Failure(_)) => Err(Gone::Handshake),
            },
            other => {
                self.conn = other;
                Ok(false)
            }
        }
    }

    /// Reads the text requests that have arrived (until the socket would
    /// block, at most [`MAX_REQUESTS_PER_TURN`]). Pings are answered by
    /// tungstenite on the next write or flush.
    pub(super) fn read_requests(&mut self, out: &mut Vec<String>) -> Result<(), Gone> {
        let Conn::Open(ws) = &mut self.conn else {
            return Ok(());
        };
        self.more = false;
        for _ in 0..MAX_REQUESTS_PER_TURN {
            match ws.read() {
                Ok(Message::Text(t)) => out.push(t.as_str().to_owned()),
                Ok(Message::Binary(_)) => {
                    out.push(String::from("<binary frame>"));
                }
                Ok(_) => {}
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(Gone::Closed),
            }
        }
        self.more = true;
        Ok(())
    }

    /// Queues one text frame and writes what the socket takes.
    pub(super) fn send(&mut self, text: Utf8Bytes) -> Result<(), Gone> {
        let Conn::Open(ws) = &mut self.conn else {
            return Ok(());
        };
        match ws.write(Message::Text(text)) {
            // WouldBlock: the frame is queued (tungstenite 0.30).
            Ok(()) => Ok(()),
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(WsError::WriteBufferFull(_)) => Err(Gone::Slow),
            Err(_) => Err(Gone::Closed),
        }
    }

    /// Writes out the queued frames as far as the socket takes them.
    pub(super) fn flush(&mut self) -> Result<(), Gone> {
        self.try_flush().map(|_| ())
    }

    /// Writes out the queued frames as far as the socket takes them;
    /// `Ok(true)` when all of them went (the socket has room for more).
    pub(super) fn try_flush(&mut self) -> Result<bool, Gone> {
        let Conn::Open(ws) = &mut self.conn else {
            return Ok(false);
        };
        match ws.flush() {
            Ok(()) => Ok(true),
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(WsError::WriteBufferFull(_)) => Err(Gone::Slow),
            Err(_) => Err(Gone::Closed),
        }
    }
}
