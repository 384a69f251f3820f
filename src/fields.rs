//! Field selection: which optional parts of the published tick are sent,
//! per mode, as a 16-bit mask ([`FieldSelection`]), and the one shared cell
//! ([`LiveFields`]) through which the ops side changes it while the
//! publishers run.
//!
//! Contract: the publishers read the cell once per chunk (one relaxed load,
//! no lock, no allocation) and [`crate::json::write_envelope_with`] tests the
//! bits per tick; [`FieldSelection::ALL`] produces the full contract byte
//! for byte. Built on the main thread from `[fields]`
//! ([`FieldSelection::from_config`]); changed by
//! [`Engine::set_fields`](crate::engine::Engine::set_fields).

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use crossbeam_utils::CachePadded;

use crate::config::FieldsConfig;
use crate::tick::Mode;

/// An optional part of a tick. The keys each one covers, and the packet
/// kinds that have it, are in `docs/ARCHITECTURE.md` ("Field selection").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Part {
    /// `depth` (full).
    Depth = 1,
    /// `oi`, `oi_day_high`, `oi_day_low` (full).
    Oi = 2,
    /// `ohlc` (quote and full, index packets too).
    Ohlc = 4,
    /// `last_trade_time` and `exchange_timestamp` (full; index full has the latter).
    Timestamps = 8,
}

impl Part {
    /// Every part, in the order they are listed.
    pub const ALL: [Self; 4] = [Self::Depth, Self::Oi, Self::Ohlc, Self::Timestamps];

    /// The part's name as in `[fields]`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Depth => "depth",
            Self::Oi => "oi",
            Self::Ohlc => "ohlc",
            Self::Timestamps => "timestamps",
        }
    }

    /// The parts a tick of `mode` can carry.
    #[must_use]
    pub const fn exists_in(self, mode: Mode) -> bool {
        match mode {
            Mode::Ltp => false,
            Mode::Quote => matches!(self, Self::Ohlc),
            Mode::Full => true,
        }
    }
}

/// Which parts are sent in each mode: four bits per mode (quote in bits
/// 0–3, full in 4–7; LTP ticks have no optional part). Bits of parts a mode
/// does not have are always clear, so equal selections compare equal.
///
/// ```
/// use panda_feed::fields::{FieldSelection, Part};
/// use panda_feed::Mode;
/// let f = FieldSelection::ALL.with(Mode::Full, Part::Depth, false);
/// assert!(!f.sends(Mode::Full, Part::Depth));
/// assert!(f.sends(Mode::Full, Part::Ohlc) && f.sends(Mode::Quote, Part::Ohlc));
/// assert!(!f.sends(Mode::Quote, Part::Depth), "quote ticks have no depth");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSelection(u16);

const QUOTE_SHIFT: u32 = 0;
const FULL_SHIFT: u32 = 4;
/// The bits that mean something: quote has only OHLC.
const VALID: u16 = (Part::Ohlc as u16) << QUOTE_SHIFT | 0xF << FULL_SHIFT;

impl FieldSelection {
    /// Every part in every mode: the full contract (the default).
    pub const ALL: Self = Self(VALID);
    /// No optional part in any mode.
    pub const NONE: Self = Self(0);

    /// The mask (see the type's doc).
    #[must_use]
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// A selection from [`bits`](Self::bits); meaningless bits are dropped.
    #[must_use]
    pub const fn from_bits(bits: u16) -> Self {
        Self(bits & VALID)
    }

    const fn shift(mode: Mode) -> Option<u32> {
        match mode {
            Mode::Ltp => None,
            Mode::Quote => Some(QUOTE_SHIFT),
            Mode::Full => Some(FULL_SHIFT),
        }
    }

    /// `self` with `part` sent (`on`) or not in `mode`; a part the mode
    /// does not have stays off.
    #[must_use]
    pub const fn with(self, mode: Mode, part: Part, on: bool) -> Self {
        let Some(s) = Self::shift(mode) else {
            return self;
        };
        let bit = (part as u16) << s;
        Self::from_bits(if on { self.0 | bit } else { self.0 & !bit })
    }

    /// Whether `part` is sent in ticks of `mode`.
    #[must_use]
    #[inline]
    pub const fn sends(self, mode: Mode, part: Part) -> bool {
        self.parts_of(mode) & part as u8 != 0
    }

    /// The [`Part`] bits sent in `mode` (the encoder tests these per tick).
    #[must_use]
    #[inline(always)]
    pub(crate) const fn parts_of(self, mode: Mode) -> u8 {
        match Self::shift(mode) {
            Some(s) => ((self.0 >> s) & 0xF) as u8,
            None => 0,
        }
    }

    /// The selection `[fields]` describes: each mode's key where set, else
    /// the all-modes key.
    #[must_use]
    pub fn from_config(c: &FieldsConfig) -> Self {
        let q = |o: Option<bool>, all: bool| o.unwrap_or(all);
        Self::NONE
            .with(Mode::Quote, Part::Ohlc, q(c.quote_ohlc, c.ohlc))
            .with(Mode::Full, Part::Depth, q(c.full_depth, c.depth))
            .with(Mode::Full, Part::Oi, q(c.full_oi, c.oi))
            .with(Mode::Full, Part::Ohlc, q(c.full_ohlc, c.ohlc))
            .with(
                Mode::Full,
                Part::Timestamps,
                q(c.full_timestamps, c.timestamps),
            )
    }

    /// The names of the parts sent in `mode`, in [`Part::ALL`] order.
    pub fn names(self, mode: Mode) -> impl Iterator<Item = &'static str> {
        Part::ALL
            .into_iter()
            .filter(move |p| self.sends(mode, *p))
            .map(Part::name)
    }
}

impl Default for FieldSelection {
    fn default() -> Self {
        Self::ALL
    }
}

impl std::fmt::Debug for FieldSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entry(&"quote", &self.names(Mode::Quote).collect::<Vec<_>>())
            .entry(&"full", &self.names(Mode::Full).collect::<Vec<_>>())
            .finish()
    }
}

/// Shown as `{"quote":["ohlc"],"full":["depth","oi","ohlc","timestamps"]}`:
/// the parts sent per mode (in the run summary and the counters).
impl serde::Serialize for FieldSelection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("quote", &self.names(Mode::Quote).collect::<Vec<_>>())?;
        m.serialize_entry("full", &self.names(Mode::Full).collect::<Vec<_>>())?;
        m.end()
    }
}

/// The selection the publishers apply, shared between the ops side (which
/// sets it) and every publisher (which reads it once per chunk). Cloning
/// shares the cell.
#[derive(Debug, Clone)]
pub struct LiveFields(Arc<CachePadded<AtomicU16>>);

impl LiveFields {
    /// A cell holding `selection`.
    #[must_use]
    pub fn new(selection: FieldSelection) -> Self {
        Self(Arc::new(CachePadded::new(AtomicU16::new(selection.0))))
    }

    /// The current selection. `Relaxed`: the mask is the whole message (it
    /// publishes no other memory), and a publisher needs only some recent
    /// value, which cache coherence delivers within a chunk or two.
    #[must_use]
    #[inline]
    pub fn load(&self) -> FieldSelection {
        FieldSelection(self.0.load(Ordering::Relaxed))
    }

    /// Replaces the selection; publishers apply it from their next chunk
    /// (`Relaxed`, as [`load`](Self::load)).
    pub fn store(&self, selection: FieldSelection) {
        self.0.store(selection.0, Ordering::Relaxed);
    }
}

impl Default for LiveFields {
    fn default() -> Self {
        Self::new(FieldSelection::ALL)
    }
}

#[cfg(test)]
mod tests;
