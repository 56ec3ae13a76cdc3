//! `cargo xtask bench channel`: figures, not a test (ignored unless asked for by name). One
//! run, three twin devices booted from the same 1.0.0 channel image, one after another:
//!
//! 1. `slate push` of 2.0.0: from the push to the device's commit;
//! 2. the same bundle published to the channel: from `slate publish` to the commit, split into
//!    finding it (the poll), fetching and installing, and the trial boot; bytes from the server;
//! 3. the same pull with its connection dropped half way through the bundle (a fault proxy):
//!    the bytes the server had to send again.

use slate_core::api::Kind;
use slate_core::layout::Slot;
use slate_imager::progress::Progress;
use slate_qemu::Vm;
use slate_tests::channel::{channel, Channel};
use slate_tests::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(600);

/// Seconds between the first line containing `from` and the first containing `to`, after
/// `mark`.
pub(crate) fn between(vm: &Vm, mark: usize, from: &str, to: &str) -> f64 {
    let at = |needle: &str| {
        vm.lines()
            .iter()
            .skip(mark)
            .find(|l| l.text.contains(needle))
            .map(|l| l.at.as_secs_f64())
            .unwrap_or_else(|| panic!("no {needle:?} line was seen; nothing to measure"))
    };
    at(to) - at(from)
}

/// A twin device booted to healthy 1.0.0 from `image`.
pub(crate) fn twin(image: &Image) -> (Vm, tempfile::TempDir) {
    let (work, disk) = copy_disk(&image.dir.join("disk.img")).unwrap();
    let vm = boot(&disk, work.path(), |_| {}).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    (vm, work)
}

/// Bytes nginx sent the device with `seed` in `log`: metadata, and bundle bodies.
fn bytes_to(log: &str, seed: u32) -> (u64, u64) {
    let requests = Channel::requests(log, seed).unwrap();
    let all: u64 = requests.iter().map(|r| r.bytes).sum();
    let bundle: u64 = requests.iter().filter(|r| r.bundle).map(|r| r.bytes).sum();
    (all - bundle, bundle)
}

#[test]
#[ignore = "benchmark: cargo xtask bench channel"]
fn publish_to_commit_beside_push() {
    let ch = channel();
    let v1 = image_variant("1.0.0", Variant::Channel);
    let v2 = bundle(image_variant("2.0.0", Variant::Channel));
    let v2_len = std::fs::metadata(&v2).unwrap().len();
    let (_nginx, proxy) = ch.serve_behind_proxy();

    // 1. slate push, with nothing published (the channel says up to date).
    let (vm, work) = twin(v1);
    vm.wait_for(&Kind::ChannelUpToDate.prefix(), WAIT).unwrap();
    let url = vm.agent_url().unwrap();
    let acc = access(work.path());
    let mark = vm.mark();
    let t = Instant::now();
    slate_imager::operator::push::push(&url, &v2, &acc, true, Some(WAIT), Progress::new(true))
        .unwrap();
    let push_total = t.elapsed().as_secs_f64();
    vm.wait_for_after(&Kind::Committed.on_version(Slot::B, "2.0.0"), mark, WAIT)
        .unwrap();
    let push_trial = between(
        &vm,
        mark,
        &Kind::Installed.prefix(),
        &Kind::Committed.prefix(),
    );
    drop(vm);

    // 2. The same bundle through the channel.
    let (vm, _work) = twin(v1);
    vm.wait_for(&Kind::ChannelUpToDate.prefix(), WAIT).unwrap();
    let seed = status(&vm).channel.expect("channel status").seed;
    let log_mark = ch.access_log().len();
    let mark = vm.mark();
    let t = Instant::now();
    ch.publish(Some(&v2), None, None);
    let line = vm
        .wait_for_after(&Kind::Committed.on_version(Slot::B, "2.0.0"), mark, WAIT)
        .unwrap();
    let pull_total = t.elapsed().as_secs_f64() - (vm.elapsed() - line.at).as_secs_f64();
    let update = Kind::ChannelUpdate.prefix();
    let installed = Kind::Installed.prefix();
    let fetch_install = between(&vm, mark, &update, &installed);
    let pull_trial = between(&vm, mark, &installed, &Kind::Committed.prefix());
    let (meta, bundle_bytes) = bytes_to(&ch.access_log()[log_mark..], seed);
    drop(vm);

    // 3. A pull whose connection drops half way through the bundle (2.0.0 is published: the
    //    twin takes it at its first check).
    proxy.cut_once_after(v2_len / 2);
    let log_mark = ch.access_log().len();
    let (vm, _work) = twin(v1);
    vm.wait_for(&Kind::Committed.on_version(Slot::B, "2.0.0"), WAIT)
        .unwrap();
    assert_eq!(proxy.cuts(), 1, "the proxy did not cut the download");
    // The channel's status exists once 2.0.0 has checked it.
    let committed = vm.mark();
    vm.wait_for_after(&Kind::ChannelUpToDate.prefix(), committed, WAIT)
        .unwrap();
    let seed3 = status(&vm).channel.expect("channel status").seed;
    let (_, dropped_bytes) = bytes_to(&ch.access_log()[log_mark..], seed3);
    let fetched = vm
        .wait_for(
            &format!("{} version=2.0.0 ", Kind::ChannelFetched.prefix()),
            WAIT,
        )
        .unwrap();
    let number = |key: &str| marker_number(&fetched.text, key);
    let (received, resumes) = (number("bytes="), number("resumes="));
    drop(vm);

    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "\n2.0.0 ({:.1} MiB bundle) to a 1.0.0 device (TCG guest, user-mode network, nginx on loopback; poll every 10 s)",
        mib(v2_len)
    );
    println!("  {:<52} {:>8}", "", "seconds");
    println!("  {:<52} {:>8.1}", "slate push → committed", push_total);
    println!(
        "  {:<52} {:>8.1}",
        "  of which installed → committed (trial boot)", push_trial
    );
    println!(
        "  {:<52} {:>8.1}",
        "slate publish → committed (channel)", pull_total
    );
    println!(
        "  {:<52} {:>8.1}",
        "  of which publish → found (the device's poll)",
        pull_total - fetch_install - pull_trial
    );
    println!(
        "  {:<52} {:>8.1}",
        "  of which found → installed (fetch, verify, write)", fetch_install
    );
    println!(
        "  {:<52} {:>8.1}",
        "  of which installed → committed (trial boot)", pull_trial
    );
    println!(
        "\n  bytes from the server for the pull: {bundle_bytes} of the bundle ({:.4}× its size) + {meta} of TUF metadata and release.json",
        bundle_bytes as f64 / v2_len as f64
    );
    let again = received.saturating_sub(v2_len);
    println!(
        "  a pull cut at 50% ({resumes} Range continuation): the device received {received} bundle bytes, {again} of them twice ({:.3}% of the bundle; goal < 1%)",
        again as f64 * 100.0 / v2_len as f64
    );
    println!(
        "    nginx sent {dropped_bytes} ({} more than the bundle: written into loopback socket buffers before the cut, never delivered)",
        dropped_bytes.saturating_sub(v2_len)
    );
}
