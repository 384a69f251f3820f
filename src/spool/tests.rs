//! Unit tests of the spool: format, cap and roll edges, accounting against
//! the disk, crash recovery, durability, modes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::format::{HEADER, encode_owned, encode_v1};
use super::*;

const TOPIC: &str = crate::config::defaults::TOPIC;

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "panda-spool-unit-{}-{}",
        std::process::id(),
        crate::clock::now_ns()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cfg(dir: &Path, max: u64, seg: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: max,
        segment_bytes: seg,
        fsync: Fsync::Never,
        ..SpoolConfig::default()
    }
}

/// Bytes of one record parked by [`park`] (fixed-size key and payload).
fn rec_len() -> u64 {
    let mut b = Vec::new();
    format::encode_record(
        &mut b,
        0,
        Persisted::Unknown,
        TOPIC.as_bytes(),
        b"k0",
        b"e",
        &[b'x'; 64],
    );
    b.len() as u64
}

fn park(s: &Spool, i: u32) -> bool {
    s.park(
        TOPIC,
        format!("k{}", i % 10).as_bytes(),
        &[b'x'; 64],
        "e",
        Persisted::Unknown,
    )
}

fn all_records(dir: &Path) -> Vec<Record> {
    segments(dir)
        .iter()
        .flat_map(|s| read_segment(s).unwrap().0)
        .collect()
}

#[test]
fn round_trip_cap_roll_and_corruption() {
    let dir = tmp();
    let cfg = SpoolConfig {
        fsync: Fsync::Always,
        ..cfg(&dir, 2000, 300)
    };
    let spool = Spool::new(cfg, 0, Arc::new(AtomicU64::new(0)));
    let mut parked = 0;
    for i in 0..40u32 {
        if spool.park(
            TOPIC,
            i.to_string().as_bytes(),
            &[b'x'; 64],
            "timed out",
            Persisted::Possibly,
        ) {
            parked += 1;
        }
    }
    spool.close();
    let c = spool.counters();
    assert_eq!(c.parked.load(Ordering::Relaxed), parked);
    assert_eq!(
        c.full.load(Ordering::Relaxed),
        40 - parked,
        "the rest hit the cap"
    );
    assert!(c.syncs.load(Ordering::Relaxed) >= parked, "fsync = always");
    assert!(parked > 5 && parked < 40);
    let segs = segments(&dir);
    assert!(
        segs.len() > 1 && segs.iter().all(|p| is_closed(p)),
        "{segs:?}"
    );
    let recs = all_records(&dir);
    let keys: Vec<String> = recs
        .iter()
        .map(|r| String::from_utf8(r.key.clone()).unwrap())
        .collect();
    let want: Vec<String> = (0..parked).map(|i| i.to_string()).collect();
    assert_eq!(keys, want, "in order");
    assert!(recs.iter().all(|r| r.persisted == Persisted::Possibly));

    // Flip a payload byte of the first record: reported and skipped.
    let mut data = std::fs::read(&segs[0]).unwrap();
    data[HEADER + 41] ^= 0xFF;
    std::fs::write(&segs[0], &data).unwrap();
    let (recs, bad) = read_segment(&segs[0]).unwrap();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].why, "CRC mismatch");
    assert_eq!(recs[0].key, b"1", "resynchronised on the next record");
}

#[test]
fn persistence_status_round_trips_and_the_old_format_still_reads() {
    let dir = tmp();
    let spool = Spool::new(cfg(&dir, 1 << 20, 1 << 20), 0, Arc::default());
    for p in [Persisted::No, Persisted::Possibly, Persisted::Unknown] {
        assert!(spool.park(TOPIC, b"7", b"{\"v\":1}", "x", p));
    }
    drop(spool);
    let got: Vec<Persisted> = all_records(&dir).iter().map(|r| r.persisted).collect();
    assert_eq!(
        got,
        [Persisted::No, Persisted::Possibly, Persisted::Unknown]
    );

    // A segment of today's release (magic "PFDL", no flags byte).
    let old = tmp();
    let r = Record {
        first_failure_ns: 42,
        persisted: Persisted::No,
        topic: TOPIC.into(),
        key: b"256265".to_vec(),
        error: "delivery failed".into(),
        payload: b"{\"seq\":1}".to_vec(),
    };
    let mut bytes = encode_v1(&r);
    bytes.extend(encode_v1(&Record {
        key: b"1".to_vec(),
        ..r.clone()
    }));
    let seg = old.join("00000000000000000001-p0.dlq");
    std::fs::write(&seg, &bytes).unwrap();
    let (recs, bad) = read_segment(&seg).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(recs.len(), 2);
    assert_eq!(
        recs[0],
        Record {
            persisted: Persisted::Unknown,
            ..r
        },
        "old records read as unknown (looked up before republishing)"
    );
    // A rewrite turns it into today's format, status kept.
    rewrite_segment(&seg, &recs).unwrap();
    assert_eq!(read_segment(&seg).unwrap().0, recs);
    let mut b = Vec::new();
    encode_owned(&mut b, &recs[0]);
    assert_eq!(&b[..4], b"PFD2");
}

