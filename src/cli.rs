//! Command-line interface: the only place argv is read. Runs on the main
//! thread at start-up; owns nothing past parsing.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::defaults;
use crate::config::ranges::{self, MAX_SECS, int_parser as ranged, secs_parser};

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
    /// Check the host's tuning against the recommendations for the
    /// engine's cores (tuning/README.md).
    ///
    /// Reads the kernel command line (isolcpus, nohz_full, rcu_nocbs), the
    /// CPU governor and C-state limit, transparent huge pages, socket buffer
    /// and backlog sysctls, swap, the memlock limit and (with --nic) the
    /// NIC's interrupt affinity; no root needed. Prints a table (or --json).
    /// Exit status: 0 all as recommended; 1 something to fix, or a bad
    /// config.
    Doctor(DoctorArgs),
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
    /// Run an embedded Kafka-protocol broker (librdkafka's mock cluster) on
    /// loopback, for trying `run --brokers` without a Kafka installation.
    ///
    /// Prints its bootstrap address on stdout, then serves until
    /// SIGINT/SIGTERM or --duration. Data is kept in memory (about 5 MiB or
    /// 100,000 records per partition; older ones are evicted).
    MockKafka(MockKafkaArgs),
    /// Run the feed: Kite WebSocket in, every tick to Kafka out.
    ///
    /// Reads --config (TOML; see config/example.toml), then the environment
    /// (every key as SECTION__KEY, e.g. KAFKA__TOPIC, ZERODHA__API_KEY,
    /// ZERODHA__ACCESS_TOKEN), then these flags. Prints a
    /// status line every second on stderr and a JSON summary at exit (stdout,
    /// or --summary FILE). Stops on SIGINT/SIGTERM or after --duration:
    /// stops reading, drains the rings, flushes the producer.
    ///
    /// Connections reconnect with backoff; one refused with HTTP 403 waits
    /// for the token file to change (checked every second, or on SIGHUP),
    /// or for zerodha.access_token_command to print a new token (re-run
    /// while refused, and on SIGHUP).
    ///
    /// Exit status: 0 clean; 1 bad settings or the accounting identity did
    /// not hold; 3 a connection was still refused with HTTP 403 at exit; 4 an
    /// engine thread panicked (reported with its message).
    Run(RunArgs),
    /// Check the settings `run` would use, without starting anything.
    ///
    /// Loads --config, the environment (every key as SECTION__KEY, e.g.
    /// KAFKA__TOPIC) and the flags of `run`, in that order of precedence
    /// (a flag beats the environment, which beats the file, which beats the
    /// default). Prints every problem at once and exits 1, or prints each
    /// effective value with its source (default, file, env, flag), secrets
    /// redacted, and exits 0. --json prints one JSON object on stdout.
    CheckConfig(CheckConfigArgs),
    /// Inspect, republish or purge the dead-letter spool.
    ///
    /// Works against a stopped or a running feed: list and stats read every
    /// segment; requeue and purge act on closed segments only.
    /// Exit status: 0 ok; 1 error, or records left after requeue; 2 corrupt
    /// records were found (reported and skipped).
    Dlq(DlqArgs),
    /// The access token: Kite's session exchange, and where the feed's
    /// token comes from.
    ///
    /// `auth login --request-token T` exchanges the request token of a Kite
    /// login redirect for the day's access token (POST /session/token; the
    /// API secret from ZERODHA__API_SECRET or zerodha.api_secret_file) and
    /// writes it atomically, mode 0600, to zerodha.access_token_file, where
    /// a running feed picks it up. `auth status` shows the token's source
    /// and age, never the token.
    ///
    /// Exit status: 0 ok (login: token written; status: a token is
    /// available); 1 otherwise, with the reason and the fix.
    Auth(AuthArgs),
    /// Print a date's exchange sessions (IST and UTC), or why a market is
    /// closed.
    ///
    /// Sessions come from the weekday rules (README, "Calendar"), the
    /// shipped holiday lists and --file. A date of a year without a list
    /// is answered by the weekday rule, with a warning on stderr.
    ///
    /// Exit status: 0 printed; 1 a bad --date or --exchange, or a holiday
    /// file that cannot be read or is invalid; 2 a bad command line.
    Calendar(CalendarArgs),
    /// Connect to a running feed's downstream bar stream (ops.stream_listen)
    /// and print what it sends, one JSON frame per line on stdout.
    ///
    /// Subscribes to --tokens with Kite's shape ({"a":"subscribe","v":[…]}):
    /// the feed answers with the last bars of each token at once (the
    /// replay), a {"type":"subscribed",…,"replayed":K} frame, then live
    /// bars. A summary line goes to stderr at the end.
    ///
    /// Exit status: 0 got --bars bar frames (or the stream closed after at
    /// least one); 1 could not connect, the feed refused, or --timeout-s
    /// passed first; 2 a bad command line.
    StreamTail(StreamTailArgs),
}

