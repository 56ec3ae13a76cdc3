//! apt with a private configuration: a suite's package lists for one architecture, kept in
//! Slate's cache, never in the host's apt state (no root, and the host's own architectures,
//! sources and installed packages play no part). `slate lock` reads the lists it downloads;
//! `slate fetch` downloads locked files through it, so apt checks them against the signed
//! Release file before Slate checks the lock's sha256.

use crate::image::packages::{parse_packages, Available};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian archive an image's packages come from (`[debian]` in the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianSource {
    /// Suite (`bookworm`); its `-updates` suite is used too unless `updates` is false.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// Whether the suite's `-updates` pocket is used (stable updates between point
    /// releases); false locks against the suite and, unless `security` is empty, its
    /// security archive alone.
    #[serde(default = "default_updates")]
    pub updates: bool,
    /// Components (`main`).
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// Archive mirror.
    #[serde(default = "default_mirror")]
    pub mirror: String,
    /// Security archive (`<suite>-security`); empty to leave it out.
    #[serde(default = "default_security")]
    pub security: String,
    /// Keyring the archive's Release files are signed with.
    #[serde(default = "default_keyring")]
    pub keyring: PathBuf,
}

fn default_suite() -> String {
    "bookworm".into()
}
fn default_updates() -> bool {
    true
}
fn default_components() -> Vec<String> {
    vec!["main".into()]
}
fn default_mirror() -> String {
    "https://deb.debian.org/debian".into()
}
fn default_security() -> String {
    "https://deb.debian.org/debian-security".into()
}
fn default_keyring() -> PathBuf {
    "/usr/share/keyrings/debian-archive-keyring.gpg".into()
}

impl Default for DebianSource {
    fn default() -> DebianSource {
        DebianSource {
            suite: default_suite(),
            updates: default_updates(),
            components: default_components(),
            mirror: default_mirror(),
            security: default_security(),
            keyring: default_keyring(),
        }
    }
}

impl DebianSource {
    /// The `sources.list` lines for `arch`.
    pub fn sources_list(&self, arch: &str) -> String {
        let comps = self.components.join(" ");
        let opts = format!("[arch={arch} signed-by={}]", self.keyring.display());
        let mut out = format!("deb {opts} {} {} {comps}\n", self.mirror, self.suite);
        if self.updates {
            out.push_str(&format!(
                "deb {opts} {} {}-updates {comps}\n",
                self.mirror, self.suite
            ));
        }
        if !self.security.is_empty() {
            out.push_str(&format!(
                "deb {opts} {} {}-security {comps}\n",
                self.security, self.suite
            ));
        }
        out
    }
}

/// A private apt for one source and architecture, in its own folder.
#[derive(Debug, Clone)]
pub struct Apt {
    dir: PathBuf,
    arch: String,
}

impl Apt {
    /// Sets up (or reuses) the folder under `cache` for `source` and `arch`.
    pub fn new(cache: &Path, source: &DebianSource, arch: &str) -> Result<Apt> {
        let sources = source.sources_list(arch);
        let key = slate_core::Digest32::of(sources.as_bytes()).to_string();
        let dir = cache
            .join("apt")
            .join(format!("{}-{arch}-{}", source.suite, &key[..12]));
        for d in [
            "lists/partial",
            "cache/archives/partial",
            "apt.conf.d",
            "preferences.d",
            "sources.list.d",
            "log",
        ] {
            std::fs::create_dir_all(dir.join(d))
                .with_context(|| format!("creating {}", dir.join(d).display()))?;
        }
        std::fs::write(dir.join("sources.list"), &sources)?;
        let status = dir.join("status");
        if !status.exists() {
            std::fs::write(&status, "")?;
        }
        let d = dir.display();
        let conf = format!(
            "APT::Architecture \"{arch}\";\n\
             APT::Architectures {{ \"{arch}\"; }};\n\
             APT::Install-Recommends \"false\";\n\
             APT::Install-Suggests \"false\";\n\
             Dir::Etc::main \"{d}/apt.conf\";\n\
             Dir::Etc::Parts \"{d}/apt.conf.d\";\n\
             Dir::Etc::SourceList \"{d}/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/sources.list.d\";\n\
             Dir::Etc::Preferences \"{d}/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/preferences.d\";\n\
             Dir::State \"{d}\";\n\
             Dir::State::Lists \"{d}/lists\";\n\
             Dir::State::status \"{d}/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Dir::Log \"{d}/log\";\n\
             Debug::NoLocking \"true\";\n\
             Acquire::Languages \"none\";\n\
             Acquire::GzipIndexes \"false\";\n\
             Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled \"false\";\n"
        );
        std::fs::write(dir.join("apt.conf"), conf)?;
        Ok(Apt {
            dir,
            arch: arch.to_string(),
        })
    }

