//! Every config key from the environment as `SECTION__KEY` (e.g.
//! `KAFKA__TOPIC`, `ENGINE__RING_CAPACITY`), plus the names the Python stack
//! uses (`REDPANDA__BOOTSTRAP_SERVERS` for `kafka.brokers`). Runs on the main
//! thread at start-up, for `run` and `check-config` alike: the variables are
//! read into a TOML table shaped like the file's, laid over it, and the whole
//! is deserialized once with `deny_unknown_fields`.

use std::path::Path;

use toml::{Table, Value};

use super::{Config, ConfigError};

/// The sections whose variables are read; a variable of any other prefix is
/// not ours and is ignored.
pub const SECTIONS: &[&str] = &[
    "zerodha",
    "engine",
    "kafka",
    "spool",
    "mock",
    "run",
    "ops",
    "redis",
    "subscriptions",
    "fields",
    "calendar",
    "tiers",
    "bars",
    "slo",
];

/// Variables that set a key under another name: (variable, section, key).
pub const ALIASES: &[(&str, &str, &str)] = &[("REDPANDA__BOOTSTRAP_SERVERS", "kafka", "brokers")];

/// Keys whose values are secrets: never printed (`redis.url` is shown
/// through `secret::redact_url`).
pub const SECRET_KEYS: &[&str] = &[
    "zerodha.api_key",
    "zerodha.api_secret",
    "zerodha.access_token",
];

/// The environment's part of the settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvOverlay {
    /// `{section: {key: value}}`, each value typed as its key wants.
    pub table: Table,
    /// `(section.key, variable)` for each key set, in the table's order.
    pub vars: Vec<(String, String)>,
}

