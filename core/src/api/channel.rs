//! The update channel's words in the API: what `/v1/status` says about the channel a device
//! pulls from, and its last failure.

use super::ChannelFailure;
use serde::{Deserialize, Serialize};

/// What the agent knows about its update channel: where it pulls from, this device's place
/// in the waves, and whether the repository is fresh and reachable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// The repository's base URL.
    pub url: String,
    /// This device's seed (0..2048), drawn once and kept on /data.
    pub seed: u32,
    /// The version offered and not yet taken (waiting for this device's wave, or installing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered: Option<String>,
    /// This device's wave for that version (1-based; none: after the last wave, or no waves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<usize>,
    /// When this device becomes ready for it (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<u64>,
    /// When the channel was last checked (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<i64>,
    /// When a check last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<i64>,
    /// When the next check is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check: Option<i64>,
    /// When the repository's timestamp (its freshness) expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_expires: Option<i64>,
    /// The last failure, kept until a check succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ChannelError>,
    /// Checks since the agent started.
    pub checks: u64,
    /// Failed checks by kind (`network`, `tuf`, `expired`, `replayed`, `download`, `install`,
    /// `config`).
    #[serde(default)]
    pub failures: std::collections::BTreeMap<ChannelFailure, u64>,
    /// Bytes fetched from the channel for bundles: the bundle's own, and a delta's chunk index
    /// and head or its static patch.
    pub bytes_fetched: u64,
    /// Downloads continued after a drop (a Range request) or after a power cut or restart
    /// (from the slot's durable prefix).
    pub resumes: u64,
    /// Bundle bytes taken from the idle slot's durable prefix instead of the network.
    #[serde(default)]
    pub bytes_from_slot: u64,
    /// Bundle bytes delta downloads copied from the running slot instead of fetching them.
    #[serde(default)]
    pub bytes_copied: u64,
    /// Requests made for bundles (a delta makes one per missing run, and two for its index and
    /// the bundle's head; a static patch one).
    #[serde(default)]
    pub requests: u64,
    /// How the last bundle was fetched: `full`, `delta` (the chunk index's dynamic tier) or
    /// `static` (a patch made for the running release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_mode: Option<String>,
}

/// A failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelError {
    /// Its kind (the metrics' label).
    pub kind: ChannelFailure,
    /// What happened, for people.
    pub message: String,
    /// When (unix seconds).
    pub at: i64,
}
