//! The operator CA file an image trusts (`[agent] operators`, `slate build --operators`):
//! exactly one self-signed CA certificate, checked at build time so no image ships a key, a
//! bundle of CAs or an operator's own certificate by mistake.

use crate::error::BuildError;
use std::path::Path;

/// Reads an operator CA file for the image: exactly one self-signed CA certificate, in PEM. A
/// private key in it is refused (an image is no place for a secret), and so are a file without
/// a certificate, a bundle of several (every CA in it could mint operators) and a leaf or
/// intermediate certificate (devices would trust whoever signed it).
pub fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    let bytes = std::fs::read(path).map_err(|_| BuildError::MissingSource {
        path: path.to_path_buf(),
        field: "agent.operators (or --operators)".into(),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let why = if text.contains("PRIVATE KEY") {
        Some(
            "it holds a private key; give the CA's certificate (NAME.crt.pem), never its key"
                .to_string(),
        )
    } else if !text.contains("-----BEGIN CERTIFICATE-----") {
        Some("it holds no PEM certificate (expected NAME.crt.pem from `slate ca init`)".to_string())
    } else {
        one_self_signed_ca(&bytes).err()
    };
    match why {
        Some(why) => Err(BuildError::Spec {
            path: path.to_path_buf(),
            field: "agent.operators".into(),
            why,
        }),
        None => Ok(bytes),
    }
}

/// Why `pem` is not exactly one self-signed CA certificate.
fn one_self_signed_ca(pem: &[u8]) -> Result<(), String> {
    let blocks = x509_parser::pem::Pem::iter_from_buffer(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("it is not valid PEM ({e})"))?;
    let [block] = blocks.as_slice() else {
        return Err(format!(
            "it holds {} PEM blocks; give exactly one CA certificate (every CA in the file could make operators)",
            blocks.len()
        ));
    };
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "its PEM block is a {}, not a CERTIFICATE",
            block.label
        ));
    }
    let cert = block
        .parse_x509()
        .map_err(|e| format!("its certificate does not parse ({e})"))?;
    if !cert.is_ca() {
        return Err("its certificate is not a CA (basic constraints): give the CA's certificate, not an operator's".into());
    }
    if cert.subject() != cert.issuer() || cert.verify_signature(None).is_err() {
        return Err(format!(
            "its certificate is not self-signed (issued by {}): give the root CA that signs operator certificates",
            cert.issuer()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_ca_is_one_self_signed_ca_certificate() {
        let d = tempfile::tempdir().expect("tempdir");
        let (ca, _) = crate::operator::ca::init(&d.path().join("ops"), "ops").expect("ca");
        let (other, _) = crate::operator::ca::init(&d.path().join("other"), "other").expect("ca");
        let (leaf, leaf_key) = crate::operator::ca::issue(
            &ca,
            "alice",
            30,
            slate_core::operator::Roles::all(),
            &d.path().join("alice"),
        )
        .expect("leaf");
        let bytes = |p: &Path| std::fs::read(p).expect("read");
        assert_eq!(one_self_signed_ca(&bytes(&ca)), Ok(()));
        let two = [bytes(&ca), bytes(&other)].concat();
        let why = one_self_signed_ca(&two).expect_err("two CAs");
        assert!(why.contains("2 PEM blocks"), "{why}");
        let why = one_self_signed_ca(&bytes(&leaf)).expect_err("a leaf");
        assert!(why.contains("not a CA"), "{why}");
        let key = read(&leaf_key).expect_err("a key");
        assert!(key.to_string().contains("private key"), "{key}");
        let empty = d.path().join("empty.pem");
        std::fs::write(&empty, "nothing\n").expect("write");
        assert!(read(&empty).is_err());
        assert!(read(&ca).is_ok());
    }
}
