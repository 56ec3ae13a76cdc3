//! `Fingerprint`: what identifies a device's TLS certificate, `sha256:<64 hex>` of its DER
//! bytes, as `ssh` identifies host keys.
//!
//! The device prints it on its console and in its status; operators' tools pin it on first
//! contact (or take it up front) and refuse a device whose certificate changed. One type on both
//! sides so the text form has one writer and one reader.

use crate::digest::{Digest32, DigestError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// What every fingerprint text starts with.
pub const SCHEME: &str = "sha256:";

/// The sha256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub Digest32);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(Digest32::of(der))
    }
}

/// Why a fingerprint text was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FingerprintError {
    /// Not `sha256:…`.
    #[error("a fingerprint starts with {SCHEME:?}")]
    Scheme,
    /// The digest part is malformed.
    #[error("fingerprint digest: {0}")]
    Digest(#[from] DigestError),
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;
    fn from_str(s: &str) -> Result<Fingerprint, FingerprintError> {
        let hex = s.strip_prefix(SCHEME).ok_or(FingerprintError::Scheme)?;
        Ok(Fingerprint(hex.parse()?))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fingerprint, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_malformed_is_refused() {
        let f = Fingerprint::of_der(b"cert");
        let text = f.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 7 + 64);
        assert_eq!(text.parse::<Fingerprint>(), Ok(f));
        assert_eq!(
            text[7..].parse::<Fingerprint>(),
            Err(FingerprintError::Scheme)
        );
        assert!(text.to_uppercase().parse::<Fingerprint>().is_err());
        assert!("sha256:abc".parse::<Fingerprint>().is_err());
    }
}
