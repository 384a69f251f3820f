//! `panda-feed check-config`: every problem of file, environment and flags at
//! once (exit 1); otherwise each effective value with its source (default,
//! file, env, flag) and secrets redacted (exit 0).

mod util;

use std::process::{Command, Output};

use util::TempDir;
use util::cli::{output, panda_feed, stderr};

/// `check-config` with the environment's `KAFKA__*`-style variables of the
/// test runner removed, so only what a test sets is seen.
fn check_config(args: &[&str]) -> Command {
    let mut cmd = panda_feed(["check-config"]);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.contains("__") || k == "REDPANDA__BOOTSTRAP_SERVERS" {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of `key` in the text output.
fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn every_problem_of_file_env_and_flags_is_listed_at_once() {
    let dir = TempDir::new("check-config-bad");
    let f = dir.file(
        "c.toml",
        "[engine]\nring_capacity = 0\n[kafka]\nlinger_ms = 3\n",
    );
    let out = output(
        check_config(&["--mock", "--config", f.to_str().unwrap()])
            .env("KAFKA__TOPIK", "x")
            .env("ENGINE__PUBLISH_CHUNK", "lots")
            .env("SPOOL__FSYNC", "sometimes"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("engine.ring_capacity = 0 is out of range"),
        "{err}"
    );
    assert!(
        err.contains("KAFKA__TOPIK") && err.contains("not a setting"),
        "{err}"
    );
    assert!(
        err.contains("ENGINE__PUBLISH_CHUNK") && err.contains("\"lots\"") && err.contains("usize"),
        "{err}"
    );
    assert!(
        err.contains("SPOOL__FSYNC") && err.contains("sometimes"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    // The same as JSON on stdout.
    let out = output(
        check_config(&["--mock", "--json", "--config", f.to_str().unwrap()])
            .env("KAFKA__TOPIK", "x"),
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"].as_array().unwrap().len(), 3, "{v}");
}

#[test]
fn each_value_shows_its_source_and_env_beats_file_and_flag_beats_env() {
    let dir = TempDir::new("check-config-ok");
    let f = dir.file(
        "c.toml",
        "[kafka]\ntopic = \"from-file\"\nlinger_ms = 3\nbatch_size = 7000\n[engine]\npublishers = 3\n",
    );
    let out = output(
        check_config(&[
            "--mock",
            "--config",
            f.to_str().unwrap(),
            "--topic",
            "from-flag",
        ])
        .env("KAFKA__TOPIC", "from-env")
        .env("KAFKA__LINGER_MS", "9")
        .env("ENGINE__PUBLISHERS", "2")
        .env("SPOOL__FSYNC", "always")
        .env("REDPANDA__BOOTSTRAP_SERVERS", "rp-1:9092,rp-2:9092"),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}\n{text}", stderr(&out));
    assert_eq!(
        line(&text, "kafka.topic"),
        "kafka.topic = \"from-flag\"  (flag)"
    );
    assert_eq!(line(&text, "kafka.linger_ms"), "kafka.linger_ms = 9  (env)");
    assert_eq!(
        line(&text, "kafka.batch_size"),
        "kafka.batch_size = 7000  (file)"
    );
    assert_eq!(
        line(&text, "engine.publishers"),
        "engine.publishers = 2  (env)"
    );
    assert_eq!(
        line(&text, "spool.fsync"),
        "spool.fsync = \"always\"  (env)"
    );
    assert_eq!(
        line(&text, "kafka.brokers"),
        "kafka.brokers = \"rp-1:9092,rp-2:9092\"  (env)"
    );
    assert_eq!(
        line(&text, "kafka.compression"),
        "kafka.compression = \"none\"  (default)"
    );

    // And a flag beats the environment for a number too, in JSON.
    let out = output(
        check_config(&["--mock", "--json", "--publishers", "4"]).env("ENGINE__PUBLISHERS", "2"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["settings"]["engine.publishers"]["value"], 4);
    assert_eq!(v["settings"]["engine.publishers"]["source"], "flag");
}

#[test]
fn secrets_from_the_environment_never_appear() {
    let key = "k3y-S3CRET-123";
    let secret = "4p1-S3CRET-456";
    let token = "t0k3n-S3CRET-789";
    let pass = "r3d1s-PASSW0RD";
    for json in [false, true] {
        let mut args = vec!["--mock"];
        if json {
            args.push("--json");
        }
        let out = output(
            check_config(&args)
                .env("ZERODHA__API_KEY", key)
                .env("ZERODHA__API_SECRET", secret)
                .env("ZERODHA__ACCESS_TOKEN", token)
                .env("REDIS__URL", format!("redis://:{pass}@127.0.0.1:6379/0")),
        );
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(0), "{all}");
        for s in [key, secret, token, pass] {
            assert!(!all.contains(s), "{s} leaked:\n{all}");
        }
        assert!(all.contains("<redacted>"), "{all}");
        assert!(all.contains("127.0.0.1:6379"), "{all}");
    }
    // A bad value of a secret key is not echoed either.
    let out = output(check_config(&["--mock"]).env("REDIS__URL", format!("http://:{pass}@h/")));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains(pass), "{all}");
}

#[test]
fn unknown_sections_are_not_ours() {
    let out = output(
        check_config(&["--mock"])
            .env("CARGO__SOMETHING", "x")
            .env("PANDA__WHATEVER", "y"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn run_reads_the_same_environment_and_refuses_a_bad_variable() {
    let mut cmd = util::cli::feed_run(["--mock", "--duration", "0.2"]);
    let out = output(
        cmd.env("KAFKA__TOPIK", "x")
            .env("ENGINE__PUBLISH_CHUNK", "lots")
            .env("ENGINE__RING_CAPACITY", "0"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("KAFKA__TOPIK") && err.contains("ENGINE__PUBLISH_CHUNK"),
        "{err}"
    );
    assert!(err.contains("engine.ring_capacity = 0"), "{err}");
}

#[test]
fn the_calendar_settings_and_the_holiday_file_are_checked() {
    let dir = TempDir::new("check-config-calendar");
    let bad = dir.file(
        "2026.toml",
        "year = 2026\nsource = \"x\"\n[mcx]\nholidays = [{ date = \"2026-11-29\", name = \"sun\" }]\n",
    );
    let out = output(
        check_config(&["--mock"])
            .env("CALENDAR__FILE", &bad)
            .env("CALENDAR__DAYS_FORWARD", "400"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("mcx.holidays 2026-11-29: a Saturday or Sunday"),
        "{err}"
    );
    assert!(
        err.contains("calendar.days_forward = 400 is out of range"),
        "{err}"
    );
    let good = dir.file("ok.toml", "year = 2027\nsource = \"test\"\n[nse]\n");
    let out = output(check_config(&["--mock"]).env("CALENDAR__FILE", &good));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(line(&text, "calendar.file").contains("(env)"), "{text}");
    assert!(line(&text, "calendar.days_back").contains("14"), "{text}");
}

// --- overflow policy, ring bytes, mlockall (README, "Overflow: block or drop")

#[test]
fn the_overflow_ring_bytes_and_mlockall_keys_are_checked_and_shown() {
    let dir = TempDir::new("check-config-overflow");
    let bad = dir.file("bad.toml", "[engine]\nblock_max_ms = 0\nring_bytes = 100\n");
    let out = output(&mut check_config(&[
        "--mock",
        "--config",
        bad.to_str().unwrap(),
    ]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("engine.block_max_ms = 0 is out of range: must be 1..=60000 ms"),
        "{err}"
    );
    assert!(
        err.contains("engine.ring_bytes = 100 is out of range: must be 216..="),
        "{err}"
    );
    assert!(
        !err.contains("engine.ring_capacity"),
        "reported twice: {err}"
    );
    // A policy that does not exist names the ones that do.
    let out = output(check_config(&["--mock"]).env("ENGINE__OVERFLOW", "wait"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ENGINE__OVERFLOW"), "{err}");
    assert!(err.contains("`block` or `drop_newest`"), "{err}");
    // The rings' bytes win over their slots, and the whole rings fit 8 GiB.
    let out = output(
        check_config(&["--mock"])
            .env("ENGINE__RING_BYTES", "3623878656")
            .env("ENGINE__PUBLISHERS", "4"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("engine.ring_bytes (16777216 slots)")
            && err.contains("lower engine.ring_bytes"),
        "{err}"
    );
    let good = dir.file(
        "ok.toml",
        "[engine]\noverflow = \"drop_newest\"\nblock_max_ms = 250\nring_bytes = 1048576\nmlockall = true\n",
    );
    let out = output(&mut check_config(&[
        "--mock",
        "--config",
        good.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        line(&text, "engine.overflow").contains("\"drop_newest\"  (file)"),
        "{text}"
    );
    assert!(line(&text, "engine.block_max_ms").contains("250"), "{text}");
    assert!(
        line(&text, "engine.ring_bytes").contains("1048576"),
        "{text}"
    );
    assert!(line(&text, "engine.mlockall").contains("true"), "{text}");
    let out = output(&mut check_config(&["--mock"]));
    let text = stdout(&out);
    assert!(
        line(&text, "engine.overflow").contains("\"block\"  (default)"),
        "{text}"
    );
    assert!(line(&text, "engine.mlockall").contains("false"), "{text}");
}
