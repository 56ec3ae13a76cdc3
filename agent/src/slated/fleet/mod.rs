//! The fleet server as an update source (`[fleet]`, hawkBit's DDI API v1): poll the base
//! resource at the server's interval, send the device's attributes when asked, follow a
//! deployment through the very install path `slate push` and the channel use, honour a cancel
//! until the slot switch, and tell the server the truth at every step — the end of an action
//! only after the health-gated commit, or the rollback found after the reboot.
//!
//! What the server may decide is only *whether and when*: the bundle's own signatures, rules
//! and the device's policy decide the rest; the artefact's announced size and sha256 are
//! enforced on the download as well. Feedback goes through a queue on `/data`
//! ([`outbox`]), so what could not be sent is sent later, once, in order.

mod client;
mod outbox;

use crate::slated::channel::download;
use crate::slated::channel::Https;
use crate::slated::daemon::{now, Agent};
use crate::slated::install::InstallError;
use crate::slated::resume;
use crate::{durable, lock, marker};
use anyhow::{Context, Result};
use client::RequestError;
use hyper::Method;
use outbox::{Item, Outbox};
use slate_core::api::{BootState, FleetError, FleetStatus, HealthState, Marker, Phase};
use slate_core::fleet::ddi::{self, Execution, Feedback, Finished, Handling, Offer, Progress};
use slate_core::fleet::outcome::{end_of, End, Taken};
use slate_core::fleet::FleetConfig;
use slate_core::install::Refusal;
use slate_core::policy::Trigger;
use slate_core::Digest32;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Where the fleet client keeps what must outlive a reboot.
pub const DIR: &str = "/data/slate/fleet";
/// Actions remembered as finished here, so a server that still offers one (its end is queued)
/// does not get it installed twice.
const DONE_KEPT: usize = 32;

/// The fleet client's loop: never returns; every failure is reported and retried with
/// backoff.
pub async fn run(agent: Arc<Agent>, cfg: FleetConfig) {
    // Like the channel: once this boot's checks have concluded and it is not on trial, so an
    // action's end is known before anything new is taken.
    let concluded = || {
        let s = lock(&agent.status);
        !matches!(s.boot, BootState::Trial { .. }) && s.health.state != HealthState::Pending
    };
    while !concluded() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut fleet = match Fleet::new(agent, cfg, Path::new(DIR)) {
        Ok(f) => f,
        Err(e) => {
            marker::warn(format!("fleet: {e:#}; the fleet server is not polled"));
            return;
        }
    };
    let mut failures = 0u32;
    loop {
        let started = now();
        let result = fleet.poll_once().await;
        let sleep = match result {
            Ok(Polled::Rebooting) => return,
            Ok(Polled::Sleep(s)) => {
                failures = 0;
                fleet.status(|st| {
                    st.last_poll = Some(started);
                    st.last_error = None;
                });
                s
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let busy = e
                    .downcast_ref::<RequestError>()
                    .is_some_and(RequestError::busy);
                fleet.error(format!("{e:#}"));
                let base = fleet.cfg.backoff_base.secs().max(1);
                let cap = fleet.interval;
                let backoff = base.saturating_mul(1 << failures.min(16)).min(cap);
                // A server that says it is busy gets the whole interval.
                if busy {
                    cap
                } else {
                    backoff
                }
            }
        };
        let sleep = jittered(sleep);
        fleet.status(|st| {
            st.next_poll = Some(now() + i64::try_from(sleep).unwrap_or(i64::MAX / 2));
        });
        tokio::time::sleep(Duration::from_secs(sleep.max(1))).await;
    }
}

/// `secs` ± 10 %, so a fleet's devices do not poll in step.
fn jittered(secs: u64) -> u64 {
    let r = crate::slated::channel::seed::random().unwrap_or(0);
    let spread = secs / 10;
    if spread == 0 {
        return secs;
    }
    secs - spread + r % (2 * spread + 1)
}

/// What a poll ended with.
enum Polled {
    /// Poll again after this many seconds.
    Sleep(u64),
    /// The device switches slots: the loop ends.
    Rebooting,
}

