//! [`DecodeError`]: why a binary message was rejected as a whole.
//!
//! Hot-path error: `Copy`, integer fields only, no allocation to build or to
//! display. [`DecodeError::reason`] is the stable label used for counters.

use std::fmt;

/// A structural defect that makes a whole binary message unusable
/// (`docs/ARCHITECTURE.md`, "The data contract"). No tick of such a message is emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// A zero-length binary message. The protocol defines none (a heartbeat
    /// is exactly one byte); the official client would silently yield nothing.
    Empty,
    /// The message ends before the u16 length prefix of packet `index`
    /// (0-based) of the `count` it declares.
    TruncatedHeader {
        /// 0-based index of the packet whose length prefix is missing.
        index: u16,
        /// Packet count declared by the message.
        count: u16,
        /// Byte offset at which the 2-byte prefix should start.
        offset: usize,
    },
    /// Packet `index` is shorter than the 4-byte instrument token.
    ShortPacket {
        /// 0-based packet index.
        index: u16,
        /// Its declared (and available) length.
        len: u16,
    },
    /// Packet `index` declares more bytes than the message has left. The
    /// official client would clamp it and parse the remainder by its actual
    /// length; we reject the message instead of reinterpreting the bytes.
    Overrun {
        /// 0-based packet index.
        index: u16,
        /// Declared packet length.
        declared: u16,
        /// Bytes actually left in the message after the length prefix.
        available: usize,
    },
}

impl DecodeError {
    /// Number of distinct [`reason`](Self::reason)s, for fixed counter arrays.
    pub const REASONS: usize = 4;

    /// Stable snake_case label of the defect class, for counters and metrics.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TruncatedHeader { .. } => "truncated_header",
            Self::ShortPacket { .. } => "short_packet",
            Self::Overrun { .. } => "overrun",
        }
    }

    /// Dense index in `0..REASONS`, matching [`REASON_LABELS`](Self::REASON_LABELS).
    #[must_use]
    pub const fn reason_index(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::TruncatedHeader { .. } => 1,
            Self::ShortPacket { .. } => 2,
            Self::Overrun { .. } => 3,
        }
    }

    /// All reason labels, indexed by [`reason_index`](Self::reason_index).
    pub const REASON_LABELS: [&'static str; Self::REASONS] =
        ["empty", "truncated_header", "short_packet", "overrun"];
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty => f.write_str("empty: zero-length binary message"),
            Self::TruncatedHeader {
                index,
                count,
                offset,
            } => write!(
                f,
                "truncated_header: packet {} of {count} has no length prefix at byte {offset}",
                index + 1
            ),
            Self::ShortPacket { index, len } => write!(
                f,
                "short_packet: packet {} is {len} byte(s), shorter than the 4-byte token",
                index + 1
            ),
            Self::Overrun {
                index,
                declared,
                available,
            } => write!(
                f,
                "overrun: packet {} declares {declared} bytes but only {available} remain",
                index + 1
            ),
        }
    }
}

impl std::error::Error for DecodeError {}
