//! The instruments CSV loader (`instruments::parse`, what `instruments::load`
//! runs on a file's text) on arbitrary bytes, and `instruments::parse_date`.
//!
//! Checks, besides "never panics":
//! - non-UTF-8 is refused before parsing (as `load` does: `read_to_string`);
//! - an accepted list is non-empty, with unique positive tokens; written back
//!   as a short-form CSV it parses to the same list;
//! - a rejection lists at most 20 problems plus an "… and N more" line;
//! - `parse_date` accepts exactly `YYYY-MM-DD` with year 1970–2105, month
//!   1–12, day 1–31, and gives the day count of that date (a day past the
//!   month's end runs on into the next month).
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use panda_feed::Mode;
use panda_feed::instruments::{Instrument, InstrumentsError, parse, parse_date};

fn is_leap(y: u32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days from 1970-01-01 to `y-m-01`, by counting (independent of the loader's formula).
fn days_to_month(y: u32, m: u32) -> u32 {
    let mut days = (1970..y).map(|y| if is_leap(y) { 366 } else { 365 }).sum();
    for mm in 1..m {
        days += match mm {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
    }
    days
}

fn date_of(days: u32) -> String {
    let mut y = 1970;
    while days_to_month(y + 1, 1) <= days {
        y += 1;
    }
    let mut m = 1;
    while m < 12 && days_to_month(y, m + 1) <= days {
        m += 1;
    }
    format!("{y:04}-{m:02}-{:02}", days - days_to_month(y, m) + 1)
}

fn check_date(s: &str) {
    let got = parse_date(s);
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let want = if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
    {
        let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap();
        let (y, m, d) = (n(0..4), n(5..7), n(8..10));
        ((1970..=2105).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d))
            .then(|| days_to_month(y, m) + d - 1)
    } else {
        None
    };
    assert_eq!(got, want, "parse_date({s:?})");
    if let Some(d) = got {
        // Whatever was accepted names a real day that parses back to itself.
        assert_eq!(parse_date(&date_of(d)), Some(d), "{s:?} -> {d}");
    }
}

fn mode_name(m: Option<Mode>) -> &'static str {
    match m {
        None => "",
        Some(Mode::Ltp) => "ltp",
        Some(Mode::Quote) => "quote",
        Some(Mode::Full) => "full",
    }
}

/// One RFC 4180 row, every field quoted: written here rather than with the
/// loader's own CSV library, so the round trip does not test it against itself.
fn write_row(out: &mut String, fields: &[&str]) {
    for (n, f) in fields.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    }
    out.push('\n');
}

fn round_trip(list: &[Instrument]) {
    let mut text = String::new();
    write_row(
        &mut text,
        &[
            "instrument_token",
            "tradingsymbol",
            "name",
            "exchange",
            "expiry",
            "mode",
        ],
    );
    for i in list {
        let token = i.token.to_string();
        let expiry = i.expiry_day.map(date_of).unwrap_or_default();
        write_row(
            &mut text,
            &[
                &token,
                &i.tradingsymbol,
                &i.name,
                &i.exchange,
                &expiry,
                mode_name(i.mode),
            ],
        );
    }
    match parse(&text, "round-trip") {
        Ok(again) => assert_eq!(again, list, "round trip of\n{text}"),
        Err(e) => panic!("the written-back list is refused: {e}\n{text}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every line's first field, and every field, as a date.
    for field in text.split([',', '\n']) {
        check_date(field.trim());
    }
    match parse(text, "fuzz.csv") {
        Ok(list) => {
            assert!(!list.is_empty());
            let mut seen = HashSet::new();
            for i in &list {
                assert!(i.token > 0);
                assert!(seen.insert(i.token), "token {} twice", i.token);
            }
            round_trip(&list);
        }
        Err(InstrumentsError::Invalid(problems)) => {
            assert!(!problems.is_empty());
            assert!(problems.len() <= 21, "{} problems listed", problems.len());
            if problems.len() == 21 {
                assert!(problems[20].starts_with("… and "), "{}", problems[20]);
            }
            let msg = InstrumentsError::Invalid(problems).to_string();
            assert!(msg.contains("problem(s) in the instruments file"), "{msg}");
        }
        Err(e @ InstrumentsError::Io { .. }) => panic!("parse reported I/O: {e}"),
    }
});
