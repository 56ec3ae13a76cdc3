//! Kernel modules: read `depends=` from each module's ELF `.modinfo` section and order a
//! module set so every module loads after its dependencies.
//!
//! Debian's kernel package ships no `modules.dep` (depmod runs at install time), so Slate
//! computes the closure itself from the modules' own metadata.
//!
//! `.modinfo` holds NUL-separated `key=value` strings (`name=`, `depends=a,b`, …).

use std::collections::{BTreeMap, BTreeSet};

/// Why a module's metadata could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KmodError {
    /// Not a 64-bit little-endian ELF file, or truncated.
    #[error("{file}: not a 64-bit little-endian ELF module ({why})")]
    NotElf {
        /// Module file.
        file: String,
        /// Detail.
        why: &'static str,
    },
    /// A module the board lists (or one it depends on) is neither a module nor built in.
    #[error("kernel module {name:?} is neither in the kernel package nor built into the kernel{needed_by}")]
    Unknown {
        /// Module name.
        name: String,
        /// " (needed by x)" or "".
        needed_by: String,
    },
    /// A `.modinfo` name (or dependency) that is not a module name: it becomes a file name in
    /// the cache and the initramfs, so `../` or `/` in it would write elsewhere.
    #[error(
        "{file}: {name:?} in .modinfo is not a module name (letters, digits, '_' and '-' only)"
    )]
    BadName {
        /// Module file.
        file: String,
        /// The name as read.
        name: String,
    },
}

/// A module name from `.modinfo` (`name=` or an entry of `depends=`), normalised, or why it
/// is not one.
pub fn module_name(file: &str, raw: &str) -> Result<String, KmodError> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(KmodError::BadName {
            file: file.to_string(),
            name: raw.to_string(),
        });
    }
    Ok(normalize(raw))
}

/// Module names use `_` and `-` interchangeably; the kernel normalises to `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Reads the `.modinfo` key/value pairs of a module (ELF parsed by the `object` crate).
pub fn modinfo(file: &str, elf: &[u8]) -> Result<Vec<(String, String)>, KmodError> {
    use object::{Object, ObjectSection};
    let bad = |why| KmodError::NotElf {
        file: file.to_string(),
        why,
    };
    let obj = object::read::elf::ElfFile64::<object::Endianness>::parse(elf)
        .map_err(|_| bad("not a 64-bit ELF file"))?;
    if !obj.is_little_endian() {
        return Err(bad("big-endian"));
    }
    let Some(section) = obj.section_by_name(".modinfo") else {
        return Ok(Vec::new());
    };
    let data = section.data().map_err(|_| bad("bad .modinfo"))?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = std::str::from_utf8(kv).ok()?;
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// The dependencies `depends=` lists.
pub fn depends(file: &str, info: &[(String, String)]) -> Result<Vec<String>, KmodError> {
    info.iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, v)| v.split(',').filter(|s| !s.is_empty()))
        .map(|d| module_name(file, d))
        .collect()
}

/// Orders `wanted` plus everything they depend on: dependencies first, otherwise in the order
/// asked for (so the result is deterministic). `deps` maps every available module to its
/// dependencies; names in `builtin` are skipped.
pub fn load_order(
    wanted: &[String],
    deps: &BTreeMap<String, Vec<String>>,
    builtin: &BTreeSet<String>,
) -> Result<Vec<String>, KmodError> {
    fn visit(
        name: &str,
        needed_by: Option<&str>,
        deps: &BTreeMap<String, Vec<String>>,
        builtin: &BTreeSet<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), KmodError> {
        if done.contains(name) || builtin.contains(name) {
            return Ok(());
        }
        let Some(ds) = deps.get(name) else {
            return Err(KmodError::Unknown {
                name: name.to_string(),
                needed_by: needed_by
                    .map(|n| format!(" (needed by {n})"))
                    .unwrap_or_default(),
            });
        };
        // Mark first: module dependency graphs are acyclic, but a bad package must not loop.
        done.insert(name.to_string());
        for d in ds {
            visit(d, Some(name), deps, builtin, done, order)?;
        }
        order.push(name.to_string());
        Ok(())
    }
    let mut done = BTreeSet::new();
    let mut order = Vec::new();
    for w in wanted {
        visit(&normalize(w), None, deps, builtin, &mut done, &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(m, ds)| (m.to_string(), ds.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    #[test]
    fn dependencies_come_first() {
        let g = graph(&[
            ("virtio_blk", &["virtio", "virtio_ring"]),
            ("virtio", &["virtio_ring"]),
            ("virtio_ring", &[]),
            ("dm_verity", &["dm_bufio", "dm_mod"]),
            ("dm_bufio", &[]),
            ("dm_mod", &[]),
        ]);
        let order = load_order(
            &["virtio-blk".into(), "dm_verity".into()],
            &g,
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(
            order,
            [
                "virtio_ring",
                "virtio",
                "virtio_blk",
                "dm_bufio",
                "dm_mod",
                "dm_verity"
            ]
        );
    }

    #[test]
    fn builtin_modules_are_skipped_and_unknown_ones_named() {
        let g = graph(&[("ext4", &["jbd2"])]);
        let builtin: BTreeSet<String> = ["jbd2".to_string()].into();
        assert_eq!(
            load_order(&["ext4".into()], &g, &builtin).unwrap(),
            ["ext4"]
        );
        let e = load_order(&["ext4".into()], &g, &BTreeSet::new()).unwrap_err();
        assert_eq!(e.to_string(), "kernel module \"jbd2\" is neither in the kernel package nor built into the kernel (needed by ext4)");
    }

    #[test]
    fn garbage_is_not_an_elf() {
        assert!(modinfo(
            "x.ko",
            b"not an elf at all, not at all, not at all, not at all, not at all"
        )
        .is_err());
    }

    #[test]
    fn names_that_are_not_module_names_are_refused() {
        assert_eq!(module_name("a.ko", "virtio-blk").unwrap(), "virtio_blk");
        for bad in [
            "../../etc/passwd",
            "a/b",
            "",
            "x y",
            "dm\0mod",
            &"a".repeat(65),
        ] {
            let e = module_name("evil.ko", bad).expect_err(bad);
            assert!(e.to_string().contains("evil.ko"), "{e}");
        }
        let info = vec![("depends".to_string(), "virtio,../x".to_string())];
        assert!(depends("evil.ko", &info).is_err());
        let info = vec![("depends".to_string(), "virtio,virtio-ring".to_string())];
        assert_eq!(
            depends("ok.ko", &info).unwrap(),
            vec!["virtio".to_string(), "virtio_ring".to_string()]
        );
    }
}
