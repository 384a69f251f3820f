//! One connection's read loop: every message until `WouldBlock` (or the
//! turn's read budget), binary ones routed onto the publisher rings, text
//! ones counted and parsed, control frames answered (`conn.rs` calls it
//! for an open connection). Runs on the network thread; the hot path.

use std::io::ErrorKind;
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use tungstenite::Message;

use super::budget::ReadBudget;
use super::conn::{Down, escaped};
use super::hold::{Held, Retry, account, retry};
use super::stats::{ConnStats, DownReason, Tally, lock};
use super::ws::{self, Ws};
use crate::clock::now_ns;
use crate::engine::orders::OrderTx;
use crate::engine::route::Router;
use crate::engine::wake::Wake;
use crate::wire::text::{ServerText, parse_server_text};

/// What [`read_all`] reads alongside the socket (borrowed apart from the
/// connection's mutable parts).
pub(super) struct Ctx<'a> {
    pub(super) index: u8,
    pub(super) stats: &'a ConnStats,
    pub(super) wakes: &'a [(Arc<Wake>, Thread)],
    pub(super) max_text: usize,
    pub(super) gone: &'a [u32],
    /// `engine.block_max_ms` (the `block` policy is the router's).
    pub(super) block_max: Duration,
}

/// Reads until `WouldBlock`, routing every binary message onto the rings
/// and waking the publishers it touched.
///
/// Allocation-free for binary messages, heartbeats, pings and pongs over
/// `ws://`: tungstenite (0.30) hands each message out as a shared slice of
/// its `BytesMut` read buffer, and once the message is dropped (here, before
/// the next read) the buffer is unique again and `reserve` reclaims its
/// space in place. Two bounded exceptions, both outside the steady state:
/// the first message after the upgrade turns the buffer into a shared one
/// (one allocation), and a backlog that fills the buffer in one read (about
/// `read_buffer_size`) or a message larger than it makes the buffer grow:
/// geometrically, and only until it holds about two reads plus the largest
/// message, since a read never takes more than `read_buffer_size`.
/// Over `wss://`, rustls's buffered reader copies each TLS record into a
/// new `Vec` (one allocation per record); avoiding that needs rustls's
/// unbuffered API under tungstenite.
///
/// A message held for ring room (`hold.rs`) is retried first; while it
/// still waits nothing is read (TCP back-pressure holds the rest), and a
/// message that hits a full ring now is held in turn.
///
/// # Errors
/// Why the connection is down, when it is.
pub(super) fn read_all(
    ws: &mut Ws,
    cx: Ctx<'_>,
    seq: &mut u64,
    tally: &mut Tally,
    router: &mut Router,
    orders: &mut Option<OrderTx>,
    held: &mut Option<Held>,
) -> Result<bool, Down> {
    let Ctx {
        index,
        stats,
        wakes,
        max_text,
        gone,
        block_max,
    } = cx;
    let rx = Retry {
        index,
        gone,
        wakes,
        block_max,
        force: false,
    };
    if !retry(held, &rx, seq, tally, router) {
        return Ok(false);
    }
    let mut budget = ReadBudget::default();
    let more = loop {
        if budget.spent() {
            // Data may be left: the caller reads again next turn.
            break true;
        }
        let msg = ws.read();
        if let Ok(m) = &msg {
            budget.charge(m.len());
        }
        match msg {
            Ok(Message::Binary(bytes)) => {
                let now = now_ns();
                tally.last_frame_ns = now;
                match router.route_from(index, seq, now, &bytes, gone, 0, true) {
                    Ok(r) if r.heartbeat => tally.heartbeats += 1,
                    Ok(r) => {
                        tally.messages += 1;
                        account(tally, &r, now, wakes);
                        if r.held_at.is_some() {
                            // Read no further until it fits (`hold.rs`).
                            tally.block_stalls += 1;
                            *held = Some(Held::new(bytes, now, &r));
                            break false;
                        }
                    }
                    Err(e) => tally.malformed[e.reason_index()] += 1,
                }
            }
            Ok(Message::Text(t)) => {
                tally.last_frame_ns = now_ns();
                tally.text_frames += 1;
                // Larger than any server message: counted, never parsed
                // (parsing and keeping it would cost its size again, per
                // frame). tungstenite has read it whole into its buffer,
                // bounded by `max_message_size` (README, "Fault drills").
                if t.len() > max_text {
                    tally.oversized_text_frames += 1;
                } else {
                    match parse_server_text(t.as_str()) {
                        Ok(ServerText::Error(msg)) => {
                            tally.server_errors += 1;
                            *lock(&stats.last_server_error) = Some(escaped(msg));
                        }
                        // Published (when `kafka.orders_topic` is set) and
                        // counted either way.
                        Ok(ServerText::Order(data)) => {
                            tally.orders += 1;
                            if let Some(o) = orders.as_mut() {
                                o.send(index, tally.last_frame_ns, &data);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Ok(Message::Close(frame)) => {
                let why = frame.map_or_else(
                    || "closed by the server".to_owned(),
                    |f| format!("closed by the server: {} {}", f.code, f.reason),
                );
                *lock(&stats.error) = Some(escaped(why));
            }
            Ok(_) => tally.last_frame_ns = now_ns(),
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                let why = stats
                    .error()
                    .unwrap_or_else(|| "closed by the server".to_owned());
                return Err((DownReason::ClosedByServer, why));
            }
            Err(tungstenite::Error::Capacity(
                tungstenite::error::CapacityError::MessageTooLong { size, max_size },
            )) => {
                // Refused from its header: none of it was buffered.
                tally.oversized_frames += 1;
                let why = format!(
                    "{} sent a frame of {size} bytes, over the {max_size}-byte limit (twice \
                     the largest market-data message of this connection, at least 1 MiB); \
                     reconnecting",
                    stats.url
                );
                return Err((DownReason::ReadError, why));
            }
            Err(e) => {
                let why = format!("connection to {} failed: {e}", stats.url);
                return Err((DownReason::ReadError, why));
            }
        }
    };
    // Pongs to the server's pings are queued by `read`; send them now.
    ws::queued(ws.flush()).map_err(|e| {
        let why = format!("connection to {} failed: {e}", stats.url);
        (DownReason::ReadError, why)
    })?;
    Ok(more)
}
