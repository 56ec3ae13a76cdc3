//! One test per bug found so far in the shared formats and decisions, named after the bug, so a
//! change that brings one back fails under its own name. (Bugs of the device and the host tools
//! have theirs beside their code: the overlay umask in `imager/tests/reproducible.rs`, the
//! hostile-bundle quoting in `tests/e2e/hostile.rs`, the ESP dirty bit in `core/tests/fat_oracle.rs`.)

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use slate_core::api::{Kind, Marker, Outcome, SlotState};
use slate_core::bootentry::EntryName;
use slate_core::cmdline::BootParams;
use slate_core::layout::Slot;
use slate_core::manifest::Manifest;
use slate_core::slots::{self, Attempts, MAX_FAILED_BOOTS};
use slate_core::verity::VerityInfo;
use slate_core::Digest32;

fn manifest_text(sha: &str) -> String {
    let info = VerityInfo::new(Digest32([0xab; 32]), vec![0; 32], 10, 40960).unwrap();
    format!(
        r#"format = 1
product = "p"
board = "b"
version = "1.1.0"
security_epoch = 0
created = 1
options = "console=ttyS0"

[[artifact]]
name = "rootfs.img"
size = {}
sha256 = "{}"

[artifact.verity]
root_hash = "{}"
salt = "{}"
data_blocks = 10
hash_offset = 40960

[[artifact]]
name = "vmlinuz"
size = 1
sha256 = "{sha}"

[[artifact]]
name = "initrd.img"
size = 1
sha256 = "{}"
"#,
        info.image_size(),
        "00".repeat(32),
        info.root_hash,
        "00".repeat(32),
        "22".repeat(32)
    )
}

/// Digests were compared as text after the slot was written: an upper-case sha256 passed
/// parsing and was refused only once the idle slot held the bundle.
#[test]
fn an_upper_case_sha256_was_refused_only_after_the_slot_was_written() {
    let good = "cd".repeat(32);
    assert!(Manifest::parse(manifest_text(&good).as_bytes()).is_ok());
    assert!(Manifest::parse(manifest_text(&good.to_uppercase()).as_bytes()).is_err());
}

/// A blessed entry has no counter, so a good slot that died before becoming healthy (dm-verity
/// restarting on a corrupt block) was started again forever.
#[test]
fn a_good_slot_that_never_became_healthy_was_started_forever() {
    let entries: Vec<EntryName> = vec![
        "slate-a-1.0.0.conf".parse().unwrap(),
        "slate-b-1.1.0.conf".parse().unwrap(),
    ];
    let mut a = None;
    for _ in 0..=MAX_FAILED_BOOTS {
        a = Some(Attempts::next(a, Slot::B));
    }
    let (from, to) = slots::give_up(a.unwrap(), &entries).expect("gives up on slot b");
    assert_eq!(from.to_string(), "slate-b-1.1.0.conf");
    assert_eq!(slots::view(Slot::B, &[to]).state, SlotState::Bad);
}

/// The kernel command line was composed by hand in two crates; a manifest's options could set
/// `slate.slot=` and the root hash was split out of a rendered dm table again.
#[test]
fn boot_parameters_had_two_writers_and_options_could_set_them() {
    let p = BootParams {
        slot: Slot::A,
        verity: VerityInfo::new(Digest32([1; 32]), vec![2], 10, 40960).unwrap(),
    };
    let line = p.options("console=ttyS0 panic=5");
    assert_eq!(line.parse::<BootParams>().unwrap(), p);
    assert!(slate_core::cmdline::sets_slate_params("quiet slate.slot=b"));
    let t = p.verity.dm_target("/dev/vda2", &[]);
    assert_eq!((t.start, t.sectors, t.kind), (0, 80, "verity"));
    assert!(!t.params.starts_with('0'), "{}", t.params);
}

/// Outcome words were string literals in ~26 places and `slate: healthy` in ~21; a typo in
/// one went unnoticed until a test waited forever.
#[test]
fn outcome_words_and_markers_were_literals_scattered_over_the_tree() {
    assert_eq!(Outcome::RolledBack.to_string(), "rolled-back");
    let m = Marker::Healthy {
        slot: Slot::A,
        version: "1.0.0".into(),
        ms: 1,
    };
    assert!(m
        .to_string()
        .starts_with(&Kind::Healthy.on_version(Slot::A, "1.0.0")));
}
