//! `panda-feed run` as a user runs it: `--mock` on a fresh machine, the
//! external-broker recipe (`mock-exchange --record` + `run --ws-url
//! --brokers`), a rejected token, and bad settings.

mod util;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use util::cli::{Running, feed_run, output, panda_feed, stderr};
use util::kafka::Consumer;
use util::stack::start_broker;
use util::{Stack, TempDir};

/// `panda-feed run <args>` to the end.
fn run(args: &[&str]) -> Output {
    output(&mut feed_run(args))
}

fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary written")).unwrap()
}

fn identity_holds(s: &Value) -> bool {
    let n = |k: &str| s[k].as_i64().unwrap();
    s["identity_holds"] == true
        && n("received") == n("published") + n("parked") + n("dropped") + n("in_flight")
}

fn csv_of_one(dir: &TempDir) -> PathBuf {
    dir.file(
        "one.csv",
        "instrument_token,tradingsymbol,name,exchange\n408065,INFY,INFOSYS,NSE\n",
    )
}

#[test]
fn run_mock_publishes_with_a_live_status_and_an_exact_summary() {
    let dir = TempDir::new("cli-run-mock");
    let s = dir.join("summary.json");
    let out = run(&[
        "--mock",
        "--duration",
        "3",
        "--summary",
        s.to_str().unwrap(),
    ]);
    let stderr = stderr(&out);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    assert!(
        stderr.contains("embedded Kafka broker at 127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains("/s out") && l.contains("p99"))
            .count()
            >= 2,
        "no status lines:\n{stderr}"
    );
    let s = summary(&s);
    assert!(identity_holds(&s), "{s:#}");
    assert!(s["published"].as_u64().unwrap() > 0);
    assert_eq!(s["in_flight"], 0);
    for k in ["ring_full", "spool_full", "spool_error"] {
        assert!(s["dropped_by_reason"][k].is_u64(), "{k}");
    }
    for k in [
        "producer_queue_full",
        "produce_error",
        "delivery_failed",
        "unflushed_at_exit",
    ] {
        assert!(s["failures"][k].is_u64(), "{k}");
    }
    for k in ["p50", "p99", "p99_9", "max"] {
        assert!(s["latency_ns"][k].as_u64().unwrap() > 0, "{k}");
    }
}

#[test]
fn external_broker_gets_exactly_the_recorded_ticks() {
    const TICKS: usize = 20_000;
    let dir = TempDir::new("cli-run-external");
    let record = dir.join("sent.bin");
    let mut text = String::from("instrument_token,tradingsymbol,name,exchange,mode\n");
    for i in 0..60u32 {
        let mode = ["full", "quote", "ltp"][i as usize % 3];
        text.push_str(&format!(
            "{},S{i},Sym {i},NSE,{mode}\n",
            ((100 + i) << 8) | 1
        ));
    }
    text.push_str("256265,NIFTY 50,NIFTY 50,NSE,full\n");
    let csv = dir.file("instruments.csv", text);

    // The exchange, as its own process (its stderr is drained meanwhile).
    let mut mock = Running::spawn(
        panda_feed([
            "mock-exchange",
            "--listen",
            "127.0.0.1:0",
            "--rate",
            "20000",
        ])
        .args(["--max-ticks", &TICKS.to_string()])
        .arg("--record")
        .arg(&record),
    );
    let line = mock.expect_line(Duration::from_secs(30), |l| l.contains("listening on "));
    let url = line.split("listening on ").nth(1).unwrap();
    let url = url.split_whitespace().next().unwrap().to_owned();

    // A Kafka-protocol broker outside the feed's process.
    let broker = start_broker("ticks.test", 4);
    let token = dir.file("token", "mock_access_token\n");
    let s = dir.join("summary.json");
    let out = run(&[
        "--ws-url",
        &url,
        "--api-key",
        "mock_api_key",
        "--access-token-file",
        token.to_str().unwrap(),
        "--instruments",
        csv.to_str().unwrap(),
        "--brokers",
        broker.bootstrap_servers(),
        "--topic",
        "ticks.test",
        "--duration",
        "5",
        "--summary",
        s.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&s);
    assert!(identity_holds(&s), "{s:#}");
    assert_eq!(s["published"], TICKS, "{s:#}");

    mock.terminate();
    let (status, _) = mock.wait(Duration::from_secs(30));
    assert!(status.success());

    // What `decode --framed` says the exchange sent, per instrument.
    let decoded = output(panda_feed(["decode", "--framed"]).arg(&record));
    assert!(decoded.status.success());
    let mut want: HashMap<u64, Vec<Value>> = HashMap::new();
    let mut total = 0;
    for line in String::from_utf8(decoded.stdout).unwrap().lines() {
        let frame: Value = serde_json::from_str(line).unwrap();
        for t in frame["ticks"].as_array().unwrap() {
            want.entry(t["instrument_token"].as_u64().unwrap())
                .or_default()
                .push(t.clone());
            total += 1;
        }
    }
    assert_eq!(total, TICKS);

    let records = Consumer::spawn(
        broker.bootstrap_servers(),
        "ticks.test",
        4,
        Duration::from_secs(60),
    )
    .join(TICKS as u64);
    assert_eq!(records.len(), TICKS, "each tick exactly once");
    let mut got: HashMap<u64, Vec<Value>> = HashMap::new();
    for r in records {
        let env = r.envelope();
        let tok = env["data"]["instrument_token"].as_u64().unwrap();
        assert_eq!(r.key, tok.to_string());
        got.entry(tok).or_default().push(env["data"].clone());
    }
    assert_eq!(
        got, want,
        "the topic holds exactly the recorded ticks, in order per instrument"
    );
}

#[test]
fn rejected_token_is_not_retried_and_exits_3_with_the_reason_and_no_secret() {
    let x = Stack::builder()
        .tag("cli-run-403")
        .partitions(1)
        .start_exchange();
    let token = x.dir.file("token", "yesterdays_token");
    let s = x.dir.join("summary.json");
    let out = run(&[
        "--ws-url",
        &x.mock.ws_url(),
        "--api-key",
        "mock_api_key",
        "--access-token-file",
        token.to_str().unwrap(),
        "--brokers",
        x.brokers(),
        "--instruments",
        csv_of_one(&x.dir).to_str().unwrap(),
        "--duration",
        "2",
        "--summary",
        s.to_str().unwrap(),
    ]);
    let stderr = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(
        x.mock.stats().rejected_403.load(Ordering::SeqCst),
        1,
        "retried"
    );
    assert!(
        stderr.contains("HTTP 403") && stderr.contains("access token"),
        "{stderr}"
    );
    assert!(!stderr.contains("yesterdays_token"));
    let s = summary(&s);
    assert!(identity_holds(&s));
    assert!(
        s["connections"][0]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 403")
    );
    assert!(!s.to_string().contains("yesterdays_token"));
    assert!(
        s["duration_s"].as_f64().unwrap() < 30.0,
        "did not stop early"
    );
}

#[test]
fn bad_settings_are_named_with_the_fix() {
    let dir = TempDir::new("cli-run-bad");
    let cfg = dir.file("bad.toml", "[kafka]\ncompresion = \"lz4\"\n");
    let out = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--mock",
        "--duration",
        "1",
    ]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(e.contains("bad.toml") && e.contains("compresion"), "{e}");

    let out = run(&["--brokers", "127.0.0.1:1", "--duration", "1"]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        e.contains("no instruments") && e.contains("--instruments"),
        "{e}"
    );

    let out = run(&[
        "--instruments",
        csv_of_one(&dir).to_str().unwrap(),
        "--duration",
        "1",
    ]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        e.contains("no Kafka brokers") && e.contains("--brokers"),
        "{e}"
    );

    let out = run(&[
        "--instruments",
        csv_of_one(&dir).to_str().unwrap(),
        "--brokers",
        "127.0.0.1:1",
        "--ws-url",
        "http://example.invalid/?api_key=x",
        "--duration",
        "1",
    ]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        e.contains("ws:// or wss://")
            && e.contains("must not carry a query")
            && e.contains("no api_key"),
        "{e}"
    );
}

#[test]
fn a_new_token_in_the_file_is_picked_up_and_the_feed_recovers() {
    let x = Stack::builder()
        .tag("cli-run-token-change")
        .partitions(1)
        .start_exchange();
    let token = x.dir.file("token", "yesterdays_token\n");
    let s = x.dir.join("summary.json");
    let mut feed = Running::spawn(
        feed_run(["--ws-url", &x.mock.ws_url(), "--api-key", "mock_api_key"])
            .arg("--access-token-file")
            .arg(&token)
            .arg("--instruments")
            .arg(csv_of_one(&x.dir))
            .args(["--brokers", x.brokers(), "--duration", "6"])
            .arg("--summary")
            .arg(&s),
    );
    feed.expect_line(Duration::from_secs(30), |l| {
        l.contains("waiting for a new access token")
    });
    std::fs::write(&token, "mock_access_token\n").unwrap();
    let seen = feed.seen.clone();
    let (status, rest) = feed.wait(Duration::from_secs(60));
    let all = [seen, rest].concat().join("\n");
    assert!(status.success(), "{all}");
    assert!(
        all.contains("access token file") && all.contains("changed"),
        "{all}"
    );
    let s = summary(&s);
    assert!(identity_holds(&s), "{s:#}");
    assert_eq!(s["connections"][0]["attempts"], 2);
    assert_eq!(s["connections"][0]["reconnects"]["http_403"], 1);
    assert!(s["published"].as_u64().unwrap() > 0, "{s:#}");
}

#[test]
fn sigterm_under_load_drains_and_exits_0_with_nothing_lost() {
    let dir = TempDir::new("cli-run-sigterm");
    let s = dir.join("summary.json");
    let mut feed = Running::spawn(
        feed_run(["--mock", "--mock-rate", "50000", "--summary"])
            .arg(&s)
            .current_dir(dir.path()),
    );
    // Two status lines with ticks flowing, then SIGTERM.
    for _ in 0..2 {
        feed.expect_line(Duration::from_secs(60), |l| {
            l.contains("/s out") && !l.contains("received 0 ")
        });
    }
    feed.terminate();
    let (status, rest) = feed.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", rest.join("\n"));
    assert!(rest.iter().any(|l| l.contains("stopping (signal)")));
    let s = summary(&s);
    assert!(identity_holds(&s), "{s:#}");
    assert!(s["received"].as_u64().unwrap() > 50_000, "{s:#}");
    assert_eq!(s["received"], s["published"], "{s:#}");
    assert_eq!(
        (s["dropped"].as_u64(), s["parked"].as_u64()),
        (Some(0), Some(0))
    );
}
