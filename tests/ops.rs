//! The operator's view end to end: `/metrics` parsed as Prometheus text,
//! `/health` driven through its states by the mock exchange's faults, Redis
//! pipeline keys with TTLs on a real server, the circuit breaker across a
//! Redis outage, malformed HTTP requests, slow, idle and excess HTTP clients,
//! and secrets kept out of output.

mod util;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use panda_feed::config::RedisConfig;
use panda_feed::engine::Engine;
use panda_feed::ops::http::{MAX_CONNECTIONS, REQUEST_DEADLINE};
use panda_feed::ops::{Ops, OpsConfig};
use serde_json::Value;
use util::cli::{Running, feed_run, output};
use util::stack::TOPIC;
use util::{Stack, TempDir, wait_until};

fn ops_config() -> OpsConfig {
    OpsConfig {
        listen: "127.0.0.1:0".into(),
        sample_ms: 100,
        ..OpsConfig::default()
    }
}

/// One raw request; returns (status, body).
fn request(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"));
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

fn health(addr: SocketAddr) -> (u16, Value) {
    let (code, body) = get(addr, "/health");
    (code, serde_json::from_str(&body).unwrap())
}

fn codes(h: &Value) -> Vec<String> {
    h["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap().to_owned())
        .collect()
}

fn metric(text: &str, name: &str) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_as_ticks_flow() {
    let mut s = Stack::builder()
        .tag("ops-metrics")
        .partitions(4)
        .mock(|m| m.rate_per_s = 5_000)
        .start();
    let mut ops = Ops::start(ops_config(), RedisConfig::default(), TOPIC).unwrap();
    let addr = ops.local_addr().unwrap();
    // Publishers hand their latency histograms over every 200 ms: wait for
    // the first hand-over too, not only for ticks.
    assert!(wait_until(Duration::from_secs(30), || {
        ops.sample(&mut s.engine, true).counts.published > 100
            && !s.engine.latency_histograms().0.is_empty()
    }));
    let (code, first) = get(addr, "/metrics");
    assert_eq!(code, 200);
    // Every family has HELP and TYPE, and the whole page parses.
    for name in panda_feed::ops::metrics::METRIC_NAMES {
        assert!(first.contains(&format!("# HELP {name} ")), "{name}");
        assert!(first.contains(&format!("# TYPE {name} ")), "{name}");
    }
    let lines = first.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| s.metric.starts_with("panda_feed_"))
    );
    let received = metric(&first, "panda_feed_ticks_received_total");
    let published = metric(&first, "panda_feed_ticks_published_total");
    assert!(received >= published && published > 100.0, "{first}");
    assert_eq!(metric(&first, "panda_feed_connection_up"), 1.0);
    assert_eq!(metric(&first, "panda_feed_running"), 1.0);
    assert!(metric(&first, "panda_feed_produce_latency_seconds_count") > 0.0);
    // Counters move as ticks flow.
    assert!(wait_until(Duration::from_secs(30), || {
        ops.sample(&mut s.engine, true);
        let (_, now) = get(addr, "/metrics");
        metric(&now, "panda_feed_ticks_published_total") > published + 1000.0
            && metric(&now, "panda_feed_ack_latency_seconds_count") > 0.0
    }));
    let (_, now) = get(addr, "/metrics");
    assert!(metric(&now, "panda_feed_ticks_received_total") > received);
    assert!(metric(&now, "panda_feed_receive_rate_ticks_per_second") > 0.0);
    // The slow list names topic, partition and batch size.
    let (code, slow) = get(addr, "/ops/slow");
    assert_eq!(code, 200);
    let slow: Value = serde_json::from_str(&slow).unwrap();
    let k = &slow["kafka"][0];
    assert_eq!(k["topic"], TOPIC);
    assert!(k["partition"].as_i64().unwrap() >= 0 && k["batch_size"].as_u64().unwrap() >= 1);
    assert!(k["duration_ms"].as_f64().unwrap() > 0.0);
    let summary = s.engine.stop();
    assert!(summary.identity_holds);
    ops.finish(&summary);
    let (code, h) = health(addr);
    assert_eq!((code, codes(&h)), (503, vec!["not_running".to_owned()]));
}

