//! The kernel package: the kernel image, its release string, and the modules the board needs.
//!
//! Reading the package means decompressing all of it (tens of MiB of xz, seconds of CPU), so
//! what a build takes from it is kept in an extraction cache keyed by the package's sha256
//! (`<cache>/<sha256>/`: `kernel.toml` with the release, built-ins and every module's name,
//! path and dependencies; `vmlinuz`; the modules used so far). A cached build reads the same
//! bytes as a cold one (each file's sha256 is checked), so its outputs are identical.

use crate::image::debian::deb::{self, EntryKind};
use crate::image::kmod;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use slate_core::Digest32;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What the build takes from the kernel package.
#[derive(Debug)]
pub struct Kernel {
    /// `uname -r`, e.g. `6.1.0-28-amd64`.
    pub release: String,
    /// The kernel image (`boot/vmlinuz-<release>`).
    pub vmlinuz: Vec<u8>,
    /// The modules to ship, in load order: (path inside the package, bytes).
    pub modules: Vec<(String, Vec<u8>)>,
}

/// Everything of the package a build needs except module bytes: what the cache keeps as
/// `kernel.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Index {
    release: String,
    /// sha256 of the kernel image.
    vmlinuz_sha256: Digest32,
    /// Built-in module names.
    builtin: BTreeSet<String>,
    /// Every module: name → (path in the package, dependencies).
    modules: BTreeMap<String, ModuleEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ModuleEntry {
    path: String,
    depends: Vec<String>,
    sha256: Digest32,
}

/// The kernel and the modules `wanted` needs, from the extraction cache when it has them, else
/// from the package (which then fills the cache). `cache` None: no cache.
pub fn extract_cached(
    deb_bytes: &[u8],
    deb_sha256: &Digest32,
    what: &str,
    wanted: &[String],
    cache: Option<&Path>,
) -> Result<Kernel> {
    let Some(cache) = cache else {
        return extract(deb_bytes, what, wanted);
    };
    let dir = cache.join(deb_sha256.to_string());
    if let Some(k) = from_cache(&dir, what, wanted) {
        return Ok(k);
    }
    let (kernel, index) = extract_with_index(deb_bytes, what, wanted)?;
    if let Err(e) = store(&dir, &kernel, &index) {
        tracing::warn!(cache = %dir.display(), error = %e, "could not fill the extraction cache");
    }
    Ok(kernel)
}

/// The kernel from the cache, or None when anything is missing or does not match its sha256.
fn from_cache(dir: &Path, what: &str, wanted: &[String]) -> Option<Kernel> {
    let index: Index =
        toml::from_str(&std::fs::read_to_string(dir.join("kernel.toml")).ok()?).ok()?;
    let vmlinuz = std::fs::read(dir.join("vmlinuz")).ok()?;
    if Digest32::of(&vmlinuz) != index.vmlinuz_sha256 {
        return None;
    }
    let deps: BTreeMap<String, Vec<String>> = index
        .modules
        .iter()
        .map(|(n, m)| (n.clone(), m.depends.clone()))
        .collect();
    let order = kmod::load_order(wanted, &deps, &index.builtin).ok()?;
    let mut modules = Vec::new();
    for name in order {
        let m = index.modules.get(&name)?;
        let bytes = std::fs::read(dir.join("ko").join(format!("{name}.ko"))).ok()?;
        if Digest32::of(&bytes) != m.sha256 {
            return None;
        }
        modules.push((m.path.clone(), bytes));
    }
    tracing::info!(package = what, cache = %dir.display(), "kernel from the extraction cache");
    Some(Kernel {
        release: index.release,
        vmlinuz,
        modules,
    })
}

