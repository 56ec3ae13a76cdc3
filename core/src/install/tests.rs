//! The install plan without a device: every refusal, the order of the steps, and the two rules
//! that keep a device bootable (the running slot is never touched; the entry is written last).

use super::*;
use crate::manifest::{FORMAT, FORMAT_UKI};
use crate::verity::VerityInfo;
use crate::Version;
use proptest::prelude::*;

fn artifact(name: &str, size: u64, verity: Option<VerityInfo>) -> Artifact {
    Artifact {
        name: name.into(),
        size,
        sha256: Digest32([name.len() as u8; 32]),
        verity,
    }
}

fn manifest(version: &str, ukis: bool) -> Manifest {
    let verity = VerityInfo::new(Digest32([0xab; 32]), vec![0; 32], 10, 40960).unwrap();
    let root = artifact("rootfs.img", verity.image_size(), Some(verity));
    let artifacts = if ukis {
        vec![
            artifact("uki-a.efi", 100, None),
            artifact("uki-b.efi", 100, None),
            root,
        ]
    } else {
        vec![
            root,
            artifact("vmlinuz", 10, None),
            artifact("initrd.img", 20, None),
        ]
    };
    Manifest {
        format: if ukis { FORMAT_UKI } else { FORMAT },
        product: "demo".into(),
        board: "qemu-x86_64".into(),
        version: version.parse().unwrap(),
        security_epoch: 0,
        created: 0,
        expires: None,
        options: "console=ttyS0".into(),
        artifacts,
    }
}

fn facts(version: &str) -> DeviceFacts {
    DeviceFacts {
        product: "demo".into(),
        board: "qemu-x86_64".into(),
        version: version.parse().unwrap(),
        security_epoch: 0,
        failed_versions: Vec::new(),
        now: 0,
    }
}

fn situation(facts: &DeviceFacts, running: Slot, boot: BootKind) -> Situation<'_> {
    Situation {
        facts,
        running,
        on_trial: false,
        boot,
        slot_size: 1 << 30,
        device: "/dev/vda3",
        stage: false,
    }
}

fn kinds(p: &InstallPlan) -> Vec<&'static str> {
    p.steps
        .iter()
        .map(|s| match s {
            Step::RemoveEntry { .. } => "remove-entry",
            Step::WriteRoot { .. } => "write-root",
            Step::ReadBack { .. } => "read-back",
            Step::WriteBootFiles { .. } => "write-boot-files",
            Step::WriteEntry { .. } => "write-entry",
            Step::OneShot { .. } => "one-shot",
        })
        .collect()
}

#[test]
fn a_conf_image_writes_root_boot_files_then_the_entry() {
    let f = facts("1.0.0");
    let m = manifest("1.1.0", false);
    let p = plan(&m, &situation(&f, Slot::A, BootKind::Conf)).unwrap();
    assert_eq!(p.idle, Slot::B);
    assert_eq!(
        kinds(&p),
        [
            "remove-entry",
            "write-root",
            "read-back",
            "write-boot-files",
            "write-entry"
        ]
    );
    let Step::WriteBootFiles { files, .. } = &p.steps[3] else {
        panic!("{:?}", p.steps[3]);
    };
    let paths: Vec<_> = files.iter().map(|f| f.esp_path.as_str()).collect();
    assert_eq!(paths, ["slate/b/vmlinuz", "slate/b/initrd.img"]);
    let Step::WriteEntry { name, content, .. } = &p.steps[4] else {
        panic!("{:?}", p.steps[4]);
    };
    assert_eq!(name.to_string(), "slate-b-1.1.0+3.conf");
    let EntryContent::Conf(entry) = content else {
        panic!("{content:?}");
    };
    assert_eq!(entry.title, "demo 1.1.0 (slot b)");
    assert_eq!(entry.linux, "/slate/b/vmlinuz");
    assert!(entry.options.contains("slate.slot=b"), "{}", entry.options);
    assert!(
        entry.options.starts_with("console=ttyS0 "),
        "{}",
        entry.options
    );
}

#[test]
fn a_secure_boot_image_writes_the_idle_slots_uki_as_its_entry() {
    let f = facts("1.0.0");
    let m = manifest("1.1.0", true);
    let p = plan(&m, &situation(&f, Slot::B, BootKind::Uki)).unwrap();
    assert_eq!(p.idle, Slot::A);
    assert_eq!(
        kinds(&p),
        ["remove-entry", "write-root", "read-back", "write-entry"]
    );
    let Step::WriteEntry { name, content, .. } = &p.steps[3] else {
        panic!("{:?}", p.steps[3]);
    };
    assert_eq!(name.to_string(), "slate-a-1.1.0+3.efi");
    assert_eq!(content, &EntryContent::Uki(m.artifacts[0].clone()));
}

