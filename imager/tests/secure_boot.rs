//! Secure Boot images and keys, checked by the standard tools: `sbverify` (the signatures, as
//! the firmware checks them), `objdump` (the UKI's sections), `fsck.fat` and mtools (the ESP),
//! `virt-fw-vars` (the enrolled variables).

use crate::util::*;
use std::path::Path;
use std::process::Command;

/// `sbverify --cert` accepts `file` (exit 0 and "Signature verification OK").
fn sbverify_ok(cert: &Path, file: &Path) {
    let out = ok(Command::new("sbverify").arg("--cert").arg(cert).arg(file));
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Signature verification OK"), "{said}");
}

#[test]
fn a_secure_boot_build_boots_one_signed_uki_per_slot() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    ok(slate().arg("sb").arg("keygen").arg("--out").arg(&keys));
    let out = tmp.path().join("out");
    ok(build_cmd(&data().join("spec/image.toml"), &out)
        .arg("--secure-boot-key")
        .arg(keys.join("db.key"))
        .arg("--secure-boot-cert")
        .arg(keys.join("db.crt")));
    sgdisk_verify(&out.join("disk.img"));

    let esp = tmp.path().join("esp.img");
    extract_partition(&out.join("disk.img"), 1, &esp);
    fsck_fat(&esp);
    let img = esp.to_str().unwrap();
    let listing = stdout(&ok(mtools("mdir").args(["-/", "-b", "-i", img, "::/"])));
    let files: Vec<&str> = listing.lines().map(str::trim).collect();
    for f in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/EFI/systemd/systemd-bootx64.efi",
        "::/loader/loader.conf",
        "::/EFI/Linux/slate-a-1.2.3.efi",
    ] {
        assert!(files.contains(&f), "{f} missing from the ESP:\n{listing}");
    }
    // Nothing unauthenticated boots: no .conf entry, no loose kernel or initramfs.
    for f in &files {
        assert!(
            !f.starts_with("::/loader/entries/") && !f.starts_with("::/slate/"),
            "{f} on a Secure Boot ESP:\n{listing}"
        );
    }
    let uki = tmp.path().join("slate-a.efi");
    let boot = tmp.path().join("BOOTX64.EFI");
    ok(mtools("mcopy")
        .args(["-i", img, "::/EFI/Linux/slate-a-1.2.3.efi"])
        .arg(&uki));
    ok(mtools("mcopy")
        .args(["-i", img, "::/EFI/BOOT/BOOTX64.EFI"])
        .arg(&boot));
    assert_eq!(sha256sum(&uki), sha256sum(&out.join("uki-a.efi")));
    // Slot B's UKI differs only in what names the slot, and is signed as well.
    let uki_b = out.join("uki-b.efi");
    sbverify_ok(&keys.join("db.crt"), &uki_b);
    let b_bytes = std::fs::read(&uki_b).unwrap();
    let b_pe = slate_core::pe::Pe::parse(&b_bytes).unwrap();
    let b_cmdline =
        String::from_utf8_lossy(b_pe.section(&b_bytes, ".cmdline").unwrap()).into_owned();
    assert!(b_cmdline.contains("slate.slot=b"), "{b_cmdline}");
    assert!(
        String::from_utf8_lossy(b_pe.section(&b_bytes, ".osrel").unwrap()).contains("SLATE_SLOT=b")
    );
    let systemd_boot = tmp.path().join("systemd-bootx64.efi");
    ok(mtools("mcopy")
        .args(["-i", img, "::/EFI/systemd/systemd-bootx64.efi"])
        .arg(&systemd_boot));
    let db = keys.join("db.crt");
    sbverify_ok(&db, &uki);
    // BOOTX64.EFI is the boot-retry loader, a few KiB, and systemd-boot is beside it: the
    // firmware checks both.
    sbverify_ok(&db, &boot);
    sbverify_ok(&db, &systemd_boot);
    let loader_size = std::fs::metadata(&boot).unwrap().len();
    assert!(
        loader_size < 64 * 1024,
        "BOOTX64.EFI is {loader_size} bytes"
    );
    // The root carries the db certificate, which the agent checks a bundle's UKIs against.
    let inside =
        slate_oracles::unsquashfs_cat(&out.join("rootfs.img"), "etc/slate/secure-boot-db.crt")
            .unwrap();
    assert_eq!(inside, std::fs::read(&db).unwrap());
    // Another db does not accept them.
    let other = tmp.path().join("other");
    ok(slate().arg("sb").arg("keygen").arg("--out").arg(&other));
    let (_, said) = fails(
        Command::new("sbverify")
            .arg("--cert")
            .arg(other.join("db.crt"))
            .arg(&uki),
    );
    assert!(!said.contains("Signature verification OK"), "{said}");

    // objdump reads the sections systemd-stub looks for; the command line carries the slot
    // and the root hash of this build.
    let sections = stdout(&ok(Command::new("objdump").arg("-h").arg(&uki)));
    for s in [".osrel", ".cmdline", ".linux", ".initrd"] {
        assert!(
            sections.contains(&format!(" {s} ")),
            "{s} missing:\n{sections}"
        );
    }
    let bytes = std::fs::read(&uki).unwrap();
    let pe = slate_core::pe::Pe::parse(&bytes).unwrap();
    assert!(pe.is_signed());
    let cmdline = String::from_utf8_lossy(pe.section(&bytes, ".cmdline").unwrap()).into_owned();
    let root_hash = report_value(&out, "verity", "root_hash");
    assert!(cmdline.contains("slate.slot=a"), "{cmdline}");
    assert!(
        cmdline.contains(&format!("slate.verity={}:", root_hash.as_str().unwrap())),
        "{cmdline}"
    );
    let osrel = String::from_utf8_lossy(pe.section(&bytes, ".osrel").unwrap()).into_owned();
    assert!(osrel.contains("IMAGE_VERSION=1.2.3\n"), "{osrel}");
    assert_eq!(
        pe.section(&bytes, ".linux").unwrap(),
        std::fs::read(out.join("vmlinuz")).unwrap()
    );
    assert_eq!(
        pe.section(&bytes, ".initrd").unwrap(),
        std::fs::read(out.join("initrd.img")).unwrap()
    );

    // Slate's own Authenticode check agrees with sbverify: the signed UKI passes; one byte
    // changed in .cmdline or in the kernel, the other db, or no signature at all fail both.
    let db_pem = std::fs::read(&db).unwrap();
    slate_imager::image::write::uki::check(&bytes, &db_pem).unwrap();
    let flip = |at: usize| {
        let mut b = bytes.clone();
        b[at] ^= 1;
        b
    };
    let section_at = |name: &str| {
        let s = pe.sections.iter().find(|s| s.name == name).unwrap();
        s.raw_offset as usize + 7
    };
    let unsigned = tmp.path().join("unsigned.efi");
    std::fs::copy(&uki, &unsigned).unwrap();
    ok(Command::new("sbattach").arg("--remove").arg(&unsigned));
    let other_pem = std::fs::read(other.join("db.crt")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &[u8], &str)> = vec![
        (
            "cmdline",
            flip(section_at(".cmdline")),
            &db_pem,
            "changed after signing",
        ),
        (
            "kernel",
            flip(section_at(".linux") + 4096),
            &db_pem,
            "changed after signing",
        ),
        (
            "other db",
            bytes.clone(),
            &other_pem,
            "not made by the db key",
        ),
        (
            "unsigned",
            std::fs::read(&unsigned).unwrap(),
            &db_pem,
            "not signed",
        ),
    ];
    for (what, candidate, cert, why) in cases {
        let e = slate_imager::image::write::uki::check(&candidate, cert).unwrap_err();
        assert!(format!("{e:#}").contains(why), "{what}: {e:#}");
        let file = tmp.path().join(format!("{what}.efi"));
        std::fs::write(&file, &candidate).unwrap();
        let cert_file = tmp.path().join(format!("{what}.crt"));
        std::fs::write(&cert_file, cert).unwrap();
        let (_, said) = fails(
            Command::new("sbverify")
                .arg("--cert")
                .arg(&cert_file)
                .arg(&file),
        );
        assert!(
            !said.contains("Signature verification OK"),
            "{what}: {said}"
        );
    }

    // slate inspect reads the slot from the UKI.
    let json = stdout(&ok(slate()
        .arg("inspect")
        .arg("--json")
        .arg(out.join("disk.img"))));
    assert!(json.contains("slate-a-1.2.3.efi"), "{json}");
    assert!(json.contains(root_hash.as_str().unwrap()), "{json}");
}

