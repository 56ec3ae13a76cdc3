//! When a device asks the channel again: a poll interval with jitter (so a fleet that booted
//! together does not poll together), and exponential backoff after errors (so a struggling
//! server is not hammered by the whole fleet at once).
//!
//! Randomness comes in as an argument (`draw`), so the agent passes real random numbers and
//! the fleet simulator a seeded generator, and both run this exact arithmetic.

use serde::{Deserialize, Serialize};

/// Polling settings (`[update]` in the agent's configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    /// Mean seconds between checks.
    pub interval: u64,
    /// Jitter as a share of the interval, in percent: each wait is drawn uniformly from
    /// `interval ± jitter%`.
    pub jitter_percent: u64,
    /// First wait after a failure, in seconds; doubled per further failure.
    pub backoff_base: u64,
    /// Longest wait after failures.
    pub backoff_max: u64,
}

impl Default for Poll {
    fn default() -> Poll {
        Poll {
            interval: 6 * 3600,
            jitter_percent: 25,
            backoff_base: 30,
            backoff_max: 6 * 3600,
        }
    }
}

impl Poll {
    /// The settings of an image whose spec sets only `poll_interval` (the imager writes
    /// these): the defaults, with failures backing off to at most the interval. The fleet
    /// simulator uses the same, so it simulates what devices run.
    pub fn with_interval(interval: u64) -> Poll {
        Poll {
            interval,
            backoff_max: interval,
            ..Poll::default()
        }
    }
}

/// Seconds until the next regular check, for a uniform random `draw`.
pub fn next_poll(poll: &Poll, draw: u64) -> u64 {
    let spread = poll.interval.saturating_mul(poll.jitter_percent.min(100)) / 100;
    let low = poll.interval - spread;
    low + draw % (2 * spread + 1)
}

/// Seconds until the next try after `failures` consecutive failures (≥ 1): exponential, capped,
/// and "equal jitter" (half fixed, half random) so retries spread out but never come at once.
pub fn backoff_delay(poll: &Poll, failures: u32, draw: u64) -> u64 {
    let exp = failures.saturating_sub(1).min(32);
    let full = poll
        .backoff_base
        .saturating_mul(1u64 << exp)
        .min(poll.backoff_max)
        .max(1);
    let half = full / 2;
    half + draw % (full - half + 1)
}

/// Seconds over which devices that become ready at the same moment spread their check.
pub const WAKE_SPREAD: u64 = 300;

/// How a check of the channel went, as the scheduler needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The repository was read and verified; `ready_at` is when a waited-for update becomes
    /// ready for this device, if one is.
    Checked {
        /// When the device's wave reaches it (seconds since the epoch).
        ready_at: Option<u64>,
    },
    /// The check (or the download it started) failed.
    Failed,
}

/// A device's polling state: consecutive failures, and when to ask next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scheduler {
    /// Failures since the last good check.
    pub failures: u32,
}

impl Scheduler {
    /// When to check next (seconds since the epoch) after a check at `now`: after a failure,
    /// backoff; otherwise the jittered interval, or earlier when this device's wave opens
    /// before that (so a wave's even spread reaches the server as an even spread).
    pub fn next_check(&mut self, poll: &Poll, now: u64, outcome: Outcome, draw: u64) -> u64 {
        match outcome {
            Outcome::Failed => {
                self.failures = self.failures.saturating_add(1);
                now.saturating_add(backoff_delay(poll, self.failures, draw))
            }
            Outcome::Checked { ready_at } => {
                self.failures = 0;
                let regular = now.saturating_add(next_poll(poll, draw));
                match ready_at {
                    // The ~50 devices per seed of a 100,000-device fleet share a ready time:
                    // spread their wake-up so they do not reach the server in one second.
                    Some(at) if at > now => {
                        regular.min(at.saturating_add((draw >> 32) % WAKE_SPREAD))
                    }
                    _ => regular,
                }
            }
        }
    }
}

/// When each release target may be fetched again after it failed: one target that keeps
/// failing (a mirror that cuts it off, a bundle this device refuses) is tried with a growing
/// back-off, and never holds back another target (the next release) with its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetBackoff {
    targets: std::collections::BTreeMap<crate::Digest32, TargetFailures>,
}

/// A target's failures so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TargetFailures {
    failures: u32,
    /// None: not again (refused for what it is).
    not_before: Option<u64>,
}

impl TargetBackoff {
    /// Records a failure of the target with this sha256 at `now`: `lasting` when the bundle
    /// was refused for what it is (it is never fetched again), otherwise backed off as the
    /// scheduler backs off failed checks. Returns when it may be tried again.
    pub fn failed(
        &mut self,
        sha256: crate::Digest32,
        lasting: bool,
        poll: &Poll,
        now: u64,
        draw: u64,
    ) -> Option<u64> {
        let entry = self.targets.entry(sha256).or_insert(TargetFailures {
            failures: 0,
            not_before: Some(now),
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.not_before = if lasting {
            None
        } else {
            Some(now.saturating_add(backoff_delay(poll, entry.failures, draw)))
        };
        entry.not_before
    }

    /// Forgets a target's failures (it was installed, or the channel no longer offers it).
    pub fn forget(&mut self, sha256: &crate::Digest32) {
        self.targets.remove(sha256);
    }

    /// Whether the target may be fetched at `now`: `Ok`, or `Err(when)` with the time it may
    /// (`None`: never) and the failures so far.
    pub fn may_fetch(&self, sha256: &crate::Digest32, now: u64) -> Result<(), (Option<u64>, u32)> {
        match self.targets.get(sha256) {
            Some(t) if t.not_before.is_none() || t.not_before.is_some_and(|at| now < at) => {
                Err((t.not_before, t.failures))
            }
            _ => Ok(()),
        }
    }
}
