//! `panda-feed dlq` against the embedded broker: a crash while parking, an
//! interrupted requeue, two requeues at once, a record the broker refuses,
//! purge edges, and `stats` on a spool being written.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use panda_feed::mock::EmbeddedBroker;
use panda_feed::spool::{self, Fsync, Persisted, Spool, SpoolConfig};
use util::cli::stderr;
use util::temp::TempDir;

const TOPIC: &str = "dlq-test";
const PARTITIONS: i32 = 3;
/// Env var that turns [`parker_child`] into the parking child process.
const PARKER: &str = "PANDA_FEED_TEST_PARKER_DIR";

fn spool_cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        fsync: Fsync::Never,
        ..SpoolConfig::default()
    }
}

/// A value like the feed's envelope: the record's identity inside.
fn value(conn: u32, seq: u64) -> Vec<u8> {
    format!(
        "{{\"conn\":{conn},\"seq\":{seq},\"recv_ns\":{},\"ltp\":1}}",
        seq * 7 + 1
    )
    .into_bytes()
}

/// Parks `n` records (seq `from..from + n`) and closes the segment.
fn park(dir: &Path, from: u64, n: u64, persisted: Persisted) -> Vec<(Vec<u8>, Vec<u8>)> {
    let s = Spool::new(spool_cfg(dir), 0, Arc::new(AtomicU64::new(0)));
    let mut out = Vec::new();
    for seq in from..from + n {
        let (k, v) = (format!("{}", 256 + seq % 50).into_bytes(), value(0, seq));
        assert!(s.park(TOPIC, &k, &v, "delivery failed: timed out", persisted));
        out.push((k, v));
    }
    out
}

fn dlq(dir: &Path, args: &[&str]) -> Output {
    util::cli::output(util::cli::panda_feed(["dlq", "--dir"]).arg(dir).args(args))
}

fn requeue(dir: &Path, broker: &EmbeddedBroker, extra: &[&str]) -> Output {
    let mut a = vec!["requeue", "--brokers", broker.bootstrap_servers()];
    a.extend_from_slice(extra);
    dlq(dir, &a)
}

/// The topic holds exactly `want`, each once (by key and value bytes).
fn assert_exactly_once(broker: &EmbeddedBroker, want: &[(Vec<u8>, Vec<u8>)]) {
    let mut got = util::kafka::read_to_end(broker.bootstrap_servers(), TOPIC, PARTITIONS);
    let mut want = want.to_vec();
    got.sort();
    want.sort();
    let dup = got.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(dup, 0, "{dup} duplicates on the topic");
    assert_eq!(got.len(), want.len(), "record count");
    assert!(got == want, "contents differ");
}

fn records_in(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    spool::segments(dir)
        .iter()
        .flat_map(|s| spool::read_segment(s).unwrap().0)
        .map(|r| (r.key, r.payload))
        .collect()
}

