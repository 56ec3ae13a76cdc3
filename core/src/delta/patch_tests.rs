//! The static patch format (`patch.rs`, `diff.rs`): a patch carries only the new bytes and
//! rebuilds its target; whatever parses must tile its target; the levels step leaves the
//! verity levels to the device.

use super::patch::{self, PatchError, PatchOp, SourceBytes, BLOCK};
use super::tests::noise;
use crate::Digest32;
use proptest::prelude::*;

fn src<'a>(name: &'a str, bytes: &'a [u8]) -> SourceBytes<'a> {
    SourceBytes {
        name,
        id: Digest32([7; 32]),
        bytes,
    }
}

#[test]
fn a_patch_carries_only_the_new_bytes_and_rebuilds_the_target() {
    let old = noise(1 << 20, 1);
    let kernel = noise(100_000, 10);
    // The target: a new head, the old image with 1000 bytes overwritten and 5000
    // inserted, then the kernel moved to the front of the tail.
    let mut target = noise(3000, 12);
    target.extend_from_slice(&old[..400_000]);
    target.extend_from_slice(&noise(5000, 14));
    target.extend_from_slice(&old[400_000..700_000]);
    target.extend_from_slice(&noise(1000, 16));
    target.extend_from_slice(&old[701_000..]);
    target.extend_from_slice(&kernel);
    let p = patch::diff(
        &target,
        &[src("rootfs.img", &old), src("vmlinuz", &kernel)],
        None,
    )
    .unwrap();
    let read = patch::read(&p[..]).unwrap();
    assert_eq!(read.target_len, target.len() as u64);
    assert_eq!(read.used_sources(), vec![0, 1]);
    assert_eq!(patch::apply(&p, &[&old, &kernel]).unwrap(), target);
    // New bytes: 3000 + 5000 + 1000; the rest copied, give or take a block at each edge.
    let lit = read.literal_bytes();
    assert!((9000..9000 + 6 * BLOCK as u64).contains(&lit), "{lit}");
    assert!(p.len() < 9000 + 6 * BLOCK + 200, "{}", p.len());
}

#[test]
fn an_unrelated_target_is_all_literal() {
    let old = noise(200_000, 1);
    let target = noise(150_000, 9);
    let p = patch::diff(&target, &[src("rootfs.img", &old)], None).unwrap();
    let read = patch::read(&p[..]).unwrap();
    assert_eq!(read.literal_bytes(), target.len() as u64);
    assert_eq!(read.ops.len(), 1);
    assert!(read.used_sources().is_empty());
    // Tiny targets too.
    for n in [0usize, 1, BLOCK - 1, BLOCK] {
        let p = patch::diff(&old[..n], &[src("rootfs.img", &old)], None).unwrap();
        assert_eq!(patch::apply(&p, &[&old]).unwrap(), &old[..n]);
    }
}

