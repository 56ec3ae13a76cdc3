//! Debian packages: the local cache `cargo xtask deps` fills, and reading a `.deb` in Rust.
//!
//! ```text
//! .deb = ar archive: "debian-binary", "control.tar.*", "data.tar.{xz,zst}" (+ more, ignored)
//! cache: <dir>/index.toml  [[package]] requested, name, version, file, sha256
//!        <dir>/<file>.deb
//! ```
//! The index maps what a spec asks for (`linux-image-amd64`) to the exact file apt resolved,
//! so the kernel's ABI version is never written in the repository, and the sha256 recorded at
//! fetch time is checked again at every build.

use crate::error::{parse_toml, BuildError};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Name of the index file in the cache folder.
pub const INDEX: &str = "index.toml";

/// One fetched package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebRecord {
    /// Name the spec or board asked for.
    pub requested: String,
    /// Package apt resolved it to.
    pub name: String,
    /// Its version.
    pub version: String,
    /// File name in the cache folder.
    pub file: String,
    /// sha256 of the file.
    pub sha256: slate_core::Digest32,
}

/// The index file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebIndex {
    /// All fetched packages.
    #[serde(default, rename = "package")]
    pub packages: Vec<DebRecord>,
}

/// An opened cache folder.
#[derive(Debug, Clone)]
pub struct DebCache {
    dir: PathBuf,
    index: DebIndex,
}

