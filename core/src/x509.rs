//! The few facts about an X.509 certificate or CRL that the device reads itself, beside what
//! rustls/webpki verify: a certificate's validity (the clock floor takes an authenticated
//! operator's start time as proof of the time), its subject (an operator's roles), and a
//! CRL's signed parts (checked against the operator CA before the device keeps it).

use crate::der::{tag, DerError, Reader, Tlv};

const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// A certificate's validity period, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
}

fn bad(why: &'static str) -> DerError {
    DerError { at: 0, why }
}

/// The fields of a certificate the device reads.
#[derive(Debug, Clone)]
pub struct Certificate<'a> {
    /// Its validity.
    pub validity: Validity,
    /// The subject Name, whole (tag and length included), as a CRL's issuer names it.
    pub subject: &'a [u8],
    /// The subject's attributes in order: the attribute type's OID (value bytes) and the
    /// value as text (UTF8String, PrintableString or IA5String).
    pub subject_attributes: Vec<(&'a [u8], &'a str)>,
    /// The public key's AlgorithmIdentifier (contents, as rustls's algorithms name it).
    pub key_algorithm: &'a [u8],
    /// The public key (the BIT STRING's bits).
    pub public_key: &'a [u8],
}

/// Reads a certificate's validity, subject and public key.
pub fn certificate(cert: &[u8]) -> Result<Certificate<'_>, DerError> {
    let c = Reader::new(cert).expect(tag::SEQUENCE, "Certificate")?;
    let tbs = Reader::inside(&c).expect(tag::SEQUENCE, "tbsCertificate")?;
    let mut r = Reader::inside(&tbs);
    r.optional(tag::CONTEXT_0)?;
    r.expect(tag::INTEGER, "serialNumber")?;
    r.expect(tag::SEQUENCE, "signature")?;
    r.expect(tag::SEQUENCE, "issuer")?;
    let v = r.expect(tag::SEQUENCE, "validity")?;
    let mut v = Reader::inside(&v);
    let validity = Validity {
        not_before: time(&v.any()?)?,
        not_after: time(&v.any()?)?,
    };
    let subject = r.expect(tag::SEQUENCE, "subject")?;
    let mut subject_attributes = Vec::new();
    let mut rdns = Reader::inside(&subject);
    while !rdns.is_empty() {
        let set = rdns.expect(tag::SET, "RelativeDistinguishedName")?;
        let mut atvs = Reader::inside(&set);
        while !atvs.is_empty() {
            let atv = atvs.expect(tag::SEQUENCE, "AttributeTypeAndValue")?;
            let mut a = Reader::inside(&atv);
            let oid = a.expect(tag::OID, "attribute type")?;
            let value = a.any()?;
            if matches!(value.tag, UTF8_STRING | PRINTABLE_STRING | IA5_STRING) {
                let text = std::str::from_utf8(value.value)
                    .map_err(|_| bad("a subject attribute is not UTF-8"))?;
                subject_attributes.push((oid.value, text));
            }
        }
    }
    let spki = r.expect(tag::SEQUENCE, "subjectPublicKeyInfo")?;
    let mut k = Reader::inside(&spki);
    let alg = k.expect(tag::SEQUENCE, "public key algorithm")?;
    let bits = k.expect(tag::BIT_STRING, "public key")?;
    let public_key = match bits.value.split_first() {
        Some((0, rest)) => rest,
        _ => return Err(bad("public key BIT STRING with unused bits")),
    };
    Ok(Certificate {
        validity,
        subject: subject.whole,
        subject_attributes,
        key_algorithm: alg.value,
        public_key,
    })
}

/// Reads a certificate's validity.
pub fn validity(cert: &[u8]) -> Result<Validity, DerError> {
    certificate(cert).map(|c| c.validity)
}

/// The fields of a CRL the device judges before it keeps one.
#[derive(Debug, Clone, Copy)]
pub struct Crl<'a> {
    /// The issuer Name, whole (compared with the CA certificate's subject).
    pub issuer: &'a [u8],
    /// thisUpdate, Unix seconds: a CRL older than the one kept is refused.
    pub this_update: i64,
    /// What was signed, and the signature.
    pub signed: Signed<'a>,
}

