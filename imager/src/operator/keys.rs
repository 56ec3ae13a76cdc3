//! Signing keys: `slate keygen`, `slate trust`, and loading PKCS#8 PEM files (what `openssl
//! genpkey -algorithm ed25519` writes, and what Slate writes for openssl to read).

use anyhow::{bail, Context, Result};
use ed25519_dalek::pkcs8::{
    spki::der::pem::LineEnding, DecodePrivateKey, DecodePublicKey, EncodePrivateKey,
    EncodePublicKey,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use slate_core::manifest::{key_id, Trust, TrustedKey};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `NAME.pem` (private, mode 0600) and `NAME.pub.pem`; refuses to overwrite.
pub fn keygen(name: &Path) -> Result<(PathBuf, PathBuf, String)> {
    let private = name.with_extension("pem");
    let public = PathBuf::from(format!("{}.pub.pem", name.display()));
    for p in [&private, &public] {
        if p.exists() {
            bail!(
                "{} exists; keys are never overwritten (choose another --out)",
                p.display()
            );
        }
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(seed.as_mut())
        .map_err(|e| anyhow::anyhow!("reading the system random source: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    // PKCS#8 v1 (the private key alone), as `openssl genpkey` writes it: OpenSSL 3.0 does not
    // read the v2 form with the public key embedded.
    let pem = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .context("encoding the private key")?;
    write_private(&private, &pem)?;
    let pub_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the public key")?;
    std::fs::write(&public, pub_pem).with_context(|| format!("writing {}", public.display()))?;
    Ok((private, public, key_id(&key.verifying_key())))
}

/// Writes a new private key file: created, never replaced, mode 0600 from the start (no
/// moment where others could read it), synced.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Refuses a private key file that others may read, as ssh does: a signing or identity key
/// that another user can copy is no longer a secret.
pub fn check_private_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading key {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{}: private key is readable by group or others (mode {:04o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

/// [`load_private`] of each file, for roles that several keys sign.
pub fn load_all(paths: &[std::path::PathBuf]) -> Result<Vec<SigningKey>> {
    paths.iter().map(|p| load_private(p)).collect()
}

/// Reads a PKCS#8 PEM private key (its file must be private, [`check_private_mode`]); the
/// text read is wiped from memory afterwards.
pub fn load_private(path: &Path) -> Result<SigningKey> {
    check_private_mode(path)?;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?,
    );
    SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a PKCS#8 PEM ed25519 private key ({e})",
            path.display()
        )
    })
}

/// Reads a public key (SubjectPublicKeyInfo PEM); a private key file also yields its public key.
pub fn load_public(path: &Path) -> Result<VerifyingKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    if let Ok(k) = VerifyingKey::from_public_key_pem(&text) {
        return Ok(k);
    }
    if let Ok(k) = SigningKey::from_pkcs8_pem(&text) {
        return Ok(k.verifying_key());
    }
    bail!("{}: not a PEM ed25519 public key", path.display())
}

/// Builds a trust file from public keys.
pub fn trust(keys: &[PathBuf], threshold: usize) -> Result<Trust> {
    if keys.is_empty() {
        bail!("give at least one --key");
    }
    let mut out = Vec::new();
    for p in keys {
        let k = load_public(p)?;
        if k.is_weak() {
            bail!(
                "{}: a weak (small-order) ed25519 key, which accepts forged signatures; make a new one with `slate keygen`",
                p.display()
            );
        }
        let id = key_id(&k);
        if out.iter().any(|t: &TrustedKey| t.id == id) {
            bail!("{} is given twice", p.display());
        }
        out.push(TrustedKey {
            id,
            public_key: hex::encode(k.as_bytes()),
        });
    }
    if threshold == 0 || threshold > out.len() {
        bail!(
            "--threshold {threshold} must be between 1 and the number of keys ({})",
            out.len()
        );
    }
    Ok(Trust {
        threshold,
        keys: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_key_others_can_read_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (private, _, _) = keygen(&d.path().join("k")).unwrap();
        load_private(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_private(&private).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_weak_public_key_is_not_trusted() {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let d = tempfile::tempdir().unwrap();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        let p = d.path().join("weak.pub.pem");
        std::fs::write(&p, weak.to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
        let err = trust(&[p], 1).unwrap_err().to_string();
        assert!(err.contains("weak"), "{err}");
    }
}
