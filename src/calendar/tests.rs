//! The calendar's cases: weekend, holiday, pre-open, open, the close
//! boundary, MCX's two closing times across the US switch dates, currency
//! hours, a special session, a year without a list, and the cursor.

use super::*;
use dates::parse_date;

/// ns of `YYYY-MM-DD HH:MM:SS` IST.
fn ist(date: &str, hh: u64, mm: u64, ss: u64) -> u64 {
    u64::from(parse_date(date).unwrap()) * DAY_NS + ((hh * 60 + mm) * 60 + ss) * 1_000_000_000
        - IST_OFFSET_NS
}

fn shipped() -> Holidays {
    Holidays::load(None).unwrap()
}

fn cal_at(h: &Holidays, date: &str) -> Calendar {
    Calendar::new(h, ist(date, 12, 0, 0), 14, 7)
}

const MUHURAT: &str = r#"
year = 2026
source = "test"
[nse]
holidays = [{ date = "2026-11-09", name = "Diwali" }]
sessions = [
  { date = "2026-11-09", open = "18:00", close = "19:00", name = "Muhurat trading", exchanges = ["NSE", "NFO"] },
]
[bse]
[mcx]
holidays = [{ date = "2026-11-10", name = "Half day", exchanges = ["MCX"] }]
sessions = [{ date = "2026-11-10", open = "17:00", close = "23:30", name = "Evening only" }]
"#;

#[test]
fn weekends_are_closed() {
    let h = shipped();
    let cal = cal_at(&h, "2026-11-25");
    // 2026-11-28 is a Saturday, 29 a Sunday.
    for ex in Exchange::ALL {
        assert_eq!(cal.is_open(ex, ist("2026-11-28", 10, 0, 0)), Some(false));
        assert_eq!(cal.is_open(ex, ist("2026-11-29", 12, 0, 0)), Some(false));
    }
    let d = h.day(Exchange::Nse, parse_date("2026-11-28").unwrap());
    assert_eq!(d.closed, Some(Closed::Weekend));
    assert!(d.sessions.is_empty());
}

#[test]
fn a_holiday_is_closed_all_day() {
    let h = shipped();
    let cal = cal_at(&h, "2026-12-24");
    for ex in Exchange::ALL {
        assert_eq!(
            cal.is_open(ex, ist("2026-12-25", 10, 0, 0)),
            Some(false),
            "{ex:?}"
        );
        assert_eq!(
            cal.is_open(ex, ist("2026-12-24", 10, 0, 0)),
            Some(true),
            "{ex:?}"
        );
    }
    let d = h.day(Exchange::Nfo, parse_date("2026-12-25").unwrap());
    assert_eq!(d.closed, Some(Closed::Holiday("Christmas".into())));
    assert!(!d.missing_list);
}

#[test]
fn pre_open_open_and_the_close_boundary() {
    let h = shipped();
    let cal = cal_at(&h, "2026-11-25");
    let d = "2026-11-25";
    let nse = |hh, mm, ss| cal.is_open(Exchange::Nse, ist(d, hh, mm, ss)).unwrap();
    let nfo = |hh, mm, ss| cal.is_open(Exchange::Nfo, ist(d, hh, mm, ss)).unwrap();
    assert!(!nse(8, 59, 59));
    assert!(nse(9, 0, 0), "pre-open starts at 09:00");
    assert!(nse(9, 7, 59));
    assert!(!nse(9, 8, 0), "pre-open ends at 09:08");
    assert!(!nse(9, 14, 59));
    assert!(nse(9, 15, 0));
    assert!(nse(15, 29, 59));
    assert!(!nse(15, 30, 0), "15:30:00 exactly is closed");
    assert!(!nfo(9, 0, 0), "F&O has no pre-open");
    assert!(nfo(9, 15, 0));
    assert!(!nfo(15, 30, 0));
    assert!(!cal.is_open(Exchange::Bse, ist(d, 15, 30, 0)).unwrap());
    let s = cal.state(Exchange::Nse, ist(d, 12, 0, 0)).unwrap();
    assert_eq!(
        (s.from_ns, s.until_ns),
        (ist(d, 9, 15, 0), ist(d, 15, 30, 0))
    );
    let kinds: Vec<_> = h
        .day(Exchange::Nse, parse_date(d).unwrap())
        .sessions
        .iter()
        .map(|(s, _)| s.kind)
        .collect();
    assert_eq!(kinds, [SessionKind::PreOpen, SessionKind::Normal]);
}