#[test]
fn a_version_that_is_not_newer_is_booted_next_by_a_one_shot_choice() {
    for (running, new) in [("1.1.0", "1.0.0"), ("1.1.0", "1.1.0")] {
        let f = facts(running);
        let p = plan(
            &manifest(new, false),
            &situation(&f, Slot::A, BootKind::Conf),
        )
        .unwrap();
        assert_eq!(kinds(&p).last(), Some(&"one-shot"), "{running} → {new}");
        assert_eq!(
            p.steps.last(),
            Some(&Step::OneShot {
                name: p.entry().unwrap().clone()
            })
        );
    }
}

#[test]
fn a_staged_install_writes_its_entry_staged_and_leaves_the_one_shot_to_the_apply() {
    for (kind, new) in [(BootKind::Conf, "1.0.0"), (BootKind::Uki, "1.2.0")] {
        let f = facts("1.1.0");
        let mut s = situation(&f, Slot::A, kind);
        s.stage = true;
        let p = plan(&manifest(new, kind == BootKind::Uki), &s).unwrap();
        assert_eq!(kinds(&p).last(), Some(&"write-entry"), "{new}");
        assert!(
            p.steps
                .iter()
                .all(|s| !matches!(s, Step::WriteEntry { staged: false, .. })),
            "{:?}",
            p.steps
        );
        let staged = p.entry().unwrap().staged_path();
        assert!(
            staged.ends_with(&format!(
                "-{new}+3{}.staged",
                if kind == BootKind::Conf {
                    ".conf"
                } else {
                    ".efi"
                }
            )),
            "{staged}"
        );
    }
}

#[test]
fn a_device_on_trial_refuses() {
    let f = facts("1.0.0");
    let mut s = situation(&f, Slot::A, BootKind::Conf);
    s.on_trial = true;
    let e = plan(&manifest("1.1.0", false), &s).unwrap_err();
    assert_eq!(e.kind().as_str(), "on-trial");
    assert_eq!(e.http_status(), 409);
    assert!(e.to_string().contains("slot a is still on trial"), "{e}");
    assert_eq!(
        admit(Slot::A, true).unwrap_err().kind().as_str(),
        "on-trial"
    );
    assert!(admit(Slot::A, false).is_ok());
}

#[test]
fn a_bundle_that_boots_another_way_refuses_both_ways() {
    let f = facts("1.0.0");
    let e = plan(
        &manifest("1.1.0", true),
        &situation(&f, Slot::A, BootKind::Conf),
    )
    .unwrap_err();
    assert!(
        matches!(e, Refusal::BootKind { bundle_ukis: true }),
        "{e:?}"
    );
    assert!(e.to_string().contains("carries UKIs"), "{e}");
    let e = plan(
        &manifest("1.1.0", false),
        &situation(&f, Slot::A, BootKind::Uki),
    )
    .unwrap_err();
    assert!(
        matches!(e, Refusal::BootKind { bundle_ukis: false }),
        "{e:?}"
    );
    assert_eq!(e.kind().as_str(), "boot-kind");
    assert_eq!(e.http_status(), 400);
}

#[test]
fn a_root_image_larger_than_the_slot_refuses_naming_both_sizes() {
    let f = facts("1.0.0");
    let m = manifest("1.1.0", false);
    let mut s = situation(&f, Slot::A, BootKind::Conf);
    s.slot_size = m.artifacts[0].size - 1;
    let e = plan(&m, &s).unwrap_err();
    assert_eq!(e.kind().as_str(), "too-large");
    assert_eq!(
        e.to_string(),
        format!(
            "rootfs.img is {} bytes but slot b (/dev/vda3) holds {}",
            m.artifacts[0].size,
            m.artifacts[0].size - 1
        )
    );
    s.slot_size = m.artifacts[0].size;
    assert!(
        plan(&m, &s).is_ok(),
        "an image the exact size of the slot fits"
    );
}

#[test]
fn a_manifest_without_verity_parameters_refuses() {
    let f = facts("1.0.0");
    let mut m = manifest("1.1.0", false);
    m.artifacts[0].verity = None;
    let e = plan(&m, &situation(&f, Slot::A, BootKind::Conf)).unwrap_err();
    assert_eq!(e.kind().as_str(), "manifest");
    assert!(e.to_string().contains("verity"), "{e}");
    let mut m = manifest("1.1.0", true);
    m.artifacts.remove(1);
    let e = plan(&m, &situation(&f, Slot::A, BootKind::Uki)).unwrap_err();
    assert!(e.to_string().contains("uki-b.efi"), "{e}");
}

