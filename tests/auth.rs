//! The auth boundary, end to end through the binary: `auth login` against a
//! local mock of Kite's session API (a running feed picks the new token up;
//! each Kite error type is reported with its fix; no secret is ever
//! printed), `auth status`, and the access token command (killed with its
//! process group at its timeout; a new token it prints recovers a refused
//! connection).

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use panda_feed::config::defaults;
use util::cli::{Running, feed_run, output, panda_feed, stderr};
use util::stack::Exchange;
use util::{Stack, TempDir, wait_until};

const API_KEY: &str = defaults::MOCK_API_KEY;
const API_SECRET: &str = "s3cr3t_api_secret_zz";
/// The token the mock exchange accepts, and the one the mock Kite issues.
const NEW_TOKEN: &str = defaults::MOCK_ACCESS_TOKEN;
const STALE_TOKEN: &str = "stale_token_of_yesterday";

/// One request the mock Kite received: (path, X-Kite-Version, form body).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A mock of Kite's `POST /session/token` on 127.0.0.1:0, blocking, one
/// connection at a time: a request token naming an error type
/// (`TokenException`, ...) gets Kite's JSON error of that type; any other
/// request with the right checksum gets a session with [`NEW_TOKEN`].
struct MockKite {
    root: String,
    seen: Seen,
}

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn form_field(body: &str, key: &str) -> String {
    body.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_owned()
}

const ERRORS: [(&str, u16); 8] = [
    ("TokenException", 403),
    ("InputException", 400),
    ("PermissionException", 403),
    ("NetworkException", 503),
    ("GeneralException", 500),
    ("DataException", 502),
    ("OrderException", 400),
    ("UserException", 403),
];

impl MockKite {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let root = format!("http://{}", l.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let s = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                let (mut len, mut version) = (0, String::new());
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap(),
                        "x-kite-version" => version = v.trim().to_owned(),
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let body = String::from_utf8(body).unwrap();
                let rt = form_field(&body, "request_token");
                let (status, json) = if let Some((t, st)) = ERRORS.iter().find(|(t, _)| *t == rt) {
                    (
                        *st,
                        format!(
                            r#"{{"status":"error","message":"{t} says no\u001b[2J","data":null,"error_type":"{t}"}}"#
                        ),
                    )
                } else if form_field(&body, "checksum")
                    == sha256_hex(&format!("{}{rt}{API_SECRET}", form_field(&body, "api_key")))
                {
                    (
                        200,
                        format!(
                            r#"{{"status":"success","data":{{"user_id":"AB1234","access_token":"{NEW_TOKEN}","public_token":"p"}}}}"#
                        ),
                    )
                } else {
                    (
                        403,
                        r#"{"status":"error","message":"Invalid checksum","error_type":"TokenException"}"#.to_owned(),
                    )
                };
                s.lock().unwrap().push((path, version, body));
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
            }
        });
        Self { root, seen }
    }
}

fn login(dir: &TempDir, root: &str, request_token: &str, token_file: &Path) -> Output {
    output(
        panda_feed([
            "auth",
            "login",
            "--request-token",
            request_token,
            "--api-root",
            root,
        ])
        .arg("--access-token-file")
        .arg(token_file)
        .env("ZERODHA__API_KEY", API_KEY)
        .env("ZERODHA__API_SECRET", API_SECRET)
        .current_dir(dir.path()),
    )
}

fn all_output(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o))
}

/// `run` against `x`'s mock and broker with one instrument and `extra` args.
fn feed(x: &Exchange, extra: &[&std::ffi::OsStr]) -> Command {
    let csv = x.dir.file(
        "one.csv",
        "instrument_token,tradingsymbol,name,exchange\n256265,NIFTY 50,NIFTY 50,NSE\n",
    );
    let mut cmd = feed_run(["--ws-url", &x.mock.ws_url()]);
    cmd.arg("--instruments")
        .arg(csv)
        .args(["--brokers", x.brokers()])
        .args(extra)
        .env("ZERODHA__API_KEY", API_KEY)
        .current_dir(x.dir.path());
    cmd
}

fn refused(run: &mut Running) {
    run.expect_line(Duration::from_secs(30), |l| {
        l.contains("waiting for a new access token")
    });
}

#[test]
fn login_writes_a_0600_token_that_a_refused_feed_picks_up() {
    let x = Stack::builder()
        .tag("auth-login")
        .partitions(1)
        .start_exchange();
    let kite = MockKite::start();
    let token = x.dir.file("token", format!("{STALE_TOKEN}\n"));
    let mut run = Running::spawn(&mut feed(
        &x,
        &["--access-token-file".as_ref(), token.as_os_str()],
    ));
    refused(&mut run);
    assert_eq!(x.mock.stats().connections.load(SeqCst), 0);

    let out = login(&x.dir, &kite.root, "rt_fresh", &token);
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&token.display().to_string()) && text.contains("AB1234"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&token).unwrap(),
        format!("{NEW_TOKEN}\n")
    );
    let mode = std::fs::metadata(&token).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    {
        let seen = kite.seen.lock().unwrap();
        let (path, version, body) = &seen[0];
        assert_eq!((path.as_str(), version.as_str()), ("/session/token", "3"));
        assert_eq!(form_field(body, "api_key"), API_KEY);
        assert_eq!(form_field(body, "request_token"), "rt_fresh");
        assert!(
            !body.contains(API_SECRET),
            "the secret itself is never sent"
        );
    }
    // The running feed picks the new token up and streams.
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
    for secret in [API_SECRET, NEW_TOKEN, STALE_TOKEN] {
        assert!(
            !text.contains(secret),
            "{secret} in login's output:\n{text}"
        );
        assert!(!all.contains(secret), "{secret} in the feed's output");
    }
}