/// Arguments of `panda-feed stream-tail`.
#[derive(Debug, Args)]
pub struct StreamTailArgs {
    /// The stream's address (the feed's `ops.stream_listen`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9101")]
    pub connect: String,
    /// Instrument tokens to subscribe to, comma-separated.
    #[arg(long, value_name = "TOKEN,...", value_delimiter = ',', required = true)]
    pub tokens: Vec<u32>,
    /// Exit after this many bar frames, replayed and live together (0: run
    /// until the stream closes or --timeout-s).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub bars: u64,
    /// Give up after this long.
    #[arg(long, value_name = "SECS", default_value_t = 300.0,
          value_parser = secs_parser(true))]
    pub timeout_s: f64,
}

/// Arguments of `panda-feed calendar`.
#[derive(Debug, Args)]
pub struct CalendarArgs {
    /// One exchange (NSE, NFO, CDS, BSE, BFO, BCD, MCX, MCXSX, NCO); all
    /// when omitted.
    #[arg(long, value_name = "EXCHANGE", value_parser = exchange)]
    pub exchange: Option<crate::calendar::Exchange>,
    /// The date, YYYY-MM-DD (IST); today in IST when omitted.
    #[arg(long, value_name = "DATE", value_parser = date)]
    pub date: Option<u32>,
    /// A holiday file laid over the shipped ones, as `calendar.file`.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

fn exchange(s: &str) -> Result<crate::calendar::Exchange, String> {
    crate::calendar::Exchange::parse(s).ok_or_else(|| {
        format!(
            "{s:?} is not an exchange; one of {}",
            crate::calendar::Exchange::ALL
                .map(crate::calendar::Exchange::label)
                .join(", ")
        )
    })
}

fn date(s: &str) -> Result<u32, String> {
    crate::calendar::dates::parse_date(s)
}

/// Arguments of `panda-feed auth`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// TOML config file (the `[zerodha]` keys).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The access token file (`zerodha.access_token_file`): where `login`
    /// writes, what `status` inspects.
    #[arg(long, value_name = "FILE", global = true)]
    pub access_token_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Exchange a request token for the day's access token and write it
    /// (mode 0600) where the feed reads it.
    Login {
        /// The `request_token` of the login redirect URL (works once, for a
        /// few minutes).
        #[arg(long, value_name = "TOKEN", value_parser = secret)]
        request_token: crate::secret::Secret,
        /// Kite's REST root (`zerodha.api_root`); http:// only to loopback.
        #[arg(long, value_name = "URL")]
        api_root: Option<String>,
        /// File holding the Kite API key (`zerodha.api_key_file`).
        #[arg(long, value_name = "FILE")]
        api_key_file: Option<PathBuf>,
    },
    /// Show where the access token comes from and how old it is (never the
    /// token); a command source is run once.
    Status,
}

