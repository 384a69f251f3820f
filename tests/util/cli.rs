//! The `panda-feed` binary as a user runs it: a command with arguments, its
//! output and exit status, or a running process whose stderr is read line by
//! line with a deadline.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wait_until;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_panda-feed");

/// `panda-feed <args>`, with the Kite credentials of the environment
/// removed (a test that wants them sets them on the command).
pub(crate) fn panda_feed<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("ZERODHA__API_KEY")
        .env_remove("ZERODHA__ACCESS_TOKEN")
        // Tests run `run` in parallel: the downstream stream on a free port,
        // never on the default 9101 (a test may override it).
        .env("OPS__STREAM_LISTEN", "127.0.0.1:0");
    cmd
}

/// `panda-feed run <args>` with the ops server on a free port: tests run in
/// parallel, so never on the default 9187.
pub(crate) fn feed_run<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = panda_feed(["run", "--ops-listen", "127.0.0.1:0"]);
    cmd.args(args);
    cmd
}

/// Runs `cmd` to the end with empty stdin; its output and exit status.
pub(crate) fn output(cmd: &mut Command) -> Output {
    output_with_stdin(cmd, &[])
}

/// Runs `cmd` to the end with `stdin` as its input; its output and exit
/// status.
pub(crate) fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn panda-feed");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait for panda-feed")
}

/// stderr of a finished command, as text.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `panda-feed` whose stderr lines arrive on a channel (read by a
/// thread of its own, so the process never blocks on a full pipe).
#[derive(Debug)]
pub(crate) struct Running {
    child: Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    /// Lines already taken by [`Running::expect_line`], in order.
    pub(crate) seen: Vec<String>,
}

impl Running {
    /// Spawns `cmd` with stderr piped.
    pub(crate) fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn panda-feed");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Takes stderr lines until one matches `pred` and returns it; panics,
    /// with the lines seen, if stderr ends or `timeout` passes first.
    pub(crate) fn expect_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no such line within {timeout:?}:\n{}", self.seen.join("\n"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("stderr ended before the line:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// The ops server's address, from its start-up line.
    pub(crate) fn ops_addr(&mut self) -> String {
        let serving = self.expect_line(Duration::from_secs(60), |l| {
            l.contains("ops: serving http://")
        });
        serving
            .split_once("ops: serving http://")
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or_else(|| panic!("no ops address in {serving:?}"))
            .to_owned()
    }

    /// Sends `signal` (`HUP`, `TERM`, ...), as an operator's `kill` would.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.id());
    }

    /// Sends SIGTERM, as an operator's `kill` would.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.id());
    }

    /// Waits up to `timeout` for the process to exit (kills it and panics
    /// after that); its exit status and the stderr lines not yet taken by
    /// [`Running::expect_line`].
    pub(crate) fn wait(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let mut status = None;
        let exited = wait_until(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "panda-feed still running after {timeout:?}:\n{}",
                self.seen.join("\n")
            );
        }
        // The pipe closes with the process: the reader ends on its own.
        if let Some(r) = self.reader.take() {
            r.join().expect("the stderr reader panicked");
        }
        let rest = self.lines.try_iter().collect();
        (status.expect("exited"), rest)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panicked leaves no process behind.
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
