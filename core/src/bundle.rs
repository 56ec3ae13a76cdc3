//! Bundles (`*.slate`): a POSIX ustar archive read and written as a stream (DESIGN §7).
//!
//! ```text
//! [512 header "manifest.toml"][data, padded to 512]
//! [512 header "manifest.sig" ][data, padded to 512]
//! [512 header "rootfs.img"   ][data, padded to 512]     format 1: rootfs.img, vmlinuz,
//! [512 header "vmlinuz"      ][data, padded to 512]     initrd.img; format 2: uki-a.efi,
//! [512 header "initrd.img"   ][data, padded to 512]     uki-b.efi, rootfs.img
//! [1024 zero bytes]
//! ustar header: name[100] mode[8] uid[8] gid[8] size[12] mtime[12] chksum[8] typeflag[1]
//!               linkname[100] magic "ustar\0" version "00" uname[32] gname[32] devmajor[8]
//!               devminor[8] prefix[155] pad[12]; numbers in octal, chksum = byte sum with
//!               the chksum field read as spaces.
//! ```
//! The reader accepts only regular files with exactly the expected names in this order, so a
//! device never sees a path, link or extra entry; the manifest and signature can be verified
//! before a single artifact byte is read. Every error names the byte offset it concerns.

use std::io::{self, Read, Write};

/// Size of a tar block.
pub const BLOCK: u64 = 512;
/// [`BLOCK`] as a buffer length.
const BLOCK_BYTES: usize = 512;

/// Where each entry's data starts, for entries of `sizes` in order whose first header is at
/// `first_header`: a header block, then the data padded to whole blocks. What lets a reader
/// that has only a bundle's head (a delta) know where its root image lies. None on overflow.
pub fn data_offsets(first_header: u64, sizes: impl IntoIterator<Item = u64>) -> Option<Vec<u64>> {
    let mut at = first_header;
    let mut out = Vec::new();
    for size in sizes {
        out.push(at.checked_add(BLOCK)?);
        at = at
            .checked_add(BLOCK)?
            .checked_add(size.div_ceil(BLOCK).checked_mul(BLOCK)?)?;
    }
    Some(out)
}
const _: () = assert!(BLOCK_BYTES as u64 == BLOCK);

/// Why a bundle stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading failed.
    #[error("reading the bundle at byte {offset}: {source}")]
    Io {
        /// Byte offset.
        offset: u64,
        /// Cause.
        source: io::Error,
    },
    /// The stream ended early.
    #[error("bundle is truncated: it ends at byte {offset}, inside {what}")]
    Truncated {
        /// Where it ended.
        offset: u64,
        /// What was being read.
        what: String,
    },
    /// A header is not a ustar header.
    #[error("bad tar header at byte {offset}: {why}")]
    BadHeader {
        /// Header offset.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// Entries are missing, extra, renamed or out of order.
    #[error("tar entry at byte {offset} is {found:?}; expected {expected:?} (a bundle holds manifest.toml, manifest.sig, then the manifest's artifacts in its order)")]
    UnexpectedEntry {
        /// Header offset.
        offset: u64,
        /// What should be there.
        expected: String,
        /// What is there.
        found: String,
    },
    /// An entry is larger than allowed.
    #[error("{name} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// Entry name.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Bytes follow the end-of-archive marker (two zero blocks).
    #[error("bundle has bytes after its end-of-archive marker, at byte {offset}; a bundle ends with exactly two zero blocks")]
    Trailing {
        /// First byte that should not be there.
        offset: u64,
    },
    /// The entry's size differs from what the manifest says.
    #[error("{name} is {found} bytes in the archive but the manifest says {expected}")]
    SizeMismatch {
        /// Entry name.
        name: String,
        /// Manifest size.
        expected: u64,
        /// Archive size.
        found: u64,
    },
}

/// A bundle being read.
pub struct BundleReader<R> {
    r: R,
    offset: u64,
}

