//! Bounded SPSC tick rings with explicit drop accounting.
//!
//! Contract: allocates at start-up only; every hot-path call is wait-free; a
//! full ring never blocks the producer: [`TickTx::push_with`] drops the
//! *newest* tick and counts it, [`TickTx::try_push_with`] hands it back
//! uncounted so the network thread can hold its message (`engine.overflow =
//! "block"`, README "Overflow: block or drop") and count it later if it
//! gives up ([`TickTx::count_full`]). The producer half ([`TickTx`]) lives on the network thread, the
//! consumer half ([`TickRx`]) on one publisher thread; the [`RingCounters`]
//! are read by the ops thread.
//!
//! Built on `rtrb` (no `unsafe` of our own). Ticks are decoded straight into
//! their slot ([`TickTx::push_with`]) so no temporary is built and copied.
//!
//! ```
//! use panda_feed::ring::tick_ring;
//! use panda_feed::{PacketKind, Tick};
//! let (mut tx, mut rx, counters) = tick_ring(1);
//! assert!(tx.push(&Tick::for_token(1, PacketKind::Ltp)).is_ok());
//! assert!(tx.push(&Tick::for_token(2, PacketKind::Ltp)).is_err()); // full: dropped, counted
//! assert_eq!(counters.dropped_full(), 1);
//! let mut got = Vec::new();
//! rx.pop_chunk(16, |ticks| got.extend_from_slice(ticks));
//! assert_eq!(got[0].token.0, 1);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::tick::Tick;

/// Bytes of one ring slot (a [`Tick`], stored in place): the ring memory is
/// capacity × this, shown per publisher in the summary and `/metrics`.
pub const SLOT_BYTES: u64 = std::mem::size_of::<Tick>() as u64;

/// The ring was full; the tick was dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tick ring is full; tick dropped")
    }
}

impl std::error::Error for Full {}

/// Counters of one ring, written by its producer only, read by anyone.
///
/// Orderings: each counter has a single writer (the producer thread) that
/// stores its own running total with `Relaxed`; readers need no
/// happens-before with the ticks themselves, only an eventually current,
/// monotonic value, so `Relaxed` loads suffice.
#[derive(Debug, Default)]
pub struct RingCounters {
    pushed: CachePadded<AtomicU64>,
    dropped_full: CachePadded<AtomicU64>,
    capacity: usize,
}

impl RingCounters {
    /// Ticks accepted into the ring.
    #[must_use]
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    /// Ticks dropped because the ring was full.
    #[must_use]
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed)
    }

    /// Ring capacity in slots.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Producer half (network thread).
#[derive(Debug)]
pub struct TickTx {
    tx: rtrb::Producer<Tick>,
    counters: Arc<RingCounters>,
    pushed: u64,
    dropped: u64,
}

/// Consumer half (publisher thread).
#[derive(Debug)]
pub struct TickRx {
    rx: rtrb::Consumer<Tick>,
    capacity: usize,
}

/// A ring of `capacity` slots (0 is allowed: every push is dropped and counted).
#[must_use]
pub fn tick_ring(capacity: usize) -> (TickTx, TickRx, Arc<RingCounters>) {
    let (tx, rx) = rtrb::RingBuffer::new(capacity);
    let counters = Arc::new(RingCounters {
        capacity,
        ..RingCounters::default()
    });
    (
        TickTx {
            tx,
            counters: Arc::clone(&counters),
            pushed: 0,
            dropped: 0,
        },
        TickRx { rx, capacity },
        counters,
    )
}

impl TickTx {
    /// Reserves the next slot, lets `fill` write the tick in place, and
    /// publishes it. Never blocks, never allocates.
    ///
    /// # Errors
    /// [`Full`] when no slot is free: the tick is dropped (`fill` is not
    /// called) and counted in [`RingCounters::dropped_full`].
    #[inline]
    pub fn push_with(&mut self, fill: impl FnOnce(&mut Tick)) -> Result<(), Full> {
        self.try_push_with(fill).inspect_err(|_| self.count_full())
    }

    /// As [`push_with`](Self::push_with), but a full ring is *not* counted:
    /// the caller keeps the tick (the `block` overflow policy holds its
    /// message) and, if it gives up on it later, counts the drop with
    /// [`count_full`](Self::count_full).
    ///
    /// # Errors
    /// [`Full`] when no slot is free (`fill` is not called).
    #[inline]
    pub fn try_push_with(&mut self, fill: impl FnOnce(&mut Tick)) -> Result<(), Full> {
        let Ok(mut chunk) = self.tx.write_chunk(1) else {
            return Err(Full);
        };
        let (first, _) = chunk.as_mut_slices();
        if let Some(slot) = first.first_mut() {
            fill(slot);
        }
        chunk.commit_all();
        self.pushed += 1;
        self.counters.pushed.store(self.pushed, Ordering::Relaxed);
        Ok(())
    }

    /// Counts one tick dropped because this ring was full (after a
    /// [`try_push_with`](Self::try_push_with) the caller gave up on).
    #[inline]
    pub fn count_full(&mut self) {
        self.dropped += 1;
        self.counters
            .dropped_full
            .store(self.dropped, Ordering::Relaxed);
    }

