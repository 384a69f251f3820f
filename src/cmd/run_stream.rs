//! `run`'s downstream bar stream (README, "Downstream stream") and its JSON
//! summary: starts the stream server on the publishers' bar hand-offs
//! ([`Engine::take_bar_feeds`]) and hands its counters to the ops side;
//! writes the summary with the stream's final counters. Main thread.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tracing::info;

use crate::config::{OpsConfig, RedisConfig};
use crate::engine::{Engine, Summary};
use crate::ops::Ops;
use crate::stream::{StreamConfig, StreamCounts, StreamListener, StreamServer};

/// Binds the stream's address when `ops.stream_listen` is set (before the
/// engine starts, so a bad address fails before anything connects).
///
/// # Errors
/// The address cannot be bound (named, with the fix).
pub(super) fn bind(cfg: &OpsConfig) -> anyhow::Result<Option<StreamListener>> {
    Ok(match StreamConfig::from_ops(cfg) {
        Some(c) => Some(StreamServer::bind(c)?),
        None => None,
    })
}

/// Starts serving on `listener`, fed by the engine's bar hand-offs, with the
/// Redis replay lists when `redis.url` is set; its counters go to
/// `/metrics` through `ops`.
///
/// # Errors
/// The stream thread cannot be started.
pub(super) fn start(
    listener: Option<StreamListener>,
    redis: &RedisConfig,
    engine: &mut Engine,
    ops: &mut Ops,
) -> anyhow::Result<Option<StreamServer>> {
    let Some(listener) = listener else {
        // No stream: the publishers see their hand-offs abandoned and stop
        // pushing bars there (nothing counted as dropped).
        drop(engine.take_bar_feeds());
        return Ok(None);
    };
    let feeds = engine.take_bar_feeds();
    let n = feeds.len();
    let server = listener.start(Some(redis), engine.run_id(), feeds)?;
    ops.set_stream(server.stats());
    info!(
        "stream: serving bars at ws://{}/ ({n} bar hand-offs; replay lists in Redis: {})",
        server.local_addr(),
        if redis.url.is_empty() { "off" } else { "on" }
    );
    Ok(Some(server))
}

#[derive(Debug, Serialize)]
struct SummaryOut<'a> {
    command: &'static str,
    duration_s: f64,
    /// The control plane: settings version, universe, reloader counters.
    control: &'a serde_json::Value,
    /// The downstream stream's final counters (absent when it was off).
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<StreamCounts>,
    #[serde(flatten)]
    summary: &'a Summary,
}

/// Writes the run summary to `path`, or stdout.
///
/// # Errors
/// The file cannot be written (named).
pub(super) fn write_summary(
    s: &Summary,
    control: &serde_json::Value,
    stream: Option<StreamCounts>,
    elapsed: Duration,
    path: Option<&Path>,
) -> anyhow::Result<()> {
    let out = SummaryOut {
        command: "run",
        control,
        stream,
        duration_s: elapsed.as_secs_f64(),
        summary: s,
    };
    let mut text = serde_json::to_string_pretty(&out).context("encoding the summary")?;
    text.push('\n');
    match path {
        Some(p) => std::fs::write(p, text)
            .with_context(|| format!("cannot write the summary to {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
