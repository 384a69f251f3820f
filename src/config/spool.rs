//! `[spool]`: the dead-letter spool's settings. Read on the main thread; each
//! publisher's spool writer (`crate::spool`) consumes them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defaults;

/// When the spool calls `fsync`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// After every record: nothing parked is lost on power failure.
    Always,
    /// Every `fsync_interval_ms` while a segment holds unsynced records
    /// (on the next record, or on the publisher's idle turn through
    /// `Spool::sync_if_due`), and when a segment closes.
    #[default]
    Interval,
    /// Only when a segment closes (the OS flushes otherwise).
    Never,
}

/// `[spool]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
            dir: PathBuf::from(defaults::SPOOL_DIR),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            fsync: Fsync::Interval,
            fsync_interval_ms: 1000,
        }
    }
}

impl SpoolConfig {
    /// Every problem with the `[spool]` numbers (README "Ranges").
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (k, v) in [
            ("spool.max_bytes", self.max_bytes),
            ("spool.segment_bytes", self.segment_bytes),
            ("spool.fsync_interval_ms", self.fsync_interval_ms),
        ] {
            super::ranges::check(&mut p, k, v);
        }
        p
    }
}
