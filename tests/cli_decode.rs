//! `panda-feed decode`: output shape, exit codes 0/1/2, errors naming the file.

mod util;

use std::process::Output;

use serde_json::Value;
use util::cli::{output_with_stdin, panda_feed};
use util::{TempDir, vector};

fn decode(args: &[&str], stdin: Option<&[u8]>) -> Output {
    output_with_stdin(panda_feed(["decode"]).args(args), stdin.unwrap_or_default())
}

fn lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect()
}

fn framed(paths: &[&str]) -> Vec<u8> {
    let msgs: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(vector(p)).unwrap())
        .collect();
    util::framed(&msgs)
}

#[test]
fn one_line_per_tick_and_exit_0() {
    let o = decode(
        &[
            vector("cds.bin").to_str().unwrap(),
            vector("heartbeat.bin").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let l = lines(&o);
    assert_eq!(l.len(), 3);
    assert_eq!(l[0]["mode"], "ltp");
    assert_eq!(l[2]["mode"], "full");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("2 message(s), 3 tick(s), 1 heartbeat(s)"),
        "{err}"
    );
}

#[test]
fn framed_lines_and_stdin() {
    let input = framed(&[
        "ltp.bin",
        "overrun.bin",
        "zero_packets.bin",
        "quote_and_full.bin",
    ]);
    let o = decode(&["--framed", "-"], Some(&input));
    assert_eq!(
        o.status.code(),
        Some(2),
        "a malformed message makes the exit status 2"
    );
    let l = lines(&o);
    assert_eq!(l.len(), 4, "every message is printed, the bad one too");
    for (i, line) in l.iter().enumerate() {
        assert_eq!(line["frame"], i);
    }
    assert_eq!(l[0]["ticks"].as_array().unwrap().len(), 1);
    assert!(
        l[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("overrun: packet 1 declares 184 bytes")
    );
    assert_eq!(l[2]["ticks"], Value::Array(vec![]));
    assert_eq!(l[3]["ticks"].as_array().unwrap().len(), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 malformed: overrun=1"));
}

#[test]
fn malformed_single_message_names_the_file_and_continues() {
    let bad = vector("short_pkt.bin");
    let o = decode(
        &[bad.to_str().unwrap(), vector("ltp.bin").to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(lines(&o).len(), 1, "the good file is still decoded");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("short_pkt.bin: malformed message: short_packet"),
        "{err}"
    );
}

#[test]
fn unreadable_input_is_exit_1_and_named() {
    let o = decode(
        &[
            "/nonexistent/capture.bin",
            vector("ltp.bin").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(lines(&o).len(), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read /nonexistent/capture.bin"));
}

#[test]
fn truncated_framed_stream_is_exit_1_with_offset() {
    let mut input = framed(&["ltp.bin", "ltp.bin"]);
    input.truncate(input.len() - 3);
    let dir = TempDir::new("cli-decode");
    let p = dir.file("truncated.framed", &input);
    let o = decode(&["--framed", p.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        lines(&o).len(),
        1,
        "the complete record before the cut is printed"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "truncated.framed: record at byte 16 declares 12 bytes but the file ends after 9"
        ),
        "{err}"
    );
}

#[test]
fn oversized_record_is_refused_without_reading_it() {
    let dir = TempDir::new("cli-decode");
    let p = dir.file("huge.framed", [0xFF, 0xFF, 0xFF, 0xFF, 0, 1]);
    let o = decode(&["--framed", p.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("more than --max-message-bytes"));
    let p = dir.file("big.bin", [0u8; 64]);
    let o = decode(&["--max-message-bytes", "32", p.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("use --framed"));
}

#[test]
fn bad_command_line_is_a_usage_error() {
    let o = decode(&[], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Usage"));
}
