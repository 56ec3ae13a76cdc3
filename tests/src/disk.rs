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

/// `dumpe2fs -h` of the data partition of `disk` (read from a copy of the partition): the
/// superblock as e2fsprogs sees it.
pub fn data_superblock(disk: &Path) -> String {
    let (offset, len) = crate::partition(disk, "data").expect("data partition");
    assert_eq!((offset | len) % (1 << 20), 0, "data is MiB-aligned");
    let tmp = tempfile::tempdir().expect("temporary folder");
    let part = tmp.path().join("data.ext4");
    let dd = std::process::Command::new("dd")
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", part.display()))
        .args(["bs=1M", "status=none"])
        .arg(format!("skip={}", offset >> 20))
        .arg(format!("count={}", len >> 20))
        .status()
        .expect("running dd");
    assert!(dd.success(), "dd of the data partition");
    let out = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(&part)
        .output()
        .expect("running dumpe2fs (e2fsprogs)");
    assert!(
        out.status.success(),
        "dumpe2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that the data file system of `disk` was unmounted clean: no journal to replay.
pub fn data_is_clean(disk: &Path) {
    let sb = data_superblock(disk);
    let field = |name: &str| {
        sb.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in dumpe2fs -h: {sb}"))
            .to_string()
    };
    let features = field("Filesystem features:");
    assert!(
        !features.split_whitespace().any(|f| f == "needs_recovery"),
        "the data file system needs its journal replayed: {features}"
    );
    assert_eq!(field("Filesystem state:"), "clean", "{sb}");
}

/// Runs a tool that must succeed; panics with its error output.
pub fn run_ok(cmd: &mut std::process::Command) {
    let out = cmd.output().expect("starting a tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// mtools on `disk`'s ESP partition: `mcopy` with the image spec `FILE@@OFFSET`.
fn esp_mcopy(disk: &Path) -> std::process::Command {
    let (offset, _) =
        crate::partition(disk, slate_core::layout::ESP_LABEL).expect("the disk has an ESP");
    let mut cmd = std::process::Command::new("mcopy");
    cmd.env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{offset}", disk.display()));
    cmd
}

/// Replaces the file `esp_path` on `disk`'s ESP with `with`.
pub fn replace_on_esp(disk: &Path, esp_path: &str, with: &Path) {
    run_ok(esp_mcopy(disk).arg(with).arg(format!("::/{esp_path}")));
}

/// Copies the file `esp_path` from `disk`'s ESP to `to`.
pub fn copy_from_esp(disk: &Path, esp_path: &str, to: &Path) {
    run_ok(esp_mcopy(disk).arg(format!("::/{esp_path}")).arg(to));
}
