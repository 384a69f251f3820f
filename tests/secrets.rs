//! Secrets in every form the world writes them, tried against every place a
//! value could leak: Redis URLs (a plain password, `@` in the password, a
//! unix socket with `?pass=`, an ACL `user:password@`, `rediss://`) given by
//! flag, environment, config key and `redis.url_file` to `panda-feed run
//! --mock` with an unreachable Redis, so errors are logged; the secret must
//! appear in none of stderr (text and JSON logs), the summary, `/metrics`,
//! `/health` or an error message. And the README's recommended commands
//! pass no secret on the command line (`ps` shows argv to every user).

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use util::TempDir;
use util::cli::{Running, feed_run, output, stderr};

/// The URL forms, each with its secret and the pieces of the secret that a
/// splitting redactor would leak.
const FORMS: [(&str, &str, &[&str]); 5] = [
    (
        "plain",
        "redis://:ZplainS3cret@127.0.0.1:1/0",
        &["ZplainS3cret"],
    ),
    (
        "at-sign",
        "redis://:Zpw@Leak3dPart@127.0.0.1:1/0",
        &["Zpw@Leak3dPart", "Leak3dPart"],
    ),
    (
        "unix",
        "unix:///nonexistent/panda/redis.sock?pass=ZunixS3cret",
        &["ZunixS3cret"],
    ),
    (
        "acl",
        "redis://panda:ZaclS3cret@127.0.0.1:1/0",
        &["ZaclS3cret"],
    ),
    ("tls", "rediss://:ZtlsS3cret@127.0.0.1:1/0", &["ZtlsS3cret"]),
];

#[derive(Debug, Clone, Copy)]
enum Source {
    Flag,
    Env,
    Config,
    File,
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the ops server");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 "), "{out}");
    out
}

fn assert_clean(what: &str, text: &str, leaks: &[&str]) {
    for l in leaks {
        assert!(!text.contains(l), "{what} shows {l:?}:\n{text}");
    }
}

