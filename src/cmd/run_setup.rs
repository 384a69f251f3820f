//! Parts of `run`'s start-up kept out of `run.rs`: the Kafka settings with
//! the embedded broker of `--mock`, and the calendar the bars use (README,
//! "Bars"). Main thread, before the engine starts.

use anyhow::bail;
use tracing::info;

use crate::cli::RunArgs;
use crate::config::{Config, KafkaConfig};
use crate::mock::EmbeddedBroker;

/// The Kafka settings `run` uses (config, then `--brokers`, `--topic`), and
/// the embedded broker when `--mock` has no brokers.
///
/// # Errors
/// No brokers without `--mock`, or an embedded broker that cannot start.
pub(super) fn kafka(
    args: &RunArgs,
    cfg: &Config,
) -> anyhow::Result<(KafkaConfig, Option<EmbeddedBroker>)> {
    let mut kafka = cfg.kafka.clone();
    if let Some(b) = &args.brokers {
        kafka.brokers.clone_from(b);
    }
    if let Some(t) = &args.topic {
        kafka.topic.clone_from(t);
    }
    if !kafka.brokers.is_empty() || kafka.sink == "blackhole" {
        return Ok((kafka, None));
    }
    if !args.mock {
        bail!(
            "no Kafka brokers: give --brokers HOST:PORT or kafka.brokers in the config \
             (or --mock for an embedded broker)"
        );
    }
    let b = EmbeddedBroker::start(1, &kafka.topic, cfg.mock.partitions.max(1))
        .map_err(anyhow::Error::msg)?;
    kafka.brokers = b.bootstrap_servers().to_owned();
    info!(
        "embedded Kafka broker at {bs} (topic {t}, {p} partitions); while this runs, read \
         it with any Kafka client, e.g. kcat -C -b {bs} -t {t} -o beginning",
        bs = kafka.brokers,
        t = kafka.topic,
        p = cfg.mock.partitions.max(1),
    );
    Ok((kafka, Some(b)))
}

/// Process-wide memory settings, before anything large is allocated:
/// `engine.transparent_huge_pages = false` (the default) turns transparent
/// huge pages off for this process (README, "Performance": about 22 MiB of
/// RSS, as the allocator asks for huge pages on its arenas, and no
/// khugepaged compaction on the feed's pages). A refusal is a warning.
pub(super) fn memory(cfg: &Config) {
    if !cfg.engine.transparent_huge_pages
        && let Err(e) = crate::sys::mem::disable_thp()
    {
        tracing::warn!(
            "engine.transparent_huge_pages = false: {e}; the system's THP setting applies \
             (set engine.transparent_huge_pages = true to silence this)"
        );
    }
}

/// The bar settings of `cfg`, with the exchange calendar unless `--mock`
/// (whose market trades around the clock: every minute is open). The
/// bars' window runs from yesterday to 400 days ahead, so a run of any
/// realistic length never leaves it; days of a year without a holiday list
/// follow the weekday rule (the ops side warns about those years).
///
/// # Errors
/// `calendar.file` cannot be read or is not a valid holiday file.
pub(super) fn bars(cfg: &Config, mock: bool) -> anyhow::Result<crate::bars::BarSettings> {
    let mut b = crate::bars::BarSettings::from_config(&cfg.bars);
    if b.enabled && !mock {
        let h = crate::calendar::Holidays::load(cfg.calendar.file()).map_err(anyhow::Error::msg)?;
        let cal = crate::calendar::Calendar::new(&h, crate::clock::now_ns(), 1, 400);
        b.calendar = Some(std::sync::Arc::new(cal));
    }
    if b.enabled {
        info!(
            "bars: one-minute bars to topic {} (grace {} ms, {} clock{})",
            b.topic,
            b.grace.as_millis(),
            cfg.bars.clock,
            if mock { ", every minute open" } else { "" }
        );
    }
    Ok(b)
}