/// Reads a CRL (RFC 5280 §5.1).
pub fn crl(der: &[u8]) -> Result<Crl<'_>, DerError> {
    let signed = signed(der)?;
    let mut r = Reader::new(signed.tbs);
    let tbs = r.expect(tag::SEQUENCE, "tbsCertList")?;
    let mut r = Reader::inside(&tbs);
    r.optional(tag::INTEGER)?;
    r.expect(tag::SEQUENCE, "signature")?;
    let issuer = r.expect(tag::SEQUENCE, "issuer")?;
    let this_update = time(&r.any()?)?;
    Ok(Crl {
        issuer: issuer.whole,
        this_update,
        signed,
    })
}

/// A UTCTime or GeneralizedTime (`Z` form, as RFC 5280 requires) as Unix seconds.
pub fn time(t: &Tlv<'_>) -> Result<i64, DerError> {
    let s = std::str::from_utf8(t.value).map_err(|_| bad("time is not ASCII"))?;
    let digits = s.strip_suffix('Z').ok_or(bad("time is not in UTC (Z)"))?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("time has other characters than digits"));
    }
    let num = |a: usize, b: usize| -> Result<i64, DerError> {
        digits
            .get(a..b)
            .and_then(|d| d.parse().ok())
            .ok_or(bad("time is too short"))
    };
    let (year, rest) = match (t.tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = num(0, 2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (num(0, 4)?, 4),
        _ => return Err(bad("not a UTCTime or GeneralizedTime of the DER form")),
    };
    let (month, day) = (num(rest, rest + 2)?, num(rest + 2, rest + 4)?);
    let (h, m, sec) = (
        num(rest + 4, rest + 6)?,
        num(rest + 6, rest + 8)?,
        num(rest + 8, rest + 10)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return Err(bad("time out of range"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The parts of a signed X.509 structure (certificate or CRL): the signed bytes, the
/// signature algorithm's OID and the signature.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The DER of the to-be-signed part, as signed.
    pub tbs: &'a [u8],
    /// The signature's AlgorithmIdentifier (contents, as rustls's algorithms name it).
    pub algorithm: &'a [u8],
    /// The signature.
    pub signature: &'a [u8],
}

/// Splits a certificate or CRL into what was signed and the signature.
pub fn signed(der: &[u8]) -> Result<Signed<'_>, DerError> {
    let mut outer = Reader::new(der);
    let whole = outer.expect(tag::SEQUENCE, "signed structure")?;
    if !outer.is_empty() {
        return Err(bad("bytes after the signed structure"));
    }
    let mut r = Reader::inside(&whole);
    let tbs = r.expect(tag::SEQUENCE, "to-be-signed part")?;
    let alg = r.expect(tag::SEQUENCE, "signatureAlgorithm")?;
    let sig = r.expect(tag::BIT_STRING, "signature")?;
    let signature = match sig.value.split_first() {
        Some((0, rest)) => rest,
        _ => return Err(bad("signature BIT STRING with unused bits")),
    };
    Ok(Signed {
        tbs: tbs.whole,
        algorithm: alg.value,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_the_standard_says() {
        let t = |tag: u8, s: &str| {
            time(&Tlv {
                tag,
                value: s.as_bytes(),
                whole: s.as_bytes(),
                at: 0,
            })
        };
        assert_eq!(t(UTC_TIME, "700101000000Z"), Ok(0));
        assert_eq!(t(UTC_TIME, "491231235959Z"), Ok(2_524_607_999));
        assert_eq!(t(GENERALIZED_TIME, "20261205152251Z"), Ok(1_796_484_171));
        assert_eq!(t(GENERALIZED_TIME, "20000229000000Z"), Ok(951_782_400));
        assert!(t(UTC_TIME, "20261205152251Z").is_err());
        assert!(t(UTC_TIME, "701301000000Z").is_err());
        assert!(t(UTC_TIME, "700101000000+0100").is_err());
    }
}
