//! Flashing: `bmaptool copy` reads our block map; `slate flash` writes only mapped blocks,
//! checks them, and refuses what it must.

use crate::util::*;
use std::process::Command;

#[test]
fn bmaptool_copy_reproduces_the_image() {
    let out = shared_build();
    let tmp = tempdir();
    let copy = tmp.path().join("copy.img");
    ok(Command::new("bmaptool")
        .arg("copy")
        .arg("--bmap")
        .arg(out.join("disk.img.bmap"))
        .arg(out.join("disk.img"))
        .arg(&copy));
    assert_eq!(sha256sum(&copy), sha256sum(&out.join("disk.img")));
}

/// A block map written by bmaptool (the standard's own writer) is read by our XML parser.
#[test]
fn slate_flash_reads_a_block_map_that_bmaptool_wrote() {
    let out = shared_build();
    let tmp = tempdir();
    let theirs = tmp.path().join("theirs.bmap");
    ok(Command::new("bmaptool")
        .arg("create")
        .arg("-o")
        .arg(&theirs)
        .arg(out.join("disk.img")));
    let target = tmp.path().join("target.img");
    ok(slate()
        .arg("flash")
        .arg(out.join("disk.img"))
        .arg("--bmap")
        .arg(&theirs)
        .arg("--to")
        .arg(&target));
    assert_eq!(sha256sum(&target), sha256sum(&out.join("disk.img")));
}

#[test]
fn slate_flash_writes_a_file_that_equals_the_image() {
    let out = shared_build();
    let tmp = tempdir();
    let target = tmp.path().join("sdcard.img");
    // Old junk on the target must not survive in mapped places.
    std::fs::write(&target, vec![0xa5u8; 1 << 20]).unwrap();
    ok(slate()
        .arg("flash")
        .arg(out.join("disk.img"))
        .arg("--to")
        .arg(&target));
    assert_eq!(sha256sum(&target), sha256sum(&out.join("disk.img")));
    sgdisk_verify(&target);
}

#[test]
fn slate_flash_refuses_a_damaged_image_and_the_image_itself() {
    let out = shared_build();
    let tmp = tempdir();
    let image = tmp.path().join("disk.img");
    ok(Command::new("cp")
        .arg("--sparse=always")
        .arg(out.join("disk.img"))
        .arg(&image));
    std::fs::copy(out.join("disk.img.bmap"), tmp.path().join("disk.img.bmap")).unwrap();
    let (_, err) = fails(slate().arg("flash").arg(&image).arg("--to").arg(&image));
    assert!(err.contains("is the image itself"), "{err}");

    // Flip one byte inside the root slot (mapped) and flash: the range checksum must catch it.
    let (first, _) = partition_extent(&image, 2);
    let at = first * 512 + 5000;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 1]).unwrap();
    drop(f);
    let (_, err) = fails(
        slate()
            .arg("flash")
            .arg(&image)
            .arg("--to")
            .arg(tmp.path().join("t.img")),
    );
    assert!(
        err.contains("do not match the block map's checksum"),
        "{err}"
    );
    assert!(err.contains("blocks "), "{err}");
}

/// A loop device over a small ext4 file, mounted; unmounted and detached when dropped.
struct MountedLoop {
    dev: String,
    mnt: std::path::PathBuf,
}

impl MountedLoop {
    fn new(dir: &std::path::Path) -> MountedLoop {
        let img = dir.join("fs.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        ok(Command::new("mkfs.ext4").arg("-q").arg(&img));
        let dev = stdout(&ok(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img)))
        .trim()
        .to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup printed {dev:?}");
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let m = MountedLoop { dev, mnt };
        ok(Command::new("mount").arg(&m.dev).arg(&m.mnt));
        m
    }
}

impl Drop for MountedLoop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

#[test]
fn slate_flash_refuses_a_mounted_device() {
    // A mounted block device (a loop device over a file, so any root machine has one): flashing
    // it must be refused before any write. Needs root, as CI is.
    let out = shared_build();
    let tmp = tempdir();
    let mounted = MountedLoop::new(tmp.path());
    let (_, err) = fails(
        slate()
            .arg("flash")
            .arg(out.join("disk.img"))
            .arg("--to")
            .arg(&mounted.dev),
    );
    assert!(err.contains("refusing to flash"), "{err}");
    assert!(err.contains("is mounted at"), "{err}");
    drop(mounted);
    // ext4 leaves its first 1024 bytes zero and mounting never writes them; a flash starts
    // there (protective MBR, GPT header).
    let head = std::fs::read(tmp.path().join("fs.img")).unwrap();
    assert!(
        head[..1024].iter().all(|&b| b == 0),
        "the refused flash wrote to the device"
    );
}
