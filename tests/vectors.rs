//! Reference vectors (tests/data/vectors, written by scripts/make_vectors.py)
//! against the official parser's committed output (expected.jsonl).

mod util;

use serde_json::Value;

/// Vectors where we are deliberately stricter than pykiteconnect (the README's
/// "Data contract" lists what we refuse), with the reason we must give.
const STRICTER: &[(&str, &str)] = &[
    ("overrun.bin", "overrun"),
    ("overrun_middle.bin", "overrun"),
    ("empty.bin", "empty"),
];

/// Vectors the oracle rejects, with the reason we must give.
const REJECTED: &[(&str, &str)] = &[
    ("truncated.bin", "truncated_header"),
    ("truncated_half_prefix.bin", "truncated_header"),
    ("short_pkt.bin", "short_packet"),
    ("short_pkt_zero.bin", "short_packet"),
];

fn reason(v: &Value) -> Option<&str> {
    v.get("error")?.as_str()?.split(':').next()
}

#[test]
fn vectors_match_the_official_parser() {
    let dir = util::vectors_dir();
    let expected = std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected.jsonl");
    let mut checked = 0;
    for line in expected.lines() {
        let entry: Value = serde_json::from_str(line).expect("expected.jsonl line");
        let name = entry["name"].as_str().expect("name");
        let oracle = &entry["oracle"];
        let msg = std::fs::read(dir.join(name)).expect(name);
        let ours = util::decode_frame(&msg);
        if let Some(&(_, want)) = STRICTER.iter().chain(REJECTED).find(|(n, _)| *n == name) {
            assert_eq!(reason(&ours), Some(want), "{name}: ours {ours}");
            if REJECTED.iter().any(|(n, _)| *n == name) {
                assert!(
                    oracle.get("error").is_some(),
                    "{name}: the oracle accepted it: {oracle}"
                );
            }
        } else {
            assert!(
                oracle.get("error").is_none(),
                "{name}: unexpected oracle error {oracle}"
            );
            if let Err(e) = util::same_ticks(&ours["ticks"], &oracle["ticks"], name) {
                panic!("{e}\nours:   {ours}\noracle: {oracle}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} vectors");
}

#[test]
fn worked_example_values() {
    let ours = util::decode_frame(&std::fs::read(util::vector("full_nse.bin")).unwrap());
    let t = &ours["ticks"][0];
    assert_eq!(t["last_price"].to_string(), "4125.35");
    assert_eq!(t["exchange_timestamp"], "2023-11-15T07:00:24Z");
    assert_eq!(t["last_trade_time"], "2023-11-15T07:00:23Z");
    let cds = util::decode_frame(&std::fs::read(util::vector("cds.bin")).unwrap());
    assert_eq!(
        cds["ticks"][2]["depth"]["buy"][1]["price"].to_string(),
        "89.3075"
    );
}
