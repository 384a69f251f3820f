//! `panda-feed check-config`: the settings `run` would use (defaults, file,
//! environment, flags), every problem with them at once, or each value with
//! where it came from and secrets redacted. Runs on the main thread; starts
//! nothing and connects to nothing.

use std::collections::BTreeSet;
use std::process::ExitCode;

use serde_json::{Map, Value, json};

use super::credentials;
use crate::auth::source::TokenSource;
use crate::cli::{CheckConfigArgs, RunArgs};
use crate::config::Config;
use crate::config::env::{Layered, SECRET_KEYS};
use crate::engine::EngineConfig;
use crate::mock::MockConfig;
use crate::secret::{Secret, redact_url};

/// Applies the flags of `run` that set a key; the keys they set.
pub(crate) fn apply_flags(a: &RunArgs, cfg: &mut Config) -> BTreeSet<&'static str> {
    let mut set = BTreeSet::new();
    let (z, k) = (&mut cfg.zerodha, &mut cfg.kafka);
    let mut put = |key: &'static str, given: bool| {
        if given {
            set.insert(key);
        }
    };
    if let Some(v) = &a.ws_url {
        z.ws_url.clone_from(v);
    }
    put("zerodha.ws_url", a.ws_url.is_some());
    if let Some(v) = &a.api_key {
        z.api_key = v.expose().to_owned();
    }
    put("zerodha.api_key", a.api_key.is_some());
    if a.api_key_file.is_some() {
        z.api_key_file.clone_from(&a.api_key_file);
    }
    put("zerodha.api_key_file", a.api_key_file.is_some());
    if a.access_token_file.is_some() {
        z.access_token_file.clone_from(&a.access_token_file);
    }
    put("zerodha.access_token_file", a.access_token_file.is_some());
    if a.instruments.is_some() {
        z.instruments.clone_from(&a.instruments);
    }
    put("zerodha.instruments", a.instruments.is_some());
    if let Some(v) = &a.brokers {
        k.brokers.clone_from(v);
    }
    put("kafka.brokers", a.brokers.is_some());
    if let Some(v) = &a.topic {
        k.topic.clone_from(v);
    }
    put("kafka.topic", a.topic.is_some());
    if let Some(v) = a.mock_rate {
        cfg.mock.rate = v;
    }
    put("mock.rate", a.mock_rate.is_some());
    if let Some(v) = a.publishers {
        cfg.engine.publishers = v;
    }
    put("engine.publishers", a.publishers.is_some());
    if let Some(v) = &a.ops_listen {
        cfg.ops.listen.clone_from(v);
    }
    put("ops.listen", a.ops_listen.is_some());
    if let Some(v) = &a.redis_url {
        cfg.redis.url = v.expose().to_owned();
    }
    put("redis.url", a.redis_url.is_some());
    if let Some(v) = &a.log_level {
        cfg.run.log_level.clone_from(v);
    }
    put("run.log_level", a.log_level.is_some());
    set
}

/// Every problem `run` would report before connecting: the keys' own
/// (`Config::problems`), the credentials and files, and the engine's
/// cross-field checks (`EngineConfig::problems`).
pub(crate) fn problems(a: &RunArgs, cfg: &Config) -> Vec<String> {
    let mut p = cfg.problems();
    if a.mock && a.ws_url.is_some() {
        p.push("--mock runs its own exchange; drop --ws-url (or drop --mock)".into());
    }
    let mock = MockConfig::default();
    let api_key = match credentials::api_key(a, cfg) {
        Ok(k) => k.unwrap_or_else(|| {
            Secret::new(if a.mock {
                mock.api_key.clone()
            } else {
                String::new()
            })
        }),
        Err(e) => {
            p.push(format!("{e:#}"));
            Secret::new("?")
        }
    };
    // As `run` (crate::auth::source); a command is not run here, only
    // looked up.
    let token = match TokenSource::plan(a.access_token_file.as_deref(), &cfg.zerodha) {
        Ok(TokenSource::FlagFile(f) | TokenSource::File(f)) => {
            match super::run::read_token_file(&f) {
                Ok(t) => t,
                Err(e) => {
                    p.push(format!("{e:#}"));
                    Secret::new("?")
                }
            }
        }
        Ok(TokenSource::Inline { .. }) => Secret::new(cfg.zerodha.access_token.trim()),
        Ok(TokenSource::Command(c)) => {
            if !program_exists(c.name()) {
                p.push(format!(
                    "zerodha.access_token_command: program {:?} not found (or not executable)",
                    c.name()
                ));
            }
            Secret::new("?")
        }
        Ok(TokenSource::None) if a.mock => Secret::new(mock.access_token),
        Ok(TokenSource::None) => Secret::default(),
        Err(e) => {
            p.push(format!("{e:#}"));
            Secret::new("?")
        }
    };
    if let Err(e) = credentials::redis_url(a, cfg) {
        p.push(format!("{e:#}"));
    }
    if let Some(f) = &cfg.ops.admin_token_file
        && let Err(e) = super::run_control::read_admin_token(f)
    {
        p.push(format!("{e:#}"));
    }
    match &cfg.zerodha.instruments {
        Some(f) => {
            if let Err(e) = crate::instruments::load(f) {
                p.push(format!("{e:#}"));
            }
        }
        None if !a.mock => {
            p.push("no instruments: give --instruments CSV or zerodha.instruments".into());
        }
        None => {}
    }
    if cfg.kafka.brokers.is_empty() && !a.mock && cfg.kafka.sink != "blackhole" {
        p.push("no Kafka brokers: give --brokers, kafka.brokers or KAFKA__BROKERS".into());
    }
    let mut engine = EngineConfig {
        api_key,
        access_token: token,
        ..EngineConfig::from_sections(cfg)
    };
    if a.mock {
        engine.ws_url = "ws://127.0.0.1:1/".into();
    }
    for q in engine.problems() {
        if !p.contains(&q) {
            p.push(q);
        }
    }
    p
}

