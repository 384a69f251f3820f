//! Unit tests of the bar book: minute boundaries, grace, late ticks, volume
//! across a daily reset and a reconnect, closed markets, exactly once.
#![allow(clippy::inconsistent_digit_grouping)] // prices as rupees_paise

use std::sync::Arc;

use super::{Bar, BarBook, BarClock};
use crate::calendar::{Calendar, Holidays, MINUTE_NS};
use crate::tick::{PacketKind, Tick};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// 2026-11-26 (a Thursday, NSE open 09:15-15:30 IST) 10:00:00 IST.
const T10: u64 = 1_795_667_400 * S;
/// An NSE equity token (segment 1).
const TOK: u32 = 408_065;
const GRACE: u64 = 2 * S;

fn tick(ts: u64, price: u32, volume: u32) -> Tick {
    let mut t = Tick::for_token(TOK, PacketKind::Full);
    t.ts_recv_ns = ts;
    t.last_price = price;
    t.volume_traded = volume;
    t
}

fn book() -> BarBook {
    BarBook::new(16, GRACE, BarClock::Receive, None)
}

/// Feeds `(ts, price, volume, epoch)` and collects what is emitted.
fn feed(b: &mut BarBook, ticks: &[(u64, u32, u32, u64)], out: &mut Vec<Bar>) {
    for &(ts, p, v, e) in ticks {
        b.on_tick(&tick(ts, p, v), e, &mut |bar| out.push(*bar));
    }
}

#[test]
fn ticks_at_59_999_and_00_000_fall_on_either_side_of_the_boundary() {
    let mut b = book();
    let mut out = Vec::new();
    feed(
        &mut b,
        &[
            (T10 + 10 * S, 100_00, 0, 1),
            (T10 + 59 * S + 999 * MS, 101_00, 0, 1),
            (T10 + 60 * S, 102_00, 0, 1),
        ],
        &mut out,
    );
    assert!(out.is_empty(), "nothing closes before its grace");
    assert!(!b.due(T10 + 60 * S + GRACE - 1));
    assert!(b.due(T10 + 60 * S + GRACE));
    b.sweep(T10 + 60 * S + GRACE, &mut |bar| out.push(*bar));
    assert_eq!(
        out,
        [Bar {
            token: TOK,
            price_divisor: 100,
            start_ns: T10,
            end_ns: T10 + MINUTE_NS,
            open: 100_00,
            high: 101_00,
            low: 100_00,
            close: 101_00,
            volume: 0,
            ticks: 2,
        }]
    );
    b.sweep(T10 + 120 * S + GRACE, &mut |bar| out.push(*bar));
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[1].start_ns, out[1].open, out[1].ticks),
        (T10 + MINUTE_NS, 102_00, 1)
    );
}

#[test]
fn a_late_tick_inside_the_grace_is_folded_and_one_outside_is_counted() {
    let mut b = book();
    let mut out = Vec::new();
    // The 10:01 tick is processed before a 10:00:59.5 one (publisher lag).
    feed(
        &mut b,
        &[
            (T10 + 30 * S, 100_00, 0, 1),
            (T10 + 60 * S + 500 * MS, 100_50, 0, 1),
            (T10 + 59 * S + 500 * MS, 99_00, 0, 1),
        ],
        &mut out,
    );
    b.sweep(T10 + 62 * S, &mut |bar| out.push(*bar));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].low, out[0].close, out[0].ticks), (99_00, 99_00, 2));
    // Past the grace: not folded, not a second 10:00 bar; counted.
    feed(&mut b, &[(T10 + 59 * S + 900 * MS, 1_00, 0, 1)], &mut out);
    assert_eq!(b.stats().late_ticks, 1);
    b.finish(T10 + 200 * S, &mut |bar| out.push(*bar));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[1].start_ns, T10 + MINUTE_NS);
    assert_eq!(b.stats().built, 2);
}

#[test]
fn volume_is_the_rise_of_volume_traded_across_the_daily_reset() {
    let mut b = book();
    let mut out = Vec::new();
    let day2 = T10 + 86_400 * S;
    feed(
        &mut b,
        &[
            (T10, 100_00, 1_000, 1),         // baseline: adds nothing
            (T10 + S, 100_00, 1_500, 1),     // +500
            (T10 + 2 * S, 100_00, 1_400, 1), // a fall the same day: rebased
            (T10 + 3 * S, 100_00, 1_450, 1), // +50
            (day2, 100_00, 200, 1),          // the next day's first tick: +200
            (day2 + S, 100_00, 260, 1),      // +60
        ],
        &mut out,
    );
    b.finish(day2 + 120 * S, &mut |bar| out.push(*bar));
    let vols: Vec<_> = out.iter().map(|b| (b.start_ns, b.volume)).collect();
    assert_eq!(vols, [(T10, 550), (day2, 260)]);
    assert_eq!(b.stats().volume_rebased, 1);
}

