//! `slated`'s core: what it knows about this boot, carrying out the post-boot decisions
//! (commit, roll back, notice a fallback — computed purely by [`slate_core::slots`]) and the
//! install entry point shared by the HTTP API and the console.

use crate::boot::esp::Esp;
use crate::boot::BootBackend;
use crate::slated::install::{self, InstallError, Installed, Installer};
use crate::slated::state::{self, State};
use crate::slated::throttle::Throttle;
use crate::{lock, marker, uptime_ms};
use anyhow::{Context, Result};
use slate_core::api::{
    BootState, Health, HealthState, Marker, Outcome, SlotState, Status, UpdateRecord,
};
use slate_core::config::{self, paths, AgentConfig, ImageInfo};
use slate_core::install::Refusal;
use slate_core::layout::Slot;
use slate_core::manifest::{DeviceFacts, Trust};
use slate_core::slots::{self, Boot, Plan, Step};
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

/// Where kernel and initrd of an update are checked before they go onto the ESP: /data, not the
/// RAM of a small device.
pub const STAGING: &str = "/data/slate/staging";

fn read_toml<T: serde::de::DeserializeOwned>(path: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    toml::from_str(&text).with_context(|| format!("parsing {path}"))
}

/// Unix seconds now (the device clock).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

mod policy;
mod report;
mod staged;
use policy::Active;
pub use policy::{Feed, RESET_CONFIRM};
pub use staged::{run as run_staged, Applied, Staged, StagedRecord};

/// Everything slated holds.
pub struct Agent {
    /// Running slot.
    pub slot: Slot,
    /// Image identity.
    pub image: ImageInfo,
    /// Agent settings.
    pub config: AgentConfig,
    /// Health checks.
    pub checks: config::Health,
    /// Trust file, if the image has one.
    pub trust: Option<Trust>,
    /// The mounted ESP, if it mounted.
    pub esp: Option<Esp>,
    /// A Secure Boot image's db key (`RSAPublicKey`, DER), which a bundle's UKIs must be
    /// signed by, or why it could not be read; None for an image that boots `.conf` entries.
    pub secure_boot_db: Option<Result<Vec<u8>, String>>,
    /// Persistent state.
    pub state: Mutex<State>,
    /// What /v1/status shows.
    pub status: Mutex<Status>,
    /// The update channel's state, when the image pulls from one.
    pub channel: Mutex<Option<slate_core::api::ChannelStatus>>,
    /// The fleet client's state, when the image reports to a fleet server.
    pub fleet: Mutex<Option<slate_core::api::FleetStatus>>,
    /// When a refusal was last printed, and how many were held back since: a client that
    /// sends bad bundles in a loop fills neither the console nor /data.
    refusals: Mutex<Throttle>,
    /// The operator CA's verifier and CRL (set once the API listens with TLS): the CRL route
    /// and the channel hand it newer CRLs.
    pub operator_ca: std::sync::OnceLock<std::sync::Arc<crate::slated::operators::OperatorCa>>,
    /// The image's update policy (`/etc/slate/policy.toml`; none: always open, no cap).
    pub policy: Option<slate_core::policy::Policy>,
    /// The update being worked on, for the status's live `progress`.
    progress: Mutex<Option<Active>>,
    /// The application's last answer holding an update back, for the status.
    consent: Mutex<Option<slate_core::api::ConsentStatus>>,
    /// The factory reset's confirmation token and when it was handed out.
    reset_token: Mutex<Option<(String, std::time::Instant)>>,
    /// The update staged in the idle slot, waiting to be applied.
    staged: Mutex<Option<Staged>>,
    /// Wakes the loop that applies staged updates when one is staged.
    staged_changed: tokio::sync::Notify,
    /// The last install gate's look (what the application said, when to look again), for
    /// the staged update the install leaves.
    gate_look: Mutex<Option<(slate_core::policy::Held, Option<i64>)>>,
}

