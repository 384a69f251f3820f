//! `panda-feed decode`: binary Kite messages → JSON lines (the README, "Commands").
//!
//! Runs on the main thread. Streams its inputs: memory is bounded by the
//! largest single message (capped by `--max-message-bytes`), not by file size.
//! Always writes the full contract: `[fields]` (field selection) applies to
//! the published envelope only (`docs/ARCHITECTURE.md`, "Field selection").

use std::fs::File;
use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::Path;

use crate::cli::DecodeArgs;
use crate::json::{JsonBuf, MAX_TICK_JSON_LEN, write_tick};
use crate::tick::Tick;
use crate::wire::{self, DecodeError, Message, Packet};

/// Exit status: every message parsed.
pub const EXIT_OK: u8 = 0;
/// Exit status: an input could not be read (or is not a valid framed stream).
pub const EXIT_IO: u8 = 1;
/// Exit status: at least one message was malformed.
pub const EXIT_MALFORMED: u8 = 2;

#[derive(Debug, Default)]
struct Totals {
    messages: u64,
    heartbeats: u64,
    ticks: u64,
    unknown_packets: u64,
    malformed: [u64; DecodeError::REASONS],
    io_errors: u64,
}

impl Totals {
    fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}

struct Decoder<'w, W: Write> {
    out: BufWriter<&'w mut W>,
    line: Vec<u8>,
    json: JsonBuf,
    tick: Tick,
    framed: bool,
    frame: u64,
    totals: Totals,
}

impl<W: Write> Decoder<'_, W> {
    /// Decodes one message and writes its output line(s).
    fn message(&mut self, msg: &[u8], err: &mut impl Write, name: &str) -> io::Result<()> {
        self.totals.messages += 1;
        let frame = self.frame;
        self.frame += 1;
        self.line.clear();
        match wire::decode(msg) {
            Err(e) => {
                self.totals.malformed[e.reason_index()] += 1;
                if self.framed {
                    self.line.extend_from_slice(b"{\"frame\":");
                    self.line
                        .extend_from_slice(itoa::Buffer::new().format(frame).as_bytes());
                    self.line.extend_from_slice(b",\"error\":");
                    serde_json::to_writer(&mut self.line, &e.to_string())?;
                    self.line.extend_from_slice(b"}\n");
                } else {
                    writeln!(err, "panda-feed decode: {name}: malformed message: {e}")?;
                }
            }
            Ok(m) => {
                if self.framed {
                    self.line.extend_from_slice(b"{\"frame\":");
                    self.line
                        .extend_from_slice(itoa::Buffer::new().format(frame).as_bytes());
                    self.line.extend_from_slice(b",\"ticks\":[");
                }
                let mut first = true;
                if let Message::Packets(packets) = m {
                    for p in packets {
                        if !self.tick.decode_from(&p) {
                            debug_assert!(matches!(p, Packet::Unknown { .. }));
                            self.totals.unknown_packets += 1;
                            continue;
                        }
                        self.totals.ticks += 1;
                        if self.framed && !first {
                            self.line.push(b',');
                        }
                        first = false;
                        self.json.clear();
                        // A cleared JsonBuf always has room for one tick.
                        write_tick(&self.tick, &mut self.json).map_err(io::Error::other)?;
                        self.line.extend_from_slice(self.json.as_bytes());
                        if !self.framed {
                            self.line.push(b'\n');
                        }
                    }
                } else {
                    self.totals.heartbeats += 1;
                }
                if self.framed {
                    self.line.extend_from_slice(b"]}\n");
                }
            }
        }
        self.out.write_all(&self.line)
    }
}

enum InputError {
    /// Reading failed; the message names the file.
    Read(String),
    /// Writing stdout failed (e.g. a closed pipe).
    Write(io::Error),
}

fn open(path: &Path) -> io::Result<Box<dyn Read>> {
    if path.as_os_str() == "-" {
        Ok(Box::new(io::stdin().lock()))
    } else {
        Ok(Box::new(File::open(path)?))
    }
}

/// Reads up to `max + 1` bytes, so an oversized input is detected without
/// reading all of it.
fn read_bounded(r: &mut impl Read, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    buf.clear();
    r.take(max as u64 + 1).read_to_end(buf)?;
    Ok(buf.len() <= max)
}

