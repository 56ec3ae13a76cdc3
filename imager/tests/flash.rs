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
    ok(Command::new("sgdisk").arg("-v").arg(&target));
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

#[test]
fn slate_flash_refuses_a_mounted_device() {
    // The root file system's device is mounted at /: flashing it must be refused before any write.
    let out = shared_build();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root_dev = mountinfo
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 9 && f[4] == "/" && f.iter().any(|x| x.starts_with("/dev/")))
        .and_then(|f| {
            f.iter()
                .rev()
                .find(|x| x.starts_with("/dev/"))
                .map(|s| s.to_string())
        });
    let Some(dev) = root_dev.filter(|d| std::path::Path::new(d).exists()) else {
        eprintln!("no block device behind / on this machine (container?); nothing to check");
        return;
    };
    let (_, err) = fails(
        slate()
            .arg("flash")
            .arg(out.join("disk.img"))
            .arg("--to")
            .arg(&dev),
    );
    assert!(err.contains("refusing to flash"), "{err}");
}
