//! Hardened edges, tried the way the world would break them: a token written
//! while an upgrade is in flight, a token written with its old mtime, a
//! second signal during a stalled flush, huge and hostile server text
//! frames, a hung resolver, a flooding connection.

#![cfg(feature = "test-hooks")]

mod util;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use panda_feed::config::defaults;
use panda_feed::engine::Secret;
use serde_json::Value;
use util::cli::{Running, feed_run};
use util::stack::Exchange;
use util::{Stack, holds_for, wait_until};

/// Sends `sig` (`HUP`, `INT`, `TERM`) to `pid`, as an operator's `kill` would.
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// A `/proc/<pid>/…` field in kB (`VmRSS`, `VmHWM`) or bytes (`rchar`).
fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).expect("read /proc");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/{file}"))
}

fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary written")).unwrap()
}

/// `run` against `x`'s mock and broker, with one instrument and the token
/// in `token`.
fn feed(x: &Exchange, token: &Path) -> Command {
    let csv = x.dir.file(
        "one.csv",
        "instrument_token,tradingsymbol,name,exchange\n256265,NIFTY 50,NIFTY 50,NSE\n",
    );
    let mut cmd = feed_run(["--ws-url", &x.mock.ws_url(), "--api-key", "mock_api_key"]);
    cmd.arg("--access-token-file")
        .arg(token)
        .arg("--instruments")
        .arg(csv)
        .args(["--brokers", x.brokers()])
        // The spool (parked records) stays in the test's dir.
        .current_dir(x.dir.path());
    cmd
}

fn token_file(x: &Exchange, token: &str) -> PathBuf {
    x.dir.file("token", format!("{token}\n"))
}

#[test]
fn a_token_written_while_the_upgrade_is_in_flight_is_retried_with_it() {
    let mut s = Stack::builder()
        .tag("edges-token-race")
        .partitions(1)
        .instruments(5)
        .faults(|f| f.upgrade_delay_ms.store(1_500, SeqCst))
        .engine(|c| c.access_token = Secret::new("yesterdays_token"))
        .start();
    // The upgrade with yesterday's token is at the server, unanswered.
    assert!(wait_until(Duration::from_secs(20), || {
        s.mock.stats().upgrade_requests.load(SeqCst) >= 1
    }));
    assert!(
        s.engine
            .set_access_token(Secret::new(defaults::MOCK_ACCESS_TOKEN))
    );
    // Its 403 arrives after the new token: the feed retries with the new one.
    assert!(
        wait_until(Duration::from_secs(30), || s.engine.counts().connections[0]
            .state
            == "open"),
        "{:#?}",
        s.engine.counts().connections
    );
    assert_eq!(s.mock.stats().rejected_403.load(SeqCst), 1);
    assert_eq!(s.mock.stats().connections.load(SeqCst), 1);
    let c = &s.engine.counts().connections[0];
    assert_eq!((c.attempts, c.reconnects["http_403"]), (2, 1));
}

#[test]
fn a_token_written_with_its_old_mtime_is_picked_up_on_sighup() {
    let x = Stack::builder()
        .tag("edges-sighup")
        .partitions(1)
        .start_exchange();
    // Same length as the right token: only the content differs.
    let token = token_file(&x, "xock_access_token");
    let s = x.dir.join("summary.json");
    let mut run = Running::spawn(feed(&x, &token).arg("--summary").arg(&s));
    run.expect_line(Duration::from_secs(30), |l| {
        l.contains("waiting for a new access token")
    });
    // The new token, written as `cp -p` would: the old mtime kept.
    let mtime = std::fs::metadata(&token).unwrap().modified().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&token)
        .unwrap();
    f.write_all(b"mock_access_token\n").unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    // Mtime, length and inode are as before: the once-a-second check cannot
    // see the change...
    assert!(holds_for(Duration::from_millis(2_500), || {
        x.mock.stats().connections.load(SeqCst) == 0
    }));
    // ...and SIGHUP re-reads the file by content.
    signal(run.id(), "HUP");
    assert!(
        wait_until(Duration::from_secs(20), || {
            x.mock.stats().connections.load(SeqCst) == 1
        }),
        "{}",
        run.seen.join("\n")
    );
    run.terminate();
    let seen = run.seen.clone();
    let (status, rest) = run.wait(Duration::from_secs(60));
    let all = [seen, rest].concat().join("\n");
    assert!(status.success(), "{status:?}\n{all}");
    let s = summary(&s);
    assert_eq!(s["connections"][0]["attempts"], 2, "{s:#}");
    assert_eq!(s["connections"][0]["reconnects"]["http_403"], 1, "{s:#}");
    assert!(!s.to_string().contains("mock_access_token"));
}

