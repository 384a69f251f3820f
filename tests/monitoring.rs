//! `scripts/monitoring/`: the Prometheus alert rules and the Grafana dashboard
//! parse, have the expected shape, and use only metric names the feed exports
//! (`panda_feed::ops::metrics::METRIC_NAMES`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use panda_feed::ops::metrics::METRIC_NAMES;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Alerts that must exist: (name, severity, metric its expression must use).
const REQUIRED_ALERTS: &[(&str, &str, &str)] = &[
    ("PandaFeedRingHigh", "warning", "panda_feed_ring_fill_ratio"),
    (
        "PandaFeedDropRateHigh",
        "critical",
        "panda_feed_ticks_dropped_total",
    ),
    (
        "PandaFeedSendFailureRateHigh",
        "critical",
        "panda_feed_send_failures_total",
    ),
    (
        "PandaFeedTickAgeHigh",
        "warning",
        "panda_feed_last_tick_age_seconds",
    ),
    (
        "PandaFeedRedisCircuitOpen",
        "warning",
        "panda_feed_redis_circuit_state",
    ),
    ("PandaFeedSpoolGrowing", "warning", "panda_feed_spool_bytes"),
    (
        "PandaFeedT0TicksDropped",
        "critical",
        "panda_feed_ticks_dropped_by_tier_total",
    ),
    (
        "PandaFeedT1TicksDropped",
        "warning",
        "panda_feed_ticks_dropped_by_tier_total",
    ),
    (
        "PandaFeedT2Shedding",
        "warning",
        "panda_feed_ticks_received_by_tier_total",
    ),
    (
        "PandaFeedT0RingHigh",
        "warning",
        "panda_feed_tier_ring_fill_ratio",
    ),
    ("PandaFeedUnhealthy", "critical", "panda_feed_health_status"),
    (
        "PandaFeedT0SloGaps",
        "critical",
        "panda_feed_slo_gap_violation_rate",
    ),
    (
        "PandaFeedT1SloGaps",
        "warning",
        "panda_feed_slo_gap_violation_rate",
    ),
    (
        "PandaFeedT2SloGaps",
        "warning",
        "panda_feed_slo_gap_violation_rate",
    ),
];

/// Names the alert expressions depend on.
const ALERT_METRICS: &[&str] = &[
    "panda_feed_ring_fill_ratio",
    "panda_feed_ticks_dropped_total",
    "panda_feed_ticks_received_total",
    "panda_feed_send_failures_total",
    "panda_feed_last_tick_age_seconds",
    "panda_feed_expected_tick_interval_seconds",
    "panda_feed_redis_circuit_state",
    "panda_feed_spool_bytes",
    "panda_feed_health_status",
    "panda_feed_ticks_dropped_by_tier_total",
    "panda_feed_ticks_received_by_tier_total",
    "panda_feed_tier_ring_fill_ratio",
    "panda_feed_slo_gap_violation_rate",
];

fn monitoring_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/monitoring")
        .join(name)
}

fn read(name: &str) -> Result<String> {
    let path = monitoring_file(name);
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Whether `(`/`)`, `[`/`]` and `{`/`}` nest properly outside double-quoted
/// strings (PromQL label values).
fn balanced(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in expr.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return false;
                }
            }
            _ => {}
        }
    }
    stack.is_empty() && !in_string
}

