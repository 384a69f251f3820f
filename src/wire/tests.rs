//! Unit tests of the binary decoder: every packet kind, segment, edge and defect.

use super::*;
use crate::json::{JsonBuf, write_tick};
use crate::tick::{PacketKind, Tick};

fn msg(packets: &[&[u8]]) -> Vec<u8> {
    let mut m = (packets.len() as u16).to_be_bytes().to_vec();
    for p in packets {
        m.extend_from_slice(&(p.len() as u16).to_be_bytes());
        m.extend_from_slice(p);
    }
    m
}

fn be(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

fn ticks(m: &[u8]) -> Vec<Tick> {
    match decode(m).expect("valid message") {
        Message::Heartbeat => Vec::new(),
        Message::Packets(p) => p.filter_map(|p| Tick::from_packet(&p)).collect(),
    }
}

fn json(t: &Tick) -> serde_json::Value {
    let mut out = JsonBuf::with_capacity(0);
    write_tick(t, &mut out).expect("room for a tick");
    serde_json::from_slice(out.as_bytes()).expect("valid JSON")
}

const INFY: u32 = 408_065; // NSE, segment 1
const NIFTY: u32 = 256_265; // indices, segment 9

#[test]
fn ltp_packet() {
    let t = ticks(&msg(&[&be(&[INFY, 157_315])]));
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].kind, t[0].last_price, t[0].segment),
        (PacketKind::Ltp, 157_315, 1)
    );
    let j = json(&t[0]);
    assert_eq!(j["last_price"], 1573.15);
    assert_eq!(j["mode"], "ltp");
    assert_eq!(j.as_object().unwrap().len(), 4);
}

#[test]
fn index_quote_and_full_have_their_own_ohlc_order() {
    let q = be(&[
        NIFTY,
        912_685,
        916_760,
        911_630,
        916_695,
        912_721,
        (-36i32) as u32,
    ]);
    let mut f = q.clone();
    f.extend(be(&[1_489_000_000]));
    let t = ticks(&msg(&[&q, &f]));
    assert_eq!(t[0].kind, PacketKind::IndexQuote);
    assert_eq!(t[1].kind, PacketKind::IndexFull);
    for tick in &t {
        assert!(!tick.tradable);
        assert_eq!(tick.ohlc.high, 916_760);
        assert_eq!(tick.ohlc.low, 911_630);
        assert_eq!(tick.ohlc.open, 916_695);
        assert_eq!(tick.ohlc.close, 912_721);
        assert_eq!(tick.index_change, -36);
    }
    let j = json(&t[1]);
    assert_eq!(j["ohlc"]["high"], 9167.6);
    assert_eq!(
        j["change"].as_f64().unwrap().to_bits(),
        (((9126.85f64 - 9127.21) * 100.0) / 9127.21).to_bits()
    );
    assert_eq!(j["exchange_timestamp"], "2017-03-08T19:06:40Z");
    assert!(json(&t[0]).get("exchange_timestamp").is_none());
}

#[test]
fn quote_and_full_packets() {
    let q = be(&[
        INFY, 157_370, 7, 157_037, 1_192_471, 256_443, 363_009, 156_915, 157_500, 156_105, 156_780,
    ]);
    let mut f = q.clone();
    f.extend(be(&[1_625_461_887, 11, 12, 10, 1_625_461_888]));
    for i in 0..10u32 {
        f.extend(be(&[100 + i, 157_300 + i]));
        f.extend(((i + 1) as u16).to_be_bytes());
        f.extend([0xAB, 0xCD]); // padding is ignored
    }
    let t = ticks(&msg(&[&q, &f]));
    assert_eq!(
        (t[0].kind, t[1].kind),
        (PacketKind::Quote, PacketKind::Full)
    );
    assert_eq!(t[0].ohlc.open, 156_915);
    assert_eq!(t[1].oi_day_low, 10);
    assert_eq!(t[1].depth.buy[0].quantity, 100);
    assert_eq!(t[1].depth.sell[0].quantity, 105);
    assert_eq!(t[1].depth.sell[4].orders, 10);
    let j = json(&t[1]);
    assert_eq!(j["last_trade_time"], "2021-07-05T05:11:27Z");
    assert_eq!(j["exchange_timestamp"], "2021-07-05T05:11:28Z");
    assert_eq!(j["depth"]["buy"][2]["price"], 1573.02);
    assert_eq!(j["average_traded_price"], 1570.37);
    let change = ((1573.7f64 - 1567.8) * 100.0) / 1567.8;
    assert_eq!(j["change"].as_f64().unwrap().to_bits(), change.to_bits());
    assert!(json(&t[0]).get("depth").is_none());
}

#[test]
fn every_segment_divisor() {
    for seg in [1u32, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 200, 255] {
        let token = (77 << 8) | seg;
        let t = ticks(&msg(&[&be(&[token, 727_550_000])]));
        let want = match seg {
            3 => 72.755,
            6 | 12 => 72_755.0,
            _ => 7_275_500.0,
        };
        assert_eq!(
            json(&t[0])["last_price"].as_f64(),
            Some(want),
            "segment {seg}"
        );
        assert_eq!(t[0].tradable, seg != 9, "segment {seg}");
    }
}

#[test]
fn close_zero_gives_integer_zero_change() {
    let q = be(&[INFY, 157_315, 1, 157_033, 10, 20, 30, 0, 0, 0, 0]);
    let j = json(&ticks(&msg(&[&q]))[0]);
    assert!(j["change"].is_u64() && j["change"] == 0);
    assert_eq!(j["ohlc"]["close"], 0.0);
}

