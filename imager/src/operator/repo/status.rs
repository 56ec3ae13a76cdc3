//! `slate repo status`: what a repository offers, to whom and when, and how long its
//! signatures last — read through the TUF client, as a device reads it.

use super::layout::Layout;
use anyhow::Result;
use slate_core::channel::{ReleaseManifest, Seed, SEEDS};
use std::fmt::Write as _;
use std::path::Path;

/// A repository's state.
#[derive(Debug)]
pub struct RepoStatus {
    /// Root, targets, snapshot and timestamp: version and expiry (seconds since the epoch).
    pub roles: Vec<(&'static str, u64, i64)>,
    /// The release manifest.
    pub release: ReleaseManifest,
}

/// Reads a repository's state (signatures checked, expiry reported rather than enforced).
pub fn status(dir: &Path) -> Result<RepoStatus> {
    let layout = Layout::new(dir);
    layout.settings()?;
    let repo = layout.load(false)?;
    let role = |name, version: std::num::NonZeroU64, expires: jiff::Timestamp| {
        (name, version.get(), expires.as_second())
    };
    let roles = vec![
        role(
            "root",
            repo.root().signed.version,
            repo.root().signed.expires,
        ),
        role(
            "targets",
            repo.targets().signed.version,
            repo.targets().signed.expires,
        ),
        role(
            "snapshot",
            repo.snapshot().signed.version,
            repo.snapshot().signed.expires,
        ),
        role(
            "timestamp",
            repo.timestamp().signed.version,
            repo.timestamp().signed.expires,
        ),
    ];
    let release = layout.release(&repo)?;
    Ok(RepoStatus { roles, release })
}

fn date(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| format!("@{secs}"), |t| t.to_string())
}

fn percent(seeds: u32) -> f64 {
    f64::from(seeds) * 100.0 / f64::from(SEEDS)
}

impl RepoStatus {
    /// Human text; `now` marks expired roles and open waves, `seed` adds when that device
    /// becomes ready.
    pub fn render(&self, now: i64, seed: Option<Seed>) -> String {
        let mut s = String::new();
        for (name, version, expires) in &self.roles {
            let state = if *expires <= now { "  EXPIRED" } else { "" };
            let _ = writeln!(
                s,
                "{name:<10} version {version:<4} expires {}{state}",
                date(*expires)
            );
        }
        if self.release.updates.is_empty() {
            let _ = writeln!(s, "no updates published");
        }
        let now_u = u64::try_from(now).unwrap_or(0);
        for u in &self.release.updates {
            let _ = writeln!(
                s,
                "{} {} for {}: target {}, published {}",
                u.product,
                u.version,
                u.board,
                u.target,
                date(i64::try_from(u.published).unwrap_or(i64::MAX))
            );
            if u.waves.0.is_empty() {
                let _ = writeln!(s, "  no waves: every device at once");
            }
            for (i, w) in u.waves.0.iter().enumerate() {
                let open = if now_u >= w.end {
                    "open"
                } else if now_u >= w.start {
                    "opening"
                } else {
                    "waiting"
                };
                let _ = writeln!(
                    s,
                    "  wave {}: seeds {}..{} ({:.1}% → {:.1}% of the fleet), {} → {} [{open}]",
                    i + 1,
                    w.first_seed,
                    w.end_seed,
                    percent(w.first_seed),
                    percent(w.end_seed),
                    date(i64::try_from(w.start).unwrap_or(i64::MAX)),
                    date(i64::try_from(w.end).unwrap_or(i64::MAX)),
                );
            }
            if let Some(seed) = seed {
                let wave = u
                    .waves
                    .wave_of(seed)
                    .map_or("after the last wave".to_string(), |i| {
                        format!("wave {}", i + 1)
                    });
                let at = u.waves.ready_at(seed, u.published);
                let _ = writeln!(
                    s,
                    "  seed {}: {wave}, ready at {}",
                    seed.get(),
                    date(i64::try_from(at).unwrap_or(i64::MAX))
                );
            }
        }
        for l in &self.release.limits {
            let _ = writeln!(
                s,
                "max_version {} for {} on {}: devices above it go back to it",
                l.max_version, l.product, l.board
            );
        }
        s
    }
}
