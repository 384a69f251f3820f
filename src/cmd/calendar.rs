//! `panda-feed calendar`: one date's sessions of each exchange (or one), in
//! IST and UTC, or why it is closed (README, "Calendar"). Main thread.

use std::io::Write;

use serde_json::{Value, json};

use crate::calendar::dates::{format_date, format_hhmm, weekday_name};
use crate::calendar::{Closed, DAY_NS, Exchange, Holidays, IST_OFFSET_NS, MINUTE_NS, ist_day};
use crate::cli::CalendarArgs;
use crate::clock::{now_ns, rfc3339_ms};

/// Runs the command; its exit status: 0 printed, 1 the holiday file is
/// unreadable or invalid.
pub fn run(args: &CalendarArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let h = match Holidays::load(args.file.as_deref()) {
        Ok(h) => h,
        Err(e) => {
            let _ = writeln!(err, "panda-feed: {e}");
            return 1;
        }
    };
    let day = args.date.unwrap_or_else(|| ist_day(now_ns()));
    let exchanges: Vec<Exchange> = args
        .exchange
        .map_or_else(|| Exchange::ALL.to_vec(), |e| vec![e]);
    let (y, _, _) = crate::calendar::dates::civil(day);
    let file = h.file(y);
    let mut lists: Vec<_> = exchanges.iter().map(|e| e.list()).collect();
    lists.sort_unstable();
    lists.dedup();
    let (mut partial, mut missing) = (Vec::new(), Vec::new());
    for l in lists {
        match file.filter(|f| f.lists.contains_key(&l)) {
            None => missing.push(l.label()),
            Some(f) if !f.complete => partial.push(l.label()),
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        let _ = writeln!(
            err,
            "panda-feed: warning: no {} holiday list for {y} (lists loaded for {:?}): weekends \
             only, holidays unknown; add the year's file (calendar.file, README \"Calendar\")",
            missing.join("/"),
            h.years()
        );
    }
    if let (false, Some(f)) = (partial.is_empty(), file) {
        let _ = writeln!(
            err,
            "panda-feed: note: the {y} {} list is partial: {} (README \"Calendar\")",
            partial.join("/"),
            f.source
        );
    }
    let rows: Vec<(Exchange, crate::calendar::Day)> =
        exchanges.iter().map(|&e| (e, h.day(e, day))).collect();
    let r = if args.json {
        writeln!(out, "{}", to_json(day, &rows, file))
    } else {
        write_text(out, day, &rows)
    };
    u8::from(r.is_err())
}

/// `HH:MM` of `ns` in IST.
fn ist_hhmm(ns: u64) -> String {
    let min = ((ns + IST_OFFSET_NS) % DAY_NS) / MINUTE_NS;
    format_hhmm(u32::try_from(min).unwrap_or(0))
}

/// `HH:MM` of `ns` in UTC, marked `-1d` when the UTC date is the day before
/// `day` (a session before 05:30 IST).
fn utc_hhmm(ns: u64, day: u32) -> String {
    let min = u32::try_from((ns % DAY_NS) / MINUTE_NS).unwrap_or(0);
    if ns < u64::from(day) * DAY_NS {
        format!("{}(-1d)", format_hhmm(min))
    } else {
        format_hhmm(min)
    }
}

fn reason(c: &Closed) -> String {
    match c {
        Closed::Weekend => "weekend".to_owned(),
        Closed::Holiday(n) => format!("holiday: {n}"),
    }
}

fn write_text(
    out: &mut dyn Write,
    day: u32,
    rows: &[(Exchange, crate::calendar::Day)],
) -> std::io::Result<()> {
    writeln!(
        out,
        "{} {} (times in IST, UTC+05:30, and UTC)",
        format_date(day),
        weekday_name(day)
    )?;
    for (ex, d) in rows {
        let mut head = format!("{:<6}", ex.label());
        if let Some(c) = &d.closed {
            if d.sessions.is_empty() {
                writeln!(out, "{head} closed ({})", reason(c))?;
                continue;
            }
            writeln!(out, "{head} closed ({}); special sessions:", reason(c))?;
            head = " ".repeat(6);
        }
        for (s, name) in &d.sessions {
            writeln!(
                out,
                "{head} {:<8} {}-{} IST  {}-{} UTC{}",
                s.kind.label(),
                ist_hhmm(s.open_ns),
                ist_hhmm(s.close_ns),
                utc_hhmm(s.open_ns, day),
                utc_hhmm(s.close_ns, day),
                name.as_ref()
                    .map(|n| format!("  ({n})"))
                    .unwrap_or_default()
            )?;
            head = " ".repeat(6);
        }
    }
    Ok(())
}

fn to_json(
    day: u32,
    rows: &[(Exchange, crate::calendar::Day)],
    file: Option<&crate::calendar::HolidayFile>,
) -> Value {
    let exchanges: Vec<Value> = rows
        .iter()
        .map(|(ex, d)| {
            let list = match file {
                Some(f) if f.lists.contains_key(&ex.list()) && f.complete => "complete",
                Some(f) if f.lists.contains_key(&ex.list()) => "partial",
                _ => "missing",
            };
            let sessions: Vec<Value> = d
                .sessions
                .iter()
                .map(|(s, name)| {
                    json!({
                        "kind": s.kind,
                        "name": name,
                        "open_ist": ist_hhmm(s.open_ns),
                        "close_ist": ist_hhmm(s.close_ns),
                        "open_utc": rfc3339_ms(s.open_ns),
                        "close_utc": rfc3339_ms(s.close_ns),
                    })
                })
                .collect();
            json!({
                "exchange": ex.label(),
                "closed": d.closed.as_ref().map(|c| match c {
                    Closed::Weekend => "weekend",
                    Closed::Holiday(_) => "holiday",
                }),
                "holiday": match &d.closed {
                    Some(Closed::Holiday(n)) => Some(n.as_str()),
                    _ => None,
                },
                "holiday_list": list,
                "sessions": sessions,
            })
        })
        .collect();
    json!({
        "date": format_date(day),
        "weekday": weekday_name(day),
        "exchanges": exchanges,
    })
}