/// Writes the index, the kernel and the modules used into the cache (a temporary folder
/// renamed into place, so a reader never sees half of it). Modules already there stay.
fn store(dir: &Path, kernel: &Kernel, index: &Index) -> Result<()> {
    let parent = dir.parent().context("cache folder")?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".kernel-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&tmp)?;
    let result = fill(&tmp, dir, kernel, index);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn fill(tmp: &Path, dir: &Path, kernel: &Kernel, index: &Index) -> Result<()> {
    let ko = tmp.join("ko");
    std::fs::create_dir_all(&ko)?;
    if let Ok(old) = std::fs::read_dir(dir.join("ko")) {
        for e in old.flatten() {
            std::fs::copy(e.path(), ko.join(e.file_name()))?;
        }
    }
    for (path, bytes) in &kernel.modules {
        let name = index
            .modules
            .iter()
            .find(|(_, m)| &m.path == path)
            .map(|(n, _)| n.clone())
            .context("module missing from the index")?;
        std::fs::write(ko.join(format!("{name}.ko")), bytes)?;
    }
    std::fs::write(tmp.join("vmlinuz"), &kernel.vmlinuz)?;
    std::fs::write(tmp.join("kernel.toml"), toml::to_string(index)?)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(tmp, dir)?;
    Ok(())
}

/// Reads `deb_bytes` once, keeping the kernel and every module's metadata, then keeps the bytes of
/// the modules `wanted` needs (their dependency closure, minus built-ins).
pub fn extract(deb_bytes: &[u8], what: &str, wanted: &[String]) -> Result<Kernel> {
    extract_with_index(deb_bytes, what, wanted).map(|(k, _)| k)
}

fn extract_with_index(deb_bytes: &[u8], what: &str, wanted: &[String]) -> Result<(Kernel, Index)> {
    let mut vmlinuz: Option<(String, Vec<u8>)> = None;
    let mut builtin_text = String::new();
    let mut modules: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    deb::for_each_entry(deb_bytes, what, |e, r| {
        if e.kind != EntryKind::File {
            return Ok(());
        }
        if let Some(release) = e.path.strip_prefix("boot/vmlinuz-") {
            let mut b = Vec::new();
            r.read_to_end(&mut b)?;
            vmlinuz = Some((release.to_string(), b));
        } else if e.path.starts_with("lib/modules/") && e.path.ends_with("/modules.builtin") {
            r.read_to_string(&mut builtin_text)?;
        } else if e.path.starts_with("lib/modules/") && e.path.ends_with(".ko") {
            let mut b = Vec::new();
            r.read_to_end(&mut b)?;
            let info = kmod::modinfo(&e.path, &b)?;
            let file_name = e.path.rsplit('/').next().unwrap_or_default();
            let raw = info
                .iter()
                .find(|(k, _)| k == "name")
                .map_or(file_name.trim_end_matches(".ko"), |(_, v)| v.as_str());
            let name = kmod::module_name(&e.path, raw)?;
            deps.insert(name.clone(), kmod::depends(&e.path, &info)?);
            modules.insert(name, (e.path.clone(), b));
        } else if e.path.starts_with("lib/modules/")
            && (e.path.ends_with(".ko.xz") || e.path.ends_with(".ko.zst"))
        {
            bail!(
                "{what}: {} is compressed; Slate loads uncompressed modules only",
                e.path
            );
        }
        Ok(())
    })?;
    let Some((release, vmlinuz)) = vmlinuz else {
        bail!("{what}: no boot/vmlinuz-* in the package; is it a kernel image package?");
    };
    let builtin: BTreeSet<String> = builtin_text
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(|f| kmod::normalize(f.trim_end_matches(".ko")))
        .collect();
    let order = kmod::load_order(wanted, &deps, &builtin)
        .with_context(|| format!("resolving the board's modules in {what}"))?;
    let index = Index {
        release: release.clone(),
        vmlinuz_sha256: Digest32::of(&vmlinuz),
        builtin,
        modules: modules
            .iter()
            .map(|(name, (path, bytes))| {
                (
                    name.clone(),
                    ModuleEntry {
                        path: path.clone(),
                        depends: deps.get(name).cloned().unwrap_or_default(),
                        sha256: Digest32::of(bytes),
                    },
                )
            })
            .collect(),
    };
    let modules = order
        .into_iter()
        .filter_map(|name| modules.remove(&name))
        .collect();
    Ok((
        Kernel {
            release,
            vmlinuz,
            modules,
        },
        index,
    ))
}
