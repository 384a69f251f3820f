//! The bar book: one publisher's open bars, by instrument (README, "Bars").
//!
//! A fixed-capacity open-addressing table made at start-up; a tick is one
//! probe, a few compares and stores ([`BarBook::on_tick`]); closing is a
//! sweep of the table once the earliest open bar's grace has passed
//! ([`BarBook::due`], [`BarBook::sweep`]), about once a minute. Nothing
//! here allocates after [`BarBook::new`].
//!
//! Per instrument two bars can be open: the current minute's, and the
//! previous minute's while its grace window runs (a tick of that minute
//! arriving late, inside the grace, is folded into it). A tick of a minute
//! whose bar was already emitted is late: counted, never folded, so each
//! (instrument, minute) is emitted at most once.

use std::sync::Arc;

use super::Bar;
use crate::calendar::{Calendar, Cursor, Exchange, MINUTE_NS};
use crate::tick::Tick;

/// What timestamps a tick for its bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BarClock {
    /// The feed host's receive time (every mode; ns resolution).
    #[default]
    Receive,
    /// The exchange timestamp of packets that carry one (full mode; 1 s
    /// resolution); other ticks take their receive time shifted by the
    /// latest exchange − receive offset.
    Exchange,
}

/// Counts of what the book did with ticks (single writer: its publisher).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BookStats {
    /// Bars emitted.
    pub built: u64,
    /// Ticks of a minute whose bar was already emitted (past the grace).
    pub late_ticks: u64,
    /// Ticks outside their market's sessions (no bar is built for them).
    pub closed_market_ticks: u64,
    /// Ticks without a price (`last_price` 0): not folded.
    pub unpriced_ticks: u64,
    /// Ticks of instruments the full table had no room for.
    pub untracked_ticks: u64,
    /// Exchange clock only: ticks without an exchange timestamp before any
    /// tick with one told the offset (no time to put them at).
    pub unclocked_ticks: u64,
    /// Times an instrument's volume baseline was reset (reconnect, or a
    /// fall of `volume_traded` within a day): that tick adds no volume.
    pub volume_rebased: u64,
    /// Open bars whose minute had not ended when the book was finished.
    pub incomplete_at_stop: u64,
}

/// An open bar (`start_ns == 0`: none).
#[derive(Debug, Clone, Copy, Default)]
struct Open {
    start_ns: u64,
    open: u32,
    high: u32,
    low: u32,
    close: u32,
    volume: u64,
    ticks: u32,
}

impl Open {
    const fn new(start_ns: u64, price: u32, volume: u64) -> Self {
        Self {
            start_ns,
            open: price,
            high: price,
            low: price,
            close: price,
            volume,
            ticks: 1,
        }
    }

    #[inline]
    fn fold(&mut self, price: u32, volume: u64) {
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
        self.volume += volume;
        self.ticks += 1;
    }

    const fn bar(&self, token: u32, price_divisor: u32) -> Bar {
        Bar {
            token,
            price_divisor,
            start_ns: self.start_ns,
            end_ns: self.start_ns + MINUTE_NS,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
            ticks: self.ticks,
        }
    }
}

/// One instrument's state (`key == 0`: an empty slot).
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Token + 1.
    key: u64,
    price_divisor: u32,
    /// The instrument's exchange (`None`: one the calendar does not know,
    /// or no calendar: every minute open).
    exchange: Option<Exchange>,
    cur: Open,
    prev: Open,
    /// End of the latest emitted bar: ticks before it are late.
    closed_until: u64,
    /// `volume_traded` of the latest tick carrying one (0 = no baseline).
    last_volume: u32,
    /// IST day and connection (index, epoch) of that baseline.
    volume_day: u32,
    volume_conn: (u8, u32),
}

const EMPTY: Slot = Slot {
    key: 0,
    price_divisor: 0,
    exchange: None,
    cur: Open {
        start_ns: 0,
        open: 0,
        high: 0,
        low: 0,
        close: 0,
        volume: 0,
        ticks: 0,
    },
    prev: Open {
        start_ns: 0,
        open: 0,
        high: 0,
        low: 0,
        close: 0,
        volume: 0,
        ticks: 0,
    },
    closed_until: 0,
    last_volume: 0,
    volume_day: 0,
    volume_conn: (0, 0),
};

/// Bytes of one table slot.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// IST offset from UTC.
const IST_NS: u64 = 19_800 * 1_000_000_000;

