//! Check and repair of the damage a power cut leaves on a FAT32 volume (the ESP).
//!
//! The agent writes the ESP only in short read-write windows, but a cut inside one leaves what
//! Linux had in flight: the dirty bit, clusters allocated in the FAT that no directory entry
//! reaches yet, a file whose size and cluster chain disagree, FAT copies that differ, a stale
//! free count, the long-name parts of an entry whose short entry never landed. Firmware and
//! systemd-boot read such a volume, but Linux refuses to clear a dirty bit it did not set, and
//! `fsck.fat -n` (our oracle) rejects it. The device has no `fsck.fat`, so the agent runs
//! [`repair`] on the unmounted partition at every boot: it makes the same choices
//! `fsck.fat -a` makes for these faults (end broken chains, cut files to what their chain
//! holds, free lost clusters, keep the first FAT) and never touches a clean volume.
//!
//! ```text
//! boot sector (sector 0, little-endian):
//!   11 bytes per sector u16    13 sectors per cluster u8   14 reserved sectors u16
//!   16 FAT copies u8           17 root entries u16 (0)     19 total sectors u16 (0)
//!   22 sectors per FAT u16 (0) 32 total sectors u32        36 sectors per FAT u32
//!   44 root cluster u32        48 FSInfo sector u16        65 state u8 (bit 0: dirty)
//!  510 0x55 0xAA
//! FAT: one u32 per cluster (low 28 bits): 0 free, next cluster, 0x0FFFFFF7 bad, >= 0x0FFFFFF8 end
//! FSInfo: 0 0x41615252   484 0x61417272   488 free clusters u32   492 next free u32
//! directory entry (32 bytes): 0 name[11] (0x00 ends the folder, 0xE5 deleted)
//!   11 attributes (0x0F long-name part, 0x10 folder, 0x08 volume label)
//!   20 first cluster high u16   26 first cluster low u16   28 size u32
//! long-name part: 0 order (0x40 marks the last, low 5 bits count down to 1)
//!   13 checksum of the 8.3 name of the short entry that follows
//! ```

use crate::le::{u16_at, u32_at};
use crate::num::{u32_of, usize_of};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

const FREE: u32 = 0;
const BAD: u32 = 0x0FFF_FFF7;
const END_MIN: u32 = 0x0FFF_FFF8;
const END: u32 = 0x0FFF_FFFF;
const VALUE_MASK: u32 = 0x0FFF_FFFF;
const DIRTY: u8 = 0x01;
const STATE_OFFSET: usize = 65;
const ENTRY: usize = 32;
const ATTR_LONG_NAME: u8 = 0x0F;
const ATTR_VOLUME: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;
const DELETED: u8 = 0xE5;
const FSINFO_LEAD: u32 = 0x4161_5252;
const FSINFO_STRUCT: u32 = 0x6141_7272;
const FSINFO_FREE: usize = 488;
const UNKNOWN_FREE: u32 = 0xFFFF_FFFF;

/// Why a volume could not be checked. Nothing has been written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// Reading or writing the device failed.
    #[error("reading or writing the volume: {0}")]
    Io(#[from] io::Error),
    /// The boot sector does not describe a FAT32 volume this code can check.
    #[error("not a FAT32 volume: {0}")]
    NotFat32(String),
}

/// What a check found (and [`repair`] fixed). All zero/false for a clean volume.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repairs {
    /// The boot sector's dirty bit was set (volume not unmounted cleanly).
    pub dirty_bit: bool,
    /// The second FAT differed from the first (the first is kept, as `fsck.fat -a` does).
    pub fats_differed: bool,
    /// Clusters allocated in the FAT but reached by no directory entry (freed).
    pub lost_clusters: u32,
    /// Chains that ran into a free, bad, out-of-range or already used cluster (ended there).
    pub chains_cut: u32,
    /// Files whose size disagreed with their chain, or folders with a size (corrected).
    pub sizes_fixed: u32,
    /// Entries that cannot be kept: folders without a valid first cluster (deleted).
    pub entries_removed: u32,
    /// Long-name parts not followed by their short entry (deleted).
    pub orphan_names: u32,
    /// The FSInfo free-cluster count was wrong (corrected).
    pub free_count: bool,
}

