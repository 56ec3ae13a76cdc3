//! Authenticode: the signature UEFI firmware checks on a PE image before it runs it, checked
//! the same way here, so a UKI the device's firmware would refuse is refused before a byte of
//! it is written (and `slate verify` says so on the host).
//!
//! The steps are those of EDK2's image verification (what OVMF and most PC firmware run):
//! the image's sha256 with the checksum, the certificate-table entry and the certificate table
//! left out; that digest equal to the one in the signed `SpcIndirectDataContent`; that
//! content's sha256 equal to the `messageDigest` attribute; and the signature over the
//! authenticated attributes made by the db key. The RSA check itself is passed in
//! ([`RsaVerify`]), so this module stays pure: the agent uses AWS-LC, the imager ring.

use crate::der::{tag, DerError, Reader, Tlv};
use crate::pe::{Pe, PeError};
use sha2::{Digest, Sha256};

/// Verifies an RSA PKCS#1 v1.5 signature with SHA-256: `(RSAPublicKey DER, message,
/// signature) → valid`.
pub type RsaVerify<'a> = &'a dyn Fn(&[u8], &[u8], &[u8]) -> bool;

/// Why a PE image is not signed by the expected key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthenticodeError {
    /// The PE headers are malformed.
    #[error(transparent)]
    Pe(#[from] PeError),
    /// The signature or certificate is malformed.
    #[error(transparent)]
    Der(#[from] DerError),
    /// The image has no certificate table.
    #[error("the image is not signed (no Authenticode certificate table)")]
    NotSigned,
    /// A structure is not what Authenticode specifies.
    #[error("not an Authenticode signature: {0}")]
    Format(&'static str),
    /// Only SHA-256 is accepted.
    #[error("the signature uses a digest other than SHA-256")]
    UnsupportedDigest,
    /// The image's bytes changed after signing.
    #[error("the image's digest is not the signed one: it was changed after signing")]
    ImageChanged,
    /// The signed attributes do not cover the signed content.
    #[error("the signature's messageDigest does not match its content")]
    ContentMismatch,
    /// The signature is not by the expected key.
    #[error(
        "the signature was not made by the db key (the firmware would refuse it: Access Denied)"
    )]
    WrongKey,
}

const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
const PKCS_SIGNED_DATA: u16 = 0x0002;

/// The sha256 of a PE image as Authenticode computes it.
pub fn image_digest(file: &[u8], pe: &Pe) -> Result<[u8; 32], AuthenticodeError> {
    let bad = |why| AuthenticodeError::Format(why);
    let cert_dir = pe
        .cert_dir_offset
        .ok_or(bad("no certificate-table entry"))?;
    let headers = pe.size_of_headers as usize;
    let checksum = pe.checksum_offset;
    if !(checksum + 4 <= cert_dir && cert_dir + 8 <= headers && headers <= file.len()) {
        return Err(bad("headers out of order"));
    }
    let mut h = Sha256::new();
    h.update(&file[..checksum]);
    h.update(&file[checksum + 4..cert_dir]);
    h.update(&file[cert_dir + 8..headers]);
    let mut sections: Vec<_> = pe.sections.iter().filter(|s| s.raw_size > 0).collect();
    sections.sort_by_key(|s| s.raw_offset);
    let mut hashed = headers;
    for s in sections {
        let start = s.raw_offset as usize;
        let data = start
            .checked_add(s.raw_size as usize)
            .and_then(|end| file.get(start..end))
            .ok_or(bad("a section beyond the file"))?;
        h.update(data);
        hashed += data.len();
    }
    let certs = pe.cert_table.map_or(0, |(_, len)| len as usize);
    let end = file.len().saturating_sub(certs);
    if end > hashed {
        h.update(&file[hashed..end]);
    }
    Ok(h.finalize().into())
}

/// The PKCS#7 `SignedData` in the image's first `WIN_CERTIFICATE`.
fn signed_data<'a>(file: &'a [u8], pe: &Pe) -> Result<&'a [u8], AuthenticodeError> {
    let bad = |why| AuthenticodeError::Format(why);
    let (offset, len) = pe.cert_table.ok_or(AuthenticodeError::NotSigned)?;
    let table = file
        .get(offset as usize..(offset as usize).saturating_add(len as usize))
        .ok_or(bad("certificate table beyond the file"))?;
    let length = table
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(bad("truncated WIN_CERTIFICATE"))?;
    let kind = table
        .get(6..8)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or(bad("truncated WIN_CERTIFICATE"))?;
    if kind != PKCS_SIGNED_DATA {
        return Err(bad("the certificate is not PKCS#7 signed data"));
    }
    table
        .get(8..length)
        .ok_or(bad("WIN_CERTIFICATE longer than its table"))
}

