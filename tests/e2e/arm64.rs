//! The qemu-arm64 board: the same image, update and rollback flow as on x86-64, on QEMU's
//! arm64 `virt` machine with UEFI firmware (AAVMF), systemd-boot for arm64, Debian's arm64
//! kernel, and device binaries cross-compiled static for aarch64. Always TCG (KVM runs only
//! the host's architecture).

use slate_core::api::{Kind, Outcome};
use slate_core::layout::Slot;
use slate_imager::operator::push;
use slate_imager::progress::Progress;
use slate_qemu::GuestArch;
use slate_tests::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(900);
const SHELL: Duration = Duration::from_secs(60);

#[test]
fn an_arm64_device_boots_verified_commits_an_update_and_falls_back_from_a_failing_one() {
    let v1 = image_variant("1.0.0", Variant::Arm64);
    let v2 = bundle(image_variant("2.0.0", Variant::Arm64));
    let v3 = bundle(image_variant("3.0.0", Variant::Arm64FailingHealth));
    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
    let mut vm = boot(&disk, tmp.path(), |c| {
        c.arch = GuestArch::Arm64;
        c.memory_mib = 1024;
    })
    .unwrap();
    let root = v1.report.verity.info.root_hash.to_string();
    vm.wait_for(
        &format!("{} root={root}", Kind::Stage1Done.on(Slot::A)),
        WAIT,
    )
    .unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), WAIT)
        .unwrap();
    // The root is the kernel's dm-verity device over slot a, on an arm64 kernel.
    vm.wait_prompt("slate# ", 0, SHELL).unwrap();
    let out = vm
        .shell(
            "uname -m; grep ' / ' /proc/mounts; cat /sys/block/dm-0/dm/name /sys/block/dm-0/dm/uuid",
            SHELL,
        )
        .unwrap();
    assert!(out.contains("aarch64"), "{out}");
    assert!(out.contains("/dev/mapper/root / squashfs ro"), "{out}");
    assert!(out.contains("\nroot\n"), "{out}");

    // v1 → v2: installed into b, trial boot, healthy, committed.
    let url = vm.agent_url().unwrap();
    let acc = access(tmp.path());
    let quiet = Progress::new(true);
    push::push(&url, &v2, &acc, true, Some(WAIT), quiet).unwrap();
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "2.0.0"));
    assert!(vm.saw(&Kind::Committed.on_version(Slot::B, "2.0.0")));

    // v3 fails its health check on the trial boot: back to v2 by itself.
    let mark = vm.mark();
    push::push(&url, &v3, &acc, true, None, quiet).unwrap();
    vm.wait_for_after(&Kind::Rollback.on_version(Slot::A, "3.0.0"), mark, WAIT)
        .unwrap();
    vm.wait_for_after(&Kind::Healthy.on_version(Slot::B, "2.0.0"), mark, WAIT)
        .unwrap();
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "2.0.0"));
    let last = s.last_attempt.expect("a last attempt");
    assert_eq!(last.outcome, Outcome::RolledBack, "{last:?}");
    assert!(last.reason.contains("always-fails"), "{last:?}");
}
