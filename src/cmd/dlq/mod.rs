//! `panda-feed dlq`: inspect, republish and purge the dead-letter spool.
//! Runs on the main thread of the `dlq` process; owns nothing beyond it.
//!
//! Works against a stopped or a running feed: `list` reads every segment
//! (an open one up to its last whole record); `stats`, `requeue` and
//! `purge` first recover the open segments of dead writers (torn tail cut,
//! renamed closed), then act on closed segments only, rewriting each
//! atomically. Exit status: 0 done; 1 records left in the spool or an
//! error; 2 corrupt records found (skipped); 3 another requeue holds the
//! spool's `requeue.lock`.

mod lookup;
mod requeue;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cli::{DlqArgs, DlqCommand};
use crate::spool::{self, Corrupt, Record};

/// Parses `90s`, `30m`, `12h`, `7d`; refuses values whose seconds do not
/// fit in 64 bits rather than wrapping.
///
/// # Errors
/// Anything else, with the accepted forms; an overflow, with the range.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let mult: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("duration {s:?}: unit must be s, m, h or d (e.g. 12h)"),
    };
    let range = || {
        format!(
            "duration {s:?} is out of range: at most {}{unit}",
            u64::MAX / mult
        )
    };
    if num.is_empty() {
        bail!("duration {s:?}: expected e.g. 90s, 30m, 12h or 7d");
    }
    let n: u64 = num.parse().map_err(|_| anyhow::anyhow!(range()))?;
    let secs = n
        .checked_mul(mult)
        .ok_or_else(|| anyhow::anyhow!(range()))?;
    Ok(Duration::from_secs(secs))
}

/// Recovers the open segments of dead writers, reporting each.
fn recover(dir: &Path) -> anyhow::Result<Vec<spool::OpenSegment>> {
    let (done, alive) = spool::recover_stranded(dir)
        .with_context(|| format!("recovering open segments in {}", dir.display()))?;
    for r in &done {
        eprintln!(
            "dlq: recovered {} (writer pid {} is gone) as {}; torn tail truncated: {} bytes",
            r.from,
            r.owner_pid
                .map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
            r.to,
            r.truncated
        );
    }
    Ok(alive)
}

/// Reads a segment, reporting (and counting) its corrupt records.
fn read(seg: &Path, corrupt: &mut usize) -> anyhow::Result<(Vec<Record>, Vec<Corrupt>)> {
    let (recs, bad) =
        spool::read_segment(seg).with_context(|| format!("reading {}", seg.display()))?;
    for c in &bad {
        eprintln!(
            "dlq: {} at byte {}: {}; record skipped",
            c.segment, c.offset, c.why
        );
    }
    *corrupt += bad.len();
    Ok((recs, bad))
}