impl Repairs {
    /// Whether the volume was clean.
    pub fn is_clean(&self) -> bool {
        *self == Repairs::default()
    }
}

impl fmt::Display for Repairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.dirty_bit {
            parts.push("dirty bit".to_string());
        }
        if self.fats_differed {
            parts.push("FAT copies differed".to_string());
        }
        for (n, what) in [
            (self.lost_clusters, "lost clusters"),
            (self.chains_cut, "broken chains"),
            (self.sizes_fixed, "wrong sizes"),
            (self.entries_removed, "broken entries"),
            (self.orphan_names, "orphaned long names"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if self.free_count {
            parts.push("free count".to_string());
        }
        if parts.is_empty() {
            f.write_str("clean")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Reports what [`repair`] would fix, without writing.
pub fn check<V: Read + Write + Seek>(volume: &mut V) -> Result<Repairs, FatError> {
    run(volume, false)
}

/// Checks the volume and fixes what a power cut can leave behind; writes nothing when it is
/// clean. The caller flushes the device afterwards. Running it again finds nothing.
pub fn repair<V: Read + Write + Seek>(volume: &mut V) -> Result<Repairs, FatError> {
    run(volume, true)
}

/// Where things are on the volume, in bytes.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    sector: u64,
    cluster: u64,
    fat_offset: u64,
    fat_bytes: u64,
    fats: u64,
    data_offset: u64,
    /// Number of data clusters; valid cluster numbers are 2..clusters + 2.
    clusters: u32,
    root: u32,
    fsinfo: Option<u64>,
}

impl Geometry {
    fn parse(boot: &[u8; 512], volume_len: u64) -> Result<Geometry, FatError> {
        let bad = |m: String| Err(FatError::NotFat32(m));
        if boot[510..512] != [0x55, 0xAA] {
            return bad("no boot signature 55 AA at byte 510".into());
        }
        let sector = u64::from(u16_at(boot, 11));
        if ![512, 1024, 2048, 4096].contains(&sector) {
            return bad(format!("bytes per sector {sector} (byte 11)"));
        }
        let per_cluster = u64::from(boot[13]);
        if per_cluster == 0 || !per_cluster.is_power_of_two() {
            return bad(format!("sectors per cluster {per_cluster} (byte 13)"));
        }
        let reserved = u64::from(u16_at(boot, 14));
        if reserved == 0 {
            return bad("no reserved sectors (byte 14)".into());
        }
        let fats = u64::from(boot[16]);
        if fats == 0 || fats > 2 {
            return bad(format!("{fats} FAT copies (byte 16)"));
        }
        if u16_at(boot, 17) != 0 || u16_at(boot, 22) != 0 {
            return bad("FAT12/16 fields set (bytes 17, 22)".into());
        }
        let total = match u16_at(boot, 19) {
            0 => u64::from(u32_at(boot, 32)),
            n => u64::from(n),
        } * sector;
        let fat_bytes = u64::from(u32_at(boot, 36)) * sector;
        if fat_bytes == 0 {
            return bad("sectors per FAT is 0 (byte 36)".into());
        }
        if total > volume_len {
            return bad(format!(
                "{total} bytes in the boot sector, but the volume has {volume_len}"
            ));
        }
        let cluster = per_cluster * sector;
        let fat_offset = reserved * sector;
        let data_offset = fat_offset + fats * fat_bytes;
        if data_offset >= total {
            return bad("FATs end beyond the volume".into());
        }
        let clusters = (total - data_offset) / cluster;
        let clusters = match u32::try_from(clusters) {
            Ok(c) if c > 0 && c < BAD - 2 && u64::from(c) + 2 <= fat_bytes / 4 => c,
            _ => return bad(format!("{clusters} clusters do not fit the FAT")),
        };
        let root = u32_at(boot, 44);
        if root < 2 || root >= clusters + 2 {
            return bad(format!("root cluster {root} (byte 44)"));
        }
        let fsinfo = match u64::from(u16_at(boot, 48)) {
            0 | 0xFFFF => None,
            s if s < reserved => Some(s * sector),
            _ => None,
        };
        Ok(Geometry {
            sector,
            cluster,
            fat_offset,
            fat_bytes,
            fats,
            data_offset,
            clusters,
            root,
            fsinfo,
        })
    }

    fn cluster_offset(&self, c: u32) -> u64 {
        self.data_offset + u64::from(c - 2) * self.cluster
    }

    fn valid(&self, c: u32) -> bool {
        c >= 2 && c < self.clusters + 2
    }
}

/// How a followed chain ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// At an end-of-chain mark.
    End,
    /// Where it broke (now ended there).
    Cut,
    /// At the cap the caller gave (a file longer than its size; now ended there).
    Capped,
}

struct Checker<'v, V> {
    volume: &'v mut V,
    geo: Geometry,
    /// The first FAT copy, raw (the top 4 bits are reserved and kept).
    fat: Vec<u32>,
    claimed: Vec<bool>,
    found: Repairs,
}

