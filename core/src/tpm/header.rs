//! The header of a sealed data partition: the first MiB of `data` in an image with `[tpm]`,
//! before the encrypted file system. It holds the TPM-sealed key (useless without this
//! device's TPM and an image the vendor signed) and where enrolment stands, so that a power
//! cut at any point of the first boot is finished at the next one.
//!
//! Two copies (4 KiB each, at 0 and 4 KiB) with a generation and a CRC: a write is torn at
//! most in one copy, and the valid copy of the highest generation is the truth. Nothing here
//! is secret: the sealed key only unseals inside the TPM.
//!
//! ```text
//! 0   "SLATEDAT"           8 magic
//! 8   version (1)          u32 LE
//! 12  generation           u64 LE
//! 20  state                u8   1 formatting, 2 ready, 3 plain (no TPM: not encrypted)
//! 21  cipher length, name  u8 + ASCII (dm-crypt's, e.g. aes-xts-plain64)
//! ..  key bytes            u16 LE
//! ..  sealed private       u16 LE length + TPM2B_PRIVATE
//! ..  sealed public        u16 LE length + TPM2B_PUBLIC
//! ..  CRC-32 of all above  u32 LE
//! ```

use super::client::Sealed;

/// Bytes of one copy.
pub const COPY_BYTES: usize = 4096;
/// Where the file system starts in the partition (the header area the imager reserves).
pub const PAYLOAD_OFFSET: u64 = 1 << 20;
/// The size of a sealed `/data`'s starting file system: stage 1 writes all of it through
/// dm-crypt at enrolment, then grows it to the partition as any `/data` grows; a partition
/// with less than this after the header cannot hold it.
pub const TEMPLATE_BYTES: u64 = 16 << 20;
const MAGIC: &[u8; 8] = b"SLATEDAT";
const VERSION: u32 = 1;
/// dm-crypt's cipher for `/data`: AES-XTS with the sector number as IV, built into or loaded
/// as modules of the Debian kernel (`dm_crypt`, `xts`, `ecb`), a 512-bit key (AES-256).
pub const CIPHER: &str = "aes-xts-plain64";
/// The key size for [`CIPHER`].
pub const KEY_BYTES: u16 = 64;

/// Where enrolment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The key is sealed; the file system is being written (again, after a cut).
    Formatting,
    /// The file system is complete.
    Ready,
    /// No TPM at enrolment and the image does not require one: the file system is plain.
    Plain,
}

/// One copy of the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Higher wins.
    pub generation: u64,
    /// Where enrolment stands.
    pub state: State,
    /// dm-crypt's cipher name.
    pub cipher: String,
    /// The key's length.
    pub key_bytes: u16,
    /// The sealed key (empty when [`State::Plain`]).
    pub sealed: Sealed,
}

/// Why a copy is not a header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// No magic: never enrolled (or not a sealed data partition).
    #[error("no header")]
    Absent,
    /// Magic, but the rest does not hold together.
    #[error("a damaged header: {0}")]
    Damaged(&'static str),
}

impl Header {
    /// One copy, padded to [`COPY_BYTES`]; None if the sealed blobs do not fit (they are a few
    /// hundred bytes from any TPM).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let mut b = Vec::with_capacity(COPY_BYTES);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&self.generation.to_le_bytes());
        b.push(match self.state {
            State::Formatting => 1,
            State::Ready => 2,
            State::Plain => 3,
        });
        b.push(u8::try_from(self.cipher.len()).ok()?);
        b.extend_from_slice(self.cipher.as_bytes());
        b.extend_from_slice(&self.key_bytes.to_le_bytes());
        for part in [&self.sealed.private, &self.sealed.public] {
            b.extend_from_slice(&u16::try_from(part.len()).ok()?.to_le_bytes());
            b.extend_from_slice(part);
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        if b.len() > COPY_BYTES {
            return None;
        }
        b.resize(COPY_BYTES, 0);
        Some(b)
    }

