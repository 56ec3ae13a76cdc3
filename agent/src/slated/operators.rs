//! Who the agent lets in as an operator: a client certificate the image's operator CA issued,
//! that the newest CRL of that CA the device holds does not revoke, judged at a time no
//! earlier than the certificate's own start (the clock floor's proof; see [`crate::clock`]).
//!
//! rustls and webpki do the certificate path and the revocation check; this module keeps the
//! CRL (refusing one that the CA did not sign, or that is older than the one kept: going back
//! to an older list would un-revoke), swaps the verifier when a newer CRL comes, and reads the
//! operator's roles ([`slate_core::operator`]) once the handshake has authenticated it.

use anyhow::{bail, Context, Result};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use slate_core::operator::Roles;
use slate_core::x509;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The newest operator CRL this device holds (DER).
pub const CRL_FILE: &str = "/data/slate/operators.crl";
/// Largest CRL taken.
pub const MAX_CRL: usize = 1 << 20;

/// What is done with a proof of the time (an authenticated certificate's start, later than
/// the clock): the agent raises the clock floor with it ([`crate::clock::observe`]).
pub type TimeProof = Arc<dyn Fn(i64) + Send + Sync>;

/// The operator CA, its kept CRL, and the verifier built from both.
pub struct OperatorCa {
    ca: CertificateDer<'static>,
    roots: Arc<RootCertStore>,
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
    crl_path: PathBuf,
    /// The kept CRL's thisUpdate and bytes.
    kept: Mutex<Option<(i64, Vec<u8>)>>,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    time_proof: TimeProof,
}

impl std::fmt::Debug for OperatorCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorCa")
            .field("crl_path", &self.crl_path)
            .finish_non_exhaustive()
    }
}

/// Why a CRL was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CrlRefused {
    /// Not a CRL, or not one webpki reads.
    #[error("not a CRL: {0}")]
    Malformed(String),
    /// Another issuer's.
    #[error("this CRL was issued by another CA than the device's operator CA")]
    OtherIssuer,
    /// The signature does not verify with the CA's key.
    #[error("this CRL's signature does not verify with the operator CA's key")]
    BadSignature,
    /// Older than the kept one.
    #[error("this CRL (thisUpdate {offered}) is older than the one the device holds (thisUpdate {kept}): an older list could un-revoke operators")]
    Older {
        /// The offered CRL's thisUpdate.
        offered: i64,
        /// The kept CRL's.
        kept: i64,
    },
    /// It could not be kept.
    #[error("keeping the CRL: {0:#}")]
    Keeping(anyhow::Error),
}

impl OperatorCa {
    /// Loads the operator CA from `ca_path` (PEM, one certificate: the imager checks that) and
    /// the CRL kept in `crl_path`, if any (a kept CRL that no longer verifies is set aside
    /// with a warning, never the end of the API).
    pub fn load(ca_path: &str, crl_path: &Path) -> Result<Arc<OperatorCa>> {
        let raise: TimeProof = Arc::new(|t| {
            crate::clock::observe(t, "an operator certificate's start");
        });
        OperatorCa::load_with(ca_path, crl_path, raise)
    }