/// Arguments of `panda-feed dlq`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct DlqArgs {
    /// The spool directory (`spool.dir` of the feed).
    #[arg(long, default_value = defaults::SPOOL_DIR, value_name = "DIR")]
    pub dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Every parked record as one JSON line.
    List,
    /// Counts, size, oldest and newest failure, counts by error, open
    /// segments and their writer's pid (after recovering the open segments
    /// of dead writers).
    Stats,
    /// Republish closed segments in order (after recovering the open
    /// segments of dead writers); remove only the records whose delivery
    /// was confirmed, or which were found on their topic already. One
    /// requeue per spool at a time (`requeue.lock`; a second one exits 3).
    #[command(allow_negative_numbers = true)]
    Requeue {
        /// Kafka bootstrap servers.
        #[arg(long, value_name = "HOSTS")]
        brokers: String,
        /// Deadline of the whole requeue (lookups, sends, deliveries),
        /// seconds; what is not confirmed by then stays in the spool.
        #[arg(long, default_value_t = 30, value_name = "SECS",
              value_parser = ranged::<u64>((1, MAX_SECS)), allow_hyphen_values = true)]
        timeout_s: u64,
        /// Records per checkpoint: confirmed records are removed from the
        /// spool (the segment rewritten) after each window of this many, or
        /// of one second of sending, whichever ends first.
        #[arg(long, default_value_t = 50_000, value_name = "N",
              value_parser = ranged::<usize>(ranges::CHECKPOINT_RECORDS), allow_hyphen_values = true)]
        checkpoint_records: usize,
        /// How far before a record's first failure its lookup on the topic
        /// starts (covers `message_timeout_ms`), e.g. 10m.
        #[arg(long, default_value = "10m", value_name = "DURATION")]
        lookup_margin: String,
    },
    /// Remove records whose first failure is older than DURATION (90s, 30m,
    /// 12h, 7d), after recovering the open segments of dead writers.
    Purge {
        /// Age, e.g. 7d.
        #[arg(long, value_name = "DURATION")]
        older_than: String,
    },
}

/// Arguments of `panda-feed mock-kafka`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct MockKafkaArgs {
    /// Topic to create.
    #[arg(long, default_value = defaults::TOPIC)]
    pub topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = defaults::MOCK_PARTITIONS,
          value_parser = ranged::<i32>(ranges::PARTITIONS), allow_hyphen_values = true)]
    pub partitions: i32,
    /// Stop after this many seconds (more than 0, at most 10 years).
    #[arg(long, value_name = "SECS", value_parser = secs_parser(true),
          allow_hyphen_values = true)]
    pub duration: Option<f64>,
}

/// Arguments of `panda-feed run`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct RunArgs {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run against the in-process mock exchange (and, without brokers, an
    /// embedded Kafka-protocol broker): no credentials needed.
    #[arg(long)]
    pub mock: bool,
    /// Kite WebSocket URL without query, e.g. ws://127.0.0.1:8765/.
    #[arg(long, value_name = "URL")]
    pub ws_url: Option<String>,
    /// Kite API key. Visible to every user in `ps` (a warning says so):
    /// prefer --api-key-file, ZERODHA__API_KEY or the config.
    #[arg(long, value_name = "KEY", value_parser = secret)]
    pub api_key: Option<crate::secret::Secret>,
    /// File holding the Kite API key (`zerodha.api_key_file`); chmod 600.
    #[arg(long, value_name = "FILE", conflicts_with = "api_key")]
    pub api_key_file: Option<PathBuf>,
    /// File holding the access token (else ZERODHA__ACCESS_TOKEN or the config).
    #[arg(long, value_name = "FILE")]
    pub access_token_file: Option<PathBuf>,
    /// Instruments CSV: a Kite instrument dump, or `instrument_token,tradingsymbol,name,exchange[,mode]`.
    #[arg(long, value_name = "CSV")]
    pub instruments: Option<PathBuf>,
    /// Kafka bootstrap servers (host:port,...).
    #[arg(long, value_name = "HOSTS")]
    pub brokers: Option<String>,
    /// Kafka topic.
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
    /// Stop after this many seconds (more than 0, at most 10 years).
    #[arg(long, value_name = "SECS", value_parser = secs_parser(true),
          allow_hyphen_values = true)]
    pub duration: Option<f64>,
    /// Write the JSON summary here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Mock exchange rate, ticks/s (with --mock).
    #[arg(long, value_name = "TICKS_PER_S", value_parser = ranged::<u64>(ranges::RATE), allow_hyphen_values = true)]
    pub mock_rate: Option<u64>,
    /// Publisher threads.
    #[arg(long, value_name = "N", value_parser = ranged::<usize>(ranges::PUBLISHERS), allow_hyphen_values = true)]
    pub publishers: Option<usize>,
    /// Ops HTTP server address (`ops.listen`); "" turns it off; port 0 picks
    /// a free port (printed).
    #[arg(long, value_name = "ADDR")]
    pub ops_listen: Option<String>,
    /// Redis URL for pipeline metrics (`redis.url`), e.g.
    /// redis://127.0.0.1:6379/0; "" turns them off. A password here is
    /// visible in `ps` (a warning says so): put a URL with a password in
    /// REDIS__URL or `redis.url_file` instead.
    #[arg(long, value_name = "URL", value_parser = secret)]
    pub redis_url: Option<crate::secret::Secret>,
    /// Log filter: error, warn, info, debug, trace, or per module
    /// (panda_feed=debug). RUST_LOG wins when set; without either,
    /// run.log_level (default info, live on a reload).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t)]
    pub log_format: crate::logging::LogFormat,
}

