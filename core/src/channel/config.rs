//! The device's channel settings (`/etc/slate/update.toml`), written by the imager from the
//! spec's `[update]` and read by the agent: one writer, one reader.

use super::{Poll, Span};
use crate::Version;
use serde::{Deserialize, Serialize};

/// Where and how the agent pulls updates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// Base URL of the TUF repository (`…/metadata/`, `…/targets/` below it); HTTPS.
    pub channel: super::ChannelUrl,
    /// The TUF root the image trusts first (baked in).
    pub root: String,
    /// CA certificates the server must chain to; none: Mozilla's roots, built in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Mean time between checks.
    pub poll_interval: Span,
    /// Jitter around it, in percent.
    pub jitter_percent: u64,
    /// First wait after a failed check; doubles per failure.
    pub backoff_base: Span,
    /// Longest wait after failures.
    pub backoff_max: Span,
    /// Take a release as soon as it is published, whatever the waves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_waves: bool,
    /// Run exactly this version (and go to it when another is running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_lock: Option<Version>,
}

impl UpdateConfig {
    /// The polling settings for [`super::Scheduler`].
    pub fn poll(&self) -> Poll {
        Poll {
            interval: self.poll_interval.secs().max(1),
            jitter_percent: self.jitter_percent.min(100),
            backoff_base: self.backoff_base.secs().max(1),
            backoff_max: self.backoff_max.secs().max(1),
        }
    }
}
