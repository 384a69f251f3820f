//! What the network thread does when a publisher ring is full
//! (`engine.overflow`, `engine.block_max_ms`), and ring memory given in bytes
//! (`engine.ring_bytes`) rather than slots (README, "Overflow: block or
//! drop"; `docs/ARCHITECTURE.md`, "Overflow"). Read on the main thread at
//! start-up; fixed for the run.

use serde::{Deserialize, Serialize};

/// What a full ring does to the tick that does not fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Stop reading the socket whose message hit a full T0 or T1 ring, so
    /// TCP back-pressure holds the burst in the kernel and at the server,
    /// for at most `engine.block_max_ms` per message; then drop and count
    /// (`ring_full`) as `drop_newest` does. A full T2 ring never blocks: T2
    /// is what the operator chose to shed.
    #[default]
    Block,
    /// Drop the tick that does not fit and count it (`ring_full`); never
    /// stop reading.
    DropNewest,
}

impl Overflow {
    /// The config spelling.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::DropNewest => "drop_newest",
        }
    }
}

/// Slots per publisher ring: `ring_bytes` / [`SLOT_BYTES`] when
/// `engine.ring_bytes` is set (it wins over `engine.ring_capacity`), else
/// `ring_capacity`.
///
/// [`SLOT_BYTES`]: crate::ring::SLOT_BYTES
#[must_use]
pub fn ring_slots(ring_capacity: usize, ring_bytes: Option<u64>) -> usize {
    // At least one slot: a `ring_bytes` under one slot is reported by its
    // range check, once, not again as a zero `ring_capacity`.
    ring_bytes.map_or(ring_capacity, |b| {
        usize::try_from(b / crate::ring::SLOT_BYTES)
            .unwrap_or(usize::MAX)
            .max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_bytes_wins_and_rounds_down_to_whole_slots() {
        assert_eq!(ring_slots(65_536, None), 65_536);
        assert_eq!(ring_slots(65_536, Some(216)), 1);
        assert_eq!(ring_slots(65_536, Some(64 << 20)), (64 << 20) / 216);
        assert_eq!(ring_slots(1, Some(431)), 1);
    }

    #[test]
    fn the_policies_are_spelled_as_in_the_config() {
        #[derive(Deserialize)]
        struct T {
            o: Overflow,
        }
        let t: T = toml::from_str("o = \"drop_newest\"").unwrap();
        assert_eq!(t.o, Overflow::DropNewest);
        let t: T = toml::from_str("o = \"block\"").unwrap();
        assert_eq!(t.o.label(), "block");
        assert!(toml::from_str::<T>("o = \"wait\"").is_err());
        assert_eq!(Overflow::default(), Overflow::Block);
    }
}
