//! The development keys `cargo xtask` makes once in `.cache/keys` (never committed): the
//! signing key and trust file, the operator CA and certificate, the Secure Boot keys, and how
//! the harness reaches a VM with them.

use crate::workspace::root;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The development signing key and the trust file the demo image ships, made once in
/// `.cache/keys` (never committed). Bundles for the demo image are signed with `dev.pem`.
pub fn dev_trust() -> Result<PathBuf> {
    let dir = root().join(".cache/keys");
    let trust = dir.join("trust.toml");
    if !trust.exists() {
        std::fs::create_dir_all(&dir)?;
        let (_, public, id) = slate_imager::operator::keys::keygen(&dir.join("dev"))?;
        let t = slate_imager::operator::keys::trust(&[public], 1)?;
        std::fs::write(&trust, toml::to_string(&t)?)?;
        eprintln!(
            "made development key {id} in {} (sign demo bundles with dev.pem)",
            dir.display()
        );
    }
    Ok(trust)
}

/// The development operator CA the demo image trusts (`.cache/keys/operators-ca.crt.pem`) and
/// the operator certificate `cargo xtask` and the README's commands use
/// (`.cache/keys/operator.{crt,key}.pem`), made once and never committed. Returns the CA
/// certificate.
pub fn dev_operators() -> Result<PathBuf> {
    let dir = root().join(".cache/keys");
    std::fs::create_dir_all(&dir)?;
    let ca = dir.join("operators-ca");
    let (ca_crt, _) = slate_imager::operator::ca::pair_paths(&ca);
    if !ca_crt.exists() {
        slate_imager::operator::ca::init(&ca, "Slate development operator CA")?;
        eprintln!("made the development operator CA in {}", dir.display());
    }
    let op = dir.join("operator");
    if !slate_imager::operator::ca::pair_paths(&op).0.exists() {
        slate_imager::operator::ca::issue(
            &ca,
            "developer",
            3650,
            slate_core::operator::Roles::all(),
            &op,
        )?;
    }
    Ok(ca_crt)
}

/// The development Secure Boot keys (`.cache/keys/secure-boot/`: PK, KEK, db) and the OVMF
/// variables file with them enrolled (`OVMF_VARS.fd` there), made once and never committed.
/// Returns the folder.
pub fn dev_secure_boot() -> Result<PathBuf> {
    let dir = root().join(".cache/keys/secure-boot");
    if !dir.join("owner.guid").exists() {
        let guid = slate_imager::operator::secure_boot::keygen(&dir, "Slate development")?;
        eprintln!(
            "made development Secure Boot keys in {} (owner {guid})",
            dir.display()
        );
    }
    let vars = dir.join("OVMF_VARS.fd");
    if !vars.exists() {
        slate_imager::operator::secure_boot::vars(
            &dir,
            Path::new(slate_imager::operator::secure_boot::OVMF_VARS_TEMPLATE),
            &vars,
            None,
        )?;
    }
    Ok(dir)
}

/// The development operator pair (base name) made by [`dev_operators`].
pub fn dev_operator() -> Result<PathBuf> {
    dev_operators()?;
    Ok(root().join(".cache/keys/operator"))
}

/// A VM configuration that talks to the agent as the development operator.
pub fn dev_vm(disk: &Path, work: &Path) -> Result<slate_qemu::VmConfig> {
    let mut cfg = slate_qemu::VmConfig::new(disk, work);
    cfg.tls = Some(slate_imager::operator::tls::unpinned_client(Some(
        &dev_operator()?,
    ))?);
    Ok(cfg)
}

/// How `cargo xtask` pushes to its VMs: the development operator, pins kept in `work`.
pub fn dev_access(work: &Path) -> Result<slate_imager::operator::push::Access> {
    Ok(slate_imager::operator::push::Access {
        identity: Some(dev_operator()?),
        fingerprint: None,
        known_devices: Some(work.join("known_devices")),
    })
}
