//! Disk image files as the scenarios change and check them: made larger, as a larger disk
//! would be, and checked with the standard tool afterwards.

use std::path::Path;

/// Makes a disk image file `extra` bytes longer (sparse), as a larger disk would be.
pub fn grow_file(disk: &Path, extra: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .expect("opening the disk image");
    let len = f.metadata().expect("its size").len();
    f.set_len(len + extra).expect("making it larger");
}

/// `sgdisk -v` finds no problem (it exits 0 with problems, so its words are checked).
pub fn sgdisk_clean(disk: &Path) {
    if let Err(e) = slate_oracles::sgdisk_verify(disk) {
        panic!("{e}");
    }
}

/// The disk's table is clean by `sgdisk -v` and `data` ends at the disk's end (within the
/// 1 MiB alignment and the backup table).
pub fn fills_the_disk(disk: &Path) {
    sgdisk_clean(disk);
    let (offset, size) = crate::partition(disk, "data").expect("data partition");
    let disk_len = std::fs::metadata(disk).expect("disk size").len();
    assert!(
        disk_len - (offset + size) < (2 << 20),
        "data ends {} bytes before the disk's end",
        disk_len - (offset + size)
    );
}

/// The size of the guest's `/data` in KiB, as `df` gives it.
pub fn data_kib(vm: &mut slate_qemu::Vm, timeout: std::time::Duration) -> u64 {
    let df = vm
        .shell("df -k /data | tail -1", timeout)
        .expect("df in the guest");
    df.split_whitespace()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no size in df's line: {df}"))
}
