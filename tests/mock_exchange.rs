//! The mock exchange speaks the Kite protocol: auth and connection limits,
//! subscribe/mode/unsubscribe, per-connection instrument limit, heartbeats,
//! and a record file that holds exactly what was sent.

mod util;

use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use panda_feed::mock::MockExchange;
use panda_feed::wire::{self, Message as Wire};
use panda_feed::{PacketKind, Tick};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use util::stack::start_mock;
use util::{TempDir, wait_until};

type Client = WebSocket<MaybeTlsStream<TcpStream>>;

fn url(mock: &MockExchange, key: &str, token: &str) -> String {
    format!("{}?api_key={key}&access_token={token}", mock.ws_url())
}

fn connect(mock: &MockExchange) -> Client {
    let (mut ws, resp) =
        tungstenite::connect(url(mock, "mock_api_key", "mock_access_token")).expect("upgrade");
    assert_eq!(resp.status(), 101);
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    ws
}

fn send(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).unwrap();
}

/// Reads until `n` ticks arrived (or panics after the read timeout).
fn read_ticks(ws: &mut Client, n: usize, raw: &mut Vec<Vec<u8>>) -> Vec<Tick> {
    let mut ticks = Vec::new();
    while ticks.len() < n {
        match ws.read().expect("message before timeout") {
            Message::Binary(b) => {
                raw.push(b.to_vec());
                if let Ok(Wire::Packets(p)) = wire::decode(&b) {
                    ticks.extend(p.filter_map(|p| Tick::from_packet(&p)));
                }
            }
            Message::Text(t) => panic!("unexpected text frame {t}"),
            _ => {}
        }
    }
    ticks
}

