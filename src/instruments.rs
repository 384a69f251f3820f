//! Instrument lists: Kite's instrument-dump CSV, or the short form
//! `instrument_token,tradingsymbol,name,exchange[,mode][,tier]`.
//!
//! Cold path (start-up, `mock-exchange`). Columns are found by header name, so
//! both formats (and column orders) are accepted; only `instrument_token` is
//! required. Every bad row is reported at once, with its line number.

use std::fmt;
use std::path::Path;

use crate::tick::Mode;
use crate::tier::Tier;

/// One instrument to subscribe (or to simulate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instrument {
    /// Instrument token.
    pub token: u32,
    /// Trading symbol, e.g. `INFY` (may be empty).
    pub tradingsymbol: String,
    /// Name (may be empty).
    pub name: String,
    /// Exchange, e.g. `NSE` (may be empty).
    pub exchange: String,
    /// Expiry as days since 1970-01-01, for derivatives (dump format only).
    pub expiry_day: Option<u32>,
    /// Per-instrument subscription mode (short form's optional `mode` column).
    pub mode: Option<Mode>,
    /// Tier (optional `tier` column: `T0`/`T1`/`T2` or `0`/`1`/`2`); it
    /// wins over the `[tiers]` rules (README, "Tiers").
    pub tier: Option<Tier>,
}

/// Why an instrument file was rejected. Lists every problem found.
#[derive(Debug, thiserror::Error)]
pub enum InstrumentsError {
    /// The file could not be read.
    #[error("cannot read instruments file {path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        err: std::io::Error,
    },
    /// The file was read but has bad rows or no usable header.
    #[error("{}", Problems(.0))]
    Invalid(Vec<String>),
}

struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the instruments file:", self.0.len())?;
        for p in self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// At most this many row errors are listed; the count says how many there were.
const MAX_LISTED: usize = 20;

/// Parses a `YYYY-MM-DD` date into days since 1970-01-01.
#[must_use]
pub fn parse_date(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    // Digits only: `u32::from_str` would also take a sign (`2024-+1-+5`; found by
    // fuzz/fuzz_targets/instruments_csv.rs).
    let digit_or_dash = |(i, c): (usize, &u8)| {
        if i == 4 || i == 7 {
            *c == b'-'
        } else {
            c.is_ascii_digit()
        }
    };
    if b.len() != 10 || !b.iter().enumerate().all(digit_or_dash) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1970..=2105).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > 31 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// The physical line where the record at `pos` starts. The csv reader puts
/// a record's position just after the previous record, before any blank
/// lines it skipped; those are counted here.
fn start_line(text: &str, pos: &csv::Position) -> u64 {
    let from = usize::try_from(pos.byte()).unwrap_or(usize::MAX);
    let skipped = text
        .get(from..)
        .unwrap_or("")
        .bytes()
        .take_while(|b| matches!(b, b'\n' | b'\r'))
        .filter(|b| *b == b'\n')
        .count();
    pos.line() + skipped as u64
}

