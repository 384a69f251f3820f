//! Subcommand implementations, on the main thread. Each returns its process
//! exit status; the threads a command needs (the engine's, the mock's) are
//! started and joined by it.

pub mod auth;
pub mod calendar;
pub mod check_config;
mod credentials;
pub mod decode;
pub mod dlq;
pub mod doctor;
pub mod mock_exchange;
pub mod run;
mod run_control;
mod run_setup;
mod run_stream;
mod run_watch;
pub mod stream_tail;

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
        Command::Doctor(args) => doctor::run(&args),
        Command::StreamTail(args) => stream_tail::run(&args),
        Command::MockExchange(args) => report(mock_exchange::run(&args)),
        Command::MockKafka(args) => report(mock_kafka(&args)),
        Command::Dlq(args) => match dlq::run(&args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("panda-feed: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Auth(args) => auth::run(&args),
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Calendar(args) => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            ExitCode::from(calendar::run(&args, &mut stdout.lock(), &mut stderr.lock()))
        }
        Command::Run(args) => match run::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("panda-feed: {e:#}");
                ExitCode::FAILURE
            }
        },
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

/// `panda-feed mock-kafka`: an embedded broker until a signal or `--duration`.
fn mock_kafka(args: &crate::cli::MockKafkaArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    if !(1..=1000).contains(&args.partitions) {
        anyhow::bail!(
            "--partitions {} must be between 1 and 1000",
            args.partitions
        );
    }
    if let Some(d) = args.duration
        && !(d.is_finite() && d > 0.0)
    {
        anyhow::bail!("--duration {d} must be a positive number of seconds");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let broker = crate::mock::EmbeddedBroker::start(1, &args.topic, args.partitions)
        .map_err(anyhow::Error::msg)?;
    println!("{}", broker.bootstrap_servers());
    eprintln!(
        "mock-kafka: serving topic {} ({} partitions) at {}; stop with Ctrl-C",
        args.topic,
        args.partitions,
        broker.bootstrap_servers()
    );
    let started = Instant::now();
    let deadline = args.duration.map(Duration::from_secs_f64);
    while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| started.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(broker);
    eprintln!("mock-kafka: stopped");
    Ok(())
}