/// Runs the feed with `url` from `source`; asserts the secret is nowhere.
fn run_with(tag: &str, url: &str, leaks: &[&str], source: Source, json: bool) {
    let dir = TempDir::new(&format!("secrets-{tag}"));
    let mut toml =
        String::from("[ops]\nsample_ms = 100\n[redis]\ninterval_ms = 100\ntimeout_ms = 100\n");
    match source {
        Source::Config => toml.push_str(&format!("url = {url:?}\n")),
        Source::File => {
            let f = dir.file("redis_url", url);
            set_mode(&f, 0o600);
            toml.push_str(&format!("url_file = {:?}\n", f.display().to_string()));
        }
        Source::Flag | Source::Env => {}
    }
    let cfg = dir.file("feed.toml", toml);
    let summary = dir.join("summary.json");
    let mut cmd = feed_run(["--mock", "--mock-rate", "200", "--duration", "4"]);
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--summary")
        .arg(&summary)
        .env_remove("REDIS__URL")
        .current_dir(dir.path());
    if json {
        cmd.args(["--log-format", "json"]);
    }
    match source {
        Source::Flag => {
            cmd.args(["--redis-url", url]);
        }
        Source::Env => {
            cmd.env("REDIS__URL", url);
        }
        Source::Config | Source::File => {}
    }
    let mut feed = Running::spawn(&mut cmd);
    let serving = feed.expect_line(Duration::from_secs(30), |l| l.contains("ops: serving"));
    let addr = serving
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("ops address")
        .to_owned();
    // The failed write is logged (so an error carrying the URL was made).
    feed.expect_line(Duration::from_secs(30), |l| {
        l.contains("redis") && l.contains("failed")
    });
    let metrics = get(&addr, "/metrics");
    assert!(metrics.contains("panda_feed_"), "{metrics}");
    assert_clean(&format!("{tag}: /metrics"), &metrics, leaks);
    assert_clean(&format!("{tag}: /health"), &get(&addr, "/health"), leaks);
    let mut lines = feed.seen.clone();
    let (status, rest) = feed.wait(Duration::from_secs(60));
    lines.extend(rest);
    let all = lines.join("\n");
    assert!(status.success(), "{tag}: {status:?}\n{all}");
    assert_clean(&format!("{tag}: stderr"), &all, leaks);
    assert!(
        all.contains("redis"),
        "{tag}: no redis error logged:\n{all}"
    );
    if matches!(source, Source::Flag) {
        assert!(
            all.contains("visible to every user in `ps`") && all.contains("REDIS__URL"),
            "{tag}: no ps warning:\n{all}"
        );
    }
    let s = std::fs::read_to_string(&summary).expect("summary written");
    assert_clean(&format!("{tag}: summary"), &s, leaks);
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn every_form_from(source: Source, json: bool) {
    for (tag, url, leaks) in FORMS {
        run_with(&format!("{source:?}-{tag}"), url, leaks, source, json);
    }
}

#[test]
fn redis_secrets_by_flag_never_show_text_logs() {
    every_form_from(Source::Flag, false);
}

#[test]
fn redis_secrets_by_env_never_show_json_logs() {
    every_form_from(Source::Env, true);
}

#[test]
fn redis_secrets_by_config_never_show() {
    every_form_from(Source::Config, false);
}

#[test]
fn redis_secrets_by_url_file_never_show_json_logs() {
    every_form_from(Source::File, true);
}

#[test]
fn rejected_settings_do_not_echo_the_secret() {
    let dir = TempDir::new("secrets-rejected");
    for (toml, leak) in [
        (
            "[redis]\nurl = \"http://:ZhttpS3cret@h:1\"\n",
            "ZhttpS3cret",
        ),
        (
            "[redis]\nurl = \"redis://:Zboth@S3cret@h:1\"\nurl_file = \"x\"\n",
            "S3cret",
        ),
        ("[redis]\nurl = \"redis://:Zpath/S3cret@h:1\"\n", "S3cret"),
        (
            "[zerodha]\napi_key = \"ZkeyS3cret\"\napi_key_file = \"k\"\n",
            "ZkeyS3cret",
        ),
        // A bad value next to a secret: the error names the key, not the secret.
        (
            "[redis]\nurl = \"redis://:ZnearS3cret@h:1\"\nttl_s = 0\n",
            "ZnearS3cret",
        ),
    ] {
        let cfg = dir.file("bad.toml", toml);
        let out = output(feed_run(["--mock", "--duration", "1", "--config"]).arg(&cfg));
        let err = stderr(&out);
        let code = out.status.code();
        // Rejected at start (or for the path form, run and logged): never shown.
        assert!(
            code == Some(1) || code == Some(0),
            "{toml}: {code:?}\n{err}"
        );
        assert!(!err.contains(leak), "{toml}\n{err}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(leak),
            "{toml}"
        );
    }
}

#[test]
fn secret_files_readable_by_others_are_warned_about_and_the_key_flag_too() {
    let dir = TempDir::new("secrets-files");
    let token = dir.file("token", "mock_access_token\n");
    let key = dir.file("key", "mock_api_key\n");
    set_mode(&token, 0o644);
    set_mode(&key, 0o640);
    let out = output(
        feed_run(["--mock", "--duration", "1", "--access-token-file"])
            .arg(&token)
            .arg("--api-key-file")
            .arg(&key),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for f in [&token, &key] {
        assert!(
            err.lines().any(|l| l.contains(&f.display().to_string())
                && l.contains("group/other")
                && l.contains("chmod 600")),
            "{err}"
        );
    }
    // chmod 600: no warning.
    set_mode(&token, 0o600);
    set_mode(&key, 0o600);
    let out = output(
        feed_run(["--mock", "--duration", "1", "--access-token-file"])
            .arg(&token)
            .arg("--api-key-file")
            .arg(&key),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("chmod 600"), "{err}");
    // The key on the command line: warned, never echoed.
    let out = output(&mut feed_run([
        "--mock",
        "--duration",
        "1",
        "--api-key",
        "ZflagKeyS3cret",
    ]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("--api-key") && err.contains("ps") && err.contains("--api-key-file"),
        "{err}"
    );
    assert!(!err.contains("ZflagKeyS3cret"), "{err}");
}

#[test]
fn a_token_file_readable_by_others_is_a_health_note_while_the_feed_runs() {
    let dir = TempDir::new("secrets-health-note");
    let token = dir.file("token", "mock_access_token\n");
    set_mode(&token, 0o644);
    let mut cmd = feed_run(["--mock", "--mock-rate", "200", "--duration", "3"]);
    cmd.arg("--access-token-file").arg(&token);
    let mut feed = Running::spawn(&mut cmd);
    let serving = feed.expect_line(Duration::from_secs(30), |l| l.contains("ops: serving"));
    let addr = serving
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("ops address")
        .to_owned();
    let mut health = String::new();
    assert!(
        util::wait_until(Duration::from_secs(5), || {
            health = get(&addr, "/health");
            health.contains("secret_file_readable")
        }),
        "{health}"
    );
    assert!(
        health.contains("chmod 600") && health.contains(&token.display().to_string()),
        "{health}"
    );
    let (status, _) = feed.wait(Duration::from_secs(60));
    assert!(status.success());
}

#[test]
fn a_config_holding_a_secret_and_readable_by_others_is_warned_about() {
    let dir = TempDir::new("secrets-config-mode");
    let cfg = dir.file("feed.toml", "[zerodha]\napi_key = \"ZcfgKeyS3cret\"\n");
    set_mode(&cfg, 0o644);
    let out = output(feed_run(["--mock", "--duration", "1", "--config"]).arg(&cfg));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines().any(|l| l.contains(&cfg.display().to_string())
            && l.contains("zerodha.api_key")
            && l.contains("chmod 600")),
        "{err}"
    );
    assert!(!err.contains("ZcfgKeyS3cret"), "{err}");
}

/// The command lines of the README's ```sh blocks that run panda-feed,
/// continuation lines joined.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut cur = String::new();
    for line in readme.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let (body, cont) = match t.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (t, false),
        };
        cur.push_str(body);
        cur.push(' ');
        if !cont {
            let cmd = cur.trim().to_owned();
            cur.clear();
            if cmd.starts_with("panda-feed") || cmd.starts_with("cargo run") {
                out.push(cmd);
            }
        }
    }
    out
}

