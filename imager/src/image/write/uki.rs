//! Unified Kernel Images for Secure Boot: systemd's EFI stub with the kernel, the initramfs,
//! the command line (root hash, slot) and an os-release added as PE sections, then signed.
//!
//! With Secure Boot on, the firmware runs only PE files signed by a certificate in its db, and
//! systemd-stub ignores a command line passed from outside, so the root hash the device
//! verifies its root against is as trustworthy as the db key. The image is assembled with
//! `objcopy`, each new section placed above the stub's and the previous one as systemd's
//! `ukify` does (so a 33 MB arm64 kernel fits as well as an 8 MB x86 one), and signed with
//! `sbsign`; `sbverify` checks the result against the certificate before it goes anywhere.

use crate::image::tools;
use anyhow::{bail, Context, Result};
use slate_core::pe::{self, Pe};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The db signing pair an image's UKIs and boot loader are signed with (also the spec's
/// `[secure_boot]` table).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningPair {
    /// Private key, PEM (PKCS#8 or PKCS#1 RSA): `sbsign --key`.
    pub key: PathBuf,
    /// Its X.509 certificate, PEM: the one the machines' db holds.
    pub cert: PathBuf,
}

/// What goes into one slot's UKI besides the stub.
#[derive(Debug, Clone, Copy)]
pub struct UkiParts<'a> {
    /// The kernel (an EFI-stub bzImage or arm64 Image).
    pub kernel: &'a [u8],
    /// The initramfs.
    pub initrd: &'a [u8],
    /// The whole kernel command line (systemd-stub passes it as it is).
    pub cmdline: &'a str,
    /// os-release text: systemd-boot reads the title, `IMAGE_ID` (sort key) and
    /// `IMAGE_VERSION` from it to order and name the entry.
    pub os_release: &'a str,
    /// The PCR-signing key of a measured-boot image (`[tpm] pcr_key`): the UKI then carries
    /// `.pcrpkey` and `.pcrsig` ([`crate::image::write::pcr_policy`]).
    pub pcr: Option<&'a crate::image::write::pcr_policy::PcrSigner>,
    /// A sealed `/data`'s image: its security epoch, which its unseal policy binds.
    pub sealed_epoch: Option<u64>,
}

/// Assembles an unsigned UKI from `stub` (systemd's `linux*.efi.stub`) in `scratch`: the
/// small sections first, then the kernel and the initramfs, each placed above the last.
pub fn assemble(stub: &[u8], parts: &UkiParts<'_>, scratch: &Path) -> Result<Vec<u8>> {
    use slate_core::tpm::Section;
    let layout = Pe::parse(stub).context("reading the EFI stub (the board's uki_stub_path)")?;
    let mut sections: Vec<(&str, Vec<u8>)> = vec![
        (".osrel", parts.os_release.as_bytes().to_vec()),
        (".cmdline", parts.cmdline.as_bytes().to_vec()),
    ];
    if let Some(signer) = parts.pcr {
        let pcrpkey = signer.public_pem().as_bytes();
        let measured = [
            (Section::Linux, parts.kernel),
            (Section::Osrel, parts.os_release.as_bytes()),
            (Section::Cmdline, parts.cmdline.as_bytes()),
            (Section::Initrd, parts.initrd),
            (Section::Pcrpkey, pcrpkey),
        ];
        let signed = signer.sign(&measured, scratch, parts.sealed_epoch)?;
        sections.push((".pcrpkey", pcrpkey.to_vec()));
        sections.push((
            ".pcrsig",
            serde_json::to_vec(&signed).context("the .pcrsig section")?,
        ));
    }
    sections.push((".linux", parts.kernel.to_vec()));
    sections.push((".initrd", parts.initrd.to_vec()));
    let lengths: Vec<usize> = sections.iter().map(|(_, b)| b.len()).collect();
    let addresses = pe::next_addresses(&layout, &lengths);
    std::fs::create_dir_all(scratch)?;
    let file = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
        let p = scratch.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    };
    let stub_path = file("stub.efi", stub)?;
    let out = scratch.join("uki.efi");
    let mut cmd = Command::new(tools::find("objcopy", "binutils")?);
    for ((section, bytes), vma) in sections.iter().zip(addresses) {
        let input = file(section.trim_start_matches('.'), bytes)?;
        cmd.arg("--add-section")
            .arg(format!("{section}={}", input.display()))
            .arg("--change-section-vma")
            .arg(format!("{section}={vma:#x}"));
    }
    cmd.arg(&stub_path).arg(&out);
    tools::run(&mut cmd, "assembling the unified kernel image")?;
    std::fs::read(&out).with_context(|| format!("reading {}", out.display()))
}