#[test]
fn a_hostile_patch_is_refused_with_the_byte_at_fault() {
    let old = noise(10_000, 1);
    let mut target = old.clone();
    target[5000] ^= 1;
    let good = patch::diff(&target, &[src("rootfs.img", &old)], None).unwrap();
    assert!(patch::read(&good[..]).is_ok());
    // Every truncation is refused (never a patch that builds less).
    for n in 0..good.len() {
        assert!(patch::read(&good[..n]).is_err(), "truncated at {n}");
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        patch::read(&trailing[..]),
        Err(PatchError::Trailing { .. })
    ));
    let mut magic = good.clone();
    magic[0] = b'X';
    assert_eq!(patch::read(&magic[..]), Err(PatchError::Magic));
    // The header is 8 + 8 + 1 + (1 + 10) + 8 + 32 = 68 bytes; the first step is a copy of
    // 5000 bytes from offset 0: tag 0 at 68, source at 69, offset at 70, length at 71.
    let header = 68;
    assert_eq!(good[header], 0);
    let mut bad_source = good.clone();
    bad_source[header + 1] = 3;
    let e = patch::read(&bad_source[..]).unwrap_err();
    assert_eq!(
        e,
        PatchError::Field {
            what: "copy source",
            at: header as u64,
            why: "source 3 of 1".into()
        }
    );
    // A copy past its source's end.
    let mut long = Vec::new();
    long.extend_from_slice(&good[..header + 3]);
    long.extend_from_slice(&[0xff, 0xff, 0x03]); // 65535 bytes
    long.extend_from_slice(&good[header + 5..]);
    let e = patch::read(&long[..]).unwrap_err();
    assert!(matches!(e, PatchError::Field { what: "copy", .. }), "{e}");
    // A source count of 0 or 9, a bad tag, a bad name.
    let mut zero = good.clone();
    zero[16] = 0;
    assert!(matches!(
        patch::read(&zero[..]),
        Err(PatchError::Field {
            what: "source count",
            at: 16,
            ..
        })
    ));
    let mut tag = good.clone();
    tag[header] = 3;
    assert!(matches!(
        patch::read(&tag[..]),
        Err(PatchError::Field { what: "step", .. })
    ));
    let mut name = good.clone();
    name[18] = b'/';
    assert!(matches!(
        patch::read(&name[..]),
        Err(PatchError::Field {
            what: "source name",
            at: 17,
            ..
        })
    ));
    // A 10-byte number past 64 bits.
    let mut huge = Vec::new();
    huge.extend_from_slice(&good[..header + 2]);
    huge.extend_from_slice(&[0xff; 9]);
    huge.push(0x7f);
    huge.extend_from_slice(&good[header + 3..]);
    assert!(matches!(
        patch::read(&huge[..]),
        Err(PatchError::Field {
            what: "copy offset",
            ..
        })
    ));
}

/// A bundle-like target: a head, a sealed root image (data, superblock block, levels), a
/// tail; with where its levels are.
fn sealed(data: &[u8]) -> (Vec<u8>, patch::LevelsAt) {
    let tree = crate::verity::build(
        data,
        data.len() as u64,
        b"salt",
        crate::guid::Guid::NIL,
        1,
        &mut |_| {},
    )
    .unwrap();
    let mut t = noise(2048, 77);
    let data_at = t.len() as u64;
    t.extend_from_slice(data);
    let at = t.len() as u64 + 4096;
    t.extend_from_slice(&tree.area);
    t.extend_from_slice(&noise(3000, 78));
    let levels = patch::LevelsAt {
        at,
        len: tree.area.len() as u64 - 4096,
        source: patch::LevelsSource {
            data_at,
            data_len: data.len() as u64,
            salt: b"salt".to_vec(),
        },
    };
    (t, levels)
}

#[test]
fn verity_levels_are_left_to_the_device() {
    let old = noise(300 * 4096, 5);
    let mut new = old.clone();
    new.splice(100_000..100_000, noise(700, 6)); // shifts every later block
    new.truncate(300 * 4096);
    let (target, levels) = sealed(&new);
    let (old_bundle, _) = sealed(&old);
    let p = patch::diff(&target, &[src("rootfs.img", &old_bundle)], Some(&levels)).unwrap();
    let read = patch::read(&p[..]).unwrap();
    assert_eq!(read.levels.as_ref(), Some(&levels.source));
    assert!(read.ops.contains(&PatchOp::Levels {
        to: levels.at,
        len: levels.len
    }));
    assert_eq!(patch::apply(&p, &[&old_bundle]).unwrap(), target);
    // Carried: the edit, the superblock block's UUID-free difference, and what the shift
    // did not move — never the levels.
    assert!(
        read.literal_bytes() < 700 + 4096,
        "{}",
        read.literal_bytes()
    );
}

/// A patch of 8 KiB of literal data and its levels (one block), by hand.
fn by_hand(data_len: &[u8], levels_len: &[u8], twice: bool) -> Vec<u8> {
    let mut p = patch::MAGIC.to_vec();
    let total: u64 = if twice { 16384 } else { 12288 };
    p.extend_from_slice(&total.to_le_bytes());
    p.push(1);
    p.push(10);
    p.extend_from_slice(b"rootfs.img");
    p.extend_from_slice(&0u64.to_le_bytes());
    p.extend_from_slice(&[0; 32]);
    p.extend_from_slice(&[1, 0x80, 0x40]);
    p.extend_from_slice(&[0; 8192]);
    for _ in 0..if twice { 2 } else { 1 } {
        p.extend_from_slice(&[2, 0]);
        p.extend_from_slice(data_len);
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(levels_len);
    }
    p
}

