//! dm-verity refuses a tampered root: the kernel reports the corruption, the tampered code
//! never runs, and the boot ends (restart_on_corruption) instead of going on.

use slate_tests::*;
use std::process::Command;
use std::time::Duration;

/// Boots `disk` with reboots turned into QEMU exits and asserts the verity failure.
fn assert_refused(disk: &std::path::Path, work: &std::path::Path) {
    let mut vm = boot(disk, work, |c| c.no_reboot = true).unwrap();
    vm.wait_any_after(
        &["device-mapper: verity", "slate: stage2 up"],
        0,
        BOOT_TIMEOUT,
    )
    .unwrap();
    let _ = vm.wait_exit(Duration::from_secs(60));
    let lines = vm.lines();
    let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert!(
        text.iter()
            .any(|l| l.contains("device-mapper: verity") && l.contains("is corrupted")),
        "no verity corruption report on the console ({}):\n{}",
        vm.log_path().display(),
        vm.tail(20)
    );
    assert!(
        !vm.saw("slate: stage2 up"),
        "stage 2 ran from a tampered root:\n{}",
        vm.tail(20)
    );
    assert!(
        !vm.saw("slate: healthy"),
        "the tampered image became healthy"
    );
}

#[test]
fn a_flipped_byte_in_the_init_binary_is_refused() {
    let img = image("1.0.0");
    let (tmp, disk) = copy_disk(&img.dir.join("disk.img")).unwrap();
    let in_image =
        squashfs_file_offset(&img.dir.join("rootfs.img"), "/usr/lib/slate/slate-init").unwrap();
    let (root_a, _) = partition(&disk, "root-a").unwrap();
    flip_byte(&disk, root_a + in_image + 200).unwrap();
    assert_refused(&disk, tmp.path());
}

#[test]
fn a_wrong_root_hash_on_the_command_line_is_refused() {
    let img = image("1.0.0");
    let (tmp, disk) = copy_disk(&img.dir.join("disk.img")).unwrap();
    let (esp, _) = partition(&disk, "esp").unwrap();
    let target = format!("{}@@{esp}", disk.display());
    let entry = "::/loader/entries/slate-a-1.0.0.conf";
    let out = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &target, entry])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let root = &img.report.verity.root_hash;
    assert!(text.contains(root.as_str()));
    let wrong: String = root.chars().rev().collect();
    let edited = tmp.path().join("entry.conf");
    std::fs::write(&edited, text.replace(root.as_str(), &wrong)).unwrap();
    let ok = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i", &target])
        .arg(&edited)
        .arg(entry)
        .status()
        .unwrap();
    assert!(ok.success());
    assert_refused(&disk, tmp.path());
}
