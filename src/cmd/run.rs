//! `panda-feed run`: the feed. Settings from the config file, the environment
//! and flags; a live status line; a graceful drain; a JSON summary.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tracing::{error, info, warn};

use super::check_config::apply_flags;
use super::credentials;
use super::run_control::{Control, admin_auth};
use crate::cli::RunArgs;
use crate::config::env::Layered;
use crate::engine::{Counts, Engine, EngineConfig};
use crate::instruments::{self, Instrument};
use crate::logging::{LogFormat, MAX_LOGGED_TEXT, RateLimiter, suppressed_note, truncate};
use crate::mock::{MockConfig, MockExchange, default_instruments};
use crate::ops::Ops;
use crate::secret::Secret;

pub use super::run_watch::EXIT_INTERRUPTED;
use super::run_watch::{CommandWatch, TokenWatch, drain};
use super::{run_stream, run_stream::write_summary};
use crate::auth::source::TokenSource;

/// Exit status when a connection was still refused (HTTP 403) at exit.
pub const EXIT_CONNECTION_FAILED: u8 = 3;

/// Exit status when an engine thread panicked.
pub const EXIT_THREAD_PANIC: u8 = 4;

/// Instruments `run --mock` streams when no CSV is given.
pub const MOCK_DEFAULT_INSTRUMENTS: usize = 300;

pub(super) use crate::auth::source::read_token_file;