/// Runs a `dlq` subcommand; returns the exit status (0, or 2 when corrupt
/// records were found).
///
/// # Errors
/// Unreadable spool, bad arguments, an unreachable broker.
pub fn run(args: &DlqArgs) -> anyhow::Result<u8> {
    let dir = &args.dir;
    if !dir.is_dir() {
        bail!(
            "spool directory {} does not exist (spool.dir in the feed's config; nothing was ever parked there)",
            dir.display()
        );
    }
    let mut corrupt = 0usize;
    match &args.command {
        DlqCommand::List => {
            for seg in &spool::segments(dir) {
                for r in read(seg, &mut corrupt)?.0 {
                    println!(
                        "{}",
                        serde_json::json!({
                            "segment": seg.file_name().map(|n| n.to_string_lossy()),
                            "first_failure_ns": r.first_failure_ns,
                            "persisted": r.persisted,
                            "topic": r.topic,
                            "key": String::from_utf8_lossy(&r.key),
                            "error": r.error,
                            "payload": String::from_utf8_lossy(&r.payload),
                        })
                    );
                }
            }
        }
        DlqCommand::Stats => {
            let alive = recover(dir)?;
            let segments = spool::segments(dir);
            let mut records = 0u64;
            let mut by_error: BTreeMap<String, u64> = BTreeMap::new();
            let (mut oldest, mut newest) = (u64::MAX, 0u64);
            for seg in &segments {
                for r in read(seg, &mut corrupt)?.0 {
                    records += 1;
                    *by_error.entry(r.error).or_default() += 1;
                    oldest = oldest.min(r.first_failure_ns);
                    newest = newest.max(r.first_failure_ns);
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "dir": dir.display().to_string(),
                    "segments": segments.len(),
                    "open_segments": alive.len(),
                    "open": alive,
                    "bytes": spool::dir_bytes(dir),
                    "records": records,
                    "corrupt": corrupt,
                    "oldest_failure_ns": (records > 0).then_some(oldest),
                    "newest_failure_ns": (records > 0).then_some(newest),
                    "by_error": by_error,
                }))?
            );
        }
        DlqCommand::Purge { older_than } => {
            let age = parse_duration(older_than)?;
            recover(dir)?;
            let cutoff = crate::clock::now_ns()
                .saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX));
            let mut removed = 0usize;
            let mut kept = 0usize;
            for seg in spool::segments(dir).iter().filter(|s| spool::is_closed(s)) {
                let (recs, bad) = read(seg, &mut corrupt)?;
                let n = recs.len();
                let keep: Vec<Record> = recs
                    .into_iter()
                    .filter(|r| r.first_failure_ns >= cutoff)
                    .collect();
                removed += n - keep.len();
                kept += keep.len();
                if keep.len() != n || !bad.is_empty() {
                    preserve_corrupt(seg, &bad)?;
                    spool::rewrite_segment(seg, &keep)?;
                }
            }
            eprintln!("dlq: purged {removed} records older than {older_than}; {kept} kept");
        }
        DlqCommand::Requeue {
            brokers,
            timeout_s,
            checkpoint_records,
            lookup_margin,
        } => {
            let margin = parse_duration(lookup_margin)?;
            let _lock = match spool::lock_requeue(dir) {
                Ok(l) => l,
                Err(e @ spool::LockError::Held { .. }) => {
                    eprintln!("dlq: {e}");
                    return Ok(3);
                }
                Err(e) => return Err(e.into()),
            };
            recover(dir)?;
            let opts = requeue::Opts {
                dir,
                brokers,
                deadline: Instant::now() + Duration::from_secs(*timeout_s),
                window_records: (*checkpoint_records).max(1),
                window_time: Duration::from_secs(1),
                margin,
            };
            let o = requeue::run(&opts)?;
            corrupt += o.corrupt;
            eprintln!(
                "dlq: requeued {} records (delivery confirmed) and found {} on their topic already; both removed from the spool; {} left in the spool; {} send errors",
                o.republished, o.found, o.left, o.send_errors
            );
            if o.left > 0 || o.send_errors > 0 {
                return Ok(1);
            }
        }
    }
    Ok(if corrupt > 0 { 2 } else { 0 })
}

/// Keeps the raw bytes of a segment that holds corrupt records next to it
/// (`….corrupt`) before the segment is rewritten without them.
fn preserve_corrupt(seg: &Path, bad: &[Corrupt]) -> anyhow::Result<()> {
    if bad.is_empty() {
        return Ok(());
    }
    let dest = seg.with_extension("dlq.corrupt");
    std::fs::copy(seg, &dest).with_context(|| format!("saving {}", dest.display()))?;
    eprintln!(
        "dlq: kept the original of {} as {} for inspection",
        seg.display(),
        dest.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert!(
            parse_duration("7w")
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("213503982334601d").is_ok());
        let e = parse_duration("213503982334602d").unwrap_err().to_string();
        assert!(e.contains("out of range") && e.contains("at most"), "{e}");
        let e = parse_duration("99999999999999999999999s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");
    }
}
