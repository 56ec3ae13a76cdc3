//! The operator's side of the agent's mutual TLS: who we are (a client certificate from the
//! operator CA) and which device we talk to (its certificate's fingerprint, pinned on first
//! contact in a known-devices file, as ssh pins host keys in known_hosts).
//!
//! A device's certificate is self-signed and made on the device, so no CA vouches for it: the
//! pin is the check. The handshake's signature is still verified against the pinned
//! certificate's key, so a pin cannot be satisfied by replaying the certificate alone.

use crate::operator::keys::check_private_mode;
use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use slate_core::Fingerprint;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An operator's client certificate and key (`NAME.crt.pem`, `NAME.key.pem`).
pub struct Identity {
    /// The certificate chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads the pair named `base` (see [`crate::operator::ca::pair_paths`]); the key file must be
    /// private (0600).
    pub fn load(base: &Path) -> Result<Identity> {
        let (crt, key) = crate::operator::ca::pair_paths(base);
        check_private_mode(&key)?;
        let certs = CertificateDer::pem_file_iter(&crt)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("{}: {e}", crt.display()))?;
        if certs.is_empty() {
            bail!("{}: no certificate in it", crt.display());
        }
        let key = PrivateKeyDer::from_pem_file(&key)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM private key ({e})", key.display()))?;
        Ok(Identity { certs, key })
    }
}

/// The crypto provider both sides use.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Accepts the device's certificate only if it has the expected fingerprint (or, on first
/// contact, any, remembering which), and checks the handshake signature with its key.
#[derive(Debug)]
pub struct PinVerifier {
    expect: Option<Fingerprint>,
    seen: Mutex<Option<Fingerprint>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinVerifier {
    /// A verifier expecting `expect` (None: trust on first use).
    pub fn new(expect: Option<Fingerprint>) -> Arc<PinVerifier> {
        Arc::new(PinVerifier {
            expect,
            seen: Mutex::new(None),
            algorithms: provider().signature_verification_algorithms,
        })
    }

    /// The fingerprint the device presented last.
    pub fn seen(&self) -> Option<Fingerprint> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pinned fingerprint, if any.
    pub fn expected(&self) -> Option<Fingerprint> {
        self.expect
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Fingerprint::of_der(end_entity);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(got);
        match self.expect {
            Some(want) if want != got => Err(rustls::Error::General(format!(
                "the device presents certificate {got}, not the pinned {want}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A rustls client configuration presenting `identity` (if any) and pinning with `verifier`.
pub fn client_config(
    identity: Option<&Identity>,
    verifier: Arc<PinVerifier>,
) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
            .context("using the operator certificate")?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A client presenting the operator pair `identity` (None: no certificate) that accepts any
/// device certificate: for harnesses that talk to many throwaway devices, where pinning is not
/// what is being tested.
pub fn unpinned_client(identity: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let id = identity.map(Identity::load).transpose()?;
    client_config(id.as_ref(), PinVerifier::new(None))
}

/// Devices seen before: `host:port sha256:<hex>` per line, `#` comments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KnownDevices {
    /// By `host:port`.
    pub devices: BTreeMap<String, Fingerprint>,
}

impl KnownDevices {
    /// The default file: `$SLATE_KNOWN_DEVICES`, else `$XDG_CONFIG_HOME/slate/known_devices`,
    /// else `~/.config/slate/known_devices`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("SLATE_KNOWN_DEVICES") {
            return Some(PathBuf::from(p));
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(config.join("slate/known_devices"))
    }

    /// Parses the file's text; a malformed line is an error naming it.
    pub fn parse(text: &str, path: &Path) -> Result<KnownDevices> {
        let mut devices = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (addr, fp) = line.split_once(char::is_whitespace).with_context(|| {
                format!(
                    "{}:{}: expected `host:port sha256:…`",
                    path.display(),
                    i + 1
                )
            })?;
            let fp: Fingerprint = fp
                .trim()
                .parse()
                .with_context(|| format!("{}:{}", path.display(), i + 1))?;
            devices.insert(addr.to_string(), fp);
        }
        Ok(KnownDevices { devices })
    }

    /// Reads `path` (missing: none known).
    pub fn load(path: &Path) -> Result<KnownDevices> {
        match std::fs::read_to_string(path) {
            Ok(t) => KnownDevices::parse(&t, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KnownDevices::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The text written.
    pub fn render(&self) -> String {
        let mut s = String::from("# Devices this operator has talked to (slate push/status): host:port and certificate fingerprint.\n");
        for (a, f) in &self.devices {
            s.push_str(&format!("{a} {f}\n"));
        }
        s
    }

    /// Writes `path` (temporary file and rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.render())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_devices_round_trip_and_bad_lines_are_named() {
        let f = Fingerprint::of_der(b"device");
        let k = KnownDevices {
            devices: BTreeMap::from([("10.0.0.7:8080".to_string(), f)]),
        };
        let p = Path::new("known");
        assert_eq!(KnownDevices::parse(&k.render(), p).unwrap(), k);
        let err = KnownDevices::parse("# c\n\nhost:1 sha256:xyz\n", p).unwrap_err();
        assert!(format!("{err:#}").contains("known:3"), "{err:#}");
    }
}
