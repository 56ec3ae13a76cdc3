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
    /// bytes a device running it fetches for the whole bundle (as `BundleDelta` prices it).
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

/// What `slate repo status` knows of one published update for pricing deltas between them.
struct Published {
    /// Its root image's chunk index and that index's bytes.
    index: Option<(slate_core::delta::ChunkIndex, u64)>,
    /// Its bundle's manifest (None: the bundle is not in the repository's folder).
    manifest: Option<slate_core::manifest::Manifest>,
    /// Its UKIs' chunk indexes, by artifact name, with their bytes.
    ukis: Vec<(String, slate_core::delta::ChunkIndex, u64)>,
}

impl Published {
    fn read(layout: &Layout, repo: &tough::Repository, target: &str) -> Result<Published> {
        use slate_core::delta::{self, ChunkIndex};
        let index = |name: String| -> Result<Option<(ChunkIndex, u64)>> {
            let Some(b) = layout.target_bytes(repo, &name)? else {
                return Ok(None);
            };
            let index = ChunkIndex::parse(&b).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            Ok(Some((index, b.len() as u64)))
        };
        // Only the head is read; a repository whose bundles live elsewhere prices its deltas
        // without the boot files and verity levels a device keeps (an overestimate).
        let manifest = layout
            .target_path(repo, target)?
            .and_then(|path| super::patches::manifest(&path).ok());
        let mut ukis = Vec::new();
        for a in manifest.iter().flat_map(|m| &m.artifacts) {
            if let Some((i, len)) = index(delta::uki_index_target(target, &a.name))? {
                ukis.push((a.name.clone(), i, len));
            }
        }
        Ok(Published {
            index: index(delta::index_target(target))?,
            manifest,
            ukis,
        })
    }

    /// What a device running `earlier` fetches of `self` (a bundle of `full` bytes) by delta,
    /// as it plans it: the root image and the UKIs against its own, identical boot files
    /// copied, verity levels computed (None: either lacks a root index).
    fn delta_from(&self, earlier: &Published, full: u64) -> Option<u64> {
        use slate_core::delta::{plan, HEAD_PROBE};
        use slate_core::manifest::ROOTFS;
        let ((new, new_len), (old, _)) = (self.index.as_ref()?, earlier.index.as_ref()?);
        let root = plan::plan(new, old, plan::COALESCE_GAP);
        let mut index_len = *new_len;
        let mut ukis = Vec::new();
        for (name, index, len) in &self.ukis {
            index_len += len;
            if let Some((_, old, _)) = earlier.ukis.iter().find(|(n, _, _)| n == name) {
                ukis.push(plan::plan(index, old, plan::COALESCE_GAP));
            }
        }
        let mut local = 0;
        if let (Some(m), Some(old)) = (&self.manifest, &earlier.manifest) {
            for a in &m.artifacts {
                let is_uki = self.ukis.iter().any(|(n, _, _)| *n == a.name);
                if a.name == ROOTFS {
                    let levels_at = a
                        .verity
                        .as_ref()
                        .map_or(a.size, |v| v.hash_offset + slate_core::verity::BLOCK);
                    local += a.size.saturating_sub(levels_at);
                } else if !is_uki
                    && old
                        .artifacts
                        .iter()
                        .any(|o| o.name == a.name && o.sha256 == a.sha256 && o.size == a.size)
                {
                    local += a.size;
                }
            }
        }
        let (cost, _) = plan::BundleDelta {
            root: &root,
            ukis: &ukis,
            index_len,
            head_len: HEAD_PROBE.min(full),
            bundle_len: full,
            local,
        }
        .cost();
        Some(cost)
    }
}

/// Each update's full size, and its delta from every earlier one of its product and board.
fn sizes(
    layout: &Layout,
    repo: &tough::Repository,
    release: &ReleaseManifest,
) -> Result<Vec<Sizes>> {
    use slate_core::delta;
    let mut published: Vec<Published> = Vec::new();
    let mut out = Vec::new();
    for u in &release.updates {
        let full = tough::TargetName::new(&u.target)
            .ok()
            .and_then(|n| repo.targets().signed.targets.get(&n).map(|t| t.length))
            .unwrap_or(0);
        let this = Published::read(layout, repo, &u.target)?;
        let deltas = release
            .updates
            .iter()
            .zip(&published)
            .filter(|(earlier, _)| earlier.product == u.product && earlier.board == u.board)
            .filter_map(|(earlier, p)| Some((earlier.version.clone(), this.delta_from(p, full)?)))
            .collect();
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
            index: this.index.as_ref().map(|(_, l)| *l),
            deltas,
            patches,
        });
        published.push(this);
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
