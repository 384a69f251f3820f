//! The holiday file: per year, per holiday list (NSE, BSE, MCX), the
//! closed dates and the special sessions (README, "Calendar"). Parsed and
//! validated once, when the calendar is built (main thread, or the ops side
//! when the window moves); nothing per tick reads it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Exchange;
use super::dates::{civil, format_date, is_weekend, parse_date, parse_hhmm};

/// Most special sessions on one date of one list.
pub const MAX_SPECIAL: usize = 3;

/// A holiday list: the exchanges it governs are [`Exchange::list`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum List {
    /// NSE: cash, F&O, currency (CDS), commodity (NCO), and MCX-SX.
    Nse,
    /// BSE: cash, F&O (BFO), currency (BCD).
    Bse,
    /// MCX.
    Mcx,
}

impl List {
    /// Every list, in file order.
    pub const ALL: [Self; 3] = [Self::Nse, Self::Bse, Self::Mcx];

    /// Upper-case name, as printed.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Nse => "NSE",
            Self::Bse => "BSE",
            Self::Mcx => "MCX",
        }
    }
}

/// One closed date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    /// Day number (days since 1970-01-01, an IST civil date).
    pub day: u32,
    /// What the exchange calls it.
    pub name: String,
    /// The exchanges it closes (all of the list when the file names none).
    pub exchanges: Vec<Exchange>,
}

/// A special session: on its date the day's sessions of its exchanges are
/// exactly the special sessions listed for that date (e.g. Muhurat trading
/// on Diwali, or only MCX's evening on a partial holiday).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Special {
    /// Day number.
    pub day: u32,
    /// Opens, minutes after midnight IST.
    pub open_min: u32,
    /// Closes (exclusive), minutes after midnight IST.
    pub close_min: u32,
    /// E.g. "Muhurat trading".
    pub name: String,
    /// The exchanges it applies to (all of the list when none are named).
    pub exchanges: Vec<Exchange>,
}

/// One list of one year.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListDays {
    /// Closed dates, sorted.
    pub holidays: Vec<Holiday>,
    /// Special sessions, sorted by date and opening time.
    pub specials: Vec<Special>,
}

/// One parsed, validated holiday file (one year).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolidayFile {
    /// The year every date is in.
    pub year: u32,
    /// Where the dates come from (the header's `source`).
    pub source: String,
    /// `false`: the lists are known to be partial (README, "Calendar").
    pub complete: bool,
    /// The lists the file has; a list it lacks is "missing" for the year.
    pub lists: BTreeMap<List, ListDays>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    year: u32,
    source: String,
    #[serde(default)]
    complete: bool,
    nse: Option<RawList>,
    bse: Option<RawList>,
    mcx: Option<RawList>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    #[serde(default)]
    holidays: Vec<RawHoliday>,
    #[serde(default)]
    sessions: Vec<RawSession>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    date: String,
    name: String,
    #[serde(default)]
    exchanges: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    date: String,
    open: String,
    close: String,
    name: String,
    #[serde(default)]
    exchanges: Vec<String>,
}

impl HolidayFile {
    /// Parses and validates one file; `origin` names it in errors.
    ///
    /// # Errors
    /// Not TOML of this shape, or every rule it breaks (one line each): a
    /// date outside `year` or not a date, a holiday on a Saturday or
    /// Sunday, dates not sorted or repeated, a time that is not `HH:MM`, a
    /// session that does not open before it closes or overlaps another, an
    /// exchange not of the list.
    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| format!("{origin}: not a holiday file: {e}"))?;
        let mut p = Vec::new();
        if !(1970..=9999).contains(&raw.year) {
            p.push(format!("year = {} is not a year (1970..9999)", raw.year));
        }
        if raw.source.trim().is_empty() {
            p.push("source is empty: say where the dates come from".to_owned());
        }
        let mut lists = BTreeMap::new();
        for (list, l) in [
            (List::Nse, raw.nse),
            (List::Bse, raw.bse),
            (List::Mcx, raw.mcx),
        ] {
            if let Some(l) = l {
                lists.insert(list, list_days(raw.year, list, l, &mut p));
            }
        }
        if p.is_empty() {
            Ok(Self {
                year: raw.year,
                source: raw.source,
                complete: raw.complete,
                lists,
            })
        } else {
            Err(format!("{origin}:\n  {}", p.join("\n  ")))
        }
    }
}

