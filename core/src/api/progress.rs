//! Live progress of the update a device is working on (`progress` in `/v1/status`): its
//! phase, bytes done of the total, the rate over the last seconds and the time left. The
//! [`Tracker`] is pure: the agent feeds it byte counts with millisecond timestamps.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What the device is doing with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Fetching the bundle from the channel (and writing it as it comes).
    Downloading,
    /// Receiving a pushed bundle and writing it into the idle slot.
    Writing,
    /// Reading the slot back against the signed verity tree.
    Verifying,
    /// Written and verified, waiting to be applied.
    Staged,
    /// Switching to the new slot (entry written, rebooting).
    Applying,
}

impl Phase {
    /// Every phase, in the order an update goes through them.
    pub const ALL: [Phase; 5] = [
        Phase::Downloading,
        Phase::Writing,
        Phase::Verifying,
        Phase::Staged,
        Phase::Applying,
    ];

    /// The word in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Downloading => "downloading",
            Phase::Writing => "writing",
            Phase::Verifying => "verifying",
            Phase::Staged => "staged",
            Phase::Applying => "applying",
        }
    }
}

/// The status's `progress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// What is happening.
    pub phase: Phase,
    /// The version it is for, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Bytes done in this phase.
    pub bytes: u64,
    /// Bytes the phase has in all (0 when unknown).
    pub total: u64,
    /// Bytes a second over the last few seconds.
    pub rate_bytes_s: u64,
    /// Seconds left at that rate (none when unknown).
    pub eta_s: Option<u64>,
}

/// How far back the rate looks.
const WINDOW_MS: u64 = 5_000;

/// Follows one phase's bytes and gives the [`Progress`] to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    phase: Phase,
    version: Option<String>,
    total: u64,
    /// (time in ms, bytes done), oldest first, within [`WINDOW_MS`] of the newest.
    samples: VecDeque<(u64, u64)>,
}

impl Tracker {
    /// A phase starting at `now_ms` with `total` bytes to do.
    pub fn start(phase: Phase, version: Option<String>, total: u64, now_ms: u64) -> Tracker {
        Tracker {
            phase,
            version,
            total,
            samples: VecDeque::from([(now_ms, 0)]),
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Names the version (learnt once the manifest is verified).
    pub fn set_version(&mut self, version: &str) {
        self.version = Some(version.to_string());
    }

    /// `bytes` done at `now_ms`.
    pub fn update(&mut self, bytes: u64, now_ms: u64) {
        self.samples.push_back((now_ms, bytes));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now_ms.saturating_sub(*t) > WINDOW_MS)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// What to show.
    pub fn progress(&self) -> Progress {
        let (first, last) = match (self.samples.front(), self.samples.back()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => ((0, 0), (0, 0)),
        };
        let ms = last.0.saturating_sub(first.0);
        let rate = last
            .1
            .saturating_sub(first.1)
            .saturating_mul(1000)
            .checked_div(ms)
            .unwrap_or(0);
        let eta_s =
            (self.total > 0 && rate > 0).then(|| self.total.saturating_sub(last.1).div_ceil(rate));
        Progress {
            phase: self.phase,
            version: self.version.clone(),
            bytes: last.1,
            total: self.total,
            rate_bytes_s: rate,
            eta_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_time_left_come_from_the_last_seconds() {
        let mut t = Tracker::start(Phase::Downloading, Some("2.0.0".into()), 10_000_000, 0);
        assert_eq!(t.progress().rate_bytes_s, 0);
        assert_eq!(t.progress().eta_s, None);
        // 1 MB/s for 10 s, then 100 kB/s: the rate follows within five seconds.
        for s in 1..=10 {
            t.update(s * 1_000_000, s * 1000);
        }
        let p = t.progress();
        assert_eq!((p.bytes, p.rate_bytes_s), (10_000_000, 1_000_000));
        assert_eq!(p.eta_s, Some(0));
        let mut t = Tracker::start(Phase::Writing, None, 20_000_000, 0);
        for s in 1..=10 {
            t.update(s * 1_000_000, s * 1000);
        }
        for s in 11..=20 {
            t.update(10_000_000 + (s - 10) * 100_000, s * 1000);
        }
        let p = t.progress();
        assert_eq!(p.rate_bytes_s, 100_000);
        assert_eq!(p.eta_s, Some((20_000_000 - 11_000_000) / 100_000));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"phase":"writing","bytes":11000000,"total":20000000,"rate_bytes_s":100000,"eta_s":90}"#
        );
    }
}
