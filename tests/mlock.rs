//! `engine.mlockall = true` where locking is not allowed (`RLIMIT_MEMLOCK`
//! 0, no `CAP_IPC_LOCK`): `run` warns, naming the limit and the fix, and
//! runs on with exit 0 and an exact summary (tuning/README.md, "Memory
//! locking"). The limit is set on the child with `prlimit`; as root the
//! capability is dropped with `setpriv` first.

mod util;

use std::process::Command;

use serde_json::Value;
use util::TempDir;
use util::cli::{BIN, output, stderr};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uid = s.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            uid.split_whitespace().next().map(|u| u == "0")
        })
        .unwrap_or(false)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn mlockall_refused_is_a_warning_naming_the_limit_and_the_fix_not_a_failure() {
    if !have("prlimit") || (is_root() && !have("setpriv")) {
        eprintln!("skipped: needs prlimit (and setpriv as root)");
        return;
    }
    let dir = TempDir::new("mlock");
    let cfg = dir.file("c.toml", "[engine]\nmlockall = true\n");
    let summary = dir.join("summary.json");
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set=-ipc_lock", "prlimit"]);
        c
    } else {
        Command::new("prlimit")
    };
    cmd.args([
        "--memlock=0:0",
        BIN,
        "run",
        "--ops-listen",
        "127.0.0.1:0",
        "--mock",
    ])
    .args(["--duration", "2", "--config", cfg.to_str().unwrap()])
    .args(["--summary", summary.to_str().unwrap()])
    .env_remove("ZERODHA__API_KEY")
    .env_remove("ZERODHA__ACCESS_TOKEN");
    let out = output(&mut cmd);
    let err = stderr(&out);
    assert!(out.status.success(), "exit {:?}\n{err}", out.status);
    let warning = err
        .lines()
        .find(|l| l.contains("engine.mlockall: mlockall failed"))
        .unwrap_or_else(|| panic!("no mlockall warning:\n{err}"));
    for part in [
        "WARN",
        "RLIMIT_MEMLOCK is 0 bytes",
        "LimitMEMLOCK=infinity",
        "engine.mlockall = false",
    ] {
        assert!(warning.contains(part), "{part:?} not in {warning}");
    }
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["identity_holds"], true, "{s:#}");
    assert!(s["received"].as_u64().unwrap() > 0, "{s:#}");
}

/// `THP_enabled` of `/proc/PID/status` (Linux ≥ 5.0): 0 once the process
/// disabled transparent huge pages for itself.
fn thp_enabled(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_owned())
}

#[test]
fn transparent_huge_pages_are_off_for_the_feed_by_default_and_on_when_asked() {
    use std::time::Duration;
    for (env, want) in [(None, "0"), (Some("true"), "1")] {
        let mut cmd = util::cli::feed_run(["--mock", "--duration", "30"]);
        if let Some(v) = env {
            cmd.env("ENGINE__TRANSPARENT_HUGE_PAGES", v);
        }
        let mut run = util::cli::Running::spawn(cmd.stdout(std::process::Stdio::null()));
        // Past start-up: the engine has started once the ops line is logged.
        run.ops_addr();
        let got = thp_enabled(run.id());
        run.signal("INT");
        let (status, _) = run.wait(Duration::from_secs(30));
        assert!(status.success(), "{status:?}");
        if got.is_none() {
            eprintln!("skipped: this kernel has no THP_enabled in /proc/PID/status");
            return;
        }
        assert_eq!(
            got.as_deref(),
            Some(want),
            "ENGINE__TRANSPARENT_HUGE_PAGES={env:?}"
        );
    }
}
