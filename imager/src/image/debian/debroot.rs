//! The locked packages of a root, read from the cache, and what dpkg would have done with them
//! that an immutable root still needs.
//!
//! Slate extracts packages without running their maintainer scripts (the root is built without
//! root and is read-only on the device). What those scripts do that matters is done here or in
//! [`crate::image::compose`] instead:
//!
//! | dpkg / a script does                  | Slate does                                        |
//! |---------------------------------------|---------------------------------------------------|
//! | unpack into a merged-/usr root        | [`crate::image::write::tree::Tree::merged_usr`]                 |
//! | `ldconfig` (the loader cache)         | nothing: Debian's loader searches the multiarch   |
//! |                                       | folders without a cache; the oracle test checks   |
//! | `update-alternatives --install`       | the link of the highest priority ([`alternatives`])|
//! | `adduser`/`useradd` of system users   | a warning: declare them with `[[user]]`           |
//! | anything else in pre/postinst         | a warning naming the package                      |
//! | keep conffiles                        | they stay in the read-only `/etc`                 |

use crate::image::debian::lock::LockedPackage;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// A locked package read from the cache, its sha256 checked.
pub struct LockedDeb {
    /// What the lock says about it.
    pub pkg: LockedPackage,
    /// The .deb's bytes.
    pub bytes: Vec<u8>,
    /// Its control files (`postinst`, `conffiles`, …).
    pub control: BTreeMap<String, Vec<u8>>,
}

/// Reads locked packages from `debs` (where `slate fetch` put them). A missing file or one
/// whose sha256 differs from the lock is an error that says to run `slate fetch`.
pub fn load(locked: &[LockedPackage], debs: &Path, spec: &Path) -> Result<Vec<LockedDeb>> {
    let mut out = Vec::with_capacity(locked.len());
    for p in locked {
        let path = debs.join(p.file_name());
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} ({} {} of the lock): run `slate fetch --spec {}` first",
                path.display(),
                p.name,
                p.version,
                spec.display()
            )
        })?;
        let sha = slate_core::Digest32::of(&bytes);
        if sha != p.sha256 {
            bail!(
                "{} has sha256 {sha}, but the lock says {} for {} {}: run `slate fetch --spec {}` to fetch it again",
                path.display(),
                p.sha256,
                p.name,
                p.version,
                spec.display()
            );
        }
        let what = format!("{} {}", p.name, p.version);
        let control = crate::image::debian::deb::control_files(&bytes, &what)?;
        out.push(LockedDeb {
            pkg: p.clone(),
            bytes,
            control,
        });
    }
    Ok(out)
}

/// One `update-alternatives --install` (or `--slave`) link a package's script makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// The generic name's link (`/usr/bin/awk`).
    pub link: String,
    /// The alternatives group (`awk`).
    pub name: String,
    /// What it points at (`/usr/bin/mawk`).
    pub path: String,
    /// Priority (higher wins).
    pub priority: i64,
}

/// The shell words of a script, one list per logical line (backslash continuations joined).
fn script_lines(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    joined
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .map(|l| {
            l.split_whitespace()
                .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
                .collect()
        })
        .filter(|w: &Vec<String>| !w.is_empty())
        .collect()
}

/// The alternatives a `postinst` installs with literal arguments (a `$variable` one cannot be
/// known without running the script and is left out).
pub fn script_alternatives(script: &str) -> Vec<Alternative> {
    let mut out = Vec::new();
    for words in script_lines(script) {
        let Some(at) = words.iter().position(|w| w == "update-alternatives") else {
            continue;
        };
        let mut i = at + 1;
        while i < words.len() {
            let (flag, take) = match words[i].as_str() {
                "--install" => ("--install", 4),
                "--slave" => ("--slave", 3),
                _ => {
                    i += 1;
                    continue;
                }
            };
            let args = &words[i + 1..(i + 1 + take).min(words.len())];
            i += 1 + take;
            if args.len() < take || args.iter().any(|a| a.contains('$')) {
                continue;
            }
            let priority = if flag == "--install" {
                match args[3].parse() {
                    Ok(p) => p,
                    Err(_) => continue,
                }
            } else {
                out.last().map_or(0, |a: &Alternative| a.priority)
            };
            out.push(Alternative {
                link: args[0].clone(),
                name: args[1].clone(),
                path: args[2].clone(),
                priority,
            });
        }
    }
    out
}

