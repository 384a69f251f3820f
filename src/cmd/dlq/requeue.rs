//! `dlq requeue`: republishes the closed segments of a spool, in order, in
//! checkpointed windows. Runs on the main thread of the `dlq` process (the
//! caller holds the spool's `requeue.lock`); owns one producer per segment
//! and the `requeue.inflight` marker.
//!
//! Per segment: records that may be on their topic already (a timed-out
//! delivery, an old-format record, a window of an interrupted requeue) are
//! looked up first ([`super::lookup`]) and removed when found. The rest
//! are sent in windows of `checkpoint_records` records (or one second of
//! sending). Before a window is sent its records' identities are written
//! to `requeue.inflight` (fsynced); after it, the segment is rewritten
//! atomically without the confirmed records and the marker removed. A
//! `kill -9` therefore leaves at most one window unaccounted for, and the
//! next requeue marks that window's records possibly delivered, so they are
//! looked up instead of sent twice.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::spool::{self, Persisted, Record};

/// Name of the marker of the window being sent.
pub(super) const MARKER: &str = "requeue.inflight";

/// Settings of one requeue.
pub(super) struct Opts<'a> {
    pub(super) dir: &'a Path,
    pub(super) brokers: &'a str,
    /// Of the whole requeue.
    pub(super) deadline: Instant,
    pub(super) window_records: usize,
    pub(super) window_time: Duration,
    /// Lookups start this long before a record's first failure.
    pub(super) margin: Duration,
}

/// What a requeue did.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Sent and confirmed.
    pub(super) republished: usize,
    /// Found on the topic by the lookup, not sent.
    pub(super) found: usize,
    /// Still in the spool.
    pub(super) left: usize,
    /// Records refused (send or delivery error other than a full queue).
    pub(super) send_errors: usize,
    /// Corrupt records skipped.
    pub(super) corrupt: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    Pending,
    Ok,
    Failed { possibly: bool, error: String },
}

struct Ctx {
    results: Mutex<Vec<Delivery>>,
}

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &DeliveryResult<'_>, i: usize) {
        let d = match r {
            Ok(_) => Delivery::Ok,
            Err((e, _)) => Delivery::Failed {
                possibly: matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut)
                ),
                error: e.to_string(),
            },
        };
        if let Some(slot) = self
            .results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(i)
        {
            *slot = d;
        }
    }
}

/// Identity of a record in the marker: CRC-32 of topic, key and value,
/// and the value's length. A collision only costs a lookup.
fn identity(r: &Record) -> u64 {
    let mut h = crc32fast::Hasher::new();
    h.update(r.topic.as_bytes());
    h.update(&[0]);
    h.update(&r.key);
    h.update(&[0]);
    h.update(&r.payload);
    (u64::from(h.finalize()) << 32) | (r.payload.len() as u64 & 0xFFFF_FFFF)
}

fn write_marker(dir: &Path, seg: &Path, recs: &[&Record]) -> std::io::Result<()> {
    let mut text = format!(
        "{}\n",
        seg.file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    );
    for r in recs {
        text.push_str(&format!("{:016x}\n", identity(r)));
    }
    let tmp = dir.join(format!("{MARKER}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(MARKER))?;
    spool::sync_dir(dir)
}

fn remove_marker(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(MARKER)) {
        Ok(()) => spool::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies the marker of an interrupted requeue: the records of its window
/// become possibly delivered (rewritten so), then the marker goes.
fn apply_marker(dir: &Path, corrupt: &mut usize) -> anyhow::Result<()> {
    let path = dir.join(MARKER);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut lines = text.lines();
    let seg = dir.join(lines.next().unwrap_or_default());
    let ids: HashSet<u64> = lines
        .filter_map(|l| u64::from_str_radix(l.trim(), 16).ok())
        .collect();
    if spool::is_closed(&seg) && seg.is_file() {
        let (mut recs, bad) = super::read(&seg, corrupt)?;
        let mut n = 0usize;
        for r in &mut recs {
            if ids.contains(&identity(r)) && r.persisted != Persisted::Possibly {
                r.persisted = Persisted::Possibly;
                n += 1;
            }
        }
        super::preserve_corrupt(&seg, &bad)?;
        spool::rewrite_segment(&seg, &recs)
            .with_context(|| format!("rewriting {}", seg.display()))?;
        eprintln!(
            "dlq: a previous requeue was interrupted while sending {} records of {}; {n} of them still in the spool are looked up on the topic before being republished",
            ids.len(),
            seg.display()
        );
    }
    remove_marker(dir).with_context(|| format!("removing {}", path.display()))
}

/// Requeues every closed segment of `o.dir`.
///
/// # Errors
/// Unreadable or unwritable spool, a producer that cannot be created.
pub(super) fn run(o: &Opts<'_>) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    apply_marker(o.dir, &mut out.corrupt)?;
    let segs: Vec<_> = spool::segments(o.dir)
        .into_iter()
        .filter(|s| spool::is_closed(s))
        .collect();
    // One lookup for the whole spool: the records that may be on their
    // topic already.
    let mut wanted = super::lookup::Wanted::default();
    for seg in &segs {
        let (recs, _) =
            spool::read_segment(seg).with_context(|| format!("reading {}", seg.display()))?;
        for r in recs.iter().filter(|r| r.persisted.needs_lookup()) {
            wanted.add(r);
        }
    }
    let mut found = if wanted.len() == 0 {
        Some(super::lookup::Found::default())
    } else {
        match super::lookup::find(o.brokers, &wanted, o.margin, o.deadline) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "dlq: the lookup of {} possibly delivered records failed ({e:#}); they stay in the spool",
                    wanted.len()
                );
                None
            }
        }
    };
    for seg in &segs {
        if Instant::now() >= o.deadline {
            let (recs, _) = spool::read_segment(seg)?;
            out.left += recs.len();
            continue;
        }
        segment(o, seg, found.as_mut(), &mut out)?;
    }
    Ok(out)
}