#[test]
fn a_record_that_brings_the_total_exactly_to_the_cap_is_accepted() {
    let l = rec_len();
    let dir = tmp();
    let s = Spool::new(cfg(&dir, 3 * l, 1 << 20), 0, Arc::default());
    assert!(
        park(&s, 0) && park(&s, 1) && park(&s, 2),
        "exactly at the cap"
    );
    assert!(!park(&s, 3), "one record more");
    assert_eq!(s.counters().full.load(Ordering::Relaxed), 1);
    let dir = tmp();
    let s = Spool::new(cfg(&dir, 3 * l - 1, 1 << 20), 0, Arc::default());
    assert!(park(&s, 0) && park(&s, 1));
    assert!(!park(&s, 2), "one byte over the cap");
}

#[test]
fn a_segment_rolls_only_past_its_size() {
    let l = rec_len();
    let dir = tmp();
    let s = Spool::new(cfg(&dir, 1 << 20, 2 * l), 0, Arc::default());
    assert!(park(&s, 0) && park(&s, 1));
    assert_eq!(segments(&dir).len(), 1, "exactly at the segment size");
    assert!(park(&s, 2));
    assert_eq!(segments(&dir).len(), 2, "past it: a new segment");
    let dir = tmp();
    let s = Spool::new(cfg(&dir, 1 << 20, 2 * l - 1), 0, Arc::default());
    assert!(park(&s, 0) && park(&s, 1));
    assert_eq!(segments(&dir).len(), 2, "one byte short: rolled");
}

#[test]
fn a_restart_starts_from_the_bytes_on_disk() {
    let l = rec_len();
    let dir = tmp();
    let s = Spool::new(cfg(&dir, 4 * l, 1 << 20), 0, Arc::default());
    assert!(park(&s, 0) && park(&s, 1) && park(&s, 2));
    drop(s);
    assert_eq!(dir_bytes(&dir), 3 * l);
    let total = Arc::new(AtomicU64::new(0));
    let s = Spool::new(cfg(&dir, 4 * l, 1 << 20), 1, Arc::clone(&total));
    assert_eq!(total.load(Ordering::Relaxed), 3 * l, "counted at start-up");
    assert!(park(&s, 3), "room for one more");
    assert!(!park(&s, 4), "then full: the total started from the disk");
    assert_eq!(total.load(Ordering::Relaxed), 4 * l);
}

#[test]
fn a_segment_is_closed_when_its_spool_is_dropped() {
    let dir = tmp();
    let s = Spool::new(cfg(&dir, 1 << 20, 1 << 20), 0, Arc::default());
    assert!(park(&s, 0));
    assert!(!is_closed(&segments(&dir)[0]), "open while written");
    drop(s);
    let segs = segments(&dir);
    assert_eq!(segs.len(), 1);
    assert!(is_closed(&segs[0]), "{segs:?}");
    assert_eq!(owner_pid(&segs[0]), Some(std::process::id()));
}

#[test]
fn the_cap_frees_when_segments_leave_the_disk() {
    let l = rec_len();
    let dir = tmp();
    let total = Arc::new(AtomicU64::new(0));
    let a = Spool::new(cfg(&dir, 3 * l, 1 << 20), 0, Arc::clone(&total));
    let b = Spool::new(cfg(&dir, 3 * l, 1 << 20), 1, Arc::clone(&total));
    assert!(park(&a, 0) && park(&a, 1) && park(&b, 2));
    assert!(!park(&b, 3), "full");
    a.close();
    // `dlq purge`/`requeue` (another process) empties the closed segments.
    for s in segments(&dir).iter().filter(|s| is_closed(s)) {
        std::fs::remove_file(s).unwrap();
    }
    assert!(
        park(&b, 4) && park(&a, 5),
        "recounted from the disk at the cap"
    );
    assert!(!park(&b, 6));
    assert_eq!(recount(&dir, &total), 3 * l);
    assert_eq!(total.load(Ordering::Relaxed), 3 * l);
    drop((a, b));
    for s in segments(&dir) {
        std::fs::remove_file(s).unwrap();
    }
    assert_eq!(recount(&dir, &total), 0, "the gauge follows the disk");
}

