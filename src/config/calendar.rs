//! `[calendar]`: the exchange calendar's holiday file and preloaded window
//! (README, "Calendar"). Read on the main thread at start-up; the ops side
//! builds the calendar from it (`crate::calendar`). Not live: a reload
//! keeps the calendar the feed started with.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defaults;

/// `[calendar]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarConfig {
    /// A holiday file (README, "Calendar") laid over the shipped ones: it
    /// replaces the shipped list of its year. Empty: the shipped lists only.
    pub file: PathBuf,
    /// Days before today the preloaded window holds.
    pub days_back: u64,
    /// Days after today the preloaded window holds.
    pub days_forward: u64,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::new(),
            days_back: defaults::CALENDAR_DAYS_BACK,
            days_forward: defaults::CALENDAR_DAYS_FORWARD,
        }
    }
}

impl CalendarConfig {
    /// Every problem with the settings (README "Ranges").
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        super::ranges::check(&mut p, "calendar.days_back", self.days_back);
        super::ranges::check(&mut p, "calendar.days_forward", self.days_forward);
        if let Some(f) = self.file()
            && let Err(e) = crate::calendar::Holidays::load(Some(f))
        {
            p.push(e);
        }
        p
    }

    /// The override file, if one is set.
    #[must_use]
    pub fn file(&self) -> Option<&std::path::Path> {
        (!self.file.as_os_str().is_empty()).then_some(self.file.as_path())
    }
}
