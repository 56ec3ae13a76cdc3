//! A deployment: its bundle downloaded and installed through the install path every source
//! uses, or the update the server staged applied when it says go.

use super::client;
use super::{feedback_url, reboot, trigger, Fleet, Polled};
use crate::marker;
use crate::slated::channel::download;
use crate::slated::install::InstallError;
use crate::slated::resume;
use anyhow::Result;
use hyper::Method;
use slate_core::api::{Marker, Phase};
use slate_core::fleet::ddi::{self, Execution, Feedback, Finished, Handling, Offer, Progress};
use slate_core::fleet::outcome::Taken;
use slate_core::install::Refusal;
use slate_core::policy::Trigger;
use slate_core::Digest32;
use std::path::Path;
use std::time::Duration;
use url::Url;

impl Fleet {
    /// A deployment: install its bundle (or apply the staged one when the server now says
    /// go). Returns `Rebooting` when the device switches slots.
    pub(super) async fn follow(&mut self, url: &Url, action: u64) -> Result<Option<Polled>> {
        if self.done().contains(&action) {
            return Ok(None);
        }
        let feedback_url = feedback_url(url);
        let body = client::get_document(&self.https, url).await?;
        let offer = match ddi::read_deployment(self.server(), &body) {
            Ok(o) => o,
            Err(e) => {
                // An action the device cannot carry out: it says why and is done with it.
                self.error(e.to_string());
                let fb = Feedback::new(
                    action,
                    Execution::Closed,
                    Finished::Failure,
                    None,
                    vec![format!("refused: {e}")],
                );
                self.feedback(&feedback_url, fb).await;
                self.mark_done(action);
                return Ok(None);
            }
        };
        self.status(|st| st.action = Some(action));
        if let Some(taken) = self.load_taken().filter(|t| t.action == action) {
            return self.apply_staged(&taken, &offer, &feedback_url).await;
        }
        if offer.download == Handling::Skip {
            if !self.scheduled.contains(&action) {
                self.scheduled.push(action);
                let fb = Feedback::new(
                    action,
                    Execution::Scheduled,
                    Finished::None,
                    None,
                    vec!["waiting for the server's maintenance window to download".into()],
                );
                self.feedback(&feedback_url, fb).await;
            }
            return Ok(None);
        }
        self.install(offer, &feedback_url).await
    }

    /// The server says go for an action it had staged here (download-only, or its window
    /// closed). Its go is an operator's apply: the device's windows do not hold it back any
    /// more (for `attempt` as for `forced`: a staged-only update is never the device's own to
    /// apply), the application's consent is still asked. An update the device's own policy
    /// staged is left to the device's loop over staged updates.
    pub(super) async fn apply_staged(
        &mut self,
        taken: &Taken,
        offer: &Offer,
        feedback_url: &Url,
    ) -> Result<Option<Polled>> {
        if !taken.stage_only
            || offer.stage_only()
            || self.agent.staged_version().as_ref() != Some(&taken.version)
        {
            return Ok(None);
        }
        let agent = self.agent.clone();
        let trigger = Trigger::Operator { now: false };
        let applied = tokio::task::spawn_blocking(move || agent.look_at_staged(trigger))
            .await
            .map_err(|e| anyhow::anyhow!("applying the staged update: {e}"))?;
        match applied {
            Ok(crate::slated::daemon::Applied::Reboot) => {
                let t = Taken {
                    stage_only: false,
                    ..taken.clone()
                };
                self.save_taken(Some(&t))?;
                marker::emit(&Marker::FleetAction {
                    action: taken.action,
                    version: taken.version.to_string(),
                    step: "applying",
                });
                let fb = Feedback::new(
                    taken.action,
                    Execution::Proceeding,
                    Finished::None,
                    None,
                    vec![format!(
                        "applying the staged {}: rebooting into slot {}",
                        taken.version,
                        self.agent.slot.other()
                    )],
                );
                self.feedback(feedback_url, fb).await;
                reboot().await;
                Ok(Some(Polled::Rebooting))
            }
            Ok(crate::slated::daemon::Applied::Waiting(_)) => Ok(None),
            Err(e) => {
                self.error(format!("applying the staged {}: {e}", taken.version));
                Ok(None)
            }
        }
    }

