//! `panda-feed stream-tail`: a client of the downstream bar stream (README,
//! "Downstream stream"): subscribes, prints every frame as a JSON line, and
//! tells on stderr how many bars were replayed and how many came live.
//! Main thread; blocking tungstenite over a `TcpStream` with a read
//! timeout, so a silent feed cannot hang it past `--timeout-s`.

use std::io::Write as _;
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::cli::StreamTailArgs;

/// Runs the command.
#[must_use]
pub fn run(args: &StreamTailArgs) -> ExitCode {
    match tail(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("panda-feed stream-tail: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(true)` when the bars asked for came (or the stream closed after
/// some), `Ok(false)` on a timeout.
fn tail(args: &StreamTailArgs) -> Result<bool, String> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout_s);
    // A feed that is starting binds its stream in a moment: connection
    // refused is retried until the deadline.
    let tcp = loop {
        match TcpStream::connect(&args.connect) {
            Ok(t) => break t,
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(format!(
                    "cannot connect to {}: {e} (is `panda-feed run` running with \
                     ops.stream_listen = {:?}?)",
                    args.connect, args.connect
                ));
            }
        }
    };
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let url = format!("ws://{}/", args.connect);
    let (mut ws, _) = tungstenite::client(url.as_str(), tcp)
        .map_err(|e| format!("the stream at {} refused the WebSocket: {e}", args.connect))?;
    let sub = serde_json::json!({"a": "subscribe", "v": args.tokens}).to_string();
    ws.send(Message::text(sub)).map_err(|e| e.to_string())?;
    let (mut replayed, mut live, mut subscribed) = (0u64, 0u64, false);
    let out = std::io::stdout();
    let mut out = out.lock();
    let done = |n: u64| args.bars > 0 && n >= args.bars;
    loop {
        if Instant::now() >= deadline {
            eprintln!(
                "stream-tail: timed out after {} s: {replayed} replayed, {live} live bars",
                args.timeout_s
            );
            return Ok(false);
        }
        let text = match ws.read() {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {
                eprintln!("stream-tail: the stream closed: {replayed} replayed, {live} live bars");
                return Ok(replayed + live > 0);
            }
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(format!("reading the stream: {e}")),
        };
        let _ = writeln!(out, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        match v["type"].as_str() {
            Some("bar_1m") if subscribed => live += 1,
            Some("bar_1m") => replayed += 1,
            Some("subscribed") => {
                subscribed = true;
                eprintln!("stream-tail: subscribed; {replayed} bars replayed at once");
            }
            Some("error") => return Err(format!("the stream answered: {}", v["data"])),
            _ => {}
        }
        if done(replayed + live) {
            let _ = out.flush();
            eprintln!("stream-tail: {replayed} replayed, {live} live bars");
            let _ = ws.close(None);
            return Ok(true);
        }
    }
}