fn octal(field: &[u8]) -> Option<u64> {
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

impl<R: Read> BundleReader<R> {
    /// Wraps a stream positioned at the start of a bundle.
    pub fn new(r: R) -> BundleReader<R> {
        BundleReader { r, offset: 0 }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), BundleError> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(BundleError::Truncated {
                        offset: self.offset,
                        what: what.to_string(),
                    })
                }
                Ok(n) => {
                    got += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(BundleError::Io {
                        offset: self.offset,
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    /// Reads the next header, which must be a regular file named `name` of at most `max`
    /// bytes; returns its size.
    pub fn expect_entry(&mut self, name: &str, max: u64) -> Result<u64, BundleError> {
        let at = self.offset;
        let mut h = [0u8; BLOCK_BYTES];
        self.fill(&mut h, &format!("the header of {name}"))?;
        if h.iter().all(|&b| b == 0) {
            return Err(BundleError::UnexpectedEntry {
                offset: at,
                expected: name.into(),
                found: "end of archive".into(),
            });
        }
        let bad = |why: String| BundleError::BadHeader { offset: at, why };
        let stored =
            octal(&h[148..156]).ok_or_else(|| bad("checksum field is not octal".into()))?;
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if stored != sum {
            return Err(bad(format!(
                "checksum {stored:o} does not match the header ({sum:o})"
            )));
        }
        if &h[257..262] != b"ustar" {
            return Err(bad("not a ustar header".into()));
        }
        let raw_name = &h[0..100];
        let found: String = String::from_utf8_lossy(
            &raw_name[..raw_name.iter().position(|&b| b == 0).unwrap_or(100)],
        )
        .into_owned();
        let prefix_empty = h[345..500].iter().all(|&b| b == 0);
        let typeflag = h[156];
        if found != name || !prefix_empty {
            return Err(BundleError::UnexpectedEntry {
                offset: at,
                expected: name.into(),
                found,
            });
        }
        if typeflag != b'0' && typeflag != 0 {
            return Err(bad(format!(
                "{name} is not a regular file (type {:?})",
                typeflag as char
            )));
        }
        let size = octal(&h[124..136]).ok_or_else(|| bad("size field is not octal".into()))?;
        if size > max {
            return Err(BundleError::TooLarge {
                name: name.into(),
                size,
                max,
            });
        }
        Ok(size)
    }

    fn skip_padding(&mut self, size: u64, name: &str) -> Result<(), BundleError> {
        let pad = (BLOCK - size % BLOCK) % BLOCK;
        let mut b = [0u8; BLOCK_BYTES];
        self.fill(
            &mut b[..crate::num::usize_of(pad)],
            &format!("the padding after {name}"),
        )
    }

    /// Reads an entry's data whole (for the small manifest and signature files).
    pub fn read_small(&mut self, name: &str, size: u64) -> Result<Vec<u8>, BundleError> {
        let mut v = vec![0u8; crate::num::usize_of(size)];
        self.fill(&mut v, name)?;
        self.skip_padding(size, name)?;
        Ok(v)
    }

    /// Streams an entry's data in chunks to `sink` (which may hash and write it).
    pub fn stream<E>(
        &mut self,
        name: &str,
        size: u64,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Result<(), E>, BundleError> {
        let mut buf = vec![0u8; crate::num::usize_of((1 << 20).min(size.max(1)))];
        let mut left = size;
        while left > 0 {
            let n = crate::num::usize_of(left.min(buf.len() as u64));
            self.fill(&mut buf[..n], name)?;
            if let Err(e) = sink(&buf[..n]) {
                return Ok(Err(e));
            }
            left -= n as u64;
        }
        self.skip_padding(size, name)?;
        Ok(Ok(()))
    }

    /// Reads the end-of-archive marker, exactly two zero blocks and then the end of the
    /// stream: anything else there is an extra entry or trailing bytes, which a signed bundle
    /// never has (and which could smuggle data past a reader that stops early).
    pub fn expect_end(&mut self) -> Result<(), BundleError> {
        let at = self.offset;
        let mut b = [0u8; 2 * BLOCK_BYTES];
        self.fill(&mut b, "the end-of-archive marker")?;
        if let Some(i) = b[BLOCK_BYTES..].iter().position(|&x| x != 0) {
            if b[..BLOCK_BYTES].iter().all(|&x| x == 0) {
                return Err(BundleError::Trailing {
                    offset: at + (BLOCK_BYTES + i) as u64,
                });
            }
        }
        if b[..BLOCK_BYTES].iter().any(|&x| x != 0) {
            let name: String =
                String::from_utf8_lossy(&b[..b[..100].iter().position(|&c| c == 0).unwrap_or(100)])
                    .into_owned();
            return Err(BundleError::UnexpectedEntry {
                offset: at,
                expected: "end of archive".into(),
                found: name,
            });
        }
        let mut one = [0u8; 1];
        loop {
            match self.r.read(&mut one) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(BundleError::Trailing {
                        offset: self.offset,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(BundleError::Io {
                        offset: self.offset,
                        source: e,
                    })
                }
            }
        }
    }
}

/// Writes a bundle: its head (`manifest.toml`, `manifest.sig`), then entries, then the
/// end-of-archive marker, every entry with the same time. The one writer of bundles for
/// `slate bundle`, `slate sign` and the tests' hostile corpus (which writes out-of-order and
/// duplicate entries through the same calls), so all of them are the archive [`BundleReader`]
/// and `tar` read.
pub struct Writer<W> {
    w: W,
    mtime: i64,
}

impl<W: Write> Writer<W> {
    /// A writer into `w` whose entries carry `mtime` (unix seconds).
    pub fn new(w: W, mtime: i64) -> Writer<W> {
        Writer { w, mtime }
    }

    /// `manifest.toml` (the exact bytes the signatures cover) and `manifest.sig`.
    pub fn head(&mut self, manifest: &[u8], signatures: &[u8]) -> io::Result<()> {
        self.entry("manifest.toml", manifest)?;
        self.entry("manifest.sig", signatures)
    }

    /// A whole entry from memory.
    pub fn entry(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        write_entry(&mut self.w, name, data, self.mtime)
    }

    /// An entry of `size` bytes streamed from `data`, which must hold exactly that many (a
    /// file that changed while it was bundled is an error, not a corrupt bundle).
    pub fn stream(&mut self, name: &str, size: u64, data: &mut impl io::Read) -> io::Result<()> {
        self.entry_with(name, size, |w| {
            let copied = io::copy(&mut data.take(size), w)?;
            let mut extra = [0u8; 1];
            if data.read(&mut extra)? != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{name}: more than {size} bytes"),
                ));
            }
            Ok(copied)
        })
    }

    /// An entry of `size` bytes that `fill` writes into the archive, returning how many it
    /// wrote (for data that arrives pushed, such as another bundle's stream).
    pub fn entry_with(
        &mut self,
        name: &str,
        size: u64,
        fill: impl FnOnce(&mut W) -> io::Result<u64>,
    ) -> io::Result<()> {
        write_header(&mut self.w, name, size, self.mtime)?;
        let written = fill(&mut self.w)?;
        if written != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: {written} bytes of {size}"),
            ));
        }
        write_padding(&mut self.w, size)
    }

    /// The archive so far, for a test that writes a malformed entry by hand.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }

    /// The writer back without an end-of-archive marker (a truncated archive, for tests).
    pub fn into_inner(self) -> W {
        self.w
    }

    /// Writes the end-of-archive marker and gives the writer back (to flush and sync it).
    pub fn finish(mut self) -> io::Result<W> {
        write_end(&mut self.w)?;
        Ok(self.w)
    }
}

