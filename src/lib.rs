//! panda-feed: a low-latency market-data feed handler for the Zerodha Kite
//! Connect streaming API.
//!
//! Contract of the tick path: the binary decoder ([`wire`]) borrows the
//! received bytes and never allocates; a [`Tick`] is fixed-size `Copy` data;
//! JSON encoding ([`json`]) writes into a reused buffer and never allocates once
//! the buffer has reached its working size. Malformed input is an error value,
//! never a panic.
//!
//! Modules and the threads they run on:
//! - [`wire`]: Kite binary and text frames (network thread, `decode` command);
//! - [`tick`]: the normalized tick moved between threads;
//! - [`json`]: the published tick object (publisher threads, `decode` command);
//! - [`bars`]: one-minute bars, built on the publishers, handed to the ops
//!   side;
//! - [`fields`]: which optional parts of the published tick are sent (set on
//!   the ops side, read by the publishers);
//! - [`ring`]: bounded SPSC tick rings with drop counters (network → publisher);
//! - [`engine`]: the network thread, the publishers, the Kafka producer and
//!   the accounting (`docs/ARCHITECTURE.md`);
//! - [`stream`]: the downstream bar stream and its Redis replay lists (its
//!   own `stream` thread; fed by the publishers' bar hand-offs);
//! - [`spool`]: the dead-letter spool (publisher threads, failure path; `dlq`);
//! - [`slo`]: the SLO gap monitor: a last-tick table (written by the network
//!   thread, one store per tick) sampled per tier on the ops side;
//! - [`ops`]: metrics, health, Redis pipeline metrics and the ops HTTP
//!   server (ops side: the `run` loop and the `ops-http` thread);
//! - [`config`]: the `run` configuration;
//! - [`mock`]: the mock exchange (its own threads; not the engine);
//! - [`instruments`]: the instruments CSV;
//! - [`auth`]: the access token's sources, the token command and Kite's
//!   session exchange (main thread, `token-command` helper thread);
//! - [`cmd`]: the binary's subcommands (main thread);
//! - [`calendar`]: exchange sessions, holidays, the preloaded window (built on
//!   the main thread and the ops side; per-tick queries are O(1));
//! - [`sys`]: the libc calls that need `unsafe` (`mlockall`; main thread);
//! - [`clock`]: the time source and date formatting (a leaf);
//! - [`secret`]: the secret type whose `Debug` never shows it (a leaf);
//! - [`run_id`]: the random id of a run, carried in every envelope (a leaf);
//! - [`logging`]: `tracing` set-up, rate limiting and truncation of log text;
//! - [`cli`]: argument parsing, the only place argv is read.

pub mod auth;
pub mod bars;
pub mod calendar;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod control;
pub mod engine;
pub mod fields;
pub mod instruments;
pub mod json;
pub mod logging;
pub mod mock;
pub mod ops;
pub mod ring;
pub mod run_id;
pub mod secret;
pub mod slo;
pub mod spool;
pub mod stream;
#[allow(
    unsafe_code,
    reason = "libc mlockall/getrlimit, each call with a SAFETY note"
)]
pub mod sys;
pub mod tick;
pub mod tier;
pub mod wire;

pub use tick::{InstrumentToken, Mode, PacketKind, Tick};
