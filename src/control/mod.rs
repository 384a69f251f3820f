//! The control plane's pure parts (README, "Control plane"): the
//! subscription [`Reloader`] (debounce, coalesce, rate, in-flight and queue
//! bounds), the versioned instrument [`Universe`], and hot reload's rules
//! ([`policy`]: live versus restart-only keys).
//!
//! The `run` loop (`cmd/run_control.rs`) owns one of each and drives them:
//! it takes the triggers (SIGHUP, the ops endpoints, the instruments file),
//! hands desired subscription states to the network thread
//! ([`Engine::set_subscriptions`](crate::engine::Engine::set_subscriptions)),
//! and publishes its state to the ops view. Nothing here runs on the
//! engine's threads.

pub mod policy;
pub mod reloader;
pub mod universe;

pub use reloader::{ModeSets, Refused, Reloader, ReloaderCounts, SubRequest};
pub use universe::{Universe, UniverseVersion, version_of};
