//! The downstream bar stream (README, "Downstream stream"), driven directly:
//! each test makes its own bar hand-offs (rtrb pairs, as the publishers'
//! are), pushes `Bar`s and talks to the server with a blocking tungstenite
//! client. Redis is the machine's (127.0.0.1:6379), under a key prefix of
//! the test's own that is deleted at the end.

mod util;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use panda_feed::bars::{Bar, BarRx, BarTx, write_bar};
use panda_feed::config::RedisConfig;
use panda_feed::json::JsonBuf;
use panda_feed::run_id::RunId;
use panda_feed::stream::{StreamConfig, StreamCounts, StreamServer};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};
use util::cli::{Running, feed_run};
use util::http::{call, metric};
use util::{TempDir, wait_until};

const REDIS: &str = "redis://127.0.0.1:6379/0";
/// Generous: the suite shares two cores with builds.
const WAIT: Duration = Duration::from_secs(20);

type Ws = WebSocket<TcpStream>;

fn bar(token: u32, minute: u64) -> Bar {
    let start = 1_764_056_100 + minute * 60;
    Bar {
        token,
        price_divisor: 100,
        start_ns: start * 1_000_000_000,
        end_ns: (start + 60) * 1_000_000_000,
        open: 157_370,
        high: 157_500 + u32::try_from(minute).unwrap(),
        low: 157_005,
        close: 157_400,
        volume: 1000 + minute,
        ticks: 42,
    }
}

/// The record the stream sends for `b` (the `bars.topic` value).
fn record(b: &Bar, run: RunId) -> Value {
    let mut out = JsonBuf::with_capacity(4096);
    write_bar(b, run, &mut out).unwrap();
    serde_json::from_slice(out.as_bytes()).unwrap()
}

fn feed() -> (BarTx, BarRx) {
    rtrb::RingBuffer::new(4096)
}

fn config(replay_bars: usize) -> StreamConfig {
    StreamConfig {
        replay_bars,
        ..StreamConfig::with_listen("127.0.0.1:0".parse().unwrap())
    }
}

/// A Redis key prefix of this test's own; its replay lists are deleted on
/// drop.
struct Prefix(String);

impl Prefix {
    fn new(test: &str) -> Self {
        Self(format!(
            "test:stream:{test}:{}:{}",
            std::process::id(),
            panda_feed::clock::now_ns()
        ))
    }

    fn redis(&self) -> RedisConfig {
        RedisConfig {
            url: REDIS.into(),
            key_prefix: self.0.clone(),
            ..RedisConfig::default()
        }
    }

    fn conn() -> redis::Connection {
        redis::Client::open(REDIS)
            .unwrap()
            .get_connection()
            .expect("the machine's Redis at 127.0.0.1:6379")
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let mut c = Self::conn();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.0))
            .query(&mut c)
            .unwrap_or_default();
        for k in keys {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(k).query(&mut c);
        }
    }
}

fn connect(addr: SocketAddr) -> Ws {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}/"), s).unwrap();
    ws
}

fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// The next text frame, parsed.
fn next(ws: &mut Ws) -> Value {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Subscribes; returns the replayed bar records and the acknowledgement.
fn subscribe(ws: &mut Ws, tokens: &[u32]) -> (Vec<Value>, Value) {
    send(ws, &json!({"a": "subscribe", "v": tokens}));
    let mut bars = Vec::new();
    loop {
        let v = next(ws);
        if v["type"] == "subscribed" {
            return (bars, v);
        }
        assert_eq!(v["type"], "bar_1m", "{v}");
        bars.push(v);
    }
}

fn push(tx: &mut BarTx, bars: impl IntoIterator<Item = Bar>) {
    for b in bars {
        tx.push(b).expect("the hand-off has room");
    }
}

fn await_counts(s: &StreamServer, what: &str, cond: impl Fn(&StreamCounts) -> bool) {
    let stats = s.stats();
    assert!(
        wait_until(WAIT, || cond(&stats.snapshot())),
        "{what}: {:?}",
        stats.snapshot()
    );
}

#[test]
fn a_client_gets_the_last_n_bars_then_live_ones_and_the_new_window_on_reconnect() {
    let (mut tx, rx) = feed();
    let run = RunId(7);
    let s = StreamServer::start(config(5), None, run, vec![rx]).unwrap();
    push(&mut tx, (0..8).map(|m| bar(1, m)));
    push(&mut tx, (0..3).map(|m| bar(2, m)));
    await_counts(&s, "bars handed off", |c| c.bars_received == 11);

    let mut ws = connect(s.local_addr());
    let (replay, ack) = subscribe(&mut ws, &[1, 2]);
    let want: Vec<Value> = (3..8)
        .map(|m| record(&bar(1, m), run))
        .chain((0..3).map(|m| record(&bar(2, m), run)))
        .collect();
    assert_eq!(replay, want, "the last 5 of token 1, all 3 of token 2");
    assert_eq!(
        ack,
        json!({"type":"subscribed","tokens":[1,2],"replayed":8})
    );

    // Live: a new bar of a subscribed token arrives at once; others do not.
    push(&mut tx, [bar(3, 0), bar(1, 8)]);
    assert_eq!(next(&mut ws), record(&bar(1, 8), run));

    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    await_counts(&s, "client gone", |c| c.clients == 0);
    push(&mut tx, [bar(1, 9), bar(1, 10)]);
    await_counts(&s, "more bars", |c| c.bars_received == 15);

    let mut ws = connect(s.local_addr());
    let (replay, ack) = subscribe(&mut ws, &[1]);
    let want: Vec<Value> = (6..11).map(|m| record(&bar(1, m), run)).collect();
    assert_eq!(replay, want, "the new window");
    assert_eq!(ack["replayed"], 5);
    // Unsubscribed tokens stop.
    send(&mut ws, &json!({"a":"unsubscribe","v":[1]}));
    assert_eq!(next(&mut ws), json!({"type":"unsubscribed","tokens":[1]}));
    push(&mut tx, [bar(1, 11), bar(2, 11)]);
    send(&mut ws, &json!({"a":"subscribe","v":[2]}));
    let (replay, _) = subscribe_ack_only(&mut ws);
    assert!(
        replay.iter().all(|b| b["instrument_token"] == 2),
        "{replay:?}"
    );

    let c = s.stop();
    assert_eq!(c.bars_received, 17);
    assert_eq!(c.clients_accepted, 2);
    assert_eq!(c.slow_disconnects + c.clients_refused + c.bad_requests, 0);
    assert_eq!(c.instruments, 3);
}

/// Reads the frames of a subscribe already sent, up to its acknowledgement.
fn subscribe_ack_only(ws: &mut Ws) -> (Vec<Value>, Value) {
    let mut bars = Vec::new();
    loop {
        let v = next(ws);
        if v["type"] == "subscribed" {
            return (bars, v);
        }
        bars.push(v);
    }
}

#[test]
fn after_a_feed_restart_the_window_comes_from_redis() {
    let prefix = Prefix::new("restart");
    let redis = prefix.redis();
    let mut cfg = config(5);
    cfg.redis_ttl_s = 600;
    let (first_run, second_run) = (RunId(1), RunId(2));

    let (mut tx, rx) = feed();
    let s = StreamServer::start(cfg.clone(), Some(&redis), first_run, vec![rx]).unwrap();
    push(&mut tx, (0..7).map(|m| bar(5, m)));
    await_counts(&s, "written to Redis", |c| {
        c.redis_writes_ok >= 1 && c.bars_received == 7
    });
    let c = s.stop();
    assert_eq!(
        (c.redis_writes_error, c.redis_bars_dropped),
        (0, 0),
        "{c:?}"
    );
    // The list holds the last N records, with the TTL.
    let mut r = Prefix::conn();
    let key = format!("{}:bars:5", prefix.0);
    let stored: Vec<String> = redis::cmd("LRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .query(&mut r)
        .unwrap();
    let want: Vec<Value> = (2..7).map(|m| record(&bar(5, m), first_run)).collect();
    let stored: Vec<Value> = stored
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert_eq!(stored, want);
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut r).unwrap();
    assert!((1..=600).contains(&ttl), "ttl {ttl}");

    // Something else in token 6's list: skipped, counted.
    let _: i64 = redis::cmd("RPUSH")
        .arg(format!("{}:bars:6", prefix.0))
        .arg(r#"{"type":"bar_1m","not":"a bar"}"#)
        .query(&mut r)
        .unwrap();
    // A fresh server (empty memory, same prefix): the window comes from Redis,
    // records of the first run as they were published.
    let (mut tx, rx) = feed();
    let s = StreamServer::start(cfg, Some(&redis), second_run, vec![rx]).unwrap();
    let mut ws = connect(s.local_addr());
    let (replay, ack) = subscribe(&mut ws, &[5, 6]);
    assert_eq!(replay, want);
    assert_eq!(ack["replayed"], 5);
    // Then live bars, and a new client's window: the newest restored + live.
    push(&mut tx, [bar(5, 7)]);
    assert_eq!(next(&mut ws), record(&bar(5, 7), second_run));
    let mut ws2 = connect(s.local_addr());
    let (replay, _) = subscribe(&mut ws2, &[5]);
    let mut want2: Vec<Value> = want[1..].to_vec();
    want2.push(record(&bar(5, 7), second_run));
    assert_eq!(replay, want2);
    let c = s.stop();
    assert_eq!(c.redis_reads_ok, 1, "one pipeline, asked once: {c:?}");
    assert_eq!(c.bars_replayed_from_redis, 5 + 4);
    assert_eq!(c.redis_records_skipped, 1);
}

#[test]
fn redis_down_serves_from_memory_and_counts() {
    // Nothing listens on port 1: every Redis call fails at once.
    let redis = RedisConfig {
        url: "redis://127.0.0.1:1/0".into(),
        key_prefix: "test:stream:down".into(),
        breaker_failures: 2,
        ..RedisConfig::default()
    };
    let (mut tx, rx) = feed();
    let run = RunId(3);
    let s = StreamServer::start(config(3), Some(&redis), run, vec![rx]).unwrap();
    push(&mut tx, (0..4).map(|m| bar(8, m)));
    await_counts(&s, "write failed", |c| c.redis_writes_error == 1);
    let mut ws = connect(s.local_addr());
    // Token 9 has no bar in memory: Redis is asked, fails, the client is
    // still served.
    let (replay, ack) = subscribe(&mut ws, &[8, 9]);
    let want: Vec<Value> = (1..4).map(|m| record(&bar(8, m), run)).collect();
    assert_eq!(replay, want);
    assert_eq!(ack["replayed"], 3);
    // The circuit is open now (two failures): the next write is skipped.
    push(&mut tx, [bar(8, 4)]);
    assert_eq!(next(&mut ws), record(&bar(8, 4), run));
    let c = s.stop();
    assert_eq!(c.redis_reads_error, 1, "{c:?}");
    assert_eq!(c.redis_writes_error, 1, "{c:?}");
    assert!(c.redis_circuit_open_skips >= 1, "{c:?}");
    assert_eq!(c.redis_bars_dropped, 5, "every bar not written is counted");
}

#[test]
fn a_client_that_never_reads_is_disconnected_while_another_keeps_up() {
    // A hand-off of 16,384 bars: more than a minute close of 9000
    // instruments, 1.6 s of this test's feed.
    let (mut tx, rx) = rtrb::RingBuffer::new(16_384);
    let cfg = StreamConfig {
        client_buffer_bytes: 64 * 1024,
        ..config(10)
    };
    let s = StreamServer::start(cfg, None, RunId(4), vec![rx]).unwrap();
    let mut reader = connect(s.local_addr());
    let mut sleeper = connect(s.local_addr());
    subscribe(&mut reader, &[11]);
    subscribe(&mut sleeper, &[11]);
    // The reader reads on its own thread; the sleeper never reads again.
    // 10 k bars/s (a 9000-instrument minute close is one burst of 9000):
    // the sleeper's socket buffers and its 64 KiB fill within two seconds.
    let total: u64 = 30_000;
    let reading = std::thread::spawn(move || {
        let mut got = 0u64;
        let mut in_order = true;
        while got < total {
            let v = next(&mut reader);
            in_order &= v["volume"] == 1000 + got;
            got += 1;
        }
        (got, in_order, reader)
    });
    // The feed pushes in steady batches; the hand-off is never full: the
    // server drains it whatever the sleeper does.
    let mut full = 0u64;
    let started = Instant::now();
    for m in 0..total {
        while tx.push(bar(11, m)).is_err() {
            full += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        if m % 100 == 99 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let (got, in_order, _reader) = reading.join().unwrap();
    assert_eq!((got, in_order), (total, true));
    let c = s.stats().snapshot();
    assert_eq!(c.slow_disconnects, 1, "{c:?}");
    assert_eq!(c.clients, 1, "{c:?}");
    assert_eq!(c.bars_received, total);
    eprintln!(
        "{total} bars in {:?}; hand-off full {full} times; the sleeper was sent {} bars \
         before its disconnect",
        started.elapsed(),
        c.bars_sent - total
    );
    assert_eq!(full, 0, "the feed was held up");
    // The sleeper finds its connection closed once it reads.
    let mut closed = false;
    for _ in 0..100_000 {
        match sleeper.read() {
            Ok(_) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the slow client was not disconnected");
    drop(s);
}

#[test]
fn the_client_limit_is_enforced() {
    let (_tx, rx) = feed();
    let cfg = StreamConfig {
        max_clients: 2,
        ..config(5)
    };
    let s = StreamServer::start(cfg, None, RunId(5), vec![rx]).unwrap();
    let a = connect(s.local_addr());
    let _b = connect(s.local_addr());
    let stream = TcpStream::connect(s.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    match tungstenite::client(format!("ws://{}/", s.local_addr()), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            assert_eq!(r.status(), 503);
        }
        other => panic!("third client not refused: {:?}", other.map(|_| ())),
    }
    await_counts(&s, "refused", |c| c.clients_refused == 1 && c.clients == 2);
    drop(a);
    await_counts(&s, "a slot freed", |c| c.clients == 1);
    let mut c = connect(s.local_addr());
    assert_eq!(subscribe(&mut c, &[1]).1["replayed"], 0);
}

#[test]
fn a_malformed_request_gets_an_error_frame_not_a_crash() {
    let (mut tx, rx) = feed();
    let s = StreamServer::start(config(5), None, RunId(6), vec![rx]).unwrap();
    let mut ws = connect(s.local_addr());
    for (bad, says) in [
        ("{\"a\":\"subscribe\",\"v\":[408065", "not JSON"),
        (
            r#"{"a":"subscribe","v":["x"]}"#,
            "\"x\" is not an instrument token",
        ),
        (
            r#"{"a":"subscribe","v":[-1]}"#,
            "-1 is not an instrument token",
        ),
        (r#"{"a":"resubscribe","v":[1]}"#, "unknown action"),
        (r#"{"a":"mode","v":["bars+ticks",[1]]}"#, "not built"),
    ] {
        ws.send(Message::text(bad)).unwrap();
        let e = next(&mut ws);
        assert_eq!(e["type"], "error", "{bad}: {e}");
        assert!(e["data"].as_str().unwrap().contains(says), "{bad}: {e}");
    }
    ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(next(&mut ws)["type"], "error");
    // A burst of more requests than one turn reads: every one answered.
    for _ in 0..200 {
        ws.write(Message::text("[]")).unwrap();
    }
    ws.flush().unwrap();
    for _ in 0..200 {
        assert_eq!(next(&mut ws)["type"], "error");
    }
    // Still served.
    push(&mut tx, [bar(1, 0)]);
    await_counts(&s, "bar", |c| c.bars_received == 1);
    assert_eq!(subscribe(&mut ws, &[1]).1["replayed"], 1);
    let c = s.stop();
    assert_eq!(c.bad_requests, 206);
    assert_eq!(c.clients_accepted, 1);
}

#[test]
fn bars_of_instruments_past_the_limit_are_counted_not_kept() {
    let (mut tx, rx) = feed();
    let cfg = StreamConfig {
        max_instruments: 2,
        ..config(5)
    };
    let s = StreamServer::start(cfg, None, RunId(8), vec![rx]).unwrap();
    push(&mut tx, [bar(1, 0), bar(2, 0), bar(3, 0), bar(3, 1)]);
    await_counts(&s, "over", |c| c.bars_received == 4);
    let mut ws = connect(s.local_addr());
    assert_eq!(subscribe(&mut ws, &[3]).1["replayed"], 0);
    // A subscription past the limit is refused whole.
    send(&mut ws, &json!({"a":"subscribe","v":[4, 5]}));
    let e = next(&mut ws);
    assert!(
        e["data"]
            .as_str()
            .unwrap()
            .contains("ops.stream_max_instruments"),
        "{e}"
    );
    let c = s.stop();
    assert_eq!((c.instruments, c.instruments_over_limit), (2, 2));
}

#[test]
fn run_mock_serves_the_stream_and_reports_it() {
    let dir = TempDir::new("stream-run");
    let summary = dir.join("summary.json");
    let mut feed = Running::spawn(
        feed_run([
            "--mock",
            "--duration",
            "4",
            "--summary",
            summary.to_str().unwrap(),
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null()),
    );
    let ops = feed.ops_addr();
    let serving = feed.expect_line(WAIT, |l| l.contains("stream: serving bars at ws://"));
    let addr: SocketAddr = serving
        .split_once("ws://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no stream address in {serving:?}"));
    let mut ws = connect(addr);
    // Whatever bars closed so far are replayed, then the acknowledgement.
    let (replay, ack) = subscribe(&mut ws, &[408_065]);
    assert!(replay.iter().all(|b| b["instrument_token"] == 408_065));
    assert_eq!(ack["replayed"], replay.len());
    assert!(
        wait_until(WAIT, || {
            let (_, m) = call(&ops, "GET", "/metrics", None, "");
            metric(&m, "panda_feed_stream_clients", "") == Some(1.0)
        }),
        "panda_feed_stream_clients never 1"
    );
    let (status, _) = feed.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["stream"]["clients_accepted"], 1, "{}", s["stream"]);
    assert_eq!(s["stream"]["bad_requests"], 0, "{}", s["stream"]);
}

#[test]
fn a_connection_that_never_handshakes_is_closed_and_its_slot_freed() {
    let (_tx, rx) = feed();
    let cfg = StreamConfig {
        max_clients: 1,
        ..config(5)
    };
    let s = StreamServer::start(cfg, None, RunId(9), vec![rx]).unwrap();
    // Holds the only slot and sends nothing.
    let mut idle = TcpStream::connect(s.local_addr()).unwrap();
    await_counts(&s, "handshake deadline", |c| c.handshake_failures == 1);
    idle.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 16];
    assert!(
        matches!(std::io::Read::read(&mut idle, &mut b), Ok(0) | Err(_)),
        "closed"
    );
    let mut ws = connect(s.local_addr());
    assert_eq!(subscribe(&mut ws, &[1]).1["replayed"], 0);
    assert_eq!(s.stop().clients_refused, 0);
}

#[test]
fn a_replay_larger_than_the_client_buffer_follows_the_client_reading() {
    // 600 tokens × 100 bars of ~220 bytes: 13 MB of replay, two hundred
    // times the 64 KiB bound and more than the socket buffers hold.
    let (mut tx, rx) = rtrb::RingBuffer::new(16_384);
    let cfg = StreamConfig {
        client_buffer_bytes: 64 * 1024,
        ..config(100)
    };
    let run = RunId(10);
    let s = StreamServer::start(cfg, None, run, vec![rx]).unwrap();
    let tokens: Vec<u32> = (1..=600).collect();
    for m in 0..100 {
        for &t in &tokens {
            while tx.push(bar(t, m)).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    await_counts(&s, "windows filled", |c| c.bars_received == 60_000);
    let mut ws = connect(s.local_addr());
    // Subscribe, and before reading anything unsubscribe the last token:
    // its replay is still queued then, and is not sent.
    send(&mut ws, &json!({"a": "subscribe", "v": tokens}));
    send(&mut ws, &json!({"a": "unsubscribe", "v": [600]}));
    let mut per_token = std::collections::BTreeMap::<u64, u64>::new();
    let mut first = None;
    let mut unsubscribed = false;
    let ack = loop {
        let v = next(&mut ws);
        match v["type"].as_str() {
            Some("bar_1m") => {
                first.get_or_insert_with(|| v.clone());
                *per_token
                    .entry(v["instrument_token"].as_u64().unwrap())
                    .or_default() += 1;
            }
            Some("unsubscribed") => unsubscribed = true,
            _ => break v,
        }
    };
    assert!(unsubscribed);
    assert_eq!(ack["type"], "subscribed", "{ack}");
    assert_eq!(ack["replayed"], 59_900);
    assert_eq!(per_token.len(), 599);
    assert!(per_token.values().all(|n| *n == 100), "{per_token:?}");
    // Token by token, oldest first.
    assert_eq!(first.unwrap(), record(&bar(1, 0), run));
    // Live: the unsubscribed token gets nothing, the others their bars.
    push(&mut tx, [bar(600, 100), bar(599, 100)]);
    assert_eq!(next(&mut ws), record(&bar(599, 100), run));
    let c = s.stop();
    assert_eq!(c.slow_disconnects, 0, "{c:?}");
    assert_eq!(c.bars_replayed, 59_900);
}

#[test]
fn a_busy_stream_address_stops_run_before_the_engine_starts() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let out = util::cli::output(
        feed_run(["--mock", "--duration", "5"]).env("OPS__STREAM_LISTEN", addr.to_string()),
    );
    let err = util::cli::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on ops.stream_listen {addr}"))
            && err.contains("ops.stream_listen = \"off\""),
        "{err}"
    );
    assert!(
        !err.contains("every envelope carries"),
        "the engine started: {err}"
    );
}

#[test]
fn stream_tail_prints_the_replayed_window_then_live_bars_and_exits_when_it_has_them() {
    let (mut tx, rx) = feed();
    let run = RunId(9);
    let s = StreamServer::start(config(3), None, run, vec![rx]).unwrap();
    push(&mut tx, (0..5).map(|m| bar(1, m)));
    await_counts(&s, "bars handed off", |c| c.bars_received == 5);
    let addr = s.local_addr().to_string();
    // The window (3 bars) at once, then one live bar: 4 in all.
    let child = util::cli::panda_feed([
        "stream-tail",
        "--connect",
        &addr,
        "--tokens",
        "1",
        "--bars",
        "4",
        "--timeout-s",
        "60",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    await_counts(&s, "the tail subscribed", |c| c.clients == 1);
    await_counts(&s, "the window replayed", |c| c.bars_replayed >= 3);
    push(&mut tx, [bar(1, 5)]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<Value> = (2..5).map(|m| record(&bar(1, m), run)).collect();
    assert_eq!(&lines[..3], &want[..], "the window, oldest first");
    assert_eq!(
        lines[3],
        json!({"type":"subscribed","tokens":[1],"replayed":3})
    );
    assert_eq!(lines[4], record(&bar(1, 5), run), "then live");
    assert!(
        stderr.contains("3 bars replayed at once") && stderr.contains("3 replayed, 1 live"),
        "{stderr}"
    );
    let c = s.stop();
    assert_eq!((c.clients_accepted, c.slow_disconnects), (1, 0));

    // Nothing listening: a clear error and exit 1 once the timeout passes.
    let out = util::cli::output(&mut util::cli::panda_feed([
        "stream-tail",
        "--connect",
        "127.0.0.1:1",
        "--tokens",
        "1",
        "--timeout-s",
        "0.5",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to 127.0.0.1:1") && stderr.contains("ops.stream_listen"),
        "{stderr}"
    );
}
