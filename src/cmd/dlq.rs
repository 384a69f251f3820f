//! `panda-feed dlq`: inspect, republish and purge the dead-letter spool.
//!
//! Works against a stopped or a running feed: `list` and `stats` read every
//! segment (an open one up to its last whole record); `requeue` and `purge`
//! act on closed segments only, rewriting each atomically.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::cli::{DlqArgs, DlqCommand};
use crate::spool::{self, Corrupt, Record};

/// Parses `90s`, `30m`, `12h`, `7d`.
///
/// # Errors
/// Anything else, with the accepted forms.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("duration {s:?}: expected e.g. 90s, 30m, 12h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("duration {s:?}: unit must be s, m, h or d (e.g. 12h)"),
    };
    Ok(Duration::from_secs(secs))
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
    let segments = spool::segments(dir);
    let mut corrupt = 0usize;
    match &args.command {
        DlqCommand::List => {
            for seg in &segments {
                for r in read(seg, &mut corrupt)?.0 {
                    println!(
                        "{}",
                        serde_json::json!({
                            "segment": seg.file_name().map(|n| n.to_string_lossy()),
                            "first_failure_ns": r.first_failure_ns,
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
                    "open_segments": segments.iter().filter(|s| !spool::is_closed(s)).count(),
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
            let cutoff = crate::clock::now_ns()
                .saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX));
            let mut removed = 0usize;
            let mut kept = 0usize;
            for seg in segments.iter().filter(|s| spool::is_closed(s)) {
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
        DlqCommand::Requeue { brokers, timeout_s } => {
            let (delivered, left, bad) =
                requeue(&segments, brokers, Duration::from_secs(*timeout_s))?;
            corrupt += bad;
            eprintln!(
                "dlq: requeued {delivered} records (delivery confirmed, removed from the spool); {left} left in the spool"
            );
            if left > 0 {
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

struct RequeueCtx {
    ok: Mutex<Vec<bool>>,
}

impl ClientContext for RequeueCtx {}

impl ProducerContext for RequeueCtx {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &DeliveryResult<'_>, i: usize) {
        if r.is_ok()
            && let Some(slot) = self
                .ok
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_mut(i)
        {
            *slot = true;
        }
    }
}

/// Republishes closed segments in order; rewrites each without the records
/// whose delivery was confirmed. Returns (delivered, left, corrupt).
fn requeue(
    segments: &[std::path::PathBuf],
    brokers: &str,
    timeout: Duration,
) -> anyhow::Result<(usize, usize, usize)> {
    let (mut delivered, mut left, mut corrupt) = (0, 0, 0);
    for seg in segments.iter().filter(|s| spool::is_closed(s)) {
        let (recs, bad) = read(seg, &mut corrupt)?;
        let producer: BaseProducer<RequeueCtx> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create_with_context(RequeueCtx {
                ok: Mutex::new(vec![false; recs.len()]),
            })
            .context("creating the requeue producer")?;
        for (i, r) in recs.iter().enumerate() {
            let mut rec = BaseRecord::with_opaque_to(&r.topic, i)
                .key(&r.key[..])
                .payload(&r.payload[..]);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        // Queue full: serve reports and retry the same record.
                        producer.poll(Duration::from_millis(10));
                        rec = back;
                    }
                }
            }
        }
        // Undelivered at the deadline stay in the spool.
        let _ = producer.flush(timeout);
        let ok = producer
            .context()
            .ok
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let keep: Vec<Record> = recs
            .into_iter()
            .zip(&ok)
            .filter(|(_, ok)| !**ok)
            .map(|(r, _)| r)
            .collect();
        delivered += ok.iter().filter(|o| **o).count();
        left += keep.len();
        preserve_corrupt(seg, &bad)?;
        spool::rewrite_segment(seg, &keep)?;
        eprintln!(
            "dlq: {}: {} delivered, {} kept",
            seg.display(),
            ok.iter().filter(|o| **o).count(),
            keep.len()
        );
    }
    Ok((delivered, left, corrupt))
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
    }
}