/// The client's state for this boot.
struct Fleet {
    agent: Arc<Agent>,
    cfg: FleetConfig,
    https: Https,
    /// The controller's base resource.
    base: Url,
    outbox: Outbox,
    dir: PathBuf,
    /// The poll interval in force (the server's, once it said one).
    interval: u64,
    /// `configData` sent this boot.
    config_sent: bool,
    /// Actions whose `scheduled` was sent this boot (sent once per action).
    scheduled: Vec<u64>,
}

impl Fleet {
    fn new(agent: Arc<Agent>, cfg: FleetConfig, dir: &Path) -> Result<Fleet> {
        let (cert, key, fingerprint) = client::identity()?;
        let controller_id = cfg
            .controller_id
            .clone()
            .unwrap_or_else(|| slate_core::fleet::config::controller_id_for(&fingerprint));
        let https = Https::with_identity(cfg.server_ca.as_deref(), Some((cert, key)))?;
        let https = match agent.policy.as_ref().and_then(|p| p.max_kib_s) {
            Some(kib_s) => https.capped(kib_s),
            None => https,
        };
        let base = cfg.server.controller(&cfg.tenant, &controller_id);
        let outbox = Outbox::load(&dir.join("outbox.json"));
        marker::emit(&Marker::FleetPolling {
            server: cfg.server.url().to_string(),
            controller: controller_id.clone(),
        });
        *lock(&agent.fleet) = Some(FleetStatus {
            server: cfg.server.url().to_string(),
            controller_id,
            feedback_queued: outbox.len() as u64,
            ..FleetStatus::default()
        });
        let interval = cfg.poll_interval.secs().max(ddi::SLEEP_BOUNDS.0);
        Ok(Fleet {
            agent,
            cfg,
            https,
            base,
            outbox,
            dir: dir.to_path_buf(),
            interval,
            config_sent: false,
            scheduled: Vec::new(),
        })
    }

    fn status(&self, f: impl FnOnce(&mut FleetStatus)) {
        if let Some(st) = lock(&self.agent.fleet).as_mut() {
            f(st);
        }
    }

    fn error(&self, message: String) {
        marker::emit(&Marker::FleetError {
            message: message.clone(),
        });
        self.status(|st| {
            st.errors += 1;
            st.last_error = Some(FleetError { message, at: now() });
        });
    }

    fn server(&self) -> &Url {
        self.cfg.server.url()
    }

    /// One poll: queued feedback first, the end of an action taken before the reboot, then
    /// what the server asks now.
    async fn poll_once(&mut self) -> Result<Polled> {
        self.flush().await;
        self.conclude_taken().await;
        self.status(|st| st.polls += 1);
        let body = client::get_document(&self.https, &self.base).await?;
        let asked = ddi::read_base(self.server(), &body)?;
        if let Some(s) = asked.sleep {
            self.interval = s;
        }
        if let Some(url) = &asked.config_data {
            if !self.config_sent {
                self.send_config_data(url).await?;
                self.config_sent = true;
            }
        }
        if let Some((url, _)) = &asked.cancel {
            self.cancel(url).await?;
        } else if let Some((url, action)) = &asked.deployment {
            if let Some(p) = self.follow(url, *action).await? {
                return Ok(p);
            }
        }
        self.flush().await;
        Ok(Polled::Sleep(self.interval))
    }

    /// Sends what waits in the queue, oldest first, until the server refuses one.
    async fn flush(&mut self) {
        while let Some(item) = self.outbox.front().cloned() {
            let method = if item.method == "PUT" {
                Method::PUT
            } else {
                Method::POST
            };
            let Ok(url) = Url::parse(&item.url) else {
                let _ = self.outbox.pop();
                continue;
            };
            match client::send_json(&self.https, method, &url, item.body.clone().into_bytes()).await
            {
                Ok(()) => {
                    let bytes = item.body.len() as u64;
                    if let Err(e) = self.outbox.pop() {
                        marker::warn(format!("fleet: the feedback queue: {e:#}"));
                    }
                    self.status(|st| {
                        st.feedback_sent += 1;
                        st.feedback_bytes += bytes;
                    });
                }
                // The server no longer has this action (410, 404) or finds the feedback
                // malformed (400): sending it again cannot help.
                Err(RequestError::Status { status, .. })
                    if matches!(status.as_u16(), 400 | 404 | 410) =>
                {
                    self.error(format!(
                        "{} {}: the server answered {status}; this feedback is dropped",
                        item.method, item.url
                    ));
                    let _ = self.outbox.pop();
                }
                Err(e) => {
                    self.error(format!("feedback kept for later: {e}"));
                    break;
                }
            }
        }
        let queued = self.outbox.len() as u64;
        self.status(|st| st.feedback_queued = queued);
    }

