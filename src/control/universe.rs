//! The versioned instrument universe (README, "Live subscriptions"): every
//! instrument list the feed loads or is given has a version, the SHA-256 of
//! its normalised form (one `token,mode` line per instrument, sorted by
//! token), so two hosts (or two days) with the same universe show the same
//! version whatever the CSV's order or extra columns. Kept by the `run`
//! loop with the last few versions and what changed between them.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::tick::Mode;

/// One version of the universe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UniverseVersion {
    /// SHA-256 (hex) of the normalised list.
    pub version: String,
    /// Where it came from: `file:PATH`, `api`, `mock`, ...
    pub source: String,
    /// Instruments.
    pub rows: usize,
    /// When it was loaded (RFC 3339 UTC, ms).
    pub loaded_at: String,
    /// The desired-state version that carries it (0 = the start-up list).
    pub desired_version: u64,
    /// Instruments added since the previous version.
    pub added: usize,
    /// Instruments removed since the previous version.
    pub removed: usize,
    /// Instruments whose mode changed since the previous version.
    pub mode_changed: usize,
    /// Up to [`SAMPLE`] of the added tokens.
    pub added_sample: Vec<u32>,
    /// Up to [`SAMPLE`] of the removed tokens.
    pub removed_sample: Vec<u32>,
}

/// Tokens listed per change kind in a version's entry.
pub const SAMPLE: usize = 20;

/// The SHA-256 (hex) of `list`'s normalised form.
#[must_use]
pub fn version_of(list: &[(u32, Mode)]) -> String {
    let mut sorted: Vec<(u32, Mode)> = list.to_vec();
    sorted.sort_unstable_by_key(|x| x.0);
    sorted.dedup_by_key(|x| x.0);
    let mut h = Sha256::new();
    for (t, m) in sorted {
        h.update(format!("{t},{}\n", m.as_str()).as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The current universe and the last versions before it.
#[derive(Debug)]
pub struct Universe {
    current: BTreeMap<u32, Mode>,
    history: VecDeque<UniverseVersion>,
    keep: usize,
}

impl Universe {
    /// The start-up list, from `source`.
    #[must_use]
    pub fn new(list: &[(u32, Mode)], source: &str, at_ns: u64, keep: usize) -> Self {
        let mut u = Self {
            current: BTreeMap::new(),
            history: VecDeque::new(),
            keep: keep.max(1),
        };
        u.record(list, source, at_ns, 0);
        u
    }

    /// Keeps at most `keep` versions from now on.
    pub fn set_keep(&mut self, keep: usize) {
        self.keep = keep.max(1);
        while self.history.len() > self.keep {
            self.history.pop_front();
        }
    }

    /// Records `list` as the new universe; returns its version. The same
    /// list again records nothing new.
    pub fn record(
        &mut self,
        list: &[(u32, Mode)],
        source: &str,
        at_ns: u64,
        desired_version: u64,
    ) -> &UniverseVersion {
        let version = version_of(list);
        if self.history.back().is_none_or(|v| v.version != version) {
            let next: BTreeMap<u32, Mode> = list.iter().copied().collect();
            let added: Vec<u32> = next
                .keys()
                .filter(|t| !self.current.contains_key(t))
                .copied()
                .collect();
            let removed: Vec<u32> = self
                .current
                .keys()
                .filter(|t| !next.contains_key(t))
                .copied()
                .collect();
            let mode_changed = next
                .iter()
                .filter(|(t, m)| self.current.get(t).is_some_and(|c| c != *m))
                .count();
            self.history.push_back(UniverseVersion {
                version,
                source: source.to_owned(),
                rows: next.len(),
                loaded_at: crate::clock::rfc3339_ms(at_ns),
                desired_version,
                added: added.len(),
                removed: removed.len(),
                mode_changed,
                added_sample: added.into_iter().take(SAMPLE).collect(),
                removed_sample: removed.into_iter().take(SAMPLE).collect(),
            });
            self.current = next;
            while self.history.len() > self.keep {
                self.history.pop_front();
            }
        }
        self.current()
    }

    /// The current version.
    ///
    /// # Panics
    /// Never: the history holds at least the start-up version.
    #[must_use]
    pub fn current(&self) -> &UniverseVersion {
        self.history
            .back()
            .expect("the start-up version is recorded")
    }

    /// The kept versions, newest first.
    #[must_use]
    pub fn history(&self) -> Vec<UniverseVersion> {
        self.history.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_ignores_order_and_follows_content() {
        let a = [(2, Mode::Full), (1, Mode::Ltp)];
        let b = [(1, Mode::Ltp), (2, Mode::Full)];
        assert_eq!(version_of(&a), version_of(&b));
        assert_ne!(
            version_of(&a),
            version_of(&[(1, Mode::Quote), (2, Mode::Full)])
        );
        assert_eq!(version_of(&[]).len(), 64);
        // sha256("1,ltp\n2,full\n"), computed independently (`printf
        // '1,ltp\n2,full\n' | sha256sum`).
        assert_eq!(
            version_of(&a),
            "3890ac62a6fcef6abbc13f673fa6847d87de87839ab2b8f42620684365111719"
        );
    }

    #[test]
    fn history_keeps_the_changes_and_is_bounded() {
        let mut u = Universe::new(&[(1, Mode::Full), (2, Mode::Full)], "file:x", 0, 2);
        u.record(&[(1, Mode::Ltp), (3, Mode::Full)], "api", 1, 1);
        let v = u.current().clone();
        assert_eq!((v.added, v.removed, v.mode_changed, v.rows), (1, 1, 1, 2));
        assert_eq!((v.added_sample, v.removed_sample), (vec![3], vec![2]));
        let same = u
            .record(&[(3, Mode::Full), (1, Mode::Ltp)], "api", 2, 2)
            .clone();
        assert_eq!(
            same.desired_version, 1,
            "the same list is not a new version"
        );
        u.record(&[(9, Mode::Full)], "api", 3, 3);
        let h = u.history();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].rows, 1);
    }
}
