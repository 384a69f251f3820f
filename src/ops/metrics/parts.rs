//! The `/metrics` families of the tiers, the SLO monitor and the
//! downstream stream, rendered from the view (ops side; see `mod.rs`).

use super::*;

/// The per-tier families, in table order.
#[allow(
    clippy::cast_precision_loss,
    reason = "ring lengths are far below 2^52"
)]
pub(super) fn render_tiers(o: &mut Out, tiers: &[crate::engine::TierCounts; TIERS]) {
    let labelled = || Tier::ALL.iter().map(|t| t.label()).zip(tiers.iter());
    type TierGet = fn(&crate::engine::TierCounts) -> u64;
    let counters: [(&Family, TierGet); 3] = [
        (&TICKS_RECEIVED_BY_TIER, |t| t.received),
        (&TICKS_PUBLISHED_BY_TIER, |t| t.published),
        (&TICKS_PARKED_BY_TIER, |t| t.parked),
    ];
    for (f, get) in counters {
        o.header(f);
        for (l, t) in labelled() {
            o.sample(f, &[l], get(t));
        }
    }
    o.header(&TICKS_DROPPED_BY_TIER);
    for (l, t) in labelled() {
        let d = &t.dropped_by_reason;
        for (r, v) in [
            ("ring_full", d.ring_full),
            ("spool_full", d.spool_full),
            ("spool_error", d.spool_error),
        ] {
            o.sample(&TICKS_DROPPED_BY_TIER, &[l, r], v);
        }
    }
    o.header(&IN_FLIGHT_TICKS_BY_TIER);
    for (l, t) in labelled() {
        o.sample(&IN_FLIGHT_TICKS_BY_TIER, &[l], t.in_flight);
    }
    o.header(&TIER_RING_FILL_RATIO);
    for (l, t) in labelled() {
        let fill = if t.ring_capacity == 0 {
            0.0
        } else {
            t.ring_len as f64 / t.ring_capacity as f64
        };
        o.sample(&TIER_RING_FILL_RATIO, &[l], fill);
    }
}

/// The SLO gap monitor's families (README, "SLO monitoring").
pub(super) fn render_slo(o: &mut Out, slo: &crate::slo::SloView) {
    // No monitor: the families without samples.
    let tiers = if slo.interval.is_empty() {
        &[][..]
    } else {
        &slo.tiers[..]
    };
    o.header(&SLO_GAP_VIOLATION_RATE);
    for t in tiers {
        o.sample(
            &SLO_GAP_VIOLATION_RATE,
            &[t.tier, &slo.interval],
            t.violation_rate,
        );
    }
    o.header(&SLO_SAMPLED);
    for t in tiers {
        for (m, v) in [
            ("open", t.sampled),
            ("closed", t.closed),
            ("untracked", t.untracked),
        ] {
            o.sample(&SLO_SAMPLED, &[t.tier, m], v);
        }
    }
    o.one(&SLO_ROUNDS, slo.rounds);
}

/// The downstream stream's families (zeros when it is off).
pub(super) fn render_stream(o: &mut Out, s: &crate::stream::StreamCounts) {
    o.one(&STREAM_CLIENTS, s.clients);
    o.one(&STREAM_CLIENTS_REFUSED, s.clients_refused);
    o.one(&STREAM_SLOW_DISCONNECTS, s.slow_disconnects);
    o.one(&STREAM_HANDSHAKE_FAILURES, s.handshake_failures);
    o.one(&STREAM_BAD_REQUESTS, s.bad_requests);
    o.one(&STREAM_BARS_RECEIVED, s.bars_received);
    o.header(&STREAM_BAR_FRAMES);
    for (k, v) in [
        ("live", s.bars_sent),
        (
            "replay_memory",
            s.bars_replayed.saturating_sub(s.bars_replayed_from_redis),
        ),
        ("replay_redis", s.bars_replayed_from_redis),
    ] {
        o.sample(&STREAM_BAR_FRAMES, &[k], v);
    }
    o.one(&STREAM_INSTRUMENTS, s.instruments);
    o.one(&STREAM_OVER_LIMIT, s.instruments_over_limit);
    for (f, ok, err) in [
        (
            &STREAM_REDIS_WRITES,
            s.redis_writes_ok,
            s.redis_writes_error,
        ),
        (&STREAM_REDIS_READS, s.redis_reads_ok, s.redis_reads_error),
    ] {
        o.header(f);
        o.sample(f, &["ok"], ok);
        o.sample(f, &["error"], err);
    }
    o.one(&STREAM_REDIS_SKIPS, s.redis_circuit_open_skips);
    o.one(&STREAM_REDIS_DROPPED, s.redis_bars_dropped);
    o.one(&STREAM_REDIS_SKIPPED, s.redis_records_skipped);
}
