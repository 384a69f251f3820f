//! The auth boundary: where the day's access token comes from
//! ([`source`]: a flag, the environment, the config, a file, or an external
//! command), running that command with a timeout ([`command`]), and Kite's
//! session exchange that turns a login's request token into an access token
//! written where the feed reads it ([`session`], `panda-feed auth login`).
//!
//! Runs on the main thread (start-up, the `auth` commands, the `run` loop's
//! polls) and on the `token-command` helper thread, never on an engine
//! thread. No token, API secret or checksum is ever logged or put in an
//! error (README "Credentials and auth").

pub mod command;
pub mod session;
pub mod source;
