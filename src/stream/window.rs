//! Per-instrument replay windows: the last N bars of each instrument, in
//! memory, owned by the `stream` thread. Bounded: at most N bars per
//! instrument (the oldest is evicted) and at most `max_instruments`
//! instruments (the bars of more are counted by the caller, not kept).
//!
//! After a feed restart a window can start from the records read back from
//! Redis (kept as bars with the run that published them, re-encoded to the
//! same bytes on replay); live bars then push the oldest of those out first.
//! Memory: at most N × `max_instruments` entries of 64 bytes.

use std::collections::{HashMap, VecDeque};

use tungstenite::Utf8Bytes;

use crate::bars::{Bar, MAX_BAR_JSON_LEN, write_bar};
use crate::json::JsonBuf;
use crate::run_id::RunId;

/// One instrument's window.
#[derive(Debug, Default)]
struct Window {
    /// Bars read back from Redis with their run (older than every live bar).
    restored: VecDeque<(Bar, RunId)>,
    /// Bars received by this run, oldest first.
    live: VecDeque<Bar>,
    /// Redis was asked for this instrument already (or had nothing).
    looked_up: bool,
}

impl Window {
    fn len(&self) -> usize {
        self.restored.len() + self.live.len()
    }
}

/// Every instrument's window.
#[derive(Debug)]
pub(super) struct Windows {
    map: HashMap<u32, Window>,
    bars: usize,
    max_instruments: usize,
    run: RunId,
    json: JsonBuf,
}

impl Windows {
    /// Windows of `bars` bars for at most `max_instruments` instruments;
    /// records are encoded with `run`.
    pub(super) fn new(bars: usize, max_instruments: usize, run: RunId) -> Self {
        Self {
            map: HashMap::new(),
            bars: bars.max(1),
            max_instruments,
            run,
            json: JsonBuf::with_capacity(MAX_BAR_JSON_LEN * 2),
        }
    }

    /// Instruments with a window.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The window of `token`, created if there is room.
    fn entry(&mut self, token: u32) -> Option<&mut Window> {
        if !self.map.contains_key(&token) && self.map.len() >= self.max_instruments {
            return None;
        }
        // NB: no `with_capacity(N)`: a window's memory follows its bars (it
        // reaches N × 56 bytes only after N minutes of them).
        Some(self.map.entry(token).or_default())
    }

    /// Adds a live bar; `false` when its instrument is beyond the limit.
    pub(super) fn push(&mut self, bar: Bar) -> bool {
        let n = self.bars;
        let Some(w) = self.entry(bar.token) else {
            return false;
        };
        if w.len() >= n && w.restored.pop_front().is_none() {
            w.live.pop_front();
        }
        w.live.push_back(bar);
        true
    }

    /// Whether a subscribe to `token` should ask Redis: memory has no bar
    /// of it and Redis was not asked yet.
    pub(super) fn needs_lookup(&self, token: u32) -> bool {
        self.map
            .get(&token)
            .is_none_or(|w| w.len() == 0 && !w.looked_up)
    }

    /// Installs the bars Redis returned for `token` (oldest first; the last
    /// N are kept); `false` when the instrument is beyond the limit.
    pub(super) fn restore(&mut self, token: u32, records: Vec<(Bar, RunId)>) -> bool {
        let n = self.bars;
        let Some(w) = self.entry(token) else {
            return false;
        };
        w.looked_up = true;
        let room = n.saturating_sub(w.live.len());
        let skip = records.len().saturating_sub(room);
        w.restored = records.into_iter().skip(skip).collect();
        true
    }

    /// The JSON record of `bar` (the `bars.topic` value, `write_bar`).
    pub(super) fn encode(&mut self, bar: &Bar) -> Option<Utf8Bytes> {
        let run = self.run;
        self.encode_as(bar, run)
    }

    fn encode_as(&mut self, bar: &Bar, run: RunId) -> Option<Utf8Bytes> {
        self.json.clear();
        write_bar(bar, run, &mut self.json).ok()?;
        let text = std::str::from_utf8(self.json.as_bytes()).ok()?;
        Some(Utf8Bytes::from(text.to_owned()))
    }

    /// The replay of `token`, oldest first, and how many of the records
    /// came from Redis.
    pub(super) fn replay(&mut self, token: u32) -> (Vec<Utf8Bytes>, usize) {
        let Some(w) = self.map.get(&token) else {
            return (Vec::new(), 0);
        };
        let all: Vec<(Bar, RunId)> = w
            .restored
            .iter()
            .copied()
            .chain(w.live.iter().map(|b| (*b, self.run)))
            .collect();
        let from_redis = w.restored.len();
        let out = all
            .iter()
            .filter_map(|(b, run)| self.encode_as(b, *run))
            .collect();
        (out, from_redis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(token: u32, minute: u64) -> Bar {
        Bar {
            token,
            price_divisor: 100,
            start_ns: minute * 60_000_000_000,
            end_ns: (minute + 1) * 60_000_000_000,
            open: 100,
            high: 100,
            low: 100,
            close: 100,
            volume: minute,
            ticks: 1,
        }
    }

    #[test]
    fn keeps_the_last_n_and_at_most_max_instruments() {
        let mut w = Windows::new(3, 2, RunId(1));
        for m in 0..5 {
            assert!(w.push(bar(1, m)));
        }
        assert!(w.push(bar(2, 0)));
        assert!(!w.push(bar(3, 0)), "third instrument is over the limit");
        assert_eq!(w.len(), 2);
        let (r, from_redis) = w.replay(1);
        assert_eq!(from_redis, 0);
        let vols: Vec<bool> = ["\"volume\":2,", "\"volume\":3,", "\"volume\":4,"]
            .iter()
            .zip(&r)
            .map(|(v, t)| t.as_str().contains(v))
            .collect();
        assert_eq!(vols, [true; 3], "{r:?}");
    }

    #[test]
    fn restored_records_are_older_and_evicted_first() {
        let mut w = Windows::new(3, 10, RunId(1));
        assert!(w.needs_lookup(7));
        let old = RunId(0xabc);
        let recs: Vec<(Bar, RunId)> = (0..4).map(|m| (bar(7, m), old)).collect();
        assert!(w.restore(7, recs));
        assert!(!w.needs_lookup(7));
        let (r, from_redis) = w.replay(7);
        assert_eq!((r.len(), from_redis), (3, 3));
        assert!(r[0].as_str().contains("\"run\":\"0000000000000abc\""));
        assert!(r[0].as_str().contains("\"volume\":1,"));
        w.push(bar(7, 9));
        let (r, from_redis) = w.replay(7);
        assert_eq!((r.len(), from_redis), (3, 2));
        assert!(r[0].as_str().contains("\"volume\":2,"));
        assert!(r[2].as_str().contains("\"volume\":9,"));
        assert!(r[2].as_str().contains("\"run\":\"0000000000000001\""));
        // An empty answer is remembered: Redis is not asked again.
        assert!(w.restore(8, Vec::new()));
        assert!(!w.needs_lookup(8));
    }
}
