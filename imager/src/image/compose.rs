//! Composes the two trees of an image: the root filesystem and the initramfs.
//!
//! Root layers, later ones winning: the lock's packages (merged-/usr, alternatives links),
//! overlays, spec files, folders, links, then what
//! Slate generates (device config under `/etc/slate`, `os-release`, the device binaries and
//! the provenance). The initramfs holds only `/init` (slate-init), `/dev/console`, the board's
//! modules with their dependencies, and the list of modules in load order.

use crate::error::BuildError;
use crate::image::agentbin::AgentBinaries;
use crate::image::board::Board;
use crate::image::debian::deb::{self, EntryKind};
use crate::image::debian::debroot::{self, LockedDeb};
use crate::image::kernel::Kernel;
use crate::image::provenance::{FileUsed, Provenance};
use crate::image::spec::{ImagePath, LoadedSpec};
use crate::image::write::tree::{Content, Kind, Node, Tree};
use anyhow::{Context, Result};
use slate_core::config::{self, paths, Health, ImageInfo, InitConfig, InitrdConfig, Service};
use slate_core::Version;
use std::path::Path;
use std::sync::Arc;

/// A path Slate itself chose (never user input), so an invalid one is a bug here.
fn ip(s: &str) -> ImagePath {
    ImagePath::new(s).expect("Slate's own image paths are valid")
}

fn toml_text<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(toml::to_string(value)
        .context("serialising device configuration")?
        .into_bytes())
}

/// Extracts a package into `tree`; with `only` non-empty, just those paths and their parents.
pub fn add_package(
    tree: &mut Tree,
    deb_bytes: &[u8],
    what: &str,
    only: &[ImagePath],
) -> Result<()> {
    let wanted = |p: &ImagePath| {
        only.is_empty()
            || only.iter().any(|o| {
                p == o
                    || p.rel().starts_with(&format!("{}/", o.rel()))
                    || o.rel().starts_with(&format!("{}/", p.rel()))
            })
    };
    deb::for_each_entry(deb_bytes, what, |e, r| {
        let path = ImagePath::new(&e.path).map_err(|why| anyhow::anyhow!("{what}: {why}"))?;
        if !wanted(&path) {
            return Ok(());
        }
        let kind = match e.kind {
            EntryKind::Dir => Kind::Dir,
            EntryKind::File => {
                let mut b = Vec::new();
                r.read_to_end(&mut b)?;
                Kind::File(Content::Bytes(Arc::new(b)))
            }
            EntryKind::Symlink(t) => Kind::Symlink(t),
            EntryKind::HardLink(target) => match tree.get(&target) {
                Some(n) => n.kind.clone(),
                None => anyhow::bail!(
                    "{what}: hard link {} points at {target}, which is not in the package",
                    e.path
                ),
            },
        };
        tree.insert(
            &path,
            Node {
                kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
            },
        )?;
        Ok(())
    })
}

/// Copies a host folder into the root, keeping modes but never group/other write: a checkout
/// made under umask 002 must give the same image as one made under 022 (git keeps only the
/// executable bit), while a deliberate 0600 stays 0600. Files are read at write time.
fn add_overlay(
    tree: &mut Tree,
    host: &Path,
    label: &Path,
    at: &ImagePath,
    prov: &mut Provenance,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(host)
        .with_context(|| format!("reading overlay folder {}", host.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let dest = at
            .join(&name)
            .map_err(|why| anyhow::anyhow!("{}: {why}", e.path().display()))?;
        let meta = std::fs::symlink_metadata(e.path())?;
        let mode = (std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7755) as u16;
        let ft = meta.file_type();
        if ft.is_dir() {
            tree.insert(&dest, Node::dir(mode))?;
            add_overlay(tree, &e.path(), &label.join(&name), &dest, prov)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(e.path())?;
            tree.insert(&dest, Node::symlink(&target.to_string_lossy()))?;
        } else if ft.is_file() {
            // Hashed now, streaming; read again only when the squashfs is written, so a large
            // overlay never sits in memory.
            let (_, sha256) = crate::image::hashing::hash_file(&e.path())?;
            prov.files.push(FileUsed {
                source: label.join(&name).display().to_string(),
                dest: dest.to_string(),
                sha256,
            });
            tree.insert(&dest, Node::file(Content::Host(e.path()), mode))?;
        } else {
            anyhow::bail!(
                "{}: overlays hold only files, folders and links",
                e.path().display()
            );
        }
    }
    Ok(())
}

/// Everything the root tree is made of besides the spec.
pub struct RootInputs<'a> {
    /// The spec.
    pub spec: &'a LoadedSpec,
    /// Version being built.
    pub version: &'a Version,
    /// Board.
    pub board: &'a Board,
    /// The lock's packages (the spec's and their dependencies), read and checked.
    pub packages: &'a [LockedDeb],
    /// Device binaries.
    pub agent: &'a AgentBinaries,
    /// Trust file on the host, if any.
    pub trust: Option<&'a Path>,
    /// Operator CA certificate on the host, if any.
    pub operators: Option<&'a Path>,
    /// Security epoch of the image.
    pub security_epoch: u64,
    /// Built for Secure Boot (signed UKIs): the db certificate (PEM) on the host, which the
    /// agent checks a bundle's UKIs against before it installs them.
    pub secure_boot_cert: Option<&'a Path>,
    /// The slots boot UKIs (Secure Boot or measured boot), so the agent takes only bundles
    /// that carry them.
    pub ukis: bool,
}

