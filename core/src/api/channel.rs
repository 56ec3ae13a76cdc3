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
    /// What the device's bundle downloads cost (in the status's top level, as before).
    #[serde(flatten)]
    pub downloads: Downloads,
}

/// What bundle downloads from the channel cost, counted since the device was made: the agent
/// keeps them in its state on `/data`, so the download that brought the running image is
/// still counted after the reboot into it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downloads {
    /// Bytes fetched from the channel for bundles: the bundle's own, and a delta's chunk index
    /// and head or its static patch.
    #[serde(default)]
    pub bytes_fetched: u64,
    /// Downloads continued after a drop (a Range request) or after a power cut or restart
    /// (from the slot's durable prefix).
    #[serde(default)]
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

impl Downloads {
    /// Adds one download's figures; its mode becomes the last one.
    pub fn add(&mut self, one: &Downloads) {
        self.bytes_fetched = self.bytes_fetched.saturating_add(one.bytes_fetched);
        self.resumes = self.resumes.saturating_add(one.resumes);
        self.bytes_from_slot = self.bytes_from_slot.saturating_add(one.bytes_from_slot);
        self.bytes_copied = self.bytes_copied.saturating_add(one.bytes_copied);
        self.requests = self.requests.saturating_add(one.requests);
        if one.last_mode.is_some() {
            self.last_mode.clone_from(&one.last_mode);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_download_counters_stay_in_the_status_top_level_and_add_up() {
        let mut s = ChannelStatus {
            url: "https://updates.example/".into(),
            ..ChannelStatus::default()
        };
        let one = Downloads {
            bytes_fetched: 100,
            resumes: 1,
            bytes_from_slot: 2,
            bytes_copied: 300,
            requests: 4,
            last_mode: Some("delta".into()),
        };
        s.downloads.add(&one);
        s.downloads.add(&Downloads {
            last_mode: None,
            ..one.clone()
        });
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["bytes_fetched"], 200);
        assert_eq!(json["bytes_copied"], 600);
        assert_eq!(json["requests"], 8);
        assert_eq!(json["last_mode"], "delta");
        assert!(json.get("downloads").is_none(), "{json}");
        let back: ChannelStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        // A status from an agent before the counters: all zero.
        let old: ChannelStatus =
            serde_json::from_str(r#"{"url":"u","seed":1,"checks":0,"failures":{}}"#).unwrap();
        assert_eq!(old.downloads, Downloads::default());
    }
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
