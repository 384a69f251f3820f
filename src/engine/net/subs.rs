//! Live subscriptions on the network thread: the desired state handed over
//! by the control plane ([`SubsHandoff`]), and the [`plan`] that turns it
//! into per-connection deltas (README, "Live subscriptions").
//!
//! The control plane (the `run` loop's reloader) stores a [`Desired`] state
//! and bumps `requested`; the network thread sees the new version with one
//! relaxed load per loop turn, plans the difference against what each
//! connection holds, applies it (`conn.rs`: chunked `unsubscribe`,
//! `subscribe`, `mode` on open connections; the new list for the next
//! connect on the others) and stores the version in `applied`. Nothing here
//! runs per tick; planning allocates, once per change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

use crate::tick::Mode;

/// A whole desired subscription state: every instrument and its mode, sorted
/// by token, each token once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The desired-state version (the reloader's counter).
    pub version: u64,
    /// `(token, mode)`, sorted by token, unique.
    pub tokens: Vec<(u32, Mode)>,
}

/// The hand-off between the control plane (one writer) and the network
/// thread (one reader).
#[derive(Debug, Default)]
pub struct SubsHandoff {
    desired: ArcSwapOption<Desired>,
    requested: AtomicU64,
    applied: AtomicU64,
}

impl SubsHandoff {
    /// Hands `d` over; the network thread applies it on its next turn (the
    /// caller wakes it).
    pub fn request(&self, d: Desired) {
        let v = d.version;
        self.desired.store(Some(std::sync::Arc::new(d)));
        // Release: the reader that sees `v` sees the state stored above.
        self.requested.store(v, Ordering::Release);
    }

    /// The version the network thread has applied (0 = none yet).
    #[must_use]
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// The requested state when it is newer than the applied one (network
    /// thread; one relaxed load when nothing changed).
    pub(super) fn pending(&self, applied: u64) -> Option<std::sync::Arc<Desired>> {
        if self.requested.load(Ordering::Relaxed) == applied {
            return None;
        }
        std::sync::atomic::fence(Ordering::Acquire);
        self.desired.load_full().filter(|d| d.version != applied)
    }

    pub(super) fn set_applied(&self, v: u64) {
        self.applied.store(v, Ordering::Release);
    }
}

/// What one connection must do to reach the desired state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnDelta {
    /// Tokens to unsubscribe (sorted).
    pub unsubscribe: Vec<u32>,
    /// Tokens to subscribe, with their modes (sorted by token).
    pub subscribe: Vec<(u32, Mode)>,
    /// Tokens kept whose mode changes, with the new mode (sorted by token).
    pub remode: Vec<(u32, Mode)>,
    /// The connection's whole list afterwards (sorted by token).
    pub after: Vec<(u32, Mode)>,
}

impl ConnDelta {
    /// Whether the connection is untouched.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.unsubscribe.is_empty() && self.subscribe.is_empty() && self.remode.is_empty()
    }
}

