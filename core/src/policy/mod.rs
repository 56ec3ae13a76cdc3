//! When and how a device may act on an update (`[update]` policy): maintenance windows in the
//! device's time zone, and a bandwidth cap. Waves decide when a release is *offered*; this
//! decides when a device may switch slots and reboot for it, and how fast it may download. Pure: the time comes in as an argument, so the agent
//! passes its floored clock and the property tests a million random ones.

pub mod apply;
pub mod bucket;
pub mod window;
pub mod zone;

pub use apply::{Clock, Decision, Held, Look, Reboot, Trigger};
pub use bucket::TokenBucket;

pub use window::{Window, WindowError};
pub use zone::Zone;

/// A device's maintenance windows and the zone they are written in. No windows: always open.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// The windows, as written in the spec (`Sat 02:00-04:00`, `daily 01:00-01:30`).
    #[serde(default)]
    pub windows: Vec<Window>,
    /// The zone they are read in.
    #[serde(default)]
    pub zone: Zone,
    /// The most a channel download may take, in KiB/s (none: as fast as it comes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_kib_s: Option<u32>,
    /// The application's say before an update is applied: argv of a program in the image
    /// (exit 0: go; 75: not now; anything else: no). Empty: no one is asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consent: Vec<String>,
    /// Seconds before asking again after "not now" [default: 300].
    #[serde(default = "default_consent_retry")]
    pub consent_retry_s: u64,
    /// Seconds after the first "not now" or "no" for a version when it is applied without
    /// asking (none: the application may hold it for ever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_force_after_s: Option<u64>,
    /// Who decides when a verified update switches slots [default: the windows].
    #[serde(default)]
    pub reboot: Reboot,
    /// With windows and a clock that cannot be trusted, the device applies updates anyway
    /// (judging the windows by its floored clock) [default: false: it waits for an operator or
    /// a trusted clock].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untrusted_clock_applies: bool,
}

fn default_consent_retry() -> u64 {
    300
}

/// What the application said (see [`Policy::consent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Exit 0.
    Go,
    /// Exit 75 (EX_TEMPFAIL), with what it said.
    NotNow(String),
    /// Anything else, with why.
    No(String),
}

/// What the device does about the application's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it.
    Apply,
    /// Ask again at this time.
    AskAgainAt(i64),
    /// Not applied; why (shown in the status), asked again at the time given.
    Refused(String, i64),
}

impl Policy {
    /// The verdict on `answer` at `now`, for a version the application first held back at
    /// `first_held` (none: this is the first answer): past `consent_force_after_s`, it is
    /// applied whatever the application says.
    pub fn verdict(&self, answer: &Answer, first_held: Option<i64>, now: i64) -> Verdict {
        let held_since = first_held.unwrap_or(now);
        let forced = self
            .consent_force_after_s
            .and_then(|s| i64::try_from(s).ok())
            .is_some_and(|limit| now.saturating_sub(held_since) >= limit);
        let again = now.saturating_add(i64::try_from(self.consent_retry_s).unwrap_or(300));
        match answer {
            Answer::Go => Verdict::Apply,
            _ if forced => Verdict::Apply,
            Answer::NotNow(_) => Verdict::AskAgainAt(again),
            Answer::No(why) => Verdict::Refused(why.clone(), again),
        }
    }
}

/// How far ahead [`Policy::next_open`] looks: a window opens at least once a week.
const HORIZON_DAYS: i64 = 8;

impl Policy {
    /// Whether an update may be applied at `t` (Unix seconds).
    pub fn is_open(&self, t: i64) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let local = t + i64::from(self.zone.offset_at(t));
        self.windows.iter().any(|w| w.contains_local(local))
    }

    /// The first moment at or after `t` when a window is open (`t` itself when one is);
    /// None only without any window day (which parsing refuses).
    pub fn next_open(&self, t: i64) -> Option<i64> {
        if self.is_open(t) {
            return Some(t);
        }
        // A window opens at a window's local start, or where the zone's offset changes (a
        // start skipped by a daylight-saving jump opens at the jump). A local start maps to
        // each offset in force around it (a jump back repeats an hour: both times count).
        let horizon = t + HORIZON_DAYS * 86_400;
        let mut candidates: Vec<i64> = self.zone.changes_between(t, horizon);
        let mut offsets: Vec<i32> = vec![self.zone.offset_at(t)];
        for c in &candidates {
            offsets.push(self.zone.offset_at(*c));
        }
        offsets.sort_unstable();
        offsets.dedup();
        let local_day = (t + i64::from(self.zone.offset_at(t))).div_euclid(86_400);
        for day in local_day - 1..=local_day + HORIZON_DAYS {
            for w in &self.windows {
                let local_start = day * 86_400 + i64::from(w.start_min) * 60;
                for &o in &offsets {
                    let utc = local_start - i64::from(o);
                    if self.zone.offset_at(utc) == o {
                        candidates.push(utc);
                    }
                }
            }
        }
        candidates
            .into_iter()
            .filter(|&c| c > t && self.is_open(c))
            .min()
    }
}

#[cfg(test)]
mod tests;
