//! The dead-letter spool: append-only segment files on local disk holding
//! every record that could not be delivered, so nothing is lost silently.
//!
//! A [`Spool`] is one publisher's writer: it runs on that publisher's
//! thread (from the producer's delivery callback, on the failure path, and
//! from the publisher's idle turns for [`Spool::sync_if_due`]) and owns its
//! one open segment. The byte total behind the cap is shared by every
//! writer of the directory and follows the disk ([`recount`]). The format
//! is in `format.rs`, the files, locks and crash recovery in `files.rs`.
//!
//! Segment files are named `{created_ns:020}-p{writer}-pid{pid}.dlq`; the one
//! being written ends in `.dlq.open`, is locked by its writer, and is renamed
//! when it is closed (rolled, at shutdown, or on drop). An open segment
//! whose writer died (`kill -9`, power loss) is recovered by the next
//! `Spool` start-up or `dlq` command.

mod files;
mod format;

pub use files::{
    LockError, OpenSegment, REQUEUE_LOCK, Recovered, RequeueLock, create_dir_private, dir_bytes,
    is_closed, lock_requeue, owner_pid, recount, recover_stranded, segments, sync_dir,
};
pub use format::{Corrupt, read_segment, rewrite_segment};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use crate::config::{Fsync, SpoolConfig};

/// One spooled record, owned (readers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// When delivery first failed, ns since the epoch.
    pub first_failure_ns: u64,
    /// Whether the record may be on its topic already.
    pub persisted: Persisted,
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
    /// fsyncs of segment data (by policy, on a timer, at close).
    pub syncs: AtomicU64,
    /// Per tier (index [`Tier::index`](crate::tier::Tier::index)), the
    /// records of [`Spool::park_tiered`]: `[parked, full, error]`.
    pub by_tier: [[AtomicU64; 3]; crate::tier::TIERS],
    /// Bar records (README, "Bars"): `[parked, full, error]`, counted here
    /// only, not in the totals above (which are the ticks').
    pub bars: [AtomicU64; 3],
}

/// What a parked record is, for the counters.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A tick, with its tier when known.
    Tick(Option<crate::tier::Tier>),
    /// A bar.
    Bar,
}

impl From<Option<crate::tier::Tier>> for Kind {
    fn from(t: Option<crate::tier::Tier>) -> Self {
        Self::Tick(t)
    }
}

/// Whether a record that failed delivery may nevertheless be on its topic
/// (librdkafka's message status: a timed-out record may have been written
/// by a stalled broker). `dlq requeue` looks up every record that is not
/// [`Persisted::No`] on its topic before republishing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Persisted {
    /// Certainly not written (`RD_KAFKA_MSG_STATUS_NOT_PERSISTED`).
    No,
    /// Maybe written (`RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED`, or sent by
    /// an interrupted requeue).
    Possibly,
    /// Not known (records of the old format, callers that do not say):
    /// treated as possibly written.
    #[default]
    Unknown,
}

impl Persisted {
    /// `true` when requeue must look the record up before republishing it.
    #[must_use]
    pub fn needs_lookup(self) -> bool {
        self != Self::No
    }
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

/// The open segment of a writer.
struct Segment {
    file: File,
    path: PathBuf,
    /// Bytes written to it (whole records only).
    len: u64,
    /// Written since the last fsync.
    dirty: bool,
}

struct Writer {
    cfg: SpoolConfig,
    id: usize,
    seg: Option<Segment>,
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

impl Spool {
    /// The latest write error, if any (ops side).
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_error(&self, e: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
    }

    /// A writer; `total` is the shared byte count, set here to what the
    /// directory holds (and recounted from the disk whenever the cap is
    /// hit). Recovers the open segments of dead writers of the directory
    /// (see [`recover_stranded`]); a failure there is kept as the last
    /// error, not fatal (the segments stay for `dlq` to recover).
    #[must_use]
    pub fn new(cfg: SpoolConfig, id: usize, total: Arc<AtomicU64>) -> Self {
        let spool = Self {
            writer: Mutex::new(Writer {
                id,
                seg: None,
                last_sync: Instant::now(),
                buf: Vec::new(),
                cfg,
            }),
            total,
            counters: SpoolCounters::default(),
            last_error: Mutex::new(None),
        };
        let dir = spool.dir();
        if dir.is_dir() {
            match recover_stranded(&dir) {
                Ok((done, _)) => {
                    for r in done {
                        tracing::warn!(
                            from = %r.from, to = %r.to, owner_pid = ?r.owner_pid,
                            truncated_bytes = r.truncated,
                            "spool: recovered the open segment of a dead writer"
                        );
                    }
                }
                Err(e) => spool.set_error(format!(
                    "cannot recover open segments in {}: {e}",
                    dir.display()
                )),
            }
        }
        // The total starts from what is on disk, whatever the caller
        // passed.
        recount(&dir, &spool.total);
        spool
    }

