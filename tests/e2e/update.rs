//! Updates end to end: a signed update commits; one whose health check fails rolls back by
//! itself and is not retried; one that cannot boot falls back through systemd-boot's boot
//! counting; a bundle below the security epoch is refused.

use slate_core::api::{Kind, Outcome, SlotState, Status};
use slate_core::layout::Slot;
use slate_imager::operator::push;
use slate_imager::progress::Progress;
use slate_tests::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(600);

fn last(s: &Status) -> &slate_core::api::UpdateRecord {
    s.last_attempt.as_ref().expect("a last attempt")
}

/// The fw_cfg path only the harness's cut points read.
fn slate_agent_fw_cfg() -> &'static [u8] {
    b"opt/slate/cut-at"
}

/// `name` as the UTF-16LE bytes of an efivarfs file (attributes NV|BS|RT first), as octal
/// escapes for busybox printf.
fn efivar_text(name: &str) -> String {
    let mut bytes = vec![7u8, 0, 0, 0];
    for u in name.encode_utf16().chain([0]) {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    bytes.iter().map(|b| format!("\\{b:03o}")).collect()
}

/// With the floor at 2 (slot b, 1.1.0, committed): a damaged state.json does not lower it, and
/// the epoch-0 image in slot a, even with its entry made good again and chosen for the next
/// boot, never reaches stage 2.
fn floor_survives_a_damaged_state_and_refuses_older_images(
    vm: &mut slate_qemu::Vm,
    url: &str,
    epoch_low: &std::path::Path,
    acc: &push::Access,
) {
    let shell = Duration::from_secs(60);
    vm.wait_prompt("slate# ", 0, shell).unwrap();
    let out = vm
        .shell("echo garbage > /data/slate/state.json && sync", shell)
        .unwrap();
    assert!(out.ends_with("exit=0"), "{out}");
    let mark = vm.mark();
    let (code, body) = vm.http("POST", slate_core::api::REBOOT_ROUTE).unwrap();
    assert_eq!(code, 202, "{body}");
    vm.wait_for_after(
        &Kind::Healthy.on_version(Slot::B, "1.1.0"),
        mark,
        BOOT_TIMEOUT,
    )
    .unwrap();
    assert_eq!(status(vm).security_epoch, 2);
    let e = push::push(url, epoch_low, acc, true, None, Progress::new(true)).unwrap_err();
    assert!(format!("{e:#}").contains("below the device's 2"), "{e:#}");

    vm.wait_prompt("slate# ", mark, shell).unwrap();
    let dir = "/run/slate/esp/loader/entries";
    let out = vm
        .shell(
            &format!(
                "mount -o remount,rw /run/slate/esp && mv {dir}/slate-a-1.0.0+0.conf {dir}/slate-a-1.0.0.conf && mount -o remount,ro /run/slate/esp && printf '{}' > /sys/firmware/efi/efivars/LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f",
                efivar_text("slate-a-1.0.0.conf")
            ),
            shell,
        )
        .unwrap();
    assert!(out.ends_with("exit=0"), "{out}");
    let mark = vm.mark();
    let (code, body) = vm.http("POST", slate_core::api::REBOOT_ROUTE).unwrap();
    assert_eq!(code, 202, "{body}");
    let refused = vm
        .wait_for_after(
            &format!("{} slot=a epoch=0 floor=2", Kind::BelowFloor.prefix()),
            mark,
            BOOT_TIMEOUT,
        )
        .unwrap();
    vm.wait_for_after(
        &Kind::Healthy.on_version(Slot::B, "1.1.0"),
        mark,
        BOOT_TIMEOUT,
    )
    .unwrap();
    // Slot a never got to stage 2: the only stage 2 since is slot b's.
    let stage2 = vm
        .lines()
        .iter()
        .filter(|l| l.at > refused.at && l.text.contains(&Kind::Stage1Done.prefix()))
        .map(|l| l.text.clone())
        .collect::<Vec<_>>();
    assert!(
        !stage2.is_empty()
            && stage2
                .iter()
                .all(|t| t.contains(&Kind::Stage1Done.on(Slot::B))),
        "{stage2:?}"
    );
    let s = status(vm);
    assert_eq!(slot_state(&s, Slot::A), (SlotState::Bad, "1.0.0".into()));
}

/// What ships runs here: every image of this scenario is a production build, whose agent has
/// the harness's cut points compiled out.
#[test]
fn updates_commit_roll_back_on_failed_health_and_fall_back_when_unbootable() {
    let v1 = production_image("1.0.0", Variant::Demo, 0);
    for program in ["slated", "slate-init"] {
        let bytes = std::fs::read(agent_dir_for(false).join(program)).unwrap();
        assert!(bytes.len() > 100_000, "{program} is not the device binary");
        assert!(
            !bytes
                .windows(slate_agent_fw_cfg().len())
                .any(|w| w == slate_agent_fw_cfg()),
            "the production {program} still reads the harness's fw_cfg"
        );
    }
    let v2 = bundle(production_image("1.1.0", Variant::Demo, 2));
    let v3_unhealthy = bundle(production_image("1.2.0", Variant::FailingHealth, 2));
    let epoch_low = bundle(production_image("1.5.0", Variant::Demo, 1));
    // 1.3.0 whose initrd is garbage: signed and consistent, but the kernel cannot start it.
    let mut broken = Parts::read(&bundle(production_image("1.3.0", Variant::Demo, 2)));
    broken.replace_artifact("initrd.img", vec![0x42; 64 * 1024]);
    broken.resign(&[&keys().k1, &keys().k2]);
    let broken_path = v1.dir.with_file_name("1.3.0-broken-initrd.slate");
    broken.write(&broken_path);

    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
    let mut vm = boot(&disk, tmp.path(), |_| {}).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let url = vm.agent_url().unwrap();
    let acc = access(tmp.path());
    let quiet = Progress::new(true);

    // v1 → v2: installed into b, trial boot, healthy, committed; through a flood of TLS
    // handshakes from the moment the upload is answered until the trial has ended (the
    // listener's budget refuses most; the health checks run beside it, not behind it).
    let p = push::push(&url, &v2, &acc, true, None, quiet).unwrap();
    assert_eq!(installed_slot(&p.answer), Slot::B);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = handshake_flood(vm.host_port().unwrap(), 3, stop.clone());
    let decided = vm.wait_for(&Kind::Committed.on_version(Slot::B, "1.1.0"), WAIT);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flooded = flood.join().unwrap();
    eprintln!("the trial of 1.1.0 ran through a handshake flood: {flooded:?}");
    decided.unwrap_or_else(|e| panic!("1.1.0 was not committed through a flood: {e:#}"));
    // It reached the TLS layer: the device did the work of some handshakes during the trial.
    assert!(
        flooded.connections >= 100 && flooded.answered >= 10,
        "{flooded:?}"
    );
    let s = push::Device::open(&url, &acc)
        .unwrap()
        .wait_decided("1.1.0", WAIT)
        .unwrap()
        .expect("a decision about 1.1.0");
    assert_eq!(last(&s).outcome, Outcome::Committed, "{s:?}");
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "1.1.0"));
    assert_eq!(last(&s).outcome, Outcome::Committed);
    // Committing epoch 2 marked the epoch-0 image in slot a bad: no fallback below the floor.
    assert_eq!(slot_state(&s, Slot::A), (SlotState::Bad, "1.0.0".into()));
    assert_eq!(slot_state(&s, Slot::B), (SlotState::Good, "1.1.0".into()));
    assert_eq!(s.security_epoch, 2);
    assert!(vm.saw(&Kind::Committed.on_version(Slot::B, "1.1.0")));

    let (code, metrics) = vm.http("GET", "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("slate_update_attempts_total{outcome=\"committed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("slate_boots_total 2"), "{metrics}");

    // Below the committed security epoch: refused before anything is written, by the device
    // and by `slate verify` alike.
    let e = push::push(&url, &epoch_low, &acc, true, None, quiet).unwrap_err();
    assert!(
        format!("{e:#}").contains("security epoch 1 is below the device's 2"),
        "{e:#}"
    );
    let facts = slate_core::manifest::DeviceFacts {
        product: "slate-demo".into(),
        board: "qemu-x86_64".into(),
        version: "1.1.0".parse().unwrap(),
        security_epoch: 2,
        failed_versions: vec![],
        now: slate_imager::operator::bundle::now(),
    };
    let offline =
        slate_imager::operator::bundle::verify(&epoch_low, &keys().trust, Some(&facts), None)
            .unwrap_err();
    assert!(
        format!("{offline:#}").contains("security epoch"),
        "{offline:#}"
    );

    floor_survives_a_damaged_state_and_refuses_older_images(&mut vm, &url, &epoch_low, &acc);

    // v3 fails a health check on its trial boot: marked bad, back to v2 with no human action.
    let mark = vm.mark();
    let p = push::push(&url, &v3_unhealthy, &acc, true, None, quiet).unwrap();
    assert_eq!(installed_slot(&p.answer), Slot::A);
    // While it is on trial (its failing check is retried until 20 s after boot), a reboot
    // through the API is refused: it would spend one of the trial's tries.
    let device = push::Device::open(&url, &acc).unwrap();
    let trial_started = std::time::Instant::now();
    loop {
        assert!(
            !vm.saw_after(&Kind::Rollback.prefix(), mark),
            "rolled back before the trial was seen"
        );
        assert!(
            trial_started.elapsed() < WAIT,
            "1.2.0 never ran on trial: {}",
            vm.tail(20)
        );
        let on_trial = device.poll_status().unwrap().is_some_and(|s| {
            s.slot == Slot::A
                && s.version.to_string() == "1.2.0"
                && matches!(s.boot, slate_core::api::BootState::Trial { .. })
        });
        if on_trial {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let asked = vm.mark();
    let (code, why) = vm.http("POST", "/v1/reboot").unwrap();
    assert_eq!(code, 409, "{why}");
    assert!(why.contains("trial"), "{why}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !vm.saw_after(&Kind::Shutdown.prefix(), asked),
        "{}",
        vm.tail(10)
    );
    let s = device
        .wait_decided("1.2.0", WAIT)
        .unwrap()
        .unwrap_or_else(|| panic!("no decision about 1.2.0: {}", vm.tail(20)));
    assert_eq!(last(&s).outcome, Outcome::RolledBack, "{s:?}");
    assert!(last(&s).reason.contains("always-fails"), "{s:?}");
    vm.wait_for_after(
        &Kind::Rollback.on_version(Slot::A, "1.2.0"),
        mark,
        BOOT_TIMEOUT,
    )
    .unwrap();
    vm.wait_for_after(
        &Kind::Healthy.on_version(Slot::B, "1.1.0"),
        mark,
        BOOT_TIMEOUT,
    )
    .unwrap();
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "1.1.0"));
    assert_eq!(slot_state(&s, Slot::A), (SlotState::Bad, "1.2.0".into()));
    assert!(s.failed.iter().any(|f| f.version == "1.2.0"), "{s:?}");
    // The same version is not tried again automatically.
    let e = push::push(&url, &v3_unhealthy, &acc, true, None, quiet).unwrap_err();
    assert!(
        format!("{e:#}").contains("failed its health checks before"),
        "{e:#}"
    );

    // 1.3.0 cannot boot: systemd-boot spends its three tries, then boots v2 again.
    let mark = vm.mark();
    let p = push::push(&url, &broken_path, &acc, true, Some(WAIT), quiet).unwrap();
    let s = p.outcome.unwrap();
    assert_eq!(last(&s).outcome, Outcome::RolledBack, "{s:?}");
    assert!(last(&s).reason.contains("boot-failed"), "{s:?}");
    vm.wait_for_after(
        &Kind::Rollback.on_version(Slot::A, "1.3.0"),
        mark,
        Duration::from_secs(5),
    )
    .unwrap();
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "1.1.0"));
    assert_eq!(slot_state(&s, Slot::A), (SlotState::Bad, "1.3.0".into()));
    drop(tmp);
}