/// One publisher's bars.
#[derive(Debug)]
pub struct BarBook {
    slots: Box<[Slot]>,
    shift: u32,
    len: usize,
    max_len: usize,
    grace_ns: u64,
    clock: BarClock,
    /// Exchange − receive time of the latest tick with an exchange stamp
    /// (`None` until one came).
    offset_ns: Option<i64>,
    calendar: Option<Arc<Calendar>>,
    /// Per exchange, the calendar memo (ticks come in time order, so an
    /// exchange's minute and session answer hold across its instruments).
    cursors: [Cursor; 9],
    /// Earliest `end + grace` of any open bar (`u64::MAX`: none).
    next_due: u64,
    stats: BookStats,
}

impl BarBook {
    /// A book with room for `instruments` (the table is a power of two at
    /// least 4/3 of that, [`SLOT_BYTES`] each); bars close `grace_ns` after their minute ends, by `clock`.
    /// With a `calendar`, ticks outside their market's sessions build no
    /// bar; without one every minute is open.
    #[must_use]
    pub fn new(
        instruments: usize,
        grace_ns: u64,
        clock: BarClock,
        calendar: Option<Arc<Calendar>>,
    ) -> Self {
        let max_len = instruments.max(1);
        // Load at most 3/4 with linear probing.
        let size = (max_len + max_len / 3 + 1).next_power_of_two();
        Self {
            slots: vec![EMPTY; size].into_boxed_slice(),
            shift: 64 - size.trailing_zeros(),
            len: 0,
            max_len,
            grace_ns,
            clock,
            offset_ns: None,
            calendar,
            cursors: Exchange::ALL.map(Cursor::new),
            next_due: u64::MAX,
            stats: BookStats::default(),
        }
    }

    /// What the book has done so far.
    #[must_use]
    pub const fn stats(&self) -> BookStats {
        self.stats
    }

    /// Instruments in the table.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// `true` when no instrument has been seen.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The book's clock at wall time `now_ns`.
    #[must_use]
    #[inline]
    pub const fn watermark(&self, now_ns: u64) -> u64 {
        match self.offset_ns {
            Some(o) => now_ns.saturating_add_signed(o),
            None => now_ns,
        }
    }

    /// `true` when some open bar's grace has passed at `now_ns`: call
    /// [`sweep`](Self::sweep). One compare.
    #[must_use]
    #[inline]
    pub const fn due(&self, now_ns: u64) -> bool {
        self.watermark(now_ns) >= self.next_due
    }

    /// The time of `t` on the book's clock; `None` when the exchange clock
    /// has no offset yet for a tick without an exchange timestamp.
    #[inline]
    fn tick_time(&mut self, t: &Tick) -> Option<u64> {
        match self.clock {
            BarClock::Receive => Some(t.ts_recv_ns),
            BarClock::Exchange if t.exchange_timestamp != 0 => {
                let ex = u64::from(t.exchange_timestamp) * 1_000_000_000;
                #[allow(clippy::cast_possible_wrap)] // both far below 2^63
                {
                    self.offset_ns = Some(ex as i64 - t.ts_recv_ns as i64);
                }
                Some(ex)
            }
            BarClock::Exchange => self
                .offset_ns
                .map(|o| t.ts_recv_ns.saturating_add_signed(o)),
        }
    }

    /// The index of `token`'s slot, inserted when new; `None` when the
    /// table is full.
    #[inline]
    fn slot(&mut self, token: u32, price_divisor: u32) -> Option<usize> {
        let key = u64::from(token) + 1;
        let mask = self.slots.len() - 1;
        let mut i = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize;
        loop {
            let k = self.slots[i].key;
            if k == key {
                return Some(i);
            }
            if k == 0 {
                break;
            }
            i = (i + 1) & mask;
        }
        if self.len >= self.max_len {
            return None;
        }
        self.len += 1;
        self.slots[i] = Slot {
            key,
            price_divisor,
            exchange: self
                .calendar
                .as_ref()
                .and_then(|_| Exchange::of_instrument(token, None)),
            ..EMPTY
        };
        Some(i)
    }

