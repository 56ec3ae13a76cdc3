//! Images built with a PCR-signing key (`--pcr-key`): with Secure Boot, each slot's signed
//! UKI carries the policies `systemd-measure` predicts and signs; without it, unsigned UKIs
//! with the same sections, and bundles that carry them.

use crate::tpm::{refs, rsa_key, systemd_sign};
use crate::util::*;
use slate_oracles::swtpm::Swtpm;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn a_measured_boot_build_carries_each_slots_signed_policy() {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    ok(slate().arg("sb").arg("keygen").arg("--out").arg(&keys));
    let pcr_key = rsa_key(tmp.path(), 2048);
    let out = tmp.path().join("out");
    ok(build_cmd(&data().join("spec/image.toml"), &out)
        .arg("--secure-boot-key")
        .arg(keys.join("db.key"))
        .arg("--secure-boot-cert")
        .arg(keys.join("db.crt"))
        .arg("--pcr-key")
        .arg(&pcr_key));
    let tpm = Swtpm::tcp(&tmp.path().join("swtpm")).unwrap();
    let public = tmp.path().join("pcr.pub.pem");
    ok(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&pcr_key)
        .arg("-out")
        .arg(&public));
    let mut policies = Vec::new();
    for slot in ["a", "b"] {
        let uki_path = out.join(format!("uki-{slot}.efi"));
        // Still signed for Secure Boot after the sections were added.
        let said = ok(Command::new("sbverify")
            .arg("--cert")
            .arg(keys.join("db.crt"))
            .arg(&uki_path));
        let said = String::from_utf8_lossy(&said.stdout).into_owned()
            + &String::from_utf8_lossy(&said.stderr);
        assert!(said.contains("Signature verification OK"), "{said}");
        let uki = std::fs::read(&uki_path).unwrap();
        let pe = slate_core::pe::Pe::parse(&uki).unwrap();
        let section = |name: &str| {
            pe.section(&uki, name)
                .unwrap_or_else(|| panic!("uki-{slot}.efi has no {name}"))
                .to_vec()
        };
        let dir = tmp.path().join(format!("sections-{slot}"));
        std::fs::create_dir_all(&dir).unwrap();
        let files: Vec<(&str, PathBuf)> = ["linux", "osrel", "cmdline", "initrd", "pcrpkey"]
            .into_iter()
            .map(|name| {
                let p = dir.join(name);
                std::fs::write(&p, section(&format!(".{name}"))).unwrap();
                (name, p)
            })
            .collect();
        assert_eq!(
            section(".pcrpkey"),
            std::fs::read(&public).unwrap(),
            "the .pcrpkey section is not the key's public half"
        );
        // A sealed /data (the default with a PCR key): the epoch index's write policy is
        // systemd's PolicyPCR for the PCR 11 systemd-measure predicts, under Slate's
        // policyRef; the unseal policy binds the epoch index (epoch 0) before it.
        let signed = systemd_sign(&files, &pcr_key, &public, &tpm);
        let theirs: serde_json::Value = serde_json::from_str(&signed).unwrap();
        let ours: serde_json::Value = serde_json::from_slice(&section(".pcrsig")).unwrap();
        let ours = ours["sha256"].as_array().unwrap().clone();
        assert_eq!(ours.len(), 2, "uki-{slot}.efi's .pcrsig: {ours:?}");
        assert_eq!(ours[1]["pol"], theirs["sha256"][0]["pol"], "{ours:?}");
        assert_eq!(ours[1]["pkfp"], theirs["sha256"][0]["pkfp"], "{ours:?}");
        assert_eq!(ours[1]["ref"], "slate-epoch-write");
        let measured: Vec<(slate_core::tpm::Section, Vec<u8>)> = [
            (slate_core::tpm::Section::Linux, ".linux"),
            (slate_core::tpm::Section::Osrel, ".osrel"),
            (slate_core::tpm::Section::Cmdline, ".cmdline"),
            (slate_core::tpm::Section::Initrd, ".initrd"),
            (slate_core::tpm::Section::Pcrpkey, ".pcrpkey"),
        ]
        .into_iter()
        .map(|(s, name)| (s, section(name)))
        .collect();
        let pcr = slate_core::tpm::pcr11(&refs(&measured), &[slate_core::tpm::ENTER_INITRD]);
        let pem = std::fs::read_to_string(&public).unwrap();
        let (n, e) = slate_core::tpm::rsa_public_numbers(
            &slate_core::tpm::rsa_public_key_der(&pem).unwrap(),
        )
        .unwrap();
        let name = slate_core::tpm::policy::vendor_key_name(&n, e);
        assert_eq!(
            ours[0]["pol"],
            hex::encode(slate_core::tpm::policy::unseal_policy(&name, 0, &pcr)).as_str()
        );
        assert!(ours[0].get("ref").is_none(), "{ours:?}");
        policies.push(ours[0]["pol"].to_string());
    }
    // The slot is in the signed command line: each slot has its own policy.
    assert_ne!(policies[0], policies[1]);
    // `slate inspect` shows the policy slot a's entry unseals for.
    let shown = stdout(&ok(slate().arg("inspect").arg(out.join("disk.img"))));
    assert!(
        shown.contains(&format!(
            "signed policy: PCR 11 = policy {}",
            policies[0].trim_matches('"')
        )),
        "{shown}"
    );
}

