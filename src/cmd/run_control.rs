//! The `run` loop's control plane (README, "Control plane"): hot reload
//! (SIGHUP, `POST /ops/reload`), validation (`POST /ops/validate`), live
//! subscriptions (`POST`/`GET /ops/subscriptions`, the instruments file
//! changing) and the versioned universe (`GET /stats/universe`).
//!
//! Runs on the main thread, inside the `run` loop (every 20 ms): it owns
//! the running settings, the [`Reloader`] and the [`Universe`], answers the
//! requests the ops HTTP thread queues (`ops/admin.rs`), and hands desired
//! subscription states to the network thread. Nothing here blocks on the
//! engine; a reload reads the config file (and the instruments file) on
//! this thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use super::check_config::{apply_flags, problems};
use super::credentials;
use crate::cli::RunArgs;
use crate::clock::now_ns;
use crate::config::Config;
use crate::config::env::Layered;
use crate::control::policy::{changed_keys, is_live, merge_live};
use crate::control::{Refused, Reloader, SubRequest, Universe};
use crate::engine::Engine;
use crate::logging::{LogHandle, MAX_LOGGED_TEXT, truncate};
use crate::ops::admin::{AdminAuth, AdminQueue, AdminRequest, Call};
use crate::ops::http::{Response, json as json_response, text};
use crate::ops::{ControlView, Ops};
use crate::secret::Secret;
use crate::tick::Mode;

/// The admin token in `path` (trimmed; warns when group/other can read it).
///
/// # Errors
/// An unreadable or empty file, named.
pub(crate) fn read_admin_token(path: &Path) -> anyhow::Result<Secret> {
    credentials::read_secret_file(path, "admin token (ops.admin_token_file)")
}

/// Who may call the control endpoints under `cfg`.
///
/// # Errors
/// The admin token file cannot be read.
pub(super) fn admin_auth(cfg: &Config) -> anyhow::Result<AdminAuth> {
    Ok(AdminAuth {
        token: cfg
            .ops
            .admin_token_file
            .as_deref()
            .map(read_admin_token)
            .transpose()?,
        allow_remote: cfg.ops.admin_remote,
    })
}

/// The instruments file as last read: metadata (checked every
/// `subscriptions.watch_ms`) and the SHA-256 of its bytes (compared when the
/// metadata changed: a rewrite with the same content changes nothing).
#[derive(Debug)]
struct FileWatch {
    path: PathBuf,
    stamp: Option<Stamp>,
    digest: [u8; 32],
    /// A new stamp seen once, waiting to be seen again (settled).
    settling: Option<Option<Stamp>>,
}

/// What the watch compares: mtime, length, inode.
type Stamp = (Option<std::time::SystemTime>, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok(), m.len(), m.ino()))
}

/// An instrument list and the SHA-256 of the file it came from (none for
/// the mock's default list).
type Loaded = (Vec<(u32, Mode)>, Option<[u8; 32]>);