impl<V: Read + Write + Seek> Checker<'_, V> {
    fn read(&mut self, at: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; usize_of(len)];
        self.volume.seek(SeekFrom::Start(at))?;
        self.volume.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn write(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        self.volume.seek(SeekFrom::Start(at))?;
        self.volume.write_all(bytes)
    }

    fn value(&self, c: u32) -> u32 {
        self.fat[c as usize] & VALUE_MASK
    }

    fn set(&mut self, c: u32, v: u32) {
        let raw = &mut self.fat[c as usize];
        *raw = (*raw & !VALUE_MASK) | v;
    }

    /// Whether `c` can start or continue a chain that is not yet anybody's.
    fn claimable(&self, c: u32) -> bool {
        self.geo.valid(c) && !self.claimed[c as usize] && !matches!(self.value(c), FREE | BAD)
    }

    /// Follows the chain from `first` (which must be claimable), claiming its clusters; ends it
    /// where it breaks, or after `cap` clusters.
    fn claim(&mut self, first: u32, cap: Option<u64>) -> (Vec<u32>, Ending) {
        let mut chain = vec![first];
        self.claimed[first as usize] = true;
        let mut c = first;
        loop {
            let next = self.value(c);
            if next >= END_MIN {
                return (chain, Ending::End);
            }
            if cap.is_some_and(|cap| chain.len() as u64 >= cap) {
                self.set(c, END);
                return (chain, Ending::Capped);
            }
            if !self.claimable(next) {
                self.set(c, END);
                self.found.chains_cut += 1;
                return (chain, Ending::Cut);
            }
            self.claimed[next as usize] = true;
            chain.push(next);
            c = next;
        }
    }

    fn read_chain(&mut self, chain: &[u32]) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(chain.len() * usize_of(self.geo.cluster));
        for &c in chain {
            let at = self.geo.cluster_offset(c);
            buf.extend(self.read(at, self.geo.cluster)?);
        }
        Ok(buf)
    }

    /// Checks every entry of the folder stored in `chain`, fixing entries in place; returns
    /// the chains of its sub-folders.
    fn scan_folder(&mut self, chain: &[u32], write: bool) -> io::Result<Vec<Vec<u32>>> {
        let mut buf = self.read_chain(chain)?;
        let original = buf.clone();
        let mut folders = Vec::new();
        // Indices of the long-name parts waiting for their short entry, their checksum and
        // the order number the next part must have.
        let mut pending: Vec<usize> = Vec::new();
        let mut sum = 0u8;
        let mut expect = 0u8;
        for i in 0..buf.len() / ENTRY {
            let at = i * ENTRY;
            let first_byte = buf[at];
            let attr = buf[at + 11];
            if first_byte == 0 {
                self.orphan(&mut buf, &mut pending);
                break;
            }
            if first_byte == DELETED {
                self.orphan(&mut buf, &mut pending);
                continue;
            }
            if attr & 0x3F == ATTR_LONG_NAME {
                let order = first_byte & 0x1F;
                if first_byte & 0x40 != 0 {
                    self.orphan(&mut buf, &mut pending);
                    if order == 0 {
                        self.orphan(&mut buf, &mut vec![i]);
                        continue;
                    }
                    pending.push(i);
                    sum = buf[at + 13];
                    expect = order - 1;
                } else if !pending.is_empty()
                    && expect > 0
                    && order == expect
                    && buf[at + 13] == sum
                {
                    pending.push(i);
                    expect -= 1;
                } else {
                    self.orphan(&mut buf, &mut pending);
                    self.orphan(&mut buf, &mut vec![i]);
                }
                continue;
            }
            if !pending.is_empty() && (expect != 0 || short_name_checksum(&buf[at..at + 11]) != sum)
            {
                self.orphan(&mut buf, &mut pending);
            }
            // The long name, if any, belongs to this entry and goes with it.
            let name_parts = std::mem::take(&mut pending);
            if attr & ATTR_VOLUME != 0 || first_byte == b'.' {
                continue;
            }
            let first = u32::from(u16_at(&buf, at + 20)) << 16 | u32::from(u16_at(&buf, at + 26));
            let size = u32_at(&buf, at + 28);
            if attr & ATTR_DIR != 0 {
                if !self.claimable(first) {
                    for i in name_parts.iter().copied().chain([i]) {
                        buf[i * ENTRY] = DELETED;
                    }
                    self.found.entries_removed += 1;
                    continue;
                }
                if size != 0 {
                    buf[at + 28..at + 32].fill(0);
                    self.found.sizes_fixed += 1;
                }
                folders.push(self.claim(first, None).0);
                continue;
            }
            let needed = u64::from(size).div_ceil(self.geo.cluster);
            if first == 0 || needed == 0 || !self.claimable(first) {
                // No usable chain (or nothing to hold): an empty file. A chain it had is
                // reached by nobody now and is freed as lost clusters.
                if first != 0 || size != 0 {
                    set_first_and_size(&mut buf[at..at + ENTRY], 0, 0);
                    self.found.sizes_fixed += 1;
                }
                continue;
            }
            let (held, ending) = self.claim(first, Some(needed));
            if (held.len() as u64) < needed {
                let size = u32_of(held.len() as u64 * self.geo.cluster); // ≤ needed, a u32 file size
                set_first_and_size(&mut buf[at..at + ENTRY], first, size);
                self.found.sizes_fixed += 1;
            } else if ending == Ending::Capped {
                self.found.sizes_fixed += 1;
            }
        }
        self.orphan(&mut buf, &mut pending);
        if write && buf != original {
            for (n, &c) in chain.iter().enumerate() {
                let cluster = usize_of(self.geo.cluster);
                let range = n * cluster..(n + 1) * cluster;
                if buf[range.clone()] != original[range.clone()] {
                    let at = self.geo.cluster_offset(c);
                    self.write(at, &buf[range])?;
                }
            }
        }
        Ok(folders)
    }

    /// Deletes long-name parts that lost their short entry.
    fn orphan(&mut self, buf: &mut [u8], parts: &mut Vec<usize>) {
        if parts.is_empty() {
            return;
        }
        for &i in parts.iter() {
            buf[i * ENTRY] = DELETED;
        }
        self.found.orphan_names += 1;
        parts.clear();
    }
}

