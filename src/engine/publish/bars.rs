//! The publisher's side of one-minute bars (README, "Bars"): attaching a
//! [`BarLane`](super::super::bar_lane::BarLane) and closing due bars from
//! the publisher loop. Publisher thread; no allocation.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::super::bar_lane::Emit;
use super::Publisher;
use crate::clock::now_ns;

impl Publisher {
    /// Builds one-minute bars from every tick popped (README, "Bars").
    #[must_use]
    pub fn with_bars(mut self, lane: super::super::bar_lane::BarLane) -> Self {
        self.bars = Some(lane);
        self
    }

    /// The bar counters, when bars are on.
    #[must_use]
    pub fn bar_counters(&self) -> Option<&Arc<super::super::bar_lane::BarCounters>> {
        self.bars
            .as_ref()
            .map(super::super::bar_lane::BarLane::counters)
    }

    /// Closes the bars that are due (`finish`: every bar whose minute has
    /// ended; the others are counted as incomplete).
    #[inline]
    pub(super) fn sweep_bars(&mut self, finish: bool) {
        let Some(b) = self.bars.as_mut() else {
            return;
        };
        let wait = if self.stopping.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            self.queue_full_wait
        };
        let e = Emit {
            producer: &self.producer,
            run: self.run,
            wait,
        };
        if finish {
            b.finish(now_ns(), e);
        } else {
            b.sweep_if_due(now_ns(), e);
        }
    }
}
