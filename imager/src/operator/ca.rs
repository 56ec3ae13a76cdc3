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
use slate_core::operator::Roles;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a CA is valid when made: operators rotate it with an image update long before.
pub const CA_DAYS: u32 = 3650;
/// Default validity of an operator certificate: a quarter. Revocation (`slate ca revoke`)
/// reaches only the devices it is pushed or published to; expiry reaches every one.
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
/// `days` and granting `roles`: writes `out.crt.pem` and `out.key.pem` (0600). Returns their
/// paths.
pub fn issue(
    ca: &Path,
    common_name: &str,
    days: u32,
    roles: Roles,
    out: &Path,
) -> Result<(PathBuf, PathBuf)> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let now = SystemTime::now();
    issue_between(
        ca,
        common_name,
        now - Duration::from_secs(3600),
        now + Duration::from_secs(u64::from(days) * 86_400),
        roles,
        out,
    )
}

/// The CA pair `ca` loaded for signing: its certificate (as rcgen re-signs it, with the same
/// name and key) and its key.
fn load_ca(ca: &Path) -> Result<(rcgen::Certificate, KeyPair)> {
    let (ca_crt, ca_key) = pair_paths(ca);
    check_private_mode(&ca_key)?;
    let ca_pem = std::fs::read_to_string(&ca_crt)
        .with_context(|| format!("reading the CA certificate {}", ca_crt.display()))?;
    let ca_key_pem = zeroize::Zeroizing::new(
        std::fs::read_to_string(&ca_key)
            .with_context(|| format!("reading the CA key {}", ca_key.display()))?,
    );
    let key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM private key ({e})", ca_key.display()))?;
    let params = CertificateParams::from_ca_cert_pem(&ca_pem)
        .map_err(|e| anyhow::anyhow!("{}: not a CA certificate ({e})", ca_crt.display()))?;
    let cert = params
        .self_signed(&key)
        .context("the CA key does not fit its certificate")?;
    Ok((cert, key))
}