    /// Downloads and installs the offered bundle.
    pub(super) async fn install(
        &mut self,
        offer: Offer,
        feedback_url: &Url,
    ) -> Result<Option<Polled>> {
        let action = offer.action;
        let expected = download::Expected {
            length: offer.size,
            sha256: Digest32(offer.sha256),
        };
        marker::emit(&Marker::FleetAction {
            action,
            version: offer.version.clone(),
            step: "downloading",
        });
        let fb = Feedback::new(
            action,
            Execution::Proceeding,
            Finished::None,
            Some(Progress { cnt: 0, of: 100 }),
            vec![format!(
                "downloading {} ({} bytes) into slot {}",
                offer.filename,
                offer.size,
                self.agent.slot.other()
            )],
        );
        self.feedback(feedback_url, fb).await;
        // What an earlier try of this very artefact left durable in the idle slot.
        let idle = self.agent.slot.other();
        let record_path = Path::new(resume::RECORD);
        let pieces: Vec<download::Piece> = download::SlotPrefix::left_for(&expected, idle)
            .into_iter()
            .map(download::Piece::from)
            .collect();
        let (tx, reader) = download::StreamReader::new();
        let done_counter = reader.counter();
        let feed = crate::slated::daemon::Feed {
            phase: Phase::Downloading,
            total: expected.length,
            done: done_counter.clone(),
        };
        let record = resume::Record::start(expected.sha256, expected.length, idle);
        let worker_agent = self.agent.clone();
        let trigger = if offer.stage_only() {
            Trigger::StageOnly
        } else {
            trigger(offer.update)
        };
        let worker = tokio::task::spawn_blocking(move || {
            let note = |bundle_offset: u64, durable: u64| {
                record.checkpoint(bundle_offset, durable, "fleet")
            };
            let gate = |v: &slate_core::Version| Ok(worker_agent.install_gate(v, trigger));
            // The server's deployment is the operator's word: a version that is not newer is
            // installed within the security epoch, as `slate push --force` would.
            worker_agent.install_with(reader, true, None, Some(&note), Some(feed), Some(&gate))
        });
        let progress = spawn_progress(
            self.https.clone(),
            feedback_url.clone(),
            action,
            done_counter,
            expected.length,
        );
        let mut stats = download::Fetched::default();
        let fetched = download::fetch(
            &self.https,
            &offer.url,
            &expected,
            download::Pieces {
                list: pieces,
                tree: None,
            },
            tx,
            &mut stats,
            &download::Patience::device(self.agent.config.min_upload_kib_s),
        )
        .await;
        let installed = worker
            .await
            .map_err(|e| anyhow::anyhow!("install task: {e}"))?;
        progress.abort();
        if !fetched.as_ref().is_err_and(download::gave_up) {
            if let Err(e) = resume::forget(record_path) {
                marker::warn(format!("fleet: {e:#}"));
            }
        }
        self.settle(&offer, feedback_url, installed, fetched).await
    }

