//! The shared harness of the integration tests (after mio's `tests/util`).
//!
//! - [`stack`]: the default engine set-up (mock exchange + embedded broker +
//!   engine in a temp dir); a test states only what differs from it.
//! - [`kafka`]: a consumer that reads the whole topic back (each record
//!   parsed as JSON on demand).
//! - [`cli`]: the `panda-feed` binary, run to the end or read line by line.
//! - [`temp`]: the one temp dir type, removed on drop.
//! - [`http`]: a one-request HTTP client for the ops endpoints.
//! - [`framed`]: framed record files and the reference vectors.
//! - [`oracle`]: decoding as `decode --framed` prints it, and the comparison
//!   with the official parser.
//! - here: [`wait_until`] / [`holds_for`], polling with a deadline instead of
//!   sleeping, and [`rss_bytes`].

#![allow(dead_code, reason = "each test binary uses a subset")]

pub(crate) mod cli;
pub(crate) mod framed;
pub(crate) mod http;
pub(crate) mod kafka;
pub(crate) mod oracle;
pub(crate) mod stack;
pub(crate) mod temp;

#[allow(unused_imports, reason = "each test binary uses a subset")]
pub(crate) use {
    framed::{framed, read_framed, vector, vectors_dir},
    oracle::{decode_frame, same_ticks},
    stack::{Stack, engine_config},
    temp::TempDir,
};

use std::time::{Duration, Instant};

/// How often [`wait_until`] looks.
const POLL: Duration = Duration::from_millis(2);
/// How often [`holds_for`] looks: a "nothing happens" window needs no fine
/// resolution, and the condition may be costly (an engine snapshot).
const HOLD_POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub(crate) fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `cond` for the whole of `window`; returns whether it held every
/// time (false at the first time it did not). For "nothing happens" checks.
pub(crate) fn holds_for(window: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + window;
    loop {
        if !cond() {
            return false;
        }
        if Instant::now() >= end {
            return true;
        }
        std::thread::sleep(HOLD_POLL);
    }
}

/// Resident set size of this process, from /proc/self/statm.
pub(crate) fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm has resident pages");
    pages * 4096
}
