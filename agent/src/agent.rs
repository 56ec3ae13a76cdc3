//! `slated`'s core: what it knows about this boot, the post-boot decisions (commit, roll back,
//! notice a fallback) and the install entry point shared by the HTTP API and the console.

use crate::esp::Esp;
use crate::install::{self, InstallError, Installed, Installer};
use crate::state::{self, Attempt, State};
use crate::status::{BootState, Health, Status};
use crate::{cmdline, marker, uptime_ms};
use anyhow::{Context, Result};
use slate_core::config::{self, paths, AgentConfig, ImageInfo};
use slate_core::layout::Slot;
use slate_core::manifest::{DeviceFacts, Trust};
use slate_core::slots::{self, State as SlotState};
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

/// Lock file that keeps the API and `slated install` from installing at once.
pub const INSTALL_LOCK: &str = "/run/slate/install.lock";

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
    /// Persistent state.
    pub state: Mutex<State>,
    /// What /v1/status shows.
    pub status: Mutex<Status>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    /// Reads the configuration and state; mounts the ESP.
    pub fn load(count_boot: bool) -> Result<Agent> {
        let line = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
        let slot = cmdline::slot(&line)?;
        let root_hash = cmdline::parse(&line)
            .map(|p| hex::encode(p.verity.root_hash))
            .unwrap_or_default();
        let image: ImageInfo = read_toml(&format!("/{}", paths::IMAGE))?;
        let config: AgentConfig = read_toml(&format!("/{}", paths::AGENT)).unwrap_or_default();
        let checks: config::Health = read_toml(&format!("/{}", paths::HEALTH)).unwrap_or_default();
        let trust = match &config.trust {
            Some(p) => match std::fs::read_to_string(p)
                .map_err(anyhow::Error::from)
                .and_then(|t| Ok(Trust::parse(&t)?))
            {
                Ok(t) => Some(t),
                Err(e) => {
                    marker::emit(&format!(
                        "warning: trust file {p}: {e:#}; updates are refused"
                    ));
                    None
                }
            },
            None => None,
        };
        let esp = match Esp::mount() {
            Ok(e) => Some(e),
            Err(e) => {
                marker::emit(&format!("warning: ESP: {e:#}; updates are refused"));
                None
            }
        };
        crate::hooks::arm(config.test_hooks);
        let dir = Path::new(state::DIR);
        let mut st = State::load(dir);
        if count_boot {
            st.boots += 1;
            if let Err(e) = st.save(dir) {
                marker::emit(&format!("warning: saving {}: {e}", dir.display()));
            }
        }
        let entry = crate::status::selected_entry();
        let mut boot = BootState::from_entry(entry.as_deref());
        if boot == BootState::Unknown {
            // No boot loader variables: the running slot's entry on the ESP says it.
            if let Some(v) = esp
                .as_ref()
                .and_then(|e| e.entries().ok())
                .map(|es| slots::view(slot, &es))
            {
                boot = match v.state {
                    SlotState::Good => BootState::Good,
                    SlotState::Trial => BootState::Trial {
                        left: v.tries_left.unwrap_or(0),
                        done: 0,
                    },
                    _ => BootState::Unknown,
                };
            }
        }
        let status = Status {
            slot,
            name: image.name.clone(),
            version: image.version.to_string(),
            board: image.board.clone(),
            root_hash,
            entry,
            boot,
            uptime_s: 0.0,
            health: Health {
                state: "pending".into(),
                checks: Vec::new(),
            },
            slots: Vec::new(),
            last_attempt: None,
            last_refusal: None,
            failed: Vec::new(),
            boots: 0,
            security_epoch: 0,
            installing: false,
        };
        Ok(Agent {
            slot,
            image,
            config,
            checks,
            trust,
            esp,
            state: Mutex::new(st),
            status: Mutex::new(status),
        })
    }

    /// The status with slots and state filled in.
    pub fn status(&self) -> Status {
        let mut s = lock(&self.status).clone();
        s.uptime_s = uptime_ms() as f64 / 1000.0;
        if let Some(es) = self.esp.as_ref().and_then(|e| e.entries().ok()) {
            s.slots = [Slot::A, Slot::B]
                .iter()
                .map(|&sl| slots::view(sl, &es))
                .collect();
        }
        let st = lock(&self.state);
        s.last_attempt = st.last_attempt.clone();
        s.last_refusal = st.last_refusal.clone();
        s.failed = st.failed.clone();
        s.boots = st.boots;
        s.security_epoch = st.security_epoch;
        s
    }

    fn save(&self, st: &State) {
        if let Err(e) = st.save(Path::new(state::DIR)) {
            marker::emit(&format!("warning: saving agent state: {e}"));
        }
    }

    /// Cut points at the start of a boot (test images only).
    pub fn boot_cut_points(&self) {
        if matches!(lock(&self.status).boot, BootState::Trial { .. }) {
            crate::hooks::cut_point("trial-boot");
        }
        let after_rollback = lock(&self.state)
            .last_attempt
            .as_ref()
            .is_some_and(|a| a.outcome == "rolled-back" && a.slot != self.slot.to_string());
        if after_rollback {
            crate::hooks::cut_point("fallback-boot");
        }
    }

    /// After a boot on the old slot: if the last install never got committed and its slot is
    /// bad (or empty), the new version failed to boot and systemd-boot fell back.
    pub fn notice_fallback(&self) {
        let Some(esp) = &self.esp else { return };
        let Ok(entries) = esp.entries() else { return };
        let mut st = lock(&self.state);
        let Some(a) = st.last_attempt.clone() else {
            return;
        };
        if a.outcome != "installed"
            || a.slot == self.slot.to_string()
            || lock(&self.status).boot != BootState::Good
        {
            return;
        }
        let Ok(their_slot) = a.slot.parse::<Slot>() else {
            return;
        };
        let view = slots::view(their_slot, &entries);
        if matches!(view.state, SlotState::Bad | SlotState::Empty) {
            let reason = "boot-failed: the new slot used up its boot tries; systemd-boot fell back"
                .to_string();
            st.fail(&a.version, &reason);
            st.last_attempt = Some(Attempt {
                outcome: "rolled-back".into(),
                reason: reason.clone(),
                at: now(),
                ..a.clone()
            });
            st.count("rolled-back");
            self.save(&st);
            marker::emit(&format!(
                "rollback slot={} version={} reason={reason}",
                a.slot, a.version
            ));
        }
    }

    /// Acts on the health result: on a trial boot, bless (commit) or mark bad and reboot.
    /// Returns true when the machine must reboot.
    pub fn conclude(&self, health: &Health) -> bool {
        let passed = health.state == "passed";
        if passed {
            marker::emit(&format!(
                "healthy slot={} version={} in {} ms since boot",
                self.slot,
                self.image.version,
                uptime_ms()
            ));
            if let Err(e) = crate::attempts::clear() {
                marker::emit(&format!("warning: clearing the boot count: {e:#}"));
            }
        } else {
            let failed: Vec<String> = health
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            marker::emit(&format!(
                "unhealthy slot={} version={} failed={}",
                self.slot,
                self.image.version,
                failed.join("; ")
            ));
        }
        lock(&self.status).health = health.clone();
        if !matches!(lock(&self.status).boot, BootState::Trial { .. }) {
            return false;
        }
        let Some(esp) = &self.esp else {
            marker::emit("warning: trial boot without an ESP; cannot commit or roll back");
            return false;
        };
        let current = esp.entries().ok().and_then(|es| {
            es.into_iter()
                .filter(|e| e.slot == self.slot && e.counter.is_some())
                .max_by(|a, b| a.version.cmp(&b.version))
        });
        let Some(current) = current else {
            marker::emit("warning: trial boot but no trial entry for this slot on the ESP");
            return false;
        };
        let mut st = lock(&self.state);
        let attempt_epoch = st
            .last_attempt
            .as_ref()
            .filter(|a| a.version == self.image.version.to_string())
            .map_or(0, |a| a.security_epoch);
        if passed {
            if let Err(e) = esp.rename_entry(&current, &slots::blessed(&current)) {
                marker::emit(&format!("warning: blessing {current}: {e:#}"));
                return false;
            }
            crate::hooks::cut_point("blessed");
            st.security_epoch = st.security_epoch.max(attempt_epoch);
            st.last_attempt = Some(Attempt {
                version: self.image.version.to_string(),
                slot: self.slot.to_string(),
                outcome: "committed".into(),
                reason: String::new(),
                security_epoch: attempt_epoch,
                at: now(),
            });
            st.count("committed");
            self.save(&st);
            lock(&self.status).boot = BootState::Good;
            marker::emit(&format!(
                "committed slot={} version={}",
                self.slot, self.image.version
            ));
            false
        } else {
            let reason = health
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; ");
            let reason = format!("health check failed: {reason}");
            if let Err(e) = esp.rename_entry(&current, &slots::marked_bad(&current)) {
                marker::emit(&format!("warning: marking {current} bad: {e:#}"));
            }
            crate::hooks::cut_point("marked-bad");
            st.fail(&self.image.version.to_string(), &reason);
            st.last_attempt = Some(Attempt {
                version: self.image.version.to_string(),
                slot: self.slot.to_string(),
                outcome: "rolled-back".into(),
                reason: reason.clone(),
                security_epoch: attempt_epoch,
                at: now(),
            });
            st.count("rolled-back");
            self.save(&st);
            marker::emit(&format!(
                "rollback slot={} version={} reason={reason}",
                self.slot, self.image.version
            ));
            true
        }
    }

    /// Installs a bundle from `body` (one at a time, across processes).
    pub fn install(&self, body: impl Read, force: bool) -> Result<Installed, InstallError> {
        std::fs::create_dir_all("/run/slate").ok();
        let lockfile = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(INSTALL_LOCK)
            .map_err(|e| InstallError::Failed(e.into()))?;
        if rustix::fs::flock(
            &lockfile,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .is_err()
        {
            return Err(InstallError::Refused(
                "another install is in progress".into(),
            ));
        }
        let esp = self.esp.as_ref().ok_or_else(|| {
            InstallError::Refused("the ESP is not mounted; updates are off".into())
        })?;
        let facts = {
            let st = lock(&self.state);
            DeviceFacts {
                product: self.image.name.clone(),
                board: self.image.board.clone(),
                version: self.image.version.clone(),
                security_epoch: st.security_epoch,
                failed_versions: st
                    .failed
                    .iter()
                    .filter_map(|f| f.version.parse().ok())
                    .collect(),
                now: now(),
            }
        };
        let running_on_trial = matches!(lock(&self.status).boot, BootState::Trial { .. });
        lock(&self.status).installing = true;
        let inst = Installer {
            esp,
            trust: self.trust.as_ref(),
            facts,
            running: self.slot,
            running_on_trial,
            force,
        };
        let r = install::install(&inst, body, &|m| marker::emit(m));
        lock(&self.status).installing = false;
        let mut st = lock(&self.state);
        match &r {
            Ok(i) => {
                st.last_attempt = Some(Attempt {
                    version: i.manifest.version.to_string(),
                    slot: i.slot.to_string(),
                    outcome: "installed".into(),
                    reason: String::new(),
                    security_epoch: i.manifest.security_epoch,
                    at: now(),
                });
                st.count("installed");
                st.bytes_written += i.bytes_written;
                st.last_install_seconds = i.seconds;
                marker::emit(&format!(
                    "installed slot={} version={} in {:.1} s; reboot to try it",
                    i.slot, i.manifest.version, i.seconds
                ));
            }
            Err(e) => {
                st.last_refusal = Some(Attempt {
                    version: String::new(),
                    slot: self.slot.other().to_string(),
                    outcome: "refused".into(),
                    reason: e.to_string(),
                    security_epoch: 0,
                    at: now(),
                });
                st.count("refused");
                marker::emit(&format!("update refused: {e}"));
            }
        }
        self.save(&st);
        r
    }

    /// Prometheus text.
    pub fn metrics(&self) -> String {
        let st = lock(&self.state);
        let s = lock(&self.status);
        let mut out = String::new();
        out.push_str("# HELP slate_update_attempts_total Update attempts by outcome.\n# TYPE slate_update_attempts_total counter\n");
        for o in ["installed", "committed", "rolled-back", "refused"] {
            out.push_str(&format!(
                "slate_update_attempts_total{{outcome=\"{o}\"}} {}\n",
                st.outcomes.get(o).copied().unwrap_or(0)
            ));
        }
        out.push_str(&format!("# HELP slate_update_bytes_written_total Bytes written by updates.\n# TYPE slate_update_bytes_written_total counter\nslate_update_bytes_written_total {}\n", st.bytes_written));
        out.push_str(&format!("# HELP slate_update_install_seconds Duration of the last install.\n# TYPE slate_update_install_seconds gauge\nslate_update_install_seconds {}\n", st.last_install_seconds));
        out.push_str(&format!("# HELP slate_boots_total Boots seen by the agent.\n# TYPE slate_boots_total counter\nslate_boots_total {}\n", st.boots));
        out.push_str(&format!("# HELP slate_healthy 1 when this boot passed its health checks.\n# TYPE slate_healthy gauge\nslate_healthy {}\n", u8::from(s.health.state == "passed")));
        out
    }
}
