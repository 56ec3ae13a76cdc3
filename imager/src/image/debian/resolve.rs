//! The closure of a spec's packages, picked the way apt picks: each requested package's
//! candidate (the highest version), then depth first through `Pre-Depends` and `Depends`,
//! where a dependency that something already chosen satisfies costs nothing, and otherwise
//! the first alternative that can satisfy it is installed (a virtual package by its provider,
//! the highest `Priority` first). Recommends are not installed, and `Essential` packages only
//! when something depends on them, as `apt-get install --no-install-recommends` does on an
//! empty system. Conflicts and Breaks are not checked: the oracle test compares the result
//! with apt's own resolver.

use crate::image::debian::debver;
use crate::image::packages::{Alternative, Available, Index};
use std::collections::BTreeMap;

/// Why a set of packages cannot be installed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// A requested package is not in the suite for this architecture.
    #[error("package {name:?} is not in {suite} for {arch} (check the name with `apt-cache search`, or the spec's [debian] suite and components)")]
    Unknown {
        /// Requested name.
        name: String,
        /// Suite searched.
        suite: String,
        /// Architecture.
        arch: String,
    },
    /// A dependency no package satisfies.
    #[error(
        "{package} {version} depends on {wanted}, which nothing in {suite} for {arch} provides"
    )]
    Unsatisfiable {
        /// Package with the dependency.
        package: String,
        /// Its version.
        version: String,
        /// The dependency as written.
        wanted: String,
        /// Suite searched.
        suite: String,
        /// Architecture.
        arch: String,
    },
}

fn priority_rank(p: &str) -> u8 {
    match p {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        _ => 4,
    }
}

fn describe(alts: &[Alternative]) -> String {
    alts.iter()
        .map(|a| match &a.constraint {
            Some((r, v)) => format!("{} ({r:?} {v})", a.name),
            None => a.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

struct Resolver<'a> {
    index: &'a Index,
    chosen: BTreeMap<String, &'a Available>,
    suite: String,
    arch: String,
}

impl<'a> Resolver<'a> {
    /// Whether something chosen satisfies `alt` (by name, or by a versioned `Provides` when
    /// there is a constraint; an unversioned `Provides` satisfies only unversioned ones).
    fn satisfied(&self, alt: &Alternative) -> bool {
        if let Some(p) = self.chosen.get(&alt.name) {
            if alt
                .constraint
                .as_ref()
                .is_none_or(|(r, v)| r.holds(&p.version, v))
            {
                return true;
            }
        }
        self.index
            .providers(&alt.name)
            .iter()
            .filter(|(name, _)| self.chosen.contains_key(name))
            .any(|(_, provided)| match (&alt.constraint, provided) {
                (None, _) => true,
                (Some((r, v)), Some(pv)) => r.holds(pv, v),
                (Some(_), None) => false,
            })
    }

    /// The package to install for `alt`, if any can satisfy it.
    fn pick(&self, alt: &Alternative) -> Option<&'a Available> {
        if let Some(c) = self.index.candidate(&alt.name) {
            if alt
                .constraint
                .as_ref()
                .is_none_or(|(r, v)| r.holds(&c.version, v))
            {
                return Some(c);
            }
        }
        let mut providers: Vec<&'a Available> = self
            .index
            .providers(&alt.name)
            .iter()
            .filter(|(_, provided)| match (&alt.constraint, provided) {
                (None, _) => true,
                (Some((r, v)), Some(pv)) => r.holds(pv, v),
                (Some(_), None) => false,
            })
            .filter_map(|(name, _)| self.index.candidate(name))
            .collect();
        providers.sort_by(|a, b| {
            b.essential
                .cmp(&a.essential)
                .then(priority_rank(&a.priority).cmp(&priority_rank(&b.priority)))
                .then(a.name.cmp(&b.name))
        });
        providers.first().copied()
    }

    fn install(&mut self, p: &'a Available) -> Result<(), ResolveError> {
        if self.chosen.contains_key(&p.name) {
            return Ok(());
        }
        self.chosen.insert(p.name.clone(), p);
        for clause in &p.depends {
            if clause.iter().any(|a| self.satisfied(a)) {
                continue;
            }
            let Some(next) = clause.iter().find_map(|a| self.pick(a)) else {
                return Err(ResolveError::Unsatisfiable {
                    package: p.name.clone(),
                    version: p.version.clone(),
                    wanted: describe(clause),
                    suite: self.suite.clone(),
                    arch: self.arch.clone(),
                });
            };
            self.install(next)?;
        }
        Ok(())
    }
}

/// The packages to install for `requested`, by name.
pub fn resolve<'a>(
    index: &'a Index,
    requested: &[String],
    suite: &str,
    arch: &str,
) -> Result<BTreeMap<String, &'a Available>, ResolveError> {
    let mut r = Resolver {
        index,
        chosen: BTreeMap::new(),
        suite: suite.into(),
        arch: arch.into(),
    };
    for name in requested {
        let alt = Alternative {
            name: name.clone(),
            constraint: None,
        };
        let p = r.pick(&alt).ok_or_else(|| ResolveError::Unknown {
            name: name.clone(),
            suite: suite.into(),
            arch: arch.into(),
        })?;
        r.install(p)?;
    }
    Ok(r.chosen)
}

