//! `slate sb`: a fleet's own UEFI Secure Boot keys, and what a firmware takes to enrol them.
//!
//! Three pairs, as UEFI defines them: PK (the platform key: who owns the machine's key
//! database), KEK (key exchange key: who may change db), and db (what may boot: Slate's UKIs
//! and systemd-boot are signed with it). Each is RSA 2048 with a self-signed X.509
//! certificate, what every UEFI firmware accepts. Files in the output folder:
//!
//! ```text
//! PK.key KEK.key db.key   private keys, PKCS#8 PEM, 0600: keep them offline (db.key signs builds)
//! PK.crt KEK.crt db.crt   certificates, PEM (`slate build --secure-boot-cert db.crt`)
//! PK.cer KEK.cer db.cer   the same in DER, what firmware setup screens read from a USB stick
//! owner.guid              the owner GUID the signature lists are tagged with
//! ```
//!
//! `slate sb vars` writes a QEMU variables file with the three enrolled and Secure Boot on,
//! and the `.auth` files `efi-updatevar` or a firmware's setup screen takes, with
//! `virt-fw-vars` (PyPI `virt-firmware`).

use crate::image::tools;
use crate::operator::keys::write_private;
use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    RsaKeySize, PKCS_RSA_SHA256,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The three key roles, in enrolment order.
pub const ROLES: [&str; 3] = ["PK", "KEK", "db"];
/// How long the certificates are valid (firmware mostly ignores it; signing tools do not).
pub const DAYS: u64 = 3650;
/// The OVMF variables template `slate sb vars` starts from (Debian's `ovmf`: empty, setup
/// mode, so any PK may be enrolled).
pub const OVMF_VARS_TEMPLATE: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Makes PK, KEK and db in `out` (created; existing keys are never overwritten). `name` goes
/// into each certificate's common name. Returns the owner GUID.
pub fn keygen(out: &Path, name: &str) -> Result<String> {
    for role in ROLES {
        for ext in ["key", "crt", "cer"] {
            let p = out.join(format!("{role}.{ext}"));
            if p.exists() {
                bail!(
                    "{} exists; Secure Boot keys are never overwritten (choose another --out)",
                    p.display()
                );
            }
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for role in ROLES {
        let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)
            .with_context(|| format!("generating the {role} key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Slate");
        dn.push(DnType::CommonName, format!("{name} {role}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(DAYS * 86_400)).into();
        let cert = params
            .self_signed(&key)
            .with_context(|| format!("signing the {role} certificate"))?;
        write_private(&out.join(format!("{role}.key")), &key.serialize_pem())?;
        std::fs::write(out.join(format!("{role}.crt")), cert.pem())?;
        std::fs::write(out.join(format!("{role}.cer")), cert.der())?;
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| anyhow::anyhow!("reading random bytes for the owner GUID: {e}"))?;
    let guid = slate_core::guid::Guid::derive("slate secure boot owner", &seed).to_string();
    std::fs::write(out.join("owner.guid"), format!("{guid}\n"))?;
    Ok(guid)
}

/// The owner GUID of a keys folder.
pub fn owner_guid(keys: &Path) -> Result<String> {
    let p = keys.join("owner.guid");
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("reading {} (made by `slate sb keygen`)", p.display()))?;
    let guid = text.trim();
    guid.parse::<slate_core::guid::Guid>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    Ok(guid.to_string())
}

/// The certificate of `role` in a keys folder, checked to exist.
pub fn cert(keys: &Path, role: &str) -> Result<PathBuf> {
    let p = keys.join(format!("{role}.crt"));
    if !p.is_file() {
        bail!(
            "{} does not exist (make the keys with `slate sb keygen --out {}`)",
            p.display(),
            keys.display()
        );
    }
    Ok(p)
}

/// The command that runs virt-firmware's `virt-fw-vars`: the console script when it is on
/// `PATH`, else the same entry point through `python3`. pip puts the script beside the Python it
/// installed into, which is not always on `PATH` (a pyenv Python has no shim for a new script
/// until `pyenv rehash`), while `python3` that can import the package always finds it.
pub fn virt_fw_vars() -> Command {
    match tools::find("virt-fw-vars", "virt-firmware (PyPI)") {
        Ok(script) => Command::new(script),
        Err(_) => {
            let mut cmd = Command::new("python3");
            cmd.args([
                "-c",
                "import sys; from virt.firmware.vars import main; sys.exit(main())",
            ]);
            cmd
        }
    }
}

/// Writes `out`, a copy of `template` with PK, KEK and db enrolled and Secure Boot on; with
/// `auth`, also `PK.auth`, `KEK.auth` and `db.auth` there (signed updates for a real
/// firmware's key database, in enrolment order).
pub fn vars(keys: &Path, template: &Path, out: &Path, auth: Option<&Path>) -> Result<()> {
    let guid = owner_guid(keys)?;
    if !template.is_file() {
        bail!(
            "the variables template {} does not exist (install the Debian package ovmf, or pass --template)",
            template.display()
        );
    }
    let mut cmd = virt_fw_vars();
    cmd.arg("--input").arg(template).arg("--output").arg(out);
    for (flag, role) in [("--set-pk", "PK"), ("--add-kek", "KEK"), ("--add-db", "db")] {
        cmd.arg(flag).arg(&guid).arg(cert(keys, role)?);
    }
    cmd.arg("--sb");
    if let Some(dir) = auth {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        cmd.arg("--output-auth").arg(dir);
    }
    tools::run(&mut cmd, "enrolling the keys (virt-fw-vars)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_makes_three_pairs_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let guid = keygen(dir.path(), "Test").unwrap();
        assert_eq!(owner_guid(dir.path()).unwrap(), guid);
        for role in ROLES {
            let pem = std::fs::read_to_string(dir.path().join(format!("{role}.crt"))).unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
            let key = std::fs::read_to_string(dir.path().join(format!("{role}.key"))).unwrap();
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        }
        let again = keygen(dir.path(), "Test").unwrap_err().to_string();
        assert!(again.contains("never overwritten"), "{again}");
    }
}