/// What became of one record of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Todo,
    Gone,
    Keep,
}

fn checkpoint(seg: &Path, recs: &[Record], state: &[State]) -> anyhow::Result<()> {
    let keep: Vec<Record> = recs
        .iter()
        .zip(state)
        .filter(|(_, s)| **s != State::Gone)
        .map(|(r, _)| r.clone())
        .collect();
    spool::rewrite_segment(seg, &keep).with_context(|| format!("rewriting {}", seg.display()))
}

fn segment(
    o: &Opts<'_>,
    seg: &Path,
    found: Option<&mut super::lookup::Found>,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let (mut recs, bad) = super::read(seg, &mut out.corrupt)?;
    super::preserve_corrupt(seg, &bad)?;
    if !bad.is_empty() {
        spool::rewrite_segment(seg, &recs)?;
    }
    let name = seg.display();
    let mut state = vec![State::Todo; recs.len()];
    let need: Vec<usize> = (0..recs.len())
        .filter(|&i| recs[i].persisted.needs_lookup())
        .collect();
    if !need.is_empty() {
        if let Some(found) = found {
            let mut n = 0usize;
            for &i in &need {
                if found.take(&recs[i]) {
                    state[i] = State::Gone;
                    n += 1;
                }
            }
            out.found += n;
            eprintln!(
                "dlq: {name}: {} possibly delivered records: {n} found on the topic (not sent again), {} not found",
                need.len(),
                need.len() - n
            );
            if n > 0 {
                checkpoint(seg, &recs, &state)?;
            }
        } else {
            for &i in &need {
                state[i] = State::Keep;
            }
        }
    }
    let left_ms = o
        .deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .max(1);
    let producer: BaseProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", o.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", left_ms.to_string())
        .create_with_context(Ctx {
            results: Mutex::new(vec![Delivery::Pending; recs.len()]),
        })
        .context("creating the requeue producer")?;
    let todo: Vec<usize> = (0..recs.len())
        .filter(|&i| state[i] == State::Todo)
        .collect();
    let mut next = 0usize;
    while next < todo.len() {
        let window = &todo[next..todo.len().min(next + o.window_records)];
        let marked: Vec<&Record> = window.iter().map(|&i| &recs[i]).collect();
        write_marker(o.dir, seg, &marked).context("writing the requeue marker")?;
        let started = Instant::now();
        let mut sent = Vec::with_capacity(window.len());
        let mut consumed = 0usize;
        let mut out_of_time = false;
        for &i in window {
            if started.elapsed() >= o.window_time && consumed > 0 {
                break;
            }
            let r = &recs[i];
            let mut rec = BaseRecord::with_opaque_to(&r.topic, i)
                .key(&r.key[..])
                .payload(&r.payload[..]);
            loop {
                match producer.send(rec) {
                    Ok(()) => {
                        sent.push(i);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        if Instant::now() >= o.deadline {
                            // What was not sent stays as it was.
                            out_of_time = true;
                            break;
                        }
                        producer.poll(Duration::from_millis(10));
                        rec = back;
                    }
                    Err((e, _)) => {
                        eprintln!(
                            "dlq: {name}: record {i} (key {}) refused: {e}; kept in the spool",
                            String::from_utf8_lossy(&r.key)
                        );
                        state[i] = State::Keep;
                        out.send_errors += 1;
                        break;
                    }
                }
            }
            if out_of_time {
                break;
            }
            consumed += 1;
        }
        next += consumed;
        settle(
            o,
            &producer,
            &sent,
            &mut recs,
            &mut state,
            out,
            &name.to_string(),
        );
        checkpoint(seg, &recs, &state)?;
        remove_marker(o.dir).context("removing the requeue marker")?;
        eprintln!(
            "dlq: checkpoint {name}: {} republished so far",
            out.republished
        );
        if out_of_time || Instant::now() >= o.deadline {
            break;
        }
    }
    out.left += state.iter().filter(|s| **s != State::Gone).count();
    Ok(())
}

/// Waits (up to the deadline) for the deliveries of `sent` and records
/// them: confirmed ones go, failed ones stay (reported; a timed-out one,
/// or one still unconfirmed at the deadline, becomes possibly delivered).
fn settle(
    o: &Opts<'_>,
    producer: &BaseProducer<Ctx>,
    sent: &[usize],
    recs: &mut [Record],
    state: &mut [State],
    out: &mut Outcome,
    name: &str,
) {
    let _ = producer.flush(o.deadline.saturating_duration_since(Instant::now()));
    let results = producer
        .context()
        .results
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut unconfirmed = 0usize;
    for &i in sent {
        match &results[i] {
            Delivery::Ok => {
                state[i] = State::Gone;
                out.republished += 1;
            }
            Delivery::Failed { possibly, error } => {
                state[i] = State::Keep;
                if *possibly {
                    recs[i].persisted = Persisted::Possibly;
                } else {
                    out.send_errors += 1;
                }
                eprintln!(
                    "dlq: {name}: record {i} (key {}) not delivered: {error}; kept in the spool",
                    String::from_utf8_lossy(&recs[i].key)
                );
            }
            Delivery::Pending => {
                state[i] = State::Keep;
                recs[i].persisted = Persisted::Possibly;
                unconfirmed += 1;
            }
        }
    }
    if unconfirmed > 0 {
        eprintln!(
            "dlq: {name}: {unconfirmed} records unconfirmed at the deadline; kept as possibly delivered"
        );
    }
}
