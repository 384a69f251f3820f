//! The park/wake protocol between the network thread and the publishers,
//! written once so both sides import it and neither imports the other.
//!
//! A publisher with nothing to do (idle policy `park`) calls
//! [`Wake::park_unless`]; the network thread, after pushing onto some rings
//! in one loop turn, calls [`wake_touched`] with the set of rings it touched.
//! The threads otherwise meet only through the rings (`crate::ring`).
//!
//! Memory ordering, the whole argument: the publisher stores
//! `sleeping = true` (SeqCst), then re-checks its ring; the network thread
//! publishes its pushes (the ring's tail store, Release), then issues a
//! SeqCst fence, then loads `sleeping` (SeqCst). Without the fence the tail
//! store may be ordered after the load of `sleeping` (StoreLoad reordering,
//! allowed even on x86); both sides would then miss each other and the
//! publisher would sleep out its park timeout with ticks waiting. With the
//! fence, at least one side sees the other: either the publisher's re-check
//! sees the new ticks, or the network thread sees `sleeping` and unparks it.
//! The park timeout bounds the cost of any spurious miss regardless.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::Duration;

/// One publisher's parking flag, shared with the network thread.
#[derive(Debug, Default)]
pub struct Wake {
    /// Set while the publisher is (about to be) parked.
    sleeping: AtomicBool,
}

impl Wake {
    /// Parks the calling thread for at most `timeout` unless `has_work`
    /// (evaluated after the flag is raised) says there is something to do.
    /// Runs on the publisher that owns this flag.
    #[inline]
    pub fn park_unless(&self, has_work: impl FnOnce() -> bool, timeout: Duration) {
        self.sleeping.store(true, Ordering::SeqCst);
        // Pairs with the fence in `wake_touched`: our flag store must be
        // visible before we look at the ring again.
        std::sync::atomic::fence(Ordering::SeqCst);
        if !has_work() {
            std::thread::park_timeout(timeout);
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// `true` while the owner is (about to be) parked.
    #[inline]
    #[must_use]
    pub fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::SeqCst)
    }
}

/// Unparks every parked publisher whose bit is set in `touched` (bit `i` is
/// `wakes[i]`). Runs on the network thread once per loop turn; no
/// allocation, no syscall unless a publisher is parked.
#[inline]
pub fn wake_touched(wakes: &[(Arc<Wake>, Thread)], touched: u64) {
    if touched == 0 {
        return;
    }
    // Pairs with the publisher's SeqCst store of `sleeping` in
    // `park_unless` (see the module doc).
    std::sync::atomic::fence(Ordering::SeqCst);
    for (i, (wake, thread)) in wakes.iter().enumerate() {
        if touched & (1 << i) != 0 && wake.is_sleeping() {
            thread.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_before_the_park_is_seen_and_a_parked_thread_is_woken() {
        let wake = Arc::new(Wake::default());
        // Work already there: no park at all.
        let t0 = std::time::Instant::now();
        wake.park_unless(|| true, Duration::from_secs(5));
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert!(!wake.is_sleeping());
        // A parked thread is unparked by `wake_touched`.
        let w = Arc::clone(&wake);
        let h = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            w.park_unless(|| false, Duration::from_secs(30));
            t0.elapsed()
        });
        while !wake.is_sleeping() {
            std::thread::yield_now();
        }
        wake_touched(&[(Arc::clone(&wake), h.thread().clone())], 1);
        assert!(h.join().unwrap() < Duration::from_secs(20));
    }
}
