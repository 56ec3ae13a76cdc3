//! dm-verity refuses a tampered root: the kernel reports the corruption, the tampered code
//! never runs, and the boot ends (restart_on_corruption) instead of going on. A tampered
//! *good* slot (no boot counter) is given up after a few starts, for the other slot.

use slate_core::api::Kind;
use slate_core::layout::Slot;
use slate_core::slots::MAX_FAILED_BOOTS;
use slate_imager::operator::push;
use slate_imager::progress::Progress;
use slate_tests::*;
use std::process::Command;
use std::time::Duration;

/// Boots `disk` with reboots turned into QEMU exits and asserts the verity failure.
fn assert_refused(disk: &std::path::Path, work: &std::path::Path) {
    let mut vm = boot(disk, work, |c| c.no_reboot = true).unwrap();
    vm.wait_any_after(
        &["device-mapper: verity", &Kind::Stage2Up.prefix()],
        0,
        BOOT_TIMEOUT,
    )
    .unwrap();
    // restart_on_corruption reboots the machine, and with -no-reboot QEMU then exits: the boot
    // must stop, not carry on from a root it could not verify.
    vm.wait_exit(Duration::from_secs(60))
        .expect("the machine did not stop after dm-verity refused the root");
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
        !vm.saw(&Kind::Stage2Up.prefix()),
        "stage 2 ran from a tampered root:\n{}",
        vm.tail(20)
    );
    assert!(
        !vm.saw(&Kind::Healthy.prefix()),
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
    let root = img.report.verity.info.root_hash.to_string();
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

#[test]
fn a_corrupt_good_slot_is_given_up_for_the_other_slot() {
    let v1 = image("1.0.0");
    let v2 = image("1.1.0");
    let v2_bundle = bundle(v2);
    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();

    // v1 on a, v2 committed on b: both entries good, b (newer) boots by default.
    let mut vm = boot(&disk, &tmp.path().join("update"), |_| {}).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let url = vm.agent_url().unwrap();
    let p = push::push(
        &url,
        &v2_bundle,
        &access(tmp.path()),
        true,
        Some(Duration::from_secs(600)),
        Progress::new(true),
    )
    .unwrap();
    assert_eq!(installed_slot(&p.answer), slate_core::layout::Slot::B);
    vm.wait_for(
        &Kind::Committed.on_version(Slot::B, "1.1.0"),
        Duration::from_secs(60),
    )
    .unwrap();
    vm.shutdown(Duration::from_secs(60)).unwrap();

    // Slot b rots: a flipped byte in its init, read at every start.
    let in_image =
        squashfs_file_offset(&v2.dir.join("rootfs.img"), "/usr/lib/slate/slate-init").unwrap();
    let (root_b, _) = partition(&disk, "root-b").unwrap();
    flip_byte(&disk, root_b + in_image + 200).unwrap();

    let vm = boot(&disk, &tmp.path().join("rot"), |_| {}).unwrap();
    let fallback = vm
        .wait_for(
            &format!("{} from=b to=a", Kind::Fallback.prefix()),
            Duration::from_secs(900),
        )
        .unwrap();
    assert!(
        fallback.text.contains("marked=slate-b-1.1.0+0.conf"),
        "{}",
        fallback.text
    );
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let lines = vm.lines();
    let starts_of_b = lines
        .iter()
        .filter(|l| l.text.contains(&Kind::Stage1Done.on(Slot::B)))
        .count();
    let corruptions = lines
        .iter()
        .filter(|l| l.text.contains("device-mapper: verity") && l.text.contains("is corrupted"))
        .count();
    assert_eq!(
        starts_of_b,
        MAX_FAILED_BOOTS as usize,
        "slot b should start {MAX_FAILED_BOOTS} times before it is given up ({})",
        vm.log_path().display()
    );
    assert!(corruptions >= starts_of_b, "{}", vm.tail(30));
    let stage2_ups = lines
        .iter()
        .filter(|l| l.text.contains(&Kind::Stage2Up.prefix()))
        .count();
    assert_eq!(stage2_ups, 1, "stage 2 ran from the tampered slot b");
    let (code, body) = vm.http("GET", "/v1/status").unwrap();
    assert_eq!(code, 200);
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    let b = s["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["slot"] == "b")
        .unwrap()
        .clone();
    assert_eq!(b["state"], "bad", "{body}");
}
