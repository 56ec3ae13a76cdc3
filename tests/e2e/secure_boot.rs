//! Secure Boot: an image built with signed UKIs boots on OVMF's Secure Boot build with the
//! test keys enrolled (PK, KEK, db by `slate sb vars`), and the firmware itself refuses a UKI
//! that is unsigned, signed by a key not in its db, or changed by one byte. Its updates carry
//! a signed UKI per slot: they commit and roll back as without Secure Boot, and a bundle with
//! a UKI the firmware would refuse is refused by the device and by `slate verify`.

use slate_core::api::{Kind, Outcome, SlotState};
use slate_core::bootentry::{EntryKind, EntryName};
use slate_core::layout::Slot;
use slate_tests::disk::{replace_on_esp, run_ok};
use slate_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SHELL: Duration = Duration::from_secs(30);
/// OVMF refuses a bad image within seconds of handing over to systemd-boot (4–6 s under TCG).
const REFUSAL: Duration = Duration::from_secs(90);
/// After a refusal: a kernel that had started would print stage 1's marker in about 6 s under
/// TCG, so its absence over this span shows that nothing of the image ran.
const NOTHING_RUNS: Duration = Duration::from_secs(20);

/// The three UKIs the firmware must refuse, made from the image's signed one in `work`.
fn bad_ukis(signed: &Path, work: &Path) -> Vec<(&'static str, PathBuf)> {
    let unsigned = work.join("unsigned.efi");
    std::fs::copy(signed, &unsigned).unwrap();
    run_ok(Command::new("sbattach").arg("--remove").arg(&unsigned));
    let stranger = work.join("stranger.efi");
    let other = secure_boot_keys().join("other");
    run_ok(
        Command::new("sbsign")
            .arg("--key")
            .arg(other.join("db.key"))
            .arg("--cert")
            .arg(other.join("db.crt"))
            .arg("--output")
            .arg(&stranger)
            .arg(&unsigned),
    );
    let changed = work.join("changed.efi");
    std::fs::write(&changed, with_cmdline_changed(signed)).unwrap();
    vec![
        ("unsigned", unsigned),
        ("signed by a key not in db", stranger),
        ("one byte changed in .cmdline", changed),
    ]
}

/// The signed UKI at `signed` with one character of the root hash in its `.cmdline` changed:
/// a device booting it would verify its root against a hash nobody signed.
fn with_cmdline_changed(signed: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(signed).unwrap();
    let pe = slate_core::pe::Pe::parse(&bytes).unwrap();
    let cmdline = pe.sections.iter().find(|s| s.name == ".cmdline").unwrap();
    let text = pe.section(&bytes, ".cmdline").unwrap();
    let at = String::from_utf8_lossy(text)
        .find("slate.verity=")
        .expect("the UKI's command line has the root hash")
        + "slate.verity=".len()
        + 5;
    let byte = &mut bytes[cmdline.raw_offset as usize + at];
    *byte = if *byte == b'0' { b'1' } else { b'0' };
    bytes
}