/// Arguments of `panda-feed check-config`: those of `run`, and `--json`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The settings, as `run` takes them.
    #[command(flatten)]
    pub run: RunArgs,
    /// Print one JSON object (`{"ok":true,"settings":{KEY:{"value","source"}}}`
    /// or `{"ok":false,"errors":[...]}`) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `panda-feed mock-exchange`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct MockExchangeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8765", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Instruments CSV (Kite dump or short form); expired derivatives in it are
    /// not streamed.
    #[arg(long, value_name = "CSV")]
    pub instruments: Option<PathBuf>,
    /// Total ticks generated per second over all subscribed instruments.
    #[arg(long = "rate", default_value_t = defaults::MOCK_RATE_PER_S, value_name = "TICKS_PER_S",
          value_parser = ranged::<u64>(ranges::RATE), allow_hyphen_values = true)]
    pub rate_per_s: u64,
    /// Seed of the market random walk.
    #[arg(long, default_value_t = defaults::MOCK_SEED)]
    pub seed: u64,
    /// Stop generating after N ticks (heartbeats continue).
    #[arg(long, value_name = "N")]
    pub max_ticks: Option<u64>,
    /// Write every binary message sent as framed records (u32 BE length + bytes);
    /// `panda-feed decode --framed FILE` reads it.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// api_key clients must present.
    #[arg(long, default_value = defaults::MOCK_API_KEY)]
    pub api_key: String,
    /// access_token clients must present (else HTTP 403).
    #[arg(long, default_value = defaults::MOCK_ACCESS_TOKEN)]
    pub access_token: String,
    /// Most instruments kept in market state (least recently used evicted).
    #[arg(long, default_value_t = defaults::MOCK_MAX_INSTRUMENTS,
          value_parser = ranged::<usize>(ranges::MOCK_INSTRUMENTS), allow_hyphen_values = true)]
    pub max_instruments: usize,
    /// Heartbeat period when idle, in milliseconds.
    #[arg(long, default_value_t = defaults::MOCK_HEARTBEAT_MS, value_name = "MS",
          value_parser = ranged::<u64>(ranges::HEARTBEAT_MS), allow_hyphen_values = true)]
    pub heartbeat_ms: u64,
    /// Stop after this many seconds (more than 0, at most 10 years).
    #[arg(long, value_name = "SECS", value_parser = secs_parser(true),
          allow_hyphen_values = true)]
    pub duration: Option<f64>,
    /// Fault: close each connection (cleanly, after delivering everything
    /// queued) after it has sent N market-data messages.
    #[arg(long, value_name = "N")]
    pub disconnect_every: Option<u64>,
    /// Fault: after every Nth market-data message, send a malformed one.
    #[arg(long, value_name = "N")]
    pub malformed_every: Option<u64>,
    /// Fault: refuse every upgrade with this HTTP status (403 or 429).
    #[arg(long, value_name = "STATUS", value_parser = clap::builder::PossibleValuesParser::new(["403", "429"]))]
    pub reject: Option<String>,
    /// Fault: go silent (no data, no heartbeats, TCP kept open) SECS after start.
    #[arg(long, value_name = "SECS", value_parser = secs_parser(false),
          allow_hyphen_values = true)]
    pub stall_after: Option<f64>,
    /// Fault: how long a --stall-after stall lasts (default: until exit).
    #[arg(long, value_name = "SECS", requires = "stall_after", value_parser = secs_parser(false),
          allow_hyphen_values = true)]
    pub stall_for: Option<f64>,
    /// Fault: every connection sleeps this long per turn (a slow server).
    #[arg(long, value_name = "MS", value_parser = ranged::<u64>(ranges::SLOW_TURN_MS), allow_hyphen_values = true)]
    pub slow_turn_ms: Option<u64>,
    /// Fault: broadcast this text `error` frame every --error-every seconds.
    #[arg(long, value_name = "TEXT", requires = "error_every")]
    pub error_text: Option<String>,
    /// Period of --error-text frames, seconds.
    #[arg(long, value_name = "SECS", requires = "error_text", value_parser = secs_parser(false),
          allow_hyphen_values = true)]
    pub error_every: Option<f64>,
    /// Start the market clock (exchange timestamps) here, e.g.
    /// 2026-11-25T15:29:50+05:30 to cross the NSE close; it runs on at
    /// wall-clock speed.
    #[arg(long, value_name = "TIME", value_parser = crate::mock::scenario::parse_clock)]
    pub clock: Option<u32>,
    /// Fault: this instrument gets no updates (repeatable; the rest of its
    /// connection streams on).
    #[arg(long = "stall-token", value_name = "TOKEN")]
    pub stall_tokens: Vec<u32>,
    /// Send an order postback (`order` text frame) every SECS seconds, with
    /// a new order id each time.
    #[arg(long, value_name = "SECS", value_parser = secs_parser(false), allow_hyphen_values = true)]
    pub orders_every: Option<f64>,
    /// Replay this framed recording (from --record, or a generated corpus)
    /// to each connection once it subscribes, instead of the generated
    /// market; then heartbeats only.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Replay pace, messages per second (default: as fast as the client
    /// reads).
    #[arg(long, value_name = "MSGS_PER_S", requires = "replay",
          value_parser = ranged::<u64>(ranges::RATE), allow_hyphen_values = true)]
    pub replay_rate: Option<u64>,
}