    /// Queues `feedback` for the action whose feedback resource is `url` and sends the queue.
    async fn feedback(&mut self, url: &Url, feedback: Feedback) {
        let final_word = matches!(
            feedback.status.execution,
            Execution::Closed | Execution::Rejected | Execution::Canceled
        );
        let action = feedback.id.parse().unwrap_or(0);
        let (execution, finished) = (
            label(&feedback.status.execution),
            label(&feedback.status.result.finished),
        );
        let item = Item {
            method: "POST".into(),
            url: url.to_string(),
            body: serde_json::to_string(&feedback).unwrap_or_default(),
            final_word,
        };
        if let Err(e) = self.outbox.push(item) {
            marker::warn(format!("fleet: keeping feedback on /data: {e:#}"));
        }
        self.flush().await;
        let sent = self.outbox.is_empty();
        marker::emit(&Marker::FleetFeedback {
            action,
            execution,
            finished,
            sent,
        });
    }

    /// `PUT configData`: the device's facts and the image's attributes.
    async fn send_config_data(&mut self, url: &Url) -> Result<()> {
        let a = &self.agent;
        let st = a.status();
        let mut data: BTreeMap<String, String> = self.cfg.attributes.clone();
        data.insert("product".into(), a.image.name.clone());
        data.insert("board".into(), a.image.board.clone());
        data.insert("version".into(), a.image.version.to_string());
        // The names SWUpdate's suricatta uses, which goosebit reads (hardware compatibility,
        // the running version).
        data.insert("hw_boardname".into(), a.image.board.clone());
        data.insert("sw_version".into(), a.image.version.to_string());
        data.insert("slot".into(), a.slot.to_string());
        if let Some(h) = st.root_hash {
            data.insert("root_hash".into(), h.to_string());
        }
        data.insert("security_epoch".into(), st.security_epoch.to_string());
        if let Some(fp) = st.identity {
            data.insert("identity".into(), fp.to_string());
        }
        let body = serde_json::to_vec(&ddi::ConfigData::merge(data)).context("configData")?;
        client::send_json(&self.https, Method::PUT, url, body).await?;
        Ok(())
    }

    fn taken_path(&self) -> PathBuf {
        self.dir.join("action.json")
    }

