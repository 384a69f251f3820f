//! `panda-feed run` as a user runs it: `--mock` on a fresh machine, the
//! external-broker recipe (`mock-exchange --record` + `run --ws-url
//! --brokers`), a rejected token, and bad settings.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use panda_feed::mock::EmbeddedBroker;
use panda_feed::mock::{MockConfig, MockExchange};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_panda-feed");

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "panda-feed-cli-run-{tag}-{}-{}",
        std::process::id(),
        panda_feed::clock::now_ns()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("run")
        // Tests run in parallel: a free port each, never the default 9187.
        .args(["--ops-listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("ZERODHA__API_KEY")
        .env_remove("ZERODHA__ACCESS_TOKEN")
        .output()
        .expect("spawn panda-feed")
}

fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary written")).unwrap()
}

fn identity_holds(s: &Value) -> bool {
    let n = |k: &str| s[k].as_i64().unwrap();
    s["identity_holds"] == true
        && n("received") == n("published") + n("parked") + n("dropped") + n("in_flight")
}

#[test]
fn run_mock_publishes_with_a_live_status_and_an_exact_summary() {
    let dir = tempdir("mock");
    let s = dir.join("summary.json");
    let out = run(&[
        "--mock",
        "--duration",
        "3",
        "--summary",
        s.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
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

fn consume_all(bootstrap: &str, topic: &str, partitions: i32, want: usize) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cli-run-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < want && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consumer error");
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            out.push((key, serde_json::from_slice(m.payload().unwrap()).unwrap()));
        }
    }
    // Anything beyond `want` would be a duplicate: give it a moment to show.
    if let Some(m) = consumer.poll(Duration::from_millis(500)) {
        let m = m.expect("consumer error");
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        out.push((key, serde_json::from_slice(m.payload().unwrap()).unwrap()));
    }
    out
}

#[test]
fn external_broker_gets_exactly_the_recorded_ticks() {
    const TICKS: usize = 20_000;
    let dir = tempdir("external");
    let record = dir.join("sent.bin");
    let csv = dir.join("instruments.csv");
    let mut text = String::from("instrument_token,tradingsymbol,name,exchange,mode\n");
    for i in 0..60u32 {
        let mode = ["full", "quote", "ltp"][i as usize % 3];
        text.push_str(&format!(
            "{},S{i},Sym {i},NSE,{mode}\n",
            ((100 + i) << 8) | 1
        ));
    }
    text.push_str("256265,NIFTY 50,NIFTY 50,NSE,full\n");
    std::fs::write(&csv, text).unwrap();

    // The exchange, as its own process.
    let mut mock = Command::new(BIN)
        .args([
            "mock-exchange",
            "--listen",
            "127.0.0.1:0",
            "--rate",
            "20000",
        ])
        .args([
            "--max-ticks",
            &TICKS.to_string(),
            "--record",
            record.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(mock.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("mock-exchange printed its URL")
            .unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining the mock's status lines so it never blocks on stderr.
    let drain = std::thread::spawn(move || lines.count());

    // A Kafka-protocol broker outside the feed's process.
    let broker = EmbeddedBroker::start(1, "ticks.test", 4).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "mock_access_token\n").unwrap();
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&s);
    assert!(identity_holds(&s), "{s:#}");
    assert_eq!(s["published"], TICKS, "{s:#}");

    Command::new("kill")
        .arg("-TERM")
        .arg(mock.id().to_string())
        .status()
        .unwrap();
    assert!(mock.wait().unwrap().success());
    drain.join().unwrap();

    // What `decode --framed` says the exchange sent, per instrument.
    let decoded = Command::new(BIN)
        .args(["decode", "--framed", record.to_str().unwrap()])
        .output()
        .unwrap();
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

    let records = consume_all(broker.bootstrap_servers(), "ticks.test", 4, TICKS);
    assert_eq!(records.len(), TICKS, "each tick exactly once");
    let mut got: HashMap<u64, Vec<Value>> = HashMap::new();
    for (key, env) in records {
        let tok = env["data"]["instrument_token"].as_u64().unwrap();
        assert_eq!(key, tok.to_string());
        got.entry(tok).or_default().push(env["data"].clone());
    }
    assert_eq!(
        got, want,
        "the topic holds exactly the recorded ticks, in order per instrument"
    );
}

#[test]
fn rejected_token_is_not_retried_and_exits_3_with_the_reason_and_no_secret() {
    let dir = tempdir("403");
    let mock = MockExchange::start(MockConfig::default()).unwrap();
    let broker = EmbeddedBroker::start(1, "market.ticks", 1).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "yesterdays_token").unwrap();
    let s = dir.join("summary.json");
    let out = run(&[
        "--ws-url",
        &mock.ws_url(),
        "--api-key",
        "mock_api_key",
        "--access-token-file",
        token.to_str().unwrap(),
        "--brokers",
        broker.bootstrap_servers(),
        "--instruments",
        csv_of_one(&dir).to_str().unwrap(),
        "--duration",
        "2",
        "--summary",
        s.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(
        mock.stats()
            .rejected_403
            .load(std::sync::atomic::Ordering::SeqCst),
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

fn csv_of_one(dir: &Path) -> PathBuf {
    let p = dir.join("one.csv");
    std::fs::write(
        &p,
        "instrument_token,tradingsymbol,name,exchange\n408065,INFY,INFOSYS,NSE\n",
    )
    .unwrap();
    p
}

#[test]
fn bad_settings_are_named_with_the_fix() {
    let dir = tempdir("bad");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[kafka]\ncompresion = \"lz4\"\n").unwrap();
    let out = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--mock",
        "--duration",
        "1",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(e.contains("bad.toml") && e.contains("compresion"), "{e}");

    let out = run(&["--brokers", "127.0.0.1:1", "--duration", "1"]);
    let e = String::from_utf8_lossy(&out.stderr);
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
    let e = String::from_utf8_lossy(&out.stderr);
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
    let e = String::from_utf8_lossy(&out.stderr);
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
    let dir = tempdir("token-change");
    let mock = MockExchange::start(MockConfig::default()).unwrap();
    let broker = EmbeddedBroker::start(1, "market.ticks", 1).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "yesterdays_token\n").unwrap();
    let s = dir.join("summary.json");
    let mut child = Command::new(BIN)
        .arg("run")
        .args(["--ops-listen", "127.0.0.1:0"])
        .args(["--ws-url", &mock.ws_url(), "--api-key", "mock_api_key"])
        .arg("--access-token-file")
        .arg(&token)
        .arg("--instruments")
        .arg(csv_of_one(&dir))
        .args(["--brokers", broker.bootstrap_servers(), "--duration", "6"])
        .arg("--summary")
        .arg(&s)
        .env_remove("ZERODHA__ACCESS_TOKEN")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("the feed reported the 403").unwrap();
        seen.push(line.clone());
        if line.contains("waiting for a new access token") {
            break;
        }
    }
    std::fs::write(&token, "mock_access_token\n").unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
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
    let dir = tempdir("sigterm");
    let s = dir.join("summary.json");
    let mut child = Command::new(BIN)
        .args(["run", "--ops-listen", "127.0.0.1:0"])
        .args(["--mock", "--mock-rate", "50000", "--summary"])
        .arg(&s)
        .current_dir(&dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Two status lines with ticks flowing, then SIGTERM.
    let mut flowing = 0;
    while flowing < 2 {
        let line = lines.next().expect("status lines").unwrap();
        if line.contains("/s out") && !line.contains("received 0 ") {
            flowing += 1;
        }
    }
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
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
