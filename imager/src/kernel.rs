//! The kernel package: the kernel image, its release string, and the modules the board needs.

use crate::deb::{self, EntryKind};
use crate::kmod;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};

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

/// Reads `deb_bytes` once, keeping the kernel and every module's metadata, then keeps the bytes of
/// the modules `wanted` needs (their dependency closure, minus built-ins).
pub fn extract(deb_bytes: &[u8], what: &str, wanted: &[String]) -> Result<Kernel> {
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
            let name = info
                .iter()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| kmod::normalize(v))
                .unwrap_or_else(|| kmod::normalize(file_name.trim_end_matches(".ko")));
            deps.insert(name.clone(), kmod::depends(&info));
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
    let modules = order
        .into_iter()
        .filter_map(|name| modules.remove(&name))
        .collect();
    Ok(Kernel {
        release,
        vmlinuz,
        modules,
    })
}
