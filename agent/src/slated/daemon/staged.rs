//! Download now, install later: an update written, read back and verified into the idle slot
//! whose entry is staged (`….conf.staged`, which systemd-boot does not load), and the looks at
//! it that apply it — at the next maintenance window, when the application lets go, or when an
//! operator says. The decisions are [`slate_core::policy::Policy::look`]'s; applying is a
//! rename on the ESP and a reboot, so it needs no network.

use super::{lock, marker, now, Agent};
use crate::slated::install::{self, InstallError, When};
use serde::{Deserialize, Serialize};
use slate_core::api::{ConsentStatus, Marker, Phase, StagedStatus};
use slate_core::bootentry::EntryName;
use slate_core::install::Refusal;
use slate_core::layout::Slot;
use slate_core::policy::{Answer, Held, Look, Policy, Trigger};
use std::path::Path;

/// The clock the policy judges by: the (floored) system clock, and whether it is more than a
/// floor ([`crate::clock::trusted`]).
fn clock() -> slate_core::policy::Clock {
    slate_core::policy::Clock {
        t: now(),
        trusted: crate::clock::trusted(),
    }
}

/// A staged update: the entry it becomes when applied, what the looks at it learnt, and when
/// the device looks again by itself.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The entry it becomes when applied (a trial with its boot counter).
    pub entry: EntryName,
    /// The application's answers so far; whether an operator staged it only.
    pub held: Held,
    /// When the device looks at it again by itself (none: only an operator applies it).
    pub apply_at: Option<i64>,
}

/// What `/data/slate/state.json` keeps of a staged update, so a restart or a power cut does
/// not forget what the application said or that an operator staged it only. The ESP's staged
/// entry is the truth about whether there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedRecord {
    /// Its slot.
    pub slot: Slot,
    /// Its version.
    pub version: String,
    /// What the looks at it learnt.
    #[serde(default)]
    pub held: Held,
}

/// What a look at the staged update came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied: the caller reboots into it.
    Reboot,
    /// Still staged; the device looks again at this time (none: only an operator applies it).
    Waiting(Option<i64>),
}

impl Agent {
    /// The policy in force: the image's, or the default (no windows: apply at once).
    fn policy_in_force(&self) -> Policy {
        self.policy.clone().unwrap_or_default()
    }

    /// Asks the application (`[update] consent`) about `version` (blocking: runs a program).
    fn ask(&self, policy: &Policy, version: &str) -> Answer {
        crate::slated::consent::ask(&policy.consent, version, &self.image.version.to_string())
    }

    /// What a look at `version` means beyond its decision: an override is logged and
    /// counted, the application's answer shown in the status and on the console.
    fn record_look(&self, version: &str, look: &Look) {
        match look {
            Look::Apply { overrides_window } => {
                if *overrides_window {
                    marker::warn(format!(
                        "{version} is applied outside the maintenance window, as an operator asked"
                    ));
                    let mut st = lock(&self.state);
                    st.window_overrides += 1;
                    self.save(&st);
                }
                *lock(&self.consent) = None;
            }
            Look::HeldBack { answer, at } => {
                let (word, reason) = match answer {
                    Answer::NotNow(r) => ("not-now", r.clone()),
                    Answer::No(r) => ("no", r.clone()),
                    Answer::Go => ("go", String::new()),
                };
                *lock(&self.consent) = Some(ConsentStatus {
                    version: version.to_string(),
                    answer: word.to_string(),
                    reason: reason.clone(),
                    ask_again_at: *at,
                });
                marker::emit(&Marker::Consent {
                    answer: word,
                    version: version.to_string(),
                    ask_again_at: *at,
                    reason,
                });
            }
            Look::Wait { .. } => {}
        }
    }