/// Loads and validates an instruments CSV.
///
/// # Errors
/// [`InstrumentsError::Io`] if the file cannot be read; [`InstrumentsError::Invalid`]
/// listing every bad row (bad or duplicate token, bad mode or expiry) and
/// header problems.
pub fn load(path: &Path) -> Result<Vec<Instrument>, InstrumentsError> {
    let text = std::fs::read_to_string(path).map_err(|err| InstrumentsError::Io {
        path: path.display().to_string(),
        err,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses instruments CSV text; `source` names it in error messages.
///
/// # Errors
/// See [`load`].
pub fn parse(text: &str, source: &str) -> Result<Vec<Instrument>, InstrumentsError> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(InstrumentsError::Invalid(vec![format!(
                "{source}: cannot read the header: {e}"
            )]));
        }
    };
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(tok_col) = col("instrument_token") else {
        return Err(InstrumentsError::Invalid(vec![format!(
            "{source}: no `instrument_token` column in the header {:?}; expected Kite's instrument dump \
             or `instrument_token,tradingsymbol,name,exchange[,mode]`",
            headers.iter().collect::<Vec<_>>()
        )]));
    };
    let (sym_col, name_col, exch_col, exp_col, mode_col) = (
        col("tradingsymbol"),
        col("name"),
        col("exchange"),
        col("expiry"),
        col("mode"),
    );
    let tier_col = col("tier");
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let mut total_problems = 0usize;
    let mut problem = |msg: String| {
        total_problems += 1;
        if problems.len() < MAX_LISTED {
            problems.push(msg);
        }
    };
    for rec in rdr.records() {
        // The physical line where the record starts: blank lines and quoted
        // fields spanning lines make it differ from the record's index.
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let at = e
                    .position()
                    .map_or_else(String::new, |p| format!(":{}", start_line(text, p)));
                problem(format!("{source}{at}: unreadable row: {e}"));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| start_line(text, p));
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let field = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").to_owned();
        let raw_token = rec.get(tok_col).unwrap_or("");
        let token = match raw_token.parse::<u32>() {
            Ok(t) if t > 0 => t,
            _ => {
                problem(format!(
                    "{source}:{line}: instrument_token {raw_token:?} is not a positive 32-bit integer"
                ));
                continue;
            }
        };
        if let Some(prev) = seen.insert(token, line) {
            problem(format!(
                "{source}:{line}: instrument_token {token} repeats line {prev}"
            ));
            continue;
        }
        let mode = match field(mode_col).to_ascii_lowercase().as_str() {
            "" => None,
            "ltp" => Some(Mode::Ltp),
            "quote" => Some(Mode::Quote),
            "full" => Some(Mode::Full),
            other => {
                problem(format!(
                    "{source}:{line}: mode {other:?} is not one of ltp, quote, full"
                ));
                continue;
            }
        };
        let raw_tier = field(tier_col);
        let tier = if raw_tier.is_empty() {
            None
        } else if let Some(t) = Tier::parse(&raw_tier) {
            Some(t)
        } else {
            problem(format!(
                "{source}:{line}: tier {raw_tier:?} is not one of T0, T1, T2 (or 0, 1, 2)"
            ));
            continue;
        };
        let expiry = field(exp_col);
        let expiry_day = if expiry.is_empty() {
            None
        } else if let Some(d) = parse_date(&expiry) {
            Some(d)
        } else {
            problem(format!(
                "{source}:{line}: expiry {expiry:?} is not a YYYY-MM-DD date"
            ));
            continue;
        };
        out.push(Instrument {
            token,
            tradingsymbol: field(sym_col),
            name: field(name_col),
            exchange: field(exch_col),
            expiry_day,
            mode,
            tier,
        });
    }
    if total_problems > MAX_LISTED {
        problems.push(format!("… and {} more", total_problems - MAX_LISTED));
    }
    if out.is_empty() && problems.is_empty() {
        problems.push(format!("{source}: no instruments (only a header)"));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(InstrumentsError::Invalid(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kite_dump_format() {
        let csv = "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n\
                   408065,1594,INFY,\"INFOSYS, LTD\",0,,0,0.05,1,EQ,NSE,NSE\n\
                   12345602,48225,NIFTY26DECFUT,NIFTY,0,2026-12-31,0,0.05,75,FUT,NFO-FUT,NFO\n";
        let v = parse(csv, "dump.csv").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "INFOSYS, LTD");
        assert_eq!(v[1].expiry_day, parse_date("2026-12-31"));
        assert_eq!(v[1].exchange, "NFO");
    }

    #[test]
    fn short_form_with_modes() {
        let v = parse("instrument_token,tradingsymbol,name,exchange,mode\n1,A,a,NSE,ltp\n2,B,b,NSE,\n3,C,c,NSE,FULL\n", "s")
            .unwrap();
        assert_eq!(
            v.iter().map(|i| i.mode).collect::<Vec<_>>(),
            [Some(Mode::Ltp), None, Some(Mode::Full)]
        );
    }

    #[test]
    fn tier_column_takes_both_spellings_and_names_bad_ones() {
        let v = parse(
            "instrument_token,exchange,tier\n1,NSE,T0\n2,NSE,\n3,NSE,2\n",
            "s",
        )
        .unwrap();
        assert_eq!(
            v.iter().map(|i| i.tier).collect::<Vec<_>>(),
            [Some(Tier::T0), None, Some(Tier::T2)]
        );
        let e = parse("instrument_token,tier\n1,T9\n", "t.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv:2: tier \"T9\""), "{e}");
    }

    #[test]
    fn every_problem_is_listed_with_its_line() {
        let err = parse(
            "instrument_token,tradingsymbol,name,exchange,mode\nabc,A,a,NSE\n1,B,b,NSE,turbo\n2,C,c,NSE\n2,D,d,NSE\n-5,E,e,NSE\n",
            "bad.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("4 problem(s)"), "{err}");
        assert!(err.contains("bad.csv:2: instrument_token \"abc\""), "{err}");
        assert!(err.contains("bad.csv:3: mode \"turbo\""), "{err}");
        assert!(
            err.contains("bad.csv:5: instrument_token 2 repeats line 4"),
            "{err}"
        );
        assert!(err.contains("bad.csv:6:"), "{err}");
    }

    #[test]
    fn lines_are_physical_after_blank_lines() {
        let lf = "instrument_token,tradingsymbol\n\n1,A\n\n\nabc,B\n\n2,C\n2,D\n";
        for text in [lf.to_owned(), lf.replace('\n', "\r\n")] {
            let err = parse(&text, "blank.csv").unwrap_err().to_string();
            assert!(
                err.contains("blank.csv:6: instrument_token \"abc\""),
                "{err}"
            );
            assert!(
                err.contains("blank.csv:9: instrument_token 2 repeats line 8"),
                "{err}"
            );
        }
    }

    #[test]
    fn lines_are_physical_after_multi_line_quoted_fields() {
        let err = parse(
            "instrument_token,tradingsymbol,name\n1,A,\"two\nlines\"\n2,B,\"three\n\nlines\"\nxyz,C,c\n3,\"D\nE\",d\n3,F,f\n",
            "quoted.csv",
        )
        .unwrap_err()
        .to_string();
        // Record 4 starts on line 7; the repeat of 3 (line 8, spanning to 9) on line 10.
        assert!(
            err.contains("quoted.csv:7: instrument_token \"xyz\""),
            "{err}"
        );
        assert!(
            err.contains("quoted.csv:10: instrument_token 3 repeats line 8"),
            "{err}"
        );
        // A bad record that itself spans lines is cited where it starts.
        let err = parse(
            "instrument_token,name,mode\n1,\"a\nb\",ltp\n2,\"c\nd\",turbo\n",
            "q.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("q.csv:4: mode \"turbo\""), "{err}");
    }

    #[test]
    fn header_problems() {
        assert!(
            parse("token,name\n1,a\n", "x")
                .unwrap_err()
                .to_string()
                .contains("no `instrument_token` column")
        );
        assert!(
            parse("instrument_token\n", "x")
                .unwrap_err()
                .to_string()
                .contains("no instruments")
        );
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2021-07-05"), Some(18_813));
        assert_eq!(parse_date("2021-7-5"), None);
        assert_eq!(parse_date("2021-13-01"), None);
    }
}