#[test]
fn health_goes_healthy_degraded_unhealthy_healthy_with_the_exchange_faults() {
    let mut s = Stack::builder()
        .tag("ops-health")
        .partitions(2)
        .instruments(30)
        .mock(|m| m.rate_per_s = 2_000)
        .engine(|c| {
            c.supervision.liveness = Duration::from_millis(2000);
            c.supervision.backoff_base = Duration::from_millis(100);
            c.supervision.backoff_cap = Duration::from_millis(500);
            c.supervision.backoff_429 = Duration::from_millis(1500);
        })
        .start();
    let mut ops = Ops::start(
        OpsConfig {
            stale_after_ms: 600,
            ..ops_config()
        },
        RedisConfig::default(),
        TOPIC,
    )
    .unwrap();
    let addr = ops.local_addr().unwrap();
    let mut await_health = |want: &str, code: &str| {
        let mut last = Value::Null;
        let ok = wait_until(Duration::from_secs(30), || {
            ops.sample(&mut s.engine, true);
            let (status, h) = health(addr);
            let hit = h["status"] == want
                && (code.is_empty() || codes(&h).iter().any(|c| c == code))
                && (status == 503) == (want == "unhealthy");
            last = h;
            hit
        });
        assert!(ok, "wanted {want} {code}, last health: {last:#}");
        last
    };
    let h = await_health("healthy", "");
    assert!(h["issues"].as_array().unwrap().is_empty());
    // A silent stall: the open connection goes stale.
    s.mock.faults().stall.store(true, Ordering::SeqCst);
    let h = await_health("degraded", "stale_feed");
    assert!(
        h["issues"][0]["text"]
            .as_str()
            .unwrap()
            .contains("no frame")
    );
    // Liveness closes it; reconnects are refused: no connection open.
    s.mock.faults().reject_status.store(429, Ordering::SeqCst);
    await_health("unhealthy", "disconnected");
    // The exchange recovers: the connection comes back.
    s.mock.faults().reject_status.store(0, Ordering::SeqCst);
    s.mock.faults().stall.store(false, Ordering::SeqCst);
    await_health("healthy", "");
    let (code, conns) = get(addr, "/stats/connections");
    assert_eq!(code, 200);
    let conns: Value = serde_json::from_str(&conns).unwrap();
    let c = &conns["connections"][0];
    assert_eq!(c["state"], "open");
    assert!(c["reconnects"]["stale"].as_u64().unwrap() >= 1, "{c:#}");
    let history = c["history"].as_array().unwrap();
    assert!(history.len() <= 60 && history.len() > 10);
    let states: Vec<&str> = history
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert!(states.contains(&"backoff") && states.last() == Some(&"open"));
    assert!(history[0]["at"].as_str().unwrap().ends_with('Z'));
    assert!(s.engine.stop().identity_holds);
}