impl DebCache {
    /// Opens a cache folder; a missing index means an empty cache.
    pub fn open(dir: &Path) -> Result<DebCache, BuildError> {
        let path = dir.join(INDEX);
        let index = match std::fs::read(&path) {
            Ok(bytes) => parse_toml(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DebIndex::default(),
            Err(e) => return Err(BuildError::Read { path, source: e }),
        };
        Ok(DebCache {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// The record for a requested package name.
    pub fn get(&self, requested: &str) -> Result<&DebRecord, BuildError> {
        self.index
            .packages
            .iter()
            .find(|r| r.requested == requested || r.name == requested)
            .ok_or_else(|| BuildError::MissingPackage {
                name: requested.to_string(),
                cache: self.dir.clone(),
            })
    }

    /// Reads a package's file and checks it against the sha256 recorded at fetch time.
    pub fn read(&self, requested: &str) -> Result<(DebRecord, Vec<u8>)> {
        let rec = self.get(requested)?.clone();
        let path = self.dir.join(&rec.file);
        let bytes = std::fs::read(&path).map_err(|e| BuildError::Read {
            path: path.clone(),
            source: e,
        })?;
        let actual = slate_core::Digest32::of(&bytes);
        if actual != rec.sha256 {
            bail!(
                "{} has sha256 {actual}, but the deb cache index recorded {}; the file changed since `cargo xtask deps` fetched it: run it again",
                path.display(),
                rec.sha256
            );
        }
        Ok((rec, bytes))
    }
}

/// What kind of tar entry a package holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// Folder.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link to the given target.
    Symlink(String),
    /// Hard link to another path in the same package.
    HardLink(String),
}

/// One entry of a package's data archive.
#[derive(Debug, Clone)]
pub struct DebEntry {
    /// Path inside the package, without the leading `./`.
    pub path: String,
    /// Kind.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A decompressing reader for a `.deb` member named `<stem>.tar[.xz|.zst|.gz]` (gzip in
/// packages built before dpkg made xz its default, such as bookworm's libxdmcp6).
fn tar_reader<'a>(id: &str, member: impl Read + 'a, what: &str) -> Result<Box<dyn Read + 'a>> {
    Ok(match id.rsplit_once(".tar").map_or("", |(_, ext)| ext) {
        ".xz" => Box::new(xz2::read::XzDecoder::new(member)),
        ".zst" => Box::new(zstd::Decoder::new(member)?),
        ".gz" => Box::new(flate2::read::GzDecoder::new(member)),
        "" => Box::new(member),
        _ => bail!("{what}: {id} uses a compression Slate does not read (xz, zstd, gzip or none)"),
    })
}

/// The files of the package's `control.tar.*` (`control`, `conffiles`, `postinst`, …) by
/// name: what dpkg would have read or run, for the imager to act on or warn about.
pub fn control_files(deb: &[u8], what: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut ar = ar::Archive::new(deb);
    while let Some(member) = ar.next_entry() {
        let member = member.with_context(|| format!("{what}: not a valid .deb (ar archive)"))?;
        let id = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if !id.starts_with("control.tar") {
            continue;
        }
        let mut tar = tar::Archive::new(tar_reader(&id, member, what)?);
        let mut files = BTreeMap::new();
        for entry in tar
            .entries()
            .with_context(|| format!("{what}: reading {id}"))?
        {
            let mut entry = entry.with_context(|| format!("{what}: reading {id}"))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .with_context(|| format!("{what}: reading {id}/{name}"))?;
            files.insert(name, bytes);
        }
        return Ok(files);
    }
    bail!("{what}: no control.tar member; is it a .deb?")
}

/// Calls `f` for every entry of the package's `data.tar.*`, with a reader for file contents.
pub fn for_each_entry(
    deb: &[u8],
    what: &str,
    mut f: impl FnMut(DebEntry, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let mut ar = ar::Archive::new(deb);
    while let Some(member) = ar.next_entry() {
        let member = member.with_context(|| format!("{what}: not a valid .deb (ar archive)"))?;
        let id = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if !id.starts_with("data.tar") {
            continue;
        }
        let mut tar = tar::Archive::new(tar_reader(&id, member, what)?);
        for entry in tar
            .entries()
            .with_context(|| format!("{what}: reading {id}"))?
        {
            let mut entry = entry.with_context(|| format!("{what}: reading {id}"))?;
            let header = entry.header();
            let path = entry.path()?.to_string_lossy().into_owned();
            let path = path
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            if path.is_empty() || path == "." {
                continue;
            }
            let link = || -> Result<String> {
                Ok(entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default())
            };
            let kind = match header.entry_type() {
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
                tar::EntryType::Symlink => EntryKind::Symlink(link()?),
                tar::EntryType::Link => {
                    EntryKind::HardLink(link()?.trim_start_matches("./").to_string())
                }
                other => bail!("{what}: {path} is a {other:?} entry, which Slate does not install"),
            };
            let e = DebEntry {
                path,
                kind,
                mode: (header.mode()? & 0o7777) as u16,
                uid: header.uid()? as u32,
                gid: header.gid()? as u32,
            };
            f(e, &mut entry)?;
        }
        return Ok(());
    }
    bail!("{what}: no data.tar member; is it a .deb?")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package `dpkg-deb` (the oracle) builds with `compression` for both members.
    fn built_with(compression: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pkg");
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(root.join("usr/share/t")).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            "Package: t\nVersion: 1\nArchitecture: all\nMaintainer: m <m@example.org>\nDescription: d\n",
        )
        .unwrap();
        std::fs::write(root.join("usr/share/t/hello"), "hello\n").unwrap();
        let out = dir.path().join("t.deb");
        let status = std::process::Command::new("dpkg-deb")
            .args([&format!("-Z{compression}"), "--root-owner-group", "--build"])
            .arg(&root)
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("dpkg-deb (Debian's dpkg)");
        assert!(status.success());
        std::fs::read(out).unwrap()
    }

    #[test]
    fn packages_of_every_compression_dpkg_makes_are_read() {
        for compression in ["xz", "zstd", "gzip", "none"] {
            let deb = built_with(compression);
            let control = control_files(&deb, compression).unwrap();
            assert!(
                String::from_utf8_lossy(&control["control"]).contains("Package: t"),
                "{compression}"
            );
            let mut hello = None;
            for_each_entry(&deb, compression, |e, r| {
                if e.path == "usr/share/t/hello" {
                    let mut s = String::new();
                    r.read_to_string(&mut s)?;
                    hello = Some(s);
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(hello.as_deref(), Some("hello\n"), "{compression}");
        }
    }
}