/// Plans the move from `current` (each connection slot's list) to `desired`
/// (sorted, unique): instruments stay on their connection (a kept instrument
/// never moves, so an untouched connection is never reconnected); removed
/// ones are unsubscribed where they are; added ones fill the connections
/// already in use up to `per_conn`, in slot order, then the empty slots.
///
/// # Errors
/// The desired state does not fit `current.len()` × `per_conn`; nothing is
/// planned then.
pub fn plan(
    current: &[&[(u32, Mode)]],
    desired: &[(u32, Mode)],
    per_conn: usize,
) -> Result<Vec<ConnDelta>, String> {
    let per_conn = per_conn.max(1);
    if desired.len() > current.len().saturating_mul(per_conn) {
        return Err(format!(
            "{} instruments do not fit {} connections of at most {per_conn}; subscribe fewer",
            desired.len(),
            current.len()
        ));
    }
    let want: HashMap<u32, Mode> = desired.iter().copied().collect();
    let mut held: HashMap<u32, ()> = HashMap::with_capacity(desired.len());
    let mut out: Vec<ConnDelta> = current
        .iter()
        .map(|list| {
            let mut d = ConnDelta::default();
            for &(t, m) in *list {
                match want.get(&t) {
                    None => d.unsubscribe.push(t),
                    Some(&w) => {
                        if w != m {
                            d.remode.push((t, w));
                        }
                        d.after.push((t, w));
                        held.insert(t, ());
                    }
                }
            }
            d
        })
        .collect();
    let mut added = desired.iter().filter(|(t, _)| !held.contains_key(t));
    // Connections in use first (their lists are non-empty now), then spares.
    let in_use: Vec<usize> = (0..current.len())
        .filter(|&i| !out[i].after.is_empty())
        .collect();
    let spare: Vec<usize> = (0..current.len())
        .filter(|&i| out[i].after.is_empty())
        .collect();
    for i in in_use.into_iter().chain(spare) {
        let d = &mut out[i];
        while d.after.len() < per_conn {
            let Some(&a) = added.next() else { break };
            d.subscribe.push(a);
            d.after.push(a);
        }
    }
    for d in &mut out {
        d.unsubscribe.sort_unstable();
        d.subscribe.sort_unstable_by_key(|x| x.0);
        d.remode.sort_unstable_by_key(|x| x.0);
        d.after.sort_unstable_by_key(|x| x.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full(r: std::ops::Range<u32>) -> Vec<(u32, Mode)> {
        r.map(|t| (t, Mode::Full)).collect()
    }

    #[test]
    fn shrinking_to_one_connections_subset_leaves_it_untouched_and_empties_the_others() {
        let c = [full(0..2334), full(2334..4667), full(4667..7000)];
        let cur: Vec<&[(u32, Mode)]> = c.iter().map(Vec::as_slice).collect();
        let p = plan(&cur, &full(0..2000), 3000).unwrap();
        assert_eq!(p[0].unsubscribe, (2000..2334).collect::<Vec<_>>());
        assert!(p[0].subscribe.is_empty() && p[0].remode.is_empty());
        assert_eq!(p[1].after.len() + p[2].after.len(), 0);
        assert_eq!(p[1].unsubscribe.len(), 2333);
    }

    #[test]
    fn growth_fills_connections_in_use_before_spares() {
        let c = [full(0..2000), vec![], vec![]];
        let cur: Vec<&[(u32, Mode)]> = c.iter().map(Vec::as_slice).collect();
        let p = plan(&cur, &full(0..8000), 3000).unwrap();
        assert_eq!(p[0].subscribe, full(2000..3000));
        assert!(p[0].unsubscribe.is_empty());
        assert_eq!(p[1].after, full(3000..6000));
        assert_eq!(p[2].after, full(6000..8000));
        assert!(plan(&cur, &full(0..9001), 3000).is_err());
    }

    #[test]
    fn a_mode_change_is_a_remode_in_place() {
        let c = [vec![(1, Mode::Full), (2, Mode::Ltp)]];
        let cur: Vec<&[(u32, Mode)]> = c.iter().map(Vec::as_slice).collect();
        let p = plan(&cur, &[(1, Mode::Quote), (2, Mode::Ltp)], 10).unwrap();
        assert_eq!(p[0].remode, [(1, Mode::Quote)]);
        assert!(p[0].subscribe.is_empty() && p[0].unsubscribe.is_empty());
        assert_eq!(p[0].after, [(1, Mode::Quote), (2, Mode::Ltp)]);
    }

    proptest! {
        /// Whatever the start and the target: the union of the lists after is
        /// exactly the target, none holds more than `per`, and an instrument
        /// kept never moves.
        #[test]
        fn the_plan_reaches_the_target_within_bounds(
            start in proptest::collection::btree_set(0u32..400, 0..300),
            target in proptest::collection::btree_map(0u32..400, 0u8..3, 0..300),
        ) {
            let per = 100;
            let start: Vec<u32> = start.into_iter().collect();
            let c: Vec<Vec<(u32, Mode)>> = start
                .chunks(per)
                .map(|c| c.iter().map(|&t| (t, Mode::Quote)).collect())
                .chain(std::iter::repeat_with(Vec::new))
                .take(3)
                .collect();
            let mode = |m: u8| [Mode::Ltp, Mode::Quote, Mode::Full][usize::from(m)];
            let want: Vec<(u32, Mode)> = target.iter().map(|(&t, &m)| (t, mode(m))).collect();
            let cur: Vec<&[(u32, Mode)]> = c.iter().map(Vec::as_slice).collect();
            let p = plan(&cur, &want, per).unwrap();
            let mut all: Vec<(u32, Mode)> = p.iter().flat_map(|d| d.after.clone()).collect();
            all.sort_unstable_by_key(|x| x.0);
            prop_assert_eq!(&all, &want);
            for (i, d) in p.iter().enumerate() {
                prop_assert!(d.after.len() <= per);
                for &(t, _) in &c[i] {
                    if target.contains_key(&t) {
                        prop_assert!(d.after.iter().any(|x| x.0 == t), "kept {} moved", t);
                    }
                }
            }
        }
    }
}
