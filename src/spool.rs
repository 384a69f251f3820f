//! The dead-letter spool: append-only segment files on local disk holding
//! every record that could not be delivered, so nothing is lost silently.
//!
//! Segment files are named `{created_ns:020}-p{writer}.dlq`; the one being
//! written ends in `.dlq.open` and is renamed when it is closed (rolled or at
//! shutdown), so tools act on closed segments only while a feed runs.
//!
//! Record layout (all integers big-endian):
//!
//! ```text
//! magic "PFDL" | body_len u32 | crc32(body) u32 | body
//! body = first_failure_ns u64 | topic_len u16 | topic | key_len u16 | key
//!      | error_len u16 | error | payload_len u32 | payload
//! ```
//!
//! A record whose CRC does not match, or whose framing is broken, is
//! reported and skipped by readers, which resynchronise on the next magic.
//! Writing happens on the publisher thread, on the failure path only.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"PFDL";
const HEADER: usize = 12;

/// When the spool calls `fsync`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// After every record: nothing parked is lost on power failure.
    Always,
    /// At most every `fsync_interval_ms`, and when a segment closes.
    #[default]
    Interval,
    /// Only when a segment closes (the OS flushes otherwise).
    Never,
}

/// `[spool]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory of the segment files (created on the first parked record).
    pub dir: PathBuf,
    /// Cap on the spool's total size, bytes; records beyond it are dropped
    /// and counted as `spool_full`.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size, bytes.
    pub segment_bytes: u64,
    /// fsync policy.
    pub fsync: Fsync,
    /// Period of `fsync = "interval"`, ms.
    pub fsync_interval_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(crate::config::defaults::SPOOL_DIR),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            fsync: Fsync::Interval,
            fsync_interval_ms: 1000,
        }
    }
}

/// One spooled record, owned (readers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// When delivery first failed, ns since the epoch.
    pub first_failure_ns: u64,
    /// Topic it was for.
    pub topic: String,
    /// Key bytes (the token in decimal).
    #[serde(serialize_with = "as_text")]
    pub key: Vec<u8>,
    /// Why it failed.
    pub error: String,
    /// The record value.
    #[serde(serialize_with = "as_text")]
    pub payload: Vec<u8>,
}

fn as_text<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

/// Counters of one spool writer (single writer: its publisher thread).
#[derive(Debug, Default)]
pub struct SpoolCounters {
    /// Records parked.
    pub parked: AtomicU64,
    /// Records dropped because the spool was at its cap.
    pub full: AtomicU64,
    /// Records dropped because the spool could not be written.
    pub error: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Why a record was not parked.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// At the cap.
    #[error("dead-letter spool is full ({max} bytes); record dropped")]
    Full {
        /// The cap.
        max: u64,
    },
    /// Disk error.
    #[error("cannot write the dead-letter spool in {dir}: {err}")]
    Io {
        /// The directory.
        dir: String,
        /// Cause.
        err: std::io::Error,
    },
}

struct Writer {
    cfg: SpoolConfig,
    id: usize,
    file: Option<(BufWriter<File>, PathBuf, u64)>,
    last_sync: Instant,
    buf: Vec<u8>,
}

