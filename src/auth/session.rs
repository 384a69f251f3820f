//! Kite's session exchange (`POST {api_root}/session/token`, as the official
//! client's `generate_session`): a request token from the login redirect,
//! the API key and the checksum SHA-256(api_key + request_token +
//! api_secret) become the day's access token. Blocking HTTPS (`ureq` over
//! rustls with ring; no async runtime), on the main thread of `auth login`.
//! Also the atomic, mode-0600 write of the token where `run` reads it.
//!
//! Nothing here puts a secret in an error: Kite's own message is server
//! text and is escaped and cut before it is shown.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::logging::truncate;
use crate::secret::Secret;

/// Longest server text (Kite's `message`, a non-JSON body) shown, bytes.
const MAX_SHOWN: usize = 300;
/// Largest response body read, bytes.
const MAX_BODY: u64 = 1 << 20;

/// What the session exchange needs.
#[derive(Debug, Clone)]
pub struct Login {
    /// `zerodha.api_root`, e.g. `https://api.kite.trade`.
    pub api_root: String,
    /// The app's API key.
    pub api_key: Secret,
    /// The app's API secret.
    pub api_secret: Secret,
    /// The request token of the login redirect (single use, minutes).
    pub request_token: Secret,
    /// Deadline of the whole call.
    pub timeout: Duration,
}

/// A session: the access token and who it belongs to.
#[derive(Debug)]
pub struct Session {
    /// The access token.
    pub access_token: Secret,
    /// Kite's `user_id` (not a secret).
    pub user_id: String,
}

/// Why the session exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// `api_root` is not a URL panda-feed will send a secret to.
    #[error("{0}")]
    ApiRoot(String),
    /// No answer (DNS, connect, TLS, timeout).
    #[error("the request to {url} failed: {detail}; check zerodha.api_root and the network")]
    Transport {
        /// The endpoint (no secret in it).
        url: String,
        /// ureq's error.
        detail: String,
    },
    /// Kite's JSON error: `{"status":"error","error_type":…,"message":…}`.
    #[error(
        "Kite refused the session exchange (HTTP {status}): {error_type}: {message}\n  fix: {fix}"
    )]
    Kite {
        /// HTTP status.
        status: u16,
        /// `error_type`, e.g. `TokenException`.
        error_type: String,
        /// Kite's message, escaped and cut.
        message: String,
        /// What to do.
        fix: &'static str,
    },
    /// A response that is not Kite's JSON.
    #[error("unexpected answer from {url} (HTTP {status}): {detail}")]
    Unexpected {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// What was wrong, server text escaped and cut.
        detail: String,
    },
}

/// The fix for each of Kite's error types (pykiteconnect `exceptions.py`).
#[must_use]
pub fn fix_for(error_type: &str) -> &'static str {
    match error_type {
        "TokenException" => {
            "the request token has expired or was used already (it works once, for a few \
             minutes), or the api_secret does not belong to this api_key: log in again \
             (https://kite.zerodha.com/connect/login?v=3&api_key=YOUR_KEY) and run \
             `panda-feed auth login` at once with the new request_token"
        }
        "InputException" => {
            "a parameter is missing or malformed: copy the request_token exactly from the \
             redirect URL, and check the api_key and zerodha.api_root"
        }
        "PermissionException" => {
            "this api_key may not create sessions: check the app on developers.kite.trade \
             (subscription, redirect URL)"
        }
        "NetworkException" => "Kite could not reach its own upstream: retry in a minute",
        "DataException" => "Kite's backend returned bad data: retry in a minute",
        "GeneralException" => {
            "an unclassified Kite error: retry; if it persists, check Kite's status page or \
             support"
        }
        "OrderException" | "UserException" => {
            "unexpected for a session exchange: check the Kite account (is it active and \
             enabled for API use?) and retry"
        }
        _ => "an error type panda-feed does not know: read Kite's message and retry",
    }
}

/// SHA-256 hex of `api_key + request_token + api_secret`.
#[must_use]
pub fn checksum(api_key: &str, request_token: &str, api_secret: &str) -> Secret {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [api_key, request_token, api_secret] {
        ctx.update(part.as_bytes());
    }
    let mut hex = String::with_capacity(64);
    for b in ctx.finish().as_ref() {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
    }
    Secret::new(hex)
}

/// `root` checked: `https://`, or `http://` to a loopback host only (a
/// local mock); no userinfo, query or fragment. Returns the endpoint URL.
///
/// # Errors
/// Anything else, with the reason.
pub fn session_url(root: &str) -> Result<String, LoginError> {
    let bad = |why: &str| LoginError::ApiRoot(format!("zerodha.api_root {root:?} {why}"));
    let u = url::Url::parse(root).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(bad(
                "is plain http to a host that is not loopback: the API secret's checksum and \
                 the token would cross the network in clear; use https://",
            ));
        }
        s => return Err(bad(&format!("has scheme {s:?}; use https://"))),
    }
    if u.host().is_none()
        || !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
    {
        return Err(bad(
            "must be a plain https://host[:port][/path] (no user, query or fragment)",
        ));
    }
    Ok(format!("{}/session/token", root.trim_end_matches('/')))
}