/// This boot's state: what systemd-boot selected (`LoaderEntrySelected`), unless the running
/// slot's entry on the ESP says more. The variable keeps the name the entry had at boot, so a
/// trial committed since (by an earlier agent process this boot: `slated install` on the
/// console, or slated after a restart) shows only on the ESP; with no boot loader variables
/// the ESP is all there is.
fn running_boot_state(
    selected: BootState,
    on_esp: Option<&slate_core::api::SlotStatus>,
) -> BootState {
    match (selected, on_esp.map(|v| (v.state, v.tries_left))) {
        (BootState::Trial { .. }, Some((SlotState::Good, _))) => BootState::Good,
        (BootState::Unknown, Some((SlotState::Good, _))) => BootState::Good,
        (BootState::Unknown, Some((SlotState::Trial, left))) => BootState::Trial {
            left: left.unwrap_or(0),
            done: 0,
        },
        (selected, _) => selected,
    }
}

impl Agent {
    /// Reads the configuration and state; mounts the ESP.
    pub fn load(count_boot: bool) -> Result<Agent> {
        let line = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
        let slot = slate_core::cmdline::slot(&line)?;
        let root_hash = line
            .parse::<slate_core::cmdline::BootParams>()
            .map(|p| p.verity.root_hash)
            .ok();
        let image: ImageInfo = read_toml(&format!("/{}", paths::IMAGE))?;
        // Fail closed: without its settings the agent would run without authentication, and
        // without its checks it would commit every trial boot.
        let config: AgentConfig = read_toml(&format!("/{}", paths::AGENT))?;
        if config.token.is_some() {
            anyhow::bail!("/{}: {}", paths::AGENT, config::TOKEN_REMOVED);
        }
        let checks: config::Health = read_toml(&format!("/{}", paths::HEALTH))?;
        // Also fail closed: an image that has windows never applies updates outside them.
        let policy_path = format!("/{}", paths::POLICY);
        let policy = if Path::new(&policy_path).exists() {
            Some(read_toml::<slate_core::policy::Policy>(&policy_path)?)
        } else {
            None
        };
        let trust = match &config.trust {
            Some(p) => match std::fs::read_to_string(p)
                .map_err(anyhow::Error::from)
                .and_then(|t| Ok(Trust::parse(&t)?))
            {
                Ok(t) => Some(t),
                Err(e) => {
                    marker::warn(format!("trust file {p}: {e:#}; updates are refused"));
                    None
                }
            },
            None => None,
        };
        let esp = match Esp::mount() {
            Ok(e) => Some(e),
            Err(e) => {
                marker::warn(format!("ESP: {e:#}; updates are refused"));
                None
            }
        };
        crate::hooks::arm(config.test_hooks);
        let dir = Path::new(state::DIR);
        let mut st = State::load(dir);
        // The floor: what was committed (its one store, the floor's file), and never below
        // the running image's epoch.
        st.security_epoch = crate::floor::read().max(image.security_epoch);
        st.slot_epochs
            .insert(slot.to_string(), image.security_epoch);
        if count_boot {
            st.boots += 1;
            if let Err(e) = st.save(dir) {
                marker::warn(format!("saving {}: {e}", dir.display()));
            }
        }
        let entry = crate::boot::efivars::selected_entry();
        let on_esp = esp
            .as_ref()
            .and_then(|e| e.entries().ok())
            .map(|es| slots::view(slot, &es));
        let boot = running_boot_state(
            crate::boot::efivars::boot_state(entry.as_deref()),
            on_esp.as_ref(),
        );
        if boot == BootState::Good {
            // A committed image: the floor is at least its epoch, whatever the files say.
            if let Err(e) = crate::floor::raise(image.security_epoch) {
                marker::warn(format!("recording the security floor: {e:#}"));
            }
        }
        let status = Status {
            slot,
            name: image.name.clone(),
            version: image.version.clone(),
            board: image.board.clone(),
            root_hash,
            entry,
            boot,
            uptime_s: 0.0,
            health: Health::default(),
            slots: Vec::new(),
            last_attempt: None,
            last_refusal: None,
            failed: Vec::new(),
            boots: 0,
            security_epoch: 0,
            installing: false,
            identity: None,
            channel: None,
            fleet: None,
            window: None,
            progress: None,
            consent: None,
            staged: None,
            secure_boot: crate::boot::secure_boot::enabled(),
            built_for_secure_boot: image.secure_boot,
            tpm: Some(crate::tpm::status_for_agent()),
        };
        let secure_boot_db = image.secure_boot.then(|| {
            crate::boot::secure_boot::db_key().map_err(|e| {
                marker::warn(format!("{e:#}; updates are refused"));
                format!("{e:#}")
            })
        });
        if image.secure_boot && !status.secure_boot {
            marker::warn(
                "this image was built for Secure Boot and the firmware has it off: its root hash is not authenticated",
            );
        }
        let staged = Agent::find_staged(esp.as_ref(), slot, st.staged.as_ref());
        Ok(Agent {
            slot,
            image,
            config,
            checks,
            trust,
            esp,
            secure_boot_db,
            state: Mutex::new(st),
            status: Mutex::new(status),
            channel: Mutex::new(None),
            fleet: Mutex::new(None),
            refusals: Mutex::new(Throttle::default()),
            operator_ca: std::sync::OnceLock::new(),
            policy,
            progress: Mutex::new(None),
            reset_token: Mutex::new(None),
            consent: Mutex::new(None),
            staged: Mutex::new(staged),
            staged_changed: tokio::sync::Notify::new(),
            gate_look: Mutex::new(None),
        })
    }

