//! Just enough of the PE/COFF format (Microsoft PE and COFF Specification) to read a Unified
//! Kernel Image: its sections (`.cmdline`, `.osrel`, `.linux`, `.initrd`), where the next
//! section may go, and whether it carries a signature.
//!
//! Pure and bounds-checked: a UKI comes from a bundle or the ESP, so every offset in it is
//! outside input.

/// Why bytes are not a PE file this module can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a PE image: {why} (at byte {at})")]
pub struct PeError {
    /// What was wrong.
    pub why: &'static str,
    /// The byte offset of the field at fault.
    pub at: usize,
}

/// One entry of the section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name (up to 8 bytes, NULs stripped).
    pub name: String,
    /// Size once loaded (the data's true length for the sections a UKI adds).
    pub virtual_size: u32,
    /// Address relative to the image base once loaded.
    pub virtual_address: u32,
    /// Bytes in the file (padded to the file alignment).
    pub raw_size: u32,
    /// Where those bytes start in the file.
    pub raw_offset: u32,
}

/// The parts of a PE image a UKI needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pe {
    /// Preferred load address (objcopy's section addresses include it).
    pub image_base: u64,
    /// Alignment of sections once loaded.
    pub section_alignment: u32,
    /// Size of the loaded image: the first free address above every section.
    pub size_of_image: u32,
    /// Bytes of headers (DOS, PE, optional, section table) at the start of the file.
    pub size_of_headers: u32,
    /// Offset of the optional header's `CheckSum` field (Authenticode skips it).
    pub checksum_offset: usize,
    /// Offset of the certificate-table data directory entry (Authenticode skips it), if the
    /// optional header has one.
    pub cert_dir_offset: Option<usize>,
    /// The certificate table (the Authenticode signatures): file offset and length.
    pub cert_table: Option<(u32, u32)>,
    /// The section table, in file order.
    pub sections: Vec<Section>,
}

const PE32: u16 = 0x10b;
const PE32_PLUS: u16 = 0x20b;
/// Index of the certificate table among the data directories.
const CERT_DIR: usize = 4;

fn bytes<const N: usize>(b: &[u8], at: usize, why: &'static str) -> Result<[u8; N], PeError> {
    b.get(at..at.checked_add(N).ok_or(PeError { why, at })?)
        .and_then(|s| s.try_into().ok())
        .ok_or(PeError { why, at })
}

fn u16_at(b: &[u8], at: usize, why: &'static str) -> Result<u16, PeError> {
    bytes(b, at, why).map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize, why: &'static str) -> Result<u32, PeError> {
    bytes(b, at, why).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize, why: &'static str) -> Result<u64, PeError> {
    bytes(b, at, why).map(u64::from_le_bytes)
}

impl Pe {
    /// Reads the headers and section table.
    pub fn parse(b: &[u8]) -> Result<Pe, PeError> {
        if b.get(..2) != Some(&b"MZ"[..]) {
            return Err(PeError {
                why: "no MZ signature",
                at: 0,
            });
        }
        let pe = u32_at(b, 0x3c, "truncated DOS header")? as usize;
        if pe.checked_add(4).and_then(|end| b.get(pe..end)) != Some(&b"PE\0\0"[..]) {
            return Err(PeError {
                why: "no PE signature where the DOS header points",
                at: pe,
            });
        }
        let coff = pe + 4;
        let sections = usize::from(u16_at(b, coff + 2, "truncated COFF header")?);
        let opt_size = usize::from(u16_at(b, coff + 16, "truncated COFF header")?);
        let opt = coff + 20;
        let magic = u16_at(b, opt, "truncated optional header")?;
        let (image_base, dirs_count_at) = match magic {
            PE32_PLUS => (u64_at(b, opt + 24, "truncated optional header")?, opt + 108),
            PE32 => (
                u64::from(u32_at(b, opt + 28, "truncated optional header")?),
                opt + 92,
            ),
            _ => {
                return Err(PeError {
                    why: "unknown optional header magic",
                    at: opt,
                })
            }
        };
        if dirs_count_at + 4 > opt + opt_size {
            return Err(PeError {
                why: "optional header too short",
                at: coff + 16,
            });
        }
        let section_alignment = u32_at(b, opt + 32, "truncated optional header")?;
        let size_of_image = u32_at(b, opt + 56, "truncated optional header")?;
        let size_of_headers = u32_at(b, opt + 60, "truncated optional header")?;
        let dirs = u32_at(b, dirs_count_at, "truncated optional header")? as usize;
        let cert_at = dirs_count_at + 4 + CERT_DIR * 8;
        let (cert_dir_offset, cert_table) = if dirs > CERT_DIR && cert_at + 8 <= opt + opt_size {
            let off = u32_at(b, cert_at, "truncated data directory")?;
            let len = u32_at(b, cert_at + 4, "truncated data directory")?;
            (Some(cert_at), (len > 0).then_some((off, len)))
        } else {
            (None, None)
        };
        let table = opt + opt_size;
        let mut out = Vec::with_capacity(sections.min(96));
        for i in 0..sections {
            let at = table + i * 40;
            let raw = b.get(at..at.saturating_add(40)).ok_or(PeError {
                why: "truncated section table",
                at,
            })?;
            let name = String::from_utf8_lossy(&raw[..8])
                .trim_end_matches('\0')
                .to_string();
            out.push(Section {
                name,
                virtual_size: u32_at(raw, 8, "section")?,
                virtual_address: u32_at(raw, 12, "section")?,
                raw_size: u32_at(raw, 16, "section")?,
                raw_offset: u32_at(raw, 20, "section")?,
            });
        }
        Ok(Pe {
            image_base,
            section_alignment,
            size_of_image,
            size_of_headers,
            checksum_offset: opt + 64,
            cert_dir_offset,
            cert_table,
            sections: out,
        })
    }

