//! Measured boot: what systemd-stub measures of a Unified Kernel Image into PCR 11, the phases
//! the boot extends after it, and the TPM 2.0 policy a vendor signs for the resulting value
//! (systemd's `.pcrsig` format), so that a secret sealed under "any PCR 11 value this key
//! signed" unseals for every image the vendor signed and for nothing else.
//!
//! Pure: the imager predicts and signs with it at build time, stage 1 (later) checks a
//! signature against it, and `systemd-measure` is its oracle in the tests.

pub mod client;
pub mod header;
pub mod policy;
pub mod quote;
pub mod session;
pub mod wire;

use crate::der::{tag, Reader};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The PCR systemd-stub measures a UKI's sections into.
pub const PCR_KERNEL_BOOT: u32 = 11;
/// The phase stage 1 extends before it unseals: policies are signed for this value.
pub const ENTER_INITRD: &str = "enter-initrd";
/// The phase stage 1 extends once `/data` is open, so nothing later can unseal again.
pub const LEAVE_INITRD: &str = "leave-initrd";

/// A UKI section systemd-stub (252) measures, in the order it measures them (the order of
/// the PE file does not matter). `.pcrsig` is not measured: it carries the signature of the
/// result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// The kernel.
    Linux,
    /// os-release.
    Osrel,
    /// The command line.
    Cmdline,
    /// The initramfs.
    Initrd,
    /// A boot splash.
    Splash,
    /// A device tree.
    Dtb,
    /// The public key the policies are signed with (PEM).
    Pcrpkey,
}

impl Section {
    /// The PE section's name.
    pub fn name(self) -> &'static str {
        match self {
            Section::Linux => ".linux",
            Section::Osrel => ".osrel",
            Section::Cmdline => ".cmdline",
            Section::Initrd => ".initrd",
            Section::Splash => ".splash",
            Section::Dtb => ".dtb",
            Section::Pcrpkey => ".pcrpkey",
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A TPM extend with the SHA-256 of `data`: `pcr = H(pcr || H(data))`.
pub fn extend(pcr: &mut [u8; 32], data: &[u8]) {
    let mut h = Sha256::new();
    h.update(*pcr);
    h.update(sha256(data));
    *pcr = h.finalize().into();
}

/// What systemd-stub (then each phase, as `systemd-pcrphase` does) extends PCR 11 with, in
/// order: each section's name with its NUL, then its contents, in [`Section`]'s order; then
/// each of `phases` (the word, without a NUL).
pub fn measurements(sections: &[(Section, &[u8])], phases: &[&str]) -> Vec<Vec<u8>> {
    let mut ordered: Vec<&(Section, &[u8])> = sections.iter().collect();
    ordered.sort_by_key(|(s, _)| *s);
    let mut out = Vec::with_capacity(ordered.len() * 2 + phases.len());
    for (section, data) in ordered {
        let mut name = section.name().as_bytes().to_vec();
        name.push(0);
        out.push(name);
        out.push(data.to_vec());
    }
    out.extend(phases.iter().map(|p| p.as_bytes().to_vec()));
    out
}

/// PCR 11 after [`measurements`] from a reset PCR.
pub fn pcr11(sections: &[(Section, &[u8])], phases: &[&str]) -> [u8; 32] {
    let mut pcr = [0u8; 32];
    for m in measurements(sections, phases) {
        extend(&mut pcr, &m);
    }
    pcr
}

pub use policy::policy_pcr;

/// Why a public key cannot sign policies.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not PEM.
    #[error("the PCR public key is not a PEM `PUBLIC KEY`")]
    NotPem,
    /// Not an RSA SubjectPublicKeyInfo.
    #[error("the PCR public key is not an RSA key: {0}")]
    NotRsa(String),
}

/// The PKCS#1 `RSAPublicKey` inside a PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`):
/// its SHA-256 is the `pkfp` systemd matches a signature to its key by.
pub fn rsa_public_key_der(spki_pem: &str) -> Result<Vec<u8>, KeyError> {
    let body: String = spki_pem
        .lines()
        .skip_while(|l| l.trim() != "-----BEGIN PUBLIC KEY-----")
        .skip(1)
        .take_while(|l| l.trim() != "-----END PUBLIC KEY-----")
        .collect();
    if body.is_empty() {
        return Err(KeyError::NotPem);
    }
    let der = base64_decode(&body).ok_or(KeyError::NotPem)?;
    let not_rsa = |e: crate::der::DerError| KeyError::NotRsa(e.to_string());
    let spki = Reader::new(&der)
        .expect(tag::SEQUENCE, "SubjectPublicKeyInfo")
        .map_err(not_rsa)?;
    let mut k = Reader::inside(&spki);
    let alg = k.expect(tag::SEQUENCE, "algorithm").map_err(not_rsa)?;
    let oid = Reader::inside(&alg)
        .expect(tag::OID, "algorithm")
        .map_err(not_rsa)?;
    // 1.2.840.113549.1.1.1 rsaEncryption.
    if oid.value != [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01] {
        return Err(KeyError::NotRsa("not rsaEncryption".into()));
    }
    let bits = k
        .expect(tag::BIT_STRING, "subjectPublicKey")
        .map_err(not_rsa)?;
    match bits.value.split_first() {
        Some((0, key)) => Ok(key.to_vec()),
        _ => Err(KeyError::NotRsa("a malformed key bit string".into())),
    }
}

/// The modulus (without the sign byte) and public exponent of a PKCS#1 `RSAPublicKey`: what
/// the TPM is given to verify the vendor's signatures with.
pub fn rsa_public_numbers(pkcs1: &[u8]) -> Result<(Vec<u8>, u32), KeyError> {
    let not_rsa = |e: crate::der::DerError| KeyError::NotRsa(e.to_string());
    let seq = Reader::new(pkcs1)
        .expect(tag::SEQUENCE, "RSAPublicKey")
        .map_err(not_rsa)?;
    let mut r = Reader::inside(&seq);
    let n = r.expect(tag::INTEGER, "modulus").map_err(not_rsa)?;
    let e = r.expect(tag::INTEGER, "publicExponent").map_err(not_rsa)?;
    let modulus = match n.value.split_first() {
        Some((0, rest)) => rest,
        _ => n.value,
    };
    if e.value.len() > 4 || e.value.is_empty() {
        return Err(KeyError::NotRsa("an exponent wider than 32 bits".into()));
    }
    let exponent = e
        .value
        .iter()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    Ok((modulus.to_vec(), exponent))
}

/// Standard base64 (with padding), as PEM bodies are; None for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        for _ in 0..pad {
            n <<= 6;
        }
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One signed policy of a `.pcrsig` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySignature {
    /// The PCRs the policy covers.
    pub pcrs: Vec<u32>,
    /// SHA-256 of the signing key's PKCS#1 `RSAPublicKey`, hex.
    pub pkfp: String,
    /// The `TPM2_PolicyPCR` digest signed, hex.
    pub pol: String,
    /// RSASSA-PKCS1-v1_5 with SHA-256 over `pol`'s bytes then `ref`'s, base64.
    pub sig: String,
    /// Slate's addition: the policyRef signed with `pol` (ASCII; empty, and absent from the
    /// JSON, for systemd's kind). The epoch index's write policy carries
    /// [`policy::EPOCH_WRITE_REF`], so it can never unseal.
    #[serde(default, rename = "ref", skip_serializing_if = "String::is_empty")]
    pub policy_ref: String,
}

