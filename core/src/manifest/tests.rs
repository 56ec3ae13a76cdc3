//! Manifest, signature and trust tests.

use super::*;
use crate::digest::Digest32;
use crate::layout::Slot;
use crate::verity::VerityInfo;
use ed25519_dalek::{Signer, SigningKey};

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn trust(keys: &[&SigningKey], threshold: usize) -> Trust {
    Trust {
        threshold,
        keys: keys
            .iter()
            .map(|k| TrustedKey {
                id: key_id(&k.verifying_key()),
                public_key: hex::encode(k.verifying_key().as_bytes()),
            })
            .collect(),
    }
}

fn manifest(version: &str) -> Manifest {
    let verity = VerityInfo::new(Digest32([0xab; 32]), vec![0; 32], 10, 40960).unwrap();
    let size = verity.image_size();
    Manifest {
        format: FORMAT,
        product: "p".into(),
        board: "b".into(),
        version: version.parse().unwrap(),
        security_epoch: 1,
        created: 100,
        expires: Some(1000),
        options: "console=ttyS0".into(),
        artifacts: vec![
            Artifact {
                name: "rootfs.img".into(),
                size,
                sha256: Digest32([0x00; 32]),
                verity: Some(verity),
            },
            Artifact {
                name: "vmlinuz".into(),
                size: 1,
                sha256: Digest32([0xcd; 32]),
                verity: None,
            },
            Artifact {
                name: "initrd.img".into(),
                size: 1,
                sha256: Digest32([0x22; 32]),
                verity: None,
            },
        ],
    }
}

fn sign(bytes: &[u8], keys: &[&SigningKey]) -> Signatures {
    Signatures {
        signatures: keys
            .iter()
            .map(|k| SignatureEntry {
                key_id: key_id(&k.verifying_key()),
                signature: hex::encode(k.sign(bytes).to_bytes()),
            })
            .collect(),
    }
}

fn device() -> DeviceFacts {
    DeviceFacts {
        product: "p".into(),
        board: "b".into(),
        version: "1.0.0".parse().unwrap(),
        security_epoch: 1,
        failed_versions: vec![],
        now: 500,
    }
}

#[test]
fn manifest_round_trips() {
    let m = manifest("1.1.0");
    assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
}

#[test]
fn good_bundle_passes_and_each_rule_refuses() {
    let (a, b, c) = (key(1), key(2), key(3));
    let t = trust(&[&a, &b], 2);
    let v = Verifier { trust: &t };
    let bytes = manifest("1.1.0").to_bytes();
    assert!(v
        .verify(&bytes, &sign(&bytes, &[&a, &b]), &device(), false)
        .is_ok());
    // Too few, unknown key, same key twice.
    assert!(matches!(
        v.verify(&bytes, &sign(&bytes, &[&a]), &device(), false),
        Err(ManifestError::Threshold { good: 1, .. })
    ));
    assert!(matches!(
        v.verify(&bytes, &sign(&bytes, &[&a, &c]), &device(), false),
        Err(ManifestError::Threshold { .. })
    ));
    assert!(matches!(
        v.verify(&bytes, &sign(&bytes, &[&a, &a]), &device(), false),
        Err(ManifestError::Threshold { good: 1, .. })
    ));
    // One flipped byte in the signed manifest.
    let mut bad = bytes.clone();
    bad[10] ^= 1;
    assert!(matches!(
        v.verify(&bad, &sign(&bytes, &[&a, &b]), &device(), false),
        Err(ManifestError::Threshold { good: 0, .. })
    ));
    let check = |m: Manifest, d: DeviceFacts| {
        let bytes = m.to_bytes();
        v.verify(&bytes, &sign(&bytes, &[&a, &b]), &d, false)
    };
    let mut m = manifest("1.1.0");
    m.product = "other".into();
    assert!(matches!(
        check(m, device()),
        Err(ManifestError::Incompatible {
            what: "product",
            ..
        })
    ));
    let mut m = manifest("1.1.0");
    m.board = "other".into();
    assert!(matches!(
        check(m, device()),
        Err(ManifestError::Incompatible { what: "board", .. })
    ));
    assert!(matches!(
        check(manifest("1.0.0"), device()),
        Err(ManifestError::NotNewer { .. })
    ));
    let mut d = device();
    d.security_epoch = 2;
    assert!(matches!(
        check(manifest("1.1.0"), d),
        Err(ManifestError::Epoch { .. })
    ));
    let mut d = device();
    d.now = 1000;
    assert!(matches!(
        check(manifest("1.1.0"), d),
        Err(ManifestError::Expired { .. })
    ));
    let mut d = device();
    d.failed_versions = vec!["1.1.0".parse().unwrap()];
    assert!(matches!(
        check(manifest("1.1.0"), d),
        Err(ManifestError::PreviouslyFailed(_))
    ));
}

