//! The control plane end to end (README, "Control plane"): `panda-feed run`
//! against a mock exchange whose server-side subscription state and request
//! log the tests read, with live subscription changes (API and file),
//! reloads (SIGHUP and HTTP), validation, and the admin token.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use panda_feed::Mode;
use panda_feed::mock::{MockExchange, MockRequest};
use serde_json::Value;
use util::cli::{Running, feed_run};
use util::http::{call, get_json, metric};
use util::kafka::read_to_end;
use util::stack::{Exchange, TOPIC};
use util::{Stack, wait_until};

/// NSE-segment tokens: 1..=n shifted, so they look like Kite's.
fn token(i: u32) -> u32 {
    (i << 8) | 1
}

/// An instruments CSV of tokens `from..to` (`token(i)`), written atomically.
fn write_csv(path: &Path, from: u32, to: u32) {
    let mut s = String::from("instrument_token,tradingsymbol,name,exchange\n");
    for i in from..to {
        s.push_str(&format!("{},SYM{i},NAME{i},NSE\n", token(i)));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, s).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn exchange(rate: u64) -> Exchange {
    Stack::builder()
        .tag("control")
        .mock(|m| m.rate_per_s = rate)
        .start_exchange()
}

/// `run` against `x` with `config`, streaming until told to stop.
fn feed(x: &Exchange, config: &Path, extra: &[&str]) -> Running {
    let token = x.dir.file("token", "mock_access_token\n");
    let summary = x.dir.join("summary.json");
    let mut cmd = feed_run([
        "--config",
        config.to_str().unwrap(),
        "--ws-url",
        &x.mock.ws_url(),
        "--api-key",
        "mock_api_key",
        "--access-token-file",
        token.to_str().unwrap(),
        "--brokers",
        x.brokers(),
        "--summary",
        summary.to_str().unwrap(),
    ]);
    cmd.args(extra).stdout(Stdio::null());
    Running::spawn(&mut cmd)
}

/// The mock's open connections' subscription counts, sorted.
fn server_counts(mock: &MockExchange) -> Vec<usize> {
    let mut v: Vec<usize> = mock
        .subscription_modes()
        .values()
        .map(BTreeMap::len)
        .collect();
    v.sort_unstable();
    v
}

/// The requests of connection `conn` from index `since` of the log on.
fn requests_of(log: &[MockRequest], conn: u64, since: usize) -> Vec<MockRequest> {
    log[since..]
        .iter()
        .filter(|r| r.conn == conn)
        .cloned()
        .collect()
}

fn tokens_of(reqs: &[MockRequest], action: &str) -> BTreeSet<u32> {
    reqs.iter()
        .filter(|r| r.action == action)
        .flat_map(|r| r.tokens.iter().copied())
        .collect()
}

fn applied(addr: &str) -> u64 {
    get_json(addr, "/ops/subscriptions")["applied_version"]
        .as_u64()
        .unwrap()
}

#[test]
fn subscriptions_move_7000_to_2000_to_8000_with_exact_deltas_and_no_gap_on_the_kept_connection() {
    let x = exchange(3000);
    let csv = x.dir.join("instruments.csv");
    write_csv(&csv, 1, 7001);
    let config = x.dir.file(
        "feed.toml",
        format!(
            "[zerodha]\ninstruments = {:?}\n[subscriptions]\ndebounce_ms = 100\n\
             min_interval_ms = 300\nwatch_ms = 100\n",
            csv.to_str().unwrap()
        ),
    );
    let mut f = feed(&x, &config, &[]);
    let addr = f.ops_addr();
    let all_full = |mock: &MockExchange| {
        mock.subscription_modes()
            .values()
            .all(|m| m.values().all(|v| *v == Mode::Full))
    };
    assert!(
        wait_until(Duration::from_secs(30), || server_counts(&x.mock)
            == [2333, 2333, 2334]
            && all_full(&x.mock)),
        "7000 over three connections in full: {:?}",
        server_counts(&x.mock)
    );
    // The feed's connection 0 holds the first 2334 tokens of the file; the
    // server's connection with token(1) is that one.
    let modes = x.mock.subscription_modes();
    let (&kept, held) = modes
        .iter()
        .find(|(_, m)| m.contains_key(&token(1)))
        .expect("a connection holds token(1)");
    assert_eq!(held.len(), 2334);
    let before = x.mock.requests().len();

    // 7000 → 2000: unsubscribe everything but the first 2000, in one request.
    let gone: Vec<u32> = (2001..7001).map(token).collect();
    let body = serde_json::json!({ "unsubscribe": gone }).to_string();
    let (code, resp) = call(&addr, "POST", "/ops/subscriptions", None, &body);
    assert_eq!(code, 202, "{resp}");
    let v: Value = serde_json::from_str(&resp).unwrap();
    let version = v["version"].as_u64().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || applied(&addr) >= version
            && server_counts(&x.mock) == [2000]),
        "2000 on one connection: {:?}",
        server_counts(&x.mock)
    );
    let log = x.mock.requests();
    let on_kept = requests_of(&log, kept, before);
    let want: BTreeSet<u32> = (2001..2335).map(token).collect();
    assert_eq!(
        tokens_of(&on_kept, "unsubscribe"),
        want,
        "exact unsubscribe"
    );
    assert!(
        tokens_of(&on_kept, "subscribe").is_empty() && tokens_of(&on_kept, "mode").is_empty(),
        "nothing else on the kept connection: {on_kept:?}"
    );
    assert!(on_kept.iter().all(|r| r.tokens.len() <= 500), "chunked");
    assert_eq!(
        x.mock
            .subscription_modes()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [kept],
        "the emptied connections closed"
    );

    // 2000 → 8000: the file changes (by content).
    let before = x.mock.requests().len();
    write_csv(&csv, 1, 8001);
    assert!(
        wait_until(Duration::from_secs(30), || server_counts(&x.mock)
            == [2000, 3000, 3000]
            && all_full(&x.mock)),
        "8000 as 3000 + 3000 + 2000: {:?}",
        server_counts(&x.mock)
    );
    let log = x.mock.requests();
    let on_kept = requests_of(&log, kept, before);
    let added: BTreeSet<u32> = tokens_of(&on_kept, "subscribe");
    assert_eq!(added.len(), 1000, "the kept connection filled to 3000");
    assert!(added.iter().all(|t| !(1..2001).map(token).any(|k| k == *t)));
    assert_eq!(
        tokens_of(&on_kept, "mode"),
        added,
        "each added token's mode set"
    );
    assert!(tokens_of(&on_kept, "unsubscribe").is_empty());
    let modes = x.mock.subscription_modes();
    let all: BTreeSet<u32> = modes.values().flat_map(|m| m.keys().copied()).collect();
    assert_eq!(all, (1..8001).map(token).collect(), "exactly the file");
    assert!(modes.values().all(|m| m.len() <= 3000));

    let u = get_json(&addr, "/stats/universe");
    assert_eq!(u["current"]["rows"], 8000, "{u}");
    assert_eq!(u["current"]["source"], format!("file:{}", csv.display()));
    assert!(u["history"].as_array().unwrap().len() >= 3, "{u}");

    f.terminate();
    let (status, _) = f.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0));
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(x.dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(s["identity_holds"], true, "{s}");
    let c0 = &s["connections"][0];
    assert_eq!(
        c0["attempts"], 1,
        "the kept connection never reconnected: {c0}"
    );
    assert!(
        c0["reconnects"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == 0)
    );
    assert_eq!(s["dropped"], 0);
    // Its seq runs on: every record of connection 0 on the topic, 1..=n.
    let mut seqs: Vec<u64> = read_to_end(x.brokers(), TOPIC, 8)
        .iter()
        .map(|(_, v)| serde_json::from_slice::<Value>(v).unwrap())
        .filter(|e| e["conn"] == 0)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    let n = seqs.len() as u64;
    assert!(n > 100, "connection 0 streamed ({n} records)");
    assert!(
        seqs.iter().copied().eq(1..=n),
        "no gap in connection 0's seq"
    );
}

