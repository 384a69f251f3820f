//! `[fields]`: which optional parts of the published tick are sent (depth,
//! OI, OHLC, timestamps), for all modes and per mode. Read on the main
//! thread; [`crate::fields::FieldSelection::from_config`] turns it into the
//! bitmask the publishers read. Every key is a flat boolean so each can be
//! set from the environment (`FIELDS__DEPTH`, `FIELDS__FULL_OI`, ...) and
//! `check-config` shows each with its source.

use serde::{Deserialize, Serialize};

use super::defaults;

/// `[fields]` settings. A part is sent in a mode when that mode's key says
/// so, or, when the mode's key is unset, when the all-modes key says so.
/// Omitted parts are omitted keys (never `null`s). Only the published
/// envelope is affected: `panda-feed decode` always writes every part.
/// Live: applied by a reload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldsConfig {
    /// `depth` (five buy and five sell levels) of full ticks.
    pub depth: bool,
    /// `oi`, `oi_day_high`, `oi_day_low` of full ticks.
    pub oi: bool,
    /// The `ohlc` object of quote and full ticks.
    pub ohlc: bool,
    /// `last_trade_time` and `exchange_timestamp` of full ticks.
    pub timestamps: bool,
    /// Quote mode's `ohlc`; unset: `ohlc`.
    pub quote_ohlc: Option<bool>,
    /// Full mode's `depth`; unset: `depth`.
    pub full_depth: Option<bool>,
    /// Full mode's OI keys; unset: `oi`.
    pub full_oi: Option<bool>,
    /// Full mode's `ohlc`; unset: `ohlc`.
    pub full_ohlc: Option<bool>,
    /// Full mode's timestamps; unset: `timestamps`.
    pub full_timestamps: Option<bool>,
}

impl Default for FieldsConfig {
    fn default() -> Self {
        Self {
            depth: defaults::FIELDS_SENT,
            oi: defaults::FIELDS_SENT,
            ohlc: defaults::FIELDS_SENT,
            timestamps: defaults::FIELDS_SENT,
            quote_ohlc: None,
            full_depth: None,
            full_oi: None,
            full_ohlc: None,
            full_timestamps: None,
        }
    }
}
