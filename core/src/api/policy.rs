//! The update policy's words in the API: versions that failed here and when they are tried
//! again, the maintenance window, the application's consent and the factory reset's
//! confirmation, as `/v1/status` and `/v1/factory-reset` answer them.

use serde::{Deserialize, Serialize};

/// The answer to a first `POST /v1/factory-reset`: the token that confirms it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetConfirm {
    /// Send it back as `?confirm=…` within `expires_in_s`.
    pub confirm: String,
    /// Seconds the token is good for.
    pub expires_in_s: u64,
    /// What a reset does, in words.
    pub wipes: String,
}

/// The maintenance windows as the device sees them now (`[update] windows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStatus {
    /// A window is open: updates may be applied.
    pub open: bool,
    /// When one is next open (now, when open; Unix seconds).
    pub next_open: i64,
}

/// An update installed into the idle slot, verified, and waiting to be applied (its entry
/// staged: the boot loader does not load it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedStatus {
    /// The slot it is in.
    pub slot: crate::layout::Slot,
    /// Its version.
    pub version: String,
    /// When the device applies it by itself (Unix seconds): the next maintenance window, or
    /// when the application is asked again. None: only an operator (`slate apply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_at: Option<i64>,
    /// `window`, `immediate`, `manual` (`[update] reboot`), or `operator` for `--stage`.
    pub by: String,
}

/// An update the application (`[update] consent`) holds back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentStatus {
    /// The version held back.
    pub version: String,
    /// `not-now` (exit 75) or `no`.
    pub answer: String,
    /// What it said (its exit status and last line of output).
    pub reason: String,
    /// When it is asked again (Unix seconds).
    pub ask_again_at: i64,
}

/// A version that failed here: not installed again without force before `retry_at`, and
/// never once [`crate::retry`] says its failures are final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    /// Version.
    pub version: String,
    /// Why it failed (the last time).
    pub reason: String,
    /// Times it failed here. Records from agents before bounded retries read as 1.
    #[serde(default = "one")]
    pub failures: u32,
    /// Of those, how many were its own health checks' verdict (rather than a boot that never
    /// reached them): two are final, whatever the back-off.
    #[serde(default)]
    pub verdicts: u32,
    /// When it last failed (Unix seconds; none in records from earlier agents).
    #[serde(default)]
    pub at: Option<i64>,
    /// From when it may be taken again without force (Unix seconds); none: never.
    #[serde(default)]
    pub retry_at: Option<i64>,
}

fn one() -> u32 {
    1
}
