//! The API key and the current access token.
//!
//! Shared by the ops side, which replaces the token when its file changes,
//! and the network thread, which reads it at each connection attempt (never
//! on the hot path). The secret is sent in one place: the upgrade request's
//! URL, built here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::stats::lock;
use crate::secret::Secret;

/// The API key and the current access token, shared by the ops side and the
/// network thread.
#[derive(Debug)]
pub struct Credentials {
    api_key: Secret,
    token: Mutex<Secret>,
    generation: AtomicU64,
}

impl Credentials {
    /// Credentials with an initial token.
    #[must_use]
    pub fn new(api_key: Secret, token: Secret) -> Self {
        Self {
            api_key,
            token: Mutex::new(token),
            generation: AtomicU64::new(0),
        }
    }

    /// Replaces the access token; connections waiting after an HTTP 403
    /// retry at once. Returns `false` (and changes nothing) when it is the
    /// same token.
    pub fn set_token(&self, token: Secret) -> bool {
        let mut t = lock(&self.token);
        if *t == token {
            return false;
        }
        *t = token;
        // Bumped under the mutex, so a token and its generation are always
        // read together ([`url`](Self::url)). SeqCst (Relaxed would do for
        // the pair, which the mutex orders): the timers' unlocked
        // [`generation`](Self::generation) read sees it at the next turn.
        self.generation.fetch_add(1, Ordering::SeqCst);
        drop(t);
        true
    }

    /// Bumped by every token change; a connection refused with HTTP 403
    /// retries when it differs from the one it failed under.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// `base?api_key=…&access_token=…`, percent-encoded, with the
    /// generation of the token it carries (connection set-up: allocates).
    /// An attempt refused with HTTP 403 waits for a generation other than
    /// this one: a token written while the attempt was in flight has a
    /// newer generation already, so the attempt is retried at once
    /// (README, "Fault drills": token rewritten during an upgrade).
    pub(super) fn url(&self, base: &str) -> (Secret, u64) {
        let t = lock(&self.token);
        let token = t.clone();
        let generation = self.generation.load(Ordering::SeqCst);
        drop(t);
        let url = Secret::new(format!(
            "{base}?api_key={}&access_token={}",
            percent_encode(self.api_key.expose()),
            percent_encode(token.expose())
        ));
        (url, generation)
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_percent_encodes_the_secrets() {
        let c = Credentials::new(Secret::new("k y"), Secret::new("a/b+c~é"));
        assert_eq!(
            c.url("ws://h/").0.expose(),
            "ws://h/?api_key=k%20y&access_token=a%2Fb%2Bc~%C3%A9"
        );
    }

    #[test]
    fn a_new_token_bumps_the_generation_and_the_same_one_does_not() {
        let c = Credentials::new(Secret::new("k"), Secret::new("t1"));
        let g = c.generation();
        assert!(!c.set_token(Secret::new("t1")));
        assert_eq!(c.generation(), g);
        assert!(c.set_token(Secret::new("t2")));
        assert_eq!(c.generation(), g + 1);
        let (url, generation) = c.url("ws://h/");
        assert!(url.expose().ends_with("access_token=t2"));
        assert_eq!(generation, g + 1, "the URL carries its token's generation");
    }
}
