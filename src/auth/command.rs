//! The access token command (`zerodha.access_token_command`): an external
//! program, run as an argv (no shell), whose stdout is the access token.
//!
//! [`run_command`] blocks the thread that calls it for at most the
//! command's timeout: the main thread at start-up and in `auth status`.
//! [`CommandRunner`] runs it on a `token-command` helper thread instead and
//! is polled, so the `run` main loop never waits on it.
//!
//! The contract (README "Credentials and auth"): exit status 0 and one
//! token on stdout (surrounding whitespace trimmed, at most
//! [`MAX_STDOUT_BYTES`]); anything else is a failure. The child gets its own
//! process group; at the timeout the whole group is killed with SIGKILL (so
//! a `sleep` it started dies too) and the child is reaped. Neither stream is
//! ever logged: stdout is the token, and stderr may hold it too, so a
//! failure reports the command's name, its exit status and the size of its
//! stderr only.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use crate::secret::Secret;

/// Most bytes read from the command's stdout; more is a failure.
pub const MAX_STDOUT_BYTES: usize = 64 * 1024;
/// Most bytes of stderr read (and counted; never shown).
const MAX_STDERR_BYTES: usize = 64 * 1024;
/// How often the exit of the child is polled.
const POLL: Duration = Duration::from_millis(5);

/// The command and its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCommand {
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Killed after this long.
    pub timeout: Duration,
}

impl TokenCommand {
    /// The program's name, for messages.
    #[must_use]
    pub fn name(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }
}

/// Why a run of the command gave no token. Holds no output of the command.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// `zerodha.access_token_command` is an empty list.
    #[error("zerodha.access_token_command is empty")]
    NoProgram,
    /// The program could not be started.
    #[error("access token command {name:?} could not start: {source}")]
    Spawn {
        /// `argv[0]`.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The timeout passed: the process group was killed.
    #[error(
        "access token command {name:?} timed out after {timeout_ms} ms: killed it \
         (its whole process group); make it finish sooner or raise \
         zerodha.access_token_command_timeout_ms"
    )]
    TimedOut {
        /// `argv[0]`.
        name: String,
        /// The timeout.
        timeout_ms: u128,
    },
    /// A non-zero exit status or a signal.
    #[error(
        "access token command {name:?} failed ({status}); its stderr ({stderr_bytes} bytes) \
         is not shown as it may hold a token: run the command by hand to see it"
    )]
    Failed {
        /// `argv[0]`.
        name: String,
        /// As `ExitStatus` shows it.
        status: String,
        /// Bytes of stderr read.
        stderr_bytes: usize,
    },
    /// Exit status 0, but stdout was not one token.
    #[error("access token command {name:?} {why}; it must print the token alone and exit 0")]
    BadOutput {
        /// `argv[0]`.
        name: String,
        /// What was wrong (never the output itself).
        why: &'static str,
    },
}

impl CommandError {
    /// `true` for [`CommandError::TimedOut`].
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::TimedOut { .. })
    }
}

/// Runs `cmd` to its end or its timeout, on this thread; the token.
///
/// # Errors
/// The command cannot start, times out (it and its process group are
/// killed and reaped), fails, or prints no single token.
pub fn run_command(cmd: &TokenCommand) -> Result<Secret, CommandError> {
    run_tracked(cmd, &AtomicU32::new(0))
}

/// [`run_command`], with the child's pid in `pid` while it runs (0 before
/// and after), so [`CommandRunner`] can kill it when the feed stops.
fn run_tracked(cmd: &TokenCommand, pid: &AtomicU32) -> Result<Secret, CommandError> {
    let name = cmd.name().to_owned();
    let (program, args) = cmd.argv.split_first().ok_or(CommandError::NoProgram)?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: the timeout kills every process in it.
        .process_group(0)
        .spawn()
        .map_err(|source| CommandError::Spawn {
            name: name.clone(),
            source,
        })?;
    // Relaxed: the value is read by the owner's drop to kill the group;
    // no other memory is published through it.
    pid.store(child.id(), Ordering::Relaxed);
    let result = wait_for(cmd, &name, &mut child);
    pid.store(0, Ordering::Relaxed);
    result
}

