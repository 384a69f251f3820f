//! The `panda-feed` binary: parse arguments, dispatch, map to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    panda_feed::cmd::main(panda_feed::cli::parse())
}
