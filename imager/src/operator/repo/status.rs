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
    /// What each update (in the release manifest's order) costs a device to fetch.
    pub sizes: Vec<Sizes>,
}

/// What fetching one published update costs: the whole bundle, or a delta from an earlier
/// published version (chunk index, missing chunks and requests, as a device plans it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizes {
    /// The bundle's bytes.
    pub full: u64,
    /// The chunk index's bytes (none: published without one).
    pub index: Option<u64>,
    /// From each earlier published version of the same product and board with an index: the
    /// bytes a device running it fetches.
    pub deltas: Vec<(slate_core::Version, u64)>,
    /// Its static patches (`slate publish --from`): the version each is for, and its bytes.
    pub patches: Vec<(String, u64)>,
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
    let sizes = sizes(&layout, &repo, &release)?;
    Ok(RepoStatus {
        roles,
        release,
        sizes,
    })
}

/// Each update's full size, and its delta from every earlier one of its product and board.
fn sizes(
    layout: &Layout,
    repo: &tough::Repository,
    release: &ReleaseManifest,
) -> Result<Vec<Sizes>> {
    use slate_core::delta::{self, plan, ChunkIndex};
    let mut indexes: Vec<Option<(ChunkIndex, u64)>> = Vec::new();
    let mut out = Vec::new();
    for u in &release.updates {
        let full = tough::TargetName::new(&u.target)
            .ok()
            .and_then(|n| repo.targets().signed.targets.get(&n).map(|t| t.length))
            .unwrap_or(0);
        let index = match layout.target_bytes(repo, &delta::index_target(&u.target))? {
            Some(b) => Some((
                ChunkIndex::parse(&b)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", delta::index_target(&u.target)))?,
                b.len() as u64,
            )),
            None => None,
        };
        let mut deltas = Vec::new();
        if let Some((new, len)) = &index {
            for (earlier, idx) in release.updates.iter().zip(&indexes) {
                if earlier.product != u.product || earlier.board != u.board {
                    continue;
                }
                if let Some((old, _)) = idx {
                    let p = plan::plan(new, old, plan::COALESCE_GAP);
                    deltas.push((earlier.version.clone(), p.cost(*len)));
                }
            }
        }
        let prefix = delta::patch_target(&u.target, "");
        let mut patches: Vec<(String, u64)> = repo
            .targets()
            .signed
            .targets
            .iter()
            .filter(|(n, _)| n.raw().starts_with(&prefix))
            .map(|(n, t)| {
                let from = t
                    .custom
                    .get(super::PATCH_FROM_VERSION)
                    .and_then(|v| v.as_str())
                    .map_or_else(
                        || format!("root {}", &n.raw()[prefix.len()..]),
                        str::to_string,
                    );
                (from, t.length)
            })
            .collect();
        patches.sort();
        out.push(Sizes {
            full,
            index: index.as_ref().map(|(_, l)| *l),
            deltas,
            patches,
        });
        indexes.push(index);
    }
    Ok(out)
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
        for (i, u) in self.release.updates.iter().enumerate() {
            let _ = writeln!(
                s,
                "{} {} for {}: target {}, published {}",
                u.product,
                u.version,
                u.board,
                u.target,
                date(i64::try_from(u.published).unwrap_or(i64::MAX))
            );
            if let Some(z) = self.sizes.get(i) {
                let index = z.index.map_or("no chunk index".to_string(), |l| {
                    format!("chunk index {l} bytes")
                });
                let _ = writeln!(s, "  full {} bytes, {index}", z.full);
                for (from, bytes) in &z.deltas {
                    let share = *bytes as f64 * 100.0 / z.full.max(1) as f64;
                    let _ = writeln!(
                        s,
                        "  delta from {from}: {bytes} bytes ({share:.1}% of full)"
                    );
                }
                for (from, bytes) in &z.patches {
                    let share = *bytes as f64 * 100.0 / z.full.max(1) as f64;
                    let _ = writeln!(
                        s,
                        "  static patch from {from}: {bytes} bytes ({share:.1}% of full)"
                    );
                }
            }
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
