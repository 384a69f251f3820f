//! The `run` command's watches, on the main thread: the access token file
//! ([`TokenWatch`], re-read on change and on SIGHUP), the access token
//! command ([`CommandWatch`], re-run on a helper thread) and the signals during
//! the drain ([`drain`]: a second SIGINT/SIGTERM exits at once with
//! [`EXIT_INTERRUPTED`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tracing::{error, info, warn};

use super::run::read_token_file;
use crate::auth::command::{CommandRunner, TokenCommand, run_command};
use crate::config::ZerodhaConfig;
use crate::engine::{Counts, Engine, Summary};
use crate::secret::Secret;

/// Exit status after a second SIGINT/SIGTERM during the drain (128 + SIGINT,
/// as a shell reports an interrupted command).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Stops the engine on a thread of its own while this one watches the
/// signals: a SIGINT/SIGTERM arriving during the drain (after the one that
/// started it, if any) exits at once with [`EXIT_INTERRUPTED`], after
/// printing what was not flushed. Records still in the rings and producers
/// are lost; records already parked stay in the spool (README, `run`).
///
/// # Errors
/// The drain thread cannot be spawned.
pub(super) fn drain(engine: Engine, stop: &AtomicBool) -> anyhow::Result<Summary> {
    let pending = engine.pending();
    // The signal that started the shutdown is spent; the next one is the
    // second. SeqCst: the handler's store and this one are on one flag.
    stop.store(false, Ordering::SeqCst);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let h = std::thread::Builder::new()
        .name("drain".into())
        .spawn(move || {
            // The receiver lives until this thread is joined or the
            // process exits.
            let _ = tx.send(engine.stop());
        })
        .context("spawning the drain thread")?;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(summary) => {
                // The thread has sent its only value: it ends now.
                let _ = h.join();
                return Ok(summary);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the drain thread ended without a summary (it panicked)")
            }
        }
        if stop.load(Ordering::SeqCst) {
            let p = pending.read();
            error!(
                in_rings = p.in_rings,
                in_producers = p.in_producers,
                in_flight = p.in_flight,
                parked = p.parked,
                "second signal during the drain: exiting now with status {EXIT_INTERRUPTED}; \
                 not flushed: {} records ({} in rings, {} in Kafka producers), lost; \
                 {} records parked in the spool stay there (panda-feed dlq requeue)",
                p.in_flight,
                p.in_rings,
                p.in_producers,
                p.parked
            );
            std::process::exit(EXIT_INTERRUPTED);
        }
    }
}

/// Re-reads the access token file when it changes: every second when its
/// metadata (mtime, length, inode) changed, and on SIGHUP always, by
/// content, so a token written with a preserved mtime (`cp -p`, `touch -r`,
/// some secret managers) is picked up by a SIGHUP. A token equal to the
/// current one changes nothing; a different one retries every `auth_failed`
/// connection at once.
#[derive(Debug)]
pub(super) struct TokenWatch {
    path: std::path::PathBuf,
    seen: Option<FileStamp>,
}

/// What the once-a-second check compares: cheap, without reading the file.
type FileStamp = (Option<std::time::SystemTime>, u64, u64);

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok(), m.len(), m.ino()))
}

impl TokenWatch {
    pub(super) fn new(path: std::path::PathBuf) -> Self {
        let seen = file_stamp(&path);
        Self { path, seen }
    }

    /// `forced` (SIGHUP): read the file whatever its metadata says.
    pub(super) fn check(&mut self, engine: &Engine, forced: bool) {
        let stamp = file_stamp(&self.path);
        if stamp == self.seen && !forced {
            return;
        }
        self.seen = stamp;
        match read_token_file(&self.path) {
            Ok(t) => {
                if engine.set_access_token(t) {
                    info!(
                        "access token file {} changed; using the new token",
                        self.path.display()
                    );
                } else if forced {
                    info!(
                        "SIGHUP: access token file {} re-read; the token is unchanged",
                        self.path.display()
                    );
                }
            }
            Err(e) => warn!("{e:#}; keeping the current token"),
        }
    }
}

/// Re-runs the access token command on its helper thread, never blocking
/// the loop: on SIGHUP; while a connection is refused (`auth_failed`), at
/// most once per `zerodha.access_token_command_retry_ms`; and every
/// `access_token_command_refresh_ms` when that is not 0. A new token retries
/// every `auth_failed` connection at once; a failed run keeps the current
/// token. Each run is logged with the running counts (ok, failed, timed
/// out), and [`CommandWatch::report`] logs the totals at exit.
#[derive(Debug)]
pub(super) struct CommandWatch {
    runner: CommandRunner,
    retry: Duration,
    refresh: Option<Duration>,
    hup_pending: bool,
}

impl CommandWatch {
    /// Runs the command once, here (start-up: nothing runs yet, so waiting
    /// up to its timeout blocks nothing); the token and the watch.
    ///
    /// # Errors
    /// The run failed or timed out (the message names the command).
    pub(super) fn start(cmd: TokenCommand, z: &ZerodhaConfig) -> anyhow::Result<(Secret, Self)> {
        let first = run_command(&cmd);
        let mut runner = CommandRunner::new(cmd);
        runner.counts.count(&first);
        runner.last_start = Some(std::time::Instant::now());
        let token = first?;
        info!(
            "access token from command {:?} (zerodha.access_token_command)",
            runner.command().name()
        );
        let ms = Duration::from_millis;
        Ok((
            token,
            Self {
                runner,
                retry: ms(z.access_token_command_retry_ms),
                refresh: (z.access_token_command_refresh_ms > 0)
                    .then(|| ms(z.access_token_command_refresh_ms)),
                hup_pending: false,
            },
        ))
    }

    /// Collects a finished run and starts one when due; never blocks.
    pub(super) fn poll(&mut self, engine: &Engine, counts: &Counts, hup: bool) {
        self.hup_pending |= hup;
        if let Some(r) = self.runner.try_result() {
            let c = self.runner.counts;
            let name = self.runner.command().name().to_owned();
            match r.map(|t| engine.set_access_token(t)) {
                Ok(true) => info!(
                    ok = c.ok,
                    failed = c.failed,
                    timed_out = c.timed_out,
                    "access token command {name:?} printed a new token; using it"
                ),
                Ok(false) => info!(
                    ok = c.ok,
                    failed = c.failed,
                    timed_out = c.timed_out,
                    "access token command {name:?} re-run; the token is unchanged"
                ),
                Err(e) => warn!(
                    ok = c.ok,
                    failed = c.failed,
                    timed_out = c.timed_out,
                    "{e}; keeping the current token"
                ),
            }
        }
        if self.runner.is_running() {
            return;
        }
        let since = self
            .runner
            .last_start
            .map_or(Duration::MAX, |t| t.elapsed());
        let auth_failed = counts.connections.iter().any(|c| c.state == "auth_failed");
        let due = self.hup_pending
            || (auth_failed && since >= self.retry)
            || self.refresh.is_some_and(|r| since >= r);
        if due && self.runner.start() {
            self.hup_pending = false;
        }
    }

    /// Logs the runs' totals (at exit).
    pub(super) fn report(&self) {
        let c = self.runner.counts;
        info!(
            ok = c.ok,
            failed = c.failed,
            timed_out = c.timed_out,
            "access token command {:?}: {} runs ok, {} failed, {} timed out",
            self.runner.command().name(),
            c.ok,
            c.failed,
            c.timed_out
        );
    }
}
