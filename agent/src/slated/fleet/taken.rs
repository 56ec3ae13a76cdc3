//! The action the device took, across its reboot: kept on `/data` until its end is reported
//! (`closed` after the commit, or the failure the device found after the reboot), and the
//! cancel requests that may still stop it before the switch.

use super::client;
use super::{feedback_url, Fleet};
use crate::{durable, lock, marker};
use anyhow::Result;
use slate_core::api::{BootState, Marker};
use slate_core::fleet::ddi::{self, Execution, Feedback, Finished};
use slate_core::fleet::outcome::{end_of, End, Taken};
use std::collections::VecDeque;
use std::path::PathBuf;
use url::Url;

/// Actions remembered as finished here, so a server that still offers one (its end is queued)
/// does not get it installed twice.
const DONE_KEPT: usize = 32;

impl Fleet {
    pub(super) fn taken_path(&self) -> PathBuf {
        self.dir.join("action.json")
    }

    pub(super) fn load_taken(&self) -> Option<Taken> {
        let bytes = std::fs::read(self.taken_path()).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(t) => Some(t),
            Err(e) => {
                marker::warn(format!(
                    "fleet: {} is unreadable ({e}); its action's end is not reported",
                    self.taken_path().display()
                ));
                None
            }
        }
    }

    pub(super) fn save_taken(&self, taken: Option<&Taken>) -> Result<()> {
        match taken {
            Some(t) => {
                durable::private_dir(&self.dir)?;
                durable::replace(&self.taken_path(), &serde_json::to_vec(t)?)
            }
            None => durable::remove(&self.taken_path()),
        }
    }

    pub(super) fn done(&self) -> VecDeque<u64> {
        std::fs::read(self.dir.join("done.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub(super) fn mark_done(&self, action: u64) {
        let mut done = self.done();
        if done.contains(&action) {
            return;
        }
        done.push_back(action);
        while done.len() > DONE_KEPT {
            done.pop_front();
        }
        let saved = durable::private_dir(&self.dir).and_then(|()| {
            durable::replace(&self.dir.join("done.json"), &serde_json::to_vec(&done)?)
        });
        if let Err(e) = saved {
            marker::warn(format!("fleet: remembering action {action} as done: {e:#}"));
        }
    }

    /// Reports the end of the action taken before this boot, once it is known.
    pub(super) async fn conclude_taken(&mut self) {
        let Some(taken) = self.load_taken() else {
            return;
        };
        self.status(|st| st.action = Some(taken.action));
        let (on_trial, last) = {
            let on_trial = matches!(lock(&self.agent.status).boot, BootState::Trial { .. });
            (on_trial, lock(&self.agent.state).last_attempt.clone())
        };
        let staged = self.agent.staged_version();
        let end = end_of(
            &taken,
            &self.agent.image.version,
            on_trial,
            staged.as_ref(),
            last.as_ref(),
        );
        let feedback = match end {
            End::Pending | End::Staged => return,
            End::Success => Feedback::new(
                taken.action,
                Execution::Closed,
                Finished::Success,
                None,
                vec![format!(
                    "{} committed on slot {} after its health checks",
                    taken.version, self.agent.slot
                )],
            ),
            End::Failure { reason } => Feedback::new(
                taken.action,
                Execution::Closed,
                Finished::Failure,
                None,
                vec![reason],
            ),
        };
        let Ok(url) = Url::parse(&taken.feedback) else {
            return;
        };
        self.feedback(&url, feedback).await;
        self.mark_done(taken.action);
        if let Err(e) = self.save_taken(None) {
            marker::warn(format!("fleet: {e:#}"));
        }
        self.status(|st| st.action = None);
    }

    /// A cancel request: accepted until the slot switch (a staged update is removed),
    /// rejected after it.
    pub(super) async fn cancel(&mut self, url: &Url) -> Result<()> {
        let body = client::get_document(&self.https, url).await?;
        let stop = ddi::read_cancel(&body)?;
        let feedback_url = feedback_url(url);
        let taken = self.load_taken().filter(|t| t.action == stop);
        let (execution, finished, detail) = match taken {
            Some(t) if self.agent.staged_version().as_ref() != Some(&t.version) => (
                Execution::Rejected,
                Finished::Failure,
                format!(
                    "{} is installed and the device switched to it (or did): too late to cancel",
                    t.version
                ),
            ),
            Some(t) => {
                let agent = self.agent.clone();
                let v = t.version.clone();
                let discarded = tokio::task::spawn_blocking(move || agent.discard_staged(&v))
                    .await
                    .map_err(|e| anyhow::anyhow!("discarding the staged update: {e}"))?;
                match discarded {
                    Ok(_) => {
                        self.save_taken(None)?;
                        (
                            Execution::Closed,
                            Finished::Success,
                            format!("canceled: the staged {} is removed", t.version),
                        )
                    }
                    Err(e) => (
                        Execution::Rejected,
                        Finished::Failure,
                        format!("the staged {} could not be removed: {e}", t.version),
                    ),
                }
            }
            None => (
                Execution::Closed,
                Finished::Success,
                "canceled before the device installed anything".into(),
            ),
        };
        marker::emit(&Marker::FleetAction {
            action: stop,
            version: String::new(),
            step: if execution == Execution::Closed {
                "canceled"
            } else {
                "cancel-rejected"
            },
        });
        if execution == Execution::Closed {
            self.mark_done(stop);
        }
        let fb = Feedback::new(stop, execution, finished, None, vec![detail]);
        let mut fb = fb;
        // The cancel action's own id goes in the feedback (DDI's cancel feedback).
        fb.id = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_string();
        self.feedback(&feedback_url, fb).await;
        Ok(())
    }
}
