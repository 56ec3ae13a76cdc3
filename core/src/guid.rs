//! GUIDs as GPT stores them (mixed-endian) and as humans write them.
//!
//! ```text
//! text:  00112233-4455-6677-8899-aabbccddeeff
//! disk:  33 22 11 00 55 44 77 66 88 99 aa bb cc dd ee ff
//!        └ LE u32 ┘ └LE16┘ └LE16┘ └──── bytes as written ────┘
//! ```
//! Slate derives every GUID from the image spec so that the same inputs give the same disk.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A GUID held in its textual (big-endian) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

/// Why a GUID string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid GUID {text:?}: expected the form 8-4-4-4-12 hex digits")]
pub struct GuidParseError {
    /// The text that did not parse.
    pub text: String,
}

impl Guid {
    /// The all-zero GUID, which GPT uses to mark an unused partition entry.
    pub const NIL: Guid = Guid([0; 16]);

    /// A reproducible GUID derived from a namespace string and a name: the first 16 bytes of
    /// `sha256(namespace \0 name)`, stamped as an RFC 4122 version-5-style (name-based) UUID.
    /// Slate uses it instead of random GUIDs so two builds of one spec are byte-identical.
    pub fn derive(namespace: &str, name: &[u8]) -> Guid {
        let mut h = Sha256::new();
        h.update(namespace.as_bytes());
        h.update([0u8]);
        h.update(name);
        let digest = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b[6] = (b[6] & 0x0f) | 0x50;
        b[8] = (b[8] & 0x3f) | 0x80;
        Guid(b)
    }

    /// The 16 bytes as GPT stores them: first three fields little-endian.
    pub fn to_gpt_bytes(self) -> [u8; 16] {
        let mut b = self.0;
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        b
    }

    /// Reads the mixed-endian on-disk form back.
    pub fn from_gpt_bytes(mut b: [u8; 16]) -> Guid {
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        Guid(b)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{}-{}-{}-{}-{}",
            hex::encode(&b[0..4]),
            hex::encode(&b[4..6]),
            hex::encode(&b[6..8]),
            hex::encode(&b[8..10]),
            hex::encode(&b[10..16])
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Guid {
    type Err = GuidParseError;

    fn from_str(s: &str) -> Result<Guid, GuidParseError> {
        let err = || GuidParseError {
            text: s.to_string(),
        };
        let parts: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if parts.len() != 5 || parts.iter().zip(lens).any(|(p, l)| p.len() != l) {
            return Err(err());
        }
        let joined: String = parts.concat();
        let bytes = hex::decode(joined).map_err(|_| err())?;
        let mut b = [0u8; 16];
        b.copy_from_slice(&bytes);
        Ok(Guid(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn esp_type_guid_has_known_disk_bytes() {
        let esp: Guid = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".parse().unwrap();
        assert_eq!(
            hex::encode(esp.to_gpt_bytes()),
            "28732ac11ff8d211ba4b00a0c93ec93b"
        );
    }

    #[test]
    fn bad_text_is_refused() {
        assert!("c12a7328f81f11d2ba4b00a0c93ec93b".parse::<Guid>().is_err());
        assert!("zz2a7328-f81f-11d2-ba4b-00a0c93ec93b"
            .parse::<Guid>()
            .is_err());
    }

    #[test]
    fn derive_is_stable_and_distinct() {
        assert_eq!(Guid::derive("ns", b"a"), Guid::derive("ns", b"a"));
        assert_ne!(Guid::derive("ns", b"a"), Guid::derive("ns", b"b"));
        assert_ne!(Guid::derive("ns", b"a"), Guid::derive("other", b"a"));
    }

    proptest! {
        #[test]
        fn text_and_disk_forms_round_trip(b in any::<[u8; 16]>()) {
            let g = Guid(b);
            prop_assert_eq!(g.to_string().parse::<Guid>().unwrap(), g);
            prop_assert_eq!(Guid::from_gpt_bytes(g.to_gpt_bytes()), g);
        }
    }
}
