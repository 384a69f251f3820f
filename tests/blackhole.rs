//! `kafka.sink = "blackhole"` (README "Performance"): the publishers encode
//! every tick and discard it, counted as published; no broker is needed or
//! started, and the accounting identity holds, per tier too.

mod util;

use std::process::Stdio;

use serde_json::Value;
use util::TempDir;
use util::cli::{output, panda_feed, stderr};

#[test]
fn a_blackhole_run_publishes_every_tick_to_nowhere_without_a_broker() {
    let dir = TempDir::new("blackhole");
    let summary = dir.join("summary.json");
    let out = output(
        panda_feed(["run", "--mock", "--duration", "2", "--ops-listen", ""])
            .arg("--summary")
            .arg(&summary)
            .env("KAFKA__SINK", "blackhole")
            .current_dir(dir.path())
            .stdout(Stdio::null()),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("embedded Kafka broker"), "no broker: {err}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["identity_holds"], true, "{s}");
    let received = s["received"].as_u64().unwrap();
    assert!(received > 1000, "{s}");
    assert_eq!(s["published"], received);
    assert_eq!(
        s["tiers"]["T1"]["published"], received,
        "counted in its tier"
    );
    assert_eq!(s["parked"], 0);
    // Ring memory in bytes as well as slots.
    let p = &s["publishers"][0];
    assert_eq!(
        p["ring_bytes"].as_u64().unwrap(),
        p["ring_capacity"].as_u64().unwrap() * panda_feed::ring::SLOT_BYTES,
        "{p}"
    );
    assert_eq!(panda_feed::ring::SLOT_BYTES, 216, "the README's slot size");
}

#[test]
fn check_config_takes_a_blackhole_without_brokers_and_names_a_bad_sink() {
    let out = output(
        panda_feed(["check-config", "--instruments", "/dev/null"]).env("KAFKA__SINK", "blackhole"),
    );
    let err = stderr(&out);
    assert!(!err.contains("no Kafka brokers"), "{err}");
    let out = output(panda_feed(["check-config", "--mock"]).env("KAFKA__SINK", "nowhere"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("kafka.sink \"nowhere\" is not kafka or blackhole"));
}