    /// Ring capacity in slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.counters.capacity
    }

    /// Copies `tick` into the ring. See [`push_with`](Self::push_with).
    ///
    /// # Errors
    /// [`Full`]: dropped and counted.
    #[inline]
    pub fn push(&mut self, tick: &Tick) -> Result<(), Full> {
        self.push_with(|slot| *slot = *tick)
    }

    /// Slots currently occupied.
    #[must_use]
    pub fn len(&self) -> usize {
        self.counters.capacity - self.tx.slots()
    }

    /// `true` when no tick is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` when the consumer half has been dropped (its publisher is gone).
    #[must_use]
    pub fn is_abandoned(&self) -> bool {
        self.tx.is_abandoned()
    }

    /// This ring's counters.
    #[must_use]
    pub fn counters(&self) -> &Arc<RingCounters> {
        &self.counters
    }
}

impl TickRx {
    /// Hands up to `max` waiting ticks to `f` (as one or two slices, oldest
    /// first), then frees their slots. Returns how many were consumed.
    #[inline]
    pub fn pop_chunk(&mut self, max: usize, mut f: impl FnMut(&[Tick])) -> usize {
        let n = self.rx.slots().min(max);
        if n == 0 {
            return 0;
        }
        let Ok(chunk) = self.rx.read_chunk(n) else {
            return 0;
        };
        let (a, b) = chunk.as_slices();
        f(a);
        if !b.is_empty() {
            f(b);
        }
        chunk.commit_all();
        n
    }

    /// Ticks waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rx.slots()
    }

    /// `true` when no tick is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Ring capacity in slots.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// `true` when the producer half has been dropped (no more ticks will come).
    #[must_use]
    pub fn is_abandoned(&self) -> bool {
        self.rx.is_abandoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::PacketKind;

    fn tick(n: u32) -> Tick {
        Tick {
            last_price: n,
            ..Tick::for_token(n, PacketKind::Ltp)
        }
    }

    fn drain(rx: &mut TickRx) -> Vec<u32> {
        let mut out = Vec::new();
        rx.pop_chunk(usize::MAX, |t| out.extend(t.iter().map(|t| t.last_price)));
        out
    }

    #[test]
    fn capacity_zero_drops_everything_and_counts() {
        let (mut tx, mut rx, c) = tick_ring(0);
        for i in 0..5 {
            assert_eq!(tx.push(&tick(i)), Err(Full));
        }
        assert_eq!((c.pushed(), c.dropped_full()), (0, 5));
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn capacity_one_drops_the_newest() {
        let (mut tx, mut rx, c) = tick_ring(1);
        assert!(tx.push(&tick(1)).is_ok());
        assert!(tx.push(&tick(2)).is_err());
        assert_eq!(tx.len(), 1);
        assert_eq!(drain(&mut rx), [1]);
        assert!(tx.push(&tick(3)).is_ok());
        assert_eq!(drain(&mut rx), [3]);
        assert_eq!((c.pushed(), c.dropped_full()), (2, 1));
    }

    #[test]
    fn fifo_across_the_wrap_and_in_place_fill() {
        let (mut tx, mut rx, _) = tick_ring(4);
        let mut expect = Vec::new();
        let mut got = Vec::new();
        for i in 0..23u32 {
            tx.push_with(|slot| {
                slot.last_price = i;
                slot.seq = u64::from(i) * 10;
            })
            .unwrap();
            expect.push(i);
            if i % 3 == 2 {
                rx.pop_chunk(2, |t| got.extend(t.iter().map(|t| t.last_price)));
            }
            if tx.len() == 4 {
                got.extend(drain(&mut rx));
            }
        }
        got.extend(drain(&mut rx));
        assert_eq!(got, expect);
    }

    #[test]
    fn abandoned_halves_are_visible() {
        let (tx, rx, _) = tick_ring(2);
        drop(rx);
        assert!(tx.is_abandoned());
        let (tx, rx, _) = tick_ring(2);
        drop(tx);
        assert!(rx.is_abandoned());
    }

    #[test]
    fn dropped_equals_offered_minus_received_across_threads() {
        let (mut tx, mut rx, c) = tick_ring(8);
        const OFFERED: u32 = 200_000;
        let consumer = std::thread::spawn(move || {
            let mut received = Vec::new();
            loop {
                let n = rx.pop_chunk(64, |t| received.extend(t.iter().map(|t| t.last_price)));
                if n == 0 {
                    if rx.is_abandoned() && rx.is_empty() {
                        return received;
                    }
                    std::thread::yield_now();
                }
            }
        });
        for i in 0..OFFERED {
            let _ = tx.push(&tick(i)); // counted either way
        }
        drop(tx);
        let received = consumer.join().unwrap();
        assert!(
            received.windows(2).all(|w| w[0] < w[1]),
            "order kept, nothing duplicated"
        );
        assert_eq!(received.len() as u64, c.pushed());
        assert_eq!(c.pushed() + c.dropped_full(), u64::from(OFFERED));
    }

    #[test]
    fn halves_are_send() {
        fn send<T: Send>() {}
        send::<TickTx>();
        send::<TickRx>();
    }
}
