//! Command-line interface: the only place argv is read.

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