/// Fills `buf` completely; `Ok(false)` on a clean EOF before the first byte.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn decode_input<W: Write>(
    d: &mut Decoder<'_, W>,
    path: &Path,
    max: usize,
    buf: &mut Vec<u8>,
    err: &mut impl Write,
) -> Result<(), InputError> {
    let name = path.display().to_string();
    let rd = |e: io::Error| InputError::Read(format!("cannot read {name}: {e}"));
    let mut input = BufReader::with_capacity(256 * 1024, open(path).map_err(rd)?);
    if !d.framed {
        if !read_bounded(&mut input, buf, max).map_err(rd)? {
            return Err(InputError::Read(format!(
                "{name}: message is larger than --max-message-bytes {max}; \
                 is it a framed stream (use --framed) or raise the limit"
            )));
        }
        return d.message(buf, err, &name).map_err(InputError::Write);
    }
    let mut offset = 0u64;
    loop {
        let mut len = [0u8; 4];
        match read_exact_or_eof(&mut input, &mut len).map_err(rd)? {
            0 => return Ok(()),
            4 => {}
            n => {
                return Err(InputError::Read(format!(
                    "{name}: truncated record length at byte {offset} ({n} of 4 bytes); \
                     the file is cut short or is not a framed stream"
                )));
            }
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > max {
            return Err(InputError::Read(format!(
                "{name}: record at byte {offset} declares {n} bytes, more than \
                 --max-message-bytes {max}; the file is not a framed stream or the limit is too low"
            )));
        }
        buf.resize(n, 0);
        let got = read_exact_or_eof(&mut input, buf).map_err(rd)?;
        if got < n {
            return Err(InputError::Read(format!(
                "{name}: record at byte {offset} declares {n} bytes but the file ends after {got}"
            )));
        }
        d.message(buf, err, &name).map_err(InputError::Write)?;
        offset += 4 + n as u64;
    }
}

/// Runs `decode` over `args.files`, writing JSON lines to `out` and
/// diagnostics plus a one-line summary to `err`. Returns the exit status.
pub fn run(args: &DecodeArgs, out: &mut impl Write, err: &mut impl Write) -> u8 {
    let mut d = Decoder {
        out: BufWriter::with_capacity(256 * 1024, out),
        line: Vec::with_capacity(64 * 1024),
        json: JsonBuf::with_capacity(MAX_TICK_JSON_LEN),
        tick: Tick::default(),
        framed: args.framed,
        frame: 0,
        totals: Totals::default(),
    };
    let mut buf = Vec::new();
    for path in &args.files {
        match decode_input(&mut d, path, args.max_message_bytes, &mut buf, err) {
            Ok(()) => {}
            Err(InputError::Read(msg)) => {
                d.totals.io_errors += 1;
                let _ = writeln!(err, "panda-feed decode: {msg}");
            }
            // A closed stdout (e.g. `| head`) ends the run quietly.
            Err(InputError::Write(e)) if e.kind() == ErrorKind::BrokenPipe => return EXIT_OK,
            Err(InputError::Write(e)) => {
                let _ = writeln!(err, "panda-feed decode: cannot write output: {e}");
                return EXIT_IO;
            }
        }
    }
    match d.out.flush() {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => return EXIT_OK,
        Err(e) => {
            let _ = writeln!(err, "panda-feed decode: cannot write output: {e}");
            return EXIT_IO;
        }
        Ok(()) => {}
    }
    let t = &d.totals;
    let mut malformed = String::new();
    for (label, n) in DecodeError::REASON_LABELS.iter().zip(t.malformed) {
        if n > 0 {
            malformed.push_str(&format!(" {label}={n}"));
        }
    }
    let _ = writeln!(
        err,
        "panda-feed decode: {} message(s), {} tick(s), {} heartbeat(s), {} unknown-length packet(s) skipped, {} malformed{}{}",
        t.messages,
        t.ticks,
        t.heartbeats,
        t.unknown_packets,
        t.malformed_total(),
        if malformed.is_empty() { "" } else { ":" },
        malformed,
    );
    if t.io_errors > 0 {
        EXIT_IO
    } else if t.malformed_total() > 0 {
        EXIT_MALFORMED
    } else {
        EXIT_OK
    }
}
