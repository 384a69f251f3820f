//! The on-disk record format of the dead-letter spool: encoding (publisher
//! threads, through [`super::Spool::park`]; `dlq` when it rewrites a
//! segment), decoding and atomic rewrite (`dlq` and start-up recovery).
//! Owns no state.
//!
//! Record layout (all integers big-endian):
//!
//! ```text
//! magic | body_len u32 | crc32(body) u32 | body
//! magic "PFD2": body = flags u8 | v1 body       (written today)
//! magic "PFDL": body = v1 body                  (read only; flags = unknown)
//! v1 body = first_failure_ns u64 | topic_len u16 | topic | key_len u16 | key
//!         | error_len u16 | error | payload_len u32 | payload
//! flags bits 0-1: persistence status, 0 = no, 1 = possibly, 2 = unknown
//! ```
//!
//! A record whose CRC does not match, or whose framing is broken, is
//! reported and skipped by readers, which resynchronise on the next magic.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

use super::{Persisted, Record};

/// Magic of a record written before the flags byte existed.
const MAGIC_V1: &[u8; 4] = b"PFDL";
/// Magic of a record with a flags byte (written today).
const MAGIC_V2: &[u8; 4] = b"PFD2";
/// Magic, body length, CRC.
pub(super) const HEADER: usize = 12;

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Corrupt {
    /// Segment file.
    pub segment: String,
    /// Byte offset of the bad record.
    pub offset: usize,
    /// What was wrong.
    pub why: String,
}

impl Persisted {
    fn flag(self) -> u8 {
        match self {
            Self::No => 0,
            Self::Possibly => 1,
            Self::Unknown => 2,
        }
    }

    fn from_flag(f: u8) -> Self {
        match f & 0b11 {
            0 => Self::No,
            1 => Self::Possibly,
            // Unknown, and any value this version does not know: the
            // conservative reading (requeue looks it up first).
            _ => Self::Unknown,
        }
    }
}

/// Encodes one whole record (header and body) into `out`, replacing its
/// contents. Topic and key are cut at 65,535 bytes, the error at 1,024.
pub(super) fn encode_record(
    out: &mut Vec<u8>,
    ts: u64,
    persisted: Persisted,
    topic: &[u8],
    key: &[u8],
    error: &[u8],
    payload: &[u8],
) {
    let topic = &topic[..topic.len().min(u16::MAX as usize)];
    let key = &key[..key.len().min(u16::MAX as usize)];
    let error = &error[..error.len().min(1024)];
    let payload = &payload[..payload.len().min(u32::MAX as usize)];
    out.clear();
    out.extend_from_slice(MAGIC_V2);
    out.extend_from_slice(&[0; 8]); // body length and CRC, filled below
    out.push(persisted.flag());
    out.extend_from_slice(&ts.to_be_bytes());
    for part in [topic, key, error] {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let body_len = (out.len() - HEADER) as u32;
    let crc = crc32fast::hash(&out[HEADER..]);
    out[4..8].copy_from_slice(&body_len.to_be_bytes());
    out[8..12].copy_from_slice(&crc.to_be_bytes());
}

/// Encodes a record read back (for rewrites).
pub(super) fn encode_owned(out: &mut Vec<u8>, r: &Record) {
    encode_record(
        out,
        r.first_failure_ns,
        r.persisted,
        r.topic.as_bytes(),
        &r.key,
        r.error.as_bytes(),
        &r.payload,
    );
}

/// What a scan of a segment's bytes found.
pub(super) struct Scan {
    pub(super) records: Vec<Record>,
    pub(super) bad: Vec<Corrupt>,
    /// Offset of an incomplete last record (torn write), when `open`.
    pub(super) torn_at: Option<usize>,
}

/// Parses a segment's bytes. With `open`, an incomplete last record is a
/// torn tail (`torn_at`), not a corrupt record.
pub(super) fn scan(data: &[u8], seg: &str, open: bool) -> Scan {
    let mut s = Scan {
        records: Vec::new(),
        bad: Vec::new(),
        torn_at: None,
    };
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        let magic = rest.get(..4);
        let v2 = magic == Some(MAGIC_V2);
        if rest.len() < HEADER || !(v2 || magic == Some(MAGIC_V1)) {
            if rest.len() < HEADER && open {
                s.torn_at = Some(at);
                break;
            }
            s.bad.push(corrupt(seg, at, "bad record header".into()));
            at += resync(&rest[1..]).map_or(rest.len(), |i| i + 1);
            continue;
        }
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let crc = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let Some(body) = rest.get(HEADER..HEADER + len) else {
            if open {
                s.torn_at = Some(at);
                break;
            }
            let why = format!("record of {len} bytes runs past the end of the file");
            s.bad.push(corrupt(seg, at, why));
            at += resync(&rest[1..]).map_or(rest.len(), |i| i + 1);
            continue;
        };
        if crc32fast::hash(body) != crc {
            s.bad.push(corrupt(seg, at, "CRC mismatch".into()));
            at += resync(&rest[1..]).map_or(rest.len(), |i| i + 1);
            continue;
        }
        let parsed = if v2 {
            body.split_first()
                .and_then(|(f, b)| parse_body(b, Persisted::from_flag(*f)))
        } else {
            parse_body(body, Persisted::Unknown)
        };
        match parsed {
            Some(r) => s.records.push(r),
            None => s.bad.push(corrupt(seg, at, "malformed record body".into())),
        }
        at += HEADER + len;
    }
    s
}

