//! A minimal reader of DER (X.690) for the few structures Slate checks itself: Authenticode's
//! PKCS#7 SignedData and an X.509 certificate's public key. Definite lengths only, as DER
//! requires; every length is checked against the bytes present.

/// Why bytes are not the DER expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed DER: {why} (at byte {at} of the structure)")]
pub struct DerError {
    /// What was wrong.
    pub why: &'static str,
    /// Offset from the start of the outermost structure.
    pub at: usize,
}

/// Universal and context tags Slate reads.
pub mod tag {
    /// INTEGER.
    pub const INTEGER: u8 = 0x02;
    /// BIT STRING.
    pub const BIT_STRING: u8 = 0x03;
    /// OCTET STRING.
    pub const OCTET_STRING: u8 = 0x04;
    /// OBJECT IDENTIFIER.
    pub const OID: u8 = 0x06;
    /// SEQUENCE (constructed).
    pub const SEQUENCE: u8 = 0x30;
    /// SET (constructed).
    pub const SET: u8 = 0x31;
    /// `[0]` constructed (EXPLICIT, or an IMPLICIT SET).
    pub const CONTEXT_0: u8 = 0xa0;
    /// `[1]` constructed.
    pub const CONTEXT_1: u8 = 0xa1;
}

/// One element: its tag, its contents, and the whole encoding (tag and length included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The identifier octet (single-byte tags only).
    pub tag: u8,
    /// The contents octets.
    pub value: &'a [u8],
    /// Tag, length and contents.
    pub whole: &'a [u8],
    /// Offset of the element from the start of the outermost structure.
    pub at: usize,
}

/// A cursor over consecutive elements.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// Reads the elements of `bytes` (an outermost structure).
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            base: 0,
        }
    }

    /// The elements inside a constructed element.
    pub fn inside(t: &Tlv<'a>) -> Reader<'a> {
        Reader {
            bytes: t.value,
            pos: 0,
            base: t.at + (t.whole.len() - t.value.len()),
        }
    }

    /// True when every element has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn err(&self, why: &'static str) -> DerError {
        DerError {
            why,
            at: self.base + self.pos,
        }
    }

    /// The next element, whatever its tag.
    pub fn any(&mut self) -> Result<Tlv<'a>, DerError> {
        let start = self.pos;
        let tag = *self.bytes.get(start).ok_or(self.err("unexpected end"))?;
        if tag & 0x1f == 0x1f {
            return Err(self.err("multi-byte tag"));
        }
        let first = *self.bytes.get(start + 1).ok_or(self.err("no length"))?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(self.err("indefinite or oversized length"));
            }
            let digits = self
                .bytes
                .get(start + 2..start + 2 + n)
                .ok_or(self.err("truncated length"))?;
            let len = digits
                .iter()
                .fold(0usize, |acc, &d| (acc << 8) | usize::from(d));
            (len, 2 + n)
        };
        let end = start
            .checked_add(header)
            .and_then(|v| v.checked_add(len))
            .filter(|&e| e <= self.bytes.len())
            .ok_or(self.err("length beyond the data"))?;
        self.pos = end;
        Ok(Tlv {
            tag,
            value: &self.bytes[start + header..end],
            whole: &self.bytes[start..end],
            at: self.base + start,
        })
    }

    /// The next element, which must have tag `tag`.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
        let at = self.pos;
        let t = self.any()?;
        if t.tag != tag {
            return Err(DerError {
                why: what,
                at: self.base + at,
            });
        }
        Ok(t)
    }

    /// The next element if it has tag `tag` (an OPTIONAL field), else nothing is consumed.
    pub fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.bytes.get(self.pos) == Some(&tag) {
            self.any().map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_elements_and_refuses_lengths_beyond_the_data() {
        // SEQUENCE { INTEGER 5, OCTET STRING "ab" }
        let b = [0x30, 0x07, 0x02, 0x01, 0x05, 0x04, 0x02, b'a', b'b'];
        let mut r = Reader::new(&b);
        let seq = r.expect(tag::SEQUENCE, "seq").unwrap();
        assert!(r.is_empty());
        let mut inner = Reader::inside(&seq);
        assert_eq!(inner.expect(tag::INTEGER, "int").unwrap().value, &[5]);
        let s = inner.expect(tag::OCTET_STRING, "os").unwrap();
        assert_eq!((s.value, s.at), (&b"ab"[..], 5));
        assert!(inner.optional(tag::CONTEXT_0).unwrap().is_none());
        assert_eq!(
            Reader::new(&[0x30, 0x05, 0x02]).any().unwrap_err().why,
            "length beyond the data"
        );
        assert!(Reader::new(&[0x30, 0x80]).any().is_err());
        assert!(Reader::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff])
            .any()
            .is_err());
    }
}
