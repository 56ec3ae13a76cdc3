//! The hostile bundle corpus: a generator (no binary blobs checked in) that turns one good
//! bundle into many bad ones, each with the words the device's refusal must contain.
//!
//! Kinds: signatures and trust, manifest semantics and type confusion, archive structure and
//! path tricks, sizes that lie, bit flips at chosen offsets, truncation at every boundary.

use crate::{keys, Parts};
use slate_core::bundle;

mod case;
mod tar;

use case::{kind_of, stage_of, STREAMING};
pub use case::{Case, Stage};
use tar::{archive, boundaries, bytes_of, fix_checksum};

/// Builds the corpus from a good bundle of a version newer than the device's (`running`),
/// signed by both trusted keys (threshold 2).
pub fn generate(good: &Parts, running: &slate_core::version::Version) -> Vec<Case> {
    let k = keys();
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, expect: &'static str| {
        cases.push(Case {
            name: name.into(),
            bytes,
            expect,
            kind: kind_of(name),
            stage: stage_of(name),
        })
    };
    let signed = |edit: &dyn Fn(&mut Parts)| {
        let mut p = good.clone();
        edit(&mut p);
        p.resign(&[&k.k1, &k.k2]);
        bytes_of(&p)
    };
    let raw_manifest = |text: &[u8]| {
        // A manifest whose text is written by hand (type confusion), signed by both keys.
        let mut p = good.clone();
        p.resign(&[&k.k1, &k.k2]);
        use ed25519_dalek::Signer;
        let bytes = text.to_vec();
        p.sigs.signatures = [&k.k1, &k.k2]
            .iter()
            .map(|key| slate_core::manifest::SignatureEntry {
                key_id: slate_core::manifest::key_id(&key.verifying_key()),
                signature: key
                    .sign(&bytes)
                    .to_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            })
            .collect();
        p.manifest_bytes = bytes;
        bytes_of(&p)
    };
    let text = String::from_utf8(good.manifest_bytes.clone()).expect("utf-8 manifest");

    // Signatures and trust.
    let resign = |keys: &[&ed25519_dalek::SigningKey]| {
        let mut p = good.clone();
        p.resign(keys);
        bytes_of(&p)
    };
    add(
        "signed only by an unknown key",
        resign(&[&k.stranger]),
        "is not trusted",
    );
    add(
        "unknown key plus one trusted",
        resign(&[&k.k1, &k.stranger]),
        "2 required",
    );
    add(
        "below the threshold",
        resign(&[&k.k2]),
        "1 valid signature(s) from trusted keys, 2 required",
    );
    add(
        "one trusted key twice",
        resign(&[&k.k1, &k.k1]),
        "1 valid signature(s)",
    );
    add("no signatures", resign(&[]), "no signatures");
    let mut p = good.clone();
    let s = &mut p.sigs.signatures[0].signature;
    let flipped = if s.starts_with('0') { "1" } else { "0" };
    s.replace_range(0..1, flipped);
    add("a flipped signature byte", bytes_of(&p), "does not verify");
    let mut p = good.clone();
    p.sigs.signatures[0].signature = "zz".repeat(64);
    add(
        "a signature that is not hex",
        bytes_of(&p),
        "does not verify",
    );
    let mut p = good.clone();
    let id = p.sigs.signatures[1].key_id.clone();
    p.sigs.signatures[0].key_id = id;
    add(
        "a signature claiming another key's id",
        bytes_of(&p),
        "does not verify",
    );
    add(
        "a signature file that is not TOML",
        archive(
            &good.manifest_bytes,
            b"signature = [",
            &good
                .entries
                .iter()
                .map(|(n, d)| (n.clone(), d.clone(), b'0'))
                .collect::<Vec<_>>(),
            true,
        ),
        "manifest.sig",
    );

    // Manifest semantics and type confusion.
    add(
        "another product",
        signed(&|p| p.manifest.product = "toaster".into()),
        "bundle is for product",
    );
    add(
        "another board",
        signed(&|p| p.manifest.board = "rpi4".into()),
        "bundle is for board",
    );
    add(
        "a lower version",
        signed(&|p| p.manifest.version = "0.9.0".parse().expect("v")),
        "is not newer",
    );
    add(
        "the running version",
        signed(&|p| p.manifest.version = running.clone()),
        "is not newer",
    );
    add(
        "expired",
        signed(&|p| p.manifest.expires = Some(86_400)),
        "expired",
    );
    add(
        "unknown format version",
        raw_manifest(text.replacen("format = 1", "format = 3", 1).as_bytes()),
        "format 3 is not supported",
    );
    add(
        "format 2 (signed UKIs) with a kernel and an initramfs",
        raw_manifest(text.replacen("format = 1", "format = 2", 1).as_bytes()),
        "format-2 manifest's artifacts must be exactly [\"uki-a.efi\"",
    );
    add(
        "format as a string",
        raw_manifest(text.replacen("format = 1", "format = \"1\"", 1).as_bytes()),
        "manifest.toml",
    );
    add(
        "version as an integer",
        raw_manifest(
            text.replacen(
                &format!("version = \"{}\"", good.manifest.version),
                "version = 2",
                1,
            )
            .as_bytes(),
        ),
        "manifest.toml",
    );
    add(
        "size as a string",
        raw_manifest(text.replacen("size = ", "size = \"1\" # ", 1).as_bytes()),
        "manifest.toml",
    );
    add(
        "an unknown manifest field",
        raw_manifest(format!("surprise = true\n{text}").as_bytes()),
        "unknown field",
    );
    add(
        "a non-UTF-8 manifest",
        raw_manifest(&[&[0xffu8, 0xfe][..], text.as_bytes()].concat()),
        "manifest.toml",
    );
    add(
        "a manifest over 64 KiB",
        raw_manifest(format!("{text}\n#{}\n", "x".repeat(70_000)).as_bytes()),
        "more than the 65536 allowed",
    );
    add(
        "a missing artifact in the manifest",
        signed(&|p| {
            p.manifest.artifacts.pop();
        }),
        "exactly [",
    );
    add(
        "an extra artifact in the manifest",
        signed(&|p| {
            let extra = p.manifest.artifacts[1].clone();
            p.manifest.artifacts.push(slate_core::manifest::Artifact {
                name: "evil.sh".into(),
                ..extra
            });
        }),
        "exactly [",
    );
    add(
        "artifacts reordered in the manifest",
        signed(&|p| p.manifest.artifacts.swap(1, 2)),
        "exactly [",
    );
    add(
        "options that set the slot",
        signed(&|p| p.manifest.options.push_str(" slate.slot=a")),
        "must not set slate.slot",
    );
    let kernel_sha = good.manifest.artifacts[1].sha256.to_string();
    add(
        "a malformed sha256",
        raw_manifest(text.replace(&kernel_sha, "abc").as_bytes()),
        "64 hex digits",
    );
    add(
        "an upper-case sha256 (refused before anything is written)",
        raw_manifest(
            text.replace(&kernel_sha, &kernel_sha.to_uppercase())
                .as_bytes(),
        ),
        "lower-case hex digit",
    );
    add(
        "rootfs size that does not match its verity layout",
        signed(&|p| p.manifest.artifacts[0].size += 4096),
        "does not match its verity layout",
    );
    add(
        "a root image larger than the slot",
        signed(&|p| {
            let v = p.manifest.artifacts[0].verity.as_mut().expect("verity");
            v.data_blocks = 200_000;
            v.hash_offset = 200_000 * 4096;
            let size = v.image_size();
            p.manifest.artifacts[0].size = size;
        }),
        "bytes but slot",
    );
    add(
        "a kernel larger than the limit",
        signed(&|p| p.manifest.artifacts[1].size = 100 << 20),
        "over the",
    );

    // Archive structure and path tricks (the manifest itself is good and signed).
    let entries = |list: Vec<(&str, usize, u8)>| -> Vec<(String, Vec<u8>, u8)> {
        list.into_iter()
            .map(|(n, i, t)| (n.to_string(), good.entries[i].1.clone(), t))
            .collect()
    };
    let sig = good.sigs.to_bytes();
    let m = &good.manifest_bytes;
    add(
        "kernel before the root image",
        archive(
            m,
            &sig,
            &entries(vec![
                ("vmlinuz", 1, b'0'),
                ("rootfs.img", 0, b'0'),
                ("initrd.img", 2, b'0'),
            ]),
            true,
        ),
        "expected \"rootfs.img\"",
    );
    add(
        "initrd before the kernel",
        archive(
            m,
            &sig,
            &entries(vec![
                ("rootfs.img", 0, b'0'),
                ("initrd.img", 2, b'0'),
                ("vmlinuz", 1, b'0'),
            ]),
            true,
        ),
        "expected \"vmlinuz\"",
    );
    add(
        "an extra entry at the end",
        archive(
            m,
            &sig,
            &entries(vec![
                ("rootfs.img", 0, b'0'),
                ("vmlinuz", 1, b'0'),
                ("initrd.img", 2, b'0'),
                ("evil.sh", 1, b'0'),
            ]),
            true,
        ),
        "expected \"end of archive\"",
    );
    add(
        "bytes after the end-of-archive marker",
        {
            let mut v = archive(
                m,
                &sig,
                &entries(vec![
                    ("rootfs.img", 0, b'0'),
                    ("vmlinuz", 1, b'0'),
                    ("initrd.img", 2, b'0'),
                ]),
                true,
            );
            v.extend_from_slice(b"#!/bin/sh\n");
            v
        },
        "bytes after its end-of-archive marker",
    );
    add(
        "a missing initrd entry",
        archive(
            m,
            &sig,
            &entries(vec![("rootfs.img", 0, b'0'), ("vmlinuz", 1, b'0')]),
            true,
        ),
        "is \"end of archive\"",
    );
    add(
        "a duplicated manifest entry",
        {
            let mut w = bundle::Writer::new(Vec::new(), 0);
            w.entry("manifest.toml", m).expect("w");
            w.entry("manifest.toml", m).expect("w");
            let mut v = w.into_inner();
            v.extend_from_slice(&archive(m, &sig, &[], true)[512 + m.len().div_ceil(512) * 512..]);
            v
        },
        "expected \"manifest.sig\"",
    );
    add(
        "a parent-directory path",
        archive(m, &sig, &entries(vec![("../rootfs.img", 0, b'0')]), true),
        "\"../rootfs.img\"",
    );
    add(
        "an absolute path",
        archive(m, &sig, &entries(vec![("/rootfs.img", 0, b'0')]), true),
        "\"/rootfs.img\"",
    );
    add(
        "a dot-slash path",
        archive(m, &sig, &entries(vec![("./rootfs.img", 0, b'0')]), true),
        "\"./rootfs.img\"",
    );
    add(
        "the root image as a symlink",
        archive(m, &sig, &[("rootfs.img".into(), Vec::new(), b'2')], true),
        "not a regular file",
    );
    add(
        "the root image as a hard link",
        archive(m, &sig, &[("rootfs.img".into(), Vec::new(), b'1')], true),
        "not a regular file",
    );
    add(
        "the root image as a folder",
        archive(m, &sig, &[("rootfs.img".into(), Vec::new(), b'5')], true),
        "not a regular file",
    );
    let mut bad = bytes_of(good);
    bad[100] ^= 0x01;
    add("a corrupted header checksum", bad, "checksum");
    let mut bad = bytes_of(good);
    bad[257..263].copy_from_slice(b"\0\0\0\0\0\0");
    fix_checksum(&mut bad[..512]);
    add("a v7 tar header", bad, "not a ustar header");
    let mut bad = bytes_of(good);
    bad[345] = b'x';
    fix_checksum(&mut bad[..512]);
    add(
        "a name split into the prefix field",
        bad,
        "expected \"manifest.toml\"",
    );

    // Sizes that lie: the archive entry differs from the manifest.
    let mut short = good.entries.clone();
    let kernel_len = short[1].1.len();
    short[1].1.truncate(kernel_len - 1);
    add(
        "kernel shorter than the manifest says",
        archive(
            m,
            &sig,
            &short
                .iter()
                .map(|(n, d)| (n.clone(), d.clone(), b'0'))
                .collect::<Vec<_>>(),
            true,
        ),
        "the manifest says",
    );
    let mut long = good.entries.clone();
    long[2].1.push(0);
    add(
        "initrd longer than the manifest says",
        archive(
            m,
            &sig,
            &long
                .iter()
                .map(|(n, d)| (n.clone(), d.clone(), b'0'))
                .collect::<Vec<_>>(),
            true,
        ),
        "more than the",
    );
    let mut long = good.entries.clone();
    long[0].1.extend_from_slice(&[0u8; 4096]);
    add(
        "root image longer than the manifest says",
        archive(
            m,
            &sig,
            &long
                .iter()
                .map(|(n, d)| (n.clone(), d.clone(), b'0'))
                .collect::<Vec<_>>(),
            true,
        ),
        "more than the",
    );

    // Bit flips at chosen offsets.
    let b = boundaries(good);
    let start = |name: &str| {
        b.iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o + 512)
            .expect("boundary")
    };
    let flip_at = |off: usize| {
        let mut v = bytes_of(good);
        v[off] ^= 0x80;
        v
    };
    add(
        "a flipped first manifest byte",
        flip_at(start("manifest.toml")),
        "valid signature",
    );
    add(
        "a flipped last manifest byte",
        flip_at(start("manifest.toml") + good.manifest_bytes.len() - 2),
        "valid signature",
    );
    let rootfs_len = good.entries[0].1.len();
    for (what, off) in [
        ("first", 0),
        ("4097th", 4096),
        ("middle", rootfs_len / 2),
        ("last (hash tree)", rootfs_len - 1),
    ] {
        add(
            &format!("a flipped {what} root image byte"),
            flip_at(start("rootfs.img") + off),
            "rootfs.img sha256",
        );
    }
    let (vl, il) = (good.entries[1].1.len(), good.entries[2].1.len());
    add(
        "a flipped first kernel byte",
        flip_at(start("vmlinuz")),
        "vmlinuz sha256",
    );
    add(
        "a flipped last kernel byte",
        flip_at(start("vmlinuz") + vl - 1),
        "vmlinuz sha256",
    );
    add(
        "a flipped first initrd byte",
        flip_at(start("initrd.img")),
        "initrd.img sha256",
    );
    add(
        "a flipped last initrd byte",
        flip_at(start("initrd.img") + il - 1),
        "initrd.img sha256",
    );

    // Truncation at every boundary and inside every part.
    let full = bytes_of(good);
    let mut cuts = vec![
        ("an empty body".to_string(), 0usize),
        ("inside the first header".into(), 100),
    ];
    for (name, off) in &b {
        if name == "end" {
            cuts.push(("before the end-of-archive marker".into(), *off));
        } else {
            cuts.push((format!("right before the {name} header"), *off));
            cuts.push((format!("inside the {name} data"), off + 512 + 1));
        }
    }
    for (what, at) in cuts {
        if at == 0 {
            add(&format!("truncated: {what}"), Vec::new(), "truncated");
        } else {
            add(
                &format!("truncated: {what}"),
                full[..at].to_vec(),
                "truncated",
            );
        }
    }
    for name in STREAMING {
        assert!(
            cases.iter().any(|c| c.name == *name),
            "the corpus has no case {name:?} to stream"
        );
    }
    cases
}