    /// Asked by an install once its manifest is verified: is `version` applied at once or
    /// staged? (`trigger`: the device's own policy, an operator's `--now` or `--stage`.) The
    /// look is kept for the staged update the install leaves.
    pub fn install_gate(&self, version: &slate_core::Version, trigger: Trigger) -> When {
        let policy = self.policy_in_force();
        let v = version.to_string();
        let mut held = Held {
            stage_only: trigger == Trigger::StageOnly,
            ..Held::default()
        };
        // What the application said about this version before (its earlier staging).
        if let Some(s) = lock(&self.staged)
            .as_ref()
            .filter(|s| s.entry.version == *version)
        {
            held.first_held = s.held.first_held;
        }
        let look = policy.look(&mut held, clock(), trigger, || self.ask(&policy, &v));
        self.record_look(&v, &look);
        let (when, apply_at) = match look {
            Look::Apply { .. } => (When::Now, None),
            Look::Wait { at } => (When::Later, at),
            Look::HeldBack { at, .. } => (When::Later, Some(at)),
        };
        if when == When::Later {
            // Kept before the staged entry is written: a power cut right after it must not
            // forget that an operator staged it only, or what the application said.
            let mut st = lock(&self.state);
            st.staged = Some(StagedRecord {
                slot: self.slot.other(),
                version: v,
                held: held.clone(),
            });
            self.save(&st);
        }
        *lock(&self.gate_look) = Some((held, apply_at));
        when
    }

    /// An install finished with its entry staged: the device remembers it and says so.
    pub(super) fn keep_staged(&self, entry: EntryName) {
        let (held, apply_at) = lock(&self.gate_look).take().unwrap_or_default();
        marker::emit(&Marker::Staged {
            slot: entry.slot,
            version: entry.version.to_string(),
            apply_at,
        });
        self.progress_phase(Phase::Staged, 0, None);
        self.remember(Some(Staged {
            entry,
            held,
            apply_at,
        }));
        // The loop that applies it looks at once.
        self.staged_changed.notify_one();
    }

    /// Sets the staged update (none: there is none), in memory and in the state file.
    fn remember(&self, staged: Option<Staged>) {
        let record = staged.as_ref().map(|s| StagedRecord {
            slot: s.entry.slot,
            version: s.entry.version.to_string(),
            held: s.held.clone(),
        });
        *lock(&self.staged) = staged;
        let mut st = lock(&self.state);
        if st.staged != record {
            st.staged = record;
            self.save(&st);
        }
    }

    /// After an install that did not stage: a staged update the ESP no longer has (the
    /// install removed the idle slot's entries) is forgotten.
    pub(super) fn recheck_staged(&self) {
        let gone = lock(&self.staged).as_ref().is_some_and(|s| {
            self.esp
                .as_ref()
                .and_then(|e| e.staged_entries().ok())
                .is_some_and(|es| !es.contains(&s.entry))
        });
        if gone {
            self.remember(None);
        }
    }

    /// The staged update found at start: the ESP's staged entry for the idle slot, with what
    /// the state file remembers of it.
    pub(super) fn find_staged(
        esp: Option<&crate::boot::esp::Esp>,
        running: Slot,
        record: Option<&StagedRecord>,
    ) -> Option<Staged> {
        let entry = esp?
            .staged_entries()
            .ok()?
            .into_iter()
            .find(|e| e.slot == running.other())?;
        let held = record
            .filter(|r| r.slot == entry.slot && r.version == entry.version.to_string())
            .map(|r| r.held.clone())
            .unwrap_or_default();
        Some(Staged {
            entry,
            held,
            apply_at: None,
        })
    }

    /// The staged update for the status (without reading the ESP).
    pub fn staged_status(&self) -> Option<StagedStatus> {
        let by = self.policy_in_force().reboot.as_str();
        lock(&self.staged).as_ref().map(|s| StagedStatus {
            slot: s.entry.slot,
            version: s.entry.version.to_string(),
            apply_at: s.apply_at,
            by: if s.held.stage_only { "operator" } else { by }.to_string(),
        })
    }

    /// Removes the staged update of `version` (a fleet server canceled its action before the
    /// switch): its entry goes from the ESP, so nothing boots that slot until the next
    /// install. False when `version` is not what is staged.
    pub fn discard_staged(&self, version: &slate_core::Version) -> Result<bool, InstallError> {
        let _lock =
            install::lock::try_take(Path::new(install::lock::PATH)).map_err(|e| match e {
                install::lock::NotTaken::Busy(r) => InstallError::Refused(r),
                install::lock::NotTaken::Failed(e) => InstallError::Failed(e),
            })?;
        let Some(staged) = lock(&self.staged).clone() else {
            return Ok(false);
        };
        if &staged.entry.version != version {
            return Ok(false);
        }
        let esp = self.esp.as_ref().ok_or(Refusal::NoEsp)?;
        esp.remove_slot(staged.entry.slot)
            .map_err(InstallError::Failed)?;
        self.remember(None);
        Ok(true)
    }

