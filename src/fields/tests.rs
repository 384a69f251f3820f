//! Unit tests of field selection and of the encoder under each selection.

use super::*;
use crate::json::{JsonBuf, write_envelope, write_envelope_with, write_tick, write_tick_with};
use crate::run_id::RunId;
use crate::tick::{Depth, DepthLevel, Ohlc, PacketKind, Tick};

const KINDS: [PacketKind; 5] = [
    PacketKind::Ltp,
    PacketKind::IndexQuote,
    PacketKind::IndexFull,
    PacketKind::Quote,
    PacketKind::Full,
];

fn sample(kind: PacketKind) -> Tick {
    let lvl = DepthLevel {
        quantity: 25,
        price: 157_340,
        orders: 3,
    };
    let token = if matches!(kind, PacketKind::IndexQuote | PacketKind::IndexFull) {
        256_265
    } else {
        408_065
    };
    Tick {
        last_price: 157_370,
        last_traded_quantity: 7,
        average_traded_price: 157_037,
        volume_traded: 1_192_471,
        total_buy_quantity: 256_443,
        total_sell_quantity: 363_009,
        ohlc: Ohlc {
            open: 156_915,
            high: 157_500,
            low: 156_105,
            close: 156_780,
        },
        last_trade_time: 1_625_461_887,
        oi: 12_000,
        oi_day_high: 13_000,
        oi_day_low: 11_000,
        exchange_timestamp: 1_625_461_888,
        depth: Depth {
            buy: [lvl; 5],
            sell: [lvl; 5],
        },
        ..Tick::for_token(token, kind)
    }
}

fn encode(t: &Tick, f: FieldSelection) -> serde_json::Map<String, serde_json::Value> {
    let mut b = JsonBuf::with_capacity(0);
    write_tick_with(t, f, &mut b).unwrap();
    match serde_json::from_slice(b.as_bytes()).expect("valid JSON") {
        serde_json::Value::Object(m) => m,
        v => panic!("not an object: {v}"),
    }
}

fn keys(t: &Tick, f: FieldSelection) -> Vec<String> {
    encode(t, f).keys().cloned().collect()
}

/// The keys of each part.
fn part_keys(p: Part) -> &'static [&'static str] {
    match p {
        Part::Depth => &["depth"],
        Part::Oi => &["oi", "oi_day_high", "oi_day_low"],
        Part::Ohlc => &["ohlc"],
        Part::Timestamps => &["last_trade_time", "exchange_timestamp"],
    }
}

#[test]
fn all_is_the_default_and_writes_what_the_plain_encoder_writes() {
    assert_eq!(FieldSelection::default(), FieldSelection::ALL);
    assert_eq!(
        FieldSelection::from_config(&FieldsConfig::default()),
        FieldSelection::ALL
    );
    for kind in KINDS {
        let t = sample(kind);
        let (mut a, mut b) = (JsonBuf::with_capacity(0), JsonBuf::with_capacity(0));
        write_tick(&t, &mut a).unwrap();
        write_tick_with(&t, FieldSelection::ALL, &mut b).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes(), "{kind:?}");
        let (mut a, mut b) = (JsonBuf::with_capacity(4096), JsonBuf::with_capacity(4096));
        write_envelope(&t, RunId(9), &mut a).unwrap();
        write_envelope_with(&t, RunId(9), FieldSelection::ALL, &mut b).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes(), "{kind:?}");
    }
}

#[test]
fn the_full_tick_is_byte_identical_to_the_contract_before_selection() {
    // Written out from the encoder as it was before field selection existed.
    let mut b = JsonBuf::with_capacity(0);
    write_tick(&sample(PacketKind::Full), &mut b).unwrap();
    let lvl = r#"{"quantity":25,"price":1573.4,"orders":3}"#;
    let levels = [lvl; 5].join(",");
    let want = format!(
        concat!(
            r#"{{"tradable":true,"mode":"full","instrument_token":408065,"last_price":1573.7,"#,
            r#""last_traded_quantity":7,"average_traded_price":1570.37,"volume_traded":1192471,"#,
            r#""total_buy_quantity":256443,"total_sell_quantity":363009,"#,
            r#""ohlc":{{"open":1569.15,"high":1575.0,"low":1561.05,"close":1567.8}},"#,
            r#""change":0.3763235106518747,"last_trade_time":"2021-07-05T05:11:27Z","#,
            r#""oi":12000,"oi_day_high":13000,"oi_day_low":11000,"#,
            r#""exchange_timestamp":"2021-07-05T05:11:28Z","#,
            r#""depth":{{"buy":[{}],"sell":[{}]}}}}"#
        ),
        levels, levels
    );
    assert_eq!(std::str::from_utf8(b.as_bytes()).unwrap(), want);
}