/// Measured boot does not need Secure Boot: each slot boots an unsigned UKI with its signed
/// PCR policy, the image says so, and its bundles carry the UKIs (format 2) and verify
/// offline without a db certificate.
#[test]
fn a_measured_boot_build_without_secure_boot_boots_unsigned_ukis() {
    let tmp = tempdir();
    let d = tmp.path();
    ok(slate().arg("keygen").arg("--out").arg(d.join("k1")));
    ok(slate()
        .arg("trust")
        .arg("--key")
        .arg(d.join("k1.pub.pem"))
        .arg("--out")
        .arg(d.join("trust.toml")));
    let pcr_key = rsa_key(d, 2048);
    let out = d.join("out");
    ok(build_cmd(&data().join("spec/image.toml"), &out)
        .arg("--pcr-key")
        .arg(&pcr_key)
        .arg("--trust")
        .arg(d.join("trust.toml")));
    sgdisk_verify(&out.join("disk.img"));
    for slot in ["a", "b"] {
        let uki = std::fs::read(out.join(format!("uki-{slot}.efi"))).unwrap();
        let pe = slate_core::pe::Pe::parse(&uki).unwrap();
        assert!(
            !pe.is_signed(),
            "uki-{slot}.efi is signed without Secure Boot"
        );
        for section in [
            ".pcrsig", ".pcrpkey", ".cmdline", ".osrel", ".linux", ".initrd",
        ] {
            assert!(
                pe.section(&uki, section).is_some(),
                "uki-{slot}.efi has no {section}"
            );
        }
    }

    // The ESP: systemd-boot and slot A's UKI as its entry; no .conf entry, no loose kernel.
    let esp = d.join("esp.img");
    extract_partition(&out.join("disk.img"), 1, &esp);
    fsck_fat(&esp);
    let img = esp.to_str().unwrap();
    let listing = stdout(&ok(mtools("mdir").args(["-/", "-b", "-i", img, "::/"])));
    let files: Vec<&str> = listing.lines().map(str::trim).collect();
    assert!(
        files.contains(&"::/EFI/Linux/slate-a-1.2.3.efi"),
        "no UKI entry on the ESP:\n{listing}"
    );
    for f in &files {
        assert!(
            !f.starts_with("::/loader/entries/") && !f.starts_with("::/slate/"),
            "{f} on a measured-boot ESP:\n{listing}"
        );
    }
    let entry = d.join("slate-a.efi");
    ok(mtools("mcopy")
        .args(["-i", img, "::/EFI/Linux/slate-a-1.2.3.efi"])
        .arg(&entry));
    assert_eq!(sha256sum(&entry), sha256sum(&out.join("uki-a.efi")));

    // The image tells the agent that its slots boot UKIs (and not that it is Secure Boot's).
    let info =
        slate_oracles::unsquashfs_cat(&out.join("rootfs.img"), "etc/slate/image.toml").unwrap();
    let info: slate_core::config::ImageInfo =
        toml::from_str(&String::from_utf8(info).unwrap()).unwrap();
    assert!(
        info.ukis && !info.secure_boot && info.boots_ukis(),
        "{info:?}"
    );

    // Its bundle carries the UKIs and verifies offline without a db certificate; given one,
    // the unsigned UKIs are refused as a Secure Boot device refuses them.
    let bundle = d.join("u.slate");
    ok(&mut bundle_cmd(&out, &d.join("k1.pem"), &bundle));
    let list = stdout(&ok(Command::new("tar").arg("tf").arg(&bundle)));
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "manifest.toml",
            "manifest.sig",
            "uki-a.efi",
            "uki-b.efi",
            "rootfs.img"
        ]
    );
    let verify = || {
        let mut c = slate();
        c.arg("verify").arg("--trust").arg(d.join("trust.toml"));
        c
    };
    ok(verify().arg(&bundle));
    let keys = d.join("sb");
    ok(slate().arg("sb").arg("keygen").arg("--out").arg(&keys));
    let (code, said) = fails(
        verify()
            .arg("--secure-boot-cert")
            .arg(keys.join("db.crt"))
            .arg(&bundle),
    );
    assert_ne!(code, 0);
    assert!(said.contains("uki-a.efi"), "{said}");
}
