//! Keys, trust files and bundles checked by openssl and tar.

use crate::util::*;
use std::process::Command;

#[test]
fn keys_are_pkcs8_pem_that_openssl_reads_and_signatures_verify_with_openssl() {
    let tmp = tempdir();
    let d = tmp.path();
    ok(slate().arg("keygen").arg("--out").arg(d.join("k1")));
    ok(slate().arg("keygen").arg("--out").arg(d.join("k2")));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.join("k1.pem")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "private key mode {mode:o}");
    ok(Command::new("openssl")
        .arg("pkey")
        .arg("-noout")
        .arg("-in")
        .arg(d.join("k1.pem")));
    ok(Command::new("openssl")
        .arg("pkey")
        .arg("-noout")
        .arg("-pubin")
        .arg("-in")
        .arg(d.join("k1.pub.pem")));
    let (_, err) = fails(slate().arg("keygen").arg("--out").arg(d.join("k1")));
    assert!(err.contains("never overwritten"), "{err}");
    // A key made by openssl works as well.
    ok(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(d.join("ossl.pem")));
    ok(slate()
        .arg("trust")
        .arg("--key")
        .arg(d.join("k1.pub.pem"))
        .arg("--key")
        .arg(d.join("ossl.pem"))
        .args(["--threshold", "2", "--out"])
        .arg(d.join("trust.toml")));
    let (_, err) = fails(
        slate()
            .arg("trust")
            .arg("--key")
            .arg(d.join("k1.pub.pem"))
            .args(["--threshold", "2", "--out"])
            .arg(d.join("bad.toml")),
    );
    assert!(err.contains("--threshold 2"), "{err}");

    // An image that trusts them, and a bundle of it signed by both.
    let out = d.join("img");
    let b = ok(build_cmd(&data().join("spec/image.toml"), &out)
        .arg("--trust")
        .arg(d.join("trust.toml")));
    assert!(!String::from_utf8_lossy(&b.stderr).contains("refuse every update"));
    let inside =
        slate_oracles::unsquashfs_cat(&out.join("rootfs.img"), "etc/slate/trust.toml").unwrap();
    assert_eq!(inside, std::fs::read(d.join("trust.toml")).unwrap());
    let bundle = d.join("u.slate");
    ok(&mut bundle_cmd(&out, &d.join("k1.pem"), &bundle));
    ok(slate()
        .arg("sign")
        .arg("--key")
        .arg(d.join("ossl.pem"))
        .arg(&bundle));
    let list = stdout(&ok(Command::new("tar").arg("tf").arg(&bundle)));
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "manifest.toml",
            "manifest.sig",
            "rootfs.img",
            "vmlinuz",
            "initrd.img"
        ]
    );
    ok(Command::new("tar")
        .arg("xf")
        .arg(&bundle)
        .arg("-C")
        .arg(d)
        .args(["manifest.toml", "manifest.sig", "rootfs.img"]));
    assert_eq!(
        sha256sum(&d.join("rootfs.img")),
        sha256sum(&out.join("rootfs.img"))
    );
    let sigs: toml::Table =
        toml::from_str(&std::fs::read_to_string(d.join("manifest.sig")).unwrap()).unwrap();
    let first = sigs["signature"].as_array().unwrap()[0]["signature"]
        .as_str()
        .unwrap();
    let raw: Vec<u8> = (0..first.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&first[i..i + 2], 16).unwrap())
        .collect();
    std::fs::write(d.join("sig.bin"), raw).unwrap();
    ok(Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
        .arg(d.join("k1.pub.pem"))
        .arg("-in")
        .arg(d.join("manifest.toml"))
        .arg("-sigfile")
        .arg(d.join("sig.bin")));

    // slate verify: OK with both signatures; refused for the image's own version (not newer).
    let v = stdout(&ok(slate()
        .arg("verify")
        .arg("--trust")
        .arg(d.join("trust.toml"))
        .arg(&bundle)));
    assert!(v.contains("OK"), "{v}");
    let (_, err) = fails(
        slate()
            .arg("verify")
            .arg("--trust")
            .arg(d.join("trust.toml"))
            .arg("--against")
            .arg(&out)
            .arg(&bundle),
    );
    assert!(err.contains("is not newer"), "{err}");
    let inspect = stdout(&ok(slate().arg("inspect").arg(&bundle)));
    assert!(
        inspect.contains("bundle of oracle 1.2.3") && inspect.matches("signed by key").count() == 2,
        "{inspect}"
    );
}

#[test]
fn an_image_without_a_trust_file_builds_with_a_warning() {
    let tmp = tempdir();
    let b = ok(&mut build_cmd(
        &data().join("spec/image.toml"),
        &tmp.path().join("out"),
    ));
    assert!(String::from_utf8_lossy(&b.stderr).contains("will refuse every update"));
}
