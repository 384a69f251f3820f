//! Where `run`'s secrets come from: the API key, the access token file and
//! the Redis URL, read from files, the environment, the config or (with a
//! warning) the command line. Runs on the main thread at start-up. No value
//! read here is ever logged; warnings name the flag or file and the safer
//! alternative (README "Security").

use std::path::Path;

use anyhow::{Context, bail};
use tracing::warn;

use crate::cli::RunArgs;
use crate::config::Config;
use crate::secret::{Secret, UNPARSABLE_URL, redact_url, url_secrets};

/// The trimmed, non-empty value of environment variable `name`.
pub(crate) fn env_secret(name: &str) -> Option<Secret> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

/// The trimmed content of `path`, which holds `what`; warns when the file is
/// readable by group or other.
///
/// # Errors
/// An unreadable or empty file, named with `what`.
pub(crate) fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<Secret> {
    let _ = warn_if_readable_by_others(path, what);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let value = text.trim();
    if value.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(Secret::new(value))
}

/// Warns when `path` (holding `what`) is readable by group or other, and
/// returns the warning (for the health note) when it is.
pub(crate) fn warn_if_readable_by_others(path: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    if mode & 0o044 == 0 {
        return None;
    }
    let text = format!(
        "the {what} file {} is readable by group/other (mode {mode:03o}); run: chmod 600 {}",
        path.display(),
        path.display()
    );
    warn!("{text}");
    Some(text)
}

/// The API key: `--api-key-file`, `--api-key` (warned: visible in `ps`),
/// `ZERODHA__API_KEY`, `zerodha.api_key_file`, `zerodha.api_key`; `None`
/// when none is set.
///
/// # Errors
/// Both a flag and a file flag, both config keys, or an unreadable file.
pub(crate) fn api_key(args: &RunArgs, cfg: &Config) -> anyhow::Result<Option<Secret>> {
    api_key_from(
        args.api_key.as_ref(),
        args.api_key_file.as_deref(),
        args.config.as_deref(),
        cfg,
    )
}

/// [`api_key`] from its parts: the `--api-key` and `--api-key-file` flags
/// and the `--config` path (for `auth login` as for `run`).
///
/// # Errors
/// As [`api_key`].
pub(crate) fn api_key_from(
    flag: Option<&Secret>,
    flag_file: Option<&Path>,
    config: Option<&Path>,
    cfg: &Config,
) -> anyhow::Result<Option<Secret>> {
    if let Some(path) = config {
        let inline = [
            (!cfg.zerodha.api_key.is_empty() && std::env::var_os("ZERODHA__API_KEY").is_none())
                .then_some("zerodha.api_key"),
            (!cfg.zerodha.api_secret.is_empty()
                && std::env::var_os("ZERODHA__API_SECRET").is_none())
            .then_some("zerodha.api_secret"),
            (!url_secrets(&cfg.redis.url).is_empty() && std::env::var_os("REDIS__URL").is_none())
                .then_some("the password of redis.url"),
        ];
        for what in inline.into_iter().flatten() {
            let _ = warn_if_readable_by_others(path, &format!("config (it holds {what})"));
        }
    }
    if flag.is_some() && flag_file.is_some() {
        bail!("give --api-key-file or --api-key, not both (prefer --api-key-file)");
    }
    if let Some(k) = flag {
        warn!(
            "--api-key puts the key on the command line, visible to every user in `ps`; \
             use --api-key-file FILE (chmod 600) or ZERODHA__API_KEY instead"
        );
        return Ok(Some(k.clone()));
    }
    if let Some(p) = flag_file {
        return read_secret_file(p, "api key").map(Some);
    }
    if let Some(k) = env_secret("ZERODHA__API_KEY") {
        return Ok(Some(k));
    }
    let z = &cfg.zerodha;
    match (&z.api_key_file, z.api_key.is_empty()) {
        (Some(_), false) => {
            bail!("zerodha.api_key and zerodha.api_key_file are both set; keep api_key_file")
        }
        (Some(p), true) => read_secret_file(p, "api key").map(Some),
        (None, false) => Ok(Some(Secret::new(z.api_key.clone()))),
        (None, true) => Ok(None),
    }
}

/// The API secret (`auth login`): `ZERODHA__API_SECRET` or
/// `zerodha.api_secret`, or `zerodha.api_secret_file` (warned when readable
/// by others).
///
/// # Errors
/// None set, both set (naming both keys), or an unreadable file.
pub(crate) fn api_secret(cfg: &Config) -> anyhow::Result<Secret> {
    let z = &cfg.zerodha;
    match (&z.api_secret_file, z.api_secret.trim().is_empty()) {
        (Some(_), false) => bail!(
            "zerodha.api_secret (or ZERODHA__API_SECRET) and zerodha.api_secret_file are both \
             set; keep one (prefer the file, chmod 600)"
        ),
        (Some(p), true) => read_secret_file(p, "api secret"),
        (None, false) => Ok(Secret::new(z.api_secret.trim())),
        (None, true) => {
            bail!("no API secret: set ZERODHA__API_SECRET or zerodha.api_secret_file (chmod 600)")
        }
    }
}

/// The Redis URL: `--redis-url` (warned when it carries a password),
/// `REDIS__URL`, `redis.url_file`, `redis.url`.
///
/// # Errors
/// Both `redis.url` and `redis.url_file`, or an unreadable file.
pub(crate) fn redis_url(args: &RunArgs, cfg: &Config) -> anyhow::Result<String> {
    if let Some(u) = &args.redis_url {
        if !url_secrets(u.expose()).is_empty() || redact_url(u.expose()) == UNPARSABLE_URL {
            warn!(
                "--redis-url carries a password on the command line, visible to every user in \
                 `ps`; set REDIS__URL or redis.url_file (chmod 600) instead"
            );
        }
        return Ok(u.expose().to_owned());
    }
    if let Some(u) = env_secret("REDIS__URL") {
        return Ok(u.expose().to_owned());
    }
    let r = &cfg.redis;
    match (&r.url_file, r.url.is_empty()) {
        (Some(_), false) => bail!("redis.url and redis.url_file are both set; keep one"),
        (Some(p), true) => Ok(read_secret_file(p, "redis url")?.expose().to_owned()),
        (None, _) => Ok(r.url.clone()),
    }
}