/// [`issue`] with explicit validity dates (tests make expired certificates with it).
pub fn issue_between(
    ca: &Path,
    common_name: &str,
    not_before: SystemTime,
    not_after: SystemTime,
    roles: Roles,
    out: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let (crt, key_path) = pair_paths(out);
    refuse_existing(&[&crt, &key_path])?;
    let (ca_cert, ca_key) = load_ca(ca)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("making the key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    // The roles, under the CA's signature (slate_core::operator).
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, roles.unit());
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

/// The CA's revocation list beside its pair: `base.crl.pem`.
pub fn crl_path(ca: &Path) -> PathBuf {
    let (crt, _) = pair_paths(ca);
    let s = crt.display().to_string();
    PathBuf::from(format!("{}.crl.pem", s.trim_end_matches(".crt.pem")))
}

/// What [`revoke`] wrote.
#[derive(Debug)]
pub struct Revoked {
    /// The CRL file.
    pub crl: PathBuf,
    /// Certificates it lists in all.
    pub listed: usize,
    /// Its thisUpdate (Unix seconds): a device takes only a CRL at least this new.
    pub this_update: i64,
}

/// Adds the operator certificates `certs` (PEM files) to the CA's CRL (`CA.crl.pem`, made on
/// first use), signed by the CA, with a higher CRL number and a later thisUpdate than the
/// previous one. Devices take it with `slate push --crl` or from the channel
/// (`slate publish --crl`).
pub fn revoke(ca: &Path, certs: &[PathBuf]) -> Result<Revoked> {
    use rcgen::{
        CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams,
        SerialNumber,
    };
    use x509_parser::prelude::FromDer;
    let (ca_cert, ca_key) = load_ca(ca)?;
    let path = crl_path(ca);
    let mut revoked: Vec<RevokedCertParams> = Vec::new();
    let mut number: u64 = 0;
    let mut previous: i64 = i64::MIN;
    if path.exists() {
        let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (_, p) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM CRL ({e})", path.display()))?;
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&p.contents)
                .map_err(|e| anyhow::anyhow!("{}: not a CRL ({e})", path.display()))?;
        number = crl
            .crl_number()
            .and_then(|n| u64::try_from(n.clone()).ok())
            .unwrap_or(0);
        previous = crl.last_update().timestamp();
        for r in crl.iter_revoked_certificates() {
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(r.raw_serial()),
                revocation_time: time::OffsetDateTime::from_unix_timestamp(
                    r.revocation_date.timestamp(),
                )
                .context("a revocation date in the CRL")?,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            });
        }
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let this_update = now.max(previous.saturating_add(1));
    let at = time::OffsetDateTime::from_unix_timestamp(this_update).context("the time")?;
    for c in certs {
        let pem = std::fs::read(c).with_context(|| format!("reading {}", c.display()))?;
        let (_, p) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate ({e})", c.display()))?;
        let cert = p
            .parse_x509()
            .map_err(|e| anyhow::anyhow!("{}: not a certificate ({e})", c.display()))?;
        let ca_name = x509_parser::certificate::X509Certificate::from_der(ca_cert.der())
            .map_err(|e| anyhow::anyhow!("the CA certificate: {e}"))?
            .1
            .subject()
            .as_raw()
            .to_vec();
        if cert.issuer().as_raw() != ca_name.as_slice() {
            bail!(
                "{} was not issued by the CA {} (its issuer is {})",
                c.display(),
                ca.display(),
                cert.issuer()
            );
        }
        let serial = SerialNumber::from_slice(cert.raw_serial());
        if !revoked.iter().any(|r| r.serial_number == serial) {
            revoked.push(RevokedCertParams {
                serial_number: serial,
                revocation_time: at,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            });
        }
    }
    let listed = revoked.len();
    let crl = CertificateRevocationListParams {
        this_update: at,
        next_update: at + time::Duration::days(i64::from(CA_DAYS)),
        crl_number: SerialNumber::from(number + 1),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca_cert, &ca_key)
    .context("signing the CRL")?;
    let pem = crl.pem().context("the CRL as PEM")?;
    let temp = path.with_extension("pem.tmp");
    std::fs::write(&temp, pem).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(Revoked {
        crl: path,
        listed,
        this_update,
    })
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
        let (crt, _) = issue(
            &d.path().join("ca"),
            "ops",
            30,
            Roles::all(),
            &d.path().join("ops"),
        )
        .unwrap();
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
        assert!(issue(
            &d.path().join("ca"),
            "ops",
            30,
            Roles::all(),
            &d.path().join("ops")
        )
        .is_err());
    }

    fn openssl(args: &[&str], files: &[&Path]) -> (bool, String) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .args(files)
            .output()
            .expect("running openssl");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    #[test]
    fn roles_are_in_the_subject_and_revocations_in_a_crl_that_openssl_checks() {
        use slate_core::operator::Role;
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca");
        let (ca_crt, _) = init(&ca, "test CA").unwrap();
        let watcher: Roles = [Role::Status].into_iter().collect();
        let (w_crt, _) = issue(&ca, "watcher", 30, watcher, &d.path().join("w")).unwrap();
        let (a_crt, _) = issue(&ca, "alice", 30, Roles::all(), &d.path().join("a")).unwrap();
        let (ok, subject) = openssl(&["x509", "-noout", "-subject", "-in"], &[&w_crt]);
        assert!(
            ok && subject.trim_end().ends_with("OU = slate-roles:status"),
            "{subject}"
        );

        let r = revoke(&ca, std::slice::from_ref(&w_crt)).unwrap();
        assert_eq!((r.crl.clone(), r.listed), (d.path().join("ca.crl.pem"), 1));
        // The CRL's signature verifies with the CA (openssl's own words for it).
        let (ok, text) = openssl(
            &["crl", "-noout", "-text", "-CAfile"],
            &[&ca_crt, Path::new("-in"), &r.crl],
        );
        assert!(ok && text.contains("verify OK"), "{text}");
        // With the CRL, openssl refuses the revoked certificate and takes the other.
        let chain = d.path().join("chain.pem");
        let mut both = std::fs::read(&ca_crt).unwrap();
        both.extend(std::fs::read(&r.crl).unwrap());
        std::fs::write(&chain, both).unwrap();
        let verify = |crt: &Path| {
            openssl(
                &["verify", "-crl_check", "-purpose", "sslclient", "-CAfile"],
                &[&chain, crt],
            )
        };
        let (ok, text) = verify(&w_crt);
        assert!(!ok && text.contains("certificate revoked"), "{text}");
        let (ok, text) = verify(&a_crt);
        assert!(ok && text.contains(": OK"), "{text}");
        // A second revocation keeps the first, is numbered higher and is newer.
        let r2 = revoke(&ca, &[a_crt.clone(), w_crt]).unwrap();
        assert_eq!(r2.listed, 2);
        assert!(r2.this_update > r.this_update);
        let (ok, text) = openssl(&["crl", "-noout", "-crlnumber", "-in"], &[&r2.crl]);
        assert!(ok && text.trim() == "crlNumber=0x02", "{text}");
        // A certificate of another CA is not revoked by this one.
        let other = d.path().join("other");
        init(&other, "other CA").unwrap();
        let (o_crt, _) = issue(&other, "bob", 30, Roles::all(), &d.path().join("o")).unwrap();
        let e = revoke(&ca, &[o_crt]).unwrap_err();
        assert!(
            format!("{e:#}").contains("was not issued by the CA"),
            "{e:#}"
        );
    }
}