#[test]
fn malformed_manifests_are_refused() {
    assert!(matches!(
        Manifest::parse(b"format = 9\n"),
        Err(ManifestError::Format(9))
    ));
    assert!(matches!(
        Manifest::parse(b"format = \"one\"\n"),
        Err(ManifestError::Parse { .. })
    ));
    assert!(matches!(
        Manifest::parse(&[0xff, 0xfe]),
        Err(ManifestError::Parse { .. })
    ));
    assert!(matches!(
        Manifest::parse(&vec![b'#'; 70_000]),
        Err(ManifestError::TooLarge { .. })
    ));
    let mut m = manifest("1.1.0");
    m.artifacts.swap(1, 2);
    assert!(matches!(
        Manifest::parse(&m.to_bytes()),
        Err(ManifestError::Artifacts { .. })
    ));
    let mut m = manifest("1.1.0");
    m.artifacts[0].size += 4096;
    assert!(matches!(
        Manifest::parse(&m.to_bytes()),
        Err(ManifestError::Artifacts { .. })
    ));
    let mut m = manifest("1.1.0");
    m.options = "slate.slot=a".into();
    assert!(matches!(
        Manifest::parse(&m.to_bytes()),
        Err(ManifestError::Artifacts { .. })
    ));
}

/// The manifest of a Secure Boot image's bundle: the same root image, a signed UKI per slot.
fn uki_manifest(version: &str) -> Manifest {
    let mut m = manifest(version);
    let root = m.artifacts.remove(0);
    m.format = FORMAT_UKI;
    for a in &mut m.artifacts {
        a.name = if a.name == "vmlinuz" {
            "uki-a.efi"
        } else {
            "uki-b.efi"
        }
        .into();
    }
    m.artifacts.push(root);
    m
}

#[test]
fn format_two_carries_a_uki_per_slot_before_the_root_image() {
    let m = uki_manifest("1.1.0");
    let parsed = Manifest::parse(&m.to_bytes()).unwrap();
    assert!(parsed.carries_ukis());
    assert_eq!(parsed.rootfs().map(|a| a.name.as_str()), Some(ROOTFS));
    let boot: Vec<&str> = parsed.boot_artifacts().map(|a| a.name.as_str()).collect();
    assert_eq!(boot, [uki_artifact(Slot::A), uki_artifact(Slot::B)]);
    assert!(!Manifest::parse(&manifest("1.1.0").to_bytes())
        .unwrap()
        .carries_ukis());
    // Each format has its own artifacts: a format-2 manifest with a kernel, or a format-1
    // one with UKIs, is refused, as is a UKI with verity parameters or one above the limit.
    let mut mixed = manifest("1.1.0");
    mixed.format = FORMAT_UKI;
    let mut wrong = uki_manifest("1.1.0");
    wrong.format = FORMAT;
    let mut verity = uki_manifest("1.1.0");
    verity.artifacts[0].verity = verity.artifacts[2].verity.clone();
    let mut huge = uki_manifest("1.1.0");
    huge.artifacts[1].size = MAX_BOOT_ARTIFACT + 1;
    for m in [mixed, wrong, verity, huge] {
        let e = Manifest::parse(&m.to_bytes()).unwrap_err();
        assert!(matches!(e, ManifestError::Artifacts { .. }), "{e}");
    }
    let mut future = uki_manifest("1.1.0");
    future.format = 3;
    let e = Manifest::parse(&future.to_bytes()).unwrap_err();
    assert_eq!(e, ManifestError::Format(3));
    assert!(e.to_string().contains("formats 1 and 2"), "{e}");
}

