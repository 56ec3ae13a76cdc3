//! `slate ca`: the operator CA whose public certificate an image trusts, and the client
//! certificates it issues to operators (people, CI jobs, fleet services).
//!
//! Files come in pairs, `NAME.crt.pem` (public, goes anywhere, into images too) and
//! `NAME.key.pem` (private, 0600, never into an image). Keys are ECDSA P-256, which every TLS
//! stack and `openssl` read.

use crate::operator::keys::{check_private_mode, write_private};
use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a CA is valid when made: operators rotate it with an image update long before.
pub const CA_DAYS: u32 = 3650;
/// Default validity of an operator certificate: devices cannot revoke one yet, so a lost laptop's
/// certificate stays good until it expires; a quarter rather than a year bounds that.
pub const OPERATOR_DAYS: u32 = 90;

/// The two files of a pair named `base`: (`base.crt.pem`, `base.key.pem`).
pub fn pair_paths(base: &Path) -> (PathBuf, PathBuf) {
    let s = base.display().to_string();
    let s = s
        .strip_suffix(".crt.pem")
        .or_else(|| s.strip_suffix(".key.pem"))
        .unwrap_or(&s)
        .to_string();
    (
        PathBuf::from(format!("{s}.crt.pem")),
        PathBuf::from(format!("{s}.key.pem")),
    )
}

fn refuse_existing(paths: &[&Path]) -> Result<()> {
    for p in paths {
        if p.exists() {
            bail!(
                "{} exists; certificates and keys are never overwritten (choose another --out)",
                p.display()
            );
        }
    }
    Ok(())
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = SystemTime::now();
    // An hour of slack for clocks that run a little behind.
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(u64::from(days) * 86_400)).into();
}

fn name(common: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Slate");
    dn.push(DnType::CommonName, common);
    dn
}

/// Makes a CA: `base.crt.pem` and `base.key.pem` (0600). Returns their paths.
pub fn init(base: &Path, common_name: &str) -> Result<(PathBuf, PathBuf)> {
    let (crt, key_path) = pair_paths(base);
    refuse_existing(&[&crt, &key_path])?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("making the CA key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key).context("signing the CA")?;
    write_private(&key_path, &zeroize::Zeroizing::new(key.serialize_pem()))?;
    std::fs::write(&crt, cert.pem()).with_context(|| format!("writing {}", crt.display()))?;
    Ok((crt, key_path))
}

/// Issues an operator (client) certificate for `common_name` from the CA pair `ca`, valid for
/// `days`: writes `out.crt.pem` and `out.key.pem` (0600). Returns their paths.
pub fn issue(ca: &Path, common_name: &str, days: u32, out: &Path) -> Result<(PathBuf, PathBuf)> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let now = SystemTime::now();
    issue_between(
        ca,
        common_name,
        now - Duration::from_secs(3600),
        now + Duration::from_secs(u64::from(days) * 86_400),
        out,
    )
}

/// [`issue`] with explicit validity dates (tests make expired certificates with it).
pub fn issue_between(
    ca: &Path,
    common_name: &str,
    not_before: SystemTime,
    not_after: SystemTime,
    out: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let (ca_crt, ca_key) = pair_paths(ca);
    let (crt, key_path) = pair_paths(out);
    refuse_existing(&[&crt, &key_path])?;
    check_private_mode(&ca_key)?;
    let ca_pem = std::fs::read_to_string(&ca_crt)
        .with_context(|| format!("reading the CA certificate {}", ca_crt.display()))?;
    let ca_key_pem = zeroize::Zeroizing::new(
        std::fs::read_to_string(&ca_key)
            .with_context(|| format!("reading the CA key {}", ca_key.display()))?,
    );
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM private key ({e})", ca_key.display()))?;
    let ca_params = CertificateParams::from_ca_cert_pem(&ca_pem)
        .map_err(|e| anyhow::anyhow!("{}: not a CA certificate ({e})", ca_crt.display()))?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("the CA key does not fit its certificate")?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("making the key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .context("signing the operator certificate")?;
    write_private(&key_path, &zeroize::Zeroizing::new(key.serialize_pem()))?;
    std::fs::write(&crt, cert.pem()).with_context(|| format!("writing {}", crt.display()))?;
    Ok((crt, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_named_from_a_base() {
        assert_eq!(
            pair_paths(Path::new("keys/ops")),
            (
                PathBuf::from("keys/ops.crt.pem"),
                PathBuf::from("keys/ops.key.pem")
            )
        );
        assert_eq!(
            pair_paths(Path::new("ops.crt.pem")),
            pair_paths(Path::new("ops"))
        );
    }

    #[test]
    fn a_ca_issues_operator_certificates_that_openssl_verifies() {
        let d = tempfile::tempdir().unwrap();
        let (ca_crt, ca_key) = init(&d.path().join("ca"), "test CA").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&ca_key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (crt, _) = issue(&d.path().join("ca"), "ops", 30, &d.path().join("ops")).unwrap();
        // The standard tool is the judge: the chain verifies for client authentication.
        let out = std::process::Command::new("openssl")
            .args(["verify", "-purpose", "sslclient", "-CAfile"])
            .arg(&ca_crt)
            .arg(&crt)
            .output()
            .expect("running openssl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(": OK"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(issue(&d.path().join("ca"), "ops", 30, &d.path().join("ops")).is_err());
    }
}