    /// [`OperatorCa::load`], with what to do with a proof of the time (tests record it
    /// instead of setting the machine's clock).
    pub fn load_with(
        ca_path: &str,
        crl_path: &Path,
        time_proof: TimeProof,
    ) -> Result<Arc<OperatorCa>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = CertificateDer::pem_file_iter(ca_path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("operator CA {ca_path}: {e}"))?;
        let Some(ca) = certs.first().cloned() else {
            bail!("operator CA {ca_path}: no certificate in it");
        };
        let mut roots = RootCertStore::empty();
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("operator CA {ca_path}: not a usable CA certificate"))?;
        }
        let roots = Arc::new(roots);
        let hints = roots.subjects();
        let first = build(&roots, &provider, None)?;
        let me = Arc::new(OperatorCa {
            ca,
            roots,
            hints,
            provider,
            crl_path: crl_path.to_path_buf(),
            kept: Mutex::new(None),
            current: RwLock::new(first),
            time_proof,
        });
        if let Ok(bytes) = std::fs::read(crl_path) {
            if let Err(e) = me.take_crl(&bytes, false) {
                crate::marker::warn(format!(
                    "the kept operator CRL {} is set aside: {e}",
                    crl_path.display()
                ));
            }
        }
        Ok(me)
    }

    /// The TLS verifier to give rustls.
    pub fn verifier(self: &Arc<Self>) -> Arc<dyn ClientCertVerifier> {
        Arc::new(Verifier(self.clone()))
    }

    /// Takes a CRL (DER or PEM) offered by an operator or the channel: it must be the CA's,
    /// signed by its key, and no older than the kept one. From the next handshake on, the
    /// certificates it lists are refused. Returns its thisUpdate.
    pub fn offer_crl(&self, body: &[u8]) -> Result<i64, CrlRefused> {
        self.take_crl(body, true)
    }

    fn take_crl(&self, body: &[u8], keep: bool) -> Result<i64, CrlRefused> {
        if body.len() > MAX_CRL {
            return Err(CrlRefused::Malformed("larger than 1 MiB".into()));
        }
        let der: Vec<u8> = if body.starts_with(b"-----BEGIN") {
            CertificateRevocationListDer::from_pem_slice(body)
                .map_err(|e| CrlRefused::Malformed(format!("PEM: {e}")))?
                .as_ref()
                .to_vec()
        } else {
            body.to_vec()
        };
        let crl = x509::crl(&der).map_err(|e| CrlRefused::Malformed(e.to_string()))?;
        let ca = x509::certificate(&self.ca).map_err(|e| CrlRefused::Malformed(e.to_string()))?;
        if crl.issuer != ca.subject {
            return Err(CrlRefused::OtherIssuer);
        }
        let signed_by_ca = self
            .provider
            .signature_verification_algorithms
            .all
            .iter()
            .filter(|a| {
                a.public_key_alg_id().as_ref() == ca.key_algorithm
                    && a.signature_alg_id().as_ref() == crl.signed.algorithm
            })
            .any(|a| {
                a.verify_signature(ca.public_key, crl.signed.tbs, crl.signed.signature)
                    .is_ok()
            });
        if !signed_by_ca {
            return Err(CrlRefused::BadSignature);
        }
        let mut kept = crate::lock(&self.kept);
        if let Some((at, bytes)) = kept.as_ref() {
            if crl.this_update < *at || (crl.this_update == *at && *bytes != der) {
                return Err(CrlRefused::Older {
                    offered: crl.this_update,
                    kept: *at,
                });
            }
        }
        let verifier = build(&self.roots, &self.provider, Some(&der))
            .map_err(|e| CrlRefused::Malformed(format!("{e:#}")))?;
        if keep {
            crate::durable::replace(&self.crl_path, &der).map_err(CrlRefused::Keeping)?;
        }
        let this_update = crl.this_update;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = verifier;
        *kept = Some((this_update, der));
        Ok(this_update)
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// webpki's verifier for the CA, with the CRL when there is one: only the operator's own
/// certificate is checked against it (the CA is the root), and its nextUpdate is not enforced
/// (a device offline for months keeps the last list it was given rather than locking every
/// operator out).
fn build(
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    crl: Option<&[u8]>,
) -> Result<Arc<dyn ClientCertVerifier>> {
    let mut b = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .allow_unauthenticated();
    if let Some(der) = crl {
        b = b
            .with_crls([CertificateRevocationListDer::from(der.to_vec())])
            .only_check_end_entity_revocation();
    }
    b.build().context("the operator CA's verifier")
}

/// The roles an authenticated operator's certificate grants (none when its subject cannot be
/// read or names a role this agent does not know).
pub fn roles_of(cert: &CertificateDer<'_>) -> Roles {
    match x509::certificate(cert) {
        Ok(c) => Roles::of_subject(&c.subject_attributes).unwrap_or_else(|e| {
            tracing::warn!("an operator certificate's roles are not read: {e}; it has none");
            Roles::default()
        }),
        Err(e) => {
            tracing::warn!("an operator certificate is not read: {e}; it has no roles");
            Roles::default()
        }
    }
}

#[derive(Debug)]
struct Verifier(Arc<OperatorCa>);

impl ClientCertVerifier for Verifier {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.0.hints
    }

    /// Judged at the later of the clock and the certificate's start: the CA's signature on
    /// that start is proof the time is at least that (a device whose RTC says 2020 still takes
    /// an operator issued today), and the clock is raised to it. Expiry is judged at that time
    /// too, so an expired certificate stays expired however far behind the clock is.
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let start = x509::validity(end_entity)
            .ok()
            .and_then(|v| u64::try_from(v.not_before).ok())
            .unwrap_or(0);
        let at =
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.as_secs().max(start)));
        let verified = self
            .0
            .current()
            .verify_client_cert(end_entity, intermediates, at)?;
        if start > now.as_secs() {
            (self.0.time_proof)(i64::try_from(start).unwrap_or(i64::MAX));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().supported_verify_schemes()
    }
}