/// Digests are parsed while the manifest is read, so a bad one is refused before a device
/// writes anything (an upper-case sha256 used to pass here and fail after the slot was
/// written).
#[test]
fn upper_case_or_malformed_digests_are_refused_at_parse_time() {
    let text = String::from_utf8(manifest("1.1.0").to_bytes()).unwrap();
    let good = "cd".repeat(32);
    assert!(text.contains(&good));
    for bad in [
        good.to_uppercase(),
        "cd".repeat(31),
        format!("{}zz", "cd".repeat(31)),
    ] {
        let err = Manifest::parse(text.replace(&good, &bad).as_bytes()).unwrap_err();
        assert!(
            matches!(&err, ManifestError::Parse { why, .. } if why.contains("hex") || why.contains("64")),
            "{bad}: {err}"
        );
    }
    let root = "ab".repeat(32);
    assert!(text.contains(&root));
    let err = Manifest::parse(text.replace(&root, &root.to_uppercase()).as_bytes());
    assert!(matches!(err, Err(ManifestError::Parse { .. })), "{err:?}");
}

#[test]
fn trust_files_are_checked() {
    let a = key(1);
    let mut t = trust(&[&a], 1);
    assert!(Trust::parse(&toml::to_string(&t).unwrap()).is_ok());
    t.threshold = 2;
    assert!(Trust::parse(&toml::to_string(&t).unwrap()).is_err());
    t.threshold = 1;
    t.keys[0].id = "0000000000000000".into();
    assert!(Trust::parse(&toml::to_string(&t).unwrap()).is_err());
}

/// The identity point: a weak (small-order) public key.
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};

/// R = identity, s = 0: with the identity as the key, the plain (non-strict) check accepts
/// this one signature for every message.
fn forged() -> ed25519_dalek::Signature {
    let mut b = [0u8; 64];
    b[..32].copy_from_slice(&IDENTITY);
    ed25519_dalek::Signature::from_bytes(&b)
}

#[test]
fn a_weak_key_and_a_signature_only_the_plain_check_accepts_are_refused() {
    use ed25519_dalek::Verifier as _;
    let weak = ed25519_dalek::VerifyingKey::from_bytes(&IDENTITY).unwrap();
    // The premise: the non-strict check is fooled by this pair.
    assert!(weak.verify(b"any manifest", &forged()).is_ok());
    assert!(weak.verify_strict(b"any manifest", &forged()).is_err());

    let t = Trust {
        threshold: 1,
        keys: vec![TrustedKey {
            id: key_id(&weak),
            public_key: hex::encode(IDENTITY),
        }],
    };
    let err = Trust::parse(&toml::to_string(&t).unwrap()).unwrap_err();
    assert!(err.to_string().contains("weak"), "{err}");

    // Even a trust file that was never parsed (built in memory) does not count it.
    let bytes = manifest("2.0.0").to_bytes();
    let sigs = Signatures {
        signatures: vec![SignatureEntry {
            key_id: key_id(&weak),
            signature: hex::encode(forged().to_bytes()),
        }],
    };
    let r = Verifier { trust: &t }.check_signatures(&bytes, &sigs);
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn a_key_listed_twice_is_refused() {
    let a = key(1);
    let mut t = trust(&[&a], 1);
    t.keys.push(t.keys[0].clone());
    let err = Trust::parse(&toml::to_string(&t).unwrap()).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}
