//! Subcommand implementations. Each returns its process exit status.

pub mod decode;

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
    }
}
