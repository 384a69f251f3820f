//! Segment files and locks of the dead-letter spool: listing, sizes, the
//! recovery of open segments whose writer died, the `requeue.lock`. Called
//! from a publisher thread's [`super::Spool::new`], from the ops sampler
//! ([`recount`]) and from the `dlq` commands. Owns no state beyond the
//! files it opens.
//!
//! One writer per segment: a writer holds an advisory `flock` on its
//! `.dlq.open` file for as long as the file is open (it is taken before the
//! file gets its `.dlq.open` name, and dies with the process). A
//! `.dlq.open` whose lock can be taken has no writer: it is recovered
//! (torn tail truncated, renamed to `.dlq`). Segment names carry the
//! writer's pid: `{created_ns:020}-p{publisher}-pid{pid}.dlq[.open]`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Name of the requeue lock file in the spool directory.
pub const REQUEUE_LOCK: &str = "requeue.lock";

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

/// Bytes the spool directory holds now (segments only, open ones up to
/// their last flushed byte: writers flush every record).
#[must_use]
pub fn dir_bytes(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Sets the shared byte total to what the directory holds now and returns
/// it: one `readdir` and one `stat` per segment, no file is read. The spool
/// calls it when a record would pass the cap; the ops sampler should call
/// it once per sample so the `spool_bytes` gauge and the cap follow
/// `dlq purge`/`requeue` and other processes.
///
/// A writer of this process appending at the same moment may be counted
/// twice or not at all until the next recount; the error is one record.
pub fn recount(dir: &Path, total: &AtomicU64) -> u64 {
    let n = dir_bytes(dir);
    total.store(n, Ordering::Relaxed);
    n
}

/// The pid in a segment's name (`…-pid{pid}.dlq[.open]`), if any (segments
/// written before pids were recorded have none).
#[must_use]
pub fn owner_pid(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let stem = name.split('.').next()?;
    stem.rsplit_once("-pid")?.1.parse().ok()
}

/// fsyncs a directory (after a file in it was created, renamed or removed).
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the spool directory (and missing parents) with mode 0700; an
/// existing directory is left as it is.
///
/// # Errors
/// It cannot be created.
pub fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates a new open segment for publisher `id`, locked by this process
/// (created under a `.dlq.creating` name, locked, then renamed, so no
/// `.dlq.open` is ever unlocked while its writer lives). Mode 0600.
pub(super) fn create_segment(dir: &Path, id: usize) -> std::io::Result<(File, PathBuf)> {
    create_dir_private(dir)?;
    let stem = format!(
        "{:020}-p{id}-pid{}",
        crate::clock::now_ns(),
        std::process::id()
    );
    let tmp = dir.join(format!("{stem}.dlq.creating"));
    let path = dir.join(format!("{stem}.dlq.open"));
    let f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(0o600)
        .open(&tmp)?;
    f.try_lock().map_err(std::io::Error::from)?;
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok((f, path))
}

/// An open segment and whether its writer is alive (`dlq stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenSegment {
    /// The file.
    pub segment: String,
    /// Its writer's pid, from its name.
    pub owner_pid: Option<u32>,
    /// Bytes.
    pub bytes: u64,
}

/// An open segment of a dead writer, now closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// The `.dlq.open` it was.
    pub from: String,
    /// The `.dlq` it is now.
    pub to: String,
    /// The dead writer's pid, from its name.
    pub owner_pid: Option<u32>,
    /// Bytes of a torn last record cut off.
    pub truncated: u64,
}

/// Recovers every `.dlq.open` of `dir` whose writer is gone (its lock can
/// be taken): a torn tail is truncated, the file synced and renamed to its
/// closed name, the directory synced. Returns the recovered segments and
/// the open segments whose writer is alive (left alone).
///
/// # Errors
/// A segment cannot be read, truncated or renamed.
pub fn recover_stranded(dir: &Path) -> std::io::Result<(Vec<Recovered>, Vec<OpenSegment>)> {
    remove_unborn(dir)?;
    let mut done = Vec::new();
    let mut alive = Vec::new();
    for path in segments(dir).into_iter().filter(|p| !is_closed(p)) {
        let mut f = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            // Closed or recovered by someone else since the listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match f.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                alive.push(OpenSegment {
                    segment: path.display().to_string(),
                    owner_pid: owner_pid(&path),
                    bytes: f.metadata().map_or(0, |m| m.len()),
                });
                continue;
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        if !path.exists() {
            continue; // its writer closed it between our open and our lock
        }
        let mut data = Vec::new();
        f.read_to_end(&mut data)?;
        let scan = super::format::scan(&data, &path.display().to_string(), true);
        let truncated = match scan.torn_at {
            Some(at) => {
                f.set_len(at as u64)?;
                (data.len() - at) as u64
            }
            None => 0,
        };
        f.sync_all()?;
        let to = path.with_extension("");
        std::fs::rename(&path, &to)?;
        sync_dir(dir)?;
        done.push(Recovered {
            from: path.display().to_string(),
            to: to.display().to_string(),
            owner_pid: owner_pid(&path),
            truncated,
        });
    }
    Ok((done, alive))
}

/// Removes the empty `.dlq.creating` files of writers that died between
/// creating a segment and naming it (nothing was ever written to them).
/// Only files older than a minute: a live writer names its file
/// microseconds after creating it.
fn remove_unborn(dir: &Path) -> std::io::Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for path in rd.filter_map(Result::ok).map(|e| e.path()) {
        if !path.to_str().is_some_and(|n| n.ends_with(".dlq.creating")) {
            continue;
        }
        let Ok(f) = File::open(&path) else { continue };
        let stale = f.metadata().is_ok_and(|m| {
            m.len() == 0
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(60))
        });
        if stale && f.try_lock().is_ok() {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The `requeue.lock` of a spool directory, held while it lives.
#[derive(Debug)]
pub struct RequeueLock {
    _file: File,
}

/// Why the requeue lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another requeue is running on {dir} (pid {}; lock file {dir}/{REQUEUE_LOCK}); wait for it to finish or stop it",
        pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    )]
    Held {
        /// The spool directory.
        dir: String,
        /// The holder, as it wrote itself into the lock file.
        pid: Option<u32>,
    },
    /// Disk error.
    #[error("cannot take the requeue lock in {dir}: {err}")]
    Io {
        /// The spool directory.
        dir: String,
        /// Cause.
        err: std::io::Error,
    },
}

/// Takes the requeue lock of `dir` without waiting (`flock` on
/// `requeue.lock`, which records the holder's pid), or says who holds it.
///
/// # Errors
/// [`LockError::Held`] when another process holds it; disk errors.
pub fn lock_requeue(dir: &Path) -> Result<RequeueLock, LockError> {
    let io = |err| LockError::Io {
        dir: dir.display().to_string(),
        err,
    };
    let path = dir.join(REQUEUE_LOCK);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut s = String::new();
            let _ = f.read_to_string(&mut s);
            return Err(LockError::Held {
                dir: dir.display().to_string(),
                pid: s.trim().parse().ok(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    f.set_len(0).map_err(io)?;
    writeln!(f, "{}", std::process::id()).map_err(io)?;
    Ok(RequeueLock { _file: f })
}