    /// The folder (lists, config, downloads).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", self.dir.join("apt.conf"))
            .env("LC_ALL", "C");
        c
    }

    fn run(&self, mut c: Command, what: &str) -> Result<String> {
        let out = c
            .output()
            .with_context(|| format!("running {what} (is apt installed?)"))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Downloads the suite's current lists (apt checks their signatures).
    pub fn update(&self) -> Result<()> {
        let mut c = self.command("apt-get");
        c.args(["update", "-q"]);
        self.run(c, "apt-get update (private lists)")?;
        Ok(())
    }

    /// Every package in the lists (all architectures the lists hold). apt says which files
    /// hold them (`apt-get indextargets`) and reads them in whatever compression the host's
    /// apt settings keep them (`apt-helper cat-file`).
    pub fn available(&self) -> Result<Vec<Available>> {
        let mut c = self.command("apt-get");
        c.args([
            "indextargets",
            "--format",
            "$(FILENAME)",
            "Identifier: Packages",
        ]);
        let listed = self.run(c, "apt-get indextargets")?;
        let mut files: Vec<&str> = listed.lines().filter(|l| !l.trim().is_empty()).collect();
        files.sort();
        files.dedup();
        if files.is_empty() {
            bail!(
                "no package lists in {} (apt-get update found none for {})",
                self.dir.display(),
                self.arch
            );
        }
        let mut out = Vec::new();
        for f in files {
            let mut c = self.command("/usr/lib/apt/apt-helper");
            c.args(["cat-file", f]);
            let text = self.run(c, &format!("apt-helper cat-file {f}"))?;
            out.extend(parse_packages(&text, f)?);
        }
        Ok(out)
    }

    /// What apt's own resolver installs for `packages` on an empty system: name → version
    /// (the `Inst` lines of `apt-get install --simulate`). The oracle for [`super::resolve`].
    pub fn simulate(&self, packages: &[String]) -> Result<BTreeMap<String, String>> {
        let mut c = self.command("apt-get");
        c.args(["install", "--simulate", "-q", "--no-install-recommends"])
            .args(packages);
        let text = self.run(c, "apt-get install --simulate")?;
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("Inst ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (Some(name), Some(version)) = (words.next(), words.next()) else {
                continue;
            };
            let name = name.split(':').next().unwrap_or(name);
            out.insert(
                name.to_string(),
                version.trim_start_matches('(').to_string(),
            );
        }
        Ok(out)
    }

    /// Downloads each `(name, version)` into `dest` in one apt run (apt checks every file
    /// against the signed lists) and returns each package's file, in the order asked.
    pub fn download(&self, wanted: &[(String, String)], dest: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.command("apt-get");
        c.current_dir(dest).args(["download", "-q"]);
        for (name, version) in wanted {
            c.arg(format!("{name}={version}"));
        }
        self.run(c, &format!("apt-get download ({} packages)", wanted.len()))?;
        let files: Vec<PathBuf> = std::fs::read_dir(dest)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        wanted
            .iter()
            .map(|(name, version)| {
                // apt names a download name_version_arch.deb, the epoch's colon as %3a.
                let prefix = format!("{name}_{}_", version.replace(':', "%3a"));
                files
                    .iter()
                    .find(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                    })
                    .cloned()
                    .with_context(|| {
                        format!(
                            "apt-get download left no file for {name} {version} in {}",
                            dest.display()
                        )
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_name_the_architecture_and_keyring_and_the_update_suites() {
        let s = DebianSource::default().sources_list("arm64");
        assert_eq!(s.lines().count(), 3, "{s}");
        assert!(s.contains("deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] https://deb.debian.org/debian bookworm main\n"), "{s}");
        assert!(s.contains(" bookworm-updates main"), "{s}");
        assert!(
            s.contains("https://deb.debian.org/debian-security bookworm-security main"),
            "{s}"
        );
        let no_security = DebianSource {
            security: String::new(),
            ..DebianSource::default()
        };
        assert_eq!(no_security.sources_list("amd64").lines().count(), 2);
        let release_alone = DebianSource {
            security: String::new(),
            updates: false,
            ..DebianSource::default()
        };
        let s = release_alone.sources_list("amd64");
        assert_eq!(s.lines().count(), 1, "{s}");
        assert!(s.ends_with(" bookworm main\n"), "{s}");
    }

    /// The private apt reads no configuration of the host's (a host part that turns off
    /// `Check-Valid-Until`, a proxy, a pinned mirror): apt itself says where it reads parts
    /// and its main file from, and a part dropped into the private folder is read.
    #[test]
    fn the_private_apt_reads_its_own_configuration_only() {
        let d = tempfile::tempdir().expect("tempdir");
        let apt = Apt::new(d.path(), &DebianSource::default(), "amd64").expect("apt");
        std::fs::write(
            apt.dir().join("apt.conf.d/50slate-test"),
            "Slate::Test::Marker \"private\";\n",
        )
        .expect("part");
        let out = apt
            .command("apt-config")
            .arg("dump")
            .output()
            .expect("apt-config (apt)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump = String::from_utf8_lossy(&out.stdout);
        let private = apt.dir().display().to_string();
        let value = |key: &str| {
            // apt's keys are case-insensitive; its dump spells them its own way.
            dump.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    k.eq_ignore_ascii_case(key).then_some(v)
                })
                .map(|v| v.trim_end_matches(';').trim_matches('"').to_string())
                .unwrap_or_else(|| panic!("no {key} in apt-config dump:\n{dump}"))
        };
        assert!(value("Dir::Etc::Parts").starts_with(&private), "{dump}");
        assert!(value("Dir::Etc::main").starts_with(&private), "{dump}");
        assert_eq!(value("Slate::Test::Marker"), "private", "{dump}");
    }
}