#[test]
fn a_second_signal_during_a_stalled_flush_exits_130_at_once() {
    let x = Stack::builder()
        .tag("edges-second-signal")
        .partitions(1)
        .mock(|m| m.rate_per_s = 2_000)
        .start_exchange();
    let token = token_file(&x, defaults::MOCK_ACCESS_TOKEN);
    let config = x.dir.file(
        "feed.toml",
        "[kafka]\nflush_timeout_ms = 60000\nmessage_timeout_ms = 120000\n\
         [run]\nstatus_interval_ms = 200\n",
    );
    let mut run = Running::spawn(feed(&x, &token).arg("--config").arg(&config));
    run.expect_line(Duration::from_secs(60), |l| {
        l.contains("/s out") && !l.contains("published 0 ")
    });
    // The broker goes away; ticks keep arriving and pile up in the producer.
    drop(x.broker);
    run.expect_line(Duration::from_secs(30), |l| {
        l.contains("/s out") && !l.contains("in_flight 0 ")
    });
    signal(run.id(), "INT");
    run.expect_line(Duration::from_secs(10), |l| l.contains("stopping (signal)"));
    // The flush waits for the dead broker (up to 60 s)...
    let pid = run.id();
    assert!(holds_for(Duration::from_secs(1), || {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }));
    // ...until the operator insists.
    let t0 = Instant::now();
    signal(pid, "INT");
    let (status, rest) = run.wait(Duration::from_secs(10));
    let took = t0.elapsed();
    eprintln!("exit {:?} {took:?} after the second SIGINT", status.code());
    let all = rest.join("\n");
    assert_eq!(status.code(), Some(130), "{all}");
    assert!(took < Duration::from_secs(1), "exited after {took:?}");
    let line = rest
        .iter()
        .find(|l| l.contains("second signal during the drain"))
        .unwrap_or_else(|| panic!("no exit line:\n{all}"));
    assert!(
        line.contains("not flushed") && line.contains("parked"),
        "{line}"
    );
    assert!(!line.contains("not flushed: 0 records"), "{line}");
    drop(x.mock);
}