#[test]
fn levels_after_their_data_of_the_trees_length_once_are_the_only_ones_taken() {
    let good = by_hand(&[0x80, 0x40], &[0x80, 0x20], false);
    let read = patch::read(&good[..]).unwrap();
    assert_eq!(
        read.ops[1],
        PatchOp::Levels {
            to: 8192,
            len: 4096
        }
    );
    let built = patch::apply(&good, &[&[]]).unwrap();
    assert_eq!(built.len(), 12288);
    let tree = crate::verity::build(
        &[0u8; 8192][..],
        8192,
        b"",
        crate::guid::Guid::NIL,
        1,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(&built[8192..], &tree.area[4096..]);
    for bad in [
        by_hand(&[0x80, 0x60], &[0x80, 0x20], false), // data past the step
        by_hand(&[0x80, 0x40], &[0x80, 0x40], false), // not the tree's length
        by_hand(&[0x80, 0x40], &[0x80, 0x20], true),  // twice
        by_hand(&[0x81, 0x40], &[0x80, 0x20], false), // data not whole blocks
    ] {
        assert!(
            matches!(
                patch::read(&bad[..]),
                Err(PatchError::Field { what: "levels", .. })
            ),
            "{:?}",
            patch::read(&bad[..])
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any edits: the patch rebuilds the target exactly, every copy reads bytes equal to
    /// the target's, and the literal bytes are at most the edited bytes plus a block on
    /// either side of each edit.
    #[test]
    fn patches_rebuild_any_edit(
        seed in 1u64..u64::MAX,
        edits in prop::collection::vec((0usize..60_000, 0usize..3000, 0u8..3), 0..6),
    ) {
        let old = noise(60_000, seed);
        let mut target = old.clone();
        let mut edited = 0usize;
        for (k, (at, len, kind)) in edits.iter().enumerate() {
            let at = (*at).min(target.len());
            let fresh = noise(*len, seed ^ ((k as u64 + 1) * 0x1234_5678));
            match kind {
                0 => { target.splice(at..at, fresh); }
                1 => { let end = (at + len).min(target.len()); target.drain(at..end); }
                _ => { let end = (at + len).min(target.len()); target.splice(at..end, fresh); }
            }
            edited += len;
        }
        let p = patch::diff(&target, &[src("rootfs.img", &old)], None).unwrap();
        prop_assert_eq!(patch::apply(&p, &[&old]).unwrap(), target.clone());
        let read = patch::read(&p[..]).unwrap();
        for op in &read.ops {
            if let PatchOp::Copy { from, to, len, .. } = *op {
                prop_assert_eq!(
                    &old[from as usize..(from + len) as usize],
                    &target[to as usize..(to + len) as usize]
                );
            }
        }
        let slack = (edits.len() as u64 + 1) * 2 * BLOCK as u64;
        prop_assert!(read.literal_bytes() <= edited as u64 + slack,
            "{} literal bytes for {} edited", read.literal_bytes(), edited);
    }

    /// Random bytes are never taken for a patch that builds something.
    #[test]
    fn random_bytes_are_not_a_patch(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut with_magic = patch::MAGIC.to_vec();
        with_magic.extend_from_slice(&bytes);
        // May parse only if it tiles its target; then applying it with a zero source of
        // each length either works or is refused, never panics.
        if let Ok(p) = patch::read(&with_magic[..]) {
            let zeros: Vec<Vec<u8>> = p.sources.iter().map(|s| vec![0; s.len.min(1 << 16) as usize]).collect();
            let refs: Vec<&[u8]> = zeros.iter().map(Vec::as_slice).collect();
            let _ = patch::apply(&with_magic, &refs);
        }
    }
}
