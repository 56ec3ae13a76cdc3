//! One maintenance window: days of the week and a local time span, `Sat 02:00-04:00`,
//! `daily 01:00-01:30`, `Mon-Fri 22:00-02:00` (crossing midnight: it belongs to the day it
//! starts), `Sat,Sun 03:00-05:00`.

use serde::{Deserialize, Serialize};
use std::fmt;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A window, kept as written (serde reads and writes the text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Days it starts on: bit 0 Monday … bit 6 Sunday.
    pub days: u8,
    /// Local start, minutes after midnight.
    pub start_min: u16,
    /// Local end, minutes after midnight; at or before the start: the next day's.
    pub end_min: u16,
}

/// Why a window's text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a maintenance window ({why}); write e.g. \"Sat 02:00-04:00\", \"daily 01:00-01:30\" or \"Mon-Fri 22:00-02:00\"")]
pub struct WindowError {
    /// The text.
    pub text: String,
    /// What is wrong.
    pub why: &'static str,
}

fn day(s: &str) -> Option<u8> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(s))
        .and_then(|i| u8::try_from(i).ok())
}

fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 is the end of the day.
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

impl std::str::FromStr for Window {
    type Err = WindowError;
    fn from_str(text: &str) -> Result<Window, WindowError> {
        let bad = |why| WindowError {
            text: text.to_string(),
            why,
        };
        let (days_text, span) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("days and a time span, separated by a space"))?;
        let mut days = 0u8;
        if days_text.eq_ignore_ascii_case("daily") {
            days = 0x7f;
        } else {
            for part in days_text.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (
                            day(a).ok_or_else(|| bad("an unknown day (Mon … Sun)"))?,
                            day(b).ok_or_else(|| bad("an unknown day (Mon … Sun)"))?,
                        );
                        let mut d = a;
                        loop {
                            days |= 1 << d;
                            if d == b {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                    None => {
                        days |= 1 << day(part).ok_or_else(|| bad("an unknown day (Mon … Sun)"))?
                    }
                }
            }
        }
        let (a, b) = span
            .trim()
            .split_once('-')
            .ok_or_else(|| bad("a time span HH:MM-HH:MM"))?;
        let start_min = minutes(a)
            .filter(|&m| m < 1440)
            .ok_or_else(|| bad("a start time HH:MM"))?;
        let end_min = minutes(b).ok_or_else(|| bad("an end time HH:MM"))?;
        if start_min == end_min {
            return Err(bad("it starts when it ends"));
        }
        Ok(Window {
            days,
            start_min,
            end_min: end_min % 1440,
        })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == 0x7f {
            f.write_str("daily")?;
        } else {
            let names: Vec<&str> = (0..7)
                .filter(|d| self.days & (1 << d) != 0)
                .map(|d| DAYS[d])
                .collect();
            f.write_str(&names.join(","))?;
        }
        write!(
            f,
            " {:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Window, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Window {
    /// Minutes it lasts (crossing midnight included).
    pub fn length_min(&self) -> u16 {
        (self.end_min + 1440 - self.start_min) % 1440
    }

    /// Whether the local time `local` (seconds since 1970-01-01 00:00 local) is inside.
    pub fn contains_local(&self, local: i64) -> bool {
        let day = local.div_euclid(86_400);
        let minute = local.rem_euclid(86_400) / 60;
        // 1970-01-01 was a Thursday (index 3).
        let weekday = |d: i64| u8::try_from((d + 3).rem_euclid(7)).unwrap_or(0);
        let (start, len) = (i64::from(self.start_min), i64::from(self.length_min()));
        // Started today, or yesterday and running past midnight.
        let today = self.days & (1 << weekday(day)) != 0 && minute >= start && minute < start + len;
        let yesterday = self.days & (1 << weekday(day - 1)) != 0 && minute + 1440 < start + len;
        today || yesterday
    }
}
