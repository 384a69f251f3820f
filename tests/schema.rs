//! Encoded ticks validate against the committed JSON Schema
//! (schemas/tick.schema.json), and the schema rejects what it should.

mod util;

use std::path::Path;

use panda_feed::json::{JsonBuf, write_tick};
use panda_feed::tick::{DepthLevel, Ohlc};
use panda_feed::{PacketKind, Tick};
use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/tick.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn encoded(t: &Tick) -> Value {
    let mut out = JsonBuf::with_capacity(0);
    write_tick(t, &mut out).unwrap();
    serde_json::from_slice(out.as_bytes()).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, tick: &Value) {
    let errors: Vec<String> = v.iter_errors(tick).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{tick}\n{errors:#?}");
}

#[test]
fn every_kind_with_extreme_values_validates() {
    let v = validator();
    let kinds = [
        PacketKind::Ltp,
        PacketKind::IndexQuote,
        PacketKind::IndexFull,
        PacketKind::Quote,
        PacketKind::Full,
    ];
    let mut n = 0;
    for kind in kinds {
        for seg in [0u32, 1, 3, 6, 9, 12, 255] {
            for fill in [0u32, 1, 0x8000_0000, u32::MAX] {
                let lvl = DepthLevel {
                    quantity: fill,
                    price: fill,
                    orders: fill as u16,
                };
                let mut t = Tick::for_token((fill & 0xFFFF_FF00) | seg, kind);
                t.last_price = fill;
                t.volume_traded = fill;
                t.ohlc = Ohlc {
                    open: fill,
                    high: fill,
                    low: fill,
                    close: fill,
                };
                t.last_trade_time = fill;
                t.exchange_timestamp = fill;
                t.depth.buy = [lvl; 5];
                t.depth.sell = [lvl; 5];
                assert_valid(&v, &encoded(&t));
                n += 1;
            }
        }
    }
    assert_eq!(n, 5 * 7 * 4);
}

#[test]
fn reference_vectors_validate() {
    let v = validator();
    let mut n = 0;
    for entry in std::fs::read_dir(util::vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bin") {
            let frame = util::decode_frame(&std::fs::read(&path).unwrap());
            for tick in frame["ticks"].as_array().into_iter().flatten() {
                assert_valid(&v, tick);
                n += 1;
            }
        }
    }
    assert!(n >= 30, "only {n} ticks");
}

#[test]
fn schema_rejects_wrong_shapes() {
    let v = validator();
    let mut t = encoded(&Tick::for_token(408_065, PacketKind::Full));
    assert!(v.is_valid(&t));
    t["depth"]["buy"].as_array_mut().unwrap().pop();
    assert!(!v.is_valid(&t), "4 depth levels accepted");
    let mut t = encoded(&Tick::for_token(408_065, PacketKind::Quote));
    t["exchange_timestamp"] = Value::Null;
    assert!(!v.is_valid(&t), "extra key accepted");
    let mut t = encoded(&Tick::for_token(408_065, PacketKind::Ltp));
    t["last_price"] = Value::from("1.0");
    assert!(!v.is_valid(&t), "string price accepted");
    let mut t = encoded(&Tick::for_token(256_265, PacketKind::IndexFull));
    t["exchange_timestamp"] = Value::from("2021-07-05T10:41:27");
    assert!(!v.is_valid(&t), "naive timestamp accepted");
}

#[test]
fn published_envelopes_validate_against_the_envelope_schema() {
    use panda_feed::json::write_envelope;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root.join(name)).unwrap()).unwrap()
    };
    let registry = jsonschema::Registry::new()
        .add(
            "https://github.com/panda-feed/panda-feed/schemas/tick.schema.json",
            read("tick.schema.json"),
        )
        .unwrap()
        .prepare()
        .unwrap();
    let v = jsonschema::options()
        .with_registry(&registry)
        .build(&read("envelope.schema.json"))
        .expect("envelope schema compiles");
    let mut out = JsonBuf::with_capacity(panda_feed::json::MAX_ENVELOPE_LEN);
    for kind in [PacketKind::Ltp, PacketKind::IndexFull, PacketKind::Full] {
        let mut t = Tick::for_token(408_065, kind);
        t.conn = 2;
        t.seq = u64::MAX;
        t.ts_recv_ns = 1_763_900_000_123_456_789;
        out.clear();
        write_envelope(&t, panda_feed::run_id::RunId(0x1d), &mut out).unwrap();
        let env: Value = serde_json::from_slice(out.as_bytes()).unwrap();
        assert_valid(&v, &env);
        assert_eq!(env["received_at"], "2025-11-23T12:13:20.123456Z");
    }
    // It rejects what it should: a missing key, a bad tick inside.
    out.clear();
    write_envelope(
        &Tick::for_token(1, PacketKind::Ltp),
        panda_feed::run_id::RunId(1),
        &mut out,
    )
    .unwrap();
    let mut env: Value = serde_json::from_slice(out.as_bytes()).unwrap();
    env["data"]["last_price"] = Value::from("1.0");
    assert!(!v.is_valid(&env));
    env.as_object_mut().unwrap().remove("seq");
    assert!(!v.is_valid(&env));
}
