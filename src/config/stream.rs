//! `ops.stream_*`: the downstream bar stream's settings (README, "Downstream
//! stream"), their defaults (written once, here) and their validation. Read
//! on the main thread; the stream server (`crate::stream`) consumes the
//! resolved [`StreamConfig`].

use std::net::SocketAddr;

use super::OpsConfig;

/// `ops.stream_listen`: loopback only (the stream has no authentication).
pub const STREAM_LISTEN: &str = "127.0.0.1:9101";
/// `ops.stream_replay_bars`: bars replayed per instrument on subscribe.
pub const STREAM_REPLAY_BARS: usize = 120;
/// `ops.stream_max_clients`: clients held at once; more are refused.
pub const STREAM_MAX_CLIENTS: usize = 64;
/// `ops.stream_client_buffer_bytes`: a client's outgoing buffer bound.
pub const STREAM_CLIENT_BUFFER_BYTES: usize = 4 << 20;
/// `ops.stream_max_instruments`: instruments with a replay window
/// (Kite's 3 sockets × 3000).
pub const STREAM_MAX_INSTRUMENTS: usize = 9000;
/// `ops.stream_redis_ttl_s`: time to live of a Redis replay list (4 h).
pub const STREAM_REDIS_TTL_S: u64 = 14_400;

/// Bytes of one entry of a replay window: a [`Bar`](crate::bars::Bar) and,
/// for one read back from Redis, the run that published it.
const BAR_BYTES: u128 = std::mem::size_of::<(crate::bars::Bar, crate::run_id::RunId)>() as u128;
/// Most memory all replay windows together may take (`replay_bars` ×
/// `max_instruments` × the bar size).
pub const MAX_WINDOW_BYTES: u128 = 1 << 30;

/// The resolved settings of the stream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Bars kept and replayed per instrument (N).
    pub replay_bars: usize,
    /// Clients held at once.
    pub max_clients: usize,
    /// Bytes a client may have queued before it is disconnected as slow.
    pub client_buffer_bytes: usize,
    /// Instruments with a replay window; bars of more are counted, not kept.
    pub max_instruments: usize,
    /// Time to live of each Redis replay list, s.
    pub redis_ttl_s: u64,
}

impl StreamConfig {
    /// The stream settings of `ops`, or `None` when `ops.stream_listen` is
    /// empty or `off` (or not a valid loopback address: `problems` names it).
    #[must_use]
    pub fn from_ops(ops: &OpsConfig) -> Option<Self> {
        if is_off(&ops.stream_listen) {
            return None;
        }
        Some(Self {
            listen: ops.stream_listen.parse().ok()?,
            replay_bars: ops.stream_replay_bars,
            max_clients: ops.stream_max_clients,
            client_buffer_bytes: ops.stream_client_buffer_bytes,
            max_instruments: ops.stream_max_instruments,
            redis_ttl_s: ops.stream_redis_ttl_s,
        })
    }

    /// Defaults, listening on `listen`.
    #[must_use]
    pub fn with_listen(listen: SocketAddr) -> Self {
        Self {
            listen,
            replay_bars: STREAM_REPLAY_BARS,
            max_clients: STREAM_MAX_CLIENTS,
            client_buffer_bytes: STREAM_CLIENT_BUFFER_BYTES,
            max_instruments: STREAM_MAX_INSTRUMENTS,
            redis_ttl_s: STREAM_REDIS_TTL_S,
        }
    }
}

/// Whether `listen` turns the stream off.
fn is_off(listen: &str) -> bool {
    listen.is_empty() || listen.eq_ignore_ascii_case("off")
}

/// Pushes every problem with the `ops.stream_*` keys.
pub(super) fn problems(ops: &OpsConfig, p: &mut Vec<String>) {
    if !is_off(&ops.stream_listen) {
        match ops.stream_listen.parse::<SocketAddr>() {
            Err(_) => p.push(format!(
                "ops.stream_listen {:?} is not an IP:PORT address (e.g. {STREAM_LISTEN}; empty \
                 or \"off\" turns the downstream stream off)",
                ops.stream_listen
            )),
            Ok(a) if !a.ip().is_loopback() => p.push(format!(
                "ops.stream_listen {:?} is not a loopback address: the downstream stream has \
                 no authentication, so it listens on loopback only (e.g. {STREAM_LISTEN}); \
                 reach it from elsewhere through an authenticating proxy",
                ops.stream_listen
            )),
            Ok(_) => {}
        }
    }
    for (k, v) in [
        ("ops.stream_replay_bars", ops.stream_replay_bars as u64),
        ("ops.stream_max_clients", ops.stream_max_clients as u64),
        (
            "ops.stream_client_buffer_bytes",
            ops.stream_client_buffer_bytes as u64,
        ),
        (
            "ops.stream_max_instruments",
            ops.stream_max_instruments as u64,
        ),
        ("ops.stream_redis_ttl_s", ops.stream_redis_ttl_s),
    ] {
        super::ranges::check(p, k, v);
    }
    // A client's bound holds at least one window: a replay is sent a window
    // at a time (README, "Downstream stream").
    let window = ops.stream_replay_bars as u128 * crate::bars::MAX_BAR_JSON_LEN as u128;
    if (ops.stream_client_buffer_bytes as u128) < window {
        p.push(format!(
            "ops.stream_client_buffer_bytes = {} is below one replay window \
             (ops.stream_replay_bars = {} × {} bytes = {window}): raise \
             ops.stream_client_buffer_bytes or lower ops.stream_replay_bars",
            ops.stream_client_buffer_bytes,
            ops.stream_replay_bars,
            crate::bars::MAX_BAR_JSON_LEN
        ));
    }
    let bytes = ops.stream_replay_bars as u128 * ops.stream_max_instruments as u128 * BAR_BYTES;
    if bytes > MAX_WINDOW_BYTES {
        p.push(format!(
            "ops.stream_replay_bars = {} × ops.stream_max_instruments = {} × {BAR_BYTES}-byte \
             bars = {bytes} bytes of replay windows: at most {MAX_WINDOW_BYTES} (1 GiB); lower \
             one of them",
            ops.stream_replay_bars, ops.stream_max_instruments
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_spellings_and_bad_addresses() {
        for off in ["", "off", "OFF"] {
            let o = OpsConfig {
                stream_listen: off.into(),
                ..OpsConfig::default()
            };
            assert!(o.problems().is_empty(), "{off:?}");
            assert_eq!(StreamConfig::from_ops(&o), None);
        }
        let d = StreamConfig::from_ops(&OpsConfig::default()).unwrap();
        assert_eq!(d, StreamConfig::with_listen(STREAM_LISTEN.parse().unwrap()));
        for (bad, says) in [
            ("9101", "not an IP:PORT"),
            ("0.0.0.0:9101", "not a loopback"),
        ] {
            let o = OpsConfig {
                stream_listen: bad.into(),
                ..OpsConfig::default()
            };
            let p = o.problems();
            assert!(
                p.len() == 1 && p[0].contains(bad) && p[0].contains(says),
                "{p:?}"
            );
        }
        let big = OpsConfig {
            stream_replay_bars: 100_000,
            stream_max_instruments: 1_000_000,
            ..OpsConfig::default()
        };
        assert!(
            big.problems().iter().any(|m| m.contains("1 GiB")),
            "{:?}",
            big.problems()
        );
        let small = OpsConfig {
            stream_client_buffer_bytes: 60_000,
            ..OpsConfig::default()
        };
        let p = small.problems();
        assert!(
            p.len() == 1 && p[0].contains("below one replay window") && p[0].contains("61440"),
            "{p:?}"
        );
    }
}
