//! The mock exchange's generator thread: every millisecond it updates as
//! many subscribed (and not stalled) instruments as the rate owes, at the
//! mock's market clock, and publishes the step as an immutable snapshot
//! (`ArcSwap`) the connection threads read without locks. Test
//! infrastructure: it takes the registry's mutex when subscriptions change.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::market::{Market, Snapshot, Step};
use super::{Shared, now_s, today_days};

/// Generator loop: every millisecond, update as many subscribed instruments
/// as the rate owes, and publish the step.
pub(super) fn generate(shared: &Shared) {
    let cfg = &shared.cfg;
    let mut market = Market::new(cfg.seed, cfg.max_instruments, cfg.expiry.clone());
    let mut active: Vec<u32> = Vec::new();
    let mut seen_version = u64::MAX;
    let mut seq = 0u64;
    let mut generated = 0u64;
    let mut owed_since = Instant::now();
    let mut owed_base = 0u64;
    let mut day = today_days();
    let started = Instant::now();
    // The market clock: the wall clock, or a set start running on from it.
    let clock = || {
        cfg.clock_start_s.map_or_else(now_s, |s| {
            s.saturating_add(u32::try_from(started.elapsed().as_secs()).unwrap_or(u32::MAX))
        })
    };
    let mut seen_stalled = u64::MAX;
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
        let v = shared.registry_version.load(Ordering::SeqCst);
        let sv = shared.faults.stalled_version();
        if v != seen_version || sv != seen_stalled {
            seen_version = v;
            seen_stalled = sv;
            let (_, stalled) = shared.faults.stalled();
            let reg = shared
                .registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut all: Vec<u32> = reg
                .values()
                .flat_map(|c| c.tokens.iter().copied())
                .collect();
            drop(reg);
            all.sort_unstable();
            all.dedup();
            all.retain(|t| !market.is_expired(*t, day) && stalled.binary_search(t).is_err());
            active = all;
            // Rate is owed from when there is something to stream.
            owed_since = Instant::now();
            owed_base = generated;
        }
        if today_days() != day {
            day = today_days();
            market.remove_expired(day);
            active.retain(|t| !market.is_expired(*t, day));
        }
        if active.is_empty() || cfg.max_ticks.is_some_and(|m| generated >= m) {
            continue;
        }
        let due = owed_base + (owed_since.elapsed().as_secs_f64() * cfg.rate_per_s as f64) as u64;
        let mut n = due.saturating_sub(generated);
        if let Some(m) = cfg.max_ticks {
            n = n.min(m - generated);
        }
        if n == 0 {
            continue;
        }
        let now = clock();
        let mut updates = Vec::with_capacity(n as usize);
        for _ in 0..n {
            if let Some(tok) = market.pick(&active) {
                updates.push(market.update(tok, now));
            }
        }
        generated += updates.len() as u64;
        shared.stats.generated.store(generated, Ordering::SeqCst);
        seq += 1;
        let prev = shared.snapshot.load();
        let mut steps = prev.steps.clone();
        steps.push_back(Arc::new(Step { seq, updates }));
        while steps.len() > Snapshot::KEEP {
            steps.pop_front();
        }
        shared.snapshot.store(Arc::new(Snapshot { steps }));
    }
}