/// The rest of [`run_tracked`]: the exit, the output, the verdict.
fn wait_for(cmd: &TokenCommand, name: &str, child: &mut Child) -> Result<Secret, CommandError> {
    let name = name.to_owned();
    let deadline = Instant::now() + cmd.timeout;
    let stdout = read_on_thread(child.stdout.take(), MAX_STDOUT_BYTES);
    let stderr = read_on_thread(child.stderr.take(), MAX_STDERR_BYTES);
    let timed_out = || CommandError::TimedOut {
        name: name.clone(),
        timeout_ms: cmd.timeout.as_millis(),
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(child);
                return Err(timed_out());
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                kill_group(child);
                return Err(CommandError::Failed {
                    name,
                    status: format!("waiting for it failed: {e}"),
                    stderr_bytes: 0,
                });
            }
        }
    };
    // The child is reaped; a process it left behind may still hold the
    // pipes open: wait for them until the deadline, then kill the group.
    let left = |d: Instant| d.saturating_duration_since(Instant::now());
    let (Some(out), Some(err)) = (
        recv_until(&stdout, left(deadline)),
        recv_until(&stderr, left(deadline)),
    ) else {
        kill_group(child);
        return Err(timed_out());
    };
    let bad = |why| CommandError::BadOutput {
        name: name.clone(),
        why,
    };
    // First: past the limit, the pipe was closed and the exit status is
    // likely SIGPIPE's.
    if out.len() > MAX_STDOUT_BYTES {
        return Err(bad("printed more than 64 KiB on stdout"));
    }
    if !status.success() {
        return Err(CommandError::Failed {
            name: name.clone(),
            status: status.to_string(),
            stderr_bytes: err.len(),
        });
    }
    let text = std::str::from_utf8(&out).map_err(|_| bad("printed bytes that are not UTF-8"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(bad("exited 0 but printed nothing on stdout"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            "printed more than one word (or a control character) on stdout",
        ));
    }
    Ok(Secret::new(token))
}

/// Reads up to `max + 1` bytes of `pipe` on a thread of its own; the bytes
/// arrive on the receiver at EOF.
fn read_on_thread<R: Read + Send + 'static>(pipe: Option<R>, max: usize) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::sync_channel(1);
    if let Some(pipe) = pipe {
        // Without a thread the sender is dropped: the receiver sees no
        // output ever, and the run ends as a timeout (the group killed).
        let _ = std::thread::Builder::new()
            .name("token-command-io".into())
            .spawn(move || {
                let mut buf = Vec::new();
                // Read one byte past the limit to see that it was passed;
                // past that the pipe is closed and the writer gets EPIPE.
                let _ = pipe.take(max as u64 + 1).read_to_end(&mut buf);
                let _ = tx.send(buf);
            });
    } else {
        let _ = tx.send(Vec::new());
    }
    rx
}

fn recv_until(rx: &Receiver<Vec<u8>>, wait: Duration) -> Option<Vec<u8>> {
    rx.recv_timeout(wait).ok()
}

/// SIGKILL to the child's process group (the `kill` utility: the crate has
/// no `unsafe` outside `sys/`, and this is the cold path), then to the child
/// itself, then reaps it.
fn kill_group(child: &mut Child) {
    signal_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// `kill -KILL -- -pgid`.
fn signal_group(pgid: u32) {
    let group = format!("-{pgid}");
    let killed = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = killed {
        tracing::warn!(
            "cannot run `kill -KILL -- {group}` ({e}): only the token command itself is \
             killed; processes it started may live on"
        );
    }
}

/// What one run of the command ended as (the counters of [`CommandRunner`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandCounts {
    /// Runs that gave a token.
    pub ok: u64,
    /// Runs that failed (start, exit status, output).
    pub failed: u64,
    /// Runs killed at the timeout.
    pub timed_out: u64,
}

impl CommandCounts {
    /// Counts `r`.
    pub fn count(&mut self, r: &Result<Secret, CommandError>) {
        match r {
            Ok(_) => self.ok += 1,
            Err(e) if e.is_timeout() => self.timed_out += 1,
            Err(_) => self.failed += 1,
        }
    }
}

/// Runs the command on a helper thread, one run at a time, and hands the
/// result to whoever polls ([`CommandRunner::try_result`]).
#[derive(Debug)]
pub struct CommandRunner {
    cmd: TokenCommand,
    running: Option<Receiver<Result<Secret, CommandError>>>,
    /// The pid (and process group) of the running child, 0 when none.
    pid: Arc<AtomicU32>,
    /// When the last run started.
    pub last_start: Option<Instant>,
    /// The runs so far.
    pub counts: CommandCounts,
}