#[test]
fn an_open_segment_of_a_dead_writer_is_recovered_and_its_torn_tail_cut() {
    let l = rec_len();
    let dir = tmp();
    let s = Spool::new(cfg(&dir, 1 << 20, 1 << 20), 0, Arc::default());
    for i in 0..3 {
        assert!(park(&s, i));
    }
    drop(s);
    // Make it look like the segment of a writer killed mid-record.
    let closed = segments(&dir).remove(0);
    let open = dir.join("00000000000000000005-p0-pid4194999.dlq.open");
    std::fs::rename(&closed, &open).unwrap();
    let mut data = std::fs::read(&open).unwrap();
    let whole = data.len();
    data.extend_from_within(..l as usize - 7);
    std::fs::write(&open, &data).unwrap();
    assert_eq!(
        read_segment(&open).unwrap().0.len(),
        3,
        "torn tail not a record"
    );

    let (done, alive) = recover_stranded(&dir).unwrap();
    assert!(alive.is_empty());
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].truncated, l - 7);
    assert_eq!(done[0].owner_pid, Some(4_194_999));
    let segs = segments(&dir);
    assert_eq!(segs.len(), 1);
    assert!(is_closed(&segs[0]));
    assert_eq!(std::fs::metadata(&segs[0]).unwrap().len() as usize, whole);
    let (recs, bad) = read_segment(&segs[0]).unwrap();
    assert!(bad.is_empty() && recs.len() == 3);
    // A writer killed between creating and naming its segment left an
    // empty, unlocked `.dlq.creating`: removed.
    let unborn = dir.join("00000000000000000006-p1-pid4194999.dlq.creating");
    let f = std::fs::File::create(&unborn).unwrap();
    recover_stranded(&dir).unwrap();
    assert!(unborn.exists(), "a fresh one may be a live writer's");
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(120))
        .unwrap();
    drop(f);
    recover_stranded(&dir).unwrap();
    assert!(!unborn.exists());
    // A spool start-up recovers the same way.
    std::fs::rename(&segs[0], &open).unwrap();
    drop(Spool::new(cfg(&dir, 1 << 20, 1 << 20), 0, Arc::default()));
    assert!(segments(&dir).iter().all(|s| is_closed(s)));
}

#[test]
fn an_open_segment_whose_writer_lives_is_left_alone() {
    let dir = tmp();
    let s = Spool::new(cfg(&dir, 1 << 20, 1 << 20), 0, Arc::default());
    assert!(park(&s, 0));
    let (done, alive) = recover_stranded(&dir).unwrap();
    assert!(done.is_empty());
    assert_eq!(alive.len(), 1);
    assert_eq!(alive[0].owner_pid, Some(std::process::id()));
    // Another writer starting over the directory leaves it alone too.
    let t = Spool::new(cfg(&dir, 1 << 20, 1 << 20), 1, Arc::default());
    assert!(park(&s, 1) && park(&t, 2));
    drop((s, t));
    assert_eq!(all_records(&dir).len(), 3);
}

#[test]
fn interval_fsync_syncs_a_burst_followed_by_silence() {
    let dir = tmp();
    let interval = Duration::from_millis(150);
    let s = Spool::new(
        SpoolConfig {
            fsync: Fsync::Interval,
            fsync_interval_ms: 150,
            ..cfg(&dir, 1 << 20, 1 << 20)
        },
        0,
        Arc::default(),
    );
    let start = Instant::now();
    for i in 0..20 {
        assert!(park(&s, i));
    }
    let syncs = || s.counters().syncs.load(Ordering::Relaxed);
    let before = syncs();
    // The publisher's idle turns: a call every 10 ms, nothing parked.
    while syncs() == before && start.elapsed() < Duration::from_secs(5) {
        s.sync_if_due();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(syncs(), before + 1, "synced on the timer");
    assert!(start.elapsed() < interval + Duration::from_millis(500));
    // Nothing new written: nothing to sync.
    std::thread::sleep(interval);
    s.sync_if_due();
    assert_eq!(syncs(), before + 1);
}

#[test]
fn dir_0700_and_files_0600() {
    let dir = tmp().join("spool");
    let s = Spool::new(cfg(&dir, 1 << 20, 1 << 20), 0, Arc::default());
    assert!(park(&s, 0));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&segments(&dir)[0]), 0o600, "open segment");
    drop(s);
    let seg = segments(&dir).remove(0);
    assert_eq!(mode(&seg), 0o600, "closed segment");
    let (recs, _) = read_segment(&seg).unwrap();
    rewrite_segment(&seg, &recs).unwrap();
    assert_eq!(mode(&seg), 0o600, "rewritten segment");
    let _l = lock_requeue(&dir).unwrap();
    assert_eq!(mode(&dir.join(REQUEUE_LOCK)), 0o600);
}

#[test]
fn the_requeue_lock_is_exclusive_and_names_its_holder() {
    let dir = tmp();
    let held = lock_requeue(&dir).unwrap();
    let e = lock_requeue(&dir).unwrap_err();
    assert!(
        matches!(e, LockError::Held { pid: Some(p), .. } if p == std::process::id()),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&dir.display().to_string()) && msg.contains("another requeue"));
    drop(held);
    assert!(lock_requeue(&dir).is_ok(), "released with its holder");
}
