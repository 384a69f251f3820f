//! The `panda-feed` binary: parse arguments, dispatch, map to an exit code
//! (main thread).

use std::process::ExitCode;

/// mimalloc: start-up and set-up allocations (connections, producers) are
/// served from thread-local heaps; the hot path allocates nothing at all.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    panda_feed::cmd::main(panda_feed::cli::parse())
}
