//! Signed PCR policies (`--pcr-key`, `[tpm] pcr_key`), checked by systemd's own tool:
//! `systemd-measure calculate` predicts PCR 11 from a UKI's sections and `systemd-measure sign`
//! signs its policy (with a software TPM, swtpm, for the policy digest). RSA PKCS#1 v1.5 is
//! deterministic, so the `.pcrsig` Slate writes must be exactly what `sign` prints for the same
//! sections and key.

use crate::util::*;
use slate_oracles::swtpm::Swtpm;
use std::path::{Path, PathBuf};
use std::process::Command;

const MEASURE: &str = "/usr/lib/systemd/systemd-measure";

/// An RSA key of `bits` made by openssl in `dir`.
pub(crate) fn rsa_key(dir: &Path, bits: u32) -> PathBuf {
    let key = dir.join(format!("pcr-{bits}.key"));
    ok(Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .arg("-out")
        .arg(&key));
    key
}

/// The section files of one UKI as `systemd-measure` takes them.
fn measure_args(files: &[(&str, PathBuf)]) -> Vec<String> {
    files
        .iter()
        .map(|(opt, p)| format!("--{opt}={}", p.display()))
        .collect()
}

/// `systemd-measure sign` of `files` with `key` (its public half `public`), as JSON.
pub(crate) fn systemd_sign(
    files: &[(&str, PathBuf)],
    key: &Path,
    public: &Path,
    tpm: &Swtpm,
) -> String {
    let out = ok(Command::new(MEASURE)
        .arg("sign")
        .args(measure_args(files))
        .args(["--bank=sha256", "--phase=enter-initrd"])
        .arg(format!("--private-key={}", key.display()))
        .arg(format!("--public-key={}", public.display()))
        .arg(format!(
            "--tpm2-device=swtpm:port={}",
            tpm.port().unwrap_or(0)
        )));
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
    let tpm = Swtpm::tcp(&tmp.path().join("swtpm")).unwrap();
    let signed = systemd_sign(&files, &key, &public, &tpm);
    let theirs: serde_json::Value = serde_json::from_str(&signed).unwrap();
    let ours = signer
        .sign(&sections, &tmp.path().join("scratch"), None)
        .unwrap();
    assert_eq!(serde_json::to_value(&ours).unwrap(), theirs, "{signed}");

    // Its refused twins: another kernel, or another key, gives another policy or signature.
    let mut other = sections.clone();
    other[3].1 = b"another initrd";
    let changed = signer
        .sign(&other, &tmp.path().join("scratch"), None)
        .unwrap();
    assert_ne!(changed.sha256[0].pol, ours.sha256[0].pol);
    let stranger = PcrSigner::load(&rsa_key(tmp.path(), 2048)).unwrap();
    let strangers = stranger
        .sign(&sections, &tmp.path().join("scratch"), None)
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

/// Raw TPM 2.0 commands over swtpm's TCP port, as `/dev/tpmrm0` carries them on a device.
/// Every byte the TPM answered is kept in the shared log: what someone on the bus sees.
struct TcpTransport(std::net::TcpStream, BusLog);

type BusLog = std::rc::Rc<std::cell::RefCell<Vec<u8>>>;

impl slate_core::tpm::client::Transport for TcpTransport {
    fn transact(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Write};
        self.0.write_all(command)?;
        let mut response = vec![0u8; 10];
        self.0.read_exact(&mut response)?;
        let size = u32::from_be_bytes([response[2], response[3], response[4], response[5]]);
        response.resize(size as usize, 0);
        self.0.read_exact(&mut response[10..])?;
        self.1.borrow_mut().extend_from_slice(&response);
        Ok(response)
    }
}

type Client = slate_core::tpm::client::Tpm<TcpTransport>;

fn client(tpm: &Swtpm) -> Client {
    client_logged(tpm, BusLog::default())
}

fn client_logged(tpm: &Swtpm, log: BusLog) -> Client {
    let port = tpm.port().unwrap();
    Client::new(TcpTransport(
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap(),
        log,
    ))
}