    /// Reads one copy.
    pub fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b.get(..8) != Some(MAGIC.as_slice()) {
            return Err(HeaderError::Absent);
        }
        let mut at = 8usize;
        let mut take = |n: usize| -> Result<&[u8], HeaderError> {
            let s = at
                .checked_add(n)
                .and_then(|end| b.get(at..end))
                .ok_or(HeaderError::Damaged("runs past its 4 KiB"))?;
            at += n;
            Ok(s)
        };
        let version = u32::from_le_bytes(take(4)?.try_into().unwrap_or_default());
        if version != VERSION {
            return Err(HeaderError::Damaged("an unknown version"));
        }
        let generation = u64::from_le_bytes(take(8)?.try_into().unwrap_or_default());
        let state = match take(1)?[0] {
            1 => State::Formatting,
            2 => State::Ready,
            3 => State::Plain,
            _ => return Err(HeaderError::Damaged("an unknown state")),
        };
        let cipher_len = usize::from(take(1)?[0]);
        let cipher = String::from_utf8(take(cipher_len)?.to_vec())
            .map_err(|_| HeaderError::Damaged("a cipher name that is not text"))?;
        let key_bytes = u16::from_le_bytes(take(2)?.try_into().unwrap_or_default());
        let mut part = || -> Result<Vec<u8>, HeaderError> {
            let n = u16::from_le_bytes(take(2)?.try_into().unwrap_or_default());
            Ok(take(usize::from(n))?.to_vec())
        };
        let private = part()?;
        let public = part()?;
        let end = at;
        let crc = u32::from_le_bytes(
            b.get(end..end + 4)
                .ok_or(HeaderError::Damaged("no CRC"))?
                .try_into()
                .unwrap_or_default(),
        );
        if crc != crc32fast::hash(&b[..end]) {
            return Err(HeaderError::Damaged(
                "the CRC does not match (a torn write?)",
            ));
        }
        Ok(Header {
            generation,
            state,
            cipher,
            key_bytes,
            sealed: Sealed { private, public },
        })
    }

    /// The header of the two copies in `area` (at least 8 KiB): the valid one of the highest
    /// generation. `Absent` only when neither copy has the magic; a magic with no valid copy
    /// is damage, which must not be mistaken for a new disk (re-enrolling would format it).
    pub fn pick(area: &[u8]) -> Result<Header, HeaderError> {
        let copies = [
            Header::decode(area.get(..COPY_BYTES).unwrap_or_default()),
            Header::decode(area.get(COPY_BYTES..2 * COPY_BYTES).unwrap_or_default()),
        ];
        let best = copies
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .max_by_key(|h| h.generation);
        match best {
            Some(h) => Ok(h.clone()),
            None if copies.iter().all(|c| c == &Err(HeaderError::Absent)) => {
                Err(HeaderError::Absent)
            }
            None => Err(copies
                .into_iter()
                .find_map(|c| c.err().filter(|e| e != &HeaderError::Absent))
                .unwrap_or(HeaderError::Absent)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(generation: u64, state: State) -> Header {
        Header {
            generation,
            state,
            cipher: CIPHER.into(),
            key_bytes: KEY_BYTES,
            sealed: Sealed {
                private: vec![0, 3, 1, 2, 3],
                public: vec![0, 2, 9, 9],
            },
        }
    }

    #[test]
    fn a_header_round_trips() {
        let h = header(7, State::Ready);
        let b = h.encode().unwrap();
        assert_eq!(b.len(), COPY_BYTES);
        assert_eq!(Header::decode(&b), Ok(h));
    }

    #[test]
    fn the_valid_copy_of_the_highest_generation_wins() {
        let mut area = vec![0u8; 2 * COPY_BYTES];
        assert_eq!(Header::pick(&area), Err(HeaderError::Absent));
        area[..COPY_BYTES].copy_from_slice(&header(1, State::Formatting).encode().unwrap());
        assert_eq!(Header::pick(&area).unwrap().state, State::Formatting);
        area[COPY_BYTES..].copy_from_slice(&header(2, State::Ready).encode().unwrap());
        assert_eq!(Header::pick(&area).unwrap().state, State::Ready);
        // A torn newer copy: the older one stands.
        area[COPY_BYTES + 30] ^= 0xFF;
        assert_eq!(Header::pick(&area).unwrap().generation, 1);
        // Both damaged: damage, not a new disk.
        area[30] ^= 0xFF;
        assert!(matches!(Header::pick(&area), Err(HeaderError::Damaged(_))));
    }

    #[test]
    fn hostile_lengths_are_refused_not_followed() {
        let mut b = header(1, State::Ready).encode().unwrap();
        // The private blob's length, after magic(8) version(4) generation(8) state(1)
        // cipher(1 + 15) key(2).
        let at = 8 + 4 + 8 + 1 + 1 + CIPHER.len() + 2;
        b[at..at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(Header::decode(&b), Err(HeaderError::Damaged(_))));
        assert!(matches!(
            Header::decode(b"SLATEDAT"),
            Err(HeaderError::Damaged(_))
        ));
    }
}
