//! The exchange calendar (README, "Calendar"): each exchange's sessions in
//! IST (UTC+05:30, no daylight time), weekends, holidays and special
//! sessions from a holiday file ([`holidays`]), and MCX's closing time
//! that follows US daylight time ([`dates::us_daylight_time`]).
//!
//! Contract: the holiday files are parsed once into [`Holidays`]; a
//! [`Calendar`] preloads a window of days (default 14 back, 7 forward) as
//! UTC-nanosecond intervals per exchange, built on the main thread or the
//! ops side. Nothing per tick reads a file or allocates: a [`Cursor`]
//! remembers the interval it last answered for (the current session, or
//! the gap to the next one, and the current minute), so a per-tick caller
//! compares two integers and consults the window only when it leaves that
//! interval. A year without a holiday list is a warning
//! ([`Calendar::missing`]) and weekends-only behaviour, never a panic.

pub mod dates;
pub mod holidays;

use std::collections::BTreeMap;

use serde::Serialize;

use dates::{civil, is_weekend, us_daylight_time};
pub use holidays::{EMBEDDED, HolidayFile, List};

/// IST is UTC+05:30 all year, ns.
pub const IST_OFFSET_NS: u64 = 19_800 * 1_000_000_000;
/// One day, ns.
pub const DAY_NS: u64 = 86_400 * 1_000_000_000;
/// One minute, ns.
pub const MINUTE_NS: u64 = 60 * 1_000_000_000;
/// Most sessions an exchange has on one day.
pub const MAX_SESSIONS: usize = 3;

/// A market whose sessions the calendar knows, one per Kite segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Exchange {
    /// NSE cash (segment 1; NSE indices, segment 9).
    Nse,
    /// NSE futures and options (2).
    Nfo,
    /// NSE currency derivatives (3).
    Cds,
    /// BSE cash (4; BSE indices).
    Bse,
    /// BSE futures and options (5).
    Bfo,
    /// BSE currency derivatives (6).
    Bcd,
    /// MCX commodities (7).
    Mcx,
    /// MCX-SX (MSEI) currency (8).
    Mcxsx,
    /// NSE commodities (12).
    Nco,
}

impl Exchange {
    /// Every exchange, in segment order.
    pub const ALL: [Self; 9] = [
        Self::Nse,
        Self::Nfo,
        Self::Cds,
        Self::Bse,
        Self::Bfo,
        Self::Bcd,
        Self::Mcx,
        Self::Mcxsx,
        Self::Nco,
    ];

