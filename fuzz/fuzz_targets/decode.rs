//! `wire::decode` on arbitrary bytes, then every packet through
//! `Tick::from_packet`, `json::write_tick`/`write_envelope` and `encode_packet`.
//!
//! Checks, besides "never panics":
//! - decode agrees with an independent walk of the framing (same accept/reject,
//!   same error, same packet lengths and tokens);
//! - every packet view lies inside the input (never reads past it);
//! - each tick's JSON parses, is at most `MAX_TICK_JSON_LEN` bytes, and carries
//!   the token, mode and last price of the tick;
//! - `encode_packet` of the tick gives back the packet's bytes (the depth
//!   padding, which is ignored, as zeros), and decoding those gives the same tick.
#![no_main]

use libfuzzer_sys::fuzz_target;
use panda_feed::json::{JsonBuf, MAX_TICK_JSON_LEN, write_envelope, write_tick};
use panda_feed::run_id::RunId;
use panda_feed::wire::{self, DecodeError, Message, Packet, encode_packet};
use panda_feed::{PacketKind, Tick};
use serde_json::Value;

/// What the framing should be, walked without the decoder's code.
enum Expected {
    Empty,
    Heartbeat,
    Error(&'static str),
    /// (length, offset of the body) per packet.
    Packets(Vec<(usize, usize)>),
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(b.get(at)?.to_owned()) << 8 | usize::from(*b.get(at + 1)?))
}

fn expected(msg: &[u8]) -> Expected {
    match msg.len() {
        0 => return Expected::Empty,
        1 => return Expected::Heartbeat,
        _ => {}
    }
    let count = be16(msg, 0).unwrap_or(0);
    let mut at = 2;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(len) = be16(msg, at) else {
            return Expected::Error("truncated_header");
        };
        if at + 2 + len > msg.len() {
            return Expected::Error("overrun");
        }
        if len < 4 {
            return Expected::Error("short_packet");
        }
        out.push((len, at + 2));
        at += 2 + len;
    }
    Expected::Packets(out)
}

fn error_name(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Empty => "empty",
        DecodeError::TruncatedHeader { .. } => "truncated_header",
        DecodeError::Overrun { .. } => "overrun",
        DecodeError::ShortPacket { .. } => "short_packet",
    }
}

/// Address range of a packet view, to check it lies inside the input.
fn view_range<T>(r: &T) -> (usize, usize) {
    let start = std::ptr::from_ref(r) as usize;
    (start, start + size_of::<T>())
}

fn check_tick(tick: &Tick, body: &[u8], json: &mut JsonBuf) {
    // The tick's JSON.
    json.clear();
    write_tick(tick, json).expect("an empty buffer of MAX_TICK_JSON_LEN holds any tick");
    assert!(
        json.len() <= MAX_TICK_JSON_LEN,
        "tick JSON {} bytes",
        json.len()
    );
    let v: Value = serde_json::from_slice(json.as_bytes()).unwrap_or_else(|e| {
        panic!(
            "tick JSON does not parse ({e}): {}",
            String::from_utf8_lossy(json.as_bytes())
        )
    });
    assert_eq!(v["instrument_token"], tick.token.0, "{v}");
    assert_eq!(v["tradable"], tick.tradable, "{v}");
    let mode = match tick.kind {
        PacketKind::Ltp => "ltp",
        PacketKind::IndexQuote | PacketKind::Quote => "quote",
        PacketKind::IndexFull | PacketKind::Full => "full",
    };
    assert_eq!(v["mode"], mode, "{v}");
    // Prices are the exact decimal of raw / divisor: a float parse of the text
    // is the official client's value bit for bit.
    let last = v["last_price"].as_f64().expect("last_price is a number");
    assert_eq!(
        last.to_bits(),
        tick.price_f64(tick.last_price).to_bits(),
        "{v}"
    );

    // And inside an envelope.
    json.clear();
    let mut t = *tick;
    t.seq = u64::from(tick.last_price) << 20;
    t.ts_recv_ns = u64::from(tick.token.0) * 1_000_000_007;
    write_envelope(&t, RunId(u64::from(tick.oi)), json).expect("envelope fits");
    let e: Value = serde_json::from_slice(json.as_bytes()).unwrap_or_else(|e| {
        panic!(
            "envelope does not parse ({e}): {}",
            String::from_utf8_lossy(json.as_bytes())
        )
    });
    assert_eq!(e["data"], v, "envelope data differs from the tick JSON");
    assert_eq!(e["seq"], t.seq);
    assert_eq!(e["recv_ns"], t.ts_recv_ns);

    // Encoding the tick gives back the packet (padding as zeros)...
    let mut again = Vec::with_capacity(body.len());
    encode_packet(tick, &mut again);
    let mut want = body.to_vec();
    if tick.kind == PacketKind::Full {
        for level in 0..10 {
            let pad = 64 + level * 12 + 10;
            want[pad..pad + 2].fill(0);
        }
    }
    assert_eq!(again, want, "encode_packet(decode(body)) != body");
    // ... which decodes to the same tick.
    let mut msg = vec![0, 1];
    msg.extend_from_slice(&u16::try_from(again.len()).unwrap().to_be_bytes());
    msg.extend_from_slice(&again);
    let Ok(Message::Packets(mut p)) = wire::decode(&msg) else {
        panic!("re-encoded packet does not decode");
    };
    let p = p.next().expect("one packet");
    assert_eq!(Tick::from_packet(&p).as_ref(), Some(tick));
}

