//! Waves: which devices may take a release when, so that a bad release reaches 1% of a fleet
//! before it reaches all of it.
//!
//! Each device draws a [`Seed`] in `0..2048` once. A wave file lists waves by when they start
//! (after publishing) and the share of the fleet that has been offered the release by the
//! time the next wave starts. Publishing resolves the file into absolute times and seed ranges
//! ([`Waves`]); wave *i* covers seeds `[first_i, end_i)` and opens them one by one, evenly,
//! between its start and the next wave's start (the last wave's `end_after`), so the server
//! sees a steady trickle rather than a stampede at each wave's start. A seed above every wave
//! becomes ready when the last wave ends.
//!
//! Unlike Bottlerocket, the time within a wave is measured from the wave's *first* seed, not
//! from seed 0: otherwise a device in a later wave is placed as if the earlier waves' seeds
//! were spread over its wave too, and the wave opens late and then all at once.

use super::Span;
use serde::{Deserialize, Serialize};

/// How many seeds a fleet is divided into (as Bottlerocket: fine enough for 0.05% steps).
pub const SEEDS: u32 = 2048;

/// A device's place in every rollout: drawn once, uniformly, and kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Seed(u32);

impl Seed {
    /// A seed from a random number (any `u64`; reduced into `0..SEEDS`).
    pub fn from_random(r: u64) -> Seed {
        // SEEDS divides 2^64, so the reduction is uniform.
        Seed(u32::try_from(r % u64::from(SEEDS)).unwrap_or(0))
    }

    /// The seed's number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Seed {
    type Error = String;

    fn try_from(v: u32) -> Result<Seed, String> {
        if v < SEEDS {
            Ok(Seed(v))
        } else {
            Err(format!("seed {v} is out of range (0..{SEEDS})"))
        }
    }
}

impl From<Seed> for u32 {
    fn from(s: Seed) -> u32 {
        s.0
    }
}

/// A wave file as the operator writes it (`slate publish --waves waves.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveFile {
    /// The waves, earliest first.
    #[serde(rename = "wave", default)]
    pub waves: Vec<WaveSpec>,
}

/// One wave as written: when it starts, and how much of the fleet has been offered the release
/// once it has opened completely.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveSpec {
    /// Time after publishing when the wave starts.
    pub start_after: Span,
    /// Share of the fleet (cumulative, 1..=100) the release has reached after this wave.
    pub fleet_percentage: u32,
    /// Only for the last wave: when it has opened completely [default: at its start].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_after: Option<Span>,
}

/// Why a wave file was refused; each names the wave (1-based, as a person counts).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WaveError {
    /// Not TOML of the expected shape.
    #[error("{0}")]
    Syntax(String),
    /// The file has no `[[wave]]`.
    #[error("no [[wave]] given (leave --waves out to offer the release to every device at once)")]
    Empty,
    /// A percentage outside 1..=100.
    #[error("wave {wave}: fleet_percentage = {value} must be between 1 and 100")]
    Percentage {
        /// Which wave.
        wave: usize,
        /// The value given.
        value: u32,
    },
    /// Waves out of order.
    #[error("wave {wave}: {field} must be larger than the previous wave's")]
    Order {
        /// Which wave.
        wave: usize,
        /// `start_after` or `fleet_percentage`.
        field: &'static str,
    },
    /// `end_after` on any wave but the last, or before its start.
    #[error("wave {wave}: end_after is only for the last wave, and not before its start_after")]
    EndAfter {
        /// Which wave.
        wave: usize,
    },
}

impl WaveFile {
    /// Parses and checks a wave file's text.
    pub fn parse(text: &str) -> Result<WaveFile, WaveError> {
        let file: WaveFile = toml::from_str(text).map_err(|e| WaveError::Syntax(e.to_string()))?;
        file.check()?;
        Ok(file)
    }

