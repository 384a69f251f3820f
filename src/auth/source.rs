//! Which source gives the access token, by one precedence shared by `run`,
//! `check-config` and `auth status` (README "Credentials and auth"):
//!
//! 1. `--access-token-file FILE` (a flag of this invocation);
//! 2. the token itself, `zerodha.access_token` (`ZERODHA__ACCESS_TOKEN`,
//!    or the config file);
//! 3. `zerodha.access_token_command` or `zerodha.access_token_file`: both
//!    set is refused, naming both keys.
//!
//! Pure: decides from the settings, reads nothing. Main thread.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::command::TokenCommand;
use crate::config::ZerodhaConfig;
use crate::secret::Secret;

/// Where the access token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--access-token-file`: read at start, watched.
    FlagFile(PathBuf),
    /// `zerodha.access_token`; `from_env` when `ZERODHA__ACCESS_TOKEN` set it.
    Inline {
        /// Set by the environment (else by the config file).
        from_env: bool,
    },
    /// `zerodha.access_token_file`: read at start, watched.
    File(PathBuf),
    /// `zerodha.access_token_command`: run at start and re-run (README).
    Command(TokenCommand),
    /// None of them.
    None,
}

impl TokenSource {
    /// The source by the precedence above.
    ///
    /// # Errors
    /// `access_token_command` and `access_token_file` are both set.
    pub fn plan(flag_file: Option<&Path>, z: &ZerodhaConfig) -> anyhow::Result<Self> {
        if let Some(p) = flag_file {
            return Ok(Self::FlagFile(p.to_path_buf()));
        }
        if !z.access_token.trim().is_empty() {
            return Ok(Self::Inline {
                from_env: std::env::var_os("ZERODHA__ACCESS_TOKEN").is_some(),
            });
        }
        match (&z.access_token_file, z.access_token_command.is_empty()) {
            (Some(_), false) => bail!(
                "zerodha.access_token_command and zerodha.access_token_file are both set: \
                 keep one (the command, or the file that `auth login` writes); \
                 --access-token-file or ZERODHA__ACCESS_TOKEN would override both"
            ),
            (Some(p), true) => Ok(Self::File(p.clone())),
            (None, false) => {
                if z.access_token_command[0].trim().is_empty() {
                    bail!("zerodha.access_token_command has an empty program name");
                }
                Ok(Self::Command(TokenCommand {
                    argv: z.access_token_command.clone(),
                    timeout: Duration::from_millis(z.access_token_command_timeout_ms),
                }))
            }
            (None, true) => Ok(Self::None),
        }
    }

    /// The token keys that are set but not used because this source wins
    /// (for a warning): `run` and `auth status` name them.
    #[must_use]
    pub fn overridden(&self, z: &ZerodhaConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        if matches!(self, Self::FlagFile(_) | Self::Inline { .. }) {
            if !z.access_token_command.is_empty() {
                out.push("zerodha.access_token_command");
            }
            if z.access_token_file.is_some() && matches!(self, Self::Inline { .. }) {
                out.push("zerodha.access_token_file");
            }
        }
        if matches!(self, Self::FlagFile(_)) && !z.access_token.trim().is_empty() {
            out.push("zerodha.access_token");
        }
        out
    }

    /// The watched file, for the file sources.
    #[must_use]
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::FlagFile(p) | Self::File(p) => Some(p),
            _ => None,
        }
    }

    /// The source as `auth status` and the logs name it (never the token).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::FlagFile(p) => format!("file {} (--access-token-file)", p.display()),
            Self::Inline { from_env: true } => "environment (ZERODHA__ACCESS_TOKEN)".into(),
            Self::Inline { from_env: false } => {
                "config (zerodha.access_token in the config file)".into()
            }
            Self::File(p) => format!("file {} (zerodha.access_token_file)", p.display()),
            Self::Command(c) => format!(
                "command {:?} (zerodha.access_token_command, timeout {} ms)",
                c.name(),
                c.timeout.as_millis()
            ),
            Self::None => "none".into(),
        }
    }
}

/// The trimmed token in `path`.
///
/// # Errors
/// The file cannot be read or is empty; the message names it and the fix.
pub fn read_token_file(path: &Path) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read access token file {}; write the day's token there \
             (panda-feed auth login) or set ZERODHA__ACCESS_TOKEN",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        bail!(
            "access token file {} is empty; write the day's access token there \
             (panda-feed auth login)",
            path.display()
        );
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_the_refused_combination() {
        let mut z = ZerodhaConfig {
            access_token_file: Some("/f".into()),
            ..ZerodhaConfig::default()
        };
        assert_eq!(
            TokenSource::plan(None, &z).unwrap(),
            TokenSource::File("/f".into())
        );
        z.access_token_command = vec!["get-token".into()];
        let e = TokenSource::plan(None, &z).unwrap_err().to_string();
        assert!(
            e.contains("zerodha.access_token_command") && e.contains("zerodha.access_token_file"),
            "{e}"
        );
        assert_eq!(
            TokenSource::plan(Some(Path::new("/g")), &z).unwrap(),
            TokenSource::FlagFile("/g".into())
        );
        z.access_token_file = None;
        assert!(matches!(
            TokenSource::plan(None, &z).unwrap(),
            TokenSource::Command(c) if c.name() == "get-token"
        ));
        z.access_token = "t".into();
        let inline = TokenSource::plan(None, &z).unwrap();
        assert!(matches!(inline, TokenSource::Inline { .. }));
        assert_eq!(inline.overridden(&z), ["zerodha.access_token_command"]);
        assert_eq!(
            TokenSource::plan(None, &ZerodhaConfig::default()).unwrap(),
            TokenSource::None
        );
    }
}