/// Signs a PE file (a UKI or the boot loader) for the machines whose db holds `pair.cert`,
/// and checks the signature with `sbverify` before returning it.
pub fn sign(pe: &[u8], pair: &SigningPair, scratch: &Path) -> Result<Vec<u8>> {
    for (p, what) in [(&pair.key, "key"), (&pair.cert, "certificate")] {
        if !p.is_file() {
            bail!(
                "the Secure Boot signing {what} {} does not exist (make one with `slate sb keygen --out DIR`)",
                p.display()
            );
        }
    }
    std::fs::create_dir_all(scratch)?;
    let unsigned = scratch.join("unsigned.efi");
    let signed = scratch.join("signed.efi");
    std::fs::write(&unsigned, pe)?;
    let _ = std::fs::remove_file(&signed);
    tools::run(
        Command::new(tools::find("sbsign", "sbsigntool")?)
            .arg("--key")
            .arg(&pair.key)
            .arg("--cert")
            .arg(&pair.cert)
            .arg("--output")
            .arg(&signed)
            .arg(&unsigned),
        "signing for Secure Boot",
    )?;
    verify(&signed, &pair.cert)?;
    let bytes = std::fs::read(&signed).with_context(|| format!("reading {}", signed.display()))?;
    let cert =
        std::fs::read(&pair.cert).with_context(|| format!("reading {}", pair.cert.display()))?;
    check(&bytes, &cert).context("Slate's own Authenticode check of what sbsign wrote")?;
    Ok(bytes)
}

/// The Authenticode check the firmware makes, made here with Slate's own reader
/// ([`slate_core::authenticode`]): `pe` is signed by the key of `cert_pem` (a PEM certificate,
/// such as the db certificate an image was built with) over its current bytes.
pub fn check(pe: &[u8], cert_pem: &[u8]) -> Result<()> {
    let cert = certificate_der(cert_pem)?;
    let key = slate_core::authenticode::rsa_public_key(&cert)?;
    slate_core::authenticode::verify(pe, key, &ring_rsa)?;
    Ok(())
}

/// What a device checks of a bundle's UKI for `slot` ([`slate_core::uki::check`]): signed by
/// the db certificate `cert_pem` (a Secure Boot image's; None for a measured-boot image
/// without it), with the manifest's command line and version.
pub fn check_bundle_uki(
    pe: &[u8],
    slot: slate_core::layout::Slot,
    manifest: &slate_core::manifest::Manifest,
    cert_pem: Option<&[u8]>,
) -> Result<()> {
    let cert = cert_pem.map(certificate_der).transpose()?;
    let db = match &cert {
        Some(cert) => Some(slate_core::uki::DbKey {
            public_key: slate_core::authenticode::rsa_public_key(cert)?,
            rsa: &ring_rsa,
        }),
        None => None,
    };
    slate_core::uki::check(pe, slot, manifest, db)?;
    Ok(())
}

fn certificate_der(cert_pem: &[u8]) -> Result<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::from_pem_slice(cert_pem)
        .map_err(|e| anyhow::anyhow!("reading the certificate: {e}"))
}

fn ring_rsa(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(message, signature)
        .is_ok()
}

/// `sbverify --cert`: the file carries an Authenticode signature by `cert` over its current
/// bytes, as the firmware checks it.
pub fn verify(pe: &Path, cert: &Path) -> Result<()> {
    tools::run(
        Command::new(tools::find("sbverify", "sbsigntool")?)
            .arg("--cert")
            .arg(cert)
            .arg(pe),
        &format!("checking the signature of {}", pe.display()),
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let pair = SigningPair {
            key: dir.path().join("db.key"),
            cert: dir.path().join("db.crt"),
        };
        let e = sign(b"MZ", &pair, dir.path()).unwrap_err().to_string();
        assert!(e.contains("slate sb keygen"), "{e}");
    }
}
