//! Extreme values for every numeric setting and flag: 0, 1, the maximum, one
//! past it, `u64::MAX`, `1e20`, NaN, infinities and negatives, through the
//! TOML (parsed and checked in process, and through the binary) and through
//! the flags (the binary). Each must be an error naming the key or flag (exit
//! 1), or accepted when in its documented range (README "Ranges"); never a
//! panic (101) or an abort (134).

mod util;

use panda_feed::config::Config;
use panda_feed::config::ranges::{RANGES, Range};
use proptest::prelude::*;
use util::TempDir;
use util::cli::{output, panda_feed, stderr};

/// The TOML text setting `key` (`section.key`) to the literal `value`.
fn toml_of(key: &str, value: &str) -> String {
    let (section, k) = key.split_once('.').expect("section.key");
    format!("[{section}]\n{k} = {value}\n")
}

/// Every problem with the file, or its parse error, as one text; `None`
/// when it is accepted.
fn verdict(text: &str) -> Option<String> {
    match Config::parse(text, "t.toml") {
        Err(e) => Some(e.to_string()),
        Ok(c) => {
            let p = c.problems();
            (!p.is_empty()).then(|| p.join("\n"))
        }
    }
}

/// Asserts `value` for `r.key` is accepted iff it is in range; an error
/// names the key (and, for a parsed number, the value and the range).
fn assert_verdict(r: &Range, value: &str) {
    let text = toml_of(r.key, value);
    let in_range = value
        .parse::<i128>()
        .is_ok_and(|v| v >= i128::from(r.min) && v <= i128::from(r.max));
    let v = verdict(&text);
    let short = r.key.split_once('.').unwrap().1;
    match (&v, in_range) {
        (None, true) => {}
        (Some(e), true) => {
            // In range, but the type is narrower (a u32 key given a u64),
            // or another key's bound (backoff_cap_ms below backoff_base_ms).
            assert!(e.contains(short), "{text}{e}");
        }
        (None, false) => panic!("{} = {value} accepted; range {}..={}", r.key, r.min, r.max),
        (Some(e), false) => {
            assert!(
                e.contains(short),
                "{text}: error does not name the key:\n{e}"
            );
            if Config::parse(&text, "t.toml").is_ok() {
                let range = format!("{}..={}", r.min, r.max);
                assert!(
                    e.contains(r.key) && e.contains(value) && e.contains(&range),
                    "{text}: error does not name key, value and range:\n{e}"
                );
            }
        }
    }
}

const EXTREMES: [&str; 12] = [
    "0",
    "1",
    "-1",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "1e20",
    "nan",
    "inf",
    "-inf",
    "0.5",
];

#[test]
fn every_key_at_its_bounds_and_at_the_extremes() {
    for r in RANGES {
        let mut values: Vec<String> = EXTREMES.iter().map(|s| (*s).to_owned()).collect();
        values.push(r.min.to_string());
        values.push(r.max.to_string());
        values.push((u128::from(r.max) + 1).to_string());
        if r.min > 0 {
            values.push((r.min - 1).to_string());
        }
        for v in &values {
            assert_verdict(r, v);
        }
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = verdict(
        "[engine]\nring_capacity = 1000000000000\n[kafka]\nmessage_timeout_ms = 4294967295\n\
         [mock]\nrate = 0\n[redis]\ntimeout_ms = 9223372036854775807\n[ops]\nwindow_s = 86400\nsample_ms = 1\n",
    )
    .expect("rejected");
    for k in [
        "engine.ring_capacity",
        "kafka.message_timeout_ms",
        "mock.rate",
        "redis.timeout_ms",
        "ops.window_s",
    ] {
        assert!(e.contains(k), "{k} not named:\n{e}");
    }
}

#[test]
fn the_rings_memory_is_bounded_in_bytes() {
    let e = verdict("[engine]\nring_capacity = 16777216\npublishers = 64\n").expect("rejected");
    assert!(
        e.contains("engine.ring_capacity")
            && e.contains("engine.publishers")
            && e.contains("8 GiB"),
        "{e}"
    );
    assert!(verdict("[engine]\nring_capacity = 16777216\n").is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_any_integer_for_any_key_is_accepted_iff_in_range(
        r in prop::sample::select(RANGES),
        v in prop_oneof![any::<i64>(), 0i64..=2, any::<u32>().prop_map(i64::from)],
    ) {
        assert_verdict(&r, &v.to_string());
    }

    #[test]
    fn prop_any_float_for_any_key_is_an_error_naming_it(
        r in prop::sample::select(RANGES),
        v in prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY)],
    ) {
        let lit = if v.is_nan() { "nan".to_owned() } else if v.is_infinite() {
            if v > 0.0 { "inf".to_owned() } else { "-inf".to_owned() }
        } else { format!("{v:?}") };
        let e = verdict(&toml_of(r.key, &lit));
        prop_assert!(e.is_some_and(|e| e.contains(r.key.split_once('.').unwrap().1)));
    }
}

