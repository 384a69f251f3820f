//! Property tests: the decoder never panics, and encode → decode is the identity.

use super::*;
use crate::tick::{Depth, DepthLevel, Ohlc, PacketKind, Tick};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = PacketKind> {
    prop_oneof![
        Just(PacketKind::Ltp),
        Just(PacketKind::IndexQuote),
        Just(PacketKind::IndexFull),
        Just(PacketKind::Quote),
        Just(PacketKind::Full),
    ]
}

fn level() -> impl Strategy<Value = DepthLevel> {
    (any::<u32>(), any::<u32>(), any::<u16>()).prop_map(|(quantity, price, orders)| DepthLevel {
        quantity,
        price,
        orders,
    })
}

/// A tick with arbitrary values in exactly the fields its kind carries.
fn tick() -> impl Strategy<Value = Tick> {
    (
        kind(),
        any::<u32>(),
        prop::array::uniform8(any::<u32>()),
        prop::array::uniform4(any::<u32>()),
        any::<i32>(),
        prop::array::uniform5(any::<u32>()),
        prop::array::uniform10(level()),
    )
        .prop_map(|(kind, token, q, ohlc, change, f, lv)| {
            let mut t = Tick::for_token(token, kind);
            t.last_price = q[0];
            t.ohlc = Ohlc {
                open: ohlc[0],
                high: ohlc[1],
                low: ohlc[2],
                close: ohlc[3],
            };
            match kind {
                PacketKind::Ltp => t.ohlc = Ohlc::default(),
                PacketKind::IndexQuote | PacketKind::IndexFull => {
                    t.index_change = change;
                    if kind == PacketKind::IndexFull {
                        t.exchange_timestamp = f[4];
                    }
                }
                PacketKind::Quote | PacketKind::Full => {
                    t.last_traded_quantity = q[1];
                    t.average_traded_price = q[2];
                    t.volume_traded = q[3];
                    t.total_buy_quantity = q[4];
                    t.total_sell_quantity = q[5];
                    if kind == PacketKind::Full {
                        [
                            t.last_trade_time,
                            t.oi,
                            t.oi_day_high,
                            t.oi_day_low,
                            t.exchange_timestamp,
                        ] = f;
                        let (buy, sell) = lv.split_at(5);
                        t.depth = Depth {
                            buy: buy.try_into().unwrap(),
                            sell: sell.try_into().unwrap(),
                        };
                    }
                }
            }
            t
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn prop_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(Message::Packets(p)) = decode(&bytes) {
            let declared = usize::from(p.packet_count());
            let mut seen = 0usize;
            let mut consumed = 2usize;
            for packet in p {
                seen += 1;
                consumed += 2 + match packet {
                    Packet::Ltp(_) => 8,
                    Packet::IndexQuote(_) => 28,
                    Packet::IndexFull(_) => 32,
                    Packet::Quote(_) => 44,
                    Packet::Full(_) => 184,
                    Packet::Unknown { len, .. } => usize::from(len),
                };
            }
            prop_assert_eq!(seen, declared);
            prop_assert!(consumed <= bytes.len());
        }
    }

    #[test]
    fn prop_framed_garbage_never_panics(
        count in any::<u16>(),
        lens in prop::collection::vec(any::<u16>(), 0..8),
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut m = count.to_be_bytes().to_vec();
        for (i, l) in lens.iter().enumerate() {
            m.extend(l.to_be_bytes());
            m.extend(body.iter().take(usize::from(*l) % 200).map(|b| b.wrapping_add(i as u8)));
        }
        let _ = decode(&m).map(|msg| if let Message::Packets(p) = msg { p.packet_count() } else { 0 });
    }

    #[test]
    fn prop_encode_decode_roundtrip(ticks in prop::collection::vec(tick(), 1..40)) {
        let mut w = MessageWriter::with_capacity(64);
        for t in &ticks {
            prop_assert!(w.push(t).is_ok());
        }
        let Ok(Message::Packets(p)) = decode(w.finish()) else {
            return Err(TestCaseError::fail("encoded message did not decode"));
        };
        let back: Vec<Tick> = p.filter_map(|p| Tick::from_packet(&p)).collect();
        prop_assert_eq!(back, ticks);
    }
}