impl EnvOverlay {
    /// The overlay of this process's environment (variables that are not
    /// UTF-8 are skipped).
    ///
    /// The good variables' overlay, and every bad variable's problem (see
    /// [`EnvOverlay::from_vars`]).
    #[must_use]
    pub fn from_env() -> (Self, Vec<String>) {
        Self::partial(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// The overlay of `vars`: each `SECTION__KEY` of a known section (and
    /// each alias) becomes `section.key`, its value parsed with the key's
    /// type: as written when the key takes a string, else as a TOML value
    /// (a number, a bool, an inline array or table).
    ///
    /// # Errors
    /// Every problem at once: an unknown key of a known section, a value
    /// that fits no type of its key (naming the variable, the value and the
    /// type expected), an alias that disagrees with its key's own variable.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Vec<String>> {
        let (out, problems) = Self::partial(vars);
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    /// The overlay of the good variables of `vars`, and the problems of
    /// the others (as [`EnvOverlay::from_vars`]).
    pub fn partial(vars: impl IntoIterator<Item = (String, String)>) -> (Self, Vec<String>) {
        let mut vars: Vec<(String, String)> = vars.into_iter().collect();
        vars.sort();
        let mut out = Self::default();
        let mut problems = Vec::new();
        for (name, raw) in &vars {
            let (section, key) = match ALIASES.iter().find(|a| a.0 == name) {
                Some(&(_, s, k)) => (s.to_owned(), k.to_owned()),
                None => match name.split_once("__") {
                    Some((s, k)) if SECTIONS.contains(&s.to_ascii_lowercase().as_str()) => {
                        (s.to_ascii_lowercase(), k.to_ascii_lowercase())
                    }
                    _ => continue,
                },
            };
            let path = format!("{section}.{key}");
            let value = match typed(&section, &key, raw) {
                Ok(v) => v,
                Err(msg) => {
                    problems.push(format!("environment {name}: {msg}"));
                    continue;
                }
            };
            if let Some((_, other)) = out.vars.iter().find(|(p, _)| *p == path) {
                let before = out.table[&section].get(&key);
                if before != Some(&value) {
                    problems.push(format!(
                        "environment {name} and {other} both set {path}, to different values; \
                         keep one"
                    ));
                }
                continue;
            }
            let t = out
                .table
                .entry(section.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            if let Value::Table(t) = t {
                t.insert(key, value);
            }
            out.vars.push((path, name.clone()));
        }
        (out, problems)
    }

    /// The variable that set `section.key`, if one did.
    #[must_use]
    pub fn var(&self, path: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.as_str())
    }
}

/// `{section: {key: value}}`.
fn one(section: &str, key: &str, value: Value) -> Value {
    let mut inner = Table::new();
    inner.insert(key.to_owned(), value);
    let mut outer = Table::new();
    outer.insert(section.to_owned(), Value::Table(inner));
    Value::Table(outer)
}

/// `raw` as the type `section.key` takes, or why it fits none.
fn typed(section: &str, key: &str, raw: &str) -> Result<Value, String> {
    // The value as written first (so a string key takes it verbatim), then
    // as a TOML value (a number, a bool, an inline array or table).
    let mut candidates = vec![Value::String(raw.to_owned())];
    if let Ok(t) = format!("v = {raw}").parse::<Table>()
        && t.len() == 1
        && let Some(v) = t.get("v")
    {
        candidates.push(v.clone());
    }
    let mut why = String::new();
    for v in candidates {
        match one(section, key, v.clone()).try_into::<Config>() {
            Ok(_) => return Ok(v),
            Err(e) => why = e.message().trim_end().to_owned(),
        }
    }
    let path = format!("{section}.{key}");
    if why.contains("unknown field") {
        return Err(format!(
            "{path} is not a setting of [{section}] ({why}); see config/example.toml"
        ));
    }
    let shown = if SECRET_KEYS.contains(&path.as_str()) || path == "redis.url" {
        "<redacted>".to_owned()
    } else {
        format!("{raw:?}")
    };
    Err(format!("{path} = {shown} is not of the key's type: {why}"))
}

/// The file's settings (if any) with the environment laid over them,
/// deserialized once; also the file's own table, for the source of each
/// value.
///
/// # Errors
/// An unreadable file, the file's bad keys or values (with line and
/// column), and every bad environment variable, all at once.
pub fn load_layered(path: Option<&Path>, env: &EnvOverlay) -> Result<(Config, Table), Vec<String>> {
    let text = match path {
        None => None,
        Some(p) => {
            let name = p.display().to_string();
            match std::fs::read_to_string(p) {
                Err(err) => return Err(vec![ConfigError::Io { path: name, err }.to_string()]),
                Ok(text) => Some((text, name)),
            }
        }
    };
    layered_text(text.as_ref().map(|(t, n)| (t.as_str(), n.as_str())), env)
}

/// As [`load_layered`], with the file's `(text, name)` given.
///
/// # Errors
/// The text's bad keys or values, and every bad environment variable.
pub fn layered_text(
    text: Option<(&str, &str)>,
    env: &EnvOverlay,
) -> Result<(Config, Table), Vec<String>> {
    let mut file = Table::new();
    if let Some((text, name)) = text {
        match Config::parse(text, name) {
            Err(e) => return Err(vec![e.to_string()]),
            Ok(_) => file = text.parse::<Table>().unwrap_or_default(),
        }
    }
    let merged = merge(file.clone(), &env.table);
    match Value::Table(merged).try_into::<Config>() {
        Ok(c) => Ok((c, file)),
        Err(e) => Err(vec![format!(
            "config with environment: {}",
            e.message().trim_end()
        )]),
    }
}

/// Settings as `run` and `check-config` see them before flags: defaults,
/// the file, the environment.
#[derive(Debug, Clone)]
pub struct Layered {
    /// The settings.
    pub config: Config,
    /// The file's own table (empty without a file).
    pub file: Table,
    /// The environment's overrides (its good variables).
    pub env: EnvOverlay,
    /// The problems of the bad variables of the environment, which are
    /// left out of `config`: `run` refuses to start with any, and
    /// `check-config` lists them with the rest.
    pub env_problems: Vec<String>,
}

impl Layered {
    /// The file at `path` (if any) and this process's environment.
    ///
    /// # Errors
    /// A bad file: every problem of the file and of the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, Vec<String>> {
        Self::with_env(|env| load_layered(path, env))
    }

    /// `text` as the file (named `name` in messages) and this process's
    /// environment: what `POST /ops/validate` checks.
    ///
    /// # Errors
    /// Every problem of the text and of the environment.
    pub fn from_text(text: &str, name: &str) -> Result<Self, Vec<String>> {
        Self::with_env(|env| layered_text(Some((text, name)), env))
    }

    /// This process's environment laid over what `file` gives.
    fn with_env(
        file: impl FnOnce(&EnvOverlay) -> Result<(Config, Table), Vec<String>>,
    ) -> Result<Self, Vec<String>> {
        let (env, env_problems) = EnvOverlay::from_env();
        match file(&env) {
            Ok((config, file)) => Ok(Self {
                config,
                file,
                env,
                env_problems,
            }),
            Err(mut p) => {
                p.extend(env_problems);
                Err(p)
            }
        }
    }

    /// Where `section.key` came from: `"env"`, `"file"` or `"default"`.
    #[must_use]
    pub fn source(&self, section: &str, key: &str) -> &'static str {
        if self.env.var(&format!("{section}.{key}")).is_some() {
            "env"
        } else if self
            .file
            .get(section)
            .and_then(Value::as_table)
            .is_some_and(|t| t.contains_key(key))
        {
            "file"
        } else {
            "default"
        }
    }
}