#[test]
fn huge_text_frames_are_counted_unparsed_and_memory_stays_bounded() {
    const HUGE: usize = 16_000_000;
    const LARGE: usize = 200_000;
    let x = Stack::builder()
        .tag("edges-huge-text")
        .partitions(1)
        .start_exchange();
    let token = token_file(&x, defaults::MOCK_ACCESS_TOKEN);
    let s = x.dir.join("summary.json");
    let mut run = Running::spawn(feed(&x, &token).arg("--summary").arg(&s));
    run.expect_line(Duration::from_secs(60), |l| {
        l.contains("/s out") && !l.contains("received 0 ")
    });
    let pid = run.id();
    let base_kb = proc_field(pid, "status", "VmRSS");
    let error_frame = |n: usize| {
        let payload = "x".repeat(n - 32);
        format!(r#"{{"type":"error","data":"{payload}"}}"#)
    };
    let stats = x.mock.stats();
    // Over zerodha.max_text_frame_bytes (64 KiB), under the frame limit
    // (1 MiB here): read, counted, not parsed; the connection stays.
    x.mock.broadcast_text(&error_frame(LARGE));
    run.expect_line(Duration::from_secs(30), |l| {
        l.contains("1 oversized text frames so far")
    });
    // Over the frame limit: refused from the header, nothing buffered; the
    // connection goes down and comes back for the next one.
    let big = error_frame(HUGE);
    for i in 1..=3 {
        x.mock.broadcast_text(&big);
        assert!(
            wait_until(Duration::from_secs(30), || {
                stats.connections.load(SeqCst) > i && x.mock.subscriptions().len() == 1
            }),
            "no reconnect after huge frame {i}:\n{}",
            run.seen.join("\n")
        );
    }
    let peak_kb = proc_field(pid, "status", "VmHWM");
    run.terminate();
    let (status, rest) = run.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", rest.join("\n"));
    let grown_mb = peak_kb.saturating_sub(base_kb) / 1024;
    eprintln!("VmRSS before {base_kb} kB, VmHWM after {peak_kb} kB: +{grown_mb} MB");
    // Before: +676 MB for three such frames. Now about the read buffer's
    // frame limit (1 MiB), plus the allocator's slack.
    assert!(grown_mb < 12, "RSS grew by {grown_mb} MB");
    let text = std::fs::read_to_string(&s).unwrap();
    assert!(text.len() < 64 * 1024, "summary of {} bytes", text.len());
    let s: Value = serde_json::from_str(&text).unwrap();
    let c = &s["connections"][0];
    assert_eq!(c["oversized_text_frames"], 1, "{s:#}");
    assert_eq!(c["oversized_frames"], 3, "{s:#}");
    assert_eq!(c["reconnects"]["read_error"], 3, "{s:#}");
    assert_eq!(c["server_errors"], 0, "{s:#}");
    assert!(c["last_server_error"].is_null(), "{s:#}");
    let e = c["error"].as_str().unwrap();
    assert!(e.contains("over the 1048576-byte limit"), "{e}");
}

#[test]
fn a_hostile_server_text_forges_no_log_line_and_is_escaped_in_the_summary() {
    let x = Stack::builder()
        .tag("edges-hostile-text")
        .partitions(1)
        .start_exchange();
    let token = token_file(&x, defaults::MOCK_ACCESS_TOKEN);
    let s = x.dir.join("summary.json");
    let mut run = Running::spawn(
        feed(&x, &token)
            .args(["--log-format", "text", "--summary"])
            .arg(&s),
    );
    run.expect_line(Duration::from_secs(60), |l| {
        l.contains("/s out") && !l.contains("received 0 ")
    });
    let forged = "2026-01-01T00:00:00.000000Z ERROR kafka: all brokers down";
    x.mock.broadcast_text(&format!(
        r#"{{"type":"error","data":"evil\n{forged}\r\u001b[2K\u001b[31mred"}}"#
    ));
    let line = run.expect_line(Duration::from_secs(30), |l| {
        l.contains("server error frame")
    });
    assert!(
        line.contains(r"evil\n2026-01-01T00:00:00.000000Z ERROR kafka")
            && line.contains(r"\u{1b}[31mred"),
        "{line}"
    );
    run.terminate();
    let seen = run.seen.clone();
    let (status, rest) = run.wait(Duration::from_secs(60));
    let all = [seen, rest].concat();
    assert!(status.success(), "{status:?}");
    assert!(
        !all.iter()
            .any(|l| l.starts_with(forged) || l.contains('\u{1b}')),
        "a forged or raw line:\n{}",
        all.join("\n")
    );
    let s = summary(&s);
    let e = s["connections"][0]["last_server_error"].as_str().unwrap();
    assert_eq!(e, format!(r"evil\n{forged}\r\u{{1b}}[2K\u{{1b}}[31mred"));
}

#[test]
fn a_hung_resolver_does_not_stall_another_connection() {
    let liveness = Duration::from_secs(1);
    let mut s = Stack::builder()
        .tag("edges-slow-dns")
        .partitions(1)
        .engine(move |c| {
            // 60 instruments, 2 connections; connection 1's lookups hang 3 s
            // (then fail), three liveness windows.
            c.max_per_connection = 30;
            c.supervision.liveness = liveness;
            c.test_slow_resolver = Some((1, Duration::from_secs(3)));
        })
        .start();
    assert!(wait_until(Duration::from_secs(20), || {
        let c = s.engine.counts();
        c.connections[0].state == "open" && c.connections[0].ticks > 0
    }));
    let before = s.engine.counts().connections[0].ticks;
    // Blocking DNS on the network thread would silence connection 0 for 3 s
    // at every attempt of connection 1.
    let ok = holds_for(Duration::from_secs(7), || {
        let c = &s.engine.counts().connections[0];
        c.state == "open"
            && c.reconnects["stale"] == 0
            && c.last_frame_age_ms.is_some_and(|a| a < 1_000)
    });
    let c = s.engine.counts();
    assert!(ok, "{:#?}", c.connections);
    assert!(c.connections[0].ticks > before);
    let c1 = &c.connections[1];
    assert!(
        ["resolving", "backoff"].contains(&c1.state),
        "{:#?}",
        c.connections
    );
    assert!(c1.reconnects["connect_failed"] >= 1, "{c1:#?}");
    assert!(
        c1.error
            .as_deref()
            .is_some_and(|e| e.contains("resolver hung")),
        "{c1:#?}"
    );
    let t0 = Instant::now();
    let summary = s.engine.stop();
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert!(summary.identity_holds);
}

#[test]
fn a_flooding_connection_starves_neither_the_other_nor_the_stop() {
    let mut s = Stack::builder()
        .tag("edges-flood")
        .partitions(1)
        .mock(|m| m.rate_per_s = 2_000)
        .faults(|f| f.flood_connection.store(1, SeqCst))
        .engine(|c| {
            c.max_per_connection = 30;
            c.supervision.liveness = Duration::from_secs(1);
        })
        .start();
    assert!(wait_until(Duration::from_secs(20), || {
        let c = s.engine.counts();
        c.connections
            .iter()
            .all(|c| c.state == "open" && c.ticks > 0)
    }));
    assert!(wait_until(Duration::from_secs(20), || {
        s.mock.stats().flood_heartbeats.load(SeqCst) > 20_000
    }));
    let before = s.engine.counts();
    let ok = holds_for(Duration::from_secs(2), || {
        s.engine.counts().connections.iter().all(|c| {
            c.state == "open"
                && c.reconnects["stale"] == 0
                && c.last_frame_age_ms.is_some_and(|a| a < 1_000)
        })
    });
    let after = s.engine.counts();
    eprintln!(
        "flood: {} heartbeats read in the window",
        after.heartbeats - before.heartbeats
    );
    assert!(ok, "{:#?}", after.connections);
    for (b, a) in before.connections.iter().zip(&after.connections) {
        assert!(a.ticks > b.ticks, "a connection got no ticks: {a:#?}");
    }
    assert!(
        after.heartbeats > before.heartbeats + 10_000,
        "the flood was not read"
    );
    let t0 = Instant::now();
    let summary = s.engine.stop();
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        t0.elapsed()
    );
    assert!(summary.identity_holds);
}
