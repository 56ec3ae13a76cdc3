//! Delta updates over the channel, both tiers on one device. A device on v1 pulls v2, whose
//! bundle has a chunk index beside it, by delta — the root image's stretches its running slot
//! holds are copied from it, only the rest is fetched by Range over HTTPS from nginx; the
//! server's copy is corrupt, so the assembled bundle is refused (hashed against the signed
//! sha256) with the device still on v1, and nginx's access log (not the device's own count)
//! shows the bytes sent and the Range answers. Then v2 is published again with a static patch
//! from v1: the device fetches that one file, no byte of the bundle, and commits.

use slate_core::api::Kind;
use slate_core::layout::Slot;
use slate_tests::channel::{delta_channel, Channel};
use slate_tests::*;
use std::time::Duration;

#[test]
fn a_device_pulls_a_release_by_delta_and_commits() {
    let ch = delta_channel();
    let v1 = image_variant("1.0.0", Variant::Delta);
    let v1_bundle = bundle(image_variant("1.0.0", Variant::Delta));
    let v2 = bundle(image_variant("2.0.0", Variant::Delta));
    let v2_len = std::fs::metadata(&v2).unwrap().len();
    let nginx = ch.serve();
    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
    let vm = boot(&disk, tmp.path(), |_| {}).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    vm.wait_for(&Kind::ChannelUpToDate.prefix(), Duration::from_secs(120))
        .unwrap();
    let seed = status(&vm).channel.expect("channel status").seed;

    // The server's copy is corrupt (one byte of the root image's verity tree, which a delta
    // always fetches: the device computes none of it from its own slot): the
    // assembled bundle is not the signed one, nothing is installed, and the device says so.
    drop(nginx);
    ch.publish_with_index(&v2);
    let target = ch.target_file("2.0.0");
    let good = std::fs::read(&target).unwrap();
    let mut bad = good.clone();
    let at = usize::try_from(verity_tree_at(&good)).unwrap() + 10;
    bad[at] ^= 0x01;
    std::fs::write(&target, &bad).unwrap();
    let mark = vm.mark();
    let nginx = ch.serve();
    let line = vm
        .wait_for_after(
            &format!("{} kind=download", Kind::ChannelError.prefix()),
            mark,
            Duration::from_secs(300),
        )
        .unwrap();
    // Stopped before the device tries again (it waits at least 2 s): the log holds exactly
    // this attempt.
    drop(nginx);
    assert!(
        line.text.contains("does not match the signed target"),
        "{}",
        line.text
    );
    let fetching = vm
        .wait_for_after(
            &format!(
                "{} version=2.0.0 mode=delta",
                Kind::ChannelFetching.prefix()
            ),
            mark,
            Duration::from_secs(1),
        )
        .expect("the attempt was a delta");
    let planned = marker_number(&fetching.text, "bytes=");
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::A, "1.0.0"));

    // What nginx sent this device for the bundle in that attempt: the delta's bytes, by
    // Range (independently of the device's own count).
    let log = ch.access_log();
    let (requests, sent) = Channel::bundle_bytes_sent(&log, seed).unwrap();
    let statuses = Channel::bundle_statuses(&log, seed);
    eprintln!(
        "delta: {sent} of {v2_len} bundle bytes sent in {requests} request(s) {statuses:?}; the device planned {planned}"
    );
    assert!(
        requests >= 2 && statuses.iter().all(|&s| s == 206),
        "{statuses:?}"
    );
    assert!(sent <= planned, "sent {sent}, planned {planned}");
    assert!(sent * 4 < v2_len, "sent {sent} of {v2_len}");

    // The right bytes, and a static patch for devices on 1.0.0 beside them (published with
    // the server down, so no attempt straddles them): the device fetches only the patch —
    // no request for the bundle at all — assembles the bundle from it and its running slot,
    // and commits.
    std::fs::write(&target, &good).unwrap();
    ch.publish_with_patch(&v2, &v1_bundle);
    let log_mark = ch.access_log().len();
    let mark = vm.mark();
    let nginx = ch.serve();
    let line = vm
        .wait_for_after(
            &format!(
                "{} version=2.0.0 mode=static",
                Kind::ChannelFetching.prefix()
            ),
            mark,
            Duration::from_secs(300),
        )
        .unwrap();
    assert!(
        line.text.ends_with(&format!(" of {v2_len}")),
        "{}",
        line.text
    );
    let fetched = vm
        .wait_for_after(
            &format!("{} version=2.0.0 ", Kind::ChannelFetched.prefix()),
            mark,
            Duration::from_secs(300),
        )
        .unwrap();
    let number = |key: &str| marker_number(&fetched.text, key);
    vm.wait_for_after(
        &Kind::Committed.on_version(Slot::B, "2.0.0"),
        mark,
        Duration::from_secs(600),
    )
    .unwrap();
    drop(nginx);
    let log = ch.access_log()[log_mark..].to_string();
    let (bundle_requests, _) = Channel::bundle_bytes_sent(&log, seed).unwrap();
    let (patch_requests, patch_sent) = Channel::patch_bytes_sent(&log, seed).unwrap();
    eprintln!(
        "static: a patch of {patch_sent} bytes in {patch_requests} request(s) for a bundle of {v2_len}; {}",
        fetched.text
    );
    assert_eq!(bundle_requests, 0, "{log}");
    assert_eq!(patch_requests, 1, "{log}");
    assert_eq!(number("patch="), patch_sent, "{}", fetched.text);
    assert!(
        patch_sent * 10 < v2_len,
        "a patch of {patch_sent} for {v2_len}"
    );
    assert_eq!(
        (number("bytes="), number("requests=")),
        (0, 0),
        "{}",
        fetched.text
    );
    assert!(number("copied=") > v2_len / 2, "{}", fetched.text);
}

/// Where the root image's verity tree starts in `bundle`.
fn verity_tree_at(bundle: &[u8]) -> u64 {
    let mut r = slate_core::bundle::BundleReader::new(bundle);
    let (m, _) = slate_core::install::read_head(&mut r).unwrap();
    let m = slate_core::manifest::Manifest::parse(&m).unwrap();
    let offsets =
        slate_core::bundle::data_offsets(r.offset(), m.artifacts.iter().map(|a| a.size)).unwrap();
    let (a, at) = m
        .artifacts
        .iter()
        .zip(offsets)
        .find(|(a, _)| a.name == slate_core::manifest::ROOTFS)
        .expect("a root image in the bundle");
    at + a.verity.as_ref().unwrap().hash_offset
}