#[test]
fn a_digest_check_names_the_artifact_both_digests_and_the_empty_slot() {
    let a = Artifact {
        sha256: Digest32::of(b"k"),
        ..artifact("vmlinuz", 1, None)
    };
    let archive = |data: &[u8]| {
        let mut w = crate::bundle::Writer::new(Vec::new(), 0);
        w.entry("vmlinuz", data).unwrap();
        w.finish().unwrap()
    };
    let stream = |bytes: Vec<u8>| {
        let mut r = BundleReader::new(bytes.as_slice());
        expect_artifact(&mut r, &a).unwrap();
        stream_into_slot(&mut r, &a, Slot::B, |_| Ok::<(), std::io::Error>(()))
            .map(|sink| sink.unwrap())
    };
    assert!(stream(archive(b"k")).is_ok());
    let flipped = stream(archive(b"j")).unwrap_err();
    assert!(
        matches!(flipped, Refusal::DigestMismatch { .. }),
        "{flipped}"
    );
    let e = ArtifactError::Digest {
        artifact: a.name.clone(),
        expected: a.sha256,
        got: Digest32([0xee; 32]),
    }
    .refusal(Slot::B);
    assert_eq!(e.kind().as_str(), "digest-mismatch");
    let text = e.to_string();
    assert!(text.starts_with("vmlinuz sha256 eeee"), "{text}");
    assert!(text.contains(&a.sha256.to_string()), "{text}");
    assert!(text.ends_with("slot b is left without an entry"), "{text}");
}

#[test]
fn every_refusal_has_its_wire_kind() {
    let stalled = Refusal::Stalled {
        seconds: 3,
        min_kib_s: 64,
        inner: Box::new(Refusal::Busy {
            holder: "slated (PID 7)".into(),
        }),
    };
    assert_eq!(stalled.kind().as_str(), "stalled");
    assert_eq!(
        stalled.http_status(),
        409,
        "a stall keeps its cause's status"
    );
    for (r, kind) in [
        (
            Refusal::Busy {
                holder: "slated (PID 7)".into(),
            },
            "busy",
        ),
        (Refusal::NoTrust, "no-trust"),
        (Refusal::NoEsp, "no-esp"),
        (
            Refusal::NoSecureBootCert { why: "x".into() },
            "no-secure-boot-cert",
        ),
    ] {
        assert_eq!(r.kind().as_str(), kind);
    }
}

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![Just(Slot::A), Just(Slot::B)]
}

fn version() -> impl Strategy<Value = Version> {
    (0u64..3, 0u64..3, 0u64..3).prop_map(|(a, b, c)| format!("{a}.{b}.{c}").parse().unwrap())
}

proptest! {
    #[test]
    fn a_plan_never_touches_the_running_slot_and_writes_its_entry_last(
        running in slot(),
        ukis in any::<bool>(),
        old in version(),
        new in version(),
    ) {
        let f = DeviceFacts { version: old, ..facts("0.0.0") };
        let mut m = manifest("0.0.0", ukis);
        m.version = new;
        let boot = if ukis { BootKind::Uki } else { BootKind::Conf };
        let p = plan(&m, &situation(&f, running, boot)).unwrap();
        prop_assert_eq!(p.idle, running.other());
        for s in &p.steps {
            prop_assert_ne!(s.slot(), Some(running), "{:?} touches the running slot", s);
        }
        // Nothing can boot the slot while it is written: its entries go first...
        prop_assert_eq!(&p.steps[0], &Step::RemoveEntry { slot: p.idle });
        // ...and the new entry is the last thing written (a one-shot choice may follow).
        let last_write = p
            .steps
            .iter()
            .rposition(|s| !matches!(s, Step::OneShot { .. }))
            .unwrap();
        let entry_is_last = matches!(p.steps[last_write], Step::WriteEntry { .. });
        prop_assert!(entry_is_last, "{:?}", p.steps);
        let entries = p.steps.iter().filter(|s| matches!(s, Step::WriteEntry { .. })).count();
        prop_assert_eq!(entries, 1);
        // The root is read back before anything makes it bootable.
        let read_back = p.steps.iter().position(|s| matches!(s, Step::ReadBack { .. })).unwrap();
        let write_root = p.steps.iter().position(|s| matches!(s, Step::WriteRoot { .. })).unwrap();
        prop_assert!(write_root < read_back && read_back < last_write);
        let one_shot = p.steps.iter().any(|s| matches!(s, Step::OneShot { .. }));
        prop_assert_eq!(one_shot, m.version <= f.version);
    }
}

#[test]
fn a_pull_installs_only_the_version_its_release_offered() {
    let m = manifest("2.0.0", false);
    let v = |t: &str| t.parse::<crate::Version>().expect("version");
    assert!(
        check_offered(&m, None).is_ok(),
        "a push offers what it carries"
    );
    assert!(check_offered(&m, Some(&v("2.0.0"))).is_ok());
    let r = check_offered(&m, Some(&v("2.1.0"))).expect_err("another version");
    assert_eq!(r.kind().as_str(), "manifest");
    assert_eq!(
        r.to_string(),
        "the channel offered version 2.1.0, but the bundle's signed manifest says 2.0.0"
    );
}