    /// Kite's name of the exchange (the CSV's `exchange` column).
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Nse => "NSE",
            Self::Nfo => "NFO",
            Self::Cds => "CDS",
            Self::Bse => "BSE",
            Self::Bfo => "BFO",
            Self::Bcd => "BCD",
            Self::Mcx => "MCX",
            Self::Mcxsx => "MCXSX",
            Self::Nco => "NCO",
        }
    }

    /// Index into [`ALL`](Self::ALL).
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The exchange of a Kite name, case-insensitive (`NSE`, `nfo`,
    /// `MCX-SX`, `BSECDS` …).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_uppercase().replace('-', "");
        match s.as_str() {
            "BSECDS" => Some(Self::Bcd),
            _ => Self::ALL.into_iter().find(|e| e.label() == s),
        }
    }

    /// The exchange of a Kite segment code (`token & 0xFF`,
    /// docs/KITE_PROTOCOL.md §4.3). Indices (9) trade on NSE hours (BSE's
    /// are the same; [`of_instrument`](Self::of_instrument) tells them
    /// apart by the CSV). Codes no client maps (10, 11, 13+) are `None`.
    #[must_use]
    pub const fn of_segment(segment: u8) -> Option<Self> {
        Some(match segment {
            1 | 9 => Self::Nse,
            2 => Self::Nfo,
            3 => Self::Cds,
            4 => Self::Bse,
            5 => Self::Bfo,
            6 => Self::Bcd,
            7 => Self::Mcx,
            8 => Self::Mcxsx,
            12 => Self::Nco,
            _ => return None,
        })
    }

    /// The exchange of an instrument: its token's segment, except that an
    /// index (segment 9) takes the CSV's `exchange` column when that names
    /// an exchange (`BSE` for SENSEX; `INDICES` or none → NSE).
    #[must_use]
    pub fn of_instrument(token: u32, csv_exchange: Option<&str>) -> Option<Self> {
        let seg = (token & 0xFF) as u8;
        if seg == crate::tick::SEGMENT_INDICES
            && let Some(e) = csv_exchange.and_then(Self::parse)
        {
            return Some(e);
        }
        Self::of_segment(seg)
    }

    /// The holiday list that governs it.
    #[must_use]
    pub const fn list(self) -> List {
        match self {
            Self::Nse | Self::Nfo | Self::Cds | Self::Nco | Self::Mcxsx => List::Nse,
            Self::Bse | Self::Bfo | Self::Bcd => List::Bse,
            Self::Mcx => List::Mcx,
        }
    }

    /// The regular sessions of a trading day, minutes after midnight IST:
    /// cash 09:00–09:08 pre-open and 09:15–15:30; F&O 09:15–15:30;
    /// currency 09:00–17:00; commodities 09:00–23:30, or 23:55 while the US
    /// is on daylight time.
    fn regular(self, day: u32) -> &'static [(SessionKind, u32, u32)] {
        use SessionKind::{Normal, PreOpen};
        match self {
            Self::Nse | Self::Bse => &[(PreOpen, 540, 548), (Normal, 555, 930)],
            Self::Nfo | Self::Bfo => &[(Normal, 555, 930)],
            Self::Cds | Self::Bcd | Self::Mcxsx => &[(Normal, 540, 1020)],
            Self::Mcx | Self::Nco if us_daylight_time(day) => &[(Normal, 540, 1435)],
            Self::Mcx | Self::Nco => &[(Normal, 540, 1410)],
        }
    }
}

/// What a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// Call-auction order entry (cash markets, 09:00–09:08).
    PreOpen,
    /// Continuous trading.
    Normal,
    /// A session from the holiday file (e.g. Muhurat trading).
    Special,
}

impl SessionKind {
    /// As printed.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::PreOpen => "pre-open",
            Self::Normal => "normal",
            Self::Special => "special",
        }
    }
}

/// One session: open from `open_ns` up to, not including, `close_ns`
/// (15:30:00.000 IST is already closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Kind.
    pub kind: SessionKind,
    /// Opens, ns since the Unix epoch (UTC).
    pub open_ns: u64,
    /// Closes (exclusive), ns since the Unix epoch.
    pub close_ns: u64,
}

/// Why a day has no regular sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Saturday or Sunday.
    Weekend,
    /// A holiday of the file, with its name.
    Holiday(String),
}

/// One exchange's day, for display and for building the window (cold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// Sessions in order, with the special sessions' names.
    pub sessions: Vec<(Session, Option<String>)>,
    /// Why the regular sessions do not apply (a special session may still
    /// open the day, e.g. Muhurat trading on Diwali).
    pub closed: Option<Closed>,
    /// No holiday list of this year for the exchange: weekends only.
    pub missing_list: bool,
}

/// The parsed holiday files, by year (the embedded one and an override).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holidays {
    years: BTreeMap<u32, HolidayFile>,
}

