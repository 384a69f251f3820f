//! The reconnect backoff of one connection: exponential, capped, with
//! "equal jitter", reset only after the connection stayed healthy.
//!
//! Runs on the network thread (one [`Backoff`] per connection, owned by it).
//! Pure: it reads no clock; the caller passes `now`. Its jitter RNG lives
//! inside it, seeded by the caller.
//!
//! The policy: the `n`th consecutive failure waits a delay drawn uniformly
//! from `[c/2, c]`, where the ceiling `c = min(base × FACTOR^(n−1), cap)`.
//! After HTTP 429 the delay is at least the 429 floor (which may exceed the
//! cap). The failure count resets to zero only when a connection has stayed
//! open for `healthy_after`, so a server that accepts and then drops at once
//! keeps the backoff growing.

use std::time::{Duration, Instant};

use crate::config::Supervision;

/// Growth of the ceiling per consecutive failure.
pub(crate) const FACTOR: u32 = 2;

/// Reconnect backoff state of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    floor_429: Duration,
    healthy_after: Duration,
    /// Consecutive failures since the last reset.
    failures: u32,
    /// Ceiling of the latest failure's delay (`Duration::ZERO` before any).
    ceiling: Duration,
    /// When the connection opened, while it is open.
    opened_at: Option<Instant>,
    /// xorshift64* state; never 0.
    rng: u64,
}

