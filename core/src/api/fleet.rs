//! `fleet` in `/v1/status`: what the device knows about its fleet server — who it is there,
//! when it last polled, what went wrong, which action it follows and how much feedback still
//! waits to be sent.

use serde::{Deserialize, Serialize};

/// The fleet client's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The server's base URL.
    pub server: String,
    /// This device's controller id there.
    pub controller_id: String,
    /// Polls since the agent started.
    pub polls: u64,
    /// When the last poll was answered (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<i64>,
    /// When the next poll is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_poll: Option<i64>,
    /// The last failure, kept until a poll succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<FleetError>,
    /// Failed polls and refused server answers since the agent started.
    pub errors: u64,
    /// The action the device is working on or waits to report the end of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<u64>,
    /// Feedback kept on /data because the server could not take it yet.
    pub feedback_queued: u64,
    /// Feedback the server took since the agent started.
    pub feedback_sent: u64,
    /// Bytes of feedback sent since the agent started.
    pub feedback_bytes: u64,
}

/// A failed poll or a refused answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetError {
    /// What is wrong, naming the document and field.
    pub message: String,
    /// Unix seconds.
    pub at: i64,
}