#[test]
fn currency_trades_nine_to_five() {
    let h = shipped();
    let cal = cal_at(&h, "2026-11-25");
    for ex in [Exchange::Cds, Exchange::Bcd] {
        let at = |hh, mm| cal.is_open(ex, ist("2026-11-25", hh, mm, 0)).unwrap();
        assert!(!at(8, 59) && at(9, 0) && at(16, 59) && !at(17, 0), "{ex:?}");
    }
}

#[test]
fn mcx_closes_at_2355_while_the_us_is_on_daylight_time() {
    let h = shipped();
    // US daylight time 2026: Sunday 8 March to Sunday 1 November.
    for (date, dst) in [
        ("2026-03-06", false),
        ("2026-03-09", true),
        ("2026-10-30", true),
        ("2026-11-02", false),
    ] {
        let cal = cal_at(&h, date);
        for ex in [Exchange::Mcx, Exchange::Nco] {
            let at = |hh, mm| cal.is_open(ex, ist(date, hh, mm, 0)).unwrap();
            assert!(at(9, 0) && at(23, 29), "{date} {ex:?}");
            assert_eq!(at(23, 30), dst, "{date} {ex:?} at 23:30");
            assert_eq!(at(23, 54), dst, "{date} {ex:?} at 23:54");
            assert!(!at(23, 55), "{date} {ex:?} at 23:55");
        }
    }
}

#[test]
fn a_special_session_replaces_the_day() {
    let mut h = shipped();
    h.add(HolidayFile::parse(MUHURAT, "t").unwrap());
    let cal = cal_at(&h, "2026-11-09");
    let at = |ex, d, hh, mm| cal.is_open(ex, ist(d, hh, mm, 0)).unwrap();
    let d = "2026-11-09";
    assert!(!at(Exchange::Nse, d, 10, 0), "Diwali is a holiday");
    assert!(at(Exchange::Nse, d, 18, 0) && at(Exchange::Nfo, d, 18, 59));
    assert!(!at(Exchange::Nse, d, 19, 0));
    assert!(!at(Exchange::Cds, d, 18, 30), "not named by the session");
    let day = h.day(Exchange::Nse, parse_date(d).unwrap());
    assert_eq!(day.closed, Some(Closed::Holiday("Diwali".into())));
    assert_eq!(day.sessions.len(), 1);
    assert_eq!(day.sessions[0].0.kind, SessionKind::Special);
    assert_eq!(day.sessions[0].1.as_deref(), Some("Muhurat trading"));
    // MCX's evening-only day.
    let d = "2026-11-10";
    assert!(!at(Exchange::Mcx, d, 10, 0) && at(Exchange::Mcx, d, 17, 0));
    assert!(
        at(Exchange::Nco, d, 10, 0),
        "the MCX list does not govern NCO"
    );
}

#[test]
fn a_year_without_a_list_warns_and_keeps_the_weekday_rule() {
    let h = shipped();
    // 2027-01-01 (Friday) is outside the shipped years.
    let cal = cal_at(&h, "2026-12-30");
    assert_eq!(
        cal.missing(),
        [(2027, List::Nse), (2027, List::Bse), (2027, List::Mcx)]
    );
    assert_eq!(
        cal.is_open(Exchange::Nse, ist("2027-01-01", 10, 0, 0)),
        Some(true)
    );
    assert_eq!(
        cal.is_open(Exchange::Nse, ist("2027-01-02", 10, 0, 0)),
        Some(false)
    );
    let d = h.day(Exchange::Mcx, parse_date("2027-01-04").unwrap());
    assert!(d.missing_list && d.closed.is_none() && d.sessions.len() == 1);
    // Far outside: no panic, weekdays open.
    let far = Calendar::new(&h, ist("2031-06-02", 10, 0, 0), 14, 7);
    assert_eq!(
        far.is_open(Exchange::Bse, ist("2031-06-02", 10, 0, 0)),
        Some(true)
    );
    assert!(cal_at(&h, "2026-06-15").missing().is_empty());
}

#[test]
fn the_window_has_its_bounds_and_moves_with_the_day() {
    let h = shipped();
    let cal = Calendar::new(&h, ist("2026-11-25", 12, 0, 0), 14, 7);
    let (first, last) = cal.days();
    assert_eq!(
        (first, last),
        (
            parse_date("2026-11-11").unwrap(),
            parse_date("2026-12-02").unwrap()
        )
    );
    assert_eq!(
        cal.is_open(Exchange::Nse, ist("2026-11-10", 10, 0, 0)),
        None
    );
    assert_eq!(
        cal.is_open(Exchange::Nse, ist("2026-12-03", 10, 0, 0)),
        None
    );
    assert!(cal.moved_to(&h, ist("2026-11-25", 23, 59, 0)).is_none());
    let next = cal.moved_to(&h, ist("2026-11-26", 0, 0, 1)).unwrap();
    assert_eq!(next.days().0, first + 1);
}