    /// The rules [`WaveFile::parse`] enforces.
    pub fn check(&self) -> Result<(), WaveError> {
        if self.waves.is_empty() {
            return Err(WaveError::Empty);
        }
        let last = self.waves.len();
        for (i, w) in self.waves.iter().enumerate() {
            let wave = i + 1;
            if !(1..=100).contains(&w.fleet_percentage) {
                return Err(WaveError::Percentage {
                    wave,
                    value: w.fleet_percentage,
                });
            }
            if let Some(prev) = i.checked_sub(1).map(|p| &self.waves[p]) {
                if w.start_after <= prev.start_after {
                    return Err(WaveError::Order {
                        wave,
                        field: "start_after",
                    });
                }
                if w.fleet_percentage <= prev.fleet_percentage {
                    return Err(WaveError::Order {
                        wave,
                        field: "fleet_percentage",
                    });
                }
            }
            if let Some(end) = w.end_after {
                if wave != last || end < w.start_after {
                    return Err(WaveError::EndAfter { wave });
                }
            }
        }
        Ok(())
    }

    /// Bottlerocket-like defaults for a fleet: 1% in the first hour's wave, everyone within a
    /// week. `cargo xtask fleet-sim` uses them when given no file.
    pub fn default_fleet() -> WaveFile {
        let w = |h: u64, p: u32| WaveSpec {
            start_after: Span(h * 3600),
            fleet_percentage: p,
            end_after: None,
        };
        let mut waves = vec![
            w(1, 1),
            w(4, 5),
            w(24, 15),
            w(48, 40),
            w(96, 60),
            w(120, 90),
            w(144, 100),
        ];
        if let Some(last) = waves.last_mut() {
            last.end_after = Some(Span(168 * 3600));
        }
        WaveFile { waves }
    }

    /// The waves as absolute times (seconds since the epoch) and seed ranges, for a release
    /// published at `published`.
    pub fn resolve(&self, published: u64) -> Waves {
        let mut out = Vec::with_capacity(self.waves.len());
        let mut first_seed = 0;
        for (i, w) in self.waves.iter().enumerate() {
            let end_seed = (w.fleet_percentage * SEEDS).div_ceil(100).min(SEEDS);
            let start = published.saturating_add(w.start_after.secs());
            let end = match self.waves.get(i + 1) {
                Some(next) => published.saturating_add(next.start_after.secs()),
                None => published.saturating_add(w.end_after.unwrap_or(w.start_after).secs()),
            };
            out.push(Wave {
                first_seed,
                end_seed,
                start,
                end,
            });
            first_seed = end_seed;
        }
        Waves(out)
    }
}

/// One wave resolved at publish time: seeds `[first_seed, end_seed)` open evenly over
/// `[start, end)` (seconds since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    /// First seed of the wave.
    pub first_seed: u32,
    /// One past the last seed of the wave.
    pub end_seed: u32,
    /// When its first seed becomes ready.
    pub start: u64,
    /// When it has opened completely.
    pub end: u64,
}

/// The resolved waves of one release, in order; empty means "everyone at once".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Waves(pub Vec<Wave>);

impl Waves {
    /// The wave a seed belongs to (0-based), or `None` above every wave (or with no waves).
    pub fn wave_of(&self, seed: Seed) -> Option<usize> {
        self.0
            .iter()
            .position(|w| (w.first_seed..w.end_seed).contains(&seed.get()))
    }

    /// When a device with this seed may take the release; `published` is the answer when
    /// there are no waves.
    pub fn ready_at(&self, seed: Seed, published: u64) -> u64 {
        let Some(last) = self.0.last() else {
            return published;
        };
        let Some(w) = self.wave_of(seed).map(|i| self.0[i]) else {
            return last.end;
        };
        let seeds = u128::from(w.end_seed - w.first_seed);
        let offset = u128::from(seed.get() - w.first_seed);
        let span = u128::from(w.end.saturating_sub(w.start));
        // offset < seeds, so the product over seeds is below span and fits back in u64.
        w.start + u64::try_from(offset * span / seeds).unwrap_or(0)
    }
}
