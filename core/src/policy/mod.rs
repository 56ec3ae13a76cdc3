//! When and how a device may act on an update (`[update]` policy): maintenance windows in the
//! device's time zone, and a bandwidth cap. Waves decide when a release is *offered*; this
//! decides when a device may switch slots and reboot for it, and how fast it may download. Pure: the time comes in as an argument, so the agent
//! passes its floored clock and the property tests a million random ones.

pub mod bucket;
pub mod window;
pub mod zone;

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
        // start skipped by a daylight-saving jump opens at the jump).
        let mut candidates: Vec<i64> = self.zone.changes_between(t, t + HORIZON_DAYS * 86_400);
        let local_day = (t + i64::from(self.zone.offset_at(t))).div_euclid(86_400);
        for day in local_day - 1..=local_day + HORIZON_DAYS {
            for w in &self.windows {
                let local_start = day * 86_400 + i64::from(w.start_min) * 60;
                candidates.push(self.zone.to_utc(local_start));
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