/// Every `panda_feed_[a-z0-9_]+` identifier in `text` (not preceded by an
/// identifier character).
fn metric_identifiers(text: &str) -> BTreeSet<String> {
    const PREFIX: &[u8] = b"panda_feed_";
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(PREFIX) && (i == 0 || !ident(bytes[i - 1])) {
            let mut end = i + PREFIX.len();
            while end < bytes.len()
                && (bytes[end].is_ascii_lowercase()
                    || bytes[end].is_ascii_digit()
                    || bytes[end] == b'_')
            {
                end += 1;
            }
            if end > i + PREFIX.len() {
                out.insert(String::from_utf8_lossy(&bytes[i..end]).into_owned());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `name` is exported: exactly, or as a histogram's
/// `_bucket`/`_sum`/`_count` series.
fn exported(name: &str) -> bool {
    if METRIC_NAMES.contains(&name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| METRIC_NAMES.contains(&base))
    })
}

fn yaml_str<'a>(v: &'a serde_yaml_ng::Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(serde_yaml_ng::Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// Every panel, including those nested in rows.
fn all_panels(panels: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in panels {
        out.push(p);
        if let Some(nested) = p.get("panels").and_then(serde_json::Value::as_array) {
            out.extend(all_panels(nested));
        }
    }
    out
}

#[test]
fn scanner_and_balance_helpers() {
    let found = metric_identifiers(
        "sum(rate(panda_feed_a_total[1m])) / x_panda_feed_no panda-feed panda_feed_ \
         histogram_quantile(0.9, panda_feed_b_seconds_bucket)",
    );
    let expected: BTreeSet<String> = ["panda_feed_a_total", "panda_feed_b_seconds_bucket"]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(found, expected);
    assert!(balanced(r#"sum by (a) (rate(m{job="x)"}[1m]))"#));
    assert!(!balanced("sum(rate(m[1m])"));
    assert!(!balanced("(]"));
}

#[test]
fn alert_rules_are_well_formed() -> Result {
    let text = read("alerts.yml")?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    let groups = doc
        .get("groups")
        .and_then(serde_yaml_ng::Value::as_sequence)
        .ok_or("alerts.yml: no `groups` list")?;
    assert!(!groups.is_empty(), "alerts.yml: `groups` is empty");

    let mut alerts = Vec::new();
    for group in groups {
        assert!(yaml_str(group, "name").is_some(), "a group without a name");
        let rules = group
            .get("rules")
            .and_then(serde_yaml_ng::Value::as_sequence)
            .ok_or("a group without a `rules` list")?;
        assert!(!rules.is_empty(), "a group with no rules");
        for rule in rules {
            let alert = yaml_str(rule, "alert");
            assert!(alert.is_some(), "a rule without `alert`: {rule:?}");
            let alert = alert.unwrap_or_default();
            let expr = yaml_str(rule, "expr");
            assert!(expr.is_some(), "{alert}: no `expr`");
            let expr = expr.unwrap_or_default();
            assert!(balanced(expr), "{alert}: unbalanced brackets in `{expr}`");
            let severity = rule.get("labels").and_then(|l| yaml_str(l, "severity"));
            assert!(
                matches!(severity, Some("warning" | "critical")),
                "{alert}: labels.severity is {severity:?}"
            );
            let annotations = rule.get("annotations");
            assert!(
                annotations.and_then(|a| yaml_str(a, "summary")).is_some(),
                "{alert}: no annotations.summary"
            );
            assert!(
                annotations
                    .and_then(|a| yaml_str(a, "description"))
                    .is_some(),
                "{alert}: no annotations.description"
            );
            let for_ = yaml_str(rule, "for");
            assert!(
                for_.is_some_and(|f| f.ends_with(['s', 'm', 'h'])),
                "{alert}: `for` is {for_:?}"
            );
            alerts.push((
                alert.to_owned(),
                severity.unwrap_or_default().to_owned(),
                expr.to_owned(),
            ));
        }
    }

    let mut names: Vec<&str> = alerts.iter().map(|a| a.0.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "duplicate alert names: {alerts:?}");

    for (name, severity, metric) in REQUIRED_ALERTS {
        let found = alerts.iter().find(|a| a.0 == *name);
        assert!(found.is_some(), "alerts.yml lacks {name}");
        if let Some((_, sev, expr)) = found {
            assert_eq!(sev, severity, "{name}: severity");
            assert!(
                metric_identifiers(expr).contains(*metric),
                "{name}: expr `{expr}` does not use {metric}"
            );
        }
    }
    Ok(())
}

#[test]
fn dashboard_is_well_formed() -> Result {
    let text = read("grafana-dashboard.json")?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    assert!(
        doc.get("title")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|t| !t.is_empty()),
        "dashboard without a title"
    );
    assert_eq!(
        doc.get("uid").and_then(serde_json::Value::as_str),
        Some("panda-feed")
    );
    let datasource_var = doc
        .pointer("/templating/list")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|vars| {
            vars.iter().any(|v| {
                v.get("type").and_then(serde_json::Value::as_str) == Some("datasource")
                    && v.get("query").and_then(serde_json::Value::as_str) == Some("prometheus")
            })
        });
    assert!(datasource_var, "no Prometheus datasource variable");

    let panels = doc
        .get("panels")
        .and_then(serde_json::Value::as_array)
        .ok_or("dashboard without `panels`")?;
    assert!(!panels.is_empty(), "dashboard with no panels");

    let mut ids = BTreeSet::new();
    let mut exprs = 0;
    for panel in all_panels(panels) {
        let title = panel
            .get("title")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        if let Some(id) = panel.get("id").and_then(serde_json::Value::as_u64) {
            assert!(ids.insert(id), "panel id {id} used twice ({title})");
        }
        if panel.get("type").and_then(serde_json::Value::as_str) == Some("row") {
            continue;
        }
        let targets = panel
            .get("targets")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} has no targets");
        for target in targets {
            let expr = target
                .get("expr")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {title:?}: empty expr");
            assert!(
                balanced(expr),
                "panel {title:?}: unbalanced brackets in `{expr}`"
            );
            exprs += 1;
        }
    }
    assert!(exprs > 0, "no target expressions");
    Ok(())
}

#[test]
fn monitoring_files_use_only_exported_metric_names() -> Result {
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let names = metric_identifiers(&read(file)?);
        assert!(!names.is_empty(), "{file}: no panda_feed_ metric names");
        let unknown: Vec<&String> = names.iter().filter(|n| !exported(n)).collect();
        assert!(
            unknown.is_empty(),
            "{file}: names not in METRIC_NAMES: {unknown:?}"
        );
    }

    let alert_names = metric_identifiers(&read("alerts.yml")?);
    for name in ALERT_METRICS {
        assert!(exported(name), "{name} is not in METRIC_NAMES");
        assert!(
            alert_names.contains(*name),
            "alerts.yml does not use {name}"
        );
    }

    let dashboard_names = metric_identifiers(&read("grafana-dashboard.json")?);
    for name in [
        "panda_feed_health_status",
        "panda_feed_ring_fill_ratio",
        "panda_feed_last_tick_age_seconds",
        "panda_feed_produce_latency_seconds_bucket",
        "panda_feed_ack_latency_seconds_bucket",
        "panda_feed_ticks_dropped_total",
        "panda_feed_spool_bytes",
    ] {
        assert!(
            dashboard_names.contains(name),
            "grafana-dashboard.json does not use {name}"
        );
    }
    Ok(())
}
