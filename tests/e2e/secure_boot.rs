//! Secure Boot: an image built with signed UKIs boots on OVMF's Secure Boot build with the
//! test keys enrolled (PK, KEK, db by `slate sb vars`), and the firmware itself refuses a UKI
//! that is unsigned, signed by a key not in its db, or changed by one byte.

use slate_core::api::Kind;
use slate_core::bootentry::{EntryKind, EntryName};
use slate_core::layout::Slot;
use slate_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SHELL: Duration = Duration::from_secs(30);
/// OVMF refuses a bad image within seconds of handing over to systemd-boot (4–6 s under TCG).
const REFUSAL: Duration = Duration::from_secs(90);

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("starting a tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replaces the file `esp_path` on `disk`'s ESP with `with` (mtools on the partition).
fn replace_on_esp(disk: &Path, esp_path: &str, with: &Path) {
    let (offset, _) = partition(disk, slate_core::layout::ESP_LABEL).unwrap();
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{offset}", disk.display()))
        .arg(with)
        .arg(format!("::/{esp_path}")));
}

/// The three UKIs the firmware must refuse, made from the image's signed one in `work`.
fn bad_ukis(signed: &Path, work: &Path) -> Vec<(&'static str, PathBuf)> {
    let unsigned = work.join("unsigned.efi");
    std::fs::copy(signed, &unsigned).unwrap();
    run(Command::new("sbattach").arg("--remove").arg(&unsigned));
    let stranger = work.join("stranger.efi");
    let other = secure_boot_keys().join("other");
    run(Command::new("sbsign")
        .arg("--key")
        .arg(other.join("db.key"))
        .arg("--cert")
        .arg(other.join("db.crt"))
        .arg("--output")
        .arg(&stranger)
        .arg(&unsigned));
    // One character of the root hash in the signed .cmdline: a device booting it would
    // verify its root against a hash nobody signed.
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
    let changed = work.join("changed.efi");
    std::fs::write(&changed, bytes).unwrap();
    vec![
        ("unsigned", unsigned),
        ("signed by a key not in db", stranger),
        ("one byte changed in .cmdline", changed),
    ]
}

#[test]
fn a_secure_boot_image_boots_verified_and_the_firmware_refuses_a_changed_uki() {
    let img = image_variant("1.0.0", Variant::SecureBoot);
    let vars = secure_boot_keys().join("OVMF_VARS.fd");
    let uki = img.dir.join("uki-a.efi");
    // The oracle: sbverify finds the image's UKI signed by the db certificate.
    run(Command::new("sbverify")
        .arg("--cert")
        .arg(secure_boot_keys().join("db.crt"))
        .arg(&uki));
    let entry = EntryName::good(Slot::A, "1.0.0".parse().unwrap()).with_kind(EntryKind::Uki);

    let (tmp, disk) = copy_disk(&img.dir.join("disk.img")).unwrap();
    let secure = |c: &mut slate_qemu::VmConfig| c.secure_boot_vars = Some(vars.clone());
    let mut vm = boot(&disk, tmp.path(), secure).unwrap();
    let sb = vm
        .wait_for(&Kind::SecureBoot.prefix(), BOOT_TIMEOUT)
        .unwrap();
    assert_eq!(
        sb.text,
        "slate: secure boot on lockdown=integrity built_for=true",
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
        sb.text.starts_with("slate: secure boot off") && sb.text.contains("WARNING"),
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
        vm.wait_for("Access Denied", REFUSAL)
            .unwrap_or_else(|e| panic!("a UKI {what} was not refused: {e:#}"));
        assert!(
            !vm.saw(slate_core::api::marker::PREFIX),
            "a UKI {what} ran: serial log {}",
            vm.log_path().display()
        );
    }
}
