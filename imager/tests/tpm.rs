//! Signed PCR policies (`--pcr-key`, `[tpm] pcr_key`), checked by systemd's own tool:
//! `systemd-measure calculate` predicts PCR 11 from a UKI's sections and `systemd-measure sign`
//! signs its policy (with a software TPM, swtpm, for the policy digest). RSA PKCS#1 v1.5 is
//! deterministic, so the `.pcrsig` Slate writes must be exactly what `sign` prints for the same
//! sections and key.

use crate::util::*;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

const MEASURE: &str = "/usr/lib/systemd/systemd-measure";

/// An RSA key of `bits` made by openssl in `dir`.
fn rsa_key(dir: &Path, bits: u32) -> PathBuf {
    let key = dir.join(format!("pcr-{bits}.key"));
    ok(Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .arg("-out")
        .arg(&key));
    key
}

/// A software TPM on a free loopback port, stopped on drop.
struct Swtpm {
    child: Child,
    port: u16,
}

impl Swtpm {
    fn start(dir: &Path) -> Swtpm {
        // The swtpm TCTI finds the control channel at the next port.
        let (port, ctrl) = (1..100)
            .find_map(|_| {
                let a = TcpListener::bind("127.0.0.1:0").ok()?;
                let port = a.local_addr().ok()?.port();
                let _b = TcpListener::bind(("127.0.0.1", port.checked_add(1)?)).ok()?;
                Some((port, port + 1))
            })
            .expect("two free ports in a row");
        let state = dir.join("swtpm");
        std::fs::create_dir_all(&state).unwrap();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port}"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl}"))
            .args(["--flags", "not-need-init,startup-clear"])
            .spawn()
            .expect("swtpm (cargo xtask deps installs Debian's swtpm)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "swtpm did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Swtpm { child, port }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The section files of one UKI as `systemd-measure` takes them.
fn measure_args(files: &[(&str, PathBuf)]) -> Vec<String> {
    files
        .iter()
        .map(|(opt, p)| format!("--{opt}={}", p.display()))
        .collect()
}

/// `systemd-measure sign` of `files` with `key` (its public half `public`), as JSON.
fn systemd_sign(files: &[(&str, PathBuf)], key: &Path, public: &Path, tpm: &Swtpm) -> String {
    let out = ok(Command::new(MEASURE)
        .arg("sign")
        .args(measure_args(files))
        .args(["--bank=sha256", "--phase=enter-initrd"])
        .arg(format!("--private-key={}", key.display()))
        .arg(format!("--public-key={}", public.display()))
        .arg(format!("--tpm2-device=swtpm:port={}", tpm.port)));
    stdout(&out)
}

#[test]
fn slates_signed_pcr_policy_is_what_systemd_measure_signs() {
    use slate_core::tpm::Section;
    use slate_imager::image::write::pcr_policy::PcrSigner;
    let tmp = tempdir();
    let key = rsa_key(tmp.path(), 2048);
    let signer = PcrSigner::load(&key).unwrap();
    let public = tmp.path().join("pcr.pub.pem");
    std::fs::write(&public, signer.public_pem()).unwrap();
    let kernel: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let parts: [(&str, Section, Vec<u8>); 5] = [
        ("linux", Section::Linux, kernel),
        (
            "osrel",
            Section::Osrel,
            b"ID=slate\nIMAGE_VERSION=1.0.0\n".to_vec(),
        ),
        (
            "cmdline",
            Section::Cmdline,
            b"root=/dev/dm-0 slate.slot=a".to_vec(),
        ),
        ("initrd", Section::Initrd, vec![7u8; 5000]),
        (
            "pcrpkey",
            Section::Pcrpkey,
            signer.public_pem().as_bytes().to_vec(),
        ),
    ];
    let files: Vec<(&str, PathBuf)> = parts
        .iter()
        .map(|(name, _, bytes)| {
            let p = tmp.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            (*name, p)
        })
        .collect();
    let sections: Vec<(Section, &[u8])> = parts.iter().map(|(_, s, b)| (*s, &b[..])).collect();

    // PCR 11 as systemd-measure calculates it.
    let calculated = stdout(&ok(Command::new(MEASURE)
        .arg("calculate")
        .args(measure_args(&files))
        .args(["--bank=sha256", "--phase=enter-initrd", "--json=short"])));
    let v: serde_json::Value = serde_json::from_str(&calculated).unwrap();
    let theirs = v["sha256"][0]["hash"].as_str().unwrap().to_string();
    let ours = hex::encode(slate_core::tpm::pcr11(
        &sections,
        &[slate_core::tpm::ENTER_INITRD],
    ));
    assert_eq!(ours, theirs, "{calculated}");

    // The signed policy, byte for byte.
    let tpm = Swtpm::start(tmp.path());
    let signed = systemd_sign(&files, &key, &public, &tpm);
    let theirs: serde_json::Value = serde_json::from_str(&signed).unwrap();
    let ours = signer.sign(&sections, &tmp.path().join("scratch")).unwrap();
    assert_eq!(serde_json::to_value(&ours).unwrap(), theirs, "{signed}");

    // Its refused twins: another kernel, or another key, gives another policy or signature.
    let mut other = sections.clone();
    other[3].1 = b"another initrd";
    let changed = signer.sign(&other, &tmp.path().join("scratch")).unwrap();
    assert_ne!(changed.sha256[0].pol, ours.sha256[0].pol);
    let stranger = PcrSigner::load(&rsa_key(tmp.path(), 2048)).unwrap();
    let strangers = stranger
        .sign(&sections, &tmp.path().join("scratch"))
        .unwrap();
    assert_ne!(strangers.sha256[0].sig, ours.sha256[0].sig);
    assert_ne!(strangers.sha256[0].pkfp, ours.sha256[0].pkfp);
}

#[test]
fn pcr_keys_a_tpm_cannot_check_are_refused_by_name() {
    use slate_imager::image::write::pcr_policy::PcrSigner;
    let tmp = tempdir();
    let big = rsa_key(tmp.path(), 3072);
    let e = format!("{:#}", PcrSigner::load(&big).unwrap_err());
    assert!(e.contains("3072 bits") && e.contains("pcr-3072.key"), "{e}");
    let ec = tmp.path().join("ec.key");
    ok(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&ec));
    let e = format!("{:#}", PcrSigner::load(&ec).unwrap_err());
    assert!(e.contains("not an RSA key") && e.contains("ec.key"), "{e}");
    let missing = format!(
        "{:#}",
        PcrSigner::load(&tmp.path().join("nope.key")).unwrap_err()
    );
    assert!(missing.contains("does not exist"), "{missing}");
}

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
    let tpm = Swtpm::start(tmp.path());
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
        let signed = systemd_sign(&files, &pcr_key, &public, &tpm);
        let theirs: serde_json::Value = serde_json::from_str(&signed).unwrap();
        let ours: serde_json::Value = serde_json::from_slice(&section(".pcrsig")).unwrap();
        assert_eq!(ours, theirs, "uki-{slot}.efi's .pcrsig");
        policies.push(ours["sha256"][0]["pol"].to_string());
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

#[test]
fn a_pcr_key_without_secure_boot_is_refused_naming_the_field() {
    let tmp = tempdir();
    let pcr_key = rsa_key(tmp.path(), 2048);
    let (code, said) = fails(
        build_cmd(&data().join("spec/image.toml"), &tmp.path().join("out"))
            .arg("--pcr-key")
            .arg(&pcr_key),
    );
    assert_ne!(code, 0);
    assert!(
        said.contains("tpm.pcr_key") && said.contains("[secure_boot]"),
        "{said}"
    );
}