/// The link each alternatives group gets: the highest priority among every package's
/// `postinst` (the first package in name order on a tie, as the lock is sorted).
pub fn alternatives(debs: &[LockedDeb]) -> Vec<Alternative> {
    let mut best: BTreeMap<String, Alternative> = BTreeMap::new();
    for d in debs {
        let Some(script) = d.control.get("postinst") else {
            continue;
        };
        for a in script_alternatives(&String::from_utf8_lossy(script)) {
            match best.get(&a.name) {
                Some(b) if b.priority >= a.priority => {}
                _ => {
                    best.insert(a.name.clone(), a);
                }
            }
        }
    }
    best.into_values().collect()
}

/// What the imager did not do for these packages, as warnings: system users their scripts
/// create, and every package with a pre- or post-install script (not run).
pub fn script_warnings(debs: &[LockedDeb]) -> Vec<String> {
    let mut users = Vec::new();
    let mut scripted = Vec::new();
    for d in debs {
        let mut scripts = Vec::new();
        for name in ["preinst", "postinst"] {
            let Some(script) = d.control.get(name) else {
                continue;
            };
            scripts.push(name);
            let text = String::from_utf8_lossy(script);
            if script_lines(&text)
                .iter()
                .any(|w| w.iter().any(|w| w == "adduser" || w == "useradd"))
            {
                users.push(d.pkg.name.clone());
            }
        }
        if !scripts.is_empty() {
            scripted.push(format!("{} ({})", d.pkg.name, scripts.join(", ")));
        }
    }
    let mut out = Vec::new();
    if !users.is_empty() {
        out.push(format!(
            "packages whose scripts create system users (Slate does not run them): {}; declare the users they need with [[user]]",
            users.join(", ")
        ));
    }
    if !scripted.is_empty() {
        out.push(format!(
            "maintainer scripts not run (the root is built without them; merged-/usr and alternatives are done by the imager, the loader needs no cache): {}",
            scripted.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_with_literal_arguments_are_read_from_a_script() {
        let script = "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n  update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\\n    --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz\n  update-alternatives --install /usr/bin/x x \"$DIR/x\" 10\nfi\n";
        let got = script_alternatives(script);
        assert_eq!(
            got,
            vec![
                Alternative {
                    link: "/usr/bin/awk".into(),
                    name: "awk".into(),
                    path: "/usr/bin/mawk".into(),
                    priority: 5
                },
                Alternative {
                    link: "/usr/share/man/man1/awk.1.gz".into(),
                    name: "awk.1.gz".into(),
                    path: "/usr/share/man/man1/mawk.1.gz".into(),
                    priority: 5
                },
            ]
        );
    }

    fn deb(name: &str, postinst: &str) -> LockedDeb {
        LockedDeb {
            pkg: LockedPackage {
                name: name.into(),
                version: "1".into(),
                architecture: "all".into(),
                size: 0,
                sha256: slate_core::Digest32([0; 32]),
                filename: String::new(),
            },
            bytes: Vec::new(),
            control: BTreeMap::from([("postinst".to_string(), postinst.as_bytes().to_vec())]),
        }
    }

    #[test]
    fn the_highest_priority_wins_and_script_users_are_named() {
        let debs = [
            deb("mawk", "update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5\n"),
            deb(
                "gawk",
                "update-alternatives --install /usr/bin/awk awk /usr/bin/gawk 10\nadduser --system gawk\n",
            ),
        ];
        let alts = alternatives(&debs);
        assert_eq!(alts.len(), 1);
        assert_eq!(alts[0].path, "/usr/bin/gawk");
        let w = script_warnings(&debs);
        assert!(
            w[0].contains("create system users (Slate does not run them): gawk;"),
            "{w:?}"
        );
        assert!(w[1].contains("mawk (postinst), gawk (postinst)"), "{w:?}");
    }
}