/// Runs `panda-feed args`; asserts exit 1 and that stderr names `what`.
fn assert_rejected(args: &[&str], what: &str) -> String {
    let out = output(&mut panda_feed(args));
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: want exit 1 (not 2, 101 or 134):\n{err}"
    );
    assert!(err.contains(what), "{args:?}: {what} not named:\n{err}");
    err
}

#[test]
fn every_numeric_flag_rejects_extreme_values_with_exit_1() {
    // (command and required arguments, flag, its range as printed)
    let flags: &[(&[&str], &str, &str)] = &[
        (&["run", "--mock"], "--duration", "315360000"),
        (&["run", "--mock"], "--mock-rate", "1..=10000000"),
        (&["run", "--mock"], "--publishers", "1..=64"),
        (&["mock-kafka"], "--duration", "315360000"),
        (&["mock-kafka"], "--partitions", "1..=1000"),
        (&["mock-exchange"], "--rate", "1..=10000000"),
        (&["mock-exchange"], "--max-instruments", "1..=10000000"),
        (&["mock-exchange"], "--heartbeat-ms", "1..=3600000"),
        (&["mock-exchange"], "--duration", "315360000"),
        (&["mock-exchange"], "--stall-after", "315360000"),
        (
            &["mock-exchange", "--stall-after", "1"],
            "--stall-for",
            "315360000",
        ),
        (&["mock-exchange"], "--slow-turn-ms", "0..=60000"),
        (
            &["mock-exchange", "--error-text", "x"],
            "--error-every",
            "315360000",
        ),
        (&["decode", "-"], "--max-message-bytes", "1..=4294967295"),
        (
            &["dlq", "requeue", "--brokers", "x"],
            "--timeout-s",
            "1..=315360000",
        ),
        (
            &["dlq", "requeue", "--brokers", "x"],
            "--checkpoint-records",
            "1..=10000000",
        ),
    ];
    for (cmd, flag, range) in flags {
        for v in [
            "-1",
            "1e20",
            "NaN",
            "inf",
            "-inf",
            "18446744073709551615",
            "x",
        ] {
            let mut args = cmd.to_vec();
            args.extend([*flag, v]);
            let err = assert_rejected(&args, flag);
            assert!(err.contains(v) && err.contains(range), "{args:?}:\n{err}");
        }
    }
    // The ones the drills found.
    assert_rejected(&["mock-exchange", "--stall-after", "1e19"], "--stall-after");
    assert_rejected(&["run", "--mock", "--duration", "1e20"], "--duration");
    assert_rejected(&["mock-kafka", "--duration", "1e20"], "--duration");
    assert_rejected(
        &["run", "--mock", "--mock-rate", "18446744073709551615"],
        "--mock-rate",
    );
    // Zero where zero means nothing.
    for (cmd, flag) in [
        (&["run", "--mock"][..], "--duration"),
        (&["run", "--mock"][..], "--mock-rate"),
        (&["mock-exchange"][..], "--heartbeat-ms"),
    ] {
        let mut args = cmd.to_vec();
        args.extend([flag, "0"]);
        assert_rejected(&args, flag);
    }
}

#[test]
fn extreme_config_values_are_errors_of_the_binary_not_aborts() {
    let dir = TempDir::new("ranges-config");
    for (toml, key) in [
        (
            "[engine]\nring_capacity = 1000000000000\n",
            "engine.ring_capacity",
        ),
        (
            "[engine]\npublish_chunk = 9223372036854775807\n",
            "engine.publish_chunk",
        ),
        (
            "[engine]\nread_buffer_size = 0\n",
            "engine.read_buffer_size",
        ),
        ("[mock]\nrate = 9223372036854775807\n", "mock.rate"),
        (
            "[zerodha]\nliveness_ms = 9223372036854775807\n",
            "zerodha.liveness_ms",
        ),
        (
            "[spool]\nmax_bytes = 9223372036854775807\n",
            "spool.max_bytes",
        ),
        ("[redis]\nttl_s = 9223372036854775807\n", "redis.ttl_s"),
        ("[ops]\nwindow_s = 9223372036854775807\n", "ops.window_s"),
        ("[kafka]\nlinger_ms = 4294967295\n", "kafka.linger_ms"),
        ("[kafka]\nbatch_size = -1\n", "batch_size"),
        ("[run]\nstatus_interval_ms = 1e20\n", "status_interval_ms"),
    ] {
        let cfg = dir.file("x.toml", toml);
        let cfg = cfg.to_str().unwrap();
        assert_rejected(
            &[
                "run",
                "--mock",
                "--duration",
                "1",
                "--ops-listen",
                "",
                "--config",
                cfg,
            ],
            key,
        );
    }
}