/// Extends PCR 11 as systemd-stub does for a UKI of `sections`, then "enter-initrd".
fn boot_uki(c: &mut Client, sections: &[(slate_core::tpm::Section, &[u8])]) {
    use slate_core::tpm::{measurements, ENTER_INITRD, PCR_KERNEL_BOOT};
    for m in measurements(sections, &[ENTER_INITRD]) {
        c.extend(PCR_KERNEL_BOOT, &m).unwrap();
    }
}

/// The whole of stage 1's unlock, judged by a real TPM: a secret sealed to "any policy the
/// vendor's key signed" unseals for each signed UKI whose epoch is not below the TPM's epoch
/// index (an update needs no re-enrolment), and each way around it is refused — by the TPM
/// itself where it matters, not only by our lookup: another UKI, after "leave-initrd", a
/// stranger's key or signature, an older image once a newer one raised the index, another
/// TPM.
#[test]
fn a_secret_sealed_to_the_vendors_key_unseals_for_each_signed_uki_and_for_nothing_else() {
    use slate_core::tpm::client::Error;
    use slate_core::tpm::policy::{self, EPOCH_INDEX};
    use slate_core::tpm::{
        rsa_public_key_der, rsa_public_numbers, Section, LEAVE_INITRD, PCR_KERNEL_BOOT,
    };
    use slate_imager::image::write::pcr_policy::PcrSigner;
    let tmp = tempdir();
    let scratch = tmp.path().join("scratch");
    let signer = PcrSigner::load(&rsa_key(tmp.path(), 2048)).unwrap();
    let pem = signer.public_pem().as_bytes().to_vec();
    let uki = |kernel: &'static [u8]| -> Vec<(Section, Vec<u8>)> {
        vec![
            (Section::Linux, kernel.to_vec()),
            (Section::Osrel, b"ID=slate\n".to_vec()),
            (Section::Cmdline, b"slate.slot=a".to_vec()),
            (Section::Initrd, b"initrd".to_vec()),
            (Section::Pcrpkey, pem.clone()),
        ]
    };
    // v1 of epoch 1, v2 of epoch 2.
    let v1 = uki(b"kernel 1");
    let v2 = uki(b"kernel 2");
    let signed_v1 = signer.sign(&refs(&v1), &scratch, Some(1)).unwrap().sha256;
    let signed_v2 = signer.sign(&refs(&v2), &scratch, Some(2)).unwrap().sha256;
    assert_eq!(signed_v1.len(), 2, "an unseal and an epoch-write policy");
    let (n, e) = rsa_public_numbers(&rsa_public_key_der(signer.public_pem()).unwrap()).unwrap();
    let vendor = (n.as_slice(), e);

    let state = tmp.path().join("tpm-state");
    let tpm = Swtpm::tcp(&state).unwrap();
    let bus = BusLog::default();
    let mut c = client_logged(&tpm, bus.clone());
    boot_uki(&mut c, &refs(&v1));
    assert_eq!(
        c.read_pcr(PCR_KERNEL_BOOT).unwrap(),
        slate_core::tpm::pcr11(&refs(&v1), &[slate_core::tpm::ENTER_INITRD]),
        "the TPM's PCR 11 is the imager's prediction"
    );
    // The names the imager computed are the TPM's.
    let (h, name) = c.load_verify_key(&n, e).unwrap();
    c.flush(h).unwrap();
    assert_eq!(name, policy::vendor_key_name(&n, e));
    // Enrolment: the epoch index (defined, written 0 under the write policy), the key.
    assert_eq!(c.epoch_index(vendor, &signed_v1, true).unwrap(), 0);
    assert_eq!(
        c.nv_public(EPOCH_INDEX).unwrap().unwrap(),
        policy::epoch_index_public(&name, true)
    );
    let secret = c.random(64).unwrap();
    let sealed = c.seal_to_vendor(&secret, vendor).unwrap();
    bus.borrow_mut().clear();
    assert_eq!(
        c.unseal_signed(&sealed, vendor, &signed_v1, 1, &mut local_crypto())
            .unwrap(),
        secret
    );
    // The salted session: the unsealed key never crossed the bus in the clear.
    assert!(
        !bus.borrow()
            .windows(secret.len())
            .any(|w| w == secret.as_slice()),
        "the unsealed key is readable on the TPM's bus"
    );

    // Refused: v2's policies while v1 runs.
    let e2 = c
        .unseal_signed(&sealed, vendor, &signed_v2, 2, &mut local_crypto())
        .unwrap_err();
    assert!(matches!(e2, Error::NoPolicyForPcr { .. }), "{e2}");
    // Refused by the TPM: v1's right policy with a changed signature.
    let mut forged = signed_v1.clone();
    let mut sig = slate_core::tpm::base64_decode(&forged[0].sig).unwrap();
    sig[100] ^= 1;
    forged[0].sig = slate_core::tpm::base64_encode(&sig);
    let e3 = c
        .unseal_signed(&sealed, vendor, &forged, 1, &mut local_crypto())
        .unwrap_err();
    assert!(e3.to_string().contains("VerifySignature failed"), "{e3}");
    // The write policy (another policyRef) cannot unseal, even passed as the unseal one.
    let mut wrong_ref = signed_v1.clone();
    wrong_ref[0].sig = wrong_ref[1].sig.clone();
    let e3b = c
        .unseal_signed(&sealed, vendor, &wrong_ref, 1, &mut local_crypto())
        .unwrap_err();
    assert!(e3b.to_string().contains("VerifySignature failed"), "{e3b}");
    // A stranger's key signing v1's policies: not the key /data was sealed to.
    let strangers_dir = tmp.path().join("stranger");
    std::fs::create_dir_all(&strangers_dir).unwrap();
    let stranger_key = rsa_key(&strangers_dir, 2048);
    let stranger = PcrSigner::load(&stranger_key).unwrap();
    let strangers = stranger.sign(&refs(&v1), &scratch, Some(1)).unwrap().sha256;
    let (sn, se) = rsa_public_numbers(&rsa_public_key_der(stranger.public_pem()).unwrap()).unwrap();
    let e4 = c
        .unseal_signed(&sealed, (&sn, se), &strangers, 1, &mut local_crypto())
        .unwrap_err();
    assert!(matches!(e4, Error::OtherKey), "{e4}");
    // The TPM, not our check, refuses the stranger: bypass the check and ask it directly,
    // with the stranger's signature over the very policy the session reaches.
    let pol_file = tmp.path().join("pol.bin");
    std::fs::write(&pol_file, hex::decode(&signed_v1[0].pol).unwrap()).unwrap();
    let strangers_sig = ok(Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&stranger_key)
        .arg(&pol_file))
    .stdout;
    let mut forged_by_stranger = signed_v1[0].clone();
    forged_by_stranger.sig = slate_core::tpm::base64_encode(&strangers_sig);
    let refused = direct_unseal(&mut c, &sealed, (&sn, se), &forged_by_stranger, 1)
        .expect_err("the TPM unsealed for a stranger's key");
    assert!(refused.to_string().contains("Unseal failed"), "{refused}");

    // After "leave-initrd" nothing unseals, not even with v1's ticket passed straight in.
    c.extend(PCR_KERNEL_BOOT, LEAVE_INITRD.as_bytes()).unwrap();
    let e5 = c
        .unseal_signed(&sealed, vendor, &signed_v1, 1, &mut local_crypto())
        .unwrap_err();
    assert!(matches!(e5, Error::NoPolicyForPcr { .. }), "{e5}");
    let late = direct_unseal(&mut c, &sealed, vendor, &signed_v1[0], 1)
        .expect_err("the TPM unsealed after leave-initrd");
    assert!(
        late.to_string().contains("PolicyAuthorize failed"),
        "{late}"
    );
    // Nor can the index be written then (the running system lowering or raising it).
    let e5b = c.raise_epoch(vendor, &signed_v1, 0).unwrap_err();
    assert!(matches!(e5b, Error::NoPolicyForPcr { .. }), "{e5b}");
    drop(c);
    drop(tpm);

    // A reboot into v2 (the same TPM, PCRs reset): unseals without re-enrolment; committed,
    // its stage 1 raises the index to 2.
    let tpm = Swtpm::tcp(&state).unwrap();
    let mut c = client(&tpm);
    boot_uki(&mut c, &refs(&v2));
    assert_eq!(c.epoch_index(vendor, &signed_v2, false).unwrap(), 0);
    assert_eq!(
        c.unseal_signed(&sealed, vendor, &signed_v2, 2, &mut local_crypto())
            .unwrap(),
        secret
    );
    c.raise_epoch(vendor, &signed_v2, 2).unwrap();
    assert_eq!(c.nv_read_u64(EPOCH_INDEX).unwrap(), 2);
    drop(c);
    drop(tpm);

    // v1 put back (signed, its PCR 11 as signed): the TPM refuses it now.
    let tpm = Swtpm::tcp(&state).unwrap();
    let mut c = client(&tpm);
    boot_uki(&mut c, &refs(&v1));
    let e7 = c
        .unseal_signed(&sealed, vendor, &signed_v1, 1, &mut local_crypto())
        .unwrap_err();
    assert!(
        matches!(e7, Error::BelowTpmFloor { epoch: 1, floor: 2 }),
        "{e7}"
    );
    let by_tpm = direct_unseal(&mut c, &sealed, vendor, &signed_v1[0], 1)
        .expect_err("the TPM unsealed for an image below its epoch index");
    assert!(by_tpm.to_string().contains("PolicyNv failed"), "{by_tpm}");
    drop(c);
    drop(tpm);

    // Another TPM (a disk moved, a TPM cleared): the blob does not even load.
    let other = Swtpm::tcp(&tmp.path().join("other-tpm")).unwrap();
    let mut c = client(&other);
    boot_uki(&mut c, &refs(&v1));
    c.epoch_index(vendor, &signed_v1, true).unwrap();
    let e6 = c
        .unseal_signed(&sealed, vendor, &signed_v1, 1, &mut local_crypto())
        .unwrap_err();
    assert!(
        e6.to_string().contains("Load failed") && e6.to_string().contains("another TPM"),
        "{e6}"
    );
    eprintln!("refused as they should be:\n  {e2}\n  {e3}\n  {e3b}\n  {e4}\n  {refused}\n  {e5}\n  {late}\n  {e5b}\n  {e7}\n  {by_tpm}\n  {e6}");
}