#[test]
fn sb_vars_enrols_the_three_keys_with_secure_boot_on() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    ok(slate().arg("sb").arg("keygen").arg("--out").arg(&keys));
    let vars = tmp.path().join("OVMF_VARS.fd");
    let auth = tmp.path().join("auth");
    ok(slate()
        .args(["sb", "vars", "--keys"])
        .arg(&keys)
        .arg("--out")
        .arg(&vars)
        .arg("--auth")
        .arg(&auth));
    let printed = stdout(&ok(slate_imager::operator::secure_boot::virt_fw_vars()
        .arg("-i")
        .arg(&vars)
        .arg("-p")));
    for var in ["PK ", "KEK ", "db ", "SecureBootEnable"] {
        assert!(printed.contains(var), "{var} missing:\n{printed}");
    }
    assert!(
        printed.contains("SecureBootEnable    : bool: ON"),
        "{printed}"
    );
    for f in ["PK.auth", "KEK.auth", "db.auth"] {
        assert!(auth.join(f).is_file(), "{f} not written");
    }
    // A missing keys folder names what to run.
    let (code, said) = fails(
        slate()
            .args(["sb", "vars", "--keys"])
            .arg(tmp.path().join("none"))
            .arg("--out")
            .arg(&vars),
    );
    assert_ne!(code, 0);
    assert!(said.contains("slate sb keygen"), "{said}");
}