    /// The version staged, if any.
    pub fn staged_version(&self) -> Option<slate_core::Version> {
        lock(&self.staged).as_ref().map(|s| s.entry.version.clone())
    }

    /// Looks at the staged update (`trigger`: the device's own loop, or an operator's apply)
    /// and applies it when the policy lets it: the staged entry renamed into a trial, the
    /// one-shot choice made for a version that is not newer. The caller then reboots.
    pub fn look_at_staged(&self, trigger: Trigger) -> Result<Applied, InstallError> {
        let _lock =
            install::lock::try_take(Path::new(install::lock::PATH)).map_err(|e| match e {
                install::lock::NotTaken::Busy(r) => InstallError::Refused(r),
                install::lock::NotTaken::Failed(e) => InstallError::Failed(e),
            })?;
        let mut staged = lock(&self.staged).clone().ok_or(Refusal::NothingStaged)?;
        let esp = self.esp.as_ref().ok_or(Refusal::NoEsp)?;
        // The running slot on trial is not blessed yet: no switch away from it.
        let on_trial = matches!(
            lock(&self.status).boot,
            slate_core::api::BootState::Trial { .. }
        );
        slate_core::install::admit(self.slot, on_trial)?;
        let policy = self.policy_in_force();
        let version = staged.entry.version.to_string();
        let look = policy.look(&mut staged.held, clock(), trigger, || {
            self.ask(&policy, &version)
        });
        self.record_look(&version, &look);
        match look {
            Look::Apply { .. } => {
                marker::emit(&Marker::Applying {
                    slot: staged.entry.slot,
                    version: version.clone(),
                });
                self.progress_phase(Phase::Applying, 0, None);
                self.progress_version(&version);
                esp.apply_staged(&staged.entry)
                    .map_err(InstallError::Failed)?;
                if staged.entry.version <= self.image.version {
                    // systemd-boot's version order would boot the running entry again.
                    if let Err(e) = crate::boot::BootBackend::set_one_shot(esp, &staged.entry) {
                        marker::warn(format!(
                            "{} is applied but not newer than the running version, and the boot loader cannot be told to try it next: {e:#}",
                            staged.entry
                        ));
                    }
                }
                crate::hooks::cut_point(slate_core::api::CutPoint::Applying);
                self.remember(None);
                Ok(Applied::Reboot)
            }
            Look::Wait { at } => {
                staged.apply_at = at;
                self.remember(Some(staged));
                Ok(Applied::Waiting(at))
            }
            Look::HeldBack { answer, at } => {
                staged.apply_at = Some(at);
                self.remember(Some(staged));
                if matches!(trigger, Trigger::Operator { .. }) {
                    let reason = match answer {
                        Answer::NotNow(r) | Answer::No(r) => r,
                        Answer::Go => String::new(),
                    };
                    return Err(InstallError::Refused(Refusal::ConsentHeld {
                        reason,
                        ask_again_at: at,
                    }));
                }
                Ok(Applied::Waiting(Some(at)))
            }
        }
    }
}

/// The device's own loop over a staged update: it looks when one is staged and again when
/// the last look said (at the latest every minute, in case the clock jumped), and reboots into
/// the update once applied.
pub async fn run(agent: std::sync::Arc<Agent>) {
    loop {
        let wait = if lock(&agent.staged).is_some() {
            let a = agent.clone();
            match tokio::task::spawn_blocking(move || a.look_at_staged(Trigger::Device)).await {
                Ok(Ok(Applied::Reboot)) => {
                    marker::emit(&Marker::RebootingIntoNewSlot);
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    let _ = rustix::process::kill_process(
                        rustix::process::Pid::INIT,
                        rustix::process::Signal::TERM,
                    );
                    return;
                }
                Ok(Ok(Applied::Waiting(Some(at)))) => (at - now()).clamp(1, 60) as u64,
                Ok(Ok(Applied::Waiting(None))) => 3600,
                // Busy with an install, or the ESP failed: look again soon.
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "the staged update is not applied now");
                    10
                }
                Err(_) => 10,
            }
        } else {
            3600
        };
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
            _ = agent.staged_changed.notified() => {}
        }
    }
}