/// A spool writer for one publisher, with its counters. The size cap is
/// shared by all writers of the directory (`total`).
#[derive(Debug)]
pub struct Spool {
    writer: Mutex<Writer>,
    total: Arc<AtomicU64>,
    counters: SpoolCounters,
    /// The latest spool error, for status and summary.
    pub last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dir", &self.cfg.dir)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Bytes the spool directory holds now (segments only).
#[must_use]
pub fn dir_bytes(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

impl Spool {
    /// The latest write error, if any (ops side).
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A writer; `total` is the shared byte count (start it at
    /// [`dir_bytes`]).
    #[must_use]
    pub fn new(cfg: SpoolConfig, id: usize, total: Arc<AtomicU64>) -> Self {
        Self {
            writer: Mutex::new(Writer {
                cfg,
                id,
                file: None,
                last_sync: Instant::now(),
                buf: Vec::new(),
            }),
            total,
            counters: SpoolCounters::default(),
            last_error: Mutex::new(None),
        }
    }

    /// The counters.
    #[must_use]
    pub fn counters(&self) -> &SpoolCounters {
        &self.counters
    }

    /// Parks one record; counts it as parked, or as dropped (`full` or
    /// `error`) when it cannot be written. Returns whether it was parked.
    pub fn park(&self, topic: &str, key: &[u8], payload: &[u8], error: &str) -> bool {
        let mut w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match w.append(&self.total, topic, key, payload, error) {
            Ok(()) => {
                bump(&self.counters.parked);
                true
            }
            Err(e) => {
                match e {
                    SpoolError::Full { .. } => bump(&self.counters.full),
                    SpoolError::Io { .. } => bump(&self.counters.error),
                }
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                false
            }
        }
    }

    /// Flushes, syncs and closes the current segment.
    pub fn close(&self) {
        let mut w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = w.close() {
            *self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close();
    }
}

impl Writer {
    fn io(&self, err: std::io::Error) -> SpoolError {
        SpoolError::Io {
            dir: self.cfg.dir.display().to_string(),
            err,
        }
    }

    fn append(
        &mut self,
        total: &AtomicU64,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        error: &str,
    ) -> Result<(), SpoolError> {
        encode_record(
            &mut self.buf,
            crate::clock::now_ns(),
            topic.as_bytes(),
            key,
            error.as_bytes(),
            payload,
        );
        let len = self.buf.len() as u64;
        let max = self.cfg.max_bytes;
        if total.load(Ordering::Relaxed) + len > max {
            return Err(SpoolError::Full { max });
        }
        if self
            .file
            .as_ref()
            .is_some_and(|(_, _, n)| *n + len > self.cfg.segment_bytes)
        {
            self.close()?;
        }
        if self.file.is_none() {
            std::fs::create_dir_all(&self.cfg.dir).map_err(|e| self.io(e))?;
            let path = self.cfg.dir.join(format!(
                "{:020}-p{}.dlq.open",
                crate::clock::now_ns(),
                self.id
            ));
            let f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| self.io(e))?;
            self.file = Some((BufWriter::new(f), path, 0));
        }
        let Some((f, _, n)) = &mut self.file else {
            return Err(self.io(std::io::Error::other("no segment")));
        };
        let r = f.write_all(&self.buf);
        *n += len;
        total.fetch_add(len, Ordering::Relaxed);
        r.map_err(|e| self.io(e))?;
        let sync = match self.cfg.fsync {
            Fsync::Always => true,
            Fsync::Interval => {
                self.last_sync.elapsed() >= Duration::from_millis(self.cfg.fsync_interval_ms)
            }
            Fsync::Never => false,
        };
        if sync && let Some((f, _, _)) = &mut self.file {
            f.flush()
                .and_then(|()| f.get_ref().sync_data())
                .map_err(|e| SpoolError::Io {
                    dir: self.cfg.dir.display().to_string(),
                    err: e,
                })?;
            self.last_sync = Instant::now();
        } else if let Some((f, _, _)) = &mut self.file {
            // Readers (`dlq list` on a running feed) see whole records.
            f.flush().map_err(|e| SpoolError::Io {
                dir: self.cfg.dir.display().to_string(),
                err: e,
            })?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), SpoolError> {
        if let Some((mut f, path, _)) = self.file.take() {
            f.flush()
                .and_then(|()| f.get_ref().sync_all())
                .map_err(|e| self.io(e))?;
            let closed = path.with_extension("");
            std::fs::rename(&path, &closed).map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}

/// Encodes one whole record (header and body) into `out`, replacing its
/// contents. Topic and key are cut at 65,535 bytes, the error at 1,024.
fn encode_record(
    out: &mut Vec<u8>,
    ts: u64,
    topic: &[u8],
    key: &[u8],
    error: &[u8],
    payload: &[u8],
) {
    let topic = &topic[..topic.len().min(u16::MAX as usize)];
    let key = &key[..key.len().min(u16::MAX as usize)];
    let error = &error[..error.len().min(1024)];
    let payload = &payload[..payload.len().min(u32::MAX as usize)];
    out.clear();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 8]); // body length and CRC, filled below
    out.extend_from_slice(&ts.to_be_bytes());
    for part in [topic, key, error] {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let body_len = (out.len() - HEADER) as u32;
    let crc = crc32fast::hash(&out[HEADER..]);
    out[4..8].copy_from_slice(&body_len.to_be_bytes());
    out[8..12].copy_from_slice(&crc.to_be_bytes());
}

/// Segment files in `dir` (closed `.dlq` and open `.dlq.open`), oldest first.
#[must_use]
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".dlq") || n.ends_with(".dlq.open")
        })
        .collect();
    v.sort();
    v
}

/// `true` for a closed segment (not being written).
#[must_use]
pub fn is_closed(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "dlq")
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Corrupt {
    /// Segment file.
    pub segment: String,
    /// Byte offset of the bad record.
    pub offset: usize,
    /// What was wrong.
    pub why: String,
}

/// Every record of a segment, in order, and every corrupt one (skipped). A
/// torn last record of an open segment is not reported as corrupt.
///
/// # Errors
/// The file cannot be read.
pub fn read_segment(path: &Path) -> std::io::Result<(Vec<Record>, Vec<Corrupt>)> {
    let data = std::fs::read(path)?;
    let seg = path.display().to_string();
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < HEADER || &rest[..4] != MAGIC {
            if rest.len() < HEADER && !is_closed(path) {
                break; // torn tail of a segment being written
            }
            bad.push(Corrupt {
                segment: seg.clone(),
                offset: at,
                why: "bad record header".into(),
            });
            at += resync(&rest[1..]).map_or(rest.len(), |i| i + 1);
            continue;
        }
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let crc = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let Some(body) = rest.get(HEADER..HEADER + len) else {
            if !is_closed(path) {
                break;
            }
            bad.push(Corrupt {
                segment: seg.clone(),
                offset: at,
                why: format!("record of {len} bytes runs past the end of the file"),
            });
            at += resync(&rest[1..]).map_or(rest.len(), |i| i + 1);
            continue;
        };
        if crc32fast::hash(body) != crc {
            bad.push(Corrupt {
                segment: seg.clone(),
                offset: at,
                why: "CRC mismatch".into(),
            });
            at += resync(&rest[1..]).map_or(rest.len(), |i| i + 1);
            continue;
        }
        match parse_body(body) {
            Some(r) => out.push(r),
            None => bad.push(Corrupt {
                segment: seg.clone(),
                offset: at,
                why: "malformed record body".into(),
            }),
        }
        at += HEADER + len;
    }
    Ok((out, bad))
}