impl Backoff {
    /// A backoff from base, cap, 429 floor and healthy period; `seed` picks
    /// the jitter sequence (any value; 0 is mapped to a fixed non-zero one).
    #[must_use]
    pub(crate) fn new(
        base: Duration,
        cap: Duration,
        floor_429: Duration,
        healthy_after: Duration,
        seed: u64,
    ) -> Self {
        Self {
            base,
            cap,
            floor_429,
            healthy_after,
            failures: 0,
            ceiling: Duration::ZERO,
            opened_at: None,
            // xorshift stays at 0 forever from a 0 state.
            rng: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// The backoff of `sup` (`backoff_base`, `backoff_cap`, `backoff_429`,
    /// `healthy_after`).
    #[must_use]
    pub(crate) fn of(sup: &Supervision, seed: u64) -> Self {
        Self::new(
            sup.backoff_base,
            sup.backoff_cap,
            sup.backoff_429,
            sup.healthy_after,
            seed,
        )
    }

    /// Consecutive failures since the last reset.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// The ceiling of the latest failure's delay (zero before any failure).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// The connection opened at `now`.
    pub(crate) fn opened(&mut self, now: Instant) {
        self.opened_at = Some(now);
    }

    /// Resets the failure count when the connection has been open for
    /// `healthy_after` by `now`. Call it on timer turns while open.
    pub(crate) fn check_healthy(&mut self, now: Instant) {
        if self
            .opened_at
            .is_some_and(|t| now.saturating_duration_since(t) >= self.healthy_after)
        {
            self.failures = 0;
            self.ceiling = Duration::ZERO;
        }
    }

    /// An attempt failed or an open connection went down at `now`: counts
    /// the failure and returns the delay before the next attempt, within
    /// `[ceiling/2, ceiling]`.
    pub(crate) fn failed(&mut self, now: Instant) -> Duration {
        self.check_healthy(now);
        self.opened_at = None;
        self.ceiling = if self.failures == 0 {
            self.base.min(self.cap)
        } else {
            self.ceiling.saturating_mul(FACTOR).min(self.cap)
        };
        self.failures = self.failures.saturating_add(1);
        self.jitter(self.ceiling)
    }

    /// As [`failed`](Self::failed), after an HTTP 429: at least the 429
    /// floor.
    pub(crate) fn failed_throttled(&mut self, now: Instant) -> Duration {
        self.failed(now).max(self.floor_429)
    }

    /// Equal jitter: uniform in `[d/2, d]`.
    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift64*: jitter only, no statistical needs.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let half = d / 2;
        let span = u64::try_from(d.saturating_sub(half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(r % span.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn defaults(seed: u64) -> Backoff {
        // Today's defaults: base 500 ms, cap 60 s, 429 floor 60 s, healthy 30 s.
        Backoff::new(500 * MS, 60_000 * MS, 60_000 * MS, 30_000 * MS, seed)
    }

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let mut b = defaults(7);
        let t = Instant::now();
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                b.failed(t);
                u64::try_from(b.ceiling().as_millis()).unwrap()
            })
            .collect();
        assert_eq!(
            ceilings,
            [
                500, 1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
        );
        assert_eq!(b.failures(), 10);
    }

    #[test]
    fn http_429_waits_at_least_the_floor() {
        let mut b = defaults(1);
        let d = b.failed_throttled(Instant::now());
        assert!(d >= 60_000 * MS, "{d:?}");
        assert_eq!(b.ceiling(), 500 * MS, "the ceiling still grows from base");
    }

    #[test]
    fn a_healthy_connection_resets_and_a_flapping_one_does_not() {
        let mut b = defaults(3);
        let t0 = Instant::now();
        b.failed(t0);
        b.failed(t0);
        b.opened(t0);
        b.check_healthy(t0 + 29_999 * MS);
        assert_eq!(b.failures(), 2, "not yet healthy");
        b.failed(t0 + 29_999 * MS);
        assert_eq!(
            b.failures(),
            3,
            "dropped before healthy_after: keeps growing"
        );
        b.opened(t0 + 30 * 1000 * MS);
        b.check_healthy(t0 + 60 * 1000 * MS);
        assert_eq!(b.failures(), 0);
        let d = b.failed(t0 + 61 * 1000 * MS);
        assert!((250 * MS..=500 * MS).contains(&d), "{d:?}");
    }

    #[test]
    fn seed_zero_still_jitters() {
        let mut b = defaults(0);
        let t = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            b.failed(t);
            b.opened(t);
            b.check_healthy(t + 31 * 1000 * MS);
            seen.insert(b.failed(t + 31 * 1000 * MS));
        }
        assert!(seen.len() > 1, "{seen:?}");
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_backoff() -> impl Strategy<Value = Backoff> {
        (1u64..10_000, 0u64..200_000, 1u64..100_000, any::<u64>()).prop_map(
            |(base, extra, healthy, seed)| {
                Backoff::new(
                    Duration::from_millis(base),
                    Duration::from_millis(base + extra),
                    Duration::from_secs(60),
                    Duration::from_millis(healthy),
                    seed,
                )
            },
        )
    }

    proptest! {
        #[test]
        fn prop_every_delay_is_within_half_the_base_and_the_cap(
            mut b in arb_backoff(),
            n in 1usize..64,
        ) {
            let t = Instant::now();
            let (lower, cap) = (b.base / 2, b.cap);
            for _ in 0..n {
                let d = b.failed(t);
                prop_assert!(d >= lower && d <= cap, "{d:?} not in [{lower:?}, {cap:?}]");
            }
        }

        #[test]
        fn prop_jitter_is_within_the_equal_jitter_range(
            mut b in arb_backoff(),
            n in 1usize..64,
        ) {
            let t = Instant::now();
            for _ in 0..n {
                let d = b.failed(t);
                let c = b.ceiling();
                prop_assert!(d >= c / 2 && d <= c, "{d:?} not in [{:?}, {c:?}]", c / 2);
            }
        }

        #[test]
        fn prop_the_ceiling_grows_by_the_factor_until_the_cap(
            mut b in arb_backoff(),
            n in 1usize..64,
        ) {
            let t = Instant::now();
            let mut want = b.base.min(b.cap);
            for _ in 0..n {
                b.failed(t);
                prop_assert_eq!(b.ceiling(), want);
                want = want.saturating_mul(FACTOR).min(b.cap);
            }
        }

        /// Each step: fail `fails` times, then open and stay open `open_ms`
        /// (checking health at its end, as the timers do), then go down.
        #[test]
        fn prop_reset_only_after_healthy(
            mut b in arb_backoff(),
            steps in proptest::collection::vec((0u32..5, 0u64..200_000), 1..20),
        ) {
            let mut t = Instant::now();
            for (fails, open_ms) in steps {
                for _ in 0..fails {
                    b.failed(t);
                }
                let before = b.failures();
                b.opened(t);
                t += Duration::from_millis(open_ms);
                b.check_healthy(t);
                let healthy = Duration::from_millis(open_ms) >= b.healthy_after;
                prop_assert_eq!(b.failures(), if healthy { 0 } else { before });
                b.failed(t);
                prop_assert_eq!(b.failures(), if healthy { 1 } else { before + 1 });
                if healthy {
                    prop_assert_eq!(b.ceiling(), b.base.min(b.cap));
                }
            }
        }
    }
}