/// Arguments of `panda-feed doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The feed's config: its engine.network_core and
    /// engine.publisher_cores are the cores checked.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The NIC carrying the feed (e.g. eth0): its interrupts must stay off
    /// the engine's cores.
    #[arg(long, value_name = "NAME")]
    pub nic: Option<String>,
    /// Read /proc and /sys under DIR instead of / (a copy of another host's,
    /// or a test fixture).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `panda-feed decode`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct DecodeArgs {
    /// Inputs are streams of u32-BE-length-prefixed messages.
    #[arg(long)]
    pub framed: bool,
    /// Largest message accepted, in bytes; larger inputs are reported as errors
    /// instead of being read into memory.
    #[arg(long, default_value_t = defaults::MAX_MESSAGE_BYTES, value_name = "BYTES",
          value_parser = ranged::<usize>(ranges::MESSAGE_BYTES), allow_hyphen_values = true)]
    pub max_message_bytes: usize,
    /// Input files; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[allow(clippy::unnecessary_wraps)] // clap's value_parser signature
fn secret(s: &str) -> Result<crate::secret::Secret, std::convert::Infallible> {
    Ok(crate::secret::Secret::new(s))
}

/// Parses argv. A flag value that is not a number or is out of its range
/// (README "Ranges") prints the flag, the value and the range and exits with
/// status 1, like a bad config value; any other bad command line prints
/// usage and exits with status 2.
#[must_use]
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            let _ = e.print();
            std::process::exit(1)
        }
        Err(e) => e.exit(),
    }
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