impl CommandRunner {
    /// A runner of `cmd`; nothing runs yet.
    #[must_use]
    pub fn new(cmd: TokenCommand) -> Self {
        Self {
            cmd,
            running: None,
            pid: Arc::new(AtomicU32::new(0)),
            last_start: None,
            counts: CommandCounts::default(),
        }
    }

    /// The command.
    #[must_use]
    pub fn command(&self) -> &TokenCommand {
        &self.cmd
    }

    /// `true` while a run is under way.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Starts a run on a helper thread unless one is under way; `false`
    /// when none was started.
    pub fn start(&mut self) -> bool {
        if self.running.is_some() {
            return false;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let cmd = self.cmd.clone();
        let pid = Arc::clone(&self.pid);
        let spawned = std::thread::Builder::new()
            .name("token-command".into())
            .spawn(move || {
                // The receiver may be gone (the feed is stopping).
                let _ = tx.send(run_tracked(&cmd, &pid));
            });
        if spawned.is_err() {
            return false;
        }
        self.running = Some(rx);
        self.last_start = Some(Instant::now());
        true
    }

    /// The result of the run under way, once it has ended (counted);
    /// never blocks.
    pub fn try_result(&mut self) -> Option<Result<Secret, CommandError>> {
        let rx = self.running.as_ref()?;
        let r = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err(CommandError::Failed {
                name: self.cmd.name().to_owned(),
                status: "its helper thread panicked".into(),
                stderr_bytes: 0,
            }),
        };
        self.running = None;
        self.counts.count(&r);
        Some(r)
    }
}

impl Drop for CommandRunner {
    /// A run still under way when the feed stops is killed with its process
    /// group (it has a group of its own, so no terminal signal reaches it);
    /// the helper thread then reaps it.
    fn drop(&mut self) {
        let pid = self.pid.load(Ordering::Relaxed);
        if self.running.is_some() && pid != 0 {
            signal_group(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64) -> TokenCommand {
        TokenCommand {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn stdout_is_the_token_trimmed() {
        let t = run_command(&sh("printf '  tok123\\n'", 5000)).unwrap();
        assert_eq!(t.expose(), "tok123");
    }

    #[test]
    fn failures_never_carry_the_output() {
        let e = run_command(&sh("echo s3cr3t_out; echo s3cr3t_err >&2; exit 3", 5000)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("exit status: 3") && text.contains("\"sh\""),
            "{text}"
        );
        assert!(!text.contains("s3cr3t"), "{text}");
        for (script, why) in [
            ("true", "nothing"),
            ("echo two words", "more than one word"),
            ("head -c 70000 /dev/zero | tr '\\0' a", "64 KiB"),
        ] {
            let e = run_command(&sh(script, 5000)).unwrap_err().to_string();
            assert!(e.contains(why), "{script}: {e}");
        }
        let e = run_command(&TokenCommand {
            argv: vec!["/nonexistent/token-cmd".into()],
            timeout: Duration::from_secs(1),
        })
        .unwrap_err();
        assert!(e.to_string().contains("could not start"), "{e}");
    }

    #[test]
    fn a_grandchild_holding_stdout_is_killed_at_the_timeout() {
        let t0 = Instant::now();
        let e = run_command(&sh("echo tok; sleep 30 &", 300)).unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_runner_counts_its_runs() {
        let mut r = CommandRunner::new(sh("echo tok", 5000));
        assert!(r.start());
        assert!(!r.start(), "one run at a time");
        let deadline = Instant::now() + Duration::from_secs(10);
        let res = loop {
            if let Some(res) = r.try_result() {
                break res;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(res.unwrap().expose(), "tok");
        assert_eq!(
            r.counts,
            CommandCounts {
                ok: 1,
                failed: 0,
                timed_out: 0
            }
        );
        let mut r = CommandRunner::new(sh("sleep 30", 100));
        assert!(r.start());
        let deadline = Instant::now() + Duration::from_secs(10);
        let res = loop {
            if let Some(res) = r.try_result() {
                break res;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(res.unwrap_err().is_timeout());
        assert_eq!(r.counts.timed_out, 1);
        // Dropped while its command runs: the command's group is killed.
        let mut r = CommandRunner::new(sh("sleep 30", 60_000));
        assert!(r.start());
        let pid = Arc::clone(&r.pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        let child = pid.load(Ordering::Relaxed);
        drop(r);
        // The helper thread reaps it: the pid slot goes back to 0.
        while pid.load(Ordering::Relaxed) != 0 {
            assert!(Instant::now() < deadline, "{child} still runs");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