#[test]
fn each_part_off_omits_exactly_its_keys_in_every_mode() {
    for kind in KINDS {
        let t = sample(kind);
        let all = keys(&t, FieldSelection::ALL);
        for part in Part::ALL {
            for mode in [Mode::Quote, Mode::Full] {
                let f = FieldSelection::ALL.with(mode, part, false);
                let got = keys(&t, f);
                let has = all.iter().any(|k| part_keys(part).contains(&k.as_str()));
                let off = mode == kind.mode() && has;
                assert!(!has || part.exists_in(kind.mode()), "{kind:?} {part:?}");
                let want: Vec<String> = all
                    .iter()
                    .filter(|k| !(off && part_keys(part).contains(&k.as_str())))
                    .cloned()
                    .collect();
                assert_eq!(got, want, "{kind:?} {part:?} off in {mode:?}");
                if off {
                    assert!(got.len() < all.len(), "{kind:?} {part:?}: nothing left out");
                }
            }
        }
    }
}

#[test]
fn nothing_optional_leaves_the_core_keys_in_order() {
    let text = |kind| {
        let mut b = JsonBuf::with_capacity(0);
        write_tick_with(&sample(kind), FieldSelection::NONE, &mut b).unwrap();
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    };
    assert_eq!(
        text(PacketKind::Full),
        concat!(
            r#"{"tradable":true,"mode":"full","instrument_token":408065,"last_price":1573.7,"#,
            r#""last_traded_quantity":7,"average_traded_price":1570.37,"volume_traded":1192471,"#,
            r#""total_buy_quantity":256443,"total_sell_quantity":363009,"#,
            r#""change":0.3763235106518747}"#
        )
    );
    for kind in [PacketKind::IndexQuote, PacketKind::IndexFull] {
        assert_eq!(
            text(kind),
            r#"{"tradable":false,"mode":""#.to_owned()
                + kind.mode().as_str()
                + r#"","instrument_token":256265,"last_price":1573.7,"change":0.3763235106518747}"#
        );
    }
}

#[test]
fn the_envelope_carries_the_reduced_tick() {
    let mut b = JsonBuf::with_capacity(4096);
    let f = FieldSelection::ALL.with(Mode::Full, Part::Depth, false);
    write_envelope_with(&sample(PacketKind::Full), RunId(3), f, &mut b).unwrap();
    let v: serde_json::Value = serde_json::from_slice(b.as_bytes()).unwrap();
    assert_eq!(v["type"], "market_tick");
    assert!(v["data"].get("depth").is_none());
    assert_eq!(v["data"]["oi"], 12_000);
}

#[test]
fn per_mode_keys_override_the_all_modes_keys() {
    let c = FieldsConfig {
        ohlc: false,
        full_ohlc: Some(true),
        depth: true,
        full_depth: Some(false),
        timestamps: false,
        ..FieldsConfig::default()
    };
    let f = FieldSelection::from_config(&c);
    assert!(!f.sends(Mode::Quote, Part::Ohlc));
    assert!(f.sends(Mode::Full, Part::Ohlc));
    assert!(!f.sends(Mode::Full, Part::Depth));
    assert!(f.sends(Mode::Full, Part::Oi));
    assert!(!f.sends(Mode::Full, Part::Timestamps));
    let q = FieldSelection::from_config(&FieldsConfig {
        quote_ohlc: Some(false),
        ..FieldsConfig::default()
    });
    assert_eq!(q, FieldSelection::ALL.with(Mode::Quote, Part::Ohlc, false));
    let quote = keys(&sample(PacketKind::Quote), q);
    assert!(!quote.contains(&"ohlc".to_owned()));
    assert!(keys(&sample(PacketKind::Full), q).contains(&"ohlc".to_owned()));
}

#[test]
fn the_mask_is_canonical_and_shown_per_mode() {
    for bits in 0..=u16::MAX {
        let f = FieldSelection::from_bits(bits);
        assert_eq!(FieldSelection::from_bits(f.bits()), f);
        // Parts a mode lacks are never set.
        assert!(!f.sends(Mode::Quote, Part::Depth) && !f.sends(Mode::Ltp, Part::Ohlc));
    }
    assert_eq!(
        FieldSelection::ALL.with(Mode::Ltp, Part::Ohlc, false),
        FieldSelection::ALL
    );
    let f = FieldSelection::ALL.with(Mode::Full, Part::Oi, false);
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        r#"{"quote":["ohlc"],"full":["depth","ohlc","timestamps"]}"#
    );
    assert_eq!(
        format!("{f:?}"),
        r#"{"quote": ["ohlc"], "full": ["depth", "ohlc", "timestamps"]}"#
    );
}

#[test]
fn the_live_cell_is_shared_by_its_clones() {
    let a = LiveFields::default();
    let b = a.clone();
    assert_eq!(b.load(), FieldSelection::ALL);
    a.store(FieldSelection::NONE);
    assert_eq!(b.load(), FieldSelection::NONE);
}