/// Builds the root tree. Provenance of host files is appended to `prov`; the caller adds the
/// provenance file itself once all inputs are known.
pub fn root(inputs: &RootInputs<'_>, prov: &mut Provenance) -> Result<Tree> {
    let spec = &inputs.spec.spec;
    let mut tree = Tree::merged_usr();
    for deb in inputs.packages {
        // A spec package may keep only some of its paths; dependencies come whole.
        let only = spec
            .packages
            .iter()
            .find(|p| p.name == deb.pkg.name)
            .map_or(&[][..], |p| &p.paths[..]);
        let what = format!("{} {}", deb.pkg.name, deb.pkg.version);
        add_package(&mut tree, &deb.bytes, &what, only)?;
    }
    for alt in debroot::alternatives(inputs.packages) {
        let link = ImagePath::new(&alt.link)
            .map_err(|why| anyhow::anyhow!("alternative {}: {why}", alt.name))?;
        // Only where the chosen file is in the root (a spec may keep part of a package).
        let chosen = ImagePath::new(&alt.path).ok();
        if chosen.is_some_and(|p| tree.get(p.rel()).is_some()) {
            tree.insert(&link, Node::symlink(&alt.path))?;
        }
    }
    for overlay in &spec.overlays {
        let host = inputs.spec.resolve(overlay);
        if !host.is_dir() {
            return Err(BuildError::MissingSource {
                path: host,
                field: "overlays".into(),
            }
            .into());
        }
        add_overlay(&mut tree, &host, overlay, &ip("/"), prov)?;
    }
    for (i, f) in spec.files.iter().enumerate() {
        let host = inputs.spec.resolve(&f.source);
        let bytes = std::fs::read(&host).map_err(|_| BuildError::MissingSource {
            path: host.clone(),
            field: format!("file[{i}].source"),
        })?;
        prov.files.push(FileUsed {
            source: f.source.display().to_string(),
            dest: f.dest.to_string(),
            sha256: slate_core::Digest32::of(&bytes),
        });
        let mut node = Node::file(
            Content::Bytes(Arc::new(bytes)),
            f.mode.map_or(0o644, |m| m.0),
        );
        node.uid = f.uid;
        node.gid = f.gid;
        tree.insert(&f.dest, node)?;
    }
    for d in &spec.dirs {
        let mut node = Node::dir(d.mode.map_or(0o755, |m| m.0));
        node.uid = d.uid;
        node.gid = d.gid;
        tree.insert(&d.path, node)?;
    }
    for l in &spec.symlinks {
        for p in &l.paths {
            tree.insert(p, Node::symlink(&l.target))?;
        }
    }
    if let Some((path, _)) = tree.iter().find(|(p, _)| reserved_for_slate(p)) {
        anyhow::bail!(
            "/{path} comes from a package, an alternative, an overlay or the spec's files, dirs or symlinks: /etc/slate, /usr/lib/slate and /usr/bin/slated hold what the device trusts and runs, and only Slate writes them"
        );
    }

    // What every Slate root has: mount points, the device binaries, the device config.
    for (d, mode) in [
        ("/dev", 0o755),
        ("/proc", 0o555),
        ("/sys", 0o555),
        ("/run", 0o755),
        ("/tmp", 0o1777),
        ("/var", 0o755),
        ("/data", 0o755),
        ("/etc/slate/services", 0o755),
    ] {
        if tree.get(ip(d).rel()).is_none() {
            tree.insert(&ip(d), Node::dir(mode))?;
        }
    }
    for (role, host, dest) in [
        (
            "slate-init",
            &inputs.agent.init,
            "/usr/lib/slate/slate-init",
        ),
        ("slated", &inputs.agent.slated, "/usr/bin/slated"),
    ] {
        let bytes = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        prov.files.push(FileUsed {
            source: role.into(),
            dest: dest.into(),
            sha256: slate_core::Digest32::of(&bytes),
        });
        tree.insert(
            &ip(dest),
            Node::file(Content::Bytes(Arc::new(bytes)), 0o755),
        )?;
    }
    let info = ImageInfo {
        name: spec.name.clone(),
        version: inputs.version.clone(),
        board: inputs.board.name.clone(),
        security_epoch: inputs.security_epoch,
        secure_boot: inputs.secure_boot_cert.is_some(),
        ukis: inputs.ukis && inputs.secure_boot_cert.is_none(),
        built: crate::image::build::source_date_epoch()?,
    };
    if let Some(cert) = inputs.secure_boot_cert {
        let bytes = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        add_host_file(
            &mut tree,
            prov,
            "secure_boot.cert",
            paths::SECURE_BOOT_DB,
            bytes,
        )?;
    }
    tree.insert(
        &ip(&format!("/{}", paths::IMAGE)),
        Node::bytes(toml_text(&info)?, 0o644),
    )?;
    for (i, p) in spec.etc_overrides.iter().enumerate() {
        if !matches!(tree.get(p.rel()).map(|n| &n.kind), Some(Kind::File(_))) {
            return Err(BuildError::Spec {
                path: inputs.spec.path.clone(),
                field: format!("etc_overrides[{i}]"),
                why: format!("{p} is not a file of the root (only a file the image ships can be replaced from /data/etc)"),
            }
            .into());
        }
    }
    let init = InitConfig {
        hostname: spec.hostname.clone(),
        debug_shell: spec.debug_shell,
        log: spec.log.clone(),
        etc_overrides: spec.etc_overrides.iter().map(ToString::to_string).collect(),
    };
    tree.insert(
        &ip(&format!("/{}", paths::INIT)),
        Node::bytes(toml_text(&init)?, 0o644),
    )?;
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    for u in &spec.users {
        passwd.push_str(&format!(
            "{}:x:{}:{}:{}:{}:/bin/false\n",
            u.name,
            u.uid,
            u.gid(),
            u.name,
            u.home.as_deref().unwrap_or("/")
        ));
        group.push_str(&format!("{}:x:{}:\n", u.name, u.gid()));
    }
    for (path, text) in [("/etc/passwd", passwd), ("/etc/group", group)] {
        if tree.get(path.trim_start_matches('/')).is_some() {
            return Err(BuildError::TreeConflict {
                path: path.into(),
                why: "an overlay ships it, but the imager writes it from the spec's [[user]] entries (root is always there): declare users with [[user]] and remove the file from the overlay".into(),
            }
            .into());
        }
        tree.insert(&ip(path), Node::bytes(text, 0o644))?;
    }
    for s in &spec.services {
        let (uid, gid) = spec.ids_of(s);
        let svc = Service {
            name: s.name.clone(),
            exec: s.exec.clone(),
            env: s.env.clone(),
            restart: s.restart,
            uid,
            gid,
            capabilities: s
                .capabilities
                .iter()
                .map(|c| c.to_ascii_lowercase())
                .collect(),
        };
        let path = ip(&format!("/{}/{}.toml", paths::SERVICES_DIR, s.name));
        tree.insert(&path, Node::bytes(toml_text(&svc)?, 0o644))?;
    }
    let health = Health {
        deadline_s: spec.health.deadline_s,
        checks: spec.health.checks.clone(),
    };
    tree.insert(
        &ip(&format!("/{}", paths::HEALTH)),
        Node::bytes(toml_text(&health)?, 0o644),
    )?;
    tree.insert(
        &ip(&format!("/{}", paths::NETWORK)),
        Node::bytes(toml_text(&spec.network)?, 0o644),
    )?;
    // A DHCP lease's DNS servers are written at run time, on the tmpfs /run.
    if spec.network.dhcp && tree.get("etc/resolv.conf").is_none() {
        tree.insert(&ip("/etc/resolv.conf"), Node::symlink("/run/resolv.conf"))?;
    }
    let agent: config::AgentConfig = spec
        .agent
        .device_config_with(inputs.trust.is_some(), inputs.operators.is_some());
    if let Some(ops) = inputs.operators {
        add_host_file(
            &mut tree,
            prov,
            "operators",
            paths::OPERATORS,
            crate::image::operator_ca::read(ops)?,
        )?;
    }
    tree.insert(
        &ip(&format!("/{}", paths::AGENT)),
        Node::bytes(toml_text(&agent)?, 0o644),
    )?;
    if let Some(update) = &spec.update {
        if let Some(files) = update.files(&inputs.spec.path, |p| inputs.spec.resolve(p))? {
            add_host_file(
                &mut tree,
                prov,
                "update.channel_root",
                paths::CHANNEL_ROOT,
                files.root,
            )?;
            if let Some(ca) = files.ca {
                add_host_file(&mut tree, prov, "update.channel_ca", paths::CHANNEL_CA, ca)?;
            }
            tree.insert(
                &ip(&format!("/{}", paths::UPDATE)),
                Node::bytes(toml_text(&files.config)?, 0o644),
            )?;
        }
        // A zone's changes from a year before the build on (SOURCE_DATE_EPOCH, else today:
        // the zone data is an input like the packages, named in the provenance's spec).
        let since = crate::image::build::source_date_epoch()?
            .unwrap_or_else(crate::operator::bundle::now)
            - 366 * 86_400;
        if let Some(policy) = update.policy(&inputs.spec.path, since)? {
            if let Some(prog) = policy.consent.first() {
                let rel = prog.trim_start_matches('/');
                if !matches!(
                    tree.get(rel).map(|n| &n.kind),
                    Some(Kind::File(_) | Kind::Symlink(_))
                ) {
                    return Err(BuildError::Spec {
                        path: inputs.spec.path.clone(),
                        field: "update.consent".into(),
                        why: format!("{prog} is not a program in the image (install the package that has it, or add it with [[file]])"),
                    }
                    .into());
                }
            }
            tree.insert(
                &ip(&format!("/{}", paths::POLICY)),
                Node::bytes(toml_text(&policy)?, 0o644),
            )?;
        }
    }
    if let Some(fleet) = &spec.fleet {
        let files = fleet.files(&inputs.spec.path, |p| inputs.spec.resolve(p))?;
        if let Some(ca) = files.ca {
            add_host_file(&mut tree, prov, "fleet.server_ca", paths::FLEET_CA, ca)?;
        }
        tree.insert(
            &ip(&format!("/{}", paths::FLEET)),
            Node::bytes(toml_text(&files.config)?, 0o644),
        )?;
    }
    if let Some(trust) = inputs.trust {
        let bytes = std::fs::read(trust).map_err(|_| BuildError::MissingSource {
            path: trust.to_path_buf(),
            field: "agent.trust (or --trust)".into(),
        })?;
        add_host_file(&mut tree, prov, "trust", paths::TRUST, bytes)?;
    }
    let os_release = slate_core::osrelease::OsRelease {
        name: spec.name.clone(),
        version: inputs.version.clone(),
        board: Some(inputs.board.name.clone()),
        slot: None,
        security_epoch: inputs.security_epoch,
    }
    .render();
    tree.insert(&ip("/etc/os-release"), Node::bytes(os_release, 0o644))?;
    Ok(tree)
}