fn resync(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == MAGIC)
}

fn parse_body(b: &[u8]) -> Option<Record> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = b.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let ts = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let mut parts = Vec::with_capacity(3);
    for _ in 0..3 {
        let n = u16::from_be_bytes(take(2)?.try_into().ok()?) as usize;
        parts.push(take(n)?.to_vec());
    }
    let n = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
    let payload = take(n)?.to_vec();
    let mut parts = parts.into_iter();
    Some(Record {
        first_failure_ns: ts,
        topic: String::from_utf8(parts.next()?).ok()?,
        key: parts.next()?,
        error: String::from_utf8_lossy(&parts.next()?).into_owned(),
        payload,
    })
}

/// Rewrites a closed segment with only `keep` (atomically: temp + rename);
/// removes it when `keep` is empty.
///
/// # Errors
/// Disk errors.
pub fn rewrite_segment(path: &Path, keep: &[Record]) -> std::io::Result<()> {
    if keep.is_empty() {
        return std::fs::remove_file(path);
    }
    let tmp = path.with_extension("dlq.tmp");
    {
        let mut f = BufWriter::new(File::create(&tmp)?);
        let mut b = Vec::new();
        for r in keep {
            encode_record(
                &mut b,
                r.first_failure_ns,
                r.topic.as_bytes(),
                &r.key,
                r.error.as_bytes(),
                &r.payload,
            );
            f.write_all(&b)?;
        }
        f.flush()?;
        f.get_ref().sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "panda-spool-unit-{}-{}",
            std::process::id(),
            crate::clock::now_ns()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_cap_roll_and_corruption() {
        let dir = tmp();
        let cfg = SpoolConfig {
            dir: dir.clone(),
            max_bytes: 2000,
            segment_bytes: 300,
            fsync: Fsync::Always,
            ..SpoolConfig::default()
        };
        let spool = Spool::new(cfg, 0, Arc::new(AtomicU64::new(0)));
        let mut parked = 0;
        for i in 0..40u32 {
            if spool.park(
                crate::config::defaults::TOPIC,
                i.to_string().as_bytes(),
                &[b'x'; 64],
                "timed out",
            ) {
                parked += 1;
            }
        }
        spool.close();
        let c = spool.counters();
        assert_eq!(c.parked.load(Ordering::Relaxed), parked);
        assert_eq!(
            c.full.load(Ordering::Relaxed),
            40 - parked,
            "the rest hit the cap"
        );
        assert!(parked > 5 && parked < 40);
        let segs = segments(&dir);
        assert!(
            segs.len() > 1 && segs.iter().all(|p| is_closed(p)),
            "{segs:?}"
        );
        let mut keys = Vec::new();
        for s in &segs {
            let (recs, bad) = read_segment(s).unwrap();
            assert!(bad.is_empty());
            keys.extend(
                recs.iter()
                    .map(|r| String::from_utf8(r.key.clone()).unwrap()),
            );
        }
        let want: Vec<String> = (0..parked).map(|i| i.to_string()).collect();
        assert_eq!(keys, want, "in order");

        // Flip a payload byte of the first record: reported and skipped.
        let mut data = std::fs::read(&segs[0]).unwrap();
        data[HEADER + 40] ^= 0xFF;
        std::fs::write(&segs[0], &data).unwrap();
        let (recs, bad) = read_segment(&segs[0]).unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].why, "CRC mismatch");
        assert_eq!(recs[0].key, b"1", "resynchronised on the next record");
    }
}