#[test]
fn the_cursor_remembers_the_session_and_the_minute() {
    let h = shipped();
    let cal = cal_at(&h, "2026-11-25");
    let mut c = Cursor::new(Exchange::Nfo);
    let d = "2026-11-25";
    assert_eq!(c.is_open(&cal, ist(d, 9, 0, 0)), Some(false));
    assert_eq!(c.minute_start(&cal, ist(d, 9, 14, 59)), None);
    assert_eq!(
        c.minute_start(&cal, ist(d, 9, 15, 0)),
        Some(ist(d, 9, 15, 0))
    );
    assert_eq!(
        c.minute_start(&cal, ist(d, 9, 15, 59)),
        Some(ist(d, 9, 15, 0))
    );
    assert_eq!(
        c.minute_start(&cal, ist(d, 9, 16, 1)),
        Some(ist(d, 9, 16, 0))
    );
    assert_eq!(
        c.minute_start(&cal, ist(d, 15, 29, 59)),
        Some(ist(d, 15, 29, 0))
    );
    assert_eq!(c.minute_start(&cal, ist(d, 15, 30, 0)), None);
    // Time going backwards is answered too.
    assert_eq!(c.is_open(&cal, ist(d, 10, 0, 0)), Some(true));
    assert_eq!(c.is_open(&cal, ist("2030-01-01", 10, 0, 0)), None);
    assert_eq!(minute_start(ist(d, 9, 15, 30) + 7), ist(d, 9, 15, 0));
}

#[test]
fn instruments_map_to_exchanges_by_segment() {
    assert_eq!(Exchange::of_instrument(408_065, None), Some(Exchange::Nse));
    assert_eq!(
        Exchange::of_instrument(256_265, Some("INDICES")),
        Some(Exchange::Nse)
    );
    assert_eq!(
        Exchange::of_instrument(265, Some("BSE")),
        Some(Exchange::Bse)
    );
    assert_eq!(
        Exchange::of_instrument(53_253_383, Some("MCX")),
        Some(Exchange::Mcx)
    );
    assert_eq!(
        Exchange::of_instrument(31_132_428, None),
        Some(Exchange::Nco)
    );
    assert_eq!(Exchange::of_instrument(0x1234_560A, None), None);
    assert_eq!(Exchange::parse("mcx-sx"), Some(Exchange::Mcxsx));
    assert_eq!(Exchange::parse("bsecds"), Some(Exchange::Bcd));
    assert_eq!(Exchange::parse("NYSE"), None);
    for ex in Exchange::ALL {
        assert_eq!(Exchange::parse(ex.label()), Some(ex));
        assert_eq!(Exchange::ALL[ex.index()], ex);
    }
}

#[test]
fn a_weekend_special_session_and_a_holiday_of_some_exchanges() {
    let mut h = shipped();
    h.add(
        HolidayFile::parse(
            r#"
year = 2026
source = "test"
[nse]
holidays = [{ date = "2026-11-26", name = "Currency holiday", exchanges = ["CDS"] }]
sessions = [{ date = "2026-11-29", open = "09:15", close = "15:30", name = "Sunday session", exchanges = ["NSE"] }]
"#,
            "t",
        )
        .unwrap(),
    );
    let cal = cal_at(&h, "2026-11-25");
    let at = |ex, d, hh, mm| cal.is_open(ex, ist(d, hh, mm, 0)).unwrap();
    assert!(at(Exchange::Nse, "2026-11-29", 9, 15) && !at(Exchange::Nse, "2026-11-29", 15, 30));
    assert!(!at(Exchange::Nfo, "2026-11-29", 10, 0));
    let day = h.day(Exchange::Nse, parse_date("2026-11-29").unwrap());
    assert_eq!(day.closed, Some(Closed::Weekend));
    assert_eq!(day.sessions[0].1.as_deref(), Some("Sunday session"));
    assert!(!at(Exchange::Cds, "2026-11-26", 10, 0));
    assert!(at(Exchange::Nse, "2026-11-26", 10, 0) && at(Exchange::Nco, "2026-11-26", 10, 0));
    // This file has no BSE or MCX list: those are missing for 2026 now.
    assert!(cal.missing().contains(&(2026, List::Mcx)));
    assert!(!cal.missing().contains(&(2026, List::Nse)));
}