    /// The bytes of section `name` (its loaded size, or its bytes in the file if fewer), or
    /// None when there is no such section or it points outside the file.
    pub fn section<'a>(&self, file: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let s = self.sections.iter().find(|s| s.name == name)?;
        let len = s.virtual_size.min(s.raw_size) as usize;
        let start = s.raw_offset as usize;
        file.get(start..start.checked_add(len)?)
    }

    /// True when the file carries an Authenticode signature (a certificate table).
    pub fn is_signed(&self) -> bool {
        self.cert_table.is_some()
    }
}

/// Addresses (image base included, as objcopy takes them) for sections of `sizes` bytes
/// appended above every section of `pe`, each aligned to the section alignment: what systemd's
/// `ukify` computes, so a kernel of any size fits.
pub fn next_addresses(pe: &Pe, sizes: &[usize]) -> Vec<u64> {
    let align = u64::from(pe.section_alignment.max(4096));
    let up = |x: u64| x.div_ceil(align).saturating_mul(align);
    let mut next = up(u64::from(pe.size_of_image));
    sizes
        .iter()
        .map(|&size| {
            let here = next;
            next = up(here.saturating_add(size as u64));
            pe.image_base.saturating_add(here)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: DOS header, COFF header, optional header with 16 directories
    /// and one section holding `data`.
    fn tiny(data: &[u8], name: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        let opt_size: u16 = 112 + 16 * 8;
        b[coff + 16..coff + 18].copy_from_slice(&opt_size.to_le_bytes());
        let opt = coff + 20;
        b[opt..opt + 2].copy_from_slice(&PE32_PLUS.to_le_bytes());
        b[opt + 24..opt + 32].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        b[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        b[opt + 56..opt + 60].copy_from_slice(&0x3000u32.to_le_bytes());
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let sec = opt + usize::from(opt_size);
        let mut n = [0u8; 8];
        n[..name.len()].copy_from_slice(name);
        b[sec..sec + 8].copy_from_slice(&n);
        b[sec + 8..sec + 12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        b[sec + 12..sec + 16].copy_from_slice(&0x2000u32.to_le_bytes());
        b[sec + 16..sec + 20].copy_from_slice(&0x200u32.to_le_bytes());
        b[sec + 20..sec + 24].copy_from_slice(&0x200u32.to_le_bytes());
        b[0x200..0x200 + data.len()].copy_from_slice(data);
        b
    }

    #[test]
    fn reads_a_section_by_its_loaded_size() {
        let b = tiny(b"slate.slot=a", b".cmdline");
        let pe = Pe::parse(&b).unwrap();
        assert_eq!(pe.section(&b, ".cmdline"), Some(&b"slate.slot=a"[..]));
        assert_eq!(pe.section(&b, ".linux"), None);
        assert!(!pe.is_signed());
        assert_eq!(pe.image_base, 0x1_0000_0000);
    }

    #[test]
    fn new_sections_go_above_the_image_aligned() {
        let b = tiny(b"x", b".text");
        let pe = Pe::parse(&b).unwrap();
        assert_eq!(
            next_addresses(&pe, &[10, 5000, 1]),
            vec![0x1_0000_3000, 0x1_0000_4000, 0x1_0000_6000]
        );
    }

    #[test]
    fn bad_offsets_are_errors_not_panics() {
        assert_eq!(Pe::parse(b"MZ").unwrap_err().at, 0x3c);
        let mut b = tiny(b"x", b".text");
        b[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Pe::parse(&b).is_err());
        let mut b = tiny(b"x", b".text");
        // A section that claims bytes beyond the file.
        let sec = 0x84 + 20 + 112 + 128;
        b[sec + 20..sec + 24].copy_from_slice(&u32::MAX.to_le_bytes());
        let pe = Pe::parse(&b).unwrap();
        assert_eq!(pe.section(&b, ".text"), None);
    }
}