/// Writes one ustar entry header.
fn write_header<W: Write>(w: &mut W, name: &str, size: u64, mtime: i64) -> io::Result<()> {
    if name.len() >= 100 || size >= 1 << 33 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name}: name or size too large for ustar"),
        ));
    }
    let mut h = [0u8; BLOCK_BYTES];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(format!("{:011o}\0", mtime.max(0)).as_bytes());
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    w.write_all(&h)
}

/// Writes the zero padding after `size` bytes of data.
fn write_padding<W: Write>(w: &mut W, size: u64) -> io::Result<()> {
    let pad = (BLOCK - size % BLOCK) % BLOCK;
    w.write_all(&vec![0u8; pad as usize])
}

/// Writes a whole small entry.
fn write_entry<W: Write>(w: &mut W, name: &str, data: &[u8], mtime: i64) -> io::Result<()> {
    write_header(w, name, data.len() as u64, mtime)?;
    w.write_all(data)?;
    write_padding(w, data.len() as u64)
}

/// Writes the end-of-archive marker.
fn write_end<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(&[0u8; 2 * BLOCK_BYTES])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        for (n, d) in entries {
            write_entry(&mut v, n, d, 0).unwrap();
        }
        write_end(&mut v).unwrap();
        v
    }

    #[test]
    fn entries_read_back_in_order() {
        let a = archive(&[("manifest.toml", b"m"), ("manifest.sig", b"sig")]);
        let mut r = BundleReader::new(&a[..]);
        let n = r.expect_entry("manifest.toml", 10).unwrap();
        assert_eq!(r.read_small("manifest.toml", n).unwrap(), b"m");
        let n = r.expect_entry("manifest.sig", 10).unwrap();
        let mut got = Vec::new();
        r.stream::<()>("manifest.sig", n, |c| {
            got.extend_from_slice(c);
            Ok(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(got, b"sig");
        r.expect_end().unwrap();
    }

    #[test]
    fn wrong_order_extra_and_truncated_are_refused_with_offsets() {
        let a = archive(&[("manifest.sig", b"x")]);
        let e = BundleReader::new(&a[..])
            .expect_entry("manifest.toml", 10)
            .unwrap_err();
        assert!(
            matches!(e, BundleError::UnexpectedEntry { offset: 0, .. }),
            "{e}"
        );
        let a = archive(&[("manifest.toml", b"x"), ("../evil", b"y")]);
        let mut r = BundleReader::new(&a[..]);
        let n = r.expect_entry("manifest.toml", 10).unwrap();
        r.read_small("manifest.toml", n).unwrap();
        assert!(matches!(
            r.expect_end(),
            Err(BundleError::UnexpectedEntry { offset: 1024, .. })
        ));
        let a = archive(&[("manifest.toml", &[7u8; 600])]);
        let mut r = BundleReader::new(&a[..700]);
        let n = r.expect_entry("manifest.toml", 1000).unwrap();
        assert!(matches!(
            r.read_small("manifest.toml", n),
            Err(BundleError::Truncated { offset: 700, .. })
        ));
        let mut bad = archive(&[("manifest.toml", b"x")]);
        bad[0] = b'M';
        assert!(matches!(
            BundleReader::new(&bad[..]).expect_entry("manifest.toml", 10),
            Err(BundleError::BadHeader { offset: 0, .. })
        ));
        assert!(matches!(
            BundleReader::new(&archive(&[("manifest.toml", &[0; 20])])[..])
                .expect_entry("manifest.toml", 10),
            Err(BundleError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_end_is_exactly_two_zero_blocks() {
        let ok = archive(&[("manifest.toml", b"m")]);
        let read_end = |bytes: &[u8]| {
            let mut r = BundleReader::new(bytes);
            let n = r.expect_entry("manifest.toml", 10).unwrap();
            r.read_small("manifest.toml", n).unwrap();
            r.expect_end()
        };
        read_end(&ok).unwrap();
        let mut extra = ok.clone();
        extra.push(0);
        assert!(matches!(
            read_end(&extra),
            Err(BundleError::Trailing { offset: 2048 })
        ));
        let mut second = ok.clone();
        second[1024 + 600] = 9;
        assert!(matches!(
            read_end(&second),
            Err(BundleError::Trailing { offset: 1624 })
        ));
        assert!(matches!(
            read_end(&ok[..ok.len() - 512]),
            Err(BundleError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn any_data_round_trips(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let a = archive(&[("rootfs.img", &data)]);
            let mut r = BundleReader::new(&a[..]);
            let n = r.expect_entry("rootfs.img", u64::MAX).unwrap();
            prop_assert_eq!(r.read_small("rootfs.img", n).unwrap(), data);
            r.expect_end().unwrap();
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut r = BundleReader::new(&data[..]);
            let _ = r.expect_entry("manifest.toml", 1 << 16).and_then(|n| r.read_small("manifest.toml", n));
        }
    }
}