#[test]
fn zero_timestamps_are_null() {
    let mut f = be(&[INFY, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
    f.resize(184, 0);
    let j = json(&ticks(&msg(&[&f]))[0]);
    assert!(j["last_trade_time"].is_null());
    assert!(j["exchange_timestamp"].is_null());
    let idx = be(&[NIFTY, 1, 1, 1, 1, 1, 0, 0]);
    assert!(json(&ticks(&msg(&[&idx]))[0])["exchange_timestamp"].is_null());
}

#[test]
fn top_bit_values_read_unsigned() {
    let t = ticks(&msg(&[&be(&[INFY, 0xFFFF_FFDC])]));
    assert_eq!(json(&t[0])["last_price"], 42_949_672.6);
    let t = ticks(&msg(&[&be(&[0xFFFF_FF01, 1])]));
    assert_eq!(t[0].token.0, 0xFFFF_FF01);
}

#[test]
fn unknown_lengths_are_skipped_but_visible() {
    let m = msg(&[&be(&[INFY, 1, 2]), &be(&[INFY, 5]), &[0, 0, 0, 1]]);
    let Ok(Message::Packets(p)) = decode(&m) else {
        panic!("valid")
    };
    let all: Vec<_> = p.collect();
    assert!(matches!(
        all[0],
        Packet::Unknown {
            token: INFY,
            len: 12
        }
    ));
    assert!(matches!(all[1], Packet::Ltp(_)));
    assert!(matches!(all[2], Packet::Unknown { token: 1, len: 4 }));
    assert_eq!(ticks(&m).len(), 1);
}

#[test]
fn heartbeat_and_empty_count() {
    assert!(matches!(decode(&[0]), Ok(Message::Heartbeat)));
    assert!(matches!(decode(&[0xFF]), Ok(Message::Heartbeat)));
    let Ok(Message::Packets(p)) = decode(&[0, 0]) else {
        panic!()
    };
    assert_eq!(p.packet_count(), 0);
    let Ok(Message::Packets(p)) = decode(&[0, 0, 1, 2, 3]) else {
        panic!()
    };
    assert_eq!(p.packet_count(), 0); // trailing bytes ignored
}

#[test]
fn trailing_bytes_after_last_packet_are_ignored() {
    let mut m = msg(&[&be(&[INFY, 1])]);
    m.extend([9, 9, 9]);
    assert_eq!(ticks(&m).len(), 1);
}

#[test]
fn structural_defects() {
    assert_eq!(decode(&[]).unwrap_err(), DecodeError::Empty);
    // claims 2 packets, has 1
    let mut m = msg(&[&be(&[INFY, 1])]);
    m[1] = 2;
    assert_eq!(
        decode(&m).unwrap_err(),
        DecodeError::TruncatedHeader {
            index: 1,
            count: 2,
            offset: 12
        }
    );
    // one byte of a length prefix
    assert_eq!(
        decode(&[0, 1, 0]).unwrap_err(),
        DecodeError::TruncatedHeader {
            index: 0,
            count: 1,
            offset: 2
        }
    );
    assert_eq!(
        decode(&msg(&[&[0, 1]])).unwrap_err(),
        DecodeError::ShortPacket { index: 0, len: 2 }
    );
    assert_eq!(
        decode(&msg(&[&[]])).unwrap_err(),
        DecodeError::ShortPacket { index: 0, len: 0 }
    );
    // declares 184, has 8
    let mut m = msg(&[&be(&[INFY, 1])]);
    m[3] = 184;
    let e = decode(&m).unwrap_err();
    assert_eq!(
        e,
        DecodeError::Overrun {
            index: 0,
            declared: 184,
            available: 8
        }
    );
    assert_eq!(e.reason(), "overrun");
    assert_eq!(
        e.to_string(),
        "overrun: packet 1 declares 184 bytes but only 8 remain"
    );
    // a defect in a later packet rejects the whole message
    let mut m = msg(&[&be(&[INFY, 1]), &[1, 2]]);
    assert_eq!(decode(&m).unwrap_err().reason(), "short_packet");
    m[1] = 1;
    assert_eq!(ticks(&m).len(), 1);
}

#[test]
fn reason_labels_are_dense() {
    let all = [
        DecodeError::Empty,
        DecodeError::TruncatedHeader {
            index: 0,
            count: 1,
            offset: 2,
        },
        DecodeError::ShortPacket { index: 0, len: 0 },
        DecodeError::Overrun {
            index: 0,
            declared: 9,
            available: 0,
        },
    ];
    for e in all {
        assert_eq!(DecodeError::REASON_LABELS[e.reason_index()], e.reason());
    }
}

#[test]
fn cross_layout_is_by_length_not_segment() {
    // a 28-byte packet for an equity, a 44-byte packet for an index
    let q28 = be(&[INFY, 1, 2, 3, 4, 5, 0]);
    let q44 = be(&[NIFTY, 100, 0, 0, 0, 0, 0, 0, 0, 0, 50]);
    let t = ticks(&msg(&[&q28, &q44]));
    assert_eq!((t[0].kind, t[0].tradable), (PacketKind::IndexQuote, true));
    assert_eq!((t[1].kind, t[1].tradable), (PacketKind::Quote, false));
    assert_eq!(json(&t[1])["change"], 100.0);
}