/// Not a test of its own: the child process of
/// [`a_crash_while_parking_loses_nothing_and_duplicates_nothing`], which
/// re-executes this test binary with [`PARKER`] set. Parks until killed
/// (bounded, should the parent die), reporting progress on stdout.
#[test]
fn parker_child() {
    let Ok(dir) = std::env::var(PARKER) else {
        return;
    };
    let s = Spool::new(spool_cfg(Path::new(&dir)), 0, Arc::default());
    let mut out = std::io::stdout();
    for seq in 0..200_000u64 {
        let k = format!("{}", 256 + seq % 50);
        s.park(
            TOPIC,
            k.as_bytes(),
            &value(1, seq),
            "delivery failed",
            Persisted::Unknown,
        );
        if seq % 100 == 99 {
            writeln!(out, "parked {}", seq + 1).unwrap();
            out.flush().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_crash_while_parking_loses_nothing_and_duplicates_nothing() {
    let tmp = TempDir::new("dlq-crash-park");
    let dir = tmp.path().to_path_buf();
    let broker = util::stack::start_broker(TOPIC, PARTITIONS);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "parker_child", "--nocapture"])
        .env(PARKER, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let parked_enough = lines.any(|l| l.is_ok_and(|l| l == "parked 1000"));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(parked_enough, "the child never parked 1000 records");
    assert_eq!(status.signal(), Some(9));

    // Its segment is stranded open; a torn write at its end.
    let segs = spool::segments(&dir);
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert!(!spool::is_closed(&segs[0]));
    let parked = records_in(&dir);
    assert!(parked.len() >= 1000);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&segs[0])
        .unwrap();
    f.write_all(b"PFD2\x00\x00\x01\x00\x12\x34").unwrap();
    drop(f);

    let out = requeue(&dir, &broker, &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("torn tail truncated: 10 bytes"), "{err}");
    assert!(
        err.contains(&format!("requeued {} records", parked.len())),
        "{err}"
    );
    assert!(spool::segments(&dir).is_empty());
    assert_exactly_once(&broker, &parked);
}

#[test]
fn a_requeue_killed_midway_and_run_again_duplicates_nothing() {
    let tmp = TempDir::new("dlq-kill-requeue");
    let dir = tmp.path().to_path_buf();
    let broker = util::stack::start_broker(TOPIC, PARTITIONS);
    let mut parked = park(&dir, 0, 10_000, Persisted::No);
    parked.extend(park(&dir, 10_000, 10_000, Persisted::No));
    let mut child = Command::new(util::cli::BIN)
        .args([
            "dlq",
            "--dir",
            dir.to_str().unwrap(),
            "requeue",
            "--brokers",
        ])
        .arg(broker.bootstrap_servers())
        .args(["--checkpoint-records", "500"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut checkpoints = 0;
    for l in lines {
        if l.unwrap().starts_with("dlq: checkpoint") {
            checkpoints += 1;
            if checkpoints == 3 {
                break;
            }
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed midway, not finished");
    let left = records_in(&dir).len();
    assert!(left < parked.len() && left > 0, "{left} left");

    let out = requeue(&dir, &broker, &["--checkpoint-records", "500"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(spool::segments(&dir).is_empty(), "{err}");
    assert_exactly_once(&broker, &parked);
}

#[test]
fn a_second_requeue_refuses_while_one_holds_the_lock() {
    let tmp = TempDir::new("dlq-two-requeues");
    let dir = tmp.path().to_path_buf();
    let broker = util::stack::start_broker(TOPIC, PARTITIONS);
    park(&dir, 0, 10, Persisted::No);
    let held = spool::lock_requeue(&dir).unwrap();
    let out = requeue(&dir, &broker, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("another requeue is running on {}", dir.display()))
            && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert_eq!(records_in(&dir).len(), 10, "nothing touched");
    drop(held);
    let out = requeue(&dir, &broker, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_record_the_broker_refuses_is_kept_and_the_others_delivered() {
    let tmp = TempDir::new("dlq-refused");
    let dir = tmp.path().to_path_buf();
    let broker = util::stack::start_broker(TOPIC, PARTITIONS);
    let mut good = park(&dir, 0, 50, Persisted::No);
    let s = Spool::new(spool_cfg(&dir), 0, Arc::default());
    let big = vec![b'x'; 2 << 20]; // past the producer's message.max.bytes
    assert!(s.park(TOPIC, b"999", &big, "too big", Persisted::No));
    drop(s);
    good.extend(park(&dir, 50, 50, Persisted::No));
    let start = Instant::now();
    let out = requeue(&dir, &broker, &["--timeout-s", "20"]);
    let err = stderr(&out);
    assert!(start.elapsed() < Duration::from_secs(25), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("key 999") && err.contains("refused"), "{err}");
    assert!(
        err.contains("requeued 100 records") && err.contains("1 left"),
        "{err}"
    );
    let left = records_in(&dir);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, b"999");
    assert_exactly_once(&broker, &good);
}

#[test]
fn possibly_delivered_records_are_looked_up_not_sent_twice() {
    let tmp = TempDir::new("dlq-lookup");
    let dir = tmp.path().to_path_buf();
    let broker = util::stack::start_broker(TOPIC, PARTITIONS);
    let on_topic = park(&dir, 0, 30, Persisted::No);
    assert!(requeue(&dir, &broker, &[]).status.success());
    // The same records parked again as possibly persisted (a stalled
    // broker wrote them after all), and some that are not on the topic.
    park(&dir, 0, 30, Persisted::Possibly);
    let fresh = park(&dir, 30, 20, Persisted::Unknown);
    let out = requeue(&dir, &broker, &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("requeued 20 records") && err.contains("found 30"),
        "{err}"
    );
    let mut all = on_topic;
    all.extend(fresh);
    assert_exactly_once(&broker, &all);
}

#[test]
fn purge_refuses_a_huge_age_and_recovers_a_dead_writers_segment() {
    let tmp = TempDir::new("dlq-purge");
    let dir = tmp.path().to_path_buf();
    park(&dir, 0, 5, Persisted::No);
    let out = dlq(&dir, &["purge", "--older-than", "99999999999999999d"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("out of range") && err.contains("at most"),
        "{err}"
    );
    assert_eq!(records_in(&dir).len(), 5, "nothing purged");

    // The segment as a killed writer leaves it: open, nobody holding it.
    let seg = spool::segments(&dir).remove(0);
    let open = dir.join("00000000000000000009-p3-pid4194998.dlq.open");
    std::fs::rename(&seg, &open).unwrap();
    let out = dlq(&dir, &["purge", "--older-than", "0s"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("pid 4194998") && err.contains("purged 5"),
        "{err}"
    );
    assert!(spool::segments(&dir).is_empty());
}

#[test]
fn stats_reports_open_segments_and_their_owner() {
    let tmp = TempDir::new("dlq-stats");
    let dir = tmp.path().to_path_buf();
    let s = Spool::new(spool_cfg(&dir), 0, Arc::default());
    assert!(s.park(TOPIC, b"1", &value(0, 1), "e", Persisted::No));
    let out = dlq(&dir, &["stats"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["records"], 1);
    assert_eq!(st["open_segments"], 1);
    assert_eq!(st["open"][0]["owner_pid"], std::process::id());
    assert!(!spool::is_closed(&spool::segments(&dir)[0]), "left alone");
}

/// The marker's identity of a record (see `src/cmd/dlq/requeue.rs`).
fn identity(key: &[u8], value: &[u8]) -> u64 {
    let mut h = crc32fast::Hasher::new();
    h.update(TOPIC.as_bytes());
    h.update(&[0]);
    h.update(key);
    h.update(&[0]);
    h.update(value);
    (u64::from(h.finalize()) << 32) | (value.len() as u64 & 0xFFFF_FFFF)
}

#[test]
fn a_requeue_killed_after_delivery_before_its_checkpoint_duplicates_nothing() {
    // The state a kill leaves between "window delivered" and "segment
    // rewritten": the window's records on the topic, still in the spool as
    // never delivered, and the marker naming them.
    let tmp = TempDir::new("dlq-marker");
    let dir = tmp.path().to_path_buf();
    let broker = util::stack::start_broker(TOPIC, PARTITIONS);
    let window = park(&dir, 0, 40, Persisted::No);
    assert!(requeue(&dir, &broker, &[]).status.success());
    let mut all = park(&dir, 0, 40, Persisted::No);
    all.extend(park(&dir, 40, 60, Persisted::No));
    assert_eq!(all[..40], window[..]);
    let seg = spool::segments(&dir).remove(0);
    let mut marker = format!("{}\n", seg.file_name().unwrap().to_str().unwrap());
    for (k, v) in &window {
        marker.push_str(&format!("{:016x}\n", identity(k, v)));
    }
    std::fs::write(dir.join("requeue.inflight"), marker).unwrap();

    let out = requeue(&dir, &broker, &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        err.contains("requeued 60 records") && err.contains("found 40"),
        "{err}"
    );
    assert!(!dir.join("requeue.inflight").exists());
    assert_exactly_once(&broker, &all);
}

#[test]
fn a_produce_error_the_broker_injects_keeps_those_records_and_a_rerun_finishes() {
    let tmp = TempDir::new("dlq-injected");
    let dir = tmp.path().to_path_buf();
    let broker = util::stack::start_broker(TOPIC, PARTITIONS);
    let parked = park(&dir, 0, 20, Persisted::No);
    broker
        .push_produce_errors(vec![
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        ])
        .unwrap();
    let start = Instant::now();
    let out = requeue(&dir, &broker, &["--timeout-s", "20"]);
    let err = stderr(&out);
    assert!(start.elapsed() < Duration::from_secs(25), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not delivered"), "{err}");
    // What the broker took is on the topic, the rest in the spool: no loss,
    // no overlap.
    let mut on_topic = util::kafka::read_to_end(broker.bootstrap_servers(), TOPIC, PARTITIONS);
    let mut left = records_in(&dir);
    assert!(!left.is_empty(), "{err}");
    on_topic.append(&mut left);
    on_topic.sort();
    let mut want = parked.clone();
    want.sort();
    assert_eq!(on_topic, want);
    let out = requeue(&dir, &broker, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_exactly_once(&broker, &parked);
}

#[test]
fn a_lookup_that_cannot_finish_keeps_its_records_unsent() {
    let tmp = TempDir::new("dlq-lookup-fails");
    let dir = tmp.path().to_path_buf();
    let broker = util::stack::start_broker(TOPIC, PARTITIONS);
    let parked = park(&dir, 0, 10, Persisted::Possibly);
    broker.broker_down(1).unwrap();
    let start = Instant::now();
    let out = requeue(&dir, &broker, &["--timeout-s", "3"]);
    let err = stderr(&out);
    assert!(start.elapsed() < Duration::from_secs(10), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("lookup of 10 possibly delivered records failed"),
        "{err}"
    );
    assert_eq!(records_in(&dir).len(), 10, "kept, not sent blind");
    broker.broker_up(1).unwrap();
    let out = requeue(&dir, &broker, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_exactly_once(&broker, &parked);
}