impl Holidays {
    /// The files shipped in the binary ([`EMBEDDED`]), then `file` (the
    /// `calendar.file` setting, if any), which replaces a shipped year.
    ///
    /// # Errors
    /// The override cannot be read, or a file is not a valid holiday file
    /// (every problem named).
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, String> {
        let mut h = Self::default();
        for (name, text) in EMBEDDED {
            h.add(HolidayFile::parse(text, name)?);
        }
        if let Some(p) = file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("calendar.file {}: {e}", p.display()))?;
            h.add(HolidayFile::parse(&text, &p.display().to_string())?);
        }
        Ok(h)
    }

    /// Adds a year (replacing one of the same year).
    pub fn add(&mut self, f: HolidayFile) {
        self.years.insert(f.year, f);
    }

    /// The years with a file.
    #[must_use]
    pub fn years(&self) -> Vec<u32> {
        self.years.keys().copied().collect()
    }

    /// The file of a year.
    #[must_use]
    pub fn file(&self, year: u32) -> Option<&HolidayFile> {
        self.years.get(&year)
    }

    /// `ex`'s sessions on the IST civil date `day` (days since 1970-01-01).
    /// Cold: allocates; [`Calendar`] calls it when it builds its window.
    #[must_use]
    pub fn day(&self, ex: Exchange, day: u32) -> Day {
        let base = u64::from(day) * DAY_NS;
        let at = |min: u32| (base + u64::from(min) * MINUTE_NS).saturating_sub(IST_OFFSET_NS);
        let list = self
            .years
            .get(&civil(day).0)
            .and_then(|f| f.lists.get(&ex.list()));
        let applies = |v: &[Exchange]| v.is_empty() || v.contains(&ex);
        let holiday = list.and_then(|l| {
            l.holidays
                .iter()
                .find(|h| h.day == day && applies(&h.exchanges))
        });
        let closed = if is_weekend(day) {
            Some(Closed::Weekend)
        } else {
            holiday.map(|h| Closed::Holiday(h.name.clone()))
        };
        let special: Vec<_> = list
            .map(|l| {
                l.specials
                    .iter()
                    .filter(|s| s.day == day && applies(&s.exchanges))
                    .map(|s| {
                        let session = Session {
                            kind: SessionKind::Special,
                            open_ns: at(s.open_min),
                            close_ns: at(s.close_min),
                        };
                        (session, Some(s.name.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sessions = if !special.is_empty() {
            special
        } else if closed.is_some() {
            Vec::new()
        } else {
            ex.regular(day)
                .iter()
                .map(|&(kind, o, c)| {
                    let s = Session {
                        kind,
                        open_ns: at(o),
                        close_ns: at(c),
                    };
                    (s, None)
                })
                .collect()
        };
        Day {
            sessions,
            closed,
            missing_list: list.is_none(),
        }
    }
}

/// The IST civil date (days since 1970-01-01) of an instant.
#[must_use]
pub const fn ist_day(ts_ns: u64) -> u32 {
    let d = ts_ns.saturating_add(IST_OFFSET_NS) / DAY_NS;
    if d > u32::MAX as u64 {
        u32::MAX
    } else {
        d as u32
    }
}

/// The start of the minute holding `ts_ns` (IST and UTC minutes coincide:
/// the offset is a whole number of minutes).
#[must_use]
pub const fn minute_start(ts_ns: u64) -> u64 {
    ts_ns - ts_ns % MINUTE_NS
}

/// One exchange's sessions of one day in the window (fixed size, `Copy`).
#[derive(Debug, Clone, Copy, Default)]
struct Slots {
    n: u8,
    s: [(u64, u64); MAX_SESSIONS],
}

/// What [`Calendar::state`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// In a session.
    pub open: bool,
    /// The state holds from here (ns since the epoch)…
    pub from_ns: u64,
    /// …up to, not including, here.
    pub until_ns: u64,
}

/// A preloaded window of days: per day, per exchange, the sessions as UTC
/// ns intervals. Immutable once built; the ops side builds the next one
/// ([`moved_to`](Self::moved_to)) when the day changes.
#[derive(Debug, Clone)]
pub struct Calendar {
    first_day: u32,
    days: Vec<[Slots; 9]>,
    days_back: u32,
    days_forward: u32,
    missing: Vec<(u32, List)>,
}

impl Calendar {
    /// The window around `now_ns`: `days_back` days before its IST date to
    /// `days_forward` after. Years of the window without a list are
    /// reported by [`missing`](Self::missing) (the caller warns once).
    #[must_use]
    pub fn new(h: &Holidays, now_ns: u64, days_back: u32, days_forward: u32) -> Self {
        let today = ist_day(now_ns);
        let first_day = today.saturating_sub(days_back);
        let last = today.saturating_add(days_forward);
        let mut missing = Vec::new();
        let days = (first_day..=last)
            .map(|day| {
                let mut row = [Slots::default(); 9];
                for ex in Exchange::ALL {
                    let d = h.day(ex, day);
                    let key = (civil(day).0, ex.list());
                    if d.missing_list && !missing.contains(&key) {
                        missing.push(key);
                    }
                    let slot = &mut row[ex.index()];
                    for (s, _) in d.sessions.iter().take(MAX_SESSIONS) {
                        slot.s[usize::from(slot.n)] = (s.open_ns, s.close_ns);
                        slot.n += 1;
                    }
                }
                row
            })
            .collect();
        missing.sort_unstable();
        Self {
            first_day,
            days,
            days_back,
            days_forward,
            missing,
        }
    }

    /// (year, list) pairs of the window that have no holiday list: those
    /// days follow the weekday rule only.
    #[must_use]
    pub fn missing(&self) -> &[(u32, List)] {
        &self.missing
    }

    /// The window's first and last IST dates (day numbers).
    #[must_use]
    pub fn days(&self) -> (u32, u32) {
        let n = u32::try_from(self.days.len()).unwrap_or(u32::MAX);
        (self.first_day, self.first_day + n.saturating_sub(1))
    }

    /// A window re-centred on `now_ns` when its IST date is no longer the
    /// one this window was built around, else `None`. Call it from the ops
    /// side (it allocates when it builds).
    #[must_use]
    pub fn moved_to(&self, h: &Holidays, now_ns: u64) -> Option<Self> {
        (ist_day(now_ns) != self.first_day + self.days_back)
            .then(|| Self::new(h, now_ns, self.days_back, self.days_forward))
    }

    /// Whether `ex` is in a session at `ts_ns`, and over which interval
    /// that holds; `None` outside the window. O(sessions of one day), no
    /// allocation.
    #[must_use]
    pub fn state(&self, ex: Exchange, ts_ns: u64) -> Option<State> {
        let day = ist_day(ts_ns);
        let row = self.days.get(day.checked_sub(self.first_day)? as usize)?;
        let slot = &row[ex.index()];
        let day_start = (u64::from(day) * DAY_NS).saturating_sub(IST_OFFSET_NS);
        let mut from_ns = day_start;
        for &(open, close) in &slot.s[..usize::from(slot.n)] {
            if ts_ns < open {
                return Some(State {
                    open: false,
                    from_ns,
                    until_ns: open,
                });
            }
            if ts_ns < close {
                return Some(State {
                    open: true,
                    from_ns: open,
                    until_ns: close,
                });
            }
            from_ns = close;
        }
        Some(State {
            open: false,
            from_ns,
            until_ns: day_start + DAY_NS,
        })
    }

    /// Whether `ex` is in a session at `ts_ns`; `None` outside the window.
    #[must_use]
    pub fn is_open(&self, ex: Exchange, ts_ns: u64) -> Option<bool> {
        self.state(ex, ts_ns).map(|s| s.open)
    }
}

/// A per-caller memo for one exchange: the interval of its last answer and
/// the current minute, so a per-tick caller does two compares and no
/// calendar lookup until the session (or the gap) ends.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    exchange: Exchange,
    state: State,
    minute: u64,
}

impl Cursor {
    /// A cursor that knows nothing yet.
    #[must_use]
    pub const fn new(exchange: Exchange) -> Self {
        Self {
            exchange,
            state: State {
                open: false,
                from_ns: 1,
                until_ns: 0,
            },
            minute: u64::MAX,
        }
    }

    /// Whether the exchange is in a session at `ts_ns` (`None` outside the
    /// calendar's window). O(1) while `ts_ns` stays in the remembered
    /// interval.
    #[inline]
    pub fn is_open(&mut self, cal: &Calendar, ts_ns: u64) -> Option<bool> {
        if ts_ns >= self.state.from_ns && ts_ns < self.state.until_ns {
            return Some(self.state.open);
        }
        self.state = cal.state(self.exchange, ts_ns)?;
        Some(self.state.open)
    }

    /// The start of the minute of `ts_ns` when the exchange is in a
    /// session then (the bar a tick belongs to), else `None`. Memoised: a
    /// tick in the same minute as the previous one is two compares.
    #[inline]
    pub fn minute_start(&mut self, cal: &Calendar, ts_ns: u64) -> Option<u64> {
        if ts_ns >= self.minute
            && ts_ns - self.minute < MINUTE_NS
            && ts_ns < self.state.until_ns
            && self.state.open
        {
            return Some(self.minute);
        }
        if self.is_open(cal, ts_ns)? {
            self.minute = minute_start(ts_ns);
            Some(self.minute)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
