//! Command-line interface: the only place argv is read.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// panda-feed: Kite Connect market-data feed handler.
#[derive(Debug, Parser)]
#[command(name = "panda-feed", version, about, propagate_version = true)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode binary Kite messages into JSON lines of ticks.
    ///
    /// Without --framed each FILE holds one binary WebSocket message and every
    /// tick is printed as one JSON object per line. With --framed each FILE is a
    /// stream of records (u32 big-endian length, then the message bytes) and each
    /// message prints one line: {"frame":N,"ticks":[...]} or {"frame":N,"error":"..."}.
    ///
    /// Exit status: 0 all messages parsed; 2 some message was malformed (all
    /// output is still printed); 1 an input could not be read.
    Decode(DecodeArgs),
    /// Run a simulated Kite streaming server on a local port.
    ///
    /// Speaks the real protocol: `GET /?api_key=…&access_token=…` upgrades
    /// (wrong credentials get HTTP 403, a 4th connection HTTP 429),
    /// subscribe/mode/unsubscribe text frames with numeric tokens, binary
    /// messages for the subscribed instruments in their modes, 1-byte heartbeats
    /// when idle. Market data is a seeded random walk. Runs until SIGINT/SIGTERM
    /// or --duration.
    MockExchange(MockExchangeArgs),
}

/// Arguments of `panda-feed mock-exchange`.
#[derive(Debug, Args)]
pub struct MockExchangeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8765", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Instruments CSV (Kite dump or short form); expired derivatives in it are
    /// not streamed.
    #[arg(long, value_name = "CSV")]
    pub instruments: Option<PathBuf>,
    /// Total ticks generated per second over all subscribed instruments.
    #[arg(long = "rate", default_value_t = 10_000, value_name = "TICKS_PER_S")]
    pub rate_per_s: u64,
    /// Seed of the market random walk.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop generating after N ticks (heartbeats continue).
    #[arg(long, value_name = "N")]
    pub max_ticks: Option<u64>,
    /// Write every binary message sent as framed records (u32 BE length + bytes);
    /// `panda-feed decode --framed FILE` reads it.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// api_key clients must present.
    #[arg(long, default_value = "mock_api_key")]
    pub api_key: String,
    /// access_token clients must present (else HTTP 403).
    #[arg(long, default_value = "mock_access_token")]
    pub access_token: String,
    /// Most instruments kept in market state (least recently used evicted).
    #[arg(long, default_value_t = 20_000)]
    pub max_instruments: usize,
    /// Heartbeat period when idle, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub heartbeat_ms: u64,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

/// Arguments of `panda-feed decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Inputs are streams of u32-BE-length-prefixed messages.
    #[arg(long)]
    pub framed: bool,
    /// Largest message accepted, in bytes; larger inputs are reported as errors
    /// instead of being read into memory.
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_name = "BYTES")]
    pub max_message_bytes: usize,
    /// Input files; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Parses argv; prints usage and exits with status 2 on a bad command line.
#[must_use]
pub fn parse() -> Cli {
    Cli::parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
