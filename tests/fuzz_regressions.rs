//! Inputs the libFuzzer targets in `fuzz/` found failing, kept as tests
//! (README, "Fuzzing"). Each names the target that found it.

use panda_feed::instruments::{parse, parse_date};
use panda_feed::secret::redact_url;

/// fuzz/fuzz_targets/instruments_csv.rs: `u32::from_str` takes a leading `+`,
/// so `2105-12-+1` was read as 2105-12-01.
#[test]
fn a_date_is_digits_only() {
    assert_eq!(parse_date("2105-12-01"), Some(49_642));
    for s in [
        "2105-12-+1",
        "2024-+1-05",
        "+970-01-01",
        "2024-01- 5",
        "2024-01-0\u{661}",
    ] {
        assert_eq!(parse_date(s), None, "{s:?}");
    }
    let err = parse("instrument_token,expiry\n1,2024-+1-+5\n", "x.csv")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("x.csv:2: expiry \"2024-+1-+5\" is not a YYYY-MM-DD date"),
        "{err}"
    );
}

/// fuzz/fuzz_targets/config.rs: the Redis client reads `redis://:p@ss@h` as
/// password `p@ss` (the last `@` ends it); the shown URL kept `ss`.
#[test]
fn a_password_with_an_at_sign_is_hidden_whole() {
    assert_eq!(
        redact_url("redis://:p@ss@10.0.0.1:6379/0"),
        "redis://:***@10.0.0.1:6379/0"
    );
    assert_eq!(
        redact_url("redis://user:a@b@c@h:1/2"),
        "redis://user:***@h:1/2"
    );
    // Unchanged without a password.
    assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
    assert_eq!(redact_url("redis://user@h:1/0"), "redis://user@h:1/0");
}
