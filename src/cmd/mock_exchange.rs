//! `panda-feed mock-exchange`: run the simulated Kite server until a signal
//! or `--duration`, printing a status line every second on stderr.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cli::MockExchangeArgs;
use crate::instruments;
use crate::mock::{MockConfig, MockExchange};

/// Runs the mock exchange.
///
/// # Errors
/// Bad arguments, an unreadable instruments file, or a failure to start.
pub fn run(args: &MockExchangeArgs) -> anyhow::Result<()> {
    if let Some(d) = args.duration
        && !(d.is_finite() && d > 0.0)
    {
        bail!("--duration {d} must be a positive number of seconds");
    }
    if args.heartbeat_ms == 0 {
        bail!("--heartbeat-ms must be at least 1");
    }
    let mut cfg = MockConfig {
        listen: args.listen,
        api_key: args.api_key.clone(),
        access_token: args.access_token.clone(),
        rate_per_s: args.rate_per_s,
        seed: args.seed,
        max_ticks: args.max_ticks,
        record: args.record.clone(),
        max_instruments: args.max_instruments.max(1),
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        clock_start_s: args.clock,
        replay: match &args.replay {
            Some(p) => {
                let msgs = crate::mock::scenario::read_framed(
                    p,
                    crate::config::defaults::MAX_MESSAGE_BYTES,
                )
                .map_err(anyhow::Error::msg)?;
                eprintln!(
                    "mock-exchange: replaying {} messages from {}",
                    msgs.len(),
                    p.display()
                );
                Some(Arc::new(msgs))
            }
            None => None,
        },
        replay_rate: args.replay_rate,
        ..MockConfig::default()
    };
    if let Some(path) = &args.instruments {
        let list = instruments::load(path)?;
        cfg.expiry = list
            .iter()
            .filter_map(|i| Some((i.token, i.expiry_day?)))
            .collect();
        eprintln!(
            "mock-exchange: {} instruments from {}",
            list.len(),
            path.display()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    for (name, v) in [
        ("--stall-after", args.stall_after),
        ("--stall-for", args.stall_for),
        ("--error-every", args.error_every),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v >= 0.0)
        {
            bail!("{name} {v} must be a non-negative number of seconds");
        }
    }
    let mock = MockExchange::start(cfg)?;
    let faults = mock.faults();
    if let Some(n) = args.disconnect_every {
        faults.disconnect_every.store(n, Ordering::SeqCst);
    }
    if let Some(n) = args.malformed_every {
        faults.malformed_every.store(n, Ordering::SeqCst);
    }
    if let Some(s) = &args.reject {
        faults
            .reject_status
            .store(s.parse().unwrap_or(403), Ordering::SeqCst);
    }
    if let Some(ms) = args.slow_turn_ms {
        faults.slow_turn_ms.store(ms, Ordering::SeqCst);
    }
    faults.stall_tokens(&args.stall_tokens);
    let orders_every = args
        .orders_every
        .map(|s| Duration::from_secs_f64(s.max(0.01)));
    let mut next_order = orders_every.map(|e| Instant::now() + e);
    let mut order_id = 0u64;
    let stall_from = args.stall_after.map(Duration::from_secs_f64);
    let stall_until = stall_from.map(|f| args.stall_for.map(|d| f + Duration::from_secs_f64(d)));
    let error_every = args
        .error_every
        .map(|s| Duration::from_secs_f64(s.max(0.01)));
    let mut next_error = error_every.map(|e| Instant::now() + e);
    eprintln!(
        "mock-exchange: listening on {} (api_key={}, access_token from --access-token)",
        mock.ws_url(),
        args.api_key
    );
    let started = Instant::now();
    let deadline = args.duration.map(Duration::from_secs_f64);
    let mut last_print = Instant::now();
    let mut last_sent = 0u64;
    while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| started.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(50));
        let el = started.elapsed();
        if let (Some(from), Some(until)) = (stall_from, stall_until) {
            let on = el >= from && until.is_none_or(|u| el < u);
            if mock.faults().stall.swap(on, Ordering::SeqCst) != on {
                eprintln!(
                    "mock-exchange: stall {}",
                    if on { "begins" } else { "ends" }
                );
            }
        }
        if let (Some(at), Some(every), Some(text)) = (next_error, error_every, &args.error_text)
            && Instant::now() >= at
        {
            let frame = serde_json::json!({ "type": "error", "data": text }).to_string();
            mock.broadcast_text(&frame);
            next_error = Some(at + every);
        }
        if let (Some(at), Some(every)) = (next_order, orders_every)
            && Instant::now() >= at
        {
            order_id += 1;
            let status = if order_id % 2 == 1 {
                "OPEN"
            } else {
                "COMPLETE"
            };
            mock.send_order(&format!("2611250000{order_id:05}"), status);
            next_order = Some(at + every);
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            let s = mock.stats();
            let sent = s.sent_ticks.load(Ordering::SeqCst);
            eprintln!(
                "mock-exchange: conns={} generated={} sent={} ({}/s) heartbeats={} rejected 403={} 429={} lagged={}",
                mock.subscriptions().len(),
                s.generated.load(Ordering::SeqCst),
                sent,
                sent - last_sent,
                s.heartbeats.load(Ordering::SeqCst),
                s.rejected_403.load(Ordering::SeqCst),
                s.rejected_429.load(Ordering::SeqCst),
                s.lagged_updates.load(Ordering::SeqCst),
            );
            last_sent = sent;
            last_print = Instant::now();
        }
    }
    let generated = mock.stats().generated.load(Ordering::SeqCst);
    let sent = mock.stats().sent_ticks.load(Ordering::SeqCst);
    mock.stop();
    eprintln!("mock-exchange: stopped; generated {generated} ticks, sent {sent}");
    Ok(())
}
