//! `fat::repair` against the standard tools: volumes made by `mformat` (as the imager makes the
//! ESP) and filled by `mcopy`, damaged the way a power cut inside a write damages them, must
//! be rejected by `fsck.fat -n` before the repair and pass it after, with the files that were
//! whole still byte-identical (`mtype`).

// Test helpers fail the test on any setup error, like the tests themselves.
#![allow(clippy::unwrap_used)]

use slate_core::fat::{self, Repairs};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIG: &[u8] = &[0x5A; 5000];

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .expect("running a host tool (cargo xtask deps installs them)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A FAT32 volume like the ESP (128 MiB): a long-named entry, a 5-cluster file, folders.
fn volume(dir: &Path) -> PathBuf {
    volume_of(dir, 128)
}

fn volume_of(dir: &Path, mib: u64) -> PathBuf {
    let img = dir.join("esp.img");
    File::create(&img).unwrap().set_len(mib << 20).unwrap();
    let i = img.to_str().unwrap();
    run(Command::new("mformat").args(["-i", i, "-F", "-v", "ESP", "::"]));
    run(Command::new("mmd").args(["-i", i, "::/loader", "::/loader/entries"]));
    std::fs::write(
        dir.join("entry.conf"),
        "title Slate\nlinux /slate/a/vmlinuz\n",
    )
    .unwrap();
    std::fs::write(dir.join("big.bin"), BIG).unwrap();
    let src = |n: &str| dir.join(n).to_str().unwrap().to_string();
    run(Command::new("mcopy").args([
        "-i",
        i,
        &src("entry.conf"),
        "::/loader/entries/slate-a-1.0.0+3.conf",
    ]));
    run(Command::new("mcopy").args(["-i", i, &src("big.bin"), "::/BIG.BIN"]));
    img
}

fn fsck_passes(img: &Path) -> (bool, String) {
    slate_oracles::fsck_fat_verdict(img).unwrap()
}

fn mtype(img: &Path, path: &str) -> Vec<u8> {
    run(Command::new("mtype").args(["-i", img.to_str().unwrap(), path])).stdout
}

/// Byte-level access to the test volume, with its geometry read from the boot sector.
struct Raw {
    file: File,
    fat: u64,
    fat_bytes: u64,
    fats: u64,
    data: u64,
    cluster: u64,
    fsinfo: u64,
}

impl Raw {
    fn open(img: &Path) -> Raw {
        let mut file = OpenOptions::new().read(true).write(true).open(img).unwrap();
        let mut b = [0u8; 512];
        file.read_exact(&mut b).unwrap();
        let u16_at = |o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
        let u32_at = |o: usize| u64::from(u32::from_le_bytes(b[o..o + 4].try_into().unwrap()));
        let sector = u16_at(11);
        let fat = u16_at(14) * sector;
        let fat_bytes = u32_at(36) * sector;
        let fats = u64::from(b[16]);
        Raw {
            file,
            fat,
            fat_bytes,
            fats,
            data: fat + fats * fat_bytes,
            cluster: u64::from(b[13]) * sector,
            fsinfo: u16_at(48) * sector,
        }
    }

    fn read(&mut self, at: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.file.seek(SeekFrom::Start(at)).unwrap();
        self.file.read_exact(&mut v).unwrap();
        v
    }

    fn write(&mut self, at: u64, bytes: &[u8]) {
        self.file.seek(SeekFrom::Start(at)).unwrap();
        self.file.write_all(bytes).unwrap();
    }

    fn entry(&mut self, copy: u64, c: u32) -> u32 {
        let at = self.fat + copy * self.fat_bytes + u64::from(c) * 4;
        u32::from_le_bytes(self.read(at, 4).try_into().unwrap())
    }

    fn set_entry(&mut self, copy: u64, c: u32, v: u32) {
        let at = self.fat + copy * self.fat_bytes + u64::from(c) * 4;
        self.write(at, &v.to_le_bytes());
    }

    fn set_all(&mut self, c: u32, v: u32) {
        for k in 0..self.fats {
            self.set_entry(k, c, v);
        }
    }

    /// Byte offset of the root folder's short entry named `name` (11 bytes, 8.3 padded).
    fn root_entry(&mut self, name: &[u8; 11]) -> u64 {
        let root = self.read(self.data, self.cluster as usize);
        let i = root
            .chunks(32)
            .position(|e| &e[..11] == name)
            .expect("entry in the root folder");
        self.data + i as u64 * 32
    }

    fn first_cluster(&mut self, entry: u64) -> u32 {
        let e = self.read(entry, 32);
        u32::from(u16::from_le_bytes([e[20], e[21]])) << 16
            | u32::from(u16::from_le_bytes([e[26], e[27]]))
    }

    fn set_size(&mut self, entry: u64, size: u32) {
        self.write(entry + 28, &size.to_le_bytes());
    }
}

fn repair(img: &Path) -> Repairs {
    let mut f = OpenOptions::new().read(true).write(true).open(img).unwrap();
    fat::repair(&mut f).unwrap()
}

/// Damages a fresh volume with `damage`, checks that fsck.fat sees it, repairs, checks that
/// fsck.fat is satisfied, that a second repair finds nothing, and returns the first report.
fn damaged_then_repaired(damage: impl FnOnce(&mut Raw)) -> (Repairs, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let img = volume(dir.path());
    assert!(fsck_passes(&img).0, "fresh volume: {}", fsck_passes(&img).1);
    damage(&mut Raw::open(&img));
    let (ok, out) = fsck_passes(&img);
    assert!(!ok, "fsck.fat -n accepted the damaged volume: {out}");
    let before = std::fs::read(&img).unwrap();
    let dry = fat::check(
        &mut OpenOptions::new()
            .read(true)
            .write(true)
            .open(&img)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(before, std::fs::read(&img).unwrap(), "check wrote");
    let found = repair(&img);
    assert_eq!(found, dry, "check and repair disagree");
    assert!(!found.is_clean(), "nothing found");
    let (ok, out) = fsck_passes(&img);
    assert!(ok, "fsck.fat -n after the repair ({found}): {out}");
    assert!(repair(&img).is_clean(), "a second repair found more");
    (found, img, dir)
}

#[test]
fn a_clean_volume_is_left_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let img = volume(dir.path());
    let before = std::fs::read(&img).unwrap();
    let found = repair(&img);
    assert!(found.is_clean(), "{found:?}");
    assert_eq!(found.to_string(), "clean");
    assert!(
        before == std::fs::read(&img).unwrap(),
        "a clean volume was written"
    );
}

#[test]
fn the_dirty_bit_is_cleared() {
    let (found, img, _d) = damaged_then_repaired(|r| {
        let mut b = r.read(65, 1);
        b[0] |= 1;
        r.write(65, &b);
    });
    assert_eq!(
        found,
        Repairs {
            dirty_bit: true,
            ..Repairs::default()
        }
    );
    assert_eq!(mtype(&img, "::/BIG.BIN"), BIG);
}

#[test]
fn lost_clusters_are_freed_and_the_free_count_follows() {
    let (found, img, _d) = damaged_then_repaired(|r| {
        // A chain allocated in both FATs, no entry reaches it: a file being created.
        r.set_all(1000, 1001);
        r.set_all(1001, 1002);
        r.set_all(1002, 0x0FFF_FFFF);
    });
    assert_eq!(found.lost_clusters, 3, "{found:?}");
    let mut r = Raw::open(&img);
    assert_eq!(r.entry(0, 1000), 0);
    assert_eq!(r.entry(1, 1001), 0);
    assert_eq!(mtype(&img, "::/BIG.BIN"), BIG);
}

#[test]
fn a_wrong_free_count_is_corrected() {
    let (found, _img, _d) = damaged_then_repaired(|r| {
        let at = r.fsinfo + 488;
        let free = u32::from_le_bytes(r.read(at, 4).try_into().unwrap());
        r.write(at, &(free - 7).to_le_bytes());
    });
    assert_eq!(
        found,
        Repairs {
            free_count: true,
            ..Repairs::default()
        }
    );
}

#[test]
fn a_second_fat_that_differs_gets_the_first() {
    let (found, img, _d) = damaged_then_repaired(|r| r.set_entry(1, 2000, 0x0FFF_FFFF));
    assert!(found.fats_differed, "{found:?}");
    let mut r = Raw::open(&img);
    assert_eq!(r.entry(1, 2000), 0);
    assert_eq!(mtype(&img, "::/BIG.BIN"), BIG);
}

#[test]
fn a_file_longer_than_its_chain_is_cut_to_the_chain() {
    let (found, img, _d) = damaged_then_repaired(|r| {
        let e = r.root_entry(b"BIG     BIN");
        r.set_size(e, 9000);
    });
    assert_eq!(found.sizes_fixed, 1, "{found:?}");
    let data = mtype(&img, "::/BIG.BIN");
    assert_eq!(data.len(), 5120);
    assert_eq!(data[..5000], *BIG);
}

#[test]
fn a_chain_longer_than_its_file_is_cut_and_the_rest_freed() {
    let (found, img, _d) = damaged_then_repaired(|r| {
        let e = r.root_entry(b"BIG     BIN");
        r.set_size(e, 2000);
    });
    assert_eq!(found.sizes_fixed, 1, "{found:?}");
    assert_eq!(found.lost_clusters, 3, "{found:?}");
    assert_eq!(mtype(&img, "::/BIG.BIN"), BIG[..2000]);
}

#[test]
fn a_chain_into_a_free_cluster_is_ended_there() {
    let (found, img, _d) = damaged_then_repaired(|r| {
        let e = r.root_entry(b"BIG     BIN");
        let first = r.first_cluster(e);
        // The second cluster's entry never reached the disk: it reads free.
        let second = r.entry(0, first);
        r.set_all(second, 0);
    });
    assert_eq!(found.chains_cut, 1, "{found:?}");
    assert_eq!(found.sizes_fixed, 1, "{found:?}");
    assert_eq!(mtype(&img, "::/BIG.BIN"), BIG[..1024]);
}

#[test]
fn a_long_name_without_its_short_entry_is_removed() {
    let (found, img, _d) = damaged_then_repaired(|r| {
        // Delete only the short entry of the boot entry (the long-name parts stay).
        let entries = {
            let e = r.root_entry(b"LOADER     ");
            let c = r.first_cluster(e);
            let dir = r.data + u64::from(c - 2) * r.cluster;
            let d = r.read(dir, r.cluster as usize);
            let sub = d.chunks(32).position(|e| e[..7] == *b"ENTRIES").unwrap();
            let c = {
                let e = &d[sub * 32..sub * 32 + 32];
                u32::from(u16::from_le_bytes([e[26], e[27]]))
            };
            r.data + u64::from(c - 2) * r.cluster
        };
        let d = r.read(entries, r.cluster as usize);
        let short = d
            .chunks(32)
            .position(|e| e[0] != 0 && e[0] != b'.' && e[11] != 0x0F)
            .unwrap();
        r.write(entries + short as u64 * 32, &[0xE5]);
    });
    assert_eq!(found.orphan_names, 1, "{found:?}");
    assert_eq!(found.lost_clusters, 1, "{found:?}");
    let list =
        run(Command::new("mdir").args(["-b", "-i", img.to_str().unwrap(), "::/loader/entries"]));
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("slate-a"),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
}

#[test]
fn everything_at_once() {
    let (found, img, _d) = damaged_then_repaired(|r| {
        let mut b = r.read(65, 1);
        b[0] |= 1;
        r.write(65, &b);
        r.set_all(3000, 0x0FFF_FFFF);
        r.set_entry(1, 3001, 0x0FFF_FFFF);
        let e = r.root_entry(b"BIG     BIN");
        r.set_size(e, 4000);
    });
    assert!(found.dirty_bit && found.fats_differed, "{found:?}");
    assert_eq!(found.lost_clusters, 2, "{found:?}");
    assert_eq!(mtype(&img, "::/BIG.BIN"), BIG[..4000]);
    assert!(found.to_string().contains("dirty bit"), "{found}");
}

#[test]
fn random_damage_never_panics_and_one_repair_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    let img = volume_of(dir.path(), 40);
    let pristine = std::fs::read(&img).unwrap();
    let mut bytes = pristine.clone();
    let raw = Raw::open(&img);
    // The metadata: boot sector to the end of the first folder clusters.
    let (fat, span) = (raw.fat, raw.data + 16 * raw.cluster);
    drop(raw);
    assert!(fat::check(&mut std::io::Cursor::new(&mut bytes[..]))
        .unwrap()
        .is_clean());
    let mut x: u64 = 0x5EED_F00D;
    let mut repaired = 0;
    for round in 0..200 {
        bytes.copy_from_slice(&pristine);
        for _ in 0..1 + round % 16 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly the FAT and folders; now and then the boot sector.
            let at = if x.is_multiple_of(10) {
                x % 512
            } else {
                fat + x % (span - fat)
            } as usize;
            bytes[at] = (x >> 32) as u8;
        }
        let mut vol = std::io::Cursor::new(&mut bytes[..]);
        if fat::repair(&mut vol).is_ok() {
            repaired += 1;
            let again = fat::repair(&mut vol).unwrap();
            assert!(
                again.is_clean(),
                "round {round}: second repair found {again:?}"
            );
        }
    }
    assert!(
        repaired > 100,
        "only {repaired} of 200 damaged volumes were checked"
    );
}
