//! `image.lock`: the exact Debian packages an image is built from, written by `slate lock`
//! beside the spec and read by `slate fetch` and `slate build`.
//!
//! ```toml
//! [debian]                       # what was resolved, against what
//! suite = "bookworm"
//! architecture = "amd64"
//! sources = "deb [arch=amd64 …] http://deb.debian.org/debian bookworm main\n…"
//! requested = ["nginx-light"]    # the spec's packages, sorted
//!
//! [[package]]                    # the closure, sorted by name
//! name = "libc6"
//! version = "2.36-9+deb12u10"
//! architecture = "amd64"
//! size = 2757936
//! sha256 = "…"
//! filename = "pool/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb"
//! ```
//! A lock is stale when the spec's package names, suite, sources or the board's architecture
//! differ from what it records; the error says to run `slate lock` again.

use super::apt::{Apt, DebianSource};
use super::packages::{Available, Index};
use super::resolve::resolve;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the lock, beside the spec.
pub const LOCK_FILE: &str = "image.lock";

/// What a lock was resolved for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedFor {
    /// Debian suite.
    pub suite: String,
    /// Debian architecture.
    pub architecture: String,
    /// The sources.list lines the lists came from.
    pub sources: String,
    /// The spec's package names, sorted.
    pub requested: Vec<String>,
}

/// One locked package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Its architecture (`all` or the board's).
    pub architecture: String,
    /// Size of the .deb.
    pub size: u64,
    /// sha256 of the .deb.
    pub sha256: String,
    /// Path in the archive.
    pub filename: String,
}

impl LockedPackage {
    /// The .deb's file name in the cache.
    pub fn file_name(&self) -> String {
        Path::new(&self.filename).file_name().map_or_else(
            || format!("{}.deb", self.name),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

impl From<&Available> for LockedPackage {
    fn from(a: &Available) -> LockedPackage {
        LockedPackage {
            name: a.name.clone(),
            version: a.version.clone(),
            architecture: a.architecture.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
            filename: a.filename.clone(),
        }
    }
}

/// The lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// What it was resolved for.
    pub debian: LockedFor,
    /// The closure, sorted by name.
    #[serde(rename = "package")]
    pub packages: Vec<LockedPackage>,
}

impl Lock {
    /// What a spec asks for, in the form a lock records it.
    pub fn wanted(source: &DebianSource, arch: &str, requested: &[String]) -> LockedFor {
        let mut requested = requested.to_vec();
        requested.sort();
        requested.dedup();
        LockedFor {
            suite: source.suite.clone(),
            architecture: arch.to_string(),
            sources: source.sources_list(arch),
            requested,
        }
    }

    /// Resolves `wanted` against an index of the suite.
    pub fn resolve(index: &Index, wanted: LockedFor) -> Result<Lock> {
        let chosen = resolve(
            index,
            &wanted.requested,
            &wanted.suite,
            &wanted.architecture,
        )?;
        Ok(Lock {
            packages: chosen.values().map(|a| LockedPackage::from(*a)).collect(),
            debian: wanted,
        })
    }

    /// The lock's text (TOML with a header saying where it comes from).
    pub fn to_text(&self) -> Result<String> {
        Ok(format!(
            "# Written by `slate lock`: the exact Debian packages this image is built from.\n# Commit it; run `slate lock` again to take newer packages.\n\n{}",
            toml::to_string(self).context("writing the lock")?
        ))
    }

    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Lock> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading {} (missing: run `slate lock --spec` on the spec beside it)",
                path.display()
            )
        })?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Refuses a lock made for something else than `wanted`, saying what differs.
    pub fn check_fresh(&self, wanted: &LockedFor, path: &Path) -> Result<()> {
        let have = &self.debian;
        let why = if have.architecture != wanted.architecture {
            format!(
                "it is for architecture {}, the board needs {}",
                have.architecture, wanted.architecture
            )
        } else if have.suite != wanted.suite {
            format!(
                "it is for suite {}, the spec names {}",
                have.suite, wanted.suite
            )
        } else if have.sources != wanted.sources {
            "the spec's [debian] sources changed".to_string()
        } else if have.requested != wanted.requested {
            format!(
                "it was made for packages {:?}, the spec now asks for {:?}",
                have.requested, wanted.requested
            )
        } else {
            return Ok(());
        };
        bail!(
            "{} is stale: {why}; run `slate lock --spec …` again",
            path.display()
        )
    }
}

/// Where `slate lock` and `slate fetch` keep apt's lists and the .deb files when not told:
/// `$XDG_CACHE_HOME/slate`, else `~/.cache/slate`.
pub fn default_cache() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("slate"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_CACHE_HOME nor HOME is set; give --cache")?;
    Ok(PathBuf::from(home).join(".cache/slate"))
}

