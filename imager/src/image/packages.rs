//! Debian's package index (`Packages` files, deb822 stanzas) and the dependency fields in it.
//!
//! Only the fields a root image needs are read: name, version, architecture, `Depends`,
//! `Pre-Depends`, `Provides`, `Essential`, `Priority`, `Filename`, `Size`, `SHA256`.

use crate::image::debian::debver::{self, Relation};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;

/// One alternative of a dependency: `name[:any] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// Package (or virtual package) name.
    pub name: String,
    /// Version constraint.
    pub constraint: Option<(Relation, String)>,
}

/// One dependency: any of its alternatives satisfies it (`a | b (>= 2)`).
pub type Clause = Vec<Alternative>;

/// One package version in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Debian architecture (`amd64`, `arm64`, `all`).
    pub architecture: String,
    /// `Pre-Depends` then `Depends`.
    pub depends: Vec<Clause>,
    /// Virtual packages it provides, with their version when given (`Provides: x (= 1)`).
    pub provides: Vec<(String, Option<String>)>,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority` (required, important, standard, optional, extra).
    pub priority: String,
    /// Path in the archive (`pool/main/…`).
    pub filename: String,
    /// Size of the .deb.
    pub size: u64,
    /// sha256 of the .deb.
    pub sha256: slate_core::Digest32,
}

/// Parses a `Depends`-style field.
pub fn parse_depends(field: &str) -> Result<Vec<Clause>> {
    let mut out = Vec::new();
    for clause in field.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let mut alts = Vec::new();
        for alt in clause.split('|').map(str::trim) {
            alts.push(parse_alternative(alt).with_context(|| format!("in {clause:?}"))?);
        }
        out.push(alts);
    }
    Ok(out)
}

fn parse_alternative(text: &str) -> Result<Alternative> {
    // Build profiles and architecture restrictions (`<!nocheck>`, `[amd64]`) are for source
    // packages; binary indexes do not carry them.
    let (name, rest) = match text.find('(') {
        Some(i) => (text[..i].trim(), Some(&text[i..])),
        None => (text.trim(), None),
    };
    let name = name.split(':').next().unwrap_or(name).to_string();
    if name.is_empty() {
        bail!("an empty package name");
    }
    let constraint = match rest {
        None => None,
        Some(r) => {
            let inner = r
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| anyhow!("unbalanced parentheses in {text:?}"))?
                .trim();
            let op_len = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let op = Relation::parse(&inner[..op_len])
                .ok_or_else(|| anyhow!("unknown relation {:?} in {text:?}", &inner[..op_len]))?;
            Some((op, inner[op_len..].trim().to_string()))
        }
    };
    Ok(Alternative { name, constraint })
}

/// Parses the stanzas of a `Packages` file; `origin` names it in errors.
pub fn parse_packages(text: &str, origin: &str) -> Result<Vec<Available>> {
    let mut out = Vec::new();
    for (i, stanza) in text.split("\n\n").enumerate() {
        if stanza.trim().is_empty() {
            continue;
        }
        let mut fields: BTreeMap<&str, String> = BTreeMap::new();
        let mut last: Option<&str> = None;
        for line in stanza.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(k) = last {
                    if let Some(v) = fields.get_mut(k) {
                        v.push(' ');
                        v.push_str(line.trim());
                    }
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k, v.trim().to_string());
                last = Some(k);
            }
        }
        let get = |k: &str| {
            fields
                .get(k)
                .cloned()
                .ok_or_else(|| anyhow!("{origin}: stanza {} has no {k} field", i + 1))
        };
        let name = get("Package")?;
        let mut depends = parse_depends(fields.get("Pre-Depends").map_or("", |s| s))
            .with_context(|| format!("{origin}: Pre-Depends of {name}"))?;
        depends.extend(
            parse_depends(fields.get("Depends").map_or("", |s| s))
                .with_context(|| format!("{origin}: Depends of {name}"))?,
        );
        let provides = parse_depends(fields.get("Provides").map_or("", |s| s))
            .with_context(|| format!("{origin}: Provides of {name}"))?
            .into_iter()
            .filter_map(|c| c.into_iter().next())
            .map(|a| (a.name, a.constraint.map(|(_, v)| v)))
            .collect();
        let size = get("Size")?
            .parse()
            .with_context(|| format!("{origin}: Size of {name}"))?;
        out.push(Available {
            version: get("Version")?,
            architecture: get("Architecture")?,
            depends,
            provides,
            essential: fields.get("Essential").is_some_and(|v| v == "yes"),
            priority: fields.get("Priority").cloned().unwrap_or_default(),
            filename: get("Filename")?,
            size,
            sha256: get("SHA256")?
                .parse()
                .with_context(|| format!("{origin}: SHA256 of {name}"))?,
            name,
        });
    }
    Ok(out)
}

/// The packages one architecture can install, by name, highest version first.
#[derive(Debug, Default)]
pub struct Index {
    by_name: BTreeMap<String, Vec<Available>>,
    providers: BTreeMap<String, Vec<(String, Option<String>)>>,
}

impl Index {
    /// Keeps the packages of `arch` and `all` from `packages`.
    pub fn new(packages: impl IntoIterator<Item = Available>, arch: &str) -> Index {
        let mut ix = Index::default();
        for p in packages {
            if p.architecture != arch && p.architecture != "all" {
                continue;
            }
            for (virt, ver) in &p.provides {
                ix.providers
                    .entry(virt.clone())
                    .or_default()
                    .push((p.name.clone(), ver.clone()));
            }
            ix.by_name.entry(p.name.clone()).or_default().push(p);
        }
        for versions in ix.by_name.values_mut() {
            versions.sort_by(|a, b| debver::compare(&b.version, &a.version));
            versions.dedup_by(|a, b| a.version == b.version);
        }
        for list in ix.providers.values_mut() {
            list.sort();
            list.dedup();
        }
        ix
    }

    /// The version apt would install: the highest (all sources have the same priority).
    pub fn candidate(&self, name: &str) -> Option<&Available> {
        self.by_name.get(name).and_then(|v| v.first())
    }

    /// Real packages providing `virt` (name, provided version).
    pub fn providers(&self, virt: &str) -> &[(String, Option<String>)] {
        self.providers.get(virt).map_or(&[], |v| v.as_slice())
    }

    /// How many package names it holds.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_fields_parse_with_alternatives_and_constraints() {
        let d = parse_depends("libc6 (>= 2.34), libpcre2-8-0 (>= 10.22) | libpcre3, debconf (>= 0.5) | debconf-2.0, perl:any").unwrap();
        assert_eq!(d.len(), 4);
        assert_eq!(d[0][0].name, "libc6");
        assert_eq!(
            d[0][0].constraint,
            Some((Relation::GreaterOrEqual, "2.34".into()))
        );
        assert_eq!(d[1].len(), 2);
        assert_eq!(d[1][1].name, "libpcre3");
        assert_eq!(d[3][0].name, "perl");
        assert!(parse_depends("a (~ 1)").is_err());
        assert!(parse_depends("a (>= 1").is_err());
        assert!(parse_depends("").unwrap().is_empty());
    }

    const SAMPLE: &str = "Package: nginx-light\nVersion: 1.22.1-9+deb12u2\nArchitecture: amd64\nPre-Depends: dpkg (>= 1.17)\nDepends: libc6 (>= 2.34),\n libssl3 (>= 3.0.0)\nProvides: httpd, nginx-abi-1.22.1-7\nPriority: optional\nFilename: pool/main/n/nginx/nginx-light_1.22.1-9+deb12u2_amd64.deb\nSize: 123\nSHA256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\nPackage: libc6\nVersion: 2.36-9+deb12u10\nArchitecture: amd64\nPriority: optional\nFilename: pool/main/g/glibc/libc6.deb\nSize: 9\nSHA256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n\nPackage: libc6\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\nFilename: pool/main/g/glibc/libc6-old.deb\nSize: 9\nSHA256: cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\n\nPackage: libc6\nVersion: 2.36-9+deb12u10\nArchitecture: arm64\nFilename: pool/main/g/glibc/libc6-arm.deb\nSize: 9\nSHA256: dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\n";

    #[test]
    fn an_index_keeps_one_architecture_and_prefers_the_highest_version() {
        let ix = Index::new(parse_packages(SAMPLE, "sample").unwrap(), "amd64");
        let n = ix.candidate("nginx-light").unwrap();
        assert_eq!(n.depends.len(), 3, "Pre-Depends, then the folded Depends");
        assert_eq!(n.depends[0][0].name, "dpkg");
        assert_eq!(n.depends[2][0].name, "libssl3");
        assert_eq!(
            ix.candidate("libc6").unwrap().sha256,
            slate_core::Digest32([0xbb; 32])
        );
        assert_eq!(ix.providers("httpd"), &[("nginx-light".to_string(), None)]);
        assert!(ix.candidate("libc6-arm").is_none());
    }

    #[test]
    fn a_stanza_without_its_checksum_is_refused_with_where() {
        let e = parse_packages(
            "Package: x\nVersion: 1\nArchitecture: all\nFilename: f\nSize: 1\n",
            "lists/x_Packages",
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("lists/x_Packages: stanza 1 has no SHA256"),
            "{e:#}"
        );
    }
}
