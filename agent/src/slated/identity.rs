//! The device's TLS identity: a key pair and self-signed certificate made on first boot and
//! kept on `/data/slate/identity/` (0600), never in an image or a bundle, so no two devices
//! share a secret. Operators pin its fingerprint (`slate: identity fingerprint=sha256:…`).

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use slate_core::Fingerprint;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the identity lives.
pub const DIR: &str = "/data/slate/identity";
const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";

/// The device's certificate and key.
pub struct Identity {
    /// Its certificate (self-signed).
    pub cert: CertificateDer<'static>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// sha256 of the certificate.
    pub fingerprint: Fingerprint,
}

impl Identity {
    fn read(dir: &Path) -> Result<Identity> {
        let cert = CertificateDer::from_pem_file(dir.join(CERT))
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(CERT).display()))?;
        let key = PrivateKeyDer::from_pem_file(dir.join(KEY))
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(KEY).display()))?;
        let fingerprint = Fingerprint::of_der(&cert);
        Ok(Identity {
            cert,
            key,
            fingerprint,
        })
    }

    /// Loads the identity in `dir`, or makes one when there is none. A damaged one is moved
    /// aside (`<dir>.damaged`) and replaced with a loud warning: operators then see a changed
    /// fingerprint, which their tools refuse until they accept it.
    pub fn load_or_make(dir: &Path, hostname: &str) -> Result<(Identity, bool)> {
        if dir.join(CERT).exists() || dir.join(KEY).exists() {
            match Identity::read(dir) {
                Ok(id) => return Ok((id, false)),
                Err(e) => {
                    let aside = PathBuf::from(format!("{}.damaged", dir.display()));
                    let _ = std::fs::remove_dir_all(&aside);
                    crate::marker::warn(format!(
                        "the device identity in {} is unreadable ({e:#}); moved to {} and making a new one (its fingerprint changes)",
                        dir.display(),
                        aside.display()
                    ));
                    std::fs::rename(dir, &aside)
                        .with_context(|| format!("moving {} aside", dir.display()))?;
                }
            }
        }
        make(dir, hostname)?;
        Ok((Identity::read(dir)?, true))
    }
}

fn make(dir: &Path, hostname: &str) -> Result<()> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("making the device key")?;
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()])
        .context("certificate parameters")?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "Slate device");
    dn.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name = dn;
    // The device's clock may be anything at first boot, and the pin (not a date) is what
    // operators check: valid from 1970 to the end of X.509 time.
    params.not_before = rcgen::date_time_ymd(1970, 1, 1);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    // Both ways: the agent's API serves with it, and a fleet server (or the TLS proxy in
    // front of it) knows the device by it as a client certificate. Identities made before
    // carry serverAuth only; proxies that check the purpose refuse them as clients.
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .self_signed(&key)
        .context("signing the device certificate")?;
    let tmp = PathBuf::from(format!("{}.new", dir.display()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
    for (name, text) in [(KEY, key.serialize_pem()), (CERT, cert.pem())] {
        let text = zeroize::Zeroizing::new(text);
        let p = tmp.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .with_context(|| format!("creating {}", p.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    crate::durable::sync_dir(&tmp)?;
    std::fs::rename(&tmp, dir).with_context(|| format!("creating {}", dir.display()))?;
    if let Some(parent) = dir.parent() {
        crate::durable::sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_kept_private_and_replaced_when_damaged() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("identity");
        let (a, made) = Identity::load_or_make(&dir, "slate").unwrap();
        assert!(made);
        let mode = std::fs::metadata(dir.join(KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, made) = Identity::load_or_make(&dir, "slate").unwrap();
        assert!(!made);
        assert_eq!(a.fingerprint, b.fingerprint);
        std::fs::write(dir.join(KEY), "garbage").unwrap();
        let (c, made) = Identity::load_or_make(&dir, "slate").unwrap();
        assert!(made);
        assert_ne!(c.fingerprint, a.fingerprint);
        assert!(d.path().join("identity.damaged").is_dir());
    }
}
