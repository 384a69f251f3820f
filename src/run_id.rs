//! The run identity: a random 64-bit id chosen when `run` starts, carried in
//! every published envelope as `"run"`, so `(run, conn, seq)` names one tick
//! forever (the consumer's dedupe key; the README's "On Kafka"). A leaf:
//! imports only the clock. Chosen on the main thread, read by the publishers.

use std::fmt;
use std::hash::{BuildHasher, Hasher};

/// A run's identity. Shown as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

impl RunId {
    /// A fresh id: the OS-seeded `RandomState` keys hashed with the wall
    /// clock and the process id, so two runs (even two at the same
    /// nanosecond on one host) differ. Never 0.
    #[must_use]
    pub fn generate() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(crate::clock::now_ns());
        h.write_u32(std::process::id());
        Self(h.finish().max(1))
    }

    /// The id as 16 lowercase hex digits (no allocation).
    #[must_use]
    pub fn hex(self) -> [u8; 16] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = DIGITS[((self.0 >> (60 - 4 * i)) & 0xF) as usize];
        }
        out
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl serde::Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::RunId;

    #[test]
    fn hex_matches_display_and_ids_differ() {
        let r = RunId(0x0123_4567_89ab_cdef);
        assert_eq!(&r.hex(), b"0123456789abcdef");
        assert_eq!(r.to_string(), "0123456789abcdef");
        assert_eq!(RunId(u64::MAX).to_string(), "ffffffffffffffff");
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| RunId::generate()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(!ids.contains(&RunId(0)));
    }
}