    fn dir(&self) -> PathBuf {
        self.lock().cfg.dir.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The counters.
    #[must_use]
    pub fn counters(&self) -> &SpoolCounters {
        &self.counters
    }

    /// Parks one record; counts it as parked, or as dropped (`full` or
    /// `error`) when it cannot be written. Returns whether it was parked.
    /// `persisted` is librdkafka's word on whether the record may be on
    /// the topic anyway (pass [`Persisted::Unknown`] when not known).
    pub fn park(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        error: &str,
        persisted: Persisted,
    ) -> bool {
        self.park_as(None, topic, key, payload, error, persisted)
    }

    /// [`park`](Self::park), also counted in the record's tier
    /// ([`SpoolCounters::by_tier`]).
    pub fn park_tiered(
        &self,
        tier: crate::tier::Tier,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        error: &str,
        persisted: Persisted,
    ) -> bool {
        self.park_as(Some(tier), topic, key, payload, error, persisted)
    }

    /// [`park`](Self::park) for a bar record: counted in
    /// [`SpoolCounters::bars`] only.
    pub fn park_bar(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        error: &str,
        persisted: Persisted,
    ) -> bool {
        self.park_as(Kind::Bar, topic, key, payload, error, persisted)
    }

    fn park_as(
        &self,
        kind: impl Into<Kind>,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        error: &str,
        persisted: Persisted,
    ) -> bool {
        let kind = kind.into();
        let by_tier = |outcome: usize| match kind {
            Kind::Tick(Some(t)) => bump(&self.counters.by_tier[t.index()][outcome]),
            Kind::Tick(None) => {}
            Kind::Bar => bump(&self.counters.bars[outcome]),
        };
        let total = |c: &AtomicU64| {
            if let Kind::Tick(_) = kind {
                bump(c);
            }
        };
        let mut w = self.lock();
        let rec = RecordRef {
            persisted,
            topic,
            key,
            payload,
            error,
        };
        match w.append(&self.total, &self.counters, rec) {
            Ok(()) => {
                total(&self.counters.parked);
                by_tier(0);
                true
            }
            Err(e) => {
                match e {
                    SpoolError::Full { .. } => {
                        total(&self.counters.full);
                        by_tier(1);
                    }
                    SpoolError::Io { .. } => {
                        total(&self.counters.error);
                        by_tier(2);
                    }
                }
                drop(w);
                self.set_error(e.to_string());
                false
            }
        }
    }

    /// With `fsync = "interval"`: fsyncs the open segment when it holds
    /// unsynced records and the interval has passed since the last sync.
    /// Cheap when nothing is due (a `try_lock`, a clock read; no
    /// allocation, no system call) and never blocks: when the writer is
    /// busy it returns at once. The publisher calls it from its idle turns
    /// so a burst followed by silence is synced within the interval.
    pub fn sync_if_due(&self) {
        let mut w = match self.writer.try_lock() {
            Ok(w) => w,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if w.cfg.fsync != Fsync::Interval || !w.seg.as_ref().is_some_and(|s| s.dirty) {
            return;
        }
        if w.last_sync.elapsed() < Duration::from_millis(w.cfg.fsync_interval_ms) {
            return;
        }
        if let Err(e) = w.sync(&self.counters) {
            drop(w);
            self.set_error(e.to_string());
        }
    }

    /// Syncs, closes and renames the current segment (to `.dlq`), then
    /// syncs the directory.
    pub fn close(&self) {
        let mut w = self.lock();
        if let Err(e) = w.close(&self.counters) {
            drop(w);
            self.set_error(e.to_string());
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close();
    }
}

/// A record to park, borrowed.
#[derive(Clone, Copy)]
struct RecordRef<'a> {
    persisted: Persisted,
    topic: &'a str,
    key: &'a [u8],
    payload: &'a [u8],
    error: &'a str,
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
        counters: &SpoolCounters,
        r: RecordRef<'_>,
    ) -> Result<(), SpoolError> {
        format::encode_record(
            &mut self.buf,
            crate::clock::now_ns(),
            r.persisted,
            r.topic.as_bytes(),
            r.key,
            r.error.as_bytes(),
            r.payload,
        );
        let len = self.buf.len() as u64;
        let max = self.cfg.max_bytes;
        if total.load(Ordering::Relaxed) + len > max && recount(&self.cfg.dir, total) + len > max {
            return Err(SpoolError::Full { max });
        }
        if self
            .seg
            .as_ref()
            .is_some_and(|s| s.len + len > self.cfg.segment_bytes)
        {
            self.close(counters)?;
        }
        if self.seg.is_none() {
            let (file, path) =
                files::create_segment(&self.cfg.dir, self.id).map_err(|e| self.io(e))?;
            self.seg = Some(Segment {
                file,
                path,
                len: 0,
                dirty: false,
            });
        }
        let Some(s) = &mut self.seg else {
            return Err(self.io(std::io::Error::other("no segment")));
        };
        // One write of the whole record: readers (`dlq list` on a running
        // feed) see whole records, and a killed process cannot tear one.
        if let Err(e) = s.file.write_all(&self.buf) {
            // Nothing is counted; cut off a partial write so the segment
            // stays a sequence of whole records.
            let _ = s.file.set_len(s.len);
            return Err(self.io(e));
        }
        s.len += len;
        s.dirty = true;
        total.fetch_add(len, Ordering::Relaxed);
        let due = match self.cfg.fsync {
            Fsync::Always => true,
            Fsync::Interval => {
                self.last_sync.elapsed() >= Duration::from_millis(self.cfg.fsync_interval_ms)
            }
            Fsync::Never => false,
        };
        if due {
            self.sync(counters)?;
        }
        Ok(())
    }

    fn sync(&mut self, counters: &SpoolCounters) -> Result<(), SpoolError> {
        if let Some(s) = &mut self.seg {
            if let Err(e) = s.file.sync_data() {
                return Err(self.io(e));
            }
            s.dirty = false;
            bump(&counters.syncs);
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    fn close(&mut self, counters: &SpoolCounters) -> Result<(), SpoolError> {
        if let Some(s) = self.seg.take() {
            // On an error the file is dropped (unlocked) under its open
            // name: the next start-up or `dlq` command recovers it.
            s.file.sync_all().map_err(|e| self.io(e))?;
            bump(&counters.syncs);
            let closed = s.path.with_extension("");
            std::fs::rename(&s.path, &closed).map_err(|e| self.io(e))?;
            files::sync_dir(&self.cfg.dir).map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