fn digest_of(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The control plane of one `run`.
#[derive(Debug)]
pub(super) struct Control {
    args: RunArgs,
    running: Config,
    policy_version: u64,
    reloads_applied: u64,
    reloads_rejected: u64,
    reloader: Reloader,
    universe: Universe,
    /// Where the pending desired state came from (for its universe entry).
    pending_source: String,
    queue: Option<AdminQueue>,
    watch: Option<FileWatch>,
    next_watch: Instant,
    log: Option<LogHandle>,
}

impl Control {
    /// The control plane of a feed started with `running` (flags applied)
    /// and subscribed to `initial`.
    pub(super) fn new(
        args: &RunArgs,
        running: Config,
        initial: &[(u32, Mode)],
        queue: Option<AdminQueue>,
        log: Option<LogHandle>,
    ) -> Self {
        let z = &running.zerodha;
        let capacity = z.max_connections.saturating_mul(z.max_per_connection);
        let reloader = Reloader::new(&running.subscriptions, initial, capacity, z.default_mode);
        let source = z.instruments.as_ref().map_or_else(
            || "mock:default".to_owned(),
            |p| format!("file:{}", p.display()),
        );
        let keep = usize::try_from(running.subscriptions.universe_history).unwrap_or(1);
        let universe = Universe::new(initial, &source, now_ns(), keep);
        let watch = z.instruments.as_ref().and_then(|p| {
            Some(FileWatch {
                stamp: stamp(p),
                digest: digest_of(&std::fs::read(p).ok()?),
                path: p.clone(),
                settling: None,
            })
        });
        Self {
            args: args.clone(),
            running,
            policy_version: 0,
            reloads_applied: 0,
            reloads_rejected: 0,
            reloader,
            universe,
            pending_source: source,
            queue,
            watch,
            next_watch: Instant::now(),
            log,
        }
    }

    /// The settings version (bumped by every applied reload).
    pub(super) const fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// The status line's period under the running settings.
    pub(super) fn status_interval(&self) -> Duration {
        Duration::from_millis(self.running.run.status_interval_ms)
    }

    /// One turn of the `run` loop: a reload on SIGHUP, the queued requests,
    /// the instruments file, and a due subscription change.
    pub(super) fn turn(&mut self, now: Instant, hup: bool, engine: &Engine, ops: &mut Ops) {
        if hup {
            // Outcome logged inside.
            let _ = self.reload("SIGHUP", engine, ops);
        }
        while let Some(req) = self.queue.as_ref().and_then(AdminQueue::next) {
            self.handle(req, now, engine, ops);
        }
        let watch_ms = self.running.subscriptions.watch_ms;
        if watch_ms > 0 && now >= self.next_watch {
            self.next_watch = now + Duration::from_millis(watch_ms);
            self.check_file(now);
        }
        if let Some(d) = self.reloader.due(now, engine.subscriptions_applied()) {
            let u = self
                .universe
                .record(&d.tokens, &self.pending_source, now_ns(), d.version);
            info!(
                "subscriptions: applying version {} ({} instruments; universe {} from {}: +{} \
                 -{} ~{})",
                d.version,
                d.tokens.len(),
                &u.version[..16],
                u.source,
                u.added,
                u.removed,
                u.mode_changed
            );
            engine.set_subscriptions(d);
        }
        self.publish(ops, engine);
    }

    /// The control view, into the ops view.
    pub(super) fn publish(&self, ops: &mut Ops, engine: &Engine) {
        let mut subs = self.reloader.counts();
        subs.applied_version = engine.subscriptions_applied();
        ops.set_control(ControlView {
            policy_version: self.policy_version,
            reloads_applied: self.reloads_applied,
            reloads_rejected: self.reloads_rejected,
            universe: Some(self.universe.current().clone()),
            subscriptions: subs,
        });
    }

    /// For the summary: the settings version, the universe and the
    /// reloader's counters.
    pub(super) fn summary(&self) -> serde_json::Value {
        json!({
            "policy_version": self.policy_version,
            "reloads_applied": self.reloads_applied,
            "reloads_rejected": self.reloads_rejected,
            "universe": self.universe.current(),
            "subscriptions": self.reloader.counts(),
        })
    }

    fn handle(&mut self, req: AdminRequest, now: Instant, engine: &Engine, ops: &mut Ops) {
        let resp = match &req.call {
            Call::Reload => match self.reload("POST /ops/reload", engine, ops) {
                Ok((applied, restart)) => json_response(
                    200,
                    &json!({
                        "ok": true,
                        "policy_version": self.policy_version,
                        "applied": applied,
                        "restart_required": restart,
                    }),
                ),
                Err(errors) => json_response(
                    422,
                    &json!({
                        "ok": false,
                        "policy_version": self.policy_version,
                        "errors": errors,
                    }),
                ),
            },
            Call::Validate(body) => {
                let errors = self.check_text(body);
                json_response(200, &json!({"ok": errors.is_empty(), "errors": errors}))
            }
            Call::Subscribe(body) => self.subscribe(body, now),
            Call::Subscriptions => self.subscriptions(engine),
            Call::Universe => json_response(
                200,
                &json!({
                    "current": self.universe.current(),
                    "history": self.universe.history(),
                }),
            ),
        };
        req.answer(resp);
    }

    fn subscribe(&mut self, body: &str, now: Instant) -> Response {
        let req: SubRequest = match serde_json::from_str(body) {
            Ok(r) => r,
            Err(e) => {
                return text(
                    400,
                    format!(
                        "bad request: {e}; expected {{\"subscribe\":[tokens], \
                         \"unsubscribe\":[tokens], \"mode\":{{\"full\":[..], \"quote\":[..], \
                         \"ltp\":[..]}}}}\n"
                    ),
                );
            }
        };
        match self.reloader.request(&req, now) {
            Ok(v) => {
                self.pending_source = "api".into();
                json_response(
                    202,
                    &json!({"accepted": true, "version": v, "desired": self.reloader.desired().len()}),
                )
            }
            Err(Refused::QueueFull(n)) => text(
                429,
                format!(
                    "too many requests: {n} changes already wait for the next application \
                     (subscriptions.queue); retry after it\n"
                ),
            ),
            Err(Refused::Invalid(why)) => text(400, format!("bad request: {why}\n")),
            Err(Refused::TooMany(why)) => text(422, format!("{why}\n")),
        }
    }

    fn subscriptions(&self, engine: &Engine) -> Response {
        let pairs = |v: &[(u32, Mode)]| -> Vec<serde_json::Value> {
            v.iter().map(|(t, m)| json!([t, m.as_str()])).collect()
        };
        let desired = self.reloader.desired();
        let conns: Vec<serde_json::Value> = engine
            .connection_subscriptions()
            .iter()
            .enumerate()
            .map(|(i, s)| json!({"index": i, "count": s.len(), "subscriptions": pairs(s)}))
            .collect();
        let c = self.reloader.counts();
        json_response(
            200,
            &json!({
                "desired_version": c.desired_version,
                "applied_version": engine.subscriptions_applied(),
                "desired": {"count": desired.len(), "subscriptions": pairs(&desired)},
                "connections": conns,
            }),
        )
    }

    /// Every problem of `text` as the config file, with this process's
    /// environment and flags (what a reload would find).
    fn check_text(&self, text: &str) -> Vec<String> {
        match Layered::from_text(text, "request body") {
            Err(p) => p,
            Ok(l) => {
                let mut cfg = l.config;
                apply_flags(&self.args, &mut cfg);
                let mut p = l.env_problems;
                p.extend(problems(&self.args, &cfg));
                p
            }
        }
    }

    /// Loads, checks and applies the config file: the live keys take
    /// effect, the restart-only ones are named; an invalid file changes
    /// nothing. Returns `(applied, restart_required)` keys.
    fn reload(
        &mut self,
        why: &str,
        engine: &Engine,
        ops: &mut Ops,
    ) -> Result<(Vec<String>, Vec<String>), Vec<String>> {
        let r = self.try_reload(engine, ops);
        match &r {
            Ok((applied, restart)) => {
                info!(
                    "reload ({why}): applied, policy_version {}; changed live: {}; needs a \
                     restart (kept): {}",
                    self.policy_version,
                    list(applied),
                    list(restart)
                );
            }
            Err(errors) => {
                self.reloads_rejected += 1;
                error!(
                    "reload ({why}): rejected, policy_version stays {}; {} problem(s): {}",
                    self.policy_version,
                    errors.len(),
                    truncate(&errors.join("; "), MAX_LOGGED_TEXT * 4)
                );
            }
        }
        self.publish(ops, engine);
        r
    }

    fn try_reload(
        &mut self,
        engine: &Engine,
        ops: &mut Ops,
    ) -> Result<(Vec<String>, Vec<String>), Vec<String>> {
        let l = Layered::load(self.args.config.as_deref())?;
        let mut cfg = l.config;
        apply_flags(&self.args, &mut cfg);
        let mut p = l.env_problems;
        p.extend(problems(&self.args, &cfg));
        if !p.is_empty() {
            return Err(p);
        }
        let changed = changed_keys(&self.running, &cfg);
        let (applied, restart): (Vec<String>, Vec<String>) =
            changed.into_iter().partition(|k| is_live(k));
        let merged = merge_live(&self.running, &cfg).map_err(|e| vec![e])?;
        // Everything that can fail is read before anything is applied.
        let auth = admin_auth(&merged).map_err(|e| vec![format!("{e:#}")])?;
        let mut redis = merged.redis.clone();
        redis.url =
            credentials::redis_url(&self.args, &merged).map_err(|e| vec![format!("{e:#}")])?;
        redis.url_file = None;
        let list_changed = applied
            .iter()
            .any(|k| k == "zerodha.instruments" || k == "zerodha.default_mode");
        let new_list = if list_changed || self.file_changed(&merged) {
            let (list, digest) = self.load_list(&merged).map_err(|e| vec![e])?;
            let z = &self.running.zerodha;
            let capacity = z.max_connections.saturating_mul(z.max_per_connection);
            if list.len() > capacity {
                return Err(vec![format!(
                    "the instruments file holds {} instruments; the running connections hold at \
                     most {capacity} (zerodha.max_connections × max_per_connection, restart-only)",
                    list.len()
                )]);
            }
            Some((list, digest))
        } else {
            None
        };
        // Apply.
        if applied.iter().any(|k| k.starts_with("fields.")) {
            // From each publisher's next chunk on.
            engine.set_fields(crate::fields::FieldSelection::from_config(&merged.fields));
        }
        ops.set_thresholds(&merged.ops);
        ops.set_admin_auth(auth);
        if applied.iter().any(|k| k.starts_with("redis.")) {
            ops.set_redis(redis);
        }
        if let (Some(h), None) = (&self.log, &self.args.log_level) {
            // Checked by `problems` already.
            let _ = h.set(&merged.run.log_level);
        }
        self.reloader
            .configure(&merged.subscriptions, merged.zerodha.default_mode);
        self.universe
            .set_keep(usize::try_from(merged.subscriptions.universe_history).unwrap_or(1));
        self.running = merged;
        if let Some((list, digest)) = new_list {
            self.set_watch(digest);
            // Fits: `problems` checked the file against the connections.
            if self.reloader.replace(&list, Instant::now()).is_ok() {
                self.pending_source = format!("reload:{}", self.file_source());
            }
        }
        self.policy_version += 1;
        self.reloads_applied += 1;
        Ok((applied, restart))
    }

    fn file_source(&self) -> String {
        self.running.zerodha.instruments.as_ref().map_or_else(
            || "mock:default".to_owned(),
            |p| format!("file:{}", p.display()),
        )
    }

    /// Whether the instruments file of `cfg` differs (by content) from the
    /// one last loaded.
    fn file_changed(&self, cfg: &Config) -> bool {
        match (&cfg.zerodha.instruments, &self.watch) {
            (Some(p), Some(w)) => {
                *p != w.path || std::fs::read(p).map_or(true, |b| digest_of(&b) != w.digest)
            }
            (None, None) => false,
            _ => true,
        }
    }

    fn set_watch(&mut self, digest: Option<[u8; 32]>) {
        self.watch = match (&self.running.zerodha.instruments, digest) {
            (Some(p), Some(d)) => Some(FileWatch {
                path: p.clone(),
                stamp: stamp(p),
                digest: d,
                settling: None,
            }),
            _ => None,
        };
    }

    /// The instrument list `cfg` names, with the file's digest.
    fn load_list(&self, cfg: &Config) -> Result<Loaded, String> {
        let default_mode = cfg.zerodha.default_mode;
        match &cfg.zerodha.instruments {
            Some(p) => {
                let bytes = std::fs::read(p)
                    .map_err(|e| format!("cannot read instruments file {}: {e}", p.display()))?;
                let text = String::from_utf8_lossy(&bytes);
                let list = crate::instruments::parse(&text, &p.display().to_string())
                    .map_err(|e| format!("{e:#}"))?;
                Ok((
                    list.iter()
                        .map(|i| (i.token, i.mode.unwrap_or(default_mode)))
                        .collect(),
                    Some(digest_of(&bytes)),
                ))
            }
            None if self.args.mock => Ok((
                crate::mock::default_instruments(super::run::MOCK_DEFAULT_INSTRUMENTS)
                    .iter()
                    .map(|i| (i.token, i.mode.unwrap_or(default_mode)))
                    .collect(),
                None,
            )),
            None => Err("no instruments: zerodha.instruments is not set".into()),
        }
    }

    /// The instruments file changed (by content): its list becomes the
    /// desired state. A file that does not parse is reported and the
    /// desired state stays.
    fn check_file(&mut self, now: Instant) {
        let Some(w) = &mut self.watch else { return };
        let s = stamp(&w.path);
        if s == w.stamp {
            w.settling = None;
            return;
        }
        // A file being written (not renamed into place) is read only once
        // its metadata has stayed the same for one watch interval, so a
        // half-written list is never applied.
        if w.settling != Some(s) {
            w.settling = Some(s);
            return;
        }
        let path = w.path.clone();
        let before = s;
        match self.load_list(&self.running) {
            Ok((list, digest)) => {
                if stamp(&path) != before {
                    // Changed while it was read: read again once it settles.
                    return;
                }
                let same = self
                    .watch
                    .as_ref()
                    .is_some_and(|w| digest.is_some_and(|d| d == w.digest));
                self.set_watch(digest);
                if same {
                    return;
                }
                match self.reloader.replace(&list, now) {
                    Ok(v) => {
                        self.pending_source = format!("file:{}", path.display());
                        info!(
                            "instruments file {} changed: {} instruments, desired version {v}",
                            path.display(),
                            list.len()
                        );
                    }
                    Err(Refused::TooMany(why) | Refused::Invalid(why)) => {
                        warn!(
                            "instruments file {} changed: {why}; not applied",
                            path.display()
                        );
                    }
                    Err(Refused::QueueFull(_)) => {}
                }
            }
            Err(e) => {
                // Keep the old stamp's successor: the same broken file is
                // reported once, a fixed one is read again.
                if let Some(w) = &mut self.watch {
                    w.stamp = s;
                }
                warn!(
                    "instruments file {} changed but cannot be used: {}; the subscriptions stay",
                    path.display(),
                    truncate(&e, MAX_LOGGED_TEXT)
                );
            }
        }
    }
}

fn list(keys: &[String]) -> String {
    if keys.is_empty() {
        "none".into()
    } else {
        keys.join(", ")
    }
}