    /// Records the device's TLS identity for the status.
    pub fn set_identity(&self, fingerprint: slate_core::Fingerprint) {
        lock(&self.status).identity = Some(fingerprint);
    }

    /// Adds a channel download's cost to the counters `/v1/status` and `/metrics` show, and
    /// keeps them in the state: the install that follows reboots the machine.
    pub fn count_download(&self, one: &slate_core::api::Downloads) {
        let totals = {
            let mut st = lock(&self.state);
            st.channel_downloads.add(one);
            self.save(&st);
            st.channel_downloads.clone()
        };
        if let Some(c) = lock(&self.channel).as_mut() {
            c.downloads = totals;
        }
    }

    fn save(&self, st: &State) {
        if let Err(e) = st.save(Path::new(state::DIR)) {
            marker::warn(format!("saving agent state: {e}"));
        }
    }

    /// Cut points at the start of a boot (test images only).
    pub fn boot_cut_points(&self) {
        if matches!(lock(&self.status).boot, BootState::Trial { .. }) {
            crate::hooks::cut_point(slate_core::api::CutPoint::TrialBoot);
        }
        let after_rollback = lock(&self.state)
            .last_attempt
            .as_ref()
            .is_some_and(|a| a.outcome == Outcome::RolledBack && a.slot != self.slot);
        if after_rollback {
            crate::hooks::cut_point(slate_core::api::CutPoint::FallbackBoot);
        }
    }