/// Adds a file from the build machine (`source` names the spec field or option it came from)
/// at `dest` (relative to the root, world-readable), and records it in the provenance.
fn add_host_file(
    tree: &mut Tree,
    prov: &mut Provenance,
    source: &str,
    dest: &str,
    bytes: Vec<u8>,
) -> Result<()> {
    prov.files.push(FileUsed {
        source: source.into(),
        dest: format!("/{dest}"),
        sha256: slate_core::Digest32::of(&bytes),
    });
    tree.insert(&ip(&format!("/{dest}")), Node::bytes(bytes, 0o644))?;
    Ok(())
}

/// Where only Slate's own files may be: the device's trust and configuration, PID 1 and the
/// agent. A package, alternative or overlay there could add a trusted key or replace PID 1.
fn reserved_for_slate(rel: &str) -> bool {
    ["etc/slate", "usr/lib/slate", "usr/bin/slated"]
        .iter()
        .any(|r| {
            rel == *r
                || rel
                    .strip_prefix(r)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// Adds the provenance file (the last thing added to the root).
pub fn add_provenance(tree: &mut Tree, text: &str) -> Result<()> {
    tree.insert(
        &ip(&format!("/{}", paths::PROVENANCE)),
        Node::bytes(text.as_bytes().to_vec(), 0o644),
    )?;
    Ok(())
}

/// What the initramfs of a sealed-data image carries besides stage 1.
pub struct SealedInitrd<'a> {
    /// How stage 1 opens `/data`.
    pub config: &'a slate_core::config::SealedData,
    /// The empty file system (sparse) enrolment writes into the encrypted `/data`.
    pub template: &'a [u8],
    /// The PCR-signing key's public half, which `/data` is sealed to.
    pub pcr_public_pem: &'a str,
}

/// What stage 1 is told about the image besides its board.
pub struct InitrdOptions<'a> {
    /// The image's security epoch.
    pub security_epoch: u64,
    /// Test images only: stage 1 stops at the harness's cut points too.
    pub test_hooks: bool,
    /// Signed UKIs.
    pub secure_boot: bool,
    /// Signed PCR policies (`[tpm] pcr_key`): stage 1 extends the boot phases into PCR 11.
    pub measured_boot: bool,
    /// A sealed `/data`.
    pub sealed: Option<SealedInitrd<'a>>,
}

/// Builds the initramfs tree.
pub fn initramfs(
    kernel: &Kernel,
    board: &Board,
    agent: &AgentBinaries,
    opts: InitrdOptions<'_>,
) -> Result<Tree> {
    let InitrdOptions {
        security_epoch,
        test_hooks,
        secure_boot,
        measured_boot,
        sealed,
    } = opts;
    let mut tree = Tree::default();
    for d in ["/dev", "/proc", "/sys", "/sysroot", "/run", "/tmp"] {
        tree.insert(&ip(d), Node::dir(0o755))?;
    }
    tree.insert(
        &ip("/dev/console"),
        Node {
            kind: Kind::CharDev { major: 5, minor: 1 },
            mode: 0o600,
            uid: 0,
            gid: 0,
        },
    )?;
    let init =
        std::fs::read(&agent.init).with_context(|| format!("reading {}", agent.init.display()))?;
    tree.insert(&ip("/init"), Node::bytes(init, 0o755))?;
    let mut order = Vec::new();
    for (path, bytes) in &kernel.modules {
        let p = ImagePath::new(path).map_err(|why| anyhow::anyhow!("module path: {why}"))?;
        tree.insert(&p, Node::bytes(bytes.clone(), 0o644))?;
        order.push(format!("/{}", p.rel()));
    }
    let cfg = InitrdConfig {
        kernel_release: kernel.release.clone(),
        modules: order,
        watchdog: board.watchdog.clone(),
        security_epoch,
        test_hooks,
        secure_boot,
        measured_boot,
        sealed_data: sealed.as_ref().map(|s| s.config.clone()),
    };
    if let Some(s) = &sealed {
        tree.insert(
            &ip(&format!("/{}", paths::DATA_TEMPLATE)),
            Node::bytes(s.template.to_vec(), 0o644),
        )?;
        tree.insert(
            &ip(&format!("/{}", paths::PCR_PUBLIC_KEY)),
            Node::bytes(s.pcr_public_pem.as_bytes().to_vec(), 0o644),
        )?;
    }
    tree.insert(
        &ip(&format!("/{}", paths::INITRD)),
        Node::bytes(toml_text(&cfg)?, 0o644),
    )?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slate_s_own_places_are_reserved() {
        for p in [
            "etc/slate",
            "etc/slate/trust.toml",
            "usr/lib/slate/slate-init",
            "usr/bin/slated",
        ] {
            assert!(reserved_for_slate(p), "{p}");
        }
        for p in ["etc/slater", "usr/bin/slated2", "usr/lib/slatex/a", "etc"] {
            assert!(!reserved_for_slate(p), "{p}");
        }
    }
}