/// Why `cmd` would show a secret in `ps`, if it would.
fn argv_secret(cmd: &str) -> Option<String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (*w, None),
        };
        let value = inline.or_else(|| words.get(i + 1).copied()).unwrap_or("");
        match flag {
            "--api-key" | "--access-token" => return Some(format!("{flag} {value}")),
            "--redis-url" if value.contains('@') || value.contains("pass") => {
                return Some(format!("{flag} with a password"));
            }
            _ => {}
        }
    }
    None
}

#[test]
fn the_readme_commands_pass_no_secret_on_the_command_line() {
    let cmds = readme_commands();
    assert!(
        cmds.iter().any(|c| c.starts_with("panda-feed run")),
        "no run command found: {cmds:?}"
    );
    // The checker itself catches each way of doing it.
    for bad in [
        "panda-feed run --api-key k",
        "panda-feed run --api-key=k",
        "panda-feed mock-exchange --access-token t",
        "panda-feed run --redis-url redis://:pw@h:6379/0",
        "cargo run -- run --redis-url unix:///s?pass=pw",
    ] {
        assert!(argv_secret(bad).is_some(), "{bad}");
    }
    assert!(argv_secret("panda-feed run --api-key-file k --redis-url redis://h/0").is_none());
    let bad: Vec<String> = cmds
        .iter()
        .filter_map(|c| argv_secret(c).map(|why| format!("{c}\n    ({why})")))
        .collect();
    assert!(
        bad.is_empty(),
        "README commands visible in ps:\n{}",
        bad.join("\n")
    );
}