fn set_first_and_size(entry: &mut [u8], first: u32, size: u32) {
    let [lo0, lo1, hi0, hi1] = first.to_le_bytes();
    entry[20..22].copy_from_slice(&[hi0, hi1]);
    entry[26..28].copy_from_slice(&[lo0, lo1]);
    entry[28..32].copy_from_slice(&size.to_le_bytes());
}

/// The checksum long-name parts carry of their 8.3 name.
fn short_name_checksum(name: &[u8]) -> u8 {
    name.iter()
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b))
}

fn run<V: Read + Write + Seek>(volume: &mut V, write: bool) -> Result<Repairs, FatError> {
    let len = volume.seek(SeekFrom::End(0))?;
    let mut boot = [0u8; 512];
    volume.seek(SeekFrom::Start(0))?;
    volume.read_exact(&mut boot)?;
    let geo = Geometry::parse(&boot, len)?;
    let entries = geo.clusters as usize + 2;
    let mut c = Checker {
        volume,
        geo,
        fat: Vec::new(),
        claimed: vec![false; entries],
        found: Repairs::default(),
    };

    // The FAT copies, as stored.
    let mut copies = Vec::new();
    for k in 0..geo.fats {
        copies.push(c.read(geo.fat_offset + k * geo.fat_bytes, entries as u64 * 4)?);
    }
    c.fat = copies[0].chunks_exact(4).map(|b| u32_at(b, 0)).collect();
    c.found.fats_differed = copies.iter().any(|copy| *copy != copies[0]);

    // Every chain reachable from the root; what is left allocated is lost.
    if !c.claimable(geo.root) {
        return Err(FatError::NotFat32(format!(
            "root cluster {} is free or bad in the FAT",
            geo.root
        )));
    }
    let mut folders = vec![c.claim(geo.root, None).0];
    while let Some(chain) = folders.pop() {
        folders.extend(c.scan_folder(&chain, write)?);
    }
    for n in 2..u32_of(entries as u64) {
        if !c.claimed[n as usize] && !matches!(c.value(n), FREE | BAD) {
            c.set(n, FREE);
            c.found.lost_clusters += 1;
        }
    }

    // Every FAT copy gets the checked first copy, sector by sector where it differs.
    let fixed: Vec<u8> = c.fat.iter().flat_map(|v| v.to_le_bytes()).collect();
    if write {
        let step = usize_of(geo.sector);
        for (k, copy) in copies.iter().enumerate() {
            for start in (0..fixed.len()).step_by(step) {
                let end = (start + step).min(fixed.len());
                if fixed[start..end] != copy[start..end] {
                    let at = geo.fat_offset + k as u64 * geo.fat_bytes + start as u64;
                    c.write(at, &fixed[start..end])?;
                }
            }
        }
    }

    // The free count kept in FSInfo (when it keeps one).
    if let Some(at) = geo.fsinfo {
        let mut info = c.read(at, 512)?;
        if u32_at(&info, 0) == FSINFO_LEAD && u32_at(&info, 484) == FSINFO_STRUCT {
            let stored = u32_at(&info, FSINFO_FREE);
            let free = u32_of(
                (2..u32_of(entries as u64))
                    .filter(|&n| c.value(n) == FREE)
                    .count() as u64,
            );
            if stored != UNKNOWN_FREE && stored != free {
                c.found.free_count = true;
                if write {
                    info[FSINFO_FREE..FSINFO_FREE + 4].copy_from_slice(&free.to_le_bytes());
                    c.write(at, &info)?;
                }
            }
        }
    }

    // The dirty bit, last: a repair cut short leaves it set and runs again.
    if boot[STATE_OFFSET] & DIRTY != 0 {
        c.found.dirty_bit = true;
        if write {
            boot[STATE_OFFSET] &= !DIRTY;
            c.write(0, &boot)?;
        }
    }
    c.volume.flush()?;
    Ok(c.found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_without_writing() {
        let mut disk = std::io::Cursor::new(vec![0xA5u8; 64 * 1024]);
        let e = repair(&mut disk).unwrap_err();
        assert!(e.to_string().contains("boot signature"), "{e}");
        assert!(disk.get_ref().iter().all(|&b| b == 0xA5));
    }

    #[test]
    fn a_boot_sector_larger_than_the_volume_is_refused() {
        let mut boot = [0u8; 512];
        boot[510] = 0x55;
        boot[511] = 0xAA;
        boot[11..13].copy_from_slice(&512u16.to_le_bytes());
        boot[13] = 1;
        boot[14] = 32;
        boot[16] = 2;
        boot[32..36].copy_from_slice(&1_000_000u32.to_le_bytes());
        boot[36..40].copy_from_slice(&1000u32.to_le_bytes());
        boot[44..48].copy_from_slice(&2u32.to_le_bytes());
        let e = Geometry::parse(&boot, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("the volume has"), "{e}");
    }
}
