//! `Digest32`: a sha256 (or verity root hash) as the 32 bytes it is, not as text.
//!
//! Manifests, `build.toml` and the kernel command line all carry digests as hex. Parsing them
//! into bytes at the edge means a malformed or upper-case digest is refused while the file is
//! read — before a device writes anything — and comparisons are of bytes, never of text that
//! might differ only in case. The one written form is 64 lower-case hex digits.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Bytes in a sha256 digest.
pub const LEN: usize = 32;

/// A 32-byte digest (sha256 of a file, or a dm-verity root hash).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest32(pub [u8; LEN]);

/// Why a digest text was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// Wrong number of characters.
    #[error("a sha256 digest is 64 hex digits, this one has {0} characters")]
    Length(usize),
    /// A character that is not a lower-case hex digit.
    #[error("character {index} ({found:?}) is not a lower-case hex digit (0-9, a-f)")]
    Character {
        /// Index of the character at fault.
        index: usize,
        /// The character.
        found: char,
    },
}

impl Digest32 {
    /// sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest32 {
        use sha2::Digest as _;
        Digest32(sha2::Sha256::digest(bytes).into())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }
}

impl From<[u8; LEN]> for Digest32 {
    fn from(b: [u8; LEN]) -> Digest32 {
        Digest32(b)
    }
}

impl FromStr for Digest32 {
    type Err = DigestError;

    /// Only the canonical form: exactly 64 lower-case hex digits.
    fn from_str(s: &str) -> Result<Digest32, DigestError> {
        if s.len() != 2 * LEN {
            return Err(DigestError::Length(s.chars().count()));
        }
        if let Some((index, found)) = s
            .chars()
            .enumerate()
            .find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(DigestError::Character { index, found });
        }
        let mut out = [0u8; LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestError::Length(s.len()))?;
        Ok(Digest32(out))
    }
}

impl fmt::Display for Digest32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest32({self})")
    }
}

impl Serialize for Digest32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest32, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_canonical_form() {
        let d = Digest32::of(b"slate");
        let text = d.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<Digest32>(), Ok(d));
        assert_eq!(
            Digest32::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn refuses_upper_case_short_and_foreign_text() {
        let upper = Digest32::of(b"x").to_string().to_uppercase();
        assert!(matches!(
            upper.parse::<Digest32>(),
            Err(DigestError::Character { .. })
        ));
        assert_eq!("ab".parse::<Digest32>(), Err(DigestError::Length(2)));
        let mut bad = "0".repeat(63);
        bad.push('g');
        assert_eq!(
            bad.parse::<Digest32>(),
            Err(DigestError::Character {
                index: 63,
                found: 'g'
            })
        );
        let multibyte = format!("{}é", "0".repeat(62));
        assert!(multibyte.parse::<Digest32>().is_err());
    }
}
