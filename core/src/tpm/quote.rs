//! Attestation basics: a TPM quote over PCRs 7 (Secure Boot policy) and 11 (the UKI and the
//! boot phases), signed by an attestation key the TPM derives from its endorsement seed, and
//! its verification: the signed `TPMS_ATTEST` carries the verifier's nonce and the digest of
//! the PCR values the device reports. Checking the ECDSA signature is the host's (it links a
//! crypto library); everything else is here.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The PCRs quoted.
pub const QUOTED_PCRS: [u32; 2] = [7, 11];
/// `TPM_GENERATED_VALUE`: the TPM made this structure.
const GENERATED: u32 = 0xFF54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
const ST_ATTEST_QUOTE: u16 = 0x8018;

/// `GET /v1/quote?nonce=…`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The signed `TPMS_ATTEST`, hex.
    pub attest: String,
    /// ECDSA P-256 signature of SHA-256(attest): r, hex (32 bytes, zero-padded).
    pub sig_r: String,
    /// s, hex.
    pub sig_s: String,
    /// The attestation key's public point, x, hex.
    pub ak_x: String,
    /// y, hex.
    pub ak_y: String,
    /// The quoted PCRs' values as the device read them, hex, in [`QUOTED_PCRS`] order.
    pub pcrs: Vec<String>,
}

/// Why a quote does not prove what it claims.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuoteError {
    /// Not hex, not a TPMS_ATTEST, not a quote.
    #[error("a malformed quote: {0}")]
    Malformed(&'static str),
    /// Another nonce: a replayed or foreign quote.
    #[error("the quote is for another nonce (replayed?)")]
    Nonce,
    /// The reported PCR values are not the ones the TPM signed.
    #[error("the reported PCR values are not the ones the TPM quoted")]
    PcrDigest,
    /// A PCR is not the value expected.
    #[error("PCR {pcr} is {got}, expected {want}")]
    Pcr {
        /// Which.
        pcr: u32,
        /// Reported (and signed).
        got: String,
        /// Expected.
        want: String,
    },
}

/// What a verifier learned from a quote whose signature it checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// PCR 7, hex.
    pub pcr7: String,
    /// PCR 11, hex.
    pub pcr11: String,
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], QuoteError> {
    if b.len() < n {
        return Err(QuoteError::Malformed("TPMS_ATTEST ends early"));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn tpm2b<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], QuoteError> {
    let n = take(b, 2)?;
    take(b, usize::from(u16::from_be_bytes([n[0], n[1]])))
}

/// Checks everything but the signature: the structure is a TPM-made quote, over `nonce`,
/// whose PCR digest is that of the reported values; and, when given, that PCR 11 is
/// `expect_pcr11`. The caller checks the signature over `attest` with the AK.
pub fn check(q: &Quote, nonce: &[u8], expect_pcr11: Option<&str>) -> Result<Verified, QuoteError> {
    let attest = hex::decode(&q.attest).map_err(|_| QuoteError::Malformed("attest not hex"))?;
    let mut b = attest.as_slice();
    let magic = take(&mut b, 4)?;
    if magic != GENERATED.to_be_bytes() {
        return Err(QuoteError::Malformed("not made by a TPM (magic)"));
    }
    if take(&mut b, 2)? != ST_ATTEST_QUOTE.to_be_bytes() {
        return Err(QuoteError::Malformed("not a quote"));
    }
    let _signer = tpm2b(&mut b)?;
    if tpm2b(&mut b)? != nonce {
        return Err(QuoteError::Nonce);
    }
    let _clock_info = take(&mut b, 17)?;
    let _firmware = take(&mut b, 8)?;
    // TPMS_QUOTE_INFO: the selection, then the digest of the selected PCRs in order.
    let count = u32::from_be_bytes(take(&mut b, 4)?.try_into().unwrap_or_default());
    for _ in 0..count {
        take(&mut b, 2)?;
        let n = take(&mut b, 1)?[0];
        take(&mut b, usize::from(n))?;
    }
    let digest = tpm2b(&mut b)?;
    if q.pcrs.len() != QUOTED_PCRS.len() {
        return Err(QuoteError::Malformed("not two PCR values"));
    }
    let mut h = Sha256::new();
    for p in &q.pcrs {
        h.update(hex::decode(p).map_err(|_| QuoteError::Malformed("a PCR not hex"))?);
    }
    if h.finalize().as_slice() != digest {
        return Err(QuoteError::PcrDigest);
    }
    let v = Verified {
        pcr7: q.pcrs[0].to_lowercase(),
        pcr11: q.pcrs[1].to_lowercase(),
    };
    if let Some(want) = expect_pcr11 {
        if !want.eq_ignore_ascii_case(&v.pcr11) {
            return Err(QuoteError::Pcr {
                pcr: 11,
                got: v.pcr11,
                want: want.to_lowercase(),
            });
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(nonce: &[u8], pcrs: [[u8; 32]; 2]) -> Quote {
        let mut a = GENERATED.to_be_bytes().to_vec();
        a.extend_from_slice(&ST_ATTEST_QUOTE.to_be_bytes());
        a.extend_from_slice(&[0, 2, 0, 0xB]);
        a.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
        a.extend_from_slice(nonce);
        a.extend_from_slice(&[0; 25]);
        a.extend_from_slice(&crate::tpm::wire::pcr_selection(&QUOTED_PCRS));
        a.extend_from_slice(&32u16.to_be_bytes());
        let mut h = Sha256::new();
        h.update(pcrs[0]);
        h.update(pcrs[1]);
        a.extend_from_slice(&h.finalize());
        Quote {
            attest: hex::encode(a),
            sig_r: String::new(),
            sig_s: String::new(),
            ak_x: String::new(),
            ak_y: String::new(),
            pcrs: pcrs.iter().map(hex::encode).collect(),
        }
    }

    #[test]
    fn a_quote_is_checked_for_nonce_digest_and_pcr11() {
        let q = quote(b"nonce-1", [[7; 32], [11; 32]]);
        let v = check(&q, b"nonce-1", Some(&hex::encode([11u8; 32]))).unwrap();
        assert_eq!(v.pcr7, hex::encode([7u8; 32]));
        assert_eq!(check(&q, b"nonce-2", None), Err(QuoteError::Nonce));
        let mut lying = q.clone();
        lying.pcrs[1] = hex::encode([12u8; 32]);
        assert_eq!(check(&lying, b"nonce-1", None), Err(QuoteError::PcrDigest));
        assert!(matches!(
            check(&q, b"nonce-1", Some(&hex::encode([13u8; 32]))),
            Err(QuoteError::Pcr { pcr: 11, .. })
        ));
        let mut cut = q;
        cut.attest.truncate(40);
        assert!(matches!(
            check(&cut, b"nonce-1", None),
            Err(QuoteError::Malformed(_))
        ));
    }
}
