//! Secrets (API key, access token, URLs that carry them). A leaf: imports
//! nothing from the crate. Used on the main thread (configuration) and the
//! network thread (the one place a secret is sent: the upgrade request).
//!
//! URLs are redacted by parsing them with the `url` crate, the parser the
//! redis client itself uses, so the password hidden is the password the
//! client would send, whatever characters it holds (README "Security").

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

/// What a URL that cannot be parsed is shown as: it is never echoed.
pub const UNPARSABLE_URL: &str = "<redacted url>";

/// What a hidden value is replaced with.
const MASK: &str = "***";

/// Query parameters whose values are secrets (compared case-insensitively).
const SECRET_PARAMS: [&str; 4] = ["pass", "password", "auth", "token"];

fn is_secret_param(name: &str) -> bool {
    SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// `url` with its secrets replaced by `***`: the password of the userinfo
/// (everything between the userinfo's first `:` and the last `@` before the
/// host), the values of `pass`, `password`, `auth` and `token` query
/// parameters (any case), and any fragment. A string that does not parse as
/// a URL, or that has an `@` past its authority (a password holding `/`, `?`
/// or `#` cut the authority short), is shown as [`UNPARSABLE_URL`]. The empty
/// string stays empty.
#[must_use]
pub fn redact_url(url: &str) -> String {
    if url.is_empty() {
        return String::new();
    }
    let Ok(mut u) = url::Url::parse(url) else {
        return UNPARSABLE_URL.to_owned();
    };
    let tail = [
        u.path(),
        u.query().unwrap_or(""),
        u.fragment().unwrap_or(""),
    ];
    if tail.iter().any(|t| t.contains('@')) {
        return UNPARSABLE_URL.to_owned();
    }
    if u.password().is_some() && u.set_password(Some(MASK)).is_err() {
        return UNPARSABLE_URL.to_owned();
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    MASK.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if u.fragment().is_some() {
        u.set_fragment(Some(MASK));
    }
    u.into()
}

/// The secrets `url` carries, as they may appear in a client's error text:
/// the userinfo password and the secret query values, both as written and
/// percent-decoded. Empty when `url` does not parse (then [`redact_in`]
/// hides nothing it cannot find; callers show the URL only through
/// [`redact_url`]).
#[must_use]
pub fn url_secrets(url: &str) -> Vec<String> {
    let Ok(u) = url::Url::parse(url) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |raw: &str| {
        if raw.is_empty() {
            return;
        }
        let decoded = percent_decode(raw);
        if decoded != raw {
            out.push(decoded);
        }
        out.push(raw.to_owned());
    };
    if let Some(p) = u.password() {
        add(p);
    }
    for (k, v) in u.query_pairs() {
        if is_secret_param(&k) {
            add(&v);
        }
    }
    if let Some(q) = u.query() {
        for pair in q.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && is_secret_param(k)
            {
                add(v);
            }
        }
    }
    // Longest first: a secret that contains another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with every secret of `url` (see [`url_secrets`]) replaced by `***`:
/// for error messages of a client that was given `url`.
#[must_use]
pub fn redact_in(text: &str, url: &str) -> String {
    let mut out = text.to_owned();
    for s in url_secrets(url) {
        out = out.replace(&s, MASK);
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form_hides_the_password() {
        for (url, shown) in [
            (
                "redis://:hunter2@10.0.0.1:6379/2",
                "redis://:***@10.0.0.1:6379/2",
            ),
            ("redis://user:hunter2@h:1/0", "redis://user:***@h:1/0"),
            ("redis://:p@ss@host", "redis://:***@host"),
            ("rediss://:p@ss@host:6380", "rediss://:***@host:6380"),
            (
                "unix:///path.sock?pass=SECRET",
                "unix:///path.sock?pass=***",
            ),
            (
                "redis+unix:///p.sock?db=2&PassWord=SECRET",
                "redis+unix:///p.sock?db=2&PassWord=***",
            ),
            ("redis://h:1/0", "redis://h:1/0"),
            ("", ""),
            ("not a url", UNPARSABLE_URL),
            ("redis://u:1/y@h", UNPARSABLE_URL),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn errors_lose_the_secrets_in_every_spelling() {
        let url = "redis://u:a%40b@h?token=t0k";
        assert_eq!(
            redact_in("auth a@b / a%40b failed; token t0k", url),
            "auth *** / *** failed; token ***"
        );
    }

    mod property_tests {
        use super::super::*;
        use proptest::prelude::*;

        fn forms(pw: &str) -> Vec<String> {
            vec![
                format!("redis://:{pw}@127.0.0.1:6379/0"),
                format!("redis://user:{pw}@host"),
                format!("rediss://default:{pw}@host:6380/1"),
                format!("unix:///run/redis.sock?pass={pw}"),
                format!("redis+unix:///run/redis.sock?db=0&password={pw}"),
                format!("redis://h:1/0?AUTH={pw}"),
            ]
        }

        /// `s` with every byte outside `[A-Za-z0-9]` percent-encoded.
        fn encode(s: &str) -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        }

        proptest! {
            #[test]
            fn prop_no_redacted_form_contains_the_password(
                // `Q` appears in no form, so a match is the password's own.
                pw in "[a-z0-9@:/?#% ]{0,6}[@:/?#% ][a-z0-9@:/?#% ]{0,6}Q[a-z0-9@:/?#% ]{0,6}"
            ) {
                let enc = encode(&pw);
                for url in forms(&pw).into_iter().chain(forms(&enc)) {
                    let shown = redact_url(&url);
                    prop_assert!(!shown.contains(&pw), "{url} -> {shown}");
                    prop_assert!(!shown.contains(&enc), "{url} -> {shown}");
                    for s in url_secrets(&url) {
                        let text = redact_in(&format!("client error: {s}!"), &url);
                        prop_assert!(!text.contains(&s), "{text}");
                    }
                }
            }
        }
    }
}