#[test]
fn wrong_credentials_get_403() {
    let mock = start_mock(|_| {});
    match tungstenite::connect(url(&mock, "mock_api_key", "stale")) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!(
            "expected HTTP 403, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
    // The mock counts the rejection after writing the response, so the
    // client can see the 403 first: wait for the count, then check it is 1.
    assert!(wait_until(Duration::from_secs(5), || mock
        .stats()
        .rejected_403
        .load(Ordering::SeqCst)
        >= 1));
    assert_eq!(mock.stats().rejected_403.load(Ordering::SeqCst), 1);
    assert_eq!(mock.stats().connections.load(Ordering::SeqCst), 0);
}

#[test]
fn fourth_connection_gets_429() {
    let mock = start_mock(|_| {});
    let _a = connect(&mock);
    let _b = connect(&mock);
    let _c = connect(&mock);
    match tungstenite::connect(url(&mock, "mock_api_key", "mock_access_token")) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!(
            "expected HTTP 429, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
}

#[test]
fn streams_subscribed_instruments_in_their_modes() {
    let mock = start_mock(|m| m.rate_per_s = 5_000);
    let mut ws = connect(&mock);
    let (infy, nifty, usdinr) = (408_065u32, 256_265u32, 412_675u32);
    send(
        &mut ws,
        &format!(r#"{{"a":"subscribe","v":[{infy},{nifty},{usdinr}]}}"#),
    );
    send(&mut ws, &format!(r#"{{"a":"mode","v":["full",[{infy}]]}}"#));
    send(
        &mut ws,
        &format!(r#"{{"a":"mode","v":["ltp",[{usdinr}]]}}"#),
    );
    // Mode changes apply from the next generated step; read past the first.
    let mut raw = Vec::new();
    let _ = read_ticks(&mut ws, 50, &mut raw);
    let ticks = read_ticks(&mut ws, 300, &mut raw);
    let mut kinds = std::collections::HashMap::new();
    for t in &ticks {
        kinds
            .entry(t.token.0)
            .or_insert_with(std::collections::HashSet::new)
            .insert(t.kind);
    }
    assert_eq!(
        kinds.len(),
        3,
        "all three instruments stream, and nothing else: {kinds:?}"
    );
    assert_eq!(kinds[&infy], [PacketKind::Full].into());
    assert_eq!(kinds[&nifty], [PacketKind::IndexQuote].into());
    assert_eq!(kinds[&usdinr], [PacketKind::Ltp].into());
    assert!(ticks.iter().all(|t| t.last_price > 0));
    assert!(
        raw.iter().any(|m| wire::decode(m)
            .map(|w| matches!(w, Wire::Packets(p) if p.packet_count() > 1))
            .unwrap_or(false)),
        "many packets per message"
    );

    send(
        &mut ws,
        &format!(r#"{{"a":"unsubscribe","v":[{infy},{nifty}]}}"#),
    );
    assert!(wait_until(Duration::from_secs(5), || mock.subscriptions()
        == vec![vec![usdinr]]));
    // Requests are applied at the start of a connection turn, and the previous
    // turn's messages are counted when sent: once the registry shows the
    // change, every message built under the old subscriptions is counted.
    let built_before = mock.stats().sent_messages.load(Ordering::SeqCst) as usize;
    while raw.len() < built_before {
        let _ = read_ticks(&mut ws, 1, &mut raw);
    }
    let later = read_ticks(&mut ws, 100, &mut raw);
    assert!(
        later.iter().all(|t| t.token.0 == usdinr),
        "unsubscribed instruments stopped"
    );
}

#[test]
fn string_tokens_are_ignored_like_the_real_server() {
    let mock = start_mock(|_| {});
    let mut ws = connect(&mock);
    send(&mut ws, r#"{"a":"subscribe","v":["408065", 884737]}"#);
    assert!(wait_until(Duration::from_secs(5), || mock.subscriptions()
        == vec![vec![884_737]]));
    assert_eq!(mock.stats().ignored_tokens.load(Ordering::SeqCst), 1);
}

#[test]
fn per_connection_limit_sends_the_error_frame() {
    let mock = start_mock(|m| {
        m.max_per_connection = 5;
        m.rate_per_s = 0;
    });
    let mut ws = connect(&mock);
    send(&mut ws, r#"{"a":"subscribe","v":[1,2,3,4,5,6,7]}"#);
    let text = loop {
        match ws.read().expect("frame") {
            Message::Text(t) => break t.to_string(),
            _ => continue,
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["data"], "Can't subscribe to more than 5 instruments.");
    assert!(wait_until(Duration::from_secs(5), || mock.subscriptions()
        == vec![vec![1, 2, 3, 4, 5]]));
}

#[test]
fn heartbeats_when_idle() {
    let mock = start_mock(|m| {
        m.rate_per_s = 0;
        m.heartbeat = Duration::from_millis(30);
    });
    let mut ws = connect(&mock);
    let mut beats = 0;
    while beats < 3 {
        if let Message::Binary(b) = ws.read().expect("heartbeat before timeout") {
            assert!(
                matches!(wire::decode(&b), Ok(Wire::Heartbeat)),
                "idle stream carries only heartbeats"
            );
            beats += 1;
        }
    }
}

#[test]
fn record_file_holds_exactly_what_was_sent() {
    let dir = TempDir::new("mock-record");
    let path = dir.join("rec.framed");
    let mock = start_mock(|m| {
        m.record = Some(path.clone());
        m.max_ticks = Some(2_000);
        m.rate_per_s = 50_000;
        m.heartbeat = Duration::from_secs(60);
    });
    let mut ws = connect(&mock);
    let tokens: Vec<String> = (1..=50u32).map(|i| ((i << 8) | 1).to_string()).collect();
    send(
        &mut ws,
        &format!(r#"{{"a":"subscribe","v":[{}]}}"#, tokens.join(",")),
    );
    send(
        &mut ws,
        &format!(r#"{{"a":"mode","v":["full",[{}]]}}"#, tokens.join(",")),
    );
    let mut received = Vec::new();
    let ticks = read_ticks(&mut ws, 2_000, &mut received);
    assert_eq!(ticks.len(), 2_000, "max_ticks caps generation exactly");
    assert_eq!(mock.stats().generated.load(Ordering::SeqCst), 2_000);
    mock.stop();
    let recorded = util::read_framed(&path);
    assert_eq!(
        recorded, received,
        "the record is byte-for-byte what the client received"
    );
}

#[test]
fn a_stalled_instrument_gets_no_updates_while_its_connection_streams_on() {
    let mock = start_mock(|m| m.rate_per_s = 4000);
    let mut ws = connect(&mock);
    let (a, b) = (408_065u32, 884_737u32);
    send(&mut ws, &format!(r#"{{"a":"subscribe","v":[{a},{b}]}}"#));
    send(
        &mut ws,
        &format!(r#"{{"a":"mode","v":["full",[{a},{b}]]}}"#),
    );
    let mut raw = Vec::new();
    let seen = read_ticks(&mut ws, 200, &mut raw);
    assert!(seen.iter().any(|t| t.token.0 == a) && seen.iter().any(|t| t.token.0 == b));
    mock.faults().stall_tokens(&[a]);
    // Updates already generated may still arrive; then only `b`: 500 ticks
    // in a row without `a`.
    let mut run = 0;
    let mut read = 0;
    while run < 500 {
        for t in read_ticks(&mut ws, 1, &mut raw) {
            run = if t.token.0 == a { 0 } else { run + 1 };
            read += 1;
        }
        assert!(read < 20_000, "the stalled instrument kept streaming");
    }
    mock.faults().resume_tokens(&[a]);
    let mut back = false;
    for _ in 0..20_000 {
        if read_ticks(&mut ws, 1, &mut raw)
            .iter()
            .any(|t| t.token.0 == a)
        {
            back = true;
            break;
        }
    }
    assert!(back, "the instrument resumed");
}

#[test]
fn the_market_clock_starts_where_it_is_set_and_orders_arrive_on_demand() {
    // 15:29:50 IST on 2026-11-25: ten seconds before the NSE close.
    let start = panda_feed::mock::scenario::parse_clock("2026-11-25T15:29:50+05:30").unwrap();
    let mock = start_mock(|m| {
        m.rate_per_s = 2000;
        m.clock_start_s = Some(start);
    });
    let mut ws = connect(&mock);
    send(&mut ws, r#"{"a":"subscribe","v":[408065]}"#);
    send(&mut ws, r#"{"a":"mode","v":["full",[408065]]}"#);
    let mut raw = Vec::new();
    let ticks = read_ticks(&mut ws, 50, &mut raw);
    let full: Vec<&Tick> = ticks
        .iter()
        .filter(|t| t.kind == PacketKind::Full)
        .collect();
    assert!(!full.is_empty());
    for t in full {
        assert!(
            (start..start + 30).contains(&t.exchange_timestamp),
            "exchange_timestamp {} not from {start}",
            t.exchange_timestamp
        );
    }
    let sent = mock.send_order("261125000000001", "COMPLETE");
    let text = loop {
        match ws.read().expect("frame") {
            Message::Text(t) => break t.to_string(),
            _ => continue,
        }
    };
    assert_eq!(text, sent);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "order");
    assert_eq!(v["data"]["order_id"], "261125000000001");
    assert_eq!(v["data"]["status"], "COMPLETE");
}

#[test]
fn a_replayed_recording_arrives_whole_in_order_then_heartbeats() {
    // A recording: 300 ticks from a live mock, framed.
    let dir = TempDir::new("mock-replay");
    let rec = dir.join("rec.framed");
    {
        let mock = start_mock(|m| {
            m.rate_per_s = 5000;
            m.record = Some(rec.clone());
        });
        let mut ws = connect(&mock);
        send(&mut ws, r#"{"a":"subscribe","v":[408065,884737,256265]}"#);
        send(
            &mut ws,
            r#"{"a":"mode","v":["full",[408065,884737,256265]]}"#,
        );
        let mut raw = Vec::new();
        read_ticks(&mut ws, 300, &mut raw);
        mock.stop();
    }
    let msgs = panda_feed::mock::scenario::read_framed(&rec, 1 << 20).unwrap();
    assert!(msgs.len() > 10);
    let mock = start_mock(|m| {
        m.replay = Some(std::sync::Arc::new(msgs.clone()));
        m.heartbeat = Duration::from_millis(20);
    });
    let mut ws = connect(&mock);
    send(&mut ws, r#"{"a":"subscribe","v":[1]}"#);
    let mut got = Vec::new();
    while got.len() < msgs.len() {
        match ws.read().expect("message before timeout") {
            Message::Binary(b) if b.len() > 1 => got.push(b),
            Message::Binary(_) => panic!("a heartbeat before the recording ended"),
            _ => {}
        }
    }
    assert_eq!(got, msgs, "byte for byte, in order");
    // Then only heartbeats.
    for _ in 0..3 {
        match ws.read().expect("heartbeat") {
            Message::Binary(b) => assert_eq!(b.len(), 1),
            m => panic!("{m:?}"),
        }
    }
    assert_eq!(
        mock.stats().replayed_messages.load(Ordering::SeqCst),
        msgs.len() as u64
    );
    // A truncated recording is an error naming the offset.
    let bad = dir.file("bad.framed", [0u8, 0, 0, 9, 1, 2]);
    let e = panda_feed::mock::scenario::read_framed(&bad, 1 << 20).unwrap_err();
    assert!(e.contains("truncated record at byte 0"), "{e}");
}