#[test]
fn malformed_requests_and_unknown_paths_get_4xx() {
    let ops = Ops::start(ops_config(), RedisConfig::default(), "t").unwrap();
    let addr = ops.local_addr().unwrap();
    let cases: [(&[u8], u16); 8] = [
        (b"GET /nope HTTP/1.1\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
        (b"garbage\r\n\r\n", 400),
        (b"GET metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0 extra\r\n\r\n", 400),
        (b"\xff\xfe\xfd\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\n", 400), // closed before the blank line
        (&[b'A'; 8192], 431),
    ];
    for (raw, want) in cases {
        let (code, body) = request(addr, raw);
        assert_eq!(
            code,
            want,
            "{:?}: {body}",
            String::from_utf8_lossy(&raw[..raw.len().min(40)])
        );
    }
    // Still serving, and it counted the 4xx answers.
    let (code, m) = get(addr, "/metrics?x=1");
    assert_eq!(code, 200);
    assert!(
        m.contains("panda_feed_ops_http_requests_total{code=\"4xx\"} 8"),
        "{m}"
    );
    // Before the first sample the feed is not running.
    let (code, h) = health(addr);
    assert_eq!(code, 503);
    assert_eq!(codes(&h), ["not_running"]);
    drop(ops.view());
}

fn redis_get(con: &mut redis::Connection, key: &str) -> (Option<String>, i64) {
    let v: Option<String> = redis::cmd("GET").arg(key).query(con).unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(key).query(con).unwrap();
    (v, ttl)
}

fn unique_prefix(tag: &str) -> String {
    format!(
        "pandatest:{tag}:{}:{}",
        std::process::id(),
        panda_feed::clock::now_ns()
    )
}

#[test]
fn redis_keys_are_written_with_ttls() {
    let mut s = Stack::builder()
        .tag("ops-redis-keys")
        .partitions(2)
        .instruments(30)
        .mock(|m| m.rate_per_s = 3_000)
        .start();
    let prefix = unique_prefix("keys");
    let redis_cfg = RedisConfig {
        url: "redis://127.0.0.1:6379/0".into(),
        key_prefix: prefix.clone(),
        ttl_s: 120,
        interval_ms: 100,
        ..RedisConfig::default()
    };
    let mut ops = Ops::start(ops_config(), redis_cfg, TOPIC).unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        let v = ops.sample(&mut s.engine, true);
        v.counts.published > 2000 && v.redis.writes_ok > 3
    }));
    let summary = s.engine.stop();
    let view = ops.finish(&summary);
    assert_eq!(view.redis.state, "closed");
    let mut con = redis::Client::open("redis://127.0.0.1:6379/0")
        .unwrap()
        .get_connection()
        .unwrap();
    let (count, ttl) = redis_get(&mut con, &format!("{prefix}:count"));
    // Every published tick counted exactly once.
    assert_eq!(
        count.unwrap().parse::<u64>().unwrap(),
        summary.counts.published
    );
    assert!(ttl > 0 && ttl <= 120, "{ttl}");
    let (activity, ttl) = redis_get(&mut con, &format!("{prefix}:last_activity"));
    let activity = activity.unwrap();
    assert!(
        activity.len() == 24 && activity.ends_with('Z') && activity.starts_with("20"),
        "{activity}"
    );
    assert!(ttl > 0);
    for k in ["last_tick_age_ms", "send_failures", "reconnections"] {
        let (v, ttl) = redis_get(&mut con, &format!("{prefix}:{k}"));
        assert!(v.unwrap().parse::<u64>().is_ok(), "{k}");
        assert!(ttl > 0 && ttl <= 120, "{k}: {ttl}");
    }
    let (s, _) = redis_get(&mut con, &format!("{prefix}:send_failures"));
    assert_eq!(s.as_deref(), Some("0"));
}

struct RedisServer(Child);