    fn load_taken(&self) -> Option<Taken> {
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

    fn save_taken(&self, taken: Option<&Taken>) -> Result<()> {
        match taken {
            Some(t) => {
                durable::private_dir(&self.dir)?;
                durable::replace(&self.taken_path(), &serde_json::to_vec(t)?)
            }
            None => durable::remove(&self.taken_path()),
        }
    }

    fn done(&self) -> VecDeque<u64> {
        std::fs::read(self.dir.join("done.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn mark_done(&self, action: u64) {
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
    async fn conclude_taken(&mut self) {
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
    async fn cancel(&mut self, url: &Url) -> Result<()> {
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

    /// A deployment: install its bundle (or apply the staged one when the server now says
    /// go). Returns `Rebooting` when the device switches slots.
    async fn follow(&mut self, url: &Url, action: u64) -> Result<Option<Polled>> {
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

    /// The server says go for an action whose update is staged here.
    async fn apply_staged(
        &mut self,
        taken: &Taken,
        offer: &Offer,
        feedback_url: &Url,
    ) -> Result<Option<Polled>> {
        if offer.stage_only() || self.agent.staged_version().as_ref() != Some(&taken.version) {
            return Ok(None);
        }
        let agent = self.agent.clone();
        let trigger = trigger(offer.update);
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
    async fn install(&mut self, offer: Offer, feedback_url: &Url) -> Result<Option<Polled>> {
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
        let prefix = resume::load(record_path)
            .and_then(|r| r.prefix_for(&expected.sha256, expected.length, idle))
            .and_then(|at| {
                let device = crate::partitions::find(idle.label()).ok()?;
                Some(download::SlotPrefix {
                    at,
                    device: device.into(),
                })
            });
        let pieces: Vec<download::Piece> = prefix.into_iter().map(download::Piece::from).collect();
        let (tx, reader) = download::StreamReader::new();
        let done_counter = reader.counter();
        let feed = crate::slated::daemon::Feed {
            phase: Phase::Downloading,
            total: expected.length,
            done: done_counter.clone(),
        };
        let record = resume::Record {
            sha256: expected.sha256,
            length: expected.length,
            slot: idle,
            bundle_offset: 0,
            durable: 0,
        };
        let worker_agent = self.agent.clone();
        let trigger = if offer.stage_only() {
            Trigger::StageOnly
        } else {
            trigger(offer.update)
        };
        let worker = tokio::task::spawn_blocking(move || {
            let note = |bundle_offset: u64, durable: u64| {
                let r = resume::Record {
                    bundle_offset,
                    durable,
                    ..record.clone()
                };
                if let Err(e) = resume::save(Path::new(resume::RECORD), &r) {
                    marker::warn(format!("fleet: the resume record: {e:#}"));
                }
            };
            let gate = |v: &slate_core::Version| Ok(worker_agent.install_gate(v, trigger));
            // The server's deployment is the operator's word: a version that is not newer is
            // installed within the security epoch, as `slate push --force` would.
            worker_agent.install_with(reader, true, None, Some(&note), Some(feed), Some(&gate))
        });
        // Progress lines at each quarter, sent straight (not queued: only ends must arrive).
        let progress = {
            let https = self.https.clone();
            let url = feedback_url.clone();
            let total = expected.length.max(1);
            tokio::spawn(async move {
                let mut reported = 0u64;
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let done = done_counter.load(std::sync::atomic::Ordering::Relaxed);
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
        };
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
                let v = version.map(|v| v.to_string()).unwrap_or(offer.version);
                self.end_with_failure(action, &v, feedback_url, format!("refused: {e}"))
                    .await;
                Ok(None)
            }
        }
    }

    async fn end_with_failure(&mut self, action: u64, version: &str, url: &Url, why: String) {
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

/// How the server's `update` handling maps onto the device's policy: `forced` overrides the
/// device's windows (the application's consent is still asked), `attempt` leaves the moment
/// to the device's own windows and consent.
fn trigger(update: Handling) -> Trigger {
    match update {
        Handling::Forced => Trigger::Operator { now: false },
        Handling::Attempt => Trigger::Device,
        Handling::Skip => Trigger::StageOnly,
    }
}

/// `…/deploymentBase/{id}?c=…` → `…/deploymentBase/{id}/feedback` (and the same for a
/// cancel).
fn feedback_url(url: &Url) -> Url {
    let mut u = url.clone();
    u.set_query(None);
    if let Ok(mut segs) = u.path_segments_mut() {
        segs.pop_if_empty().push("feedback");
    }
    u
}

fn label<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn reboot() {
    marker::emit(&Marker::RebootingIntoNewSlot);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ =
        rustix::process::kill_process(rustix::process::Pid::INIT, rustix::process::Signal::TERM);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_goes_beside_the_action_without_its_query() {
        let u = Url::parse("https://f/ddi/DEFAULT/controller/v1/d/deploymentBase/8?c=-21").unwrap();
        assert_eq!(
            feedback_url(&u).as_str(),
            "https://f/ddi/DEFAULT/controller/v1/d/deploymentBase/8/feedback"
        );
    }

    #[test]
    fn the_servers_handling_maps_onto_the_policys_triggers() {
        assert_eq!(trigger(Handling::Forced), Trigger::Operator { now: false });
        assert_eq!(trigger(Handling::Attempt), Trigger::Device);
        assert_eq!(trigger(Handling::Skip), Trigger::StageOnly);
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        for _ in 0..100 {
            let j = jittered(100);
            assert!((90..=110).contains(&j), "{j}");
        }
        assert_eq!(jittered(5), 5);
    }
}