/// `true` when `name` is an executable file, as a path or in `PATH`.
fn program_exists(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        return exec(std::path::Path::new(name));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| exec(&d.join(name))))
}

/// `section.key` → (shown value, source), secrets redacted.
fn effective(
    cfg: &Config,
    layered: &Layered,
    flags: &BTreeSet<&str>,
) -> Vec<(String, Value, &'static str)> {
    let mut out = Vec::new();
    let Ok(Value::Object(sections)) = serde_json::to_value(cfg) else {
        return out;
    };
    for (section, keys) in sections {
        let Value::Object(keys) = keys else { continue };
        for (key, value) in keys {
            let path = format!("{section}.{key}");
            let shown = match (path.as_str(), value) {
                (p, Value::String(s)) if SECRET_KEYS.contains(&p) && !s.is_empty() => {
                    json!("<redacted>")
                }
                ("redis.url" | "zerodha.api_root", Value::String(s)) => json!(redact_url(&s)),
                ("kafka.extra", Value::Object(m)) => Value::Object(
                    m.into_iter()
                        .map(|(k, _)| (k, json!("<redacted>")))
                        .collect::<Map<_, _>>(),
                ),
                (_, v) => v,
            };
            let source = if flags.contains(path.as_str()) {
                "flag"
            } else {
                layered.source(&section, &key)
            };
            out.push((path, shown, source));
        }
    }
    out
}

/// Runs `check-config`; exit 0 with the settings, 1 with every problem.
#[must_use]
pub fn run(args: &CheckConfigArgs) -> ExitCode {
    let a = &args.run;
    let (layered, problems) = match Layered::load(a.config.as_deref()) {
        Ok(l) => {
            let mut cfg = l.config.clone();
            let flags = apply_flags(a, &mut cfg);
            let mut p = l.env_problems.clone();
            p.extend(problems(a, &cfg));
            ((l, cfg, flags), p)
        }
        Err(p) => return report_problems(args.json, &p),
    };
    if !problems.is_empty() {
        return report_problems(args.json, &problems);
    }
    let (l, cfg, flags) = layered;
    let rows = effective(&cfg, &l, &flags);
    if args.json {
        let settings: Map<String, Value> = rows
            .into_iter()
            .map(|(k, v, s)| (k, json!({"value": v, "source": s})))
            .collect();
        println!("{}", json!({"ok": true, "settings": settings}));
    } else {
        for (k, v, s) in rows {
            let v = if v.is_null() {
                "(none)".to_owned()
            } else {
                v.to_string()
            };
            println!("{k} = {v}  ({s})");
        }
    }
    ExitCode::SUCCESS
}

/// Prints every problem (stderr, or a JSON object on stdout); exit 1.
fn report_problems(as_json: bool, p: &[String]) -> ExitCode {
    if as_json {
        println!("{}", json!({"ok": false, "errors": p}));
    } else {
        eprintln!("panda-feed: invalid settings ({} problems):", p.len());
        for q in p {
            eprintln!("  {q}");
        }
    }
    ExitCode::FAILURE
}
