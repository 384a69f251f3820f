//! Subcommand implementations. Each returns its process exit status.

pub mod decode;
pub mod mock_exchange;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the parsed command line and returns the process exit code.
#[must_use]
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Decode(args) => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            ExitCode::from(decode::run(&args, &mut stdout.lock(), &mut stderr.lock()))
        }
        Command::MockExchange(args) => report(mock_exchange::run(&args)),
    }
}

/// Prints a command's error with its causes and maps it to exit status 1.
fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("panda-feed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