    /// What an install's end means for the action: staged, rebooting into it, a download the
    /// network stopped (the next poll resumes), or the action's failure.
    async fn settle(
        &mut self,
        offer: &Offer,
        feedback_url: &Url,
        installed: Result<crate::slated::install::Installed, InstallError>,
        fetched: Result<()>,
    ) -> Result<Option<Polled>> {
        let action = offer.action;
        let version = installed.as_ref().map(|i| i.manifest.version.clone()).ok();
        match (installed, fetched) {
            (Ok(i), Ok(())) => {
                let taken = Taken {
                    action,
                    feedback: feedback_url.to_string(),
                    version: i.manifest.version.clone(),
                    from: self.agent.image.version.clone(),
                    stage_only: offer.stage_only(),
                };
                self.save_taken(Some(&taken))?;
                if i.staged {
                    marker::emit(&Marker::FleetAction {
                        action,
                        version: taken.version.to_string(),
                        step: "staged",
                    });
                    let (execution, why) = if offer.stage_only() {
                        (
                            Execution::Downloaded,
                            "staged in slot {slot}: waiting for the server's go",
                        )
                    } else {
                        (
                            Execution::Scheduled,
                            "staged in slot {slot}: waiting for the device's maintenance window or its application's consent",
                        )
                    };
                    let fb = Feedback::new(
                        action,
                        execution,
                        Finished::None,
                        Some(Progress { cnt: 100, of: 100 }),
                        vec![why.replace("{slot}", &i.slot.to_string())],
                    );
                    self.feedback(feedback_url, fb).await;
                    return Ok(None);
                }
                marker::emit(&Marker::FleetAction {
                    action,
                    version: taken.version.to_string(),
                    step: "installed",
                });
                let fb = Feedback::new(
                    action,
                    Execution::Proceeding,
                    Finished::None,
                    Some(Progress { cnt: 100, of: 100 }),
                    vec![format!(
                        "{} installed into slot {} ({} bytes, {:.1} s); rebooting to try it",
                        i.manifest.version, i.slot, i.bytes_written, i.seconds
                    )],
                );
                self.feedback(feedback_url, fb).await;
                reboot().await;
                Ok(Some(Polled::Rebooting))
            }
            (_, Err(e)) if download::gave_up(&e) => {
                // The network stopped it: the next poll resumes from the slot.
                let fb = Feedback::new(
                    action,
                    Execution::Proceeding,
                    Finished::None,
                    None,
                    vec![format!(
                        "download interrupted, resumed at the next poll: {e:#}"
                    )],
                );
                self.feedback(feedback_url, fb).await;
                Err(e.context(format!("downloading {}", offer.url)))
            }
            (_, Err(e)) => {
                self.end_with_failure(
                    action,
                    &offer.version,
                    feedback_url,
                    format!("the artefact is not what the server announced: {e:#}"),
                )
                .await;
                Ok(None)
            }
            (Err(e), Ok(())) => {
                let passing = matches!(
                    &e,
                    InstallError::Refused(
                        Refusal::OnTrial { .. } | Refusal::Busy { .. } | Refusal::Stalled { .. }
                    )
                );
                if passing {
                    self.error(format!("action {action} waits: {e}"));
                    return Ok(None);
                }
                let v = version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| offer.version.clone());
                self.end_with_failure(action, &v, feedback_url, format!("refused: {e}"))
                    .await;
                Ok(None)
            }
        }
    }

    pub(super) async fn end_with_failure(
        &mut self,
        action: u64,
        version: &str,
        url: &Url,
        why: String,
    ) {
        marker::emit(&Marker::FleetAction {
            action,
            version: version.to_string(),
            step: "refused",
        });
        self.error(format!("action {action}: {why}"));
        let fb = Feedback::new(
            action,
            Execution::Closed,
            Finished::Failure,
            None,
            vec![why],
        );
        self.feedback(url, fb).await;
        self.mark_done(action);
        self.status(|st| st.action = None);
    }
}

/// Sends a progress line at each quarter of the download, straight (not queued: only an
/// action's end must arrive); the caller aborts it when the download ends.
fn spawn_progress(
    https: crate::slated::channel::Https,
    url: Url,
    action: u64,
    done: std::sync::Arc<std::sync::atomic::AtomicU64>,
    total: u64,
) -> tokio::task::JoinHandle<()> {
    let total = total.max(1);
    tokio::spawn(async move {
        let mut reported = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let done = done.load(std::sync::atomic::Ordering::Relaxed);
            let quarter = done.saturating_mul(4) / total;
            if quarter > reported && quarter < 4 {
                reported = quarter;
                let fb = Feedback::new(
                    action,
                    Execution::Proceeding,
                    Finished::None,
                    Some(Progress {
                        cnt: quarter * 25,
                        of: 100,
                    }),
                    vec![format!("downloaded {done} of {total} bytes")],
                );
                if let Ok(body) = serde_json::to_vec(&fb) {
                    let _ = client::send_json(&https, Method::POST, &url, body).await;
                }
            }
        }
    })
}