#[test]
fn a_secure_boot_image_boots_verified_and_the_firmware_refuses_a_changed_uki() {
    let img = image_variant("1.0.0", Variant::SecureBoot);
    let vars = secure_boot_keys().join("OVMF_VARS.fd");
    let uki = img.dir.join("uki-a.efi");
    // The oracle: sbverify finds the image's UKI signed by the db certificate.
    run_ok(
        Command::new("sbverify")
            .arg("--cert")
            .arg(secure_boot_keys().join("db.crt"))
            .arg(&uki),
    );
    let entry = EntryName::good(Slot::A, "1.0.0".parse().unwrap()).with_kind(EntryKind::Uki);
    // It carries its signed PCR 11 policy, and boots with it.
    let bytes = std::fs::read(&uki).unwrap();
    let pe = slate_core::pe::Pe::parse(&bytes).unwrap();
    for section in [".pcrsig", ".pcrpkey"] {
        assert!(
            pe.section(&bytes, section).is_some(),
            "uki-a.efi has no {section}"
        );
    }

    let (tmp, disk) = copy_disk(&img.dir.join("disk.img")).unwrap();
    let secure = |c: &mut slate_qemu::VmConfig| c.secure_boot_vars = Some(vars.clone());
    let mut vm = boot(&disk, tmp.path(), secure).unwrap();
    let sb = vm
        .wait_for(&Kind::SecureBoot.prefix(), BOOT_TIMEOUT)
        .unwrap();
    assert_eq!(
        sb.text,
        format!(
            "{} on lockdown=integrity built_for=true",
            Kind::SecureBoot.prefix()
        ),
        "serial log {}",
        vm.log_path().display()
    );
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let s = status(&vm);
    assert!(s.secure_boot && s.built_for_secure_boot, "{s:?}");
    assert_eq!(s.entry.as_deref(), Some(entry.to_string().as_str()));
    // The kernel runs the command line signed into the UKI, and is locked down.
    vm.wait_prompt("slate# ", 0, SHELL).unwrap();
    let seen = vm
        .shell("cat /proc/cmdline /sys/kernel/security/lockdown", SHELL)
        .unwrap();
    let signed = std::fs::read(&uki).unwrap();
    let pe = slate_core::pe::Pe::parse(&signed).unwrap();
    let cmdline = String::from_utf8_lossy(pe.section(&signed, ".cmdline").unwrap()).into_owned();
    assert!(
        seen.contains(cmdline.trim()),
        "{seen}\nvs the UKI's {cmdline}"
    );
    assert!(seen.contains("[integrity]"), "{seen}");
    vm.shutdown(SHELL).unwrap();

    // The same disk on firmware without Secure Boot boots, and says loudly what it lacks.
    let mut vm = boot(&disk, tmp.path(), |_| {}).unwrap();
    let sb = vm
        .wait_for(&Kind::SecureBoot.prefix(), BOOT_TIMEOUT)
        .unwrap();
    assert!(
        sb.text
            .starts_with(&format!("{} off", Kind::SecureBoot.prefix()))
            && sb.text.contains("WARNING"),
        "{}",
        sb.text
    );
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let s = status(&vm);
    assert!(!s.secure_boot && s.built_for_secure_boot, "{s:?}");
    vm.shutdown(SHELL).unwrap();

    // Each bad UKI in slot A's place: the firmware refuses it, and nothing of Slate runs.
    for (what, bad) in bad_ukis(&uki, tmp.path()) {
        let (work, disk) = copy_disk(&img.dir.join("disk.img")).unwrap();
        replace_on_esp(&disk, &entry.path(), &bad);
        let vm = boot(&disk, work.path(), secure).unwrap();
        // systemd-boot's error names the file the firmware refused to load.
        let file = entry.path();
        let file = file.rsplit('/').next().unwrap_or(&file);
        let refused = vm
            .wait_for(&format!("{file}: Access Denied"), REFUSAL)
            .unwrap_or_else(|e| panic!("a UKI {what} was not refused: {e:#}"));
        eprintln!("a UKI {what}: {}", refused.text);
        // And nothing of Slate runs after it: stage 1 would be done within seconds of a
        // kernel starting, so its marker must not come in a span several times that.
        let ran = vm.wait_for(&Kind::Stage1Done.prefix(), NOTHING_RUNS);
        assert!(
            ran.is_err(),
            "a UKI {what} ran: {:?}, serial log {}",
            ran.map(|l| l.text),
            vm.log_path().display()
        );
        assert!(
            !vm.lines()
                .iter()
                .any(|l| l.text.contains(slate_core::api::marker::PREFIX)
                    && !l.text.contains(&Kind::BootRetry.prefix())),
            "a UKI {what} ran: serial log {}",
            vm.log_path().display()
        );
    }
}

/// `bundle` with each UKI signed by the key in `key_dir` instead (and the manifest re-signed by
/// the trusted update keys, so only the UKI signature is wrong), written to `out`.
fn with_ukis_signed_by(bundle: &Path, key_dir: &Path, work: &Path, out: &Path) {
    let mut parts = Parts::read(bundle);
    for slot in [Slot::A, Slot::B] {
        let name = slate_core::manifest::uki_artifact(slot);
        let (_, bytes) = parts.entries.iter().find(|(n, _)| n == name).unwrap();
        let unsigned = work.join(format!("unsigned-{name}"));
        std::fs::write(&unsigned, bytes).unwrap();
        run_ok(Command::new("sbattach").arg("--remove").arg(&unsigned));
        let signed = work.join(format!("stranger-{name}"));
        run_ok(
            Command::new("sbsign")
                .arg("--key")
                .arg(key_dir.join("db.key"))
                .arg("--cert")
                .arg(key_dir.join("db.crt"))
                .arg("--output")
                .arg(&signed)
                .arg(&unsigned),
        );
        parts.replace_artifact(name, std::fs::read(&signed).unwrap());
    }
    parts.resign(&[&keys().k1, &keys().k2]);
    parts.write(out);
}

