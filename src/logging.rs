//! Logging: `tracing` events on stderr, text or JSON lines, leveled
//! (`--log-level`, or `RUST_LOG` for per-module filters). Nothing is logged
//! per tick; repeated errors go through a [`RateLimiter`]; foreign text
//! (server frames, broker errors) is cut and escaped with [`truncate`]
//! (control characters, newlines included, cannot forge a log line or move
//! the cursor of the terminal reading it). Credentials never
//! reach a log line: their types print `***` (see
//! [`Secret`](crate::secret::Secret)).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Changes the log filter of a running process (`run.log_level` on a
/// reload). Absent when `RUST_LOG` is set: that filter stays.
#[derive(Debug, Clone)]
pub struct LogHandle(
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
);

impl LogHandle {
    /// Replaces the filter.
    ///
    /// # Errors
    /// An invalid filter, with the value; the old one stays.
    pub fn set(&self, level: &str) -> anyhow::Result<()> {
        let f = tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| anyhow::anyhow!("{level:?} is not a valid log filter: {e}"))?;
        self.0
            .reload(f)
            .map_err(|e| anyhow::anyhow!("cannot change the log filter: {e}"))
    }
}

/// Installs the global subscriber (once; later calls are no-ops and return
/// `None`). `level` is a `tracing` filter (`info`, `debug`,
/// `panda_feed=debug,warn`); `RUST_LOG` wins when set. Returns the handle
/// that changes the filter later, unless `RUST_LOG` decides it.
///
/// # Errors
/// An invalid filter, with the value.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<Option<LogHandle>> {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => (
            EnvFilter::try_new(&v)
                .map_err(|e| anyhow::anyhow!("RUST_LOG={v:?} is not a valid log filter: {e}"))?,
            true,
        ),
        _ => (
            EnvFilter::try_new(level).map_err(|e| {
                anyhow::anyhow!(
                    "--log-level {level:?} is not a valid log filter (e.g. info, debug, \
                     panda_feed=debug): {e}"
                )
            })?,
            false,
        ),
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => registry.with(layer.with_ansi(false)).try_init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).try_init(),
    };
    Ok((installed.is_ok() && !from_env).then_some(LogHandle(handle)))
}

/// Longest foreign text put in a log line, bytes.
pub const MAX_LOGGED_TEXT: usize = 256;

/// Longest foreign text stored for the summary, the HTTP output and the
/// status (a server's `error` frame, a close reason, a Kafka error), bytes.
pub const MAX_STORED_TEXT: usize = 512;

/// `s` cut to at most `max` bytes (on a character boundary), with a note of
/// how much was cut, and with its control characters escaped (`\n`, `\r`,
/// `\t`, else `\u{1b}`), as well as the Unicode bidirectional overrides
/// that reorder what a terminal shows: foreign text put in a log line, the
/// summary or the HTTP output can neither forge a line nor hide one.
/// Borrowed when nothing needs changing.
#[must_use]
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max && !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 32);
    for c in s[..end].chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    if end < s.len() {
        use std::fmt::Write as _;
        let _ = write!(out, "… ({} more bytes)", s.len() - end);
    }
    Cow::Owned(out)
}

/// Control characters, and the bidirectional embeddings, overrides and
/// isolates (U+202A–U+202E, U+2066–U+2069).
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Lets the first event of a site through, then at most one per `period`,
/// reporting how many were suppressed in between. Bounded: at most
/// `MAX_SITES` sites are remembered (the stalest is forgotten).
#[derive(Debug)]
pub struct RateLimiter {
    period: Duration,
    sites: HashMap<String, (Instant, u64)>,
}

const MAX_SITES: usize = 256;

impl RateLimiter {
    /// A limiter allowing one event per site per `period`.
    #[must_use]
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            sites: HashMap::new(),
        }
    }

    /// `Some(suppressed)` when an event of `site` may be logged now, with
    /// how many were suppressed since the previous one; `None` to suppress.
    pub fn allow(&mut self, site: &str, now: Instant) -> Option<u64> {
        if let Some((last, suppressed)) = self.sites.get_mut(site) {
            if now.duration_since(*last) < self.period {
                *suppressed += 1;
                return None;
            }
            let n = *suppressed;
            *last = now;
            *suppressed = 0;
            return Some(n);
        }
        if self.sites.len() >= MAX_SITES
            && let Some(oldest) = self
                .sites
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
        {
            self.sites.remove(&oldest);
        }
        self.sites.insert(site.to_owned(), (now, 0));
        Some(0)
    }
}

/// ` (N similar suppressed)` or nothing.
#[must_use]
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar suppressed in the last period)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_events_are_limited_and_counted() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(Duration::from_secs(10));
        assert_eq!(r.allow("kafka", t0), Some(0));
        for i in 1..=5 {
            assert_eq!(r.allow("kafka", t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(r.allow("other", t0), Some(0));
        assert_eq!(r.allow("kafka", t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(suppressed_note(0), "");
        assert!(suppressed_note(5).contains("5 similar"));
    }

    #[test]
    fn sites_are_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(Duration::from_secs(10));
        for i in 0..1000 {
            r.allow(&format!("site{i}"), t0 + Duration::from_millis(i));
        }
        assert!(r.sites.len() <= MAX_SITES);
    }

    #[test]
    fn control_characters_are_escaped_so_no_line_is_forged() {
        let evil = "bad\n2026-01-01T00:00:00Z  INFO forged\r\x1b[31mred\u{202e}txt\tx";
        let t = truncate(evil, 1000);
        assert!(!t.chars().any(char::is_control), "{t:?}");
        assert_eq!(
            t,
            "bad\\n2026-01-01T00:00:00Z  INFO forged\\r\\u{1b}[31mred\\u{202e}txt\\tx"
        );
        assert!(matches!(truncate("plain", 10), Cow::Borrowed(_)));
        let cut = truncate("\n\n\n\n", 2);
        assert_eq!(cut, "\\n\\n… (2 more bytes)");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let s = "é".repeat(200);
        let t = truncate(&s, 11);
        assert!(t.starts_with("ééééé…"), "{t}");
        assert!(t.ends_with("(390 more bytes)"), "{t}");
    }
}