/// Performs the session exchange.
///
/// # Errors
/// A bad `api_root`, no answer, Kite's JSON error (by type, with the fix),
/// or an answer that is not Kite's JSON.
pub fn exchange(login: &Login) -> Result<Session, LoginError> {
    let url = session_url(&login.api_root)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(login.timeout))
        .http_status_as_error(false)
        // A redirect would re-send the form (the checksum) elsewhere.
        .max_redirects(0)
        .user_agent(concat!("panda-feed/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let sum = checksum(
        login.api_key.expose(),
        login.request_token.expose(),
        login.api_secret.expose(),
    );
    let transport = |e: ureq::Error| LoginError::Transport {
        url: url.clone(),
        detail: truncate(&e.to_string(), MAX_SHOWN).into_owned(),
    };
    let mut resp = agent
        .post(&url)
        .header("X-Kite-Version", "3")
        .send_form([
            ("api_key", login.api_key.expose()),
            ("request_token", login.request_token.expose()),
            ("checksum", sum.expose()),
        ])
        .map_err(transport)?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(transport)?;
    parse_response(&url, status, &body)
}

/// Kite's answer: the session, or its error by type.
///
/// # Errors
/// As [`exchange`].
pub fn parse_response(url: &str, status: u16, body: &str) -> Result<Session, LoginError> {
    let unexpected = |detail: String| LoginError::Unexpected {
        url: url.to_owned(),
        status,
        detail,
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Err(unexpected(format!(
            "not JSON: {}",
            truncate(body.trim(), MAX_SHOWN)
        )));
    };
    let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
    if text("status") == Some("success") && (200..300).contains(&status) {
        let data = v.get("data");
        let field = |k: &str| {
            data.and_then(|d| d.get(k))
                .and_then(serde_json::Value::as_str)
        };
        return match field("access_token").map(str::trim) {
            Some(t) if !t.is_empty() && !t.chars().any(char::is_whitespace) => Ok(Session {
                access_token: Secret::new(t),
                user_id: truncate(field("user_id").unwrap_or("?"), 64).into_owned(),
            }),
            _ => Err(unexpected(
                "status success without a data.access_token".into(),
            )),
        };
    }
    match (text("status"), text("error_type")) {
        (Some("error"), Some(t)) | (_, Some(t)) => {
            let error_type = truncate(t, 64).into_owned();
            Err(LoginError::Kite {
                status,
                fix: fix_for(&error_type),
                message: truncate(text("message").unwrap_or(""), MAX_SHOWN).into_owned(),
                error_type,
            })
        }
        _ => Err(unexpected(format!(
            "JSON without status success or an error_type: {}",
            truncate(body.trim(), MAX_SHOWN)
        ))),
    }
}

/// Writes `token` to `path` atomically with mode 0600: a temporary file in
/// the same directory (created 0600, never wider), written, fsynced,
/// renamed over `path`, and the directory fsynced. A reader sees the old
/// token or the new one, never a mix; a feed watching `path` picks it up.
///
/// # Errors
/// The directory cannot be written, named with the path.
pub fn write_token_file(path: &Path, token: &Secret) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "token".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(token.expose().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_sha256_hex_of_the_three() {
        // sha256("abc") from FIPS 180-2.
        assert_eq!(
            checksum("a", "b", "c").expose(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn api_root_is_https_or_loopback_http() {
        assert_eq!(
            session_url("https://api.kite.trade").unwrap(),
            "https://api.kite.trade/session/token"
        );
        assert!(session_url("http://127.0.0.1:9/").is_ok());
        assert!(session_url("http://[::1]:9").is_ok());
        assert!(session_url("http://localhost:9").is_ok());
        for bad in [
            "http://api.kite.trade",
            "http://10.0.0.1",
            "ftp://x",
            "nonsense",
            "https://u:p@api.kite.trade",
            "https://api.kite.trade/?q=1",
        ] {
            assert!(session_url(bad).is_err(), "{bad}");
        }
        let e = session_url("http://api.kite.trade")
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain http") && e.contains("https://"), "{e}");
    }

    #[test]
    fn kite_errors_are_reported_by_type_with_their_fix() {
        let e = parse_response(
            "u",
            403,
            r#"{"status":"error","message":"Token is invalid or has expired.\u001b[2J","error_type":"TokenException"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("TokenException") && e.contains("log in again"),
            "{e}"
        );
        assert!(e.contains("\\u{1b}") && !e.contains('\u{1b}'), "{e}");
        let e = parse_response("u", 502, "<html>bad gateway</html>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("HTTP 502") && e.contains("not JSON"), "{e}");
        let s = parse_response(
            "u",
            200,
            r#"{"status":"success","data":{"access_token":"at","user_id":"AB1234"}}"#,
        )
        .unwrap();
        assert_eq!(
            (s.access_token.expose(), s.user_id.as_str()),
            ("at", "AB1234")
        );
    }

    #[test]
    fn the_token_file_is_written_0600_and_replaced_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pf-auth-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("token");
        std::fs::write(&p, "old\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_token_file(&p, &Secret::new("new")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