fn outcome(p: &slate_imager::operator::push::Pushed) -> Outcome {
    let s = p.outcome.as_ref().expect("the push waited for a decision");
    s.last_attempt.as_ref().expect("a last attempt").outcome
}

#[test]
fn secure_boot_updates_commit_roll_back_and_refuse_a_uki_the_firmware_would_not_run() {
    use slate_imager::{operator::bundle::verify, operator::push, progress::Progress};
    let wait = Some(Duration::from_secs(600));
    let v1 = image_variant("1.0.0", Variant::SecureBoot);
    let v2 = bundle(image_variant("1.1.0", Variant::SecureBoot));
    let v3_unhealthy = bundle(image_variant("1.2.0", Variant::SecureBootFailingHealth));
    let plain = bundle(image("1.1.0"));
    let keys_dir = secure_boot_keys();
    let db = keys_dir.join("db.crt");
    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
    let stranger = tmp.path().join("1.1.0-stranger-ukis.slate");
    with_ukis_signed_by(&v2, &keys_dir.join("other"), tmp.path(), &stranger);

    // Offline: a format-2 bundle with both UKIs; `slate verify` needs the db certificate for
    // it and refuses UKIs signed by another key, as sbverify (the oracle) does.
    let m = verify(&v2, &keys().trust, None, Some(&db)).unwrap();
    let names: Vec<&str> = m.artifacts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        (m.format, names),
        (2, slate_core::manifest::UKI_ARTIFACTS.to_vec())
    );
    let e = verify(&v2, &keys().trust, None, None).unwrap_err();
    assert!(format!("{e:#}").contains("--secure-boot-cert"), "{e:#}");
    let e = verify(&stranger, &keys().trust, None, Some(&db)).unwrap_err();
    assert!(format!("{e:#}").contains("not made by the db key"), "{e:#}");
    let refused = Command::new("sbverify")
        .arg("--cert")
        .arg(&db)
        .arg(tmp.path().join("stranger-uki-b.efi"))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "sbverify accepted a stranger's UKI"
    );

    // On the device: the stranger's UKIs and a bundle without UKIs are refused before
    // anything is written (the idle slot's bytes are the same after).
    let (b_at, b_len) = partition(&disk, Slot::B.label()).unwrap();
    let idle_before = hash_range(&disk, b_at, b_len);
    let secure =
        |c: &mut slate_qemu::VmConfig| c.secure_boot_vars = Some(keys_dir.join("OVMF_VARS.fd"));
    let mut vm = boot(&disk, tmp.path(), secure).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let url = vm.agent_url().unwrap();
    let acc = access(tmp.path());
    let quiet = Progress::new(true);
    let e = push::push(&url, &stranger, &acc, true, None, quiet).unwrap_err();
    let why = format!("{e:#}");
    assert!(
        why.contains("uki-a.efi: the signature was not made by the db key"),
        "{why}"
    );
    assert!(why.contains("nothing was written"), "{why}");
    let e = push::push(&url, &plain, &acc, true, None, quiet).unwrap_err();
    assert!(
        format!("{e:#}").contains("carries a kernel and an initramfs"),
        "{e:#}"
    );
    vm.shutdown(SHELL).unwrap();
    assert_eq!(
        hash_range(&disk, b_at, b_len),
        idle_before,
        "the idle slot was written"
    );

    // v1 → v2: the UKI of slot b becomes its entry, boots on trial, commits.
    let mut vm = boot(&disk, tmp.path(), secure).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let url = vm.agent_url().unwrap();
    let p = push::push(&url, &v2, &acc, true, wait, quiet).unwrap();
    assert_eq!(installed_slot(&p.answer), Slot::B);
    assert_eq!(outcome(&p), Outcome::Committed);
    let s = status(&vm);
    assert!(s.secure_boot, "{s:?}");
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "1.1.0"));
    // systemd-boot chose the UKI entry (named as it was at boot, with its try counter).
    let entry = s.entry.clone().unwrap_or_default();
    assert!(
        entry.starts_with("slate-b-1.1.0+") && entry.ends_with(".efi"),
        "{entry}"
    );
    assert_eq!(slot_state(&s, Slot::B), (SlotState::Good, "1.1.0".into()));

    // v3 fails its health check on trial: rolled back to v2 by itself.
    let mark = vm.mark();
    let p = push::push(&url, &v3_unhealthy, &acc, true, wait, quiet).unwrap();
    assert_eq!(installed_slot(&p.answer), Slot::A);
    assert_eq!(outcome(&p), Outcome::RolledBack);
    vm.wait_for_after(
        &Kind::Healthy.on_version(Slot::B, "1.1.0"),
        mark,
        BOOT_TIMEOUT,
    )
    .unwrap();
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "1.1.0"));
    assert_eq!(slot_state(&s, Slot::A), (SlotState::Bad, "1.2.0".into()));
    vm.shutdown(SHELL).unwrap();
    esp_fsck(&disk, tmp.path()).unwrap();
}