#[test]
fn each_kite_error_type_exits_1_with_its_type_and_fix() {
    let dir = TempDir::new("auth-errors");
    let kite = MockKite::start();
    let token = dir.join("token");
    for (t, status) in ERRORS {
        let out = login(&dir, &kite.root, t, &token);
        let text = all_output(&out);
        assert_eq!(out.status.code(), Some(1), "{t}: {text}");
        assert!(
            text.contains(t) && text.contains(&format!("HTTP {status}")) && text.contains("fix:"),
            "{t}: {text}"
        );
        // Kite's message is server text: escaped.
        assert!(
            text.contains("says no\\u{1b}[2J") && !text.contains('\u{1b}'),
            "{text}"
        );
        assert!(!text.contains(API_SECRET), "{text}");
        assert!(!token.exists(), "{t}: a token file was written");
    }
    let out = login(&dir, &kite.root, "TokenException", &token);
    assert!(
        all_output(&out).contains("log in again"),
        "{}",
        all_output(&out)
    );
    // A wrong secret: Kite refuses the checksum.
    let out = output(
        panda_feed([
            "auth",
            "login",
            "--request-token",
            "rt",
            "--api-root",
            &kite.root,
        ])
        .arg("--access-token-file")
        .arg(&token)
        .env("ZERODHA__API_KEY", API_KEY)
        .env("ZERODHA__API_SECRET", "wrong_secret_yy"),
    );
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Invalid checksum") && !text.contains("wrong_secret_yy"),
        "{text}"
    );
}

#[test]
fn login_refuses_plain_http_to_a_remote_host_and_missing_secrets() {
    let dir = TempDir::new("auth-refusals");
    let token = dir.join("token");
    let out = login(&dir, "http://api.kite.trade", "rt", &token);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("plain http") && text.contains("https://"),
        "{text}"
    );
    let out = output(
        panda_feed(["auth", "login", "--request-token", "rt"])
            .arg("--access-token-file")
            .arg(&token)
            .env("ZERODHA__API_KEY", API_KEY)
            .env_remove("ZERODHA__API_SECRET"),
    );
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ZERODHA__API_SECRET") && text.contains("api_secret_file"),
        "{text}"
    );
}

#[test]
fn status_shows_the_source_and_age_never_the_token() {
    let dir = TempDir::new("auth-status");
    let token = dir.file("token", format!("{NEW_TOKEN}\n"));
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = output(panda_feed(["auth", "status", "--access-token-file"]).arg(&token));
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    for want in [
        "source: file",
        "(--access-token-file)",
        "mode: 0644",
        "age: ",
        "chmod 600",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(!text.contains(NEW_TOKEN), "{text}");
    let out = output(panda_feed(["auth", "status", "--access-token-file"]).arg(dir.join("none")));
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("missing"), "{text}");
    let out = output(panda_feed(["auth", "status"]).env("ZERODHA__ACCESS_TOKEN", NEW_TOKEN));
    let text = all_output(&out);
    assert!(
        out.status.success() && text.contains("ZERODHA__ACCESS_TOKEN"),
        "{text}"
    );
    assert!(!text.contains(NEW_TOKEN), "{text}");
}

/// A config whose `access_token_command` is `sh SCRIPT`.
fn command_config(dir: &TempDir, script: &str, timeout_ms: u64) -> PathBuf {
    let s = dir.file("token-cmd.sh", script);
    dir.file(
        "feed.toml",
        format!(
            "[zerodha]\naccess_token_command = [\"sh\", {:?}]\n\
             access_token_command_timeout_ms = {timeout_ms}\naccess_token_command_retry_ms = 200\n",
            s.display().to_string()
        ),
    )
}

