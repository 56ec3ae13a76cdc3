//! What the agent remembers across boots, in `/data/slate/state.json`, written atomically
//! (temporary file, fsync, rename, fsync of the folder) so a power cut leaves the old or the
//! new state, never a torn one.

use serde::{Deserialize, Serialize};
use slate_core::api::{Failed, Outcome, UpdateRecord};
use slate_core::retry;
use std::path::Path;

/// Folder of the agent's persistent files.
pub const DIR: &str = "/data/slate";

/// The whole state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The security floor as the agent knows it while it runs: the floor's file
    /// ([`crate::floor`], its one store, which stage 1 reads too) and the running image's
    /// epoch. Not kept in `state.json`: earlier agents wrote it there, also during a trial
    /// boot, and such a value is ignored.
    #[serde(skip)]
    pub security_epoch: u64,
    /// Versions that failed their trial.
    #[serde(default)]
    pub failed: Vec<Failed>,
    /// Last install attempt.
    #[serde(default)]
    pub last_attempt: Option<UpdateRecord>,
    /// Last refused bundle.
    #[serde(default)]
    pub last_refusal: Option<UpdateRecord>,
    /// Boots seen by the agent.
    #[serde(default)]
    pub boots: u64,
    /// Update outcomes counted (for /metrics): installed, committed, rolled-back, refused.
    #[serde(default)]
    pub outcomes: std::collections::BTreeMap<String, u64>,
    /// Bytes written into slots and the ESP by updates.
    #[serde(default)]
    pub bytes_written: u64,
    /// Seconds the last install took, upload to ready-to-reboot.
    #[serde(default)]
    pub last_install_seconds: f64,
    /// Installs asked for with `force` (logged and counted: force is an operator's override).
    #[serde(default)]
    pub forced: u64,
    /// Updates applied outside the maintenance windows by an operator (`--now`, `slate
    /// apply`): an operator's override.
    #[serde(default)]
    pub window_overrides: u64,
    /// The security epoch of the image in each slot (`a`, `b`), as far as the agent knows:
    /// the running image's, and what it installed.
    #[serde(default)]
    pub slot_epochs: std::collections::BTreeMap<String, u64>,
    /// The update staged in the idle slot, if any (the ESP's staged entry is the truth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<crate::slated::daemon::StagedRecord>,
    /// What the channel's bundle downloads cost, across boots (the status and metrics show
    /// these, so the download that brought the running image still counts after its reboot).
    #[serde(default)]
    pub channel_downloads: slate_core::api::Downloads,
}

impl State {
    /// Loads the state (missing or unreadable: a fresh state, with a warning for the latter,
    /// the damaged file kept as `state.json.damaged`). The security floor is never taken from
    /// here alone: see [`crate::floor`].
    pub fn load(dir: &Path) -> State {
        let path = dir.join("state.json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                crate::marker::warn(format!(
                    "{} is unreadable ({e}); starting from a fresh state (the security floor is kept in {})",
                    path.display(),
                    crate::floor::FILE
                ));
                let _ = std::fs::rename(&path, dir.join("state.json.damaged"));
                State::default()
            }),
            Err(_) => State::default(),
        }
    }

    /// Writes the state atomically and durably.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        crate::durable::replace(
            &dir.join("state.json"),
            &serde_json::to_vec_pretty(self).unwrap_or_default(),
        )
    }

    /// Counts an outcome.
    pub fn count(&mut self, outcome: Outcome) {
        *self
            .outcomes
            .entry(outcome.as_str().to_string())
            .or_default() += 1;
    }

    /// How many times an outcome happened.
    pub fn counted(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(outcome.as_str()).copied().unwrap_or(0)
    }

    /// Records one more failure of a version (one record per version; see
    /// [`slate_core::retry`] for when it may be taken again).
    pub fn fail(&mut self, version: &str, reason: &str, cause: retry::Cause, at: i64) {
        let record = retry::record(&self.failed, version, reason, cause, at);
        retry::remember(&mut self.failed, record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let d = tempfile::tempdir().unwrap();
        let mut s = State::default();
        s.fail("1.2.0", "web-page: HTTP 500", retry::Cause::Verdict, 10);
        s.fail("1.2.0", "again", retry::Cause::NoVerdict, 20);
        s.count(Outcome::Refused);
        s.channel_downloads.bytes_copied = 12_345;
        s.save(d.path()).unwrap();
        let back = State::load(d.path());
        assert_eq!(back, s);
        assert_eq!(back.failed.len(), 1);
        assert_eq!((back.failed[0].failures, back.failed[0].verdicts), (2, 1));
        assert!(!crate::durable::temp_path(&d.path().join("state.json")).exists());
        std::fs::write(d.path().join("state.json"), b"{garbage").unwrap();
        assert_eq!(State::load(d.path()), State::default());
    }
}