/// A trial UKI that the firmware refuses: v2 is installed into slot b, and before its first
/// boot its UKI on the ESP gets one byte changed (what someone with the disk could do). Each
/// start of systemd-boot counts a try, the firmware refuses the UKI, and the boot-retry loader
/// resets the machine; with no tries left, systemd-boot boots slot a, and the agent records
/// v2 as failed.
#[test]
fn a_trial_uki_the_firmware_refuses_falls_back_to_the_good_slot_by_itself() {
    use slate_imager::{operator::push, progress::Progress};
    let v1 = image_variant("1.0.0", Variant::SecureBoot);
    let v2_image = image_variant("1.1.0", Variant::SecureBoot);
    let v2 = bundle(v2_image);
    let keys_dir = secure_boot_keys();
    let secure =
        |c: &mut slate_qemu::VmConfig| c.secure_boot_vars = Some(keys_dir.join("OVMF_VARS.fd"));
    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
    let mut vm = boot(&disk, tmp.path(), secure).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let url = vm.agent_url().unwrap();
    let p = push::push(
        &url,
        &v2,
        &access(tmp.path()),
        false,
        None,
        Progress::new(true),
    )
    .unwrap();
    assert_eq!(installed_slot(&p.answer), Slot::B);
    vm.shutdown(SHELL).unwrap();

    let trial = EntryName::trial(Slot::B, "1.1.0".parse().unwrap(), 3).with_kind(EntryKind::Uki);
    let changed = tmp.path().join("changed-uki-b.efi");
    std::fs::write(
        &changed,
        with_cmdline_changed(&v2_image.dir.join("uki-b.efi")),
    )
    .unwrap();
    replace_on_esp(&disk, &trial.path(), &changed);
    let started = std::time::Instant::now();
    let vm = boot(&disk, tmp.path(), secure).unwrap();
    vm.wait_for(
        &Kind::Rollback.on_version(Slot::B, "1.1.0"),
        BOOT_TIMEOUT * 2,
    )
    .unwrap_or_else(|e| panic!("no fallback: {e:#}; serial log {}", vm.log_path().display()));
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    eprintln!(
        "refused trial UKI: healthy on the good slot {:.1} s after power-on",
        started.elapsed().as_secs_f64()
    );
    let log = std::fs::read_to_string(vm.log_path()).unwrap();
    let count = |what: &str| log.matches(what).count();
    assert_eq!(
        (count("Access Denied"), count(&Kind::BootRetry.prefix())),
        (3, 3),
        "three tries, each refused and reset: serial log {}",
        vm.log_path().display()
    );
    assert!(!log.contains(&Kind::Stage1Done.on(Slot::B)), "slot b ran");
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::A, "1.0.0"));
    let last = s.last_attempt.as_ref().expect("a last attempt");
    assert_eq!(last.outcome, Outcome::RolledBack, "{s:?}");
    assert!(last.reason.starts_with("boot-failed"), "{s:?}");
    assert!(s.failed.iter().any(|f| f.version == "1.1.0"), "{s:?}");
    assert_eq!(slot_state(&s, Slot::B).0, SlotState::Bad, "{s:?}");
}