#[test]
fn a_reconnect_in_the_middle_of_a_minute_keeps_the_bar_and_skips_the_gap_volume() {
    let mut b = book();
    let mut out = Vec::new();
    feed(
        &mut b,
        &[
            (T10 + 5 * S, 100_00, 100, 1),
            (T10 + 10 * S, 101_00, 150, 1), // +50
            // Reconnected (epoch 2): 250 traded while away is in no bar.
            (T10 + 40 * S, 99_00, 400, 2),
            (T10 + 50 * S, 100_00, 420, 2), // +20
        ],
        &mut out,
    );
    b.finish(T10 + 61 * S, &mut |bar| out.push(*bar));
    assert_eq!(out.len(), 1);
    let bar = out[0];
    assert_eq!(
        (
            bar.open, bar.high, bar.low, bar.close, bar.volume, bar.ticks
        ),
        (100_00, 101_00, 99_00, 100_00, 70, 4)
    );
    assert_eq!(b.stats().volume_rebased, 1);
}

#[test]
fn no_bar_is_built_while_the_market_is_closed() {
    let h = Holidays::load(None).expect("embedded calendar");
    let cal = Arc::new(Calendar::new(&h, T10, 14, 7));
    let mut b = BarBook::new(16, GRACE, BarClock::Receive, Some(cal));
    let mut out = Vec::new();
    // 15:29:30 IST (open), 15:30:10 and 16:00 IST (closed).
    let close = T10 + (5 * 3600 + 30 * 60) * S;
    feed(
        &mut b,
        &[
            (close - 30 * S, 100_00, 0, 1),
            (close + 10 * S, 100_00, 0, 1),
            (close + 1800 * S, 100_00, 0, 1),
        ],
        &mut out,
    );
    b.finish(close + 3600 * S, &mut |bar| out.push(*bar));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].end_ns, close);
    assert_eq!(b.stats().closed_market_ticks, 2);
    // A Sunday (2026-11-29): closed all day.
    let mut out = Vec::new();
    feed(&mut b, &[(T10 + 3 * 86_400 * S, 100_00, 0, 1)], &mut out);
    assert_eq!(b.stats().closed_market_ticks, 3);
}

#[test]
fn a_full_table_counts_the_instruments_it_cannot_hold() {
    let mut b = BarBook::new(2, GRACE, BarClock::Receive, None);
    let mut n = 0;
    for tok in [TOK, TOK + 256, TOK + 512] {
        let mut t = tick(T10, 1_00, 0);
        t.token.0 = tok;
        b.on_tick(&t, 1, &mut |_| n += 1);
    }
    assert_eq!((b.len(), b.stats().untracked_ticks), (2, 1));
}

#[test]
fn the_exchange_clock_stamps_by_exchange_time_and_closes_by_its_offset() {
    let mut b = BarBook::new(16, GRACE, BarClock::Exchange, None);
    let mut out = Vec::new();
    // The exchange is 3 h 12 s ahead of the receive clock (a mock clock).
    let recv = T10 - 3 * 3600 * S;
    let mut t = tick(recv, 100_00, 0);
    t.exchange_timestamp = u32::try_from((T10 + 12 * S) / S).unwrap();
    b.on_tick(&t, 1, &mut |bar| out.push(*bar));
    // An ltp tick (no exchange stamp) 5 s later is timed by the offset.
    let mut ltp = tick(recv + 5 * S, 101_00, 0);
    ltp.exchange_timestamp = 0;
    b.on_tick(&ltp, 1, &mut |bar| out.push(*bar));
    assert!(!b.due(recv + 49 * S));
    assert!(b.due(recv + 50 * S), "10:01:02 on the exchange clock");
    b.sweep(recv + 50 * S, &mut |bar| out.push(*bar));
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].start_ns, out[0].close, out[0].ticks),
        (T10, 101_00, 2)
    );
}

#[test]
fn every_minute_of_every_instrument_is_emitted_once_whatever_the_order() {
    // A deterministic shuffle of ticks over 6 instruments and 5 minutes,
    // each delayed by up to 3 s: every tick is folded, late or untracked,
    // and no (instrument, minute) is emitted twice.
    let mut b = BarBook::new(64, GRACE, BarClock::Receive, None);
    let mut out = Vec::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut ticks = Vec::new();
    for i in 0..3_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let tok = TOK + 256 * u32::try_from(x % 6).unwrap();
        let ts = T10 + i * 100 * MS;
        let delay = (x >> 8) % (3 * S);
        ticks.push((ts + delay, ts, tok));
    }
    ticks.sort_unstable();
    for &(arrive, ts, tok) in &ticks {
        let mut t = tick(ts, 1_00 + u32::try_from(arrive % 97).unwrap(), 0);
        t.token.0 = tok;
        b.on_tick(&t, 1, &mut |bar| out.push(*bar));
        if b.due(arrive) {
            b.sweep(arrive, &mut |bar| out.push(*bar));
        }
    }
    b.finish(T10 + 400 * S, &mut |bar| out.push(*bar));
    let mut keys: Vec<_> = out.iter().map(|b| (b.token, b.start_ns)).collect();
    let n = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n, "a bar was emitted twice");
    let folded: u64 = out.iter().map(|b| u64::from(b.ticks)).sum();
    let s = b.stats();
    assert_eq!(folded + s.late_ticks, 3_000);
    assert_eq!(s.built, n as u64);
    assert!(s.late_ticks > 0, "the delays make some ticks late");
}

#[test]
fn a_slot_is_the_size_the_readme_says() {
    // README "Bars": "120 bytes a slot".
    assert_eq!(super::book::SLOT_BYTES, 120);
}
