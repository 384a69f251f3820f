//! `panda-feed calendar` (README, "Calendar"): sessions in IST and UTC,
//! weekend and holiday closures, MCX's two closing times, a special session
//! from --file, a year without a list (a warning, the weekday rule), and
//! exit codes 0/1/2.

mod util;

use std::process::Output;

use serde_json::Value;
use util::TempDir;
use util::cli::{output, panda_feed};

fn calendar(args: &[&str]) -> Output {
    output(panda_feed(["calendar"]).args(args))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let o = calendar(&a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

#[test]
fn a_weekday_prints_each_session_in_ist_and_utc() {
    let o = calendar(&["--date", "2026-11-25", "--exchange", "NSE"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("2026-11-25 Wednesday"), "{out}");
    assert!(
        out.contains("pre-open 09:00-09:08 IST  03:30-03:38 UTC"),
        "{out}"
    );
    assert!(
        out.contains("normal   09:15-15:30 IST  03:45-10:00 UTC"),
        "{out}"
    );
    // Without --exchange, every exchange.
    let all = stdout(&calendar(&["--date", "2026-11-25"]));
    for ex in [
        "NSE", "NFO", "CDS", "BSE", "BFO", "BCD", "MCX", "MCXSX", "NCO",
    ] {
        assert!(
            all.lines().any(|l| l.starts_with(ex)),
            "{ex} missing:\n{all}"
        );
    }
    assert!(all.contains("CDS    normal   09:00-17:00 IST"), "{all}");
}

#[test]
fn weekends_and_holidays_are_closed_with_the_reason() {
    let o = calendar(&["--date", "2026-11-28", "--exchange", "MCX"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("MCX    closed (weekend)"),
        "{}",
        stdout(&o)
    );
    let o = calendar(&["--date", "2026-01-26", "--exchange", "nfo"]);
    assert!(
        stdout(&o).contains("NFO    closed (holiday: Republic Day)"),
        "{}",
        stdout(&o)
    );
    let v = json(&["--date", "2026-12-25", "--exchange", "BSE"]);
    let e = &v["exchanges"][0];
    assert_eq!(e["closed"], "holiday");
    assert_eq!(e["holiday"], "Christmas");
    assert_eq!(e["holiday_list"], "partial");
    assert_eq!(e["sessions"], Value::Array(vec![]));
    // The shipped lists say they are partial.
    assert!(stderr(&o).contains("partial"), "{}", stderr(&o));
}

#[test]
fn mcx_closes_at_2330_or_2355_by_us_daylight_time() {
    for (date, close_ist, close_utc) in [
        ("2026-03-06", "23:30", "2026-03-06T18:00:00.000Z"),
        ("2026-03-09", "23:55", "2026-03-09T18:25:00.000Z"),
        ("2026-10-30", "23:55", "2026-10-30T18:25:00.000Z"),
        ("2026-11-02", "23:30", "2026-11-02T18:00:00.000Z"),
    ] {
        let v = json(&["--date", date, "--exchange", "MCX"]);
        let s = &v["exchanges"][0]["sessions"][0];
        assert_eq!(s["close_ist"], close_ist, "{date}: {v}");
        assert_eq!(s["close_utc"], close_utc, "{date}: {v}");
        assert_eq!(s["open_ist"], "09:00");
    }
}

#[test]
fn a_special_session_from_a_file() {
    let dir = TempDir::new("calendar");
    let f = dir.file(
        "2026.toml",
        r#"
year = 2026
source = "test file"
complete = true
[nse]
holidays = [{ date = "2026-11-09", name = "Diwali" }]
sessions = [{ date = "2026-11-09", open = "18:00", close = "19:00", name = "Muhurat trading" }]
"#,
    );
    let f = f.to_str().unwrap();
    let o = calendar(&["--file", f, "--date", "2026-11-09", "--exchange", "NSE"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("NSE    closed (holiday: Diwali); special sessions:"),
        "{out}"
    );
    assert!(
        out.contains("special  18:00-19:00 IST  12:30-13:30 UTC  (Muhurat trading)"),
        "{out}"
    );
    // The file replaces the shipped 2026: it has no MCX list.
    let o = calendar(&["--file", f, "--date", "2026-11-10", "--exchange", "MCX"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("no MCX holiday list for 2026"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_year_outside_the_shipped_ones_is_a_warning_and_the_weekday_rule() {
    let o = calendar(&["--date", "2031-01-01", "--exchange", "NSE"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: no NSE holiday list for 2031"),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("normal   09:15-15:30 IST"),
        "{}",
        stdout(&o)
    );
    let v = json(&["--date", "2031-01-04", "--exchange", "BSE"]);
    assert_eq!(v["exchanges"][0]["closed"], "weekend");
    assert_eq!(v["exchanges"][0]["holiday_list"], "missing");
}

#[test]
fn bad_input_is_an_error_naming_it() {
    let o = calendar(&["--date", "2026-02-30"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a date YYYY-MM-DD"),
        "{}",
        stderr(&o)
    );
    let o = calendar(&["--exchange", "NYSE"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("\"NYSE\" is not an exchange"),
        "{}",
        stderr(&o)
    );
    assert_eq!(calendar(&["--bogus"]).status.code(), Some(2));
    let dir = TempDir::new("calendar-bad");
    let f = dir.file(
        "bad.toml",
        "year = 2026\nsource = \"x\"\n[nse]\nholidays = [{ date = \"2026-11-28\", name = \"sat\" }]\n",
    );
    let o = calendar(&["--file", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("a Saturday or Sunday"),
        "{}",
        stderr(&o)
    );
    let o = calendar(&["--file", dir.join("none.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("calendar.file"), "{}", stderr(&o));
}