fn list_days(year: u32, list: List, l: RawList, p: &mut Vec<String>) -> ListDays {
    let tag = list.label().to_ascii_lowercase();
    let date = |what: &str, s: &str, p: &mut Vec<String>| match parse_date(s) {
        Ok(d) if civil(d).0 == year => Some(d),
        Ok(_) => {
            p.push(format!("{tag}.{what} {s}: not in {year}"));
            None
        }
        Err(e) => {
            p.push(format!("{tag}.{what}: {e}"));
            None
        }
    };
    let exchanges = |what: &str, names: &[String], p: &mut Vec<String>| {
        let mut v = Vec::new();
        for n in names {
            match Exchange::parse(n) {
                Some(e) if e.list() == list => v.push(e),
                _ => p.push(format!(
                    "{tag}.{what}: exchange {n:?} is not one of the {} list's ({})",
                    list.label(),
                    Exchange::ALL
                        .iter()
                        .filter(|e| e.list() == list)
                        .map(|e| e.label())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        v
    };
    let mut out = ListDays::default();
    for h in l.holidays {
        let Some(day) = date("holidays", &h.date, p) else {
            continue;
        };
        if is_weekend(day) {
            p.push(format!(
                "{tag}.holidays {}: a Saturday or Sunday is closed anyway",
                h.date
            ));
        }
        if let Some(prev) = out.holidays.last()
            && prev.day >= day
        {
            p.push(format!(
                "{tag}.holidays {}: not after {} (keep them sorted, each once)",
                h.date,
                format_date(prev.day)
            ));
        }
        let exchanges = exchanges("holidays", &h.exchanges, p);
        out.holidays.push(Holiday {
            day,
            name: h.name,
            exchanges,
        });
    }
    for s in l.sessions {
        let Some(day) = date("sessions", &s.date, p) else {
            continue;
        };
        let (open, close) = match (parse_hhmm(&s.open), parse_hhmm(&s.close)) {
            (Ok(o), Ok(c)) => (o, c),
            (Err(e), _) | (_, Err(e)) => {
                p.push(format!("{tag}.sessions {}: {e}", s.date));
                continue;
            }
        };
        if open >= close {
            p.push(format!(
                "{tag}.sessions {}: opens at {} but closes at {}",
                s.date, s.open, s.close
            ));
        }
        if let Some(prev) = out.specials.last()
            && (prev.day, prev.open_min) >= (day, open)
        {
            p.push(format!(
                "{tag}.sessions {} {}: not after the previous one (sort by date, then open)",
                s.date, s.open
            ));
        } else if let Some(prev) = out.specials.last()
            && prev.day == day
            && prev.close_min > open
        {
            p.push(format!(
                "{tag}.sessions {} {}: overlaps the session before it",
                s.date, s.open
            ));
        }
        if out.specials.iter().filter(|x| x.day == day).count() >= MAX_SPECIAL {
            p.push(format!(
                "{tag}.sessions {}: more than {MAX_SPECIAL} sessions on one date",
                s.date
            ));
        }
        let exchanges = exchanges("sessions", &s.exchanges, p);
        out.specials.push(Special {
            day,
            open_min: open,
            close_min: close,
            name: s.name,
            exchanges,
        });
    }
    out
}

/// The holiday file shipped in the binary (`data/calendar/`).
pub const EMBEDDED: &[(&str, &str)] = &[(
    "data/calendar/2026.toml",
    include_str!("../../data/calendar/2026.toml"),
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_files_are_valid() {
        // Structure only: every date in the file's year, no holiday on a
        // weekend, sorted, no duplicates, times valid. Whether a date is
        // right is the exchange circular's to say (README, "Calendar").
        for (name, text) in EMBEDDED {
            let f = HolidayFile::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                name.contains(&f.year.to_string()),
                "{name} holds {}",
                f.year
            );
            for list in List::ALL {
                let l = &f.lists[&list];
                assert!(!l.holidays.is_empty(), "{name}: {list:?} is empty");
                assert!(l.holidays.windows(2).all(|w| w[0].day < w[1].day));
                assert!(l.holidays.iter().all(|h| !is_weekend(h.day)));
                assert!(l.holidays.iter().all(|h| civil(h.day).0 == f.year));
                assert!(l.specials.iter().all(|s| s.open_min < s.close_min));
            }
        }
    }

    #[test]
    fn every_broken_rule_is_named() {
        let text = r#"
year = 2026
source = "test"
[nse]
holidays = [
  { date = "2026-03-04", name = "b" },
  { date = "2026-03-04", name = "dup" },
  { date = "2026-03-07", name = "saturday" },
  { date = "2027-01-01", name = "next year" },
  { date = "2026-13-01", name = "no month" },
  { date = "2026-03-09", name = "x", exchanges = ["MCX"] },
]
sessions = [
  { date = "2026-11-08", open = "18:15", close = "18:00", name = "backwards" },
  { date = "2026-11-09", open = "25:00", close = "26:00", name = "bad time" },
]
"#;
        let e = HolidayFile::parse(text, "t.toml").unwrap_err();
        for want in [
            "t.toml",
            "2026-03-04: not after 2026-03-04",
            "2026-03-07: a Saturday or Sunday",
            "2027-01-01: not in 2026",
            "\"2026-13-01\" is not a date",
            "exchange \"MCX\" is not one of the NSE list's",
            "opens at 18:15 but closes at 18:00",
            "\"25:00\" is not a time",
        ] {
            assert!(e.contains(want), "{want:?} missing from {e}");
        }
        assert!(
            HolidayFile::parse("year = 2026\n", "t")
                .unwrap_err()
                .contains("source")
        );
        assert!(
            HolidayFile::parse("year = 2026\nsource = \"s\"\n[nyse]\n", "t")
                .unwrap_err()
                .contains("nyse")
        );
    }

    #[test]
    fn overlapping_sessions_are_refused() {
        let text = r#"
year = 2026
source = "test"
[mcx]
sessions = [
  { date = "2026-11-08", open = "18:00", close = "19:00", name = "a" },
  { date = "2026-11-08", open = "18:30", close = "19:30", name = "b" },
]
"#;
        let e = HolidayFile::parse(text, "t").unwrap_err();
        assert!(e.contains("overlaps"), "{e}");
    }
}