impl RedisServer {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let up = wait_until(Duration::from_secs(10), || {
            redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
        assert!(up, "redis-server did not start on port {port}");
        Self(child)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[allow(clippy::cast_precision_loss)]
fn the_breaker_opens_when_redis_dies_and_closes_after_it_returns() {
    let port = free_port();
    let server = RedisServer::start(port);
    let mut s = Stack::builder()
        .tag("ops-breaker")
        .partitions(2)
        .instruments(30)
        .mock(|m| m.rate_per_s = 5_000)
        .start();
    let prefix = unique_prefix("breaker");
    let redis_cfg = RedisConfig {
        url: format!("redis://127.0.0.1:{port}/0"),
        key_prefix: prefix.clone(),
        interval_ms: 100,
        timeout_ms: 200,
        breaker_failures: 3,
        breaker_cooldown_ms: 1000,
        ..RedisConfig::default()
    };
    let mut ops = Ops::start(ops_config(), redis_cfg, TOPIC).unwrap();
    let addr = ops.local_addr().unwrap();
    assert!(wait_until(Duration::from_secs(30), || ops
        .sample(&mut s.engine, true)
        .redis
        .writes_ok
        > 5));
    // Baseline throughput with Redis up.
    let rate = |ops: &mut Ops, engine: &mut Engine, secs: f64| {
        let start = (Instant::now(), ops.sample(engine, true).counts.published);
        let mut v = ops.sample(engine, true);
        while start.0.elapsed().as_secs_f64() < secs {
            std::thread::sleep(Duration::from_millis(100)); // the sample cadence
            v = ops.sample(engine, true);
        }
        (v.counts.published - start.1) as f64 / start.0.elapsed().as_secs_f64()
    };
    let baseline = rate(&mut ops, &mut s.engine, 2.0);
    drop(server);
    // Writes fail, the breaker opens after 3 and then drops (counted).
    assert!(wait_until(Duration::from_secs(20), || {
        let v = ops.sample(&mut s.engine, true);
        v.redis.state == "open" && v.redis.circuit_open_drops > 0
    }));
    let v = ops.view();
    assert!(v.redis.writes_error >= 3);
    let (_, m) = get(addr, "/metrics");
    assert_eq!(metric(&m, "panda_feed_redis_circuit_state"), 1.0);
    assert!(metric(&m, "panda_feed_redis_circuit_open_drops_total") > 0.0);
    let (code, h) = health(addr);
    assert_eq!(code, 200, "degraded, not unhealthy");
    assert!(codes(&h).contains(&"redis_circuit_open".to_owned()), "{h}");
    // The feed does not notice.
    let during = rate(&mut ops, &mut s.engine, 2.0);
    eprintln!("throughput: {baseline:.0} ticks/s with Redis up, {during:.0} with it down");
    assert!(
        during > baseline * 0.5,
        "throughput {during:.0}/s with Redis down vs {baseline:.0}/s up"
    );
    // Redis comes back: a half-open probe succeeds and the breaker closes.
    let _server = RedisServer::start(port);
    assert!(wait_until(Duration::from_secs(20), || {
        ops.sample(&mut s.engine, true).redis.state == "closed"
    }));
    let summary = s.engine.stop();
    assert!(summary.identity_holds);
    ops.finish(&summary);
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
        .unwrap()
        .get_connection()
        .unwrap();
    // The new server starts empty: it holds what was published since the
    // outage began, carried over while the circuit was open.
    let (count, ttl) = redis_get(&mut con, &format!("{prefix}:count"));
    let count: u64 = count.unwrap().parse().unwrap();
    assert!(count > 0 && count <= summary.counts.published);
    assert!(ttl > 0);
}

#[test]
fn a_known_fake_token_appears_nowhere() {
    const TOKEN: &str = "fake_token_5f1e2d3c4b";
    const KEY: &str = "fake_api_key_9a8b7c";
    const REDIS_PW: &str = "redis_pw_77e1";
    let dir = TempDir::new("ops-secret");
    let out = output(
        feed_run(["--mock", "--duration", "3"])
            .args(["--log-level", "debug", "--log-format", "json"])
            .arg("--redis-url")
            .arg(format!("redis://:{REDIS_PW}@127.0.0.1:1/0"))
            .env("ZERODHA__API_KEY", KEY)
            .env("ZERODHA__ACCESS_TOKEN", TOKEN)
            .current_dir(dir.path()),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = util::cli::stderr(&out);
    assert!(out.status.success(), "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert!(summary["published"].as_u64().unwrap() > 0, "it streamed");
    // Every log line is JSON.
    for line in stderr.lines() {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "{line}");
    }
    assert!(stderr.contains("redis"), "the Redis failure was logged");
    for secret in [TOKEN, KEY, REDIS_PW] {
        assert!(!stdout.contains(secret), "{secret} in the summary");
        assert!(!stderr.contains(secret), "{secret} in the logs");
    }
    // Bad settings name the value but never the password.
    let out = output(
        feed_run(["--mock", "--duration", "1"])
            .arg("--redis-url")
            .arg(format!("http://:{REDIS_PW}@host"))
            .current_dir(dir.path()),
    );
    let stderr = util::cli::stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("redis.url"), "{stderr}");
    assert!(!stderr.contains(REDIS_PW), "{stderr}");
}

/// What a slow client sends, one byte per second.
const SLOW_REQUEST: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

/// A slow client: connects (then signals `connected`), and sends
/// [`SLOW_REQUEST`] one byte per second, the first half a second after
/// connecting (so no byte coincides with the server's deadline), reading
/// whatever comes back, until the server closes the connection. Returns the
/// time from connecting to the close, what it received, and the bytes it
/// sent.
fn slow_client(addr: SocketAddr, connected: &mpsc::Sender<()>) -> (Duration, String, usize) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    connected.send(()).unwrap();
    let mut got = Vec::new();
    let mut sent = 0;
    let mut wait = Duration::from_millis(500);
    loop {
        assert!(t0.elapsed() < Duration::from_secs(30), "never cut off");
        // The pacing: wait for an answer or the close at most this long.
        s.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if got.is_empty() && sent < SLOW_REQUEST.len() {
                    if s.write_all(&SLOW_REQUEST[sent..=sent]).is_err() {
                        break;
                    }
                    sent += 1;
                }
                wait = Duration::from_secs(1);
            }
            Err(_) => break,
        }
    }
    (
        t0.elapsed(),
        String::from_utf8_lossy(&got).into_owned(),
        sent,
    )
}