/// Sorts versions as dpkg does (for tests and reports).
pub fn newest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    versions.into_iter().max_by(|a, b| debver::compare(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::packages::parse_packages;

    fn stanza(name: &str, version: &str, extra: &str) -> String {
        format!("Package: {name}\nVersion: {version}\nArchitecture: amd64\n{extra}Filename: pool/{name}.deb\nSize: 1\nSHA256: {}\n\n", "00".repeat(32))
    }

    fn index(stanzas: &[String]) -> Index {
        Index::new(parse_packages(&stanzas.concat(), "test").unwrap(), "amd64")
    }

    fn names(r: &BTreeMap<String, &Available>) -> Vec<String> {
        r.keys().cloned().collect()
    }

    #[test]
    fn the_closure_follows_depends_and_pre_depends_only() {
        let ix = index(&[
            stanza(
                "app",
                "1",
                "Pre-Depends: base\nDepends: libfoo (>= 2)\nRecommends: extra\n",
            ),
            stanza("base", "1", ""),
            stanza("libfoo", "2.1", "Depends: libc6\n"),
            stanza("libc6", "2.36", ""),
            stanza("extra", "1", ""),
            stanza("coreutils", "9", "Essential: yes\n"),
        ]);
        let r = resolve(&ix, &["app".into()], "bookworm", "amd64").unwrap();
        assert_eq!(names(&r), ["app", "base", "libc6", "libfoo"]);
    }

    #[test]
    fn alternatives_take_what_is_chosen_then_the_first_that_fits() {
        let ix = index(&[
            stanza(
                "a",
                "1",
                "Depends: awk-x | mawk, libz (>= 2) | libz-compat\n",
            ),
            stanza("b", "1", "Depends: mawk\n"),
            stanza("mawk", "1", ""),
            stanza("awk-x", "1", ""),
            stanza("libz", "1", ""),
            stanza("libz-compat", "1", ""),
        ]);
        // mawk is chosen first (through b), so a's `awk-x | mawk` costs nothing; libz 1 is
        // too old, so the second alternative is taken.
        let r = resolve(&ix, &["b".into(), "a".into()], "s", "amd64").unwrap();
        assert_eq!(names(&r), ["a", "b", "libz-compat", "mawk"]);
        let r = resolve(&ix, &["a".into()], "s", "amd64").unwrap();
        assert_eq!(names(&r), ["a", "awk-x", "libz-compat"]);
    }

    #[test]
    fn a_virtual_package_is_installed_through_its_best_provider() {
        let ix = index(&[
            stanza("app", "1", "Depends: debconf-2.0, mail-agent (>= 2)\n"),
            stanza(
                "debconf",
                "1.5",
                "Priority: important\nProvides: debconf-2.0\n",
            ),
            stanza(
                "cdebconf",
                "0.2",
                "Priority: optional\nProvides: debconf-2.0\n",
            ),
            stanza("mta-old", "1", "Provides: mail-agent (= 1)\n"),
            stanza("mta-new", "1", "Provides: mail-agent (= 3)\n"),
        ]);
        let r = resolve(&ix, &["app".into()], "s", "amd64").unwrap();
        assert_eq!(names(&r), ["app", "debconf", "mta-new"]);
    }

    #[test]
    fn what_cannot_be_installed_is_named() {
        let ix = index(&[stanza("app", "1", "Depends: libgone (>= 3) | libalt\n")]);
        let e = resolve(&ix, &["app".into()], "bookworm", "amd64").unwrap_err();
        assert!(e.to_string().contains("app 1 depends on libgone"), "{e}");
        let e = resolve(&ix, &["nope".into()], "bookworm", "amd64").unwrap_err();
        assert!(
            e.to_string()
                .contains("\"nope\" is not in bookworm for amd64"),
            "{e}"
        );
    }

    #[test]
    fn newest_orders_as_dpkg() {
        assert_eq!(newest(["1.0", "1.0~rc1", "0:0.9"]), Some("1.0"));
    }
}