/// A `.pcrsig` section: signed policies by bank (systemd's JSON, `sha256` only here).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrSig {
    /// The SHA-256 bank's policies, one per phase signed for.
    #[serde(default)]
    pub sha256: Vec<PolicySignature>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUB: &str = include_str!("test-pcr-key.pub.pem");

    /// The files `systemd-measure calculate --linux=… --osrel=… --cmdline=… --initrd=…
    /// --pcrpkey=test-pcr-key.pub.pem --bank=sha256 --phase=enter-initrd` was run with
    /// (systemd 252.38), and what it printed; `sign` with its private key gave `pol` and
    /// `pkfp` below.
    fn sections() -> Vec<(Section, &'static [u8])> {
        vec![
            (Section::Initrd, b"initrd"),
            (Section::Linux, b"kernel"),
            (Section::Pcrpkey, PUB.as_bytes()),
            (Section::Osrel, b"ID=slate"),
            (Section::Cmdline, b"root=x"),
        ]
    }

    #[test]
    fn pcr11_is_what_systemd_measure_calculates() {
        assert_eq!(
            hex::encode(pcr11(&sections(), &[ENTER_INITRD])),
            "11254a44b830cbd63849de100653165a9c1e14b629df924c4ecb382bbb23c7b3"
        );
        // Another phase, another value; no sections, the phases alone.
        assert_ne!(
            pcr11(&sections(), &[ENTER_INITRD]),
            pcr11(&sections(), &[ENTER_INITRD, LEAVE_INITRD])
        );
    }

    #[test]
    fn the_policy_and_key_fingerprint_are_what_systemd_measure_signs() {
        let pcr = pcr11(&sections(), &[ENTER_INITRD]);
        assert_eq!(
            hex::encode(policy_pcr(PCR_KERNEL_BOOT, &pcr)),
            "cb8368d5dd8729775ec2c4859d8baef711db357b8767d60076801151d516098c"
        );
        let key = rsa_public_key_der(PUB).unwrap();
        assert_eq!(
            hex::encode(sha256(&key)),
            "dca51337b795b4b3e697f186d1ccfe2e66b06743b3a2b1c76246103982d3e4e3"
        );
    }

    #[test]
    fn the_modulus_and_exponent_are_read_from_the_key() {
        let (n, e) = rsa_public_numbers(&rsa_public_key_der(PUB).unwrap()).unwrap();
        assert_eq!((n.len(), e), (256, 65537));
        assert!(n[0] & 0x80 != 0, "the sign byte is dropped");
        assert!(rsa_public_numbers(b"\x30\x00").is_err());
    }

    #[test]
    fn keys_that_are_not_rsa_pem_are_refused() {
        assert_eq!(rsa_public_key_der("hello"), Err(KeyError::NotPem));
        let ec = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEGhQ9s5xJ6k6K1Xz1yYH0lZ3k9cK9\nq8h2xQbq0m1Yb6m0YwS0kqkqQh9q9V9m0a2Lq9L8Fqk7b3o5o3r7m6sLrw==\n-----END PUBLIC KEY-----\n";
        assert!(matches!(rsa_public_key_der(ec), Err(KeyError::NotRsa(_))));
    }

    #[test]
    fn base64_round_trips() {
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)), Some(bytes));
        }
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        assert_eq!(base64_decode("TW=E"), None);
    }
}