fn connect_idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect()
}

/// Everything `s` receives until the server closes it (at most `limit`).
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> String {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed within {limit:?}: {e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_and_idle_clients_do_not_delay_others_and_are_cut_off_at_the_deadline() {
    let ops = Ops::start(ops_config(), RedisConfig::default(), "t").unwrap();
    let addr = ops.local_addr().unwrap();
    let (tx, connected) = mpsc::channel();
    let slow = std::thread::spawn(move || slow_client(addr, &tx));
    connected.recv().unwrap();
    let idle_since = Instant::now();
    let mut idle = connect_idle(addr, 5);
    // While they are connected, another client is answered at once.
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let (code, body) = get(addr, "/health");
        worst = worst.max(t.elapsed());
        assert_eq!(code, 503, "{body}");
    }
    assert!(
        idle_since.elapsed() < REQUEST_DEADLINE,
        "measured while they were connected"
    );
    eprintln!("GET /health beside a slow and 5 idle clients: worst {worst:?}");
    assert!(
        worst < Duration::from_millis(100),
        "GET /health took {worst:?} beside a slow and 5 idle clients"
    );
    // The slow client is answered 408 and closed at the deadline, its
    // request unfinished.
    let (lived, got, sent) = slow.join().unwrap();
    assert!(
        got.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{got:?}"
    );
    assert!(
        lived >= REQUEST_DEADLINE && lived < REQUEST_DEADLINE + Duration::from_millis(900),
        "the slow client lived {lived:?}"
    );
    assert!(sent > 0 && sent < SLOW_REQUEST.len(), "{sent}");
    // So is each idle one.
    for s in &mut idle {
        let got = read_until_closed(s, REQUEST_DEADLINE * 2);
        assert!(got.starts_with("HTTP/1.1 408 "), "{got:?}");
    }
    assert!(idle_since.elapsed() < REQUEST_DEADLINE + Duration::from_millis(900));
    // Counted as 4xx, as a read timeout was.
    let (_, m) = get(addr, "/metrics");
    assert!(
        m.contains("panda_feed_ops_http_requests_total{code=\"4xx\"} 6\n"),
        "{m}"
    );
    assert_eq!(
        metric(&m, "panda_feed_ops_http_connections_refused_total"),
        0.0
    );
    assert_eq!(metric(&m, "panda_feed_ops_http_open_connections"), 1.0);
}

#[test]
fn dropping_the_server_does_not_wait_for_slow_or_idle_clients() {
    let ops = Ops::start(ops_config(), RedisConfig::default(), "t").unwrap();
    let addr = ops.local_addr().unwrap();
    let (tx, connected) = mpsc::channel();
    let slow = std::thread::spawn(move || slow_client(addr, &tx));
    connected.recv().unwrap();
    let idle_since = Instant::now();
    let mut idle = connect_idle(addr, 5);
    // Connections are accepted in order: once this is answered, the server
    // holds all the others.
    assert_eq!(get(addr, "/health").0, 503);
    let t = Instant::now();
    drop(ops);
    let took = t.elapsed();
    eprintln!("drop with a slow and 5 idle clients: {took:?}");
    assert!(
        took < Duration::from_millis(100),
        "dropping the server took {took:?}"
    );
    // Their connections closed with it, unanswered, long before the deadline.
    for s in &mut idle {
        assert_eq!(read_until_closed(s, REQUEST_DEADLINE), "");
    }
    let (lived, got, _) = slow.join().unwrap();
    assert_eq!(got, "");
    assert!(lived < REQUEST_DEADLINE, "{lived:?}");
    assert!(idle_since.elapsed() < REQUEST_DEADLINE);
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

#[test]
fn connections_beyond_the_bound_are_refused_at_once_and_counted() {
    const EXTRA: usize = 16;
    let ops = Ops::start(ops_config(), RedisConfig::default(), "t").unwrap();
    let addr = ops.local_addr().unwrap();
    let t = Instant::now();
    let mut held = connect_idle(addr, MAX_CONNECTIONS);
    // Accepted in order: the first MAX_CONNECTIONS are held, every later
    // one is answered 503 and closed without waiting for a request.
    for _ in 0..EXTRA {
        let mut s = TcpStream::connect(addr).unwrap();
        let got = read_until_closed(&mut s, REQUEST_DEADLINE / 2);
        assert!(
            got.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && got.ends_with("\r\n\r\ntoo many connections\n"),
            "{got:?}"
        );
    }
    // The held ones are still served (within their deadline).
    for s in &mut held {
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let got = read_until_closed(s, REQUEST_DEADLINE);
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got:?}");
    }
    assert!(t.elapsed() < REQUEST_DEADLINE, "{:?}", t.elapsed());
    // Slots freed: served again, and everything counted.
    let (code, m) = get(addr, "/metrics");
    assert_eq!(code, 200);
    #[allow(clippy::cast_precision_loss)]
    let extra = EXTRA as f64;
    assert_eq!(
        metric(&m, "panda_feed_ops_http_connections_refused_total"),
        extra
    );
    assert!(
        m.contains(&format!(
            "panda_feed_ops_http_requests_total{{code=\"2xx\"}} {MAX_CONNECTIONS}\n"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "panda_feed_ops_http_requests_total{{code=\"5xx\"}} {EXTRA}\n"
        )),
        "{m}"
    );
    assert_eq!(metric(&m, "panda_feed_ops_http_open_connections"), 1.0);
}

#[test]
fn a_run_exits_on_time_with_slow_and_idle_clients_on_its_ops_port() {
    let dir = TempDir::new("ops-exit");
    let mut feed = Running::spawn(
        feed_run(["--mock", "--duration", "3"])
            .current_dir(dir.path())
            .stdout(Stdio::null()),
    );
    let serving = feed.expect_line(Duration::from_secs(30), |l| {
        l.contains("ops: serving http://")
    });
    let addr: SocketAddr = serving
        .split_once("ops: serving http://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no ops address in {serving:?}"));
    // Until it exits, five fresh idle connections every half second and a
    // slow client sending a byte a second, replaced once cut off: whenever
    // it stops, it has some of each.
    let done = Arc::new(AtomicBool::new(false));
    let pest = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut idle = VecDeque::new();
            let mut slow: Option<(TcpStream, usize)> = None;
            let mut round = 0u64;
            while !done.load(Ordering::SeqCst) {
                idle.extend((0..5).filter_map(|_| TcpStream::connect(addr).ok()));
                while idle.len() > 30 {
                    idle.pop_front();
                }
                let cut_off = slow.as_mut().is_some_and(|(s, _)| {
                    let mut b = [0u8; 64];
                    !matches!(s.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
                });
                if cut_off {
                    slow = None;
                }
                if round.is_multiple_of(2)
                    && let Some((s, sent)) = &mut slow
                    && *sent < SLOW_REQUEST.len()
                    && s.write_all(&SLOW_REQUEST[*sent..=*sent]).is_ok()
                {
                    *sent += 1;
                }
                if slow.is_none()
                    && let Ok(s) = TcpStream::connect(addr)
                {
                    s.set_nonblocking(true).unwrap();
                    slow = Some((s, 0));
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(500)); // the clients' pace
            }
        })
    };
    // 60 s from here for the whole run, as one deadline.
    let give_up = Instant::now() + Duration::from_secs(60);
    let left = || give_up.saturating_duration_since(Instant::now());
    feed.expect_line(left(), |l| l.contains("stopping (duration)"));
    let stopping = Instant::now();
    let seen = feed.seen.clone();
    let (status, rest) = feed.wait(left());
    let exited = Instant::now();
    done.store(true, Ordering::SeqCst);
    pest.join().unwrap();
    let log = [seen, rest].concat().join("\n");
    assert!(status.success(), "{status:?}\n{log}");
    let took = exited.duration_since(stopping);
    eprintln!("stop to exit with slow and idle ops clients: {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after stopping\n{log}"
    );
}