/// Runs the feed; returns the exit status.
///
/// # Errors
/// Bad settings, unreadable files, or a component that cannot start; each
/// message names the value and the fix.
#[allow(clippy::too_many_lines)] // one linear start-up sequence
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let log = crate::logging::init(
        args.log_format,
        args.log_level
            .as_deref()
            .unwrap_or(crate::config::defaults::LOG_LEVEL),
    )?;
    // Defaults < file < environment (every key as SECTION__KEY) < flags.
    let (mut cfg, mut problems) = match Layered::load(args.config.as_deref()) {
        Ok(l) => (l.config, l.env_problems),
        Err(p) => bail!("invalid settings:\n  {}", p.join("\n  ")),
    };
    // Flags override the file (as `check-config` and a reload see them);
    // then every setting is checked at once.
    apply_flags(args, &mut cfg);
    problems.extend(cfg.problems());
    if let (Some(h), None) = (&log, &args.log_level) {
        // Checked by `problems` above (a bad filter stops here).
        if problems.is_empty() {
            h.set(&cfg.run.log_level)?;
        }
    }
    if !problems.is_empty() {
        bail!("invalid settings:\n  {}", problems.join("\n  "));
    }
    super::run_setup::memory(&cfg);
    if let Some(d) = args.duration
        && !(d.is_finite() && d > 0.0)
    {
        bail!("--duration {d} must be a positive number of seconds");
    }
    if args.mock && args.ws_url.is_some() {
        bail!("--mock runs its own exchange; drop --ws-url (or drop --mock to use the URL)");
    }

    // Instruments.
    let inst_path = args.instruments.clone().or(cfg.zerodha.instruments.clone());
    let list: Vec<Instrument> = match &inst_path {
        Some(p) => instruments::load(p)?,
        None if args.mock => default_instruments(MOCK_DEFAULT_INSTRUMENTS),
        None => {
            bail!("no instruments: give --instruments CSV or zerodha.instruments in the config")
        }
    };
    let default_mode = cfg.zerodha.default_mode;
    let subs: Vec<_> = list
        .iter()
        .map(|i| (i.token, i.mode.unwrap_or(default_mode)))
        .collect();

    // Credentials: flag > environment > file (> the mock's own with --mock).
    let api_key = credentials::api_key(args, &cfg)?
        .or_else(|| {
            args.mock
                .then(|| Secret::new(MockConfig::default().api_key))
        })
        .unwrap_or_default();
    // The access token (README "Credentials and auth"): a file is watched
    // (a new token is picked up within a second, or at once on SIGHUP); a
    // command is run now and re-run from the loop on a helper thread.
    // Secret files readable by group/other: warned at start, and a note in
    // `/health` for as long as the feed runs.
    let mut secret_file_notes = Vec::new();
    let token_source = TokenSource::plan(args.access_token_file.as_deref(), &cfg.zerodha)?;
    for key in token_source.overridden(&cfg.zerodha) {
        info!(
            "{key} is set but not used: the token comes from {}",
            token_source.describe()
        );
    }
    let token_file = token_source.file().map(Path::to_path_buf);
    let (access_token, mut command_watch) = match &token_source {
        TokenSource::FlagFile(p) | TokenSource::File(p) => {
            secret_file_notes.extend(credentials::warn_if_readable_by_others(p, "access token"));
            (read_token_file(p)?, None)
        }
        TokenSource::Inline { .. } => (Secret::new(cfg.zerodha.access_token.trim()), None),
        TokenSource::Command(c) => CommandWatch::start(c.clone(), &cfg.zerodha)
            .map(|(t, w)| (t, Some(w)))
            .context("cannot start without an access token")?,
        TokenSource::None if args.mock => (Secret::new(MockConfig::default().access_token), None),
        TokenSource::None => (Secret::default(), None),
    };

    // The mock exchange, in-process.
    let mock = if args.mock {
        let m = MockExchange::start(MockConfig {
            // The mock accepts whatever credentials the feed was given.
            api_key: api_key.expose().to_owned(),
            access_token: access_token.expose().to_owned(),
            rate_per_s: args.mock_rate.unwrap_or(cfg.mock.rate),
            seed: cfg.mock.seed,
            max_ticks: cfg.mock.max_ticks,
            expiry: list
                .iter()
                .filter_map(|i| Some((i.token, i.expiry_day?)))
                .collect(),
            ..MockConfig::default()
        })?;
        info!(
            "mock exchange at {} streaming {} instruments at {} ticks/s",
            m.ws_url(),
            subs.len(),
            args.mock_rate.unwrap_or(cfg.mock.rate)
        );
        Some(m)
    } else {
        None
    };
    let ws_url = match &mock {
        Some(m) => m.ws_url(),
        None => args.ws_url.clone().unwrap_or(cfg.zerodha.ws_url.clone()),
    };

    let (kafka, broker) = super::run_setup::kafka(args, &cfg)?;

    let supervision = cfg
        .zerodha
        .supervision()
        .map_err(|p| anyhow::anyhow!("invalid settings:\n  {}", p.join("\n  ")))?;
    let engine_cfg = EngineConfig {
        ws_url,
        api_key,
        access_token,
        instruments: subs,
        publishers: args.publishers.unwrap_or(cfg.engine.publishers),
        kafka,
        supervision,
        bars: super::run_setup::bars(&cfg, args.mock)?,
        ..EngineConfig::from_sections(&cfg).with_tiers_of(&list)
    };

    // Ops (HTTP, Redis metrics, SLO) starts first: a bad address fails early.
    let mut ops_cfg = cfg.ops.clone();
    if let Some(l) = &args.ops_listen {
        ops_cfg.listen.clone_from(l);
    }
    let mut redis_cfg = cfg.redis.clone();
    redis_cfg.url = credentials::redis_url(args, &cfg)?;
    redis_cfg.url_file = None;
    let mut ops = Ops::start(ops_cfg, redis_cfg.clone(), &engine_cfg.kafka.topic)?;
    ops.set_notes(secret_file_notes);
    if !args.mock {
        ops.set_calendar(&cfg.calendar)?;
    }
    ops.set_slo(&cfg.slo);
    ops.set_admin_auth(admin_auth(&cfg)?);
    let control_queue = ops.control_queue();
    if let Some(a) = ops.local_addr() {
        info!("ops: serving http://{a}/ (metrics, health, stats/connections, ops/slow)");
    }
    if let Some(k) = ops.redis_keys() {
        info!(
            "redis: pipeline metrics every interval under {}",
            k[0].trim_end_matches(":count")
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .context("installing the SIGHUP handler")?;
    let mut token_watch = token_file.map(TokenWatch::new);
    let mut next_token_check = Instant::now();
    let initial = engine_cfg.instruments.clone();
    let stream = run_stream::bind(&cfg.ops)?;
    let mut engine = Engine::start(engine_cfg)?;
    let stream = run_stream::start(stream, &redis_cfg, &mut engine, &mut ops)?;
    let mut control = Control::new(args, cfg.clone(), &initial, control_queue, log);
    control.publish(&mut ops, &engine);
    info!(
        "run {}: every envelope carries this id as \"run\"",
        engine.run_id()
    );
    let started = Instant::now();
    let deadline = args.duration.map(Duration::from_secs_f64);
    let mut interval = control.status_interval();
    let mut status = Status {
        last: Some((started, 0, 0)),
    };
    let mut next_status = started + interval;
    let sample_every = ops.sample_interval();
    let mut next_sample = started + sample_every;
    let mut view = ops.sample(&mut engine, true);
    let mut reported_errors = Reported::default();
    let why_stop = loop {
        if stop.load(Ordering::SeqCst) {
            break "signal";
        }
        if deadline.is_some_and(|d| started.elapsed() >= d) {
            break "duration";
        }
        let panics = engine.thread_panics();
        if !panics.is_empty() {
            for p in &panics {
                error!("{p}");
            }
            break "an engine thread panicked";
        }
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        let hup_now = hup.swap(false, Ordering::SeqCst);
        control.turn(now, hup_now, &engine, &mut ops);
        interval = control.status_interval();
        if hup_now || now >= next_token_check {
            next_token_check = now + Duration::from_secs(1);
            if let Some(w) = &mut token_watch {
                w.check(&engine, hup_now);
            }
        }
        if let Some(c) = &mut command_watch {
            c.poll(&engine, &view.counts, hup_now);
        }
        if now >= next_sample {
            view = ops.sample(&mut engine, true);
            report_connection_errors(&view.counts, &mut reported_errors);
            report_redis(&view.redis, &mut reported_errors);
            next_sample = now + sample_every;
        }
        if now >= next_status {
            if !interval.is_zero() {
                let line = format!(
                    "{} | policy v{}",
                    status.line(&view.counts),
                    control.policy_version()
                );
                match args.log_format {
                    LogFormat::Text => eprintln!("{line}"),
                    LogFormat::Json => info!(status = true, "{line}"),
                }
            }
            next_status = now + interval.max(Duration::from_millis(200));
        }
    };
    info!("stopping ({why_stop}): draining rings and flushing the producer");
    if let Some(c) = &command_watch {
        c.report();
    }
    // Health shows `not_running` while the engine drains.
    ops.sample(&mut engine, false);
    let summary = drain(engine, &stop)?;
    // After the drain: the publishers' last bars are handed off by then.
    let stream = stream.map(crate::stream::StreamServer::stop);
    drop(broker);
    drop(mock);
    ops.finish(&summary);
    report_connection_errors(&summary.counts, &mut reported_errors);
    write_summary(
        &summary,
        &control.summary(),
        stream,
        started.elapsed(),
        args.summary.as_deref(),
    )?;
    drop(ops);
    let failed = summary
        .counts
        .connections
        .iter()
        .any(|c| c.state == "auth_failed");
    Ok(if !summary.thread_errors.is_empty() {
        error!(
            "exiting with status {EXIT_THREAD_PANIC}: {}",
            summary.thread_errors.join("; ")
        );
        ExitCode::from(EXIT_THREAD_PANIC)
    } else if !summary.identity_holds {
        error!("the accounting identity does not hold; see the summary");
        ExitCode::FAILURE
    } else if failed {
        ExitCode::from(EXIT_CONNECTION_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Logs connection failures, server error frames, Kafka errors and spool
/// errors as they change, each site rate-limited (one line per
/// [`ERROR_LOG_PERIOD`], with a count of what was suppressed).
#[derive(Debug)]
struct Reported {
    downs: Vec<u64>,
    oversized: Vec<u64>,
    last: std::collections::HashMap<String, String>,
    limiter: RateLimiter,
}

/// Shortest interval between two log lines of one error site.
const ERROR_LOG_PERIOD: Duration = Duration::from_secs(10);

impl Default for Reported {
    fn default() -> Self {
        Self {
            downs: Vec::new(),
            oversized: Vec::new(),
            last: std::collections::HashMap::new(),
            limiter: RateLimiter::new(ERROR_LOG_PERIOD),
        }
    }
}

impl Reported {
    /// Whether `text` is new for `site` and may be logged now.
    fn changed(&mut self, site: &str, text: &str) -> Option<u64> {
        if self.last.get(site).is_some_and(|t| t == text) {
            return None;
        }
        let n = self.limiter.allow(site, Instant::now())?;
        self.last.insert(site.to_owned(), text.to_owned());
        Some(n)
    }
}

fn report_connection_errors(c: &Counts, reported: &mut Reported) {
    reported.downs.resize(c.connections.len(), 0);
    for (i, conn) in c.connections.iter().enumerate() {
        let downs: u64 = conn.reconnects.values().sum();
        if downs > reported.downs[i]
            && let Some(e) = &conn.error
            && let Some(n) = reported.limiter.allow(&format!("down{i}"), Instant::now())
        {
            let next = match conn.state {
                "auth_failed" => {
                    "waiting for a new access token (file change, token command or SIGHUP)"
                }
                "backoff" => "reconnecting after a backoff",
                _ => "reconnecting",
            };
            warn!(
                connection = i,
                "connection {i} down ({downs} so far): {}; {next}{}",
                truncate(e, MAX_LOGGED_TEXT),
                suppressed_note(n)
            );
        }
        reported.downs[i] = downs;
        reported.oversized.resize(c.connections.len(), 0);
        if conn.oversized_text_frames > reported.oversized[i]
            && let Some(n) = reported
                .limiter
                .allow(&format!("oversized{i}"), Instant::now())
        {
            warn!(
                connection = i,
                "connection {i}: {} oversized text frames so far, dropped unread (over \
                 zerodha.max_text_frame_bytes){}",
                conn.oversized_text_frames,
                suppressed_note(n)
            );
            reported.oversized[i] = conn.oversized_text_frames;
        }
        if let Some(e) = &conn.last_server_error
            && let Some(n) = reported.changed(&format!("server_error{i}"), e)
        {
            warn!(
                connection = i,
                "connection {i}: server error frame: {}{}",
                truncate(e, MAX_LOGGED_TEXT),
                suppressed_note(n)
            );
        }
    }
    if let Some(e) = &c.last_kafka_error
        && let Some(n) = reported.changed("kafka", e)
    {
        warn!(
            "kafka: {}{}",
            truncate(e, MAX_LOGGED_TEXT),
            suppressed_note(n)
        );
    }
    if let Some(e) = &c.last_spool_error
        && let Some(n) = reported.changed("spool", e)
    {
        error!(
            "spool: {}{}",
            truncate(e, MAX_LOGGED_TEXT),
            suppressed_note(n)
        );
    }
}

fn report_redis(r: &crate::ops::redis_sink::SinkStatus, reported: &mut Reported) {
    if !r.enabled {
        return;
    }
    if let Some(n) = reported.changed("redis_state", r.state) {
        match r.state {
            "open" => warn!(
                "redis: circuit open after {} consecutive failures; pipeline metrics are dropped \
                 (counted) until a probe succeeds{}",
                r.consecutive_failures,
                suppressed_note(n)
            ),
            "closed" if r.writes_ok + r.writes_error > 0 => {
                info!(
                    "redis: circuit closed; writing pipeline metrics to {}",
                    r.url
                );
            }
            _ => {}
        }
    }
    if let Some(e) = &r.last_error
        && let Some(n) = reported.changed("redis", e)
    {
        warn!(
            "redis: write to {} failed: {}{}",
            r.url,
            truncate(e, MAX_LOGGED_TEXT),
            suppressed_note(n)
        );
    }
}

/// The live status line: rates since the previous line.
#[derive(Debug)]
struct Status {
    last: Option<(Instant, u64, u64)>,
}

fn human_ns(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.1}s", ns as f64 / 1e9)
    }
}

impl Status {
    fn line(&mut self, c: &Counts) -> String {
        let now = Instant::now();
        let (rate_in, rate_out) = match self.last {
            Some((t, r, p)) => {
                let dt = now.duration_since(t).as_secs_f64().max(1e-3);
                (
                    (c.received.saturating_sub(r)) as f64 / dt,
                    (c.published.saturating_sub(p)) as f64 / dt,
                )
            }
            None => (0.0, 0.0),
        };
        self.last = Some((now, c.received, c.published));
        let fill = c
            .publishers
            .iter()
            .map(|p| p.ring_len as f64 / p.ring_capacity.max(1) as f64 * 100.0)
            .fold(0.0, f64::max);
        let open = c.connections.iter().filter(|x| x.state == "open").count();
        let reconnects: u64 = c
            .connections
            .iter()
            .map(|x| x.reconnects.values().sum::<u64>())
            .sum();
        let states: Vec<&str> = c
            .connections
            .iter()
            .map(|x| x.state)
            .filter(|s| *s != "open")
            .collect();
        let age = c
            .connections
            .iter()
            .filter_map(|x| x.last_frame_age_ms)
            .max()
            .map_or_else(|| "-".to_owned(), |a| format!("{a}ms"));
        format!(
            "[{:>6.1}s] in {:>8.0}/s out {:>8.0}/s | received {} published {} in_flight {} | ring {:.1}% | dropped {} parked {} malformed {} | p99 {} | conns {}/{} open{}, reconnects {}, last frame {}",
            c.uptime_s,
            rate_in,
            rate_out,
            c.received,
            c.published,
            c.in_flight,
            fill,
            c.dropped,
            c.parked,
            c.malformed_total(),
            human_ns(c.latency_interval_ns.p99),
            open,
            c.connections.len(),
            if states.is_empty() {
                String::new()
            } else {
                format!(" ({})", states.join(","))
            },
            reconnects,
            age,
        ) + &c
            .bars
            .map_or_else(String::new, |b| format!(" | bars {}", b.published))
    }
}