#[test]
fn ten_triggers_are_one_application_the_eleventh_is_refused_and_the_next_waits_5_s() {
    let x = exchange(500);
    let csv = x.dir.join("instruments.csv");
    write_csv(&csv, 1, 11);
    let config = x.dir.file(
        "feed.toml",
        format!("[zerodha]\ninstruments = {:?}\n", csv.to_str().unwrap()),
    );
    let mut f = feed(&x, &config, &[]);
    let addr = f.ops_addr();
    assert!(wait_until(Duration::from_secs(30), || server_counts(
        &x.mock
    ) == [10]));
    let before = x.mock.requests().len();
    let t0 = Instant::now();
    for i in 0..10 {
        let body = format!(r#"{{"subscribe":[{}]}}"#, token(100 + i));
        let (code, resp) = call(&addr, "POST", "/ops/subscriptions", None, &body);
        assert_eq!(code, 202, "{resp}");
    }
    let (code, resp) = call(
        &addr,
        "POST",
        "/ops/subscriptions",
        None,
        r#"{"subscribe":[1]}"#,
    );
    assert!(
        t0.elapsed() < Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(code, 429, "{resp}");
    assert!(wait_until(Duration::from_secs(10), || applied(&addr) == 10));
    let subs: Vec<MockRequest> = x.mock.requests()[before..]
        .iter()
        .filter(|r| r.action == "subscribe")
        .cloned()
        .collect();
    assert_eq!(subs.len(), 1, "one application: {subs:?}");
    assert_eq!(subs[0].tokens.len(), 10);
    // Two more at once, right after the first application.
    for t in [token(200), token(201)] {
        let body = format!(r#"{{"subscribe":[{t}]}}"#);
        assert_eq!(
            call(&addr, "POST", "/ops/subscriptions", None, &body).0,
            202
        );
    }
    assert!(wait_until(Duration::from_secs(15), || applied(&addr) == 12));
    let u = get_json(&addr, "/stats/universe");
    let h = u["history"].as_array().unwrap();
    let at = |i: usize| h[i]["loaded_at"].as_str().unwrap().to_owned();
    assert_eq!(h[0]["desired_version"], 12);
    assert_eq!(h[1]["desired_version"], 10);
    let ms = |s: &str| -> i64 {
        // "...THH:MM:SS.mmmZ" within one day of the test.
        let t = &s[11..23];
        let (h, m, sec) = (&t[0..2], &t[3..5], &t[6..]);
        (h.parse::<i64>().unwrap() * 3600 + m.parse::<i64>().unwrap() * 60) * 1000
            + (sec.parse::<f64>().unwrap() * 1000.0) as i64
    };
    let gap = (ms(&at(0)) - ms(&at(1))).rem_euclid(86_400_000);
    assert!(gap >= 5000, "second application {gap} ms after the first");
    let m = call(&addr, "GET", "/metrics", None, "").1;
    assert_eq!(
        metric(&m, "panda_feed_subscription_requests_total", "queue_full"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "panda_feed_subscription_applications_total", ""),
        Some(2.0)
    );
    f.terminate();
    assert_eq!(f.wait(Duration::from_secs(60)).0.code(), Some(0));
}

#[test]
fn a_reload_is_applied_whole_or_rejected_whole_and_posts_need_the_admin_token() {
    let x = exchange(2000);
    let csv = x.dir.join("instruments.csv");
    write_csv(&csv, 1, 51);
    let admin = x.dir.file("admin_token", "let-me-in\n");
    // Redis (the real server of the machine) under a prefix of this run.
    let prefix = format!("panda-feed-test:control:{}", std::process::id());
    let redis_section = |p: &str| {
        format!(
            "[redis]\nurl = \"redis://127.0.0.1:6379/0\"\nkey_prefix = {p:?}\ninterval_ms = 100\n"
        )
    };
    let base = format!(
        "[zerodha]\ninstruments = {:?}\n{}[ops]\nadmin_token_file = {:?}\nsample_ms = 100\n",
        csv.to_str().unwrap(),
        redis_section(&format!("{prefix}:a")),
        admin.to_str().unwrap()
    );
    let config = x.dir.file("feed.toml", &base);
    let mut f = feed(&x, &config, &[]);
    let addr = f.ops_addr();
    // 200 or 503 (unhealthy while starting): the body is the same shape.
    let health = |k: &str| {
        let body = call(&addr, "GET", "/health", None, "").1;
        serde_json::from_str::<Value>(&body).unwrap()[k].clone()
    };
    assert!(wait_until(Duration::from_secs(30), || health("received")
        .as_u64()
        .unwrap()
        > 0));
    assert_eq!(health("policy_version"), 0);
    assert_eq!(health("universe_instruments"), 50);

    // Without the token, or with another: 401, nothing applied.
    assert_eq!(call(&addr, "POST", "/ops/reload", None, "").0, 401);
    assert_eq!(
        call(&addr, "POST", "/ops/reload", Some("let-me-out"), "").0,
        401
    );
    let (code, _) = call(
        &addr,
        "POST",
        "/ops/subscriptions",
        None,
        r#"{"subscribe":[1]}"#,
    );
    assert_eq!(code, 401);
    let tok = Some("let-me-in");

    // One invalid key among valid changes: rejected whole.
    std::fs::write(
        &config,
        format!("{base}expected_tick_interval_ms = 2500\nstale_after_ms = 0\n"),
    )
    .unwrap();
    let (code, body) = call(&addr, "POST", "/ops/reload", tok, "");
    assert_eq!(code, 422, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["errors"].to_string().contains("ops.stale_after_ms"),
        "{v}"
    );
    assert_eq!(health("policy_version"), 0);
    let received = health("received").as_u64().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || health("received")
            .as_u64()
            .unwrap()
            > received),
        "the feed streams on"
    );
    let m = call(&addr, "GET", "/metrics", None, "").1;
    assert_eq!(
        metric(&m, "panda_feed_expected_tick_interval_seconds", ""),
        Some(1.0)
    );

    // The universe's version is in Redis, under the prefix.
    let mut redis = redis::Client::open("redis://127.0.0.1:6379/0")
        .and_then(|c| c.get_connection())
        .expect("the machine's Redis at 127.0.0.1:6379");
    let universe = health("universe_version").as_str().unwrap().to_owned();
    assert_eq!(universe.len(), 64);
    let key = |p: &str| format!("{p}:universe_version");
    let read = |con: &mut redis::Connection, k: &str| -> Option<String> {
        redis::cmd("GET").arg(k).query(con).unwrap()
    };
    let a = key(&format!("{prefix}:a"));
    assert!(wait_until(Duration::from_secs(10), || {
        read(&mut redis, &a).as_deref() == Some(universe.as_str())
    }));

    // A valid one: the live keys change (Redis moves to a new prefix), the
    // restart-only one is named and kept.
    let valid = base.replace(&format!("{prefix}:a"), &format!("{prefix}:b"));
    std::fs::write(
        &config,
        format!(
            "{valid}expected_tick_interval_ms = 2500\n[kafka]\ntopic = \"elsewhere\"\n\
             [fields]\ndepth = false\n"
        ),
    )
    .unwrap();
    let (code, body) = call(&addr, "POST", "/ops/reload", tok, "");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["policy_version"], 1);
    assert_eq!(
        v["applied"],
        serde_json::json!([
            "fields.depth",
            "ops.expected_tick_interval_ms",
            "redis.key_prefix"
        ])
    );
    assert_eq!(v["restart_required"], serde_json::json!(["kafka.topic"]));
    let b = key(&format!("{prefix}:b"));
    assert!(wait_until(Duration::from_secs(10), || {
        read(&mut redis, &b).as_deref() == Some(universe.as_str())
    }));
    assert!(wait_until(Duration::from_secs(5), || {
        let m = call(&addr, "GET", "/metrics", None, "").1;
        metric(&m, "panda_feed_expected_tick_interval_seconds", "") == Some(2.5)
            && metric(&m, "panda_feed_policy_info", "policy_version=\"1\"") == Some(1.0)
            && metric(&m, "panda_feed_reloads_total", "rejected") == Some(1.0)
    }));
    assert_eq!(health("policy_version"), 1);

    // Validation applies nothing.
    let (code, body) = call(
        &addr,
        "POST",
        "/ops/validate",
        tok,
        "[ops]\nslow_n = 0\nbogus = 1\n",
    );
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["errors"].to_string().contains("bogus"), "{v}");
    // The body is a whole config file, as the file would be.
    let (_, body) = call(&addr, "POST", "/ops/validate", tok, "[ops]\nslow_n = 3\n");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["errors"].to_string().contains("no instruments"), "{v}");
    let (_, body) = call(
        &addr,
        "POST",
        "/ops/validate",
        tok,
        &format!("{base}slow_n = 3\n"),
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["ok"],
        true,
        "{body}"
    );
    assert_eq!(health("policy_version"), 1);

    // Two reloads at once: answered one after the other, each its own
    // version.
    #[allow(
        clippy::needless_collect,
        reason = "both start before either is joined"
    )]
    let both: Vec<(u16, String)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|_| sc.spawn(|| call(&addr, "POST", "/ops/reload", tok, "")))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut versions: Vec<u64> = both
        .iter()
        .map(|(code, body)| {
            assert_eq!(*code, 200, "{body}");
            serde_json::from_str::<Value>(body).unwrap()["policy_version"]
                .as_u64()
                .unwrap()
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, [2, 3]);

    // A client that sends half a body holds its slot until the deadline
    // (408) and holds up nobody.
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        b"POST /ops/reload HTTP/1.1\r\nAuthorization: Bearer let-me-in\r\n\
          Content-Length: 100\r\n\r\n0123456789",
    )
    .unwrap();
    let t = Instant::now();
    assert_eq!(health("policy_version"), 3);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut stalled, &mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");

    // SIGHUP reloads the file too.
    f.signal("HUP");
    f.expect_line(Duration::from_secs(10), |l| {
        l.contains("reload (SIGHUP): applied, policy_version 4")
    });
    // The view follows the log line within a loop turn.
    assert!(wait_until(Duration::from_secs(5), || health(
        "policy_version"
    ) == 4));
    let m = call(&addr, "GET", "/metrics", None, "").1;
    assert_eq!(
        metric(&m, "panda_feed_ops_http_denied_total", ""),
        Some(3.0)
    );
    f.terminate();
    assert_eq!(f.wait(Duration::from_secs(60)).0.code(), Some(0));
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(x.dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(s["control"]["policy_version"], 4, "{}", s["control"]);
    assert_eq!(s["control"]["reloads_rejected"], 1);
    // Field selection is live: each instrument's full ticks carried their
    // depth up to the reload and none after it (per instrument: its records
    // are in order in its partition).
    assert!(
        !s["fields"]["full"].to_string().contains("depth"),
        "{}",
        s["fields"]
    );
    let mut by_instrument: BTreeMap<Vec<u8>, Vec<bool>> = BTreeMap::new();
    for (k, v) in read_to_end(x.brokers(), TOPIC, 8) {
        let e: Value = serde_json::from_slice(&v).unwrap();
        if e["data"]["mode"] == "full" {
            by_instrument
                .entry(k)
                .or_default()
                .push(e["data"].get("depth").is_some());
        }
    }
    let (mut with, mut without) = (0, 0);
    for seq in by_instrument.values() {
        let cut = seq.iter().position(|d| !d).unwrap_or(seq.len());
        assert!(
            seq[cut..].iter().all(|d| !d),
            "depth again after the reload"
        );
        with += cut;
        without += seq.len() - cut;
    }
    assert!(
        with > 0 && without > 0,
        "{with} with depth, {without} without"
    );
}