    /// What the pure decision functions need about this boot.
    fn decide(
        &self,
        esp: &dyn BootBackend,
        decide: impl FnOnce(&Boot<'_>) -> Plan,
    ) -> Option<Plan> {
        let entries = match esp.entries() {
            Ok(e) => e,
            Err(e) => {
                marker::warn(format!("reading the boot entries: {e:#}"));
                return None;
            }
        };
        let boot = lock(&self.status).boot;
        let (last_attempt, other_epoch) = {
            let st = lock(&self.state);
            (
                st.last_attempt.clone(),
                st.slot_epochs.get(&self.slot.other().to_string()).copied(),
            )
        };
        Some(decide(&Boot {
            running: self.slot,
            version: &self.image.version,
            boot,
            entries: &entries,
            last_attempt: last_attempt.as_ref(),
            security_epoch: self.image.security_epoch,
            other_epoch,
            now: now(),
        }))
    }

    /// Carries out a plan step by step; returns false when a required step failed (the steps
    /// after it are not carried out).
    fn carry_out(&self, esp: &dyn BootBackend, plan: &Plan) -> bool {
        for step in &plan.steps {
            tracing::debug!(?step, "carrying out");
            match step {
                Step::Rename { from, to, required } => {
                    if let Err(e) = esp.rename_entry(from, to) {
                        marker::warn(format!("renaming {from} to {to}: {e:#}"));
                        if *required {
                            return false;
                        }
                    }
                }
                Step::CutPoint(step) => crate::hooks::cut_point(*step),
                Step::Fail {
                    version,
                    reason,
                    cause,
                    at,
                } => lock(&self.state).fail(version, reason, *cause, *at),
                Step::RaiseEpoch(epoch) => {
                    if let Err(e) = crate::floor::raise(*epoch) {
                        marker::warn(format!("raising the security floor to {epoch}: {e:#}"));
                    }
                    let mut st = lock(&self.state);
                    st.security_epoch = st.security_epoch.max(*epoch);
                }
                Step::Record(record) => {
                    let mut st = lock(&self.state);
                    st.count(record.outcome);
                    st.last_attempt = Some(record.clone());
                    self.save(&st);
                }
                Step::Say(m) => marker::emit(m),
                Step::Reboot => {}
            }
        }
        if plan.commits() {
            lock(&self.status).boot = BootState::Good;
        }
        true
    }

    /// After a boot on the old slot: if the last install never got committed and its slot is
    /// bad (or empty), the new version failed to boot and systemd-boot fell back.
    pub fn notice_fallback(&self) {
        let Some(esp) = &self.esp else { return };
        if let Some(plan) = self.decide(esp, slots::notice_fallback) {
            self.carry_out(esp, &plan);
        }
    }

    /// Acts on the health result: on a trial boot, bless (commit) or mark bad and reboot.
    /// Returns true when the machine must reboot.
    pub fn conclude(&self, health: &Health) -> bool {
        if health.state == HealthState::Passed {
            marker::emit(&Marker::Healthy {
                slot: self.slot,
                version: self.image.version.to_string(),
                ms: uptime_ms(),
            });
            if let Err(e) = crate::attempts::clear() {
                marker::warn(format!("clearing the boot count: {e:#}"));
            }
        } else {
            marker::emit(&Marker::Unhealthy {
                slot: self.slot,
                version: self.image.version.to_string(),
                failed: health.failures(),
            });
        }
        lock(&self.status).health = health.clone();
        if !matches!(lock(&self.status).boot, BootState::Trial { .. }) {
            return false;
        }
        let Some(esp) = &self.esp else {
            marker::warn("trial boot without an ESP; cannot commit or roll back");
            return false;
        };
        let Some(plan) = self.decide(esp, |b| slots::after_health(b, health)) else {
            return false;
        };
        self.carry_out(esp, &plan) && plan.reboots()
    }

    /// Installs a bundle from `body` (one at a time, across processes).
    pub fn install(&self, body: impl Read, force: bool) -> Result<Installed, InstallError> {
        self.install_with(body, force, None, None, None, None)
    }

    /// [`Agent::install`] that reports how far the root image is durable (a pull's resume
    /// state). Without a checkpoint, a pull's old resume record is forgotten first: this
    /// install rewrites the slot it describes.
    pub fn install_with(
        &self,
        body: impl Read,
        force: bool,
        offered: Option<&slate_core::Version>,
        checkpoint: Option<&install::Checkpoint<'_>>,
        feed: Option<Feed>,
        gate: Option<&install::Gate<'_>>,
    ) -> Result<Installed, InstallError> {
        let _held =
            install::lock::try_take(Path::new(install::lock::PATH)).map_err(|e| match e {
                install::lock::NotTaken::Busy(r) => InstallError::Refused(r),
                install::lock::NotTaken::Failed(e) => InstallError::Failed(e),
            })?;
        // Only the holder of the install lock shows its progress.
        if let Some(f) = feed {
            self.progress_phase(f.phase, f.total, Some(f.done));
        }
        let esp = self.esp.as_ref().ok_or(Refusal::NoEsp)?;
        let facts = {
            let st = lock(&self.state);
            DeviceFacts {
                product: self.image.name.clone(),
                board: self.image.board.clone(),
                version: self.image.version.clone(),
                security_epoch: st.security_epoch,
                failed_versions: slate_core::retry::blocked(&st.failed, now()),
                now: now(),
            }
        };
        let running_on_trial = matches!(lock(&self.status).boot, BootState::Trial { .. });
        if force {
            // Force may retry a failed version or reinstall/downgrade within the epoch (never
            // below it); it is always on record.
            tracing::warn!("forced install: a failed or not newer version may be installed");
            let mut st = lock(&self.state);
            st.forced += 1;
            self.save(&st);
        }
        lock(&self.status).installing = true;
        let inst = Installer {
            boot: esp,
            trust: self.trust.as_ref(),
            facts,
            running: self.slot,
            running_on_trial,
            force,
            staging: std::path::PathBuf::from(STAGING),
            boot_kind: if self.image.boots_ukis() {
                slate_core::install::BootKind::Uki
            } else {
                slate_core::install::BootKind::Conf
            },
            secure_boot_db: self
                .secure_boot_db
                .as_ref()
                .map(|k| k.as_deref().map_err(Clone::clone)),
            offered: offered.cloned(),
            checkpoint,
            on_phase: Some(&|phase| self.progress_phase(phase, 0, None)),
            gate,
        };
        if checkpoint.is_none() {
            if let Err(e) =
                crate::slated::resume::forget(std::path::Path::new(crate::slated::resume::RECORD))
            {
                marker::warn(format!("{e:#}"));
            }
        }
        let say = |m: &Marker| {
            if let Marker::Installing { version, .. } = m {
                self.progress_version(version);
            }
            marker::emit(m);
        };
        let r = install::install(&inst, body, &say);
        lock(&self.status).installing = false;
        if r.is_err() {
            self.progress_done();
        }
        match &r {
            Ok(i) if i.staged => self.keep_staged(i.entry.clone()),
            _ => self.recheck_staged(),
        }
        let mut st = lock(&self.state);
        match &r {
            Ok(i) => {
                st.last_attempt = Some(UpdateRecord {
                    version: Some(i.manifest.version.clone()),
                    slot: i.slot,
                    outcome: Outcome::Installed,
                    reason: String::new(),
                    security_epoch: i.manifest.security_epoch,
                    at: now(),
                });
                st.count(Outcome::Installed);
                st.slot_epochs
                    .insert(i.slot.to_string(), i.manifest.security_epoch);
                st.bytes_written += i.bytes_written;
                st.last_install_seconds = i.seconds;
                marker::emit(&Marker::Installed {
                    slot: i.slot,
                    version: i.manifest.version.to_string(),
                    seconds: i.seconds,
                });
            }
            Err(e) => {
                st.last_refusal = Some(UpdateRecord {
                    version: None,
                    slot: self.slot.other(),
                    outcome: Outcome::Refused,
                    reason: e.to_string(),
                    security_epoch: 0,
                    at: now(),
                });
                st.count(Outcome::Refused);
                if let Some(held_back) = lock(&self.refusals).admit() {
                    if held_back > 0 {
                        tracing::warn!(held_back, "refusals not printed");
                    }
                    marker::emit(&Marker::UpdateRefused {
                        reason: e.to_string(),
                    });
                }
            }
        }
        // A refusal changes nothing on the device: it is counted and shown in memory, and
        // not written to /data per request.
        if r.is_ok() {
            self.save(&st);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slate_core::api::SlotStatus;

    fn on_esp(state: SlotState, tries_left: Option<u32>) -> SlotStatus {
        SlotStatus {
            slot: Slot::B,
            state,
            version: None,
            tries_left,
            entry: None,
        }
    }

    #[test]
    fn a_trial_committed_since_boot_is_good() {
        let trial = BootState::Trial { left: 2, done: 1 };
        let committed = on_esp(SlotState::Good, None);
        assert_eq!(running_boot_state(trial, Some(&committed)), BootState::Good);
        let still = on_esp(SlotState::Trial, Some(2));
        assert_eq!(running_boot_state(trial, Some(&still)), trial);
        assert_eq!(running_boot_state(trial, None), trial);
    }

    #[test]
    fn without_boot_loader_variables_the_esp_decides() {
        let u = BootState::Unknown;
        assert_eq!(
            running_boot_state(u, Some(&on_esp(SlotState::Good, None))),
            BootState::Good
        );
        assert_eq!(
            running_boot_state(u, Some(&on_esp(SlotState::Trial, Some(1)))),
            BootState::Trial { left: 1, done: 0 }
        );
        assert_eq!(
            running_boot_state(u, Some(&on_esp(SlotState::Bad, Some(0)))),
            u
        );
        assert_eq!(running_boot_state(BootState::Good, None), BootState::Good);
    }
}
