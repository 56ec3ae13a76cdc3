//! The generic PC board (`boards/x86_64-uefi.toml`) on a QEMU machine that looks like a PC,
//! not like the dev VM: an NVMe disk of 4 GiB (far larger than the image), an Intel e1000e
//! network card on QEMU's user network with its DHCP server, and no address in the spec; its
//! maintenance window (Berlin time) is closed, so pushes wait unless the operator says now.

use slate_core::api::Kind;
use slate_core::layout::Slot;
use slate_qemu::{DiskModel, NicModel};
use slate_tests::disk::{data_kib, fills_the_disk, grow_file};
use slate_tests::*;
use std::time::Duration;

const SHELL: Duration = Duration::from_secs(30);
const DISK: u64 = 4 << 30;

#[test]
fn a_generic_pc_boots_from_nvme_takes_its_address_by_dhcp_and_fills_its_disk() {
    let img = image_variant("1.0.0", Variant::Pc);
    let (tmp, disk) = copy_disk(&img.dir.join("disk.img")).unwrap();
    let image_len = std::fs::metadata(&disk).unwrap().len();
    grow_file(&disk, DISK - image_len);
    let pc = |c: &mut slate_qemu::VmConfig| {
        c.disk_model = DiskModel::Nvme;
        c.nic_model = NicModel::E1000e;
    };
    let mut vm = boot(&disk, tmp.path(), pc).unwrap();
    let esp = part_uuid(&disk, slate_core::layout::ESP_LABEL).unwrap();
    vm.wait_for(
        &format!("{} /dev/nvme0n1 esp={esp}", Kind::BootDisk.prefix()),
        BOOT_TIMEOUT,
    )
    .unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    // QEMU's DHCP server hands out 10.0.2.15 with 10.0.2.2 as the router.
    let lease = vm.wait_for(&Kind::NetworkLease.prefix(), SHELL).unwrap();
    assert!(
        lease
            .text
            .ends_with("iface=eth0 address=10.0.2.15/24 router=10.0.2.2"),
        "{}",
        lease.text
    );
    // The agent answers through the forwarded port, over the address the lease gave.
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::A, "1.0.0"));

    vm.wait_prompt("slate# ", 0, SHELL).unwrap();
    let net = vm
        .shell(
            "ip -4 addr show eth0; ip route; cat /run/resolv.conf; ls /sys/bus/pci/drivers/e1000e",
            SHELL,
        )
        .unwrap();
    assert!(net.contains("inet 10.0.2.15/24"), "{net}");
    assert!(net.contains("default via 10.0.2.2 dev eth0"), "{net}");
    assert!(net.contains("nameserver 10.0.2.3"), "{net}");
    assert!(
        net.contains("0000:"),
        "no PCI device bound to e1000e: {net}"
    );
    // The DHCP client is a supervised service, not a thread of PID 1 (what anyone on the link
    // sends is parsed outside PID 1).
    let procs = vm
        .shell(
            "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = slate-init ] && echo \"pid ${p#/proc/}\"; done; cat /proc/1/task/*/comm",
            SHELL,
        )
        .unwrap();
    let pids: Vec<&str> = procs
        .lines()
        .filter_map(|l| l.strip_prefix("pid "))
        .collect();
    // PID 1 and the client; none of PID 1's threads is the old in-process client ("dhcp").
    assert!(
        pids.len() == 2 && pids.contains(&"1") && !procs.lines().any(|l| l == "dhcp"),
        "{procs}"
    );
    let mounts = vm.shell("grep ' /data ' /proc/mounts", SHELL).unwrap();
    assert!(
        mounts.starts_with("/dev/nvme0n1p4 /data ext4 rw"),
        "{mounts}"
    );
    // /data fills the disk: 4 GiB less the ESP and two slots (640 MiB), less ext4's own.
    let total_kib = data_kib(&mut vm, SHELL);
    assert!(total_kib > 3200 * 1024, "/data has {total_kib} KiB");

    // A second boot finds nothing to grow, and leases the same address again.
    let mark = vm.mark();
    let (code, _) = vm.http("POST", slate_core::api::REBOOT_ROUTE).unwrap();
    assert_eq!(code, 202);
    vm.wait_for_after(
        &Kind::Healthy.on_version(Slot::A, "1.0.0"),
        mark,
        BOOT_TIMEOUT,
    )
    .unwrap();
    vm.wait_for_after(&Kind::NetworkLease.prefix(), mark, SHELL)
        .unwrap();
    assert!(
        !vm.saw_after(&Kind::DataGrown.prefix(), mark),
        "data grew again on the second boot"
    );
    // Its maintenance window is days away: the status says closed; a push is refused before
    // anything is written (409, kind outside-window), and `slate push --now` applies it,
    // counted. (1.0.0 again, with --force: no second image to build.)
    let s = status(&vm);
    let w = s.window.expect("an image with windows shows them");
    let now = slate_imager::operator::bundle::now();
    assert!(!w.open && w.next_open > now + 2 * 86_400, "{w:?}");
    let url = vm.agent_url().unwrap();
    let acc = access(tmp.path());
    let again = bundle(img);
    let quiet = slate_imager::progress::Progress::new(true);
    let e = slate_imager::operator::push::push(&url, &again, &acc, false, None, quiet).unwrap_err();
    assert!(
        format!("{e:#}").contains("outside the maintenance window"),
        "{e:#}"
    );
    assert!(status(&vm).last_attempt.is_none());
    let options = slate_imager::operator::push::Options {
        reboot: false,
        force: true,
        now: true,
        wait: None,
    };
    let p = slate_imager::operator::push::push_with(&url, &again, &acc, options, quiet).unwrap();
    assert!(
        matches!(
            p.answer,
            slate_core::api::UploadAnswer::Installed { slot: Slot::B, .. }
        ),
        "{:?}",
        p.answer
    );
    let (code, metrics) = vm.http("GET", slate_core::api::METRICS_ROUTE).unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("slate_update_window_overrides_total 1")
            && metrics.contains("slate_update_window_open 0"),
        "{metrics}"
    );
    vm.shutdown(Duration::from_secs(60)).unwrap();
    fills_the_disk(&disk);
}
