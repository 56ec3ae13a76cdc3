//! The update policy on a pull (`cargo xtask e2e --full`; CI keeps the push side in the PC
//! and hostile scenarios): a device whose maintenance window is days away pulls a release
//! through its bandwidth cap (measured at nginx), stages it, says when it applies it, applies
//! it by itself once its clock reaches the window, and commits.

use slate_core::api::Kind;
use slate_core::layout::Slot;
use slate_tests::channel::{policy_channel, Channel};
use slate_tests::*;
use std::time::Duration;

const SHELL: Duration = Duration::from_secs(30);

#[test]
#[ignore = "full e2e (cargo xtask e2e --full): a minute's capped download and a wait for the window"]
fn a_pull_is_capped_staged_outside_the_window_and_applied_when_it_opens() {
    let ch = policy_channel();
    let v1 = image_variant("1.0.0", Variant::CappedWindow);
    let v2 = bundle(image_variant("2.0.0", Variant::CappedWindow));
    let v2_len = std::fs::metadata(&v2).unwrap().len();
    let _nginx = ch.serve_measured();
    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
    let mut vm = boot(&disk, tmp.path(), |_| {}).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    vm.wait_for(&Kind::ChannelUpToDate.prefix(), Duration::from_secs(120))
        .unwrap();
    let w = status(&vm)
        .window
        .expect("an image with windows shows them");
    assert!(!w.open, "{w:?}");

    // Published: the device fetches it at once (a window is for applying, not fetching),
    // through its cap, and stages it for the window.
    ch.publish(Some(&v2), None, None);
    let staged = vm
        .wait_for(
            &format!("{} slot=b version=2.0.0", Kind::Staged.prefix()),
            Duration::from_secs(600),
        )
        .unwrap();
    assert!(
        staged.text.ends_with(&format!("apply_at={}", w.next_open)),
        "{}",
        staged.text
    );
    let s = status(&vm);
    let st = s
        .staged
        .clone()
        .expect("the status shows the staged update");
    assert_eq!(
        (st.slot, st.version.as_str(), st.apply_at),
        (Slot::B, "2.0.0", Some(w.next_open))
    );
    assert_eq!(s.slot, Slot::A, "{s:?}");
    // The cap, measured at the server: the bundle's average rate over its download.
    let seed = s.channel.expect("channel status").seed;
    let rates = Channel::bundle_rates(&ch.access_log(), seed).unwrap();
    let cap = f64::from(Variant::CAP_KIB_S) * 1024.0;
    eprintln!(
        "policy: bundle of {v2_len} bytes sent at {:?} B/s for a cap of {cap} B/s",
        rates
    );
    let sent: u64 = rates.iter().map(|(b, _)| b).sum();
    assert_eq!(sent, v2_len, "{rates:?}");
    for (bytes, rate) in &rates {
        assert!(
            (rate / cap - 1.0).abs() <= 0.05,
            "{bytes} bytes at {rate:.0} B/s, not within 5% of {cap} B/s"
        );
    }
    // Checks of the channel after staging (every 10 s) fetch nothing again.
    let checks = |vm: &slate_qemu::Vm| status(vm).channel.expect("channel status").checks;
    let before = checks(&vm);
    std::thread::sleep(Duration::from_secs(25));
    assert!(checks(&vm) > before, "no check of the channel in 25 s");
    assert_eq!(
        Channel::bundle_bytes_sent(&ch.access_log(), seed)
            .unwrap()
            .0,
        rates.len()
    );

    // The guest's clock reaches the window: the device applies it itself and commits.
    vm.wait_prompt("slate# ", 0, SHELL).unwrap();
    let mark = vm.mark();
    let set = vm
        .shell(&format!("date -u -s @{}", w.next_open - 5), SHELL)
        .unwrap();
    assert!(set.ends_with("exit=0"), "{set}");
    vm.wait_for_after(
        &Kind::Applying.on_version(Slot::B, "2.0.0"),
        mark,
        Duration::from_secs(120),
    )
    .unwrap();
    vm.wait_for_after(
        &Kind::Committed.on_version(Slot::B, "2.0.0"),
        mark,
        BOOT_TIMEOUT,
    )
    .unwrap();
    vm.shutdown(Duration::from_secs(60)).unwrap();
}