fuzz_target!(|data: &[u8]| {
    // An exact-size heap copy: any read past the end touches memory that is
    // not the input (and a sanitizer build would report it).
    let msg: Box<[u8]> = data.into();

    let want = expected(&msg);
    let got = wire::decode(&msg);
    let packets = match (&want, got) {
        (Expected::Empty, Err(DecodeError::Empty))
        | (Expected::Heartbeat, Ok(Message::Heartbeat)) => return,
        (Expected::Error(w), Err(e)) => {
            assert_eq!(*w, error_name(&e), "{e}");
            // Errors render (the CLI prints them) without panicking.
            let _ = e.to_string();
            return;
        }
        (Expected::Packets(p), Ok(Message::Packets(got))) => {
            assert_eq!(usize::from(got.packet_count()), p.len());
            assert_eq!(got.len(), p.len());
            got
        }
        (_, got) => panic!("decode disagrees with the framing walk: {got:?}"),
    };
    let Expected::Packets(want) = want else {
        unreachable!()
    };

    let mut json = JsonBuf::with_capacity(MAX_TICK_JSON_LEN * 2);
    let mut n = 0;
    for (packet, &(len, at)) in packets.zip(&want) {
        n += 1;
        let body = &msg[at..at + len];
        let token = u32::from_be_bytes(body[..4].try_into().unwrap());
        // The view is exactly the packet's bytes: inside the input, never past it.
        let span = (body.as_ptr() as usize, body.as_ptr() as usize + len);
        let inside = |r: (usize, usize)| assert_eq!(r, span, "packet view is not its bytes");
        assert_eq!(packet.token(), token);
        match packet {
            Packet::Ltp(p) => inside(view_range(p)),
            Packet::IndexQuote(p) => inside(view_range(p)),
            Packet::IndexFull(p) => inside(view_range(p)),
            Packet::Quote(p) => inside(view_range(p)),
            Packet::Full(p) => inside(view_range(p)),
            Packet::Unknown { token: t, len: l } => {
                assert_eq!((t, usize::from(l)), (token, len));
                assert!(
                    !matches!(len, 8 | 28 | 32 | 44 | 184),
                    "known length {len} as unknown"
                );
            }
        }
        match Tick::from_packet(&packet) {
            None => assert!(matches!(packet, Packet::Unknown { .. })),
            Some(tick) => {
                assert_eq!(tick.token.0, token);
                check_tick(&tick, body, &mut json);
            }
        }
    }
    assert_eq!(
        n,
        want.len(),
        "the iterator yielded fewer packets than declared"
    );
});