fn corrupt(seg: &str, offset: usize, why: String) -> Corrupt {
    Corrupt {
        segment: seg.to_owned(),
        offset,
        why,
    }
}

/// Every record of a segment, in order, and every corrupt one (skipped). A
/// torn last record of an open segment is not reported as corrupt.
///
/// # Errors
/// The file cannot be read.
pub fn read_segment(path: &Path) -> std::io::Result<(Vec<Record>, Vec<Corrupt>)> {
    let data = std::fs::read(path)?;
    let s = scan(
        &data,
        &path.display().to_string(),
        !super::files::is_closed(path),
    );
    Ok((s.records, s.bad))
}

fn resync(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == MAGIC_V1 || w == MAGIC_V2)
}

fn parse_body(b: &[u8], persisted: Persisted) -> Option<Record> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = b.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let ts = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let mut parts = Vec::with_capacity(3);
    for _ in 0..3 {
        let n = u16::from_be_bytes(take(2)?.try_into().ok()?) as usize;
        parts.push(take(n)?.to_vec());
    }
    let n = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
    let payload = take(n)?.to_vec();
    let mut parts = parts.into_iter();
    Some(Record {
        first_failure_ns: ts,
        persisted,
        topic: String::from_utf8(parts.next()?).ok()?,
        key: parts.next()?,
        error: String::from_utf8_lossy(&parts.next()?).into_owned(),
        payload,
    })
}

/// Rewrites a closed segment with only `keep`, atomically (temp file
/// fsynced, renamed over the segment, directory fsynced); removes it when
/// `keep` is empty. Records are written in today's format.
///
/// # Errors
/// Disk errors.
pub fn rewrite_segment(path: &Path, keep: &[Record]) -> std::io::Result<()> {
    if keep.is_empty() {
        std::fs::remove_file(path)?;
    } else {
        let tmp = path.with_extension("dlq.tmp");
        let mut b = Vec::new();
        let mut all = Vec::new();
        for r in keep {
            encode_owned(&mut b, r);
            all.extend_from_slice(&b);
        }
        let mut f: File = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&all)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
    }
    match path.parent() {
        Some(dir) => super::files::sync_dir(dir),
        None => Ok(()),
    }
}

/// Encodes a record in the old format (magic "PFDL", no flags byte), for
/// the tests that pin backward compatibility.
#[cfg(test)]
pub(super) fn encode_v1(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    encode_owned(&mut out, r);
    // Drop the flags byte and re-frame under the old magic.
    let mut v1 = Vec::with_capacity(out.len() - 1);
    v1.extend_from_slice(MAGIC_V1);
    v1.extend_from_slice(&[0; 8]);
    v1.extend_from_slice(&out[HEADER + 1..]);
    let body_len = (v1.len() - HEADER) as u32;
    let crc = crc32fast::hash(&v1[HEADER..]);
    v1[4..8].copy_from_slice(&body_len.to_be_bytes());
    v1[8..12].copy_from_slice(&crc.to_be_bytes());
    v1
}
