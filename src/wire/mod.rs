//! The Kite binary market-data format: zero-copy, allocation-free decoding.
//!
//! Runs on the network thread (and in `panda-feed decode`). Owns nothing: a
//! [`Message`] borrows the received bytes, and each [`Packet`] is a typed view
//! into them ([`layout`]).
//!
//! Contract, mirroring pykiteconnect 5.2.2 `KiteTicker._parse_binary` except
//! where `docs/ARCHITECTURE.md`, "The data contract" says otherwise:
//! - a 1-byte message is a [`Message::Heartbeat`]; a packet count of 0 yields no packets;
//! - packets are classified by length only (8, 28, 32, 44, 184); any other
//!   length of at least 4 bytes is yielded as [`Packet::Unknown`] for the caller
//!   to skip and count;
//! - a message with a structural defect is rejected as a whole with a
//!   [`DecodeError`] before any packet is yielded: we validate every header first;
//! - bytes after the N-th packet are ignored.
//!
//! ```
//! use panda_feed::wire::{self, Message, Packet};
//! let msg = [0, 1, 0, 8, 0, 6, 58, 1, 0, 2, 102, 163]; // 1 LTP packet
//! let Ok(Message::Packets(packets)) = wire::decode(&msg) else { panic!() };
//! let p: Vec<_> = packets.collect();
//! assert!(matches!(p[0], Packet::Ltp(l) if l.token.get() == 408_065 && l.last_price.get() == 157_347));
//! ```

mod encode;
mod error;
pub mod layout;
pub mod text;

pub use encode::{MessageWriter, WriteError, encode_packet};
pub use error::DecodeError;

use layout::{
    FULL_LEN, FullPacket, INDEX_FULL_LEN, INDEX_QUOTE_LEN, IndexFullPacket, IndexQuotePacket,
    LTP_LEN, LtpPacket, QUOTE_LEN, QuotePacket,
};
use zerocopy::FromBytes;

/// One decoded binary WebSocket message.
#[derive(Debug, Clone)]
pub enum Message<'a> {
    /// The 1-byte keep-alive the server sends when idle. Content is ignored.
    Heartbeat,
    /// A structurally valid message; iterate it for its packets (possibly none).
    Packets(Packets<'a>),
}

/// A packet view, selected by the packet's length.
#[derive(Debug, Clone, Copy)]
pub enum Packet<'a> {
    /// 8 bytes.
    Ltp(&'a LtpPacket),
    /// 28 bytes.
    IndexQuote(&'a IndexQuotePacket),
    /// 32 bytes.
    IndexFull(&'a IndexFullPacket),
    /// 44 bytes.
    Quote(&'a QuotePacket),
    /// 184 bytes.
    Full(&'a FullPacket),
    /// Any other length ≥ 4: skipped by the official client. Count it.
    Unknown {
        /// The packet's instrument token (its first 4 bytes).
        token: u32,
        /// The packet's length in bytes.
        len: u16,
    },
}

impl Packet<'_> {
    /// The packet's instrument token (its first 4 bytes).
    #[must_use]
    #[inline]
    pub fn token(&self) -> u32 {
        match *self {
            Packet::Ltp(p) => p.token.get(),
            Packet::IndexQuote(p) => p.token.get(),
            Packet::IndexFull(p) => p.quote.token.get(),
            Packet::Quote(p) => p.token.get(),
            Packet::Full(p) => p.quote.token.get(),
            Packet::Unknown { token, .. } => token,
        }
    }
}

/// Iterator over the packets of a validated message. Infallible: every header
/// was checked by [`decode`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    rest: &'a [u8],
    remaining: u16,
    count: u16,
}

impl Packets<'_> {
    /// Number of packets the message declares (including unknown-length ones).
    #[must_use]
    pub const fn packet_count(&self) -> u16 {
        self.count
    }
}

#[inline]
fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    match buf.get(at..at + 2) {
        Some(&[hi, lo]) => Some(u16::from_be_bytes([hi, lo])),
        _ => None,
    }
}

/// Validates the framing of one binary message and returns a view over it.
///
/// Never panics and never reads past `msg.len()`, whatever the input.
///
/// # Errors
/// [`DecodeError`] when the message is empty, ends inside a length prefix, has a
/// packet shorter than 4 bytes, or has a packet whose declared length runs past
/// the end of the message.
pub fn decode(msg: &[u8]) -> Result<Message<'_>, DecodeError> {
    match msg.len() {
        0 => return Err(DecodeError::Empty),
        1 => return Ok(Message::Heartbeat),
        _ => {}
    }
    let count = read_u16(msg, 0).unwrap_or(0);
    let mut at = 2usize;
    for index in 0..count {
        let Some(len) = read_u16(msg, at) else {
            return Err(DecodeError::TruncatedHeader {
                index,
                count,
                offset: at,
            });
        };
        let available = msg.len() - (at + 2);
        if usize::from(len) > available {
            return Err(DecodeError::Overrun {
                index,
                declared: len,
                available,
            });
        }
        if len < 4 {
            return Err(DecodeError::ShortPacket { index, len });
        }
        at += 2 + usize::from(len);
    }
    Ok(Message::Packets(Packets {
        rest: &msg[2..at],
        remaining: count,
        count,
    }))
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    #[inline]
    fn next(&mut self) -> Option<Packet<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // `decode` proved every prefix and body is in bounds; the fallible
        // accessors below cannot fail, and cost no more than indexing.
        let len = read_u16(self.rest, 0)?;
        let (body, rest) = self.rest.get(2..)?.split_at_checked(usize::from(len))?;
        self.rest = rest;
        Some(classify(body))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (
            usize::from(self.remaining),
            Some(usize::from(self.remaining)),
        )
    }
}

impl ExactSizeIterator for Packets<'_> {}

#[inline]
fn classify(body: &[u8]) -> Packet<'_> {
    let parsed = match body.len() {
        LTP_LEN => LtpPacket::ref_from_bytes(body).ok().map(Packet::Ltp),
        INDEX_QUOTE_LEN => IndexQuotePacket::ref_from_bytes(body)
            .ok()
            .map(Packet::IndexQuote),
        INDEX_FULL_LEN => IndexFullPacket::ref_from_bytes(body)
            .ok()
            .map(Packet::IndexFull),
        QUOTE_LEN => QuotePacket::ref_from_bytes(body).ok().map(Packet::Quote),
        FULL_LEN => FullPacket::ref_from_bytes(body).ok().map(Packet::Full),
        _ => None,
    };
    parsed.unwrap_or_else(|| Packet::Unknown {
        token: match body {
            [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
            _ => 0,
        },
        // Bodies come from a u16 length prefix, so this never saturates.
        len: u16::try_from(body.len()).unwrap_or(u16::MAX),
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod property_tests;
