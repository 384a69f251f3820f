//! SLO gap monitoring's engine-independent parts (README, "SLO
//! monitoring"; `docs/ARCHITECTURE.md`, "SLO gap monitor"): every
//! `slo.interval_s`, a sample of each tier's subscribed instruments is
//! checked for a last tick older than twice the tier's expected interval
//! while the instrument's market is open.
//!
//! A leaf (imports only `tier`), so the engine can hold the table:
//! - [`table`]: the last-tick table the network thread writes (one relaxed
//!   store per pushed tick) and the ops side reads;
//! - [`monitor`]: the pure sampling round, on a clock the caller gives.
//!
//! The ops side's glue (the engine's subscriptions, the calendar, the
//! `/health` note) is `crate::ops::slo`.

pub mod monitor;
pub mod table;

pub use monitor::{Gap, Market, Monitor, Settings, SloView, TierRound};
pub use table::LastTicks;