/// `base` with every `section.key` of `over` replacing its own.
fn merge(mut base: Table, over: &Table) -> Table {
    for (section, keys) in over {
        let Value::Table(keys) = keys else { continue };
        let entry = base
            .entry(section.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(t) = entry {
            for (k, v) in keys {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn every_key_is_typed_and_laid_over_the_file() {
        let env = EnvOverlay::from_vars(vars(&[
            ("KAFKA__TOPIC", "ticks"),
            ("ENGINE__RING_CAPACITY", "131072"),
            ("SPOOL__FSYNC", "always"),
            ("ENGINE__PUBLISHER_CORES", "[0]"),
            ("OPS__RING_HIGH_PCT", "90.5"),
            ("REDPANDA__BOOTSTRAP_SERVERS", "rp:9092"),
            ("ZERODHA__API_SECRET", "s3cr3t"),
            ("ZERODHA__ACCESS_TOKEN", "t0k3n"),
            ("ZERODHA__WS_URL", "\"ws://h/\""),
            ("KAFKA__LINGER_MS", "7"),
            ("HOME", "/root"),
            ("OTHER__THING", "x"),
        ]))
        .unwrap();
        let dir = std::env::temp_dir().join(format!("pf-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "[kafka]\ntopic = \"file\"\nlinger_ms = 3\nbatch_size = 9\n",
        )
        .unwrap();
        let (c, file) = load_layered(Some(&f), &env).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.kafka.topic, "ticks");
        assert_eq!(c.kafka.linger_ms, 7);
        assert_eq!(c.kafka.batch_size, 9);
        assert_eq!(c.kafka.brokers, "rp:9092");
        assert_eq!(c.engine.ring_capacity, 131_072);
        assert_eq!(c.engine.publisher_cores, vec![0]);
        assert_eq!(c.spool.fsync, super::super::Fsync::Always);
        assert!((c.ops.ring_high_pct - 90.5).abs() < 1e-9);
        assert_eq!(c.zerodha.api_secret, "s3cr3t");
        assert_eq!(c.zerodha.access_token, "t0k3n");
        // A string key takes the value verbatim, quotes and all.
        assert_eq!(c.zerodha.ws_url, "\"ws://h/\"");
        assert_eq!(
            env.var("kafka.brokers"),
            Some("REDPANDA__BOOTSTRAP_SERVERS")
        );
        assert!(file["kafka"].get("batch_size").is_some());
        assert!(!format!("{c:?}").contains("s3cr3t") && !format!("{c:?}").contains("t0k3n"));
    }

    #[test]
    fn every_bad_variable_is_named_at_once() {
        let e = EnvOverlay::from_vars(vars(&[
            ("KAFKA__TOPIK", "x"),
            ("ENGINE__RING_CAPACITY", "lots"),
            ("SPOOL__FSYNC", "sometimes"),
            ("ZERODHA__API_KEY", "k"),
        ]))
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        let all = e.join("\n");
        assert!(
            all.contains("KAFKA__TOPIK") && all.contains("not a setting"),
            "{all}"
        );
        assert!(
            all.contains("ENGINE__RING_CAPACITY")
                && all.contains("\"lots\"")
                && all.contains("usize"),
            "{all}"
        );
        assert!(
            all.contains("SPOOL__FSYNC") && all.contains("sometimes"),
            "{all}"
        );
    }

    #[test]
    fn an_alias_may_not_disagree_with_its_key() {
        let e = EnvOverlay::from_vars(vars(&[
            ("KAFKA__BROKERS", "a:1"),
            ("REDPANDA__BOOTSTRAP_SERVERS", "b:2"),
        ]))
        .unwrap_err();
        assert!(e[0].contains("both set kafka.brokers"), "{e:?}");
        assert!(
            EnvOverlay::from_vars(vars(&[
                ("KAFKA__BROKERS", "a:1"),
                ("REDPANDA__BOOTSTRAP_SERVERS", "a:1"),
            ]))
            .is_ok()
        );
    }
}