/// The cache for a spec's packages when none is given: the source tree's `.cache/slate` for a
/// spec inside the Slate source tree (its demo and examples, built by `cargo xtask`), else
/// [`default_cache`]. `slate lock`, `slate fetch` and `slate build` agree on it.
pub fn default_cache_for(spec: &super::spec::LoadedSpec) -> Result<PathBuf> {
    let spec_dir = std::fs::canonicalize(&spec.dir).unwrap_or_else(|_| spec.dir.clone());
    match super::agentbin::find_workspace() {
        Some(ws) if spec_dir.starts_with(std::fs::canonicalize(&ws).unwrap_or(ws.clone())) => {
            Ok(ws.join(".cache/slate"))
        }
        _ => default_cache(),
    }
}

/// The lock a spec needs for a board, and where it lives (beside the spec).
pub fn wanted_by(
    spec: &super::spec::LoadedSpec,
    arch: slate_core::layout::Arch,
) -> (LockedFor, PathBuf) {
    let names: Vec<String> = spec.spec.packages.iter().map(|p| p.name.clone()).collect();
    (
        Lock::wanted(&spec.spec.debian, arch.debian(), &names),
        spec.dir.join(LOCK_FILE),
    )
}

/// `slate lock`: updates the private lists, resolves, writes `image.lock` beside the spec.
pub fn lock(apt: &Apt, wanted: LockedFor, out: &Path) -> Result<Lock> {
    apt.update()?;
    let index = Index::new(apt.available()?, &wanted.architecture);
    let lock = Lock::resolve(&index, wanted)?;
    let text = lock.to_text()?;
    write_replacing(out, text.as_bytes())?;
    Ok(lock)
}

/// Writes `path` through a temporary file beside it, so a cut never leaves half a lock.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `slate fetch`: every locked file in `cache` (already there and matching, or downloaded
/// through apt), its sha256 checked against the lock. Returns the files in lock order.
pub fn fetch(apt: &Apt, lock: &Lock, cache: &Path) -> Result<Vec<PathBuf>> {
    let sha_of = |p: &Path| -> Result<String> { Ok(super::hashing::hash_file(p)?.1.to_string()) };
    let mut missing = Vec::new();
    for p in &lock.packages {
        let path = cache.join(p.file_name());
        if !path.exists() || sha_of(&path)? != p.sha256 {
            missing.push(p);
        }
    }
    let partial = cache.join("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let wanted: Vec<(String, String)> = missing
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    let got = apt.download(&wanted, &partial)?;
    for (p, file) in missing.iter().zip(got) {
        let sha = sha_of(&file)?;
        if sha != p.sha256 {
            bail!(
                "{} {}: the archive's file ({}) has sha256 {sha}, but the lock says {}: refusing it (the archive changed since `slate lock`; run it again and review the new lock)",
                p.name,
                p.version,
                file.display(),
                p.sha256
            );
        }
        let path = cache.join(p.file_name());
        std::fs::rename(&file, &path)
            .with_context(|| format!("moving {} to {}", file.display(), path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&partial);
    Ok(lock
        .packages
        .iter()
        .map(|p| cache.join(p.file_name()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(arch: &str, pkgs: &[&str]) -> LockedFor {
        let names: Vec<String> = pkgs.iter().map(|s| s.to_string()).collect();
        Lock::wanted(&DebianSource::default(), arch, &names)
    }

    #[test]
    fn a_lock_for_another_architecture_suite_or_package_set_is_stale() {
        let lock = Lock {
            debian: wanted("amd64", &["nginx-light", "busybox-static"]),
            packages: vec![],
        };
        let at = Path::new("spec/image.lock");
        lock.check_fresh(&wanted("amd64", &["busybox-static", "nginx-light"]), at)
            .unwrap();
        let e = lock
            .check_fresh(&wanted("arm64", &["nginx-light", "busybox-static"]), at)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("spec/image.lock is stale: it is for architecture amd64, the board needs arm64; run `slate lock"),
            "{e}"
        );
        let trixie = Lock::wanted(
            &DebianSource {
                suite: "trixie".into(),
                ..DebianSource::default()
            },
            "amd64",
            &["nginx-light".into(), "busybox-static".into()],
        );
        let e = lock.check_fresh(&trixie, at).unwrap_err();
        assert!(
            e.to_string()
                .contains("suite bookworm, the spec names trixie"),
            "{e}"
        );
        let e = lock
            .check_fresh(&wanted("amd64", &["nginx-light"]), at)
            .unwrap_err();
        assert!(e.to_string().contains("the spec now asks for"), "{e}");
    }

    #[test]
    fn a_lock_reads_back_what_it_wrote() {
        let lock = Lock {
            debian: wanted("amd64", &["x"]),
            packages: vec![LockedPackage {
                name: "x".into(),
                version: "1:1.0-1".into(),
                architecture: "amd64".into(),
                size: 10,
                sha256: "ab".repeat(32),
                filename: "pool/main/x/x/x_1.0-1_amd64.deb".into(),
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        write_replacing(&path, lock.to_text().unwrap().as_bytes()).unwrap();
        assert_eq!(Lock::read(&path).unwrap(), lock);
        assert_eq!(lock.packages[0].file_name(), "x_1.0-1_amd64.deb");
        let e = Lock::read(&dir.path().join("missing.lock")).unwrap_err();
        assert!(
            format!("{e:#}").contains("run `slate lock --spec`"),
            "{e:#}"
        );
    }
}
