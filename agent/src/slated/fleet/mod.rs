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
mod deploy;
mod feedback;
mod outbox;
mod taken;

use crate::slated::channel::Https;
use crate::slated::daemon::{now, Agent};
use crate::{lock, marker};
use anyhow::{Context, Result};
use client::RequestError;
use hyper::Method;
use outbox::Outbox;
use slate_core::api::{BootState, FleetError, FleetStatus, HealthState, Marker};
use slate_core::fleet::ddi::{self, Handling};
use slate_core::fleet::FleetConfig;
use slate_core::policy::Trigger;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Where the fleet client keeps what must outlive a reboot.
pub const DIR: &str = "/data/slate/fleet";

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
