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

use crate::image::debian::apt::{Apt, DebianSource};
use crate::image::debian::resolve::resolve;
use crate::image::packages::{Available, Index};
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
    /// The board's own packages as its file names them: kernel, then boot loader.
    #[serde(default)]
    pub board: Vec<String>,
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
    pub sha256: slate_core::Digest32,
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
            sha256: a.sha256,
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
    /// The board's kernel and boot loader, in [`LockedFor::board`]'s order: these alone,
    /// without their dependencies (the kernel's would bring initramfs-tools into the root),
    /// and a kernel metapackage as the versioned package it stands for.
    #[serde(default, rename = "board_package")]
    pub board_packages: Vec<LockedPackage>,
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
            board: Vec::new(),
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
        let board_packages = wanted
            .board
            .iter()
            .map(|name| board_package(index, name).map(LockedPackage::from))
            .collect::<Result<_>>()?;
        Ok(Lock {
            packages: chosen.values().map(|a| LockedPackage::from(*a)).collect(),
            board_packages,
            debian: wanted,
        })
    }

    /// Every locked file: the root's packages, then the board's.
    pub fn all_packages(&self) -> impl Iterator<Item = &LockedPackage> {
        self.packages.iter().chain(&self.board_packages)
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
        } else if !same_archives(&have.sources, &wanted.sources) {
            "the spec's [debian] sources changed".to_string()
        } else if have.requested != wanted.requested {
            format!(
                "it was made for packages {:?}, the spec now asks for {:?}",
                have.requested, wanted.requested
            )
        } else if have.board != wanted.board {
            format!(
                "it was made for board packages {:?}, the board now needs {:?}",
                have.board, wanted.board
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

/// Whether two `sources.list` texts name the same archives: `http://` and `https://` of one
/// mirror are the same archive (the lock pins every package by sha256, and apt checks the
/// signed Release files over either), so locks made before the default became HTTPS stay
/// fresh.
fn same_archives(a: &str, b: &str) -> bool {
    let plain = |s: &str| s.replace("https://", "http://");
    plain(a) == plain(b)
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
pub fn default_cache_for(spec: &crate::image::spec::LoadedSpec) -> Result<PathBuf> {
    let spec_dir = std::fs::canonicalize(&spec.dir).unwrap_or_else(|_| spec.dir.clone());
    match crate::image::agentbin::find_workspace() {
        Some(ws) if spec_dir.starts_with(std::fs::canonicalize(&ws).unwrap_or(ws.clone())) => {
            Ok(ws.join(".cache/slate"))
        }
        _ => default_cache(),
    }
}

/// A board package as it is locked: the package itself, or for a kernel metapackage
/// (`linux-image-amd64`) the versioned kernel it depends on (`linux-image-6.1.0-57-amd64`), so
/// the lock names the kernel ABI the image boots.
fn board_package<'a>(index: &'a Index, name: &str) -> Result<&'a Available> {
    let found = index.candidate(name).with_context(|| {
        format!("the board's package {name:?} is not in the archive's lists for this suite and architecture")
    })?;
    let is_meta = name.starts_with("linux-image-")
        && !name.as_bytes().get(12).is_some_and(u8::is_ascii_digit);
    if !is_meta {
        return Ok(found);
    }
    let versioned = found
        .depends
        .iter()
        .flatten()
        .map(|a| a.name.as_str())
        .find(|d| {
            d.starts_with("linux-image-") && d.as_bytes().get(12).is_some_and(u8::is_ascii_digit)
        })
        .with_context(|| format!("{name} depends on no versioned linux-image package"))?;
    index
        .candidate(versioned)
        .with_context(|| format!("{name} depends on {versioned}, which is not in the lists"))
}

/// The lock a spec needs for a board, and where it lives (beside the spec).
pub fn wanted_by(
    spec: &crate::image::spec::LoadedSpec,
    board: &crate::image::board::Board,
) -> (LockedFor, PathBuf) {
    let names: Vec<String> = spec.spec.packages.iter().map(|p| p.name.clone()).collect();
    let mut wanted = Lock::wanted(&spec.spec.debian, board.arch.debian(), &names);
    wanted.board = vec![
        board.kernel_package.clone(),
        board.bootloader_package.clone(),
    ];
    let path = lock_path(&spec.dir, &wanted.architecture);
    (wanted, path)
}

/// Where a spec's lock for `arch` lives: `image.lock`, unless that one is for another
/// architecture (a spec built for two, such as the demo for `qemu-x86_64` and `qemu-arm64`),
/// or `image.<arch>.lock` already exists: then `image.<arch>.lock`.
pub fn lock_path(spec_dir: &Path, arch: &str) -> PathBuf {
    let default = spec_dir.join(LOCK_FILE);
    let own = spec_dir.join(format!("image.{arch}.lock"));
    let default_is_other = Lock::read(&default).is_ok_and(|l| l.debian.architecture != arch);
    if own.is_file() || default_is_other {
        own
    } else {
        default
    }
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

/// `slate fetch`: every locked file (the root's and the board's) in `cache` (already there and matching, or downloaded
/// through apt), its sha256 checked against the lock. Returns the files in lock order.
pub fn fetch(apt: &Apt, lock: &Lock, cache: &Path) -> Result<Vec<PathBuf>> {
    let sha_of =
        |p: &Path| -> Result<slate_core::Digest32> { Ok(crate::image::hashing::hash_file(p)?.1) };
    let mut missing = Vec::new();
    for p in lock.all_packages() {
        let path = cache.join(p.file_name());
        if !path.exists() || sha_of(&path)? != p.sha256 {
            missing.push(p);
        }
    }
    let partial = cache.join("partial");
    let _ = std::fs::remove_dir_all(&partial);
    // apt downloads by name and version from its lists: a fresh cache (a lock committed
    // elsewhere) has none yet, and old lists may not know a newer lock's versions.
    if !missing.is_empty() {
        apt.update()?;
    }
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
        .all_packages()
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
            board_packages: vec![],
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
        // A lock made over plain HTTP (before HTTPS became the default) is as fresh; another
        // mirror is not.
        let mut over_http = lock.debian.clone();
        over_http.sources = over_http.sources.replace("https://", "http://");
        assert_ne!(over_http.sources, lock.debian.sources);
        let old = Lock {
            debian: over_http,
            packages: vec![],
            board_packages: vec![],
        };
        old.check_fresh(&wanted("amd64", &["nginx-light", "busybox-static"]), at)
            .unwrap();
        let elsewhere = Lock::wanted(
            &DebianSource {
                mirror: "https://mirror.example/debian".into(),
                ..DebianSource::default()
            },
            "amd64",
            &["nginx-light".into(), "busybox-static".into()],
        );
        let e = lock.check_fresh(&elsewhere, at).unwrap_err();
        assert!(e.to_string().contains("sources changed"), "{e}");
        let e = lock
            .check_fresh(&wanted("amd64", &["nginx-light"]), at)
            .unwrap_err();
        assert!(e.to_string().contains("the spec now asks for"), "{e}");
    }

    #[test]
    fn board_packages_are_locked_alone_and_a_kernel_metapackage_as_its_kernel() {
        let text = "Package: linux-image-amd64\nVersion: 6.1.192-3\nArchitecture: amd64\nDepends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\nFilename: pool/m.deb\nSize: 1\nSHA256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\nPackage: linux-image-6.1.0-57-amd64\nVersion: 6.1.192-3\nArchitecture: amd64\nDepends: kmod, linux-base, initramfs-tools\nFilename: pool/k.deb\nSize: 2\nSHA256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n\nPackage: systemd-boot-efi\nVersion: 252.39-1\nArchitecture: amd64\nFilename: pool/s.deb\nSize: 3\nSHA256: cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\n";
        let index = Index::new(
            crate::image::packages::parse_packages(text, "test").unwrap(),
            "amd64",
        );
        let mut w = wanted("amd64", &[]);
        w.board = vec!["linux-image-amd64".into(), "systemd-boot-efi".into()];
        let lock = Lock::resolve(&index, w.clone()).unwrap();
        let names: Vec<&str> = lock
            .board_packages
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["linux-image-6.1.0-57-amd64", "systemd-boot-efi"]);
        assert!(
            lock.packages.is_empty(),
            "the kernel's dependencies are not locked"
        );
        let mut other = w;
        other.board = vec!["linux-image-arm64".into(), "systemd-boot-efi".into()];
        let e = lock
            .check_fresh(&other, Path::new("image.lock"))
            .unwrap_err();
        assert!(e.to_string().contains("the board now needs"), "{e}");
    }

    #[test]
    fn a_spec_built_for_two_architectures_keeps_a_lock_for_each() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lock_path(dir.path(), "arm64"), dir.path().join(LOCK_FILE));
        let amd64 = Lock {
            debian: wanted("amd64", &["x"]),
            packages: vec![],
            board_packages: vec![],
        };
        write_replacing(
            &dir.path().join(LOCK_FILE),
            amd64.to_text().unwrap().as_bytes(),
        )
        .unwrap();
        assert_eq!(lock_path(dir.path(), "amd64"), dir.path().join(LOCK_FILE));
        assert_eq!(
            lock_path(dir.path(), "arm64"),
            dir.path().join("image.arm64.lock")
        );
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
                sha256: slate_core::Digest32([0xab; 32]),
                filename: "pool/main/x/x/x_1.0-1_amd64.deb".into(),
            }],
            board_packages: vec![],
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
