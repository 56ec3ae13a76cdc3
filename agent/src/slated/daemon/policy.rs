//! The agent's update policy at work (staged updates and their looks are in `staged`): the
//! maintenance windows for the status, the live progress of the update being worked on, and the
//! factory reset's confirmation token. The decisions are `slate_core::policy`'s; this is the
//! state they need between requests.

use super::{lock, now, uptime_ms, Agent};
use anyhow::Context;
use slate_core::api::progress::Tracker;
use slate_core::api::Phase;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// How long a factory reset's confirmation token is good for.
pub const RESET_CONFIRM: std::time::Duration = std::time::Duration::from_secs(60);

/// The update being worked on: its tracker, and the counter of bytes its stream delivered.
pub(super) struct Active {
    pub(super) tracker: Tracker,
    pub(super) done: Option<Arc<AtomicU64>>,
}

/// Where an install's bytes come from, for its progress: the phase (downloading for a pull,
/// writing for a push), how many bytes the bundle has, and the counter its reader keeps.
pub struct Feed {
    /// The phase while the bundle streams in.
    pub phase: Phase,
    /// Bundle bytes in all (0 when unknown).
    pub total: u64,
    /// Bytes read so far.
    pub done: Arc<AtomicU64>,
}

impl Agent {
    /// A phase of an update begins (`total` bytes to do, 0 when unknown), its bytes counted
    /// by `done` when given; the version stays what an earlier phase learnt.
    pub fn progress_phase(&self, phase: Phase, total: u64, done: Option<Arc<AtomicU64>>) {
        let mut p = lock(&self.progress);
        let version = p.as_ref().and_then(|a| a.tracker.progress().version);
        *p = Some(Active {
            tracker: Tracker::start(phase, version, total, uptime_ms()),
            done,
        });
    }

    /// The update's version, once its manifest is verified.
    pub(super) fn progress_version(&self, version: &str) {
        if let Some(a) = lock(&self.progress).as_mut() {
            a.tracker.set_version(version);
        }
    }

    /// A new factory-reset confirmation token (the last one handed out is the only one good).
    pub fn reset_token(&self) -> anyhow::Result<String> {
        let mut b = [0u8; 16];
        rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())
            .context("no random bytes for a confirmation token")?;
        let token = hex::encode(b);
        *lock(&self.reset_token) = Some((token.clone(), std::time::Instant::now()));
        Ok(token)
    }

    /// Whether `token` confirms a reset: the last one handed out, within [`RESET_CONFIRM`]; it
    /// is used up either way.
    pub fn reset_confirmed(&self, token: &str) -> bool {
        lock(&self.reset_token)
            .take()
            .is_some_and(|(t, at)| t == token && at.elapsed() <= RESET_CONFIRM)
    }

    /// No update is being worked on.
    pub fn progress_done(&self) {
        *lock(&self.progress) = None;
    }

    /// The maintenance windows now, for an image that has them.
    pub(super) fn window_status(&self) -> Option<slate_core::api::WindowStatus> {
        let w = self.policy.as_ref().filter(|p| !p.windows.is_empty())?;
        let t = now();
        Some(slate_core::api::WindowStatus {
            open: w.is_open(t),
            next_open: w.next_open(t).unwrap_or(t),
        })
    }
}
