//! Secrets (API key, access token, URLs that carry them). A leaf: imports
//! nothing from the crate. Used on the main thread (configuration) and the
//! network thread (the one place a secret is sent: the upgrade request).

/// A secret string (API key, access token, a URL carrying them). Its `Debug`
/// never shows the value and it has no `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for the one place that must send it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `true` when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

/// `url` with any password replaced by `***`.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    // Only `user:password@` carries a secret; the password is what is hidden.
    // The last `@` ends it: a URL parser reads `redis://:p@ss@h` as password
    // `p@ss` (found by fuzz/fuzz_targets/config.rs). An `@` later in the path
    // hides more than the password, never less.
    match rest.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{host}", &url[..scheme_end])
        }
        _ => url.to_owned(),
    }
}