/// `true` when `pid` has exited (gone, or a zombie nobody reaped yet).
fn is_dead(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_hanging_command_is_killed_with_its_group_at_its_timeout() {
    let dir = TempDir::new("auth-cmd-hang");
    let (me, child) = (dir.join("sh.pid"), dir.join("sleep.pid"));
    let config = command_config(
        &dir,
        &format!(
            "echo $$ > {me:?}.tmp; mv {me:?}.tmp {me:?}\nsleep 1000 &\necho $! > {child:?}.tmp; mv {child:?}.tmp {child:?}\nwait\n"
        ),
        700,
    );
    for args in [
        vec![
            "run",
            "--mock",
            "--ops-listen",
            "127.0.0.1:0",
            "--duration",
            "30",
        ],
        vec!["auth", "status"],
    ] {
        let _ = std::fs::remove_file(&me);
        let _ = std::fs::remove_file(&child);
        let t0 = Instant::now();
        let out = output(panda_feed(&args).arg("--config").arg(&config));
        let took = t0.elapsed();
        let text = all_output(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains("\"sh\"") && text.contains("timed out after 700 ms"),
            "{args:?}: {text}"
        );
        assert!(took < Duration::from_secs(20), "{args:?}: took {took:?}");
        let pids = [&me, &child].map(|p| std::fs::read_to_string(p).unwrap().trim().to_owned());
        for pid in &pids {
            assert!(
                wait_until(Duration::from_secs(5), || is_dead(pid)),
                "{pid} still runs"
            );
        }
    }
}

#[test]
fn a_command_printing_a_new_token_recovers_a_refused_connection() {
    let x = Stack::builder()
        .tag("auth-cmd-recover")
        .partitions(1)
        .start_exchange();
    let current = x.dir.file("current", format!("{STALE_TOKEN}\n"));
    let dir_cfg = TempDir::new("auth-cmd-recover-cfg");
    let runs = x.dir.join("runs");
    let config = command_config(
        &dir_cfg,
        &format!("echo run >> {runs:?}\ncat {current:?}\n"),
        5_000,
    );
    let count_runs = || {
        std::fs::read_to_string(&runs)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let mut run = Running::spawn(&mut feed(&x, &["--config".as_ref(), config.as_os_str()]));
    refused(&mut run);
    // The command now prints the right token; the feed re-runs it (at most
    // every retry_ms while refused) and connects.
    let tmp = x.dir.file("current.tmp", format!("{NEW_TOKEN}\n"));
    std::fs::rename(&tmp, &current).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || {
            x.mock.stats().connections.load(SeqCst) == 1
        }),
        "{}",
        run.seen.join("\n")
    );
    run.expect_line(Duration::from_secs(10), |l| {
        l.contains("printed a new token")
    });
    // SIGHUP re-runs the command at once, whatever the retry interval.
    let before = count_runs();
    let hup = Command::new("kill")
        .args(["-HUP", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    assert!(wait_until(Duration::from_secs(10), || count_runs() > before));
    run.expect_line(Duration::from_secs(10), |l| {
        l.contains("the token is unchanged")
    });
    run.terminate();
    let seen = run.seen.clone();
    let (status, rest) = run.wait(Duration::from_secs(60));
    let all = [seen, rest].concat().join("\n");
    assert!(status.success(), "{status:?}\n{all}");
    assert!(all.contains("runs ok"), "the totals at exit:\n{all}");
    assert!(
        !all.contains(NEW_TOKEN) && !all.contains(STALE_TOKEN),
        "{all}"
    );
}

#[test]
fn a_command_and_a_token_file_together_are_refused_naming_both_keys() {
    let dir = TempDir::new("auth-ambiguous");
    let config = dir.file(
        "feed.toml",
        "[zerodha]\naccess_token_command = [\"echo\", \"t\"]\naccess_token_file = \"t\"\n",
    );
    for args in [
        vec![
            "run",
            "--mock",
            "--ops-listen",
            "127.0.0.1:0",
            "--duration",
            "30",
        ],
        vec!["check-config", "--mock"],
        vec!["auth", "status"],
    ] {
        let out = output(panda_feed(&args).arg("--config").arg(&config));
        let text = all_output(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains("zerodha.access_token_command")
                && text.contains("zerodha.access_token_file"),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn refresh_re_runs_the_command_while_all_is_well() {
    let x = Stack::builder()
        .tag("auth-cmd-refresh")
        .partitions(1)
        .start_exchange();
    let runs = x.dir.join("runs");
    let script = x.dir.file(
        "token-cmd.sh",
        format!("echo run >> {runs:?}\necho {NEW_TOKEN}\n"),
    );
    let config = x.dir.file(
        "feed.toml",
        format!(
            "[zerodha]\naccess_token_command = [\"sh\", {:?}]\n\
             access_token_command_refresh_ms = 200\n",
            script.display().to_string()
        ),
    );
    let mut run = Running::spawn(&mut feed(&x, &["--config".as_ref(), config.as_os_str()]));
    assert!(wait_until(Duration::from_secs(20), || {
        x.mock.stats().connections.load(SeqCst) == 1
    }));
    assert!(wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&runs).is_ok_and(|t| t.lines().count() >= 4)
    }));
    run.expect_line(Duration::from_secs(10), |l| {
        l.contains("the token is unchanged")
    });
    run.terminate();
    let seen = run.seen.clone();
    let (status, rest) = run.wait(Duration::from_secs(60));
    let all = [seen, rest].concat().join("\n");
    assert!(status.success(), "{status:?}\n{all}");
    // One connection: an unchanged token disturbs nothing.
    assert_eq!(x.mock.stats().connections.load(SeqCst), 1);
    assert!(!all.contains(NEW_TOKEN), "{all}");
}