fn is_sha256(alg: &Tlv<'_>) -> Result<bool, AuthenticodeError> {
    let oid = Reader::inside(alg).expect(tag::OID, "algorithm without OID")?;
    Ok(oid.value == OID_SHA256)
}

/// Checks that `file` carries an Authenticode signature by the key of `public_key` (an
/// `RSAPublicKey` in DER, [`rsa_public_key`]) over its current bytes.
pub fn verify(file: &[u8], public_key: &[u8], rsa: RsaVerify<'_>) -> Result<(), AuthenticodeError> {
    verify_parsed(file, &Pe::parse(file)?, public_key, rsa)
}

/// [`verify`] of a file whose headers the caller has parsed already (`pe`, from `file`).
pub fn verify_parsed(
    file: &[u8],
    pe: &Pe,
    public_key: &[u8],
    rsa: RsaVerify<'_>,
) -> Result<(), AuthenticodeError> {
    let bad = |why| AuthenticodeError::Format(why);
    let der = signed_data(file, pe)?;
    let content_info = Reader::new(der).expect(tag::SEQUENCE, "ContentInfo")?;
    let mut r = Reader::inside(&content_info);
    if r.expect(tag::OID, "content type")?.value != OID_SIGNED_DATA {
        return Err(bad("not SignedData"));
    }
    let explicit = r.expect(tag::CONTEXT_0, "SignedData wrapper")?;
    let signed = Reader::inside(&explicit).expect(tag::SEQUENCE, "SignedData")?;
    let mut r = Reader::inside(&signed);
    r.expect(tag::INTEGER, "SignedData version")?;
    r.expect(tag::SET, "digestAlgorithms")?;
    // contentInfo: SpcIndirectDataContent, whose DigestInfo holds the image digest.
    let content = r.expect(tag::SEQUENCE, "contentInfo")?;
    let mut c = Reader::inside(&content);
    c.expect(tag::OID, "contentInfo type")?;
    let wrapped = c.expect(tag::CONTEXT_0, "SpcIndirectDataContent wrapper")?;
    let indirect = Reader::inside(&wrapped).expect(tag::SEQUENCE, "SpcIndirectDataContent")?;
    let mut i = Reader::inside(&indirect);
    i.expect(tag::SEQUENCE, "SpcAttributeTypeAndOptionalValue")?;
    let digest_info = i.expect(tag::SEQUENCE, "DigestInfo")?;
    let mut d = Reader::inside(&digest_info);
    let alg = d.expect(tag::SEQUENCE, "DigestInfo algorithm")?;
    if !is_sha256(&alg)? {
        return Err(AuthenticodeError::UnsupportedDigest);
    }
    let signed_digest = d.expect(tag::OCTET_STRING, "DigestInfo digest")?.value;
    let certificates = r
        .optional(tag::CONTEXT_0)?
        .ok_or(bad("no certificate in the signature"))?;
    let certificate = only_one(&certificates, "certificate")?;
    r.optional(tag::CONTEXT_1)?; // crls
    let signer_infos = r.expect(tag::SET, "signerInfos")?;
    let signer = only_one(&signer_infos, "SignerInfo")?;
    // The one certificate it carries is the db certificate's key, as the firmware requires of
    // what it runs: no second certificate or signer for a parser to prefer.
    if rsa_public_key(certificate.whole)? != public_key {
        return Err(AuthenticodeError::WrongKey);
    }
    let mut s = Reader::inside(&signer);
    s.expect(tag::INTEGER, "SignerInfo version")?;
    s.expect(tag::SEQUENCE, "issuerAndSerialNumber")?;
    let digest_alg = s.expect(tag::SEQUENCE, "SignerInfo digestAlgorithm")?;
    if !is_sha256(&digest_alg)? {
        return Err(AuthenticodeError::UnsupportedDigest);
    }
    let attributes = s.expect(tag::CONTEXT_0, "authenticatedAttributes")?;
    s.expect(tag::SEQUENCE, "digestEncryptionAlgorithm")?;
    let signature = s.expect(tag::OCTET_STRING, "encryptedDigest")?.value;

    let mut message_digest = None;
    let mut a = Reader::inside(&attributes);
    while !a.is_empty() {
        let attr = a.expect(tag::SEQUENCE, "Attribute")?;
        let mut f = Reader::inside(&attr);
        if f.expect(tag::OID, "Attribute type")?.value == OID_MESSAGE_DIGEST {
            let values = f.expect(tag::SET, "Attribute values")?;
            message_digest = Some(
                Reader::inside(&values)
                    .expect(tag::OCTET_STRING, "messageDigest")?
                    .value,
            );
        }
    }
    let message_digest = message_digest.ok_or(bad("no messageDigest attribute"))?;

    if signed_digest != image_digest(file, pe)? {
        return Err(AuthenticodeError::ImageChanged);
    }
    // Authenticode hashes SpcIndirectDataContent's contents, without its own tag and length.
    if message_digest != Sha256::digest(indirect.value).as_slice() {
        return Err(AuthenticodeError::ContentMismatch);
    }
    // The signature covers the attributes DER-encoded as a SET, not as the [0] they travel in.
    let mut signed_attributes = attributes.whole.to_vec();
    signed_attributes[0] = tag::SET;
    if !rsa(public_key, &signed_attributes, signature) {
        return Err(AuthenticodeError::WrongKey);
    }
    Ok(())
}