/// PolicyNV + PolicyPCR + PolicyAuthorize + Unseal with `entry`, no check of ours in between.
fn direct_unseal(
    c: &mut Client,
    sealed: &slate_core::tpm::client::Sealed,
    vendor: (&[u8], u32),
    entry: &slate_core::tpm::PolicySignature,
    epoch: u64,
) -> Result<Vec<u8>, slate_core::tpm::client::Error> {
    use slate_core::tpm::{policy, wire};
    let pol: [u8; 32] = hex::decode(&entry.pol).unwrap().try_into().unwrap();
    let (key, name) = c.load_verify_key(vendor.0, vendor.1)?;
    let ticket = c.verify_signature(
        key,
        &policy::signed_digest(&pol, b""),
        &slate_core::tpm::base64_decode(&entry.sig).unwrap(),
    );
    c.flush(key)?;
    let ticket = ticket?;
    let (srk, _) = c.create_primary(wire::RH_OWNER, &wire::srk_template())?;
    let item = c.load(srk, sealed)?;
    c.flush(srk)?;
    let session = c.start_policy_session()?;
    let result = c
        .policy_nv_at_most(session, policy::EPOCH_INDEX, epoch)
        .and_then(|()| c.policy_pcr(session, slate_core::tpm::PCR_KERNEL_BOOT))
        .and_then(|()| c.policy_authorize(session, &pol, b"", &name, &ticket))
        .and_then(|()| c.unseal(item, session));
    let _ = c.flush(session);
    c.flush(item)?;
    result
}

/// The device's session crypto with a fresh seed.
fn local_crypto() -> slate_agent::tpm::LocalCrypto {
    slate_agent::tpm::LocalCrypto {
        seed: slate_agent::tpm::session_seed(b"test"),
    }
}

pub(crate) fn refs(
    v: &[(slate_core::tpm::Section, Vec<u8>)],
) -> Vec<(slate_core::tpm::Section, &[u8])> {
    v.iter().map(|(s, d)| (*s, d.as_slice())).collect()
}
