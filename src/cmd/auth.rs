//! `panda-feed auth login` (Kite's session exchange; the token written
//! where the feed reads it) and `panda-feed auth status` (the token's
//! source and age, never the token). Main thread; the only network call is
//! the one blocking HTTPS request of `login`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

use super::credentials;
use crate::auth::command::run_command;
use crate::auth::session::{self, Login};
use crate::auth::source::{TokenSource, read_token_file};
use crate::cli::{AuthArgs, AuthCommand};
use crate::config::Config;
use crate::config::env::Layered;
use crate::logging::LogFormat;
use crate::secret::Secret;

/// Runs `auth login` or `auth status`; exit 0 or 1.
#[must_use]
pub fn run(args: &AuthArgs) -> ExitCode {
    if let Err(e) = crate::logging::init(LogFormat::Text, "warn") {
        eprintln!("panda-feed: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = load(args).and_then(|cfg| match &args.command {
        AuthCommand::Login {
            request_token,
            api_root,
            api_key_file,
        } => login(
            args,
            &cfg,
            request_token,
            api_root.as_deref(),
            api_key_file.as_deref(),
        ),
        AuthCommand::Status => status(args, &cfg),
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("panda-feed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The settings as `run` loads them (defaults < file < environment).
fn load(args: &AuthArgs) -> anyhow::Result<Config> {
    let l = Layered::load(args.config.as_deref())
        .map_err(|p| anyhow::anyhow!("invalid settings:\n  {}", p.join("\n  ")))?;
    let mut p = l.env_problems;
    p.extend(l.config.zerodha.problems());
    if !p.is_empty() {
        bail!("invalid settings:\n  {}", p.join("\n  "));
    }
    Ok(l.config)
}

fn login(
    args: &AuthArgs,
    cfg: &Config,
    request_token: &Secret,
    api_root: Option<&str>,
    api_key_file: Option<&Path>,
) -> anyhow::Result<bool> {
    let target = args
        .access_token_file
        .clone()
        .or_else(|| cfg.zerodha.access_token_file.clone())
        .context(
            "nowhere to write the access token: set zerodha.access_token_file (the file \
             `run` reads and watches) or give --access-token-file",
        )?;
    let api_key = credentials::api_key_from(None, api_key_file, args.config.as_deref(), cfg)?
        .context("no API key: give --api-key-file, ZERODHA__API_KEY or zerodha.api_key_file")?;
    let api_secret = credentials::api_secret(cfg)?;
    if request_token.expose().trim().is_empty() {
        bail!("--request-token is empty: copy request_token from the login redirect URL");
    }
    let login = Login {
        api_root: api_root.unwrap_or(&cfg.zerodha.api_root).to_owned(),
        api_key,
        api_secret,
        request_token: Secret::new(request_token.expose().trim()),
        timeout: Duration::from_millis(cfg.zerodha.api_timeout_ms),
    };
    let s = session::exchange(&login).context("auth login")?;
    session::write_token_file(&target, &s.access_token).with_context(|| {
        format!(
            "auth login: the session was created but the token could not be written to {} \
             (its directory must be writable); log in again once fixed",
            target.display()
        )
    })?;
    println!(
        "panda-feed: wrote the access token of user {} to {} (mode 0600); a running feed \
         reading it picks it up within a second",
        s.user_id,
        target.display()
    );
    Ok(true)
}

/// Prints the source, and for a file its mode, age and warnings; `true`
/// when a token is available.
fn status(args: &AuthArgs, cfg: &Config) -> anyhow::Result<bool> {
    let source = TokenSource::plan(args.access_token_file.as_deref(), &cfg.zerodha)?;
    println!("source: {}", source.describe());
    for key in source.overridden(&cfg.zerodha) {
        println!("note: {key} is set but not used (this source wins)");
    }
    let available = match &source {
        TokenSource::FlagFile(p) | TokenSource::File(p) => file_status(p),
        TokenSource::Inline { .. } => {
            println!("token: set (never shown); its age is unknown");
            true
        }
        TokenSource::Command(c) => {
            let t0 = std::time::Instant::now();
            match run_command(c) {
                Ok(_) => {
                    println!(
                        "token: printed by the command in {} ms (never shown)",
                        t0.elapsed().as_millis()
                    );
                    true
                }
                Err(e) => {
                    println!("error: {e}");
                    false
                }
            }
        }
        TokenSource::None => {
            println!(
                "error: no access token: set zerodha.access_token_file (written by \
                 `panda-feed auth login`), zerodha.access_token_command or ZERODHA__ACCESS_TOKEN"
            );
            false
        }
    };
    Ok(available)
}

/// The file's mode, age and warnings; `true` when it holds a token.
fn file_status(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => {
            println!("error: missing: cannot read {}: {e}", p.display());
            return false;
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    println!("mode: {mode:04o}");
    if mode & 0o044 != 0 {
        println!(
            "warning: readable by group/other; run: chmod 600 {}",
            p.display()
        );
    }
    if let Ok(m) = meta.modified() {
        let age = SystemTime::now().duration_since(m).unwrap_or_default();
        println!(
            "age: {} s (modified {})",
            age.as_secs(),
            crate::clock::rfc3339_ms(
                m.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            )
        );
        if written_before_last_expiry(m) {
            println!(
                "warning: written before today's 06:00 IST, when Kite expires every access \
                 token: log in again (panda-feed auth login)"
            );
        }
    }
    match read_token_file(p) {
        Ok(_) => {
            println!("token: present (never shown)");
            true
        }
        Err(e) => {
            println!("error: {e:#}");
            false
        }
    }
}

/// `true` when `mtime` is before the last 06:00 IST (00:30 UTC), Kite's
/// daily expiry of access tokens.
fn written_before_last_expiry(mtime: SystemTime) -> bool {
    const DAY: u64 = 86_400;
    const EXPIRY_UTC: u64 = 30 * 60;
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let now = secs(SystemTime::now());
    let last = (now.saturating_sub(EXPIRY_UTC) / DAY) * DAY + EXPIRY_UTC;
    secs(mtime) < last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_from_before_the_last_0600_ist_is_stale() {
        let now = SystemTime::now();
        assert!(!written_before_last_expiry(now));
        assert!(written_before_last_expiry(
            now - Duration::from_secs(86_400 + 60)
        ));
    }
}