/// The one SEQUENCE inside `set` (a SET or an implicit [0] of them), or why not: Slate's
/// Secure Boot images carry one certificate and one signer, and anything else is refused.
fn only_one<'a>(set: &Tlv<'a>, what: &'static str) -> Result<Tlv<'a>, AuthenticodeError> {
    let mut r = Reader::inside(set);
    let first = r.expect(tag::SEQUENCE, what)?;
    if !r.is_empty() {
        return Err(AuthenticodeError::Format(match what {
            "certificate" => "more than one certificate in the signature",
            _ => "more than one signer in the signature",
        }));
    }
    Ok(first)
}

/// The `RSAPublicKey` (DER) inside an X.509 certificate (DER): what [`verify`] takes.
pub fn rsa_public_key(cert: &[u8]) -> Result<&[u8], AuthenticodeError> {
    let certificate = Reader::new(cert).expect(tag::SEQUENCE, "Certificate")?;
    let tbs = Reader::inside(&certificate).expect(tag::SEQUENCE, "tbsCertificate")?;
    let mut t = Reader::inside(&tbs);
    t.optional(tag::CONTEXT_0)?; // version
    t.expect(tag::INTEGER, "serialNumber")?;
    for what in ["signature", "issuer", "validity", "subject"] {
        t.expect(tag::SEQUENCE, what)?;
    }
    let spki = t.expect(tag::SEQUENCE, "subjectPublicKeyInfo")?;
    let mut k = Reader::inside(&spki);
    k.expect(tag::SEQUENCE, "algorithm")?;
    let bits = k.expect(tag::BIT_STRING, "subjectPublicKey")?;
    match bits.value.split_first() {
        Some((0, key)) => Ok(key),
        _ => Err(AuthenticodeError::Format("public key bit string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsigned_image_is_refused_as_such() {
        // The smallest PE32+ header with no certificate table.
        let mut b = vec![0u8; 0x200];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c] = 0x40;
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        b[0x44 + 16..0x44 + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = 0x44 + 20;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        b[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let never = |_: &[u8], _: &[u8], _: &[u8]| -> bool { panic!("no signature to check") };
        assert_eq!(verify(&b, &[], &never), Err(AuthenticodeError::NotSigned));
        assert!(image_digest(&b, &Pe::parse(&b).unwrap()).is_ok());
    }

    #[test]
    fn exactly_one_certificate_and_one_signer() {
        // [0] { SEQUENCE {} }, [0] { SEQUENCE {} SEQUENCE {} }, SET { SEQUENCE {} SEQUENCE {} }.
        const ONE: [u8; 4] = [tag::CONTEXT_0, 2, tag::SEQUENCE, 0];
        const TWO: [u8; 6] = [tag::CONTEXT_0, 4, tag::SEQUENCE, 0, tag::SEQUENCE, 0];
        const SIGNERS: [u8; 6] = [tag::SET, 4, tag::SEQUENCE, 0, tag::SEQUENCE, 0];
        let tlv = |b: &'static [u8]| Reader::new(b).any().expect("tlv");
        assert!(only_one(&tlv(&ONE), "certificate").is_ok());
        assert_eq!(
            only_one(&tlv(&TWO), "certificate").map(|_| ()),
            Err(AuthenticodeError::Format(
                "more than one certificate in the signature"
            ))
        );
        assert_eq!(
            only_one(&tlv(&SIGNERS), "SignerInfo").map(|_| ()),
            Err(AuthenticodeError::Format(
                "more than one signer in the signature"
            ))
        );
    }
}
