//! The time zone windows are written in: a fixed UTC offset, or an IANA zone that the imager
//! resolved at build time into its offset changes (the device carries no zone database).

use serde::{Deserialize, Serialize};

/// A zone: an offset, and the changes to it (daylight saving), in UTC.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// As the spec names it (`UTC`, `+02:00`, `Europe/Berlin`).
    #[serde(default)]
    pub name: String,
    /// Seconds east of UTC before the first change.
    #[serde(default)]
    pub offset_s: i32,
    /// Changes, sorted: from this UTC time (Unix seconds), this offset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<(i64, i32)>,
}

impl Zone {
    /// A fixed offset: `UTC`, `Z`, `+02:00`, `-05:30`, `UTC+2`, `UTC-03:30`.
    pub fn fixed(text: &str) -> Option<Zone> {
        let t = text.trim();
        if t.is_empty() {
            return None;
        }
        let rest = t
            .strip_prefix("UTC")
            .or_else(|| t.strip_prefix("GMT"))
            .unwrap_or(t);
        if rest.is_empty() || rest == "Z" {
            return Some(Zone {
                name: t.to_string(),
                ..Zone::default()
            });
        }
        let (sign, digits) = match rest.split_at(1) {
            ("+", d) => (1, d),
            ("-", d) => (-1, d),
            _ => return None,
        };
        let (h, m) = match digits.split_once(':') {
            Some((h, m)) => (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?),
            None => (digits.parse::<i32>().ok()?, 0),
        };
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return None;
        }
        Some(Zone {
            name: t.to_string(),
            offset_s: sign * (h * 3600 + m * 60),
            changes: Vec::new(),
        })
    }

    /// The offset in force at UTC time `t`.
    pub fn offset_at(&self, t: i64) -> i32 {
        match self.changes.partition_point(|&(at, _)| at <= t) {
            0 => self.offset_s,
            i => self.changes[i - 1].1,
        }
    }

    /// The UTC times in `(from, to]` at which the offset changes.
    pub fn changes_between(&self, from: i64, to: i64) -> Vec<i64> {
        self.changes
            .iter()
            .map(|&(at, _)| at)
            .filter(|&at| at > from && at <= to)
            .collect()
    }
}
