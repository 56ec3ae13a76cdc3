//! The generic PC board (`boards/x86_64-uefi.toml`) on a QEMU machine that looks like a PC,
//! not like the dev VM: an NVMe disk of 4 GiB (far larger than the image), an Intel e1000e
//! network card on QEMU's user network with its DHCP server, and no address in the spec; its
//! maintenance window (Berlin time) is closed, so pushes are staged until the operator applies
//! them (or says now).

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
    // Its maintenance window is days away: the status says closed. A push is installed,
    // verified and staged (nothing boots it), the status and the console say it waits for the
    // window, and `slate apply` applies it now: an operator's override, counted; the device
    // reboots into it with no network needed and commits. (1.0.0 again, with --force: no
    // second image to build.)
    let s = status(&vm);
    let w = s.window.expect("an image with windows shows them");
    let now = slate_imager::operator::bundle::now();
    assert!(!w.open && w.next_open > now + 2 * 86_400, "{w:?}");
    let url = vm.agent_url().unwrap();
    let acc = access(tmp.path());
    let again = bundle(img);
    let quiet = slate_imager::progress::Progress::new(true);
    // 1.0.0 again (force: no second image to build), as the device's policy decides.
    let forced = slate_imager::operator::push::Options {
        reboot: true,
        force: true,
        now: false,
        stage: false,
        wait: None,
    };
    let p = slate_imager::operator::push::push_with(&url, &again, &acc, forced, quiet).unwrap();
    let slate_core::api::UploadAnswer::Staged {
        slot: Slot::B,
        apply_at,
        ..
    } = p.answer
    else {
        panic!("not staged in slot b: {:?}", p.answer);
    };
    assert_eq!(apply_at, Some(w.next_open));
    vm.wait_for(
        &format!(
            "{} slot=b version=1.0.0 apply_at={}",
            Kind::Staged.prefix(),
            w.next_open
        ),
        SHELL,
    )
    .unwrap();
    let s = status(&vm);
    let staged = s
        .staged
        .clone()
        .expect("the status shows the staged update");
    assert_eq!(
        (
            staged.slot,
            staged.version.as_str(),
            staged.apply_at,
            staged.by.as_str()
        ),
        (Slot::B, "1.0.0", Some(w.next_open), "window")
    );
    // Staged is not bootable: slot b has no entry the loader loads, so no fallback yet.
    assert_eq!(
        s.slot_status(Slot::B).map(|v| v.state),
        Some(slate_core::api::SlotState::Empty),
        "{s:?}"
    );
    let entries = vm
        .shell("ls /run/slate/esp/loader/entries/", SHELL)
        .unwrap();
    assert!(entries.contains("slate-b-1.0.0+3.conf.staged"), "{entries}");
    let mark = vm.mark();
    let applied = slate_imager::operator::apply::apply(
        &url,
        &acc,
        false,
        Some(Duration::from_secs(600)),
        quiet,
    )
    .unwrap();
    assert_eq!(applied.version, "1.0.0");
    let outcome = applied.outcome.expect("followed to the outcome");
    assert_eq!(
        (
            outcome.slot,
            outcome.last_attempt.as_ref().map(|a| a.outcome)
        ),
        (Slot::B, Some(slate_core::api::Outcome::Committed)),
        "{outcome:?}"
    );
    assert!(vm.saw_after(&Kind::Applying.on_version(Slot::B, "1.0.0"), mark));
    assert!(outcome.staged.is_none(), "{outcome:?}");
    // Staged again (slot a), it is applied by the device itself once its clock reaches the
    // window (set forward from the shell: the guest's time, not the host's), and commits.
    let p = slate_imager::operator::push::push_with(&url, &again, &acc, forced, quiet).unwrap();
    let slate_core::api::UploadAnswer::Staged {
        slot: Slot::A,
        apply_at: Some(opens),
        ..
    } = p.answer
    else {
        panic!("not staged in slot a: {:?}", p.answer);
    };
    // The shell that came up after the apply's reboot.
    vm.wait_prompt("slate# ", mark, SHELL).unwrap();
    let mark = vm.mark();
    let set = vm
        .shell(&format!("date -u -s @{}", opens - 5), SHELL)
        .unwrap();
    assert!(set.ends_with("exit=0"), "{set}");
    vm.wait_for_after(
        &Kind::Applying.on_version(Slot::A, "1.0.0"),
        mark,
        Duration::from_secs(120),
    )
    .unwrap();
    vm.wait_for_after(
        &Kind::Committed.on_version(Slot::A, "1.0.0"),
        mark,
        BOOT_TIMEOUT,
    )
    .unwrap();
    // `slate push --now` installs at once (inside the window now: no override to count).
    let options = slate_imager::operator::push::Options {
        reboot: false,
        now: true,
        ..forced
    };
    let p = slate_imager::operator::push::push_with(&url, &again, &acc, options, quiet)
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(vm.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            panic!(
                "{e:#}\nconsole, last lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        });
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
            && metrics.contains("slate_update_window_open 1"),
        "{metrics}"
    );
    vm.shutdown(Duration::from_secs(60)).unwrap();
    fills_the_disk(&disk);
}