    /// Folds `t` into its instrument's bar. `epoch` is the connection
    /// attempt count of `t.conn` (a change means a reconnect: the volume
    /// baseline restarts). A tick of a new minute moves the current bar to
    /// the previous one, emitting the previous one first (its grace, shorter
    /// than a minute, has passed). Never allocates.
    #[inline]
    pub fn on_tick(&mut self, t: &Tick, epoch: u64, emit: &mut impl FnMut(&Bar)) {
        let Some(ts) = self.tick_time(t) else {
            self.stats.unclocked_ticks += 1;
            return;
        };
        let Some(i) = self.slot(t.token.0, t.price_divisor) else {
            self.stats.untracked_ticks += 1;
            return;
        };
        let Self {
            slots,
            calendar,
            cursors,
            stats,
            next_due,
            grace_ns,
            ..
        } = self;
        let s = &mut slots[i];
        let minute = match (calendar.as_deref(), s.exchange) {
            (Some(cal), Some(ex)) => match cursors[ex.index()].minute_start(cal, ts) {
                Some(m) => m,
                None => {
                    stats.closed_market_ticks += 1;
                    return;
                }
            },
            _ => crate::calendar::minute_start(ts),
        };
        let volume = volume_delta(s, t, epoch, ts, stats);
        if t.last_price == 0 {
            stats.unpriced_ticks += 1;
            return;
        }
        let price = t.last_price;
        if minute < s.closed_until {
            stats.late_ticks += 1;
        } else if s.cur.start_ns == minute {
            s.cur.fold(price, volume);
        } else if minute > s.cur.start_ns {
            if s.cur.start_ns != 0 {
                if s.prev.start_ns != 0 {
                    let bar = s.prev.bar(t.token.0, s.price_divisor);
                    s.closed_until = bar.end_ns;
                    stats.built += 1;
                    emit(&bar);
                }
                s.prev = s.cur;
            }
            s.cur = Open::new(minute, price, volume);
            *next_due = (*next_due).min(minute + MINUTE_NS + *grace_ns);
        } else if s.prev.start_ns == minute {
            s.prev.fold(price, volume);
        } else {
            // Between the previous and the current minute, or before the
            // previous one: its bar is gone or was never open.
            stats.late_ticks += 1;
        }
    }

    /// Emits every open bar whose minute ended at least the grace before
    /// the book's clock at `now_ns`. O(table), about once a minute.
    pub fn sweep(&mut self, now_ns: u64, emit: &mut impl FnMut(&Bar)) {
        let upto = self.watermark(now_ns).saturating_sub(self.grace_ns);
        self.close_until(upto, emit);
    }

    /// At stop: emits every open bar whose minute has ended at `now_ns`
    /// (the grace cut short) and counts the others, which are dropped, as
    /// [`BookStats::incomplete_at_stop`].
    pub fn finish(&mut self, now_ns: u64, emit: &mut impl FnMut(&Bar)) {
        let upto = self.watermark(now_ns);
        self.close_until(upto, emit);
        for s in &mut self.slots[..] {
            for o in [&mut s.prev, &mut s.cur] {
                if o.start_ns != 0 {
                    self.stats.incomplete_at_stop += 1;
                    o.start_ns = 0;
                }
            }
        }
        self.next_due = u64::MAX;
    }

    /// Emits the open bars ending at or before `upto`, oldest first per
    /// instrument; recomputes the next due time.
    fn close_until(&mut self, upto: u64, emit: &mut impl FnMut(&Bar)) {
        let mut next = u64::MAX;
        for s in &mut self.slots[..] {
            if s.key == 0 {
                continue;
            }
            let token = u32::try_from(s.key - 1).unwrap_or(u32::MAX);
            for o in [&mut s.prev, &mut s.cur] {
                if o.start_ns == 0 {
                    continue;
                }
                let end = o.start_ns + MINUTE_NS;
                if end <= upto {
                    let bar = o.bar(token, s.price_divisor);
                    s.closed_until = s.closed_until.max(end);
                    o.start_ns = 0;
                    self.stats.built += 1;
                    emit(&bar);
                } else {
                    next = next.min(end + self.grace_ns);
                }
            }
        }
        self.next_due = next;
    }
}

/// The volume `t` adds to its bar: the rise of `volume_traded` since the
/// instrument's previous tick that carried one. A first tick, a reconnect
/// (the connection's epoch changed) or a fall within the same IST day sets
/// a new baseline and adds nothing (the trades between are not in any
/// bar); a fall across days is the daily reset, and the new day's volume
/// so far is added.
#[inline]
fn volume_delta(s: &mut Slot, t: &Tick, epoch: u64, ts: u64, stats: &mut BookStats) -> u64 {
    let v = t.volume_traded;
    if v == 0 {
        // ltp and index packets carry no volume.
        return 0;
    }
    let day = u32::try_from((ts + IST_NS) / crate::calendar::DAY_NS).unwrap_or(u32::MAX);
    // The epoch's low 32 bits: 4 billion reconnects apart is the same.
    #[allow(clippy::cast_possible_truncation)]
    let conn = (t.conn, epoch as u32);
    let delta = if s.last_volume == 0 {
        0
    } else if s.volume_conn != conn {
        stats.volume_rebased += 1;
        0
    } else if v >= s.last_volume {
        u64::from(v - s.last_volume)
    } else if day != s.volume_day {
        u64::from(v)
    } else {
        stats.volume_rebased += 1;
        0
    };
    s.last_volume = v;
    s.volume_day = day;
    s.volume_conn = conn;
    delta
}
