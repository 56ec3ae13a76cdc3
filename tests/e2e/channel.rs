//! The update channel end to end: a device pulls from a real nginx serving a TUF repository
//! over HTTPS, takes v2 when its wave reaches it, refuses a release its trust file does not
//! sign and keeps running, and goes back when the operator lowers max_version.

use slate_core::api::Kind;
use slate_core::layout::Slot;
use slate_tests::channel::channel;
use slate_tests::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(600);
const CHECK: Duration = Duration::from_secs(120);

/// Two waves compressed to seconds: 1% at once, the rest between 20 and 30 s after publishing.
const WAVES: &str = "[[wave]]\nstart_after = \"1s\"\nfleet_percentage = 1\n[[wave]]\nstart_after = \"20s\"\nfleet_percentage = 100\nend_after = \"30s\"\n";

#[test]
fn a_device_pulls_in_its_wave_refuses_a_stranger_and_follows_max_version_back() {
    let ch = channel();
    let v1 = image_variant("1.0.0", Variant::Channel);
    let v1_bundle = bundle(v1);
    let v2 = bundle(image_variant("2.0.0", Variant::Channel));
    // 3.0.0 signed only by a key the image does not trust.
    let mut v3 = Parts::read(&bundle(image_variant("3.0.0", Variant::Channel)));
    v3.resign(&[&keys().stranger]);
    let v3_path = v1.dir.with_file_name("3.0.0-stranger.slate");
    v3.write(&v3_path);
    let _nginx = ch.serve();

    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
    let vm = boot(&disk, tmp.path(), |_| {}).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    // An empty repository: nothing to take; the CDN's log shows the device's seed and version.
    vm.wait_for(&Kind::ChannelUpToDate.prefix(), CHECK).unwrap();
    let seed = status(&vm).channel.expect("channel status").seed;
    assert!(
        ch.access_log()
            .contains(&format!("seed={seed}&version=1.0.0")),
        "{}",
        ch.access_log()
    );

    // v1 (to go back to later) and v2 in two waves.
    ch.publish(Some(&v1_bundle), None, None);
    let mark = vm.mark();
    ch.publish(Some(&v2), Some(WAVES), None);
    let (which, line) = vm
        .wait_any_after(
            &[
                &Kind::ChannelWaiting.prefix(),
                &Kind::ChannelUpdate.prefix(),
            ],
            mark,
            CHECK,
        )
        .unwrap();
    // The device and `slate repo status` agree on its wave.
    let repo_view = ch.status_for(seed);
    let wave = if seed < 21 { 1 } else { 2 };
    assert!(
        repo_view.contains(&format!("seed {seed}: wave {wave},")),
        "{repo_view}"
    );
    if which == 0 {
        assert!(
            line.text.contains(&format!("version=2.0.0 wave={wave} ")),
            "{}",
            line.text
        );
        let c = status(&vm).channel.unwrap();
        assert_eq!((c.offered.as_deref(), c.wave), (Some("2.0.0"), Some(wave)));
    }
    vm.wait_for_after(
        &format!(
            "{} version=2.0.0 reason=upgrade",
            Kind::ChannelUpdate.prefix()
        ),
        mark,
        CHECK,
    )
    .unwrap();
    vm.wait_for_after(&Kind::Committed.on_version(Slot::B, "2.0.0"), mark, WAIT)
        .unwrap();
    let s = status(&vm);
    assert_eq!((s.slot, s.version.as_str()), (Slot::B, "2.0.0"));

    // A release the image's trust file does not sign: refused, nothing boots it, the device
    // keeps running 2.0.0 and says why.
    let mark = vm.mark();
    ch.publish(Some(&v3_path), None, None);
    let line = vm
        .wait_for_after(
            &format!("{} kind=install", Kind::ChannelError.prefix()),
            mark,
            CHECK,
        )
        .unwrap();
    assert!(line.text.contains("3.0.0"), "{}", line.text);
    let s = status(&vm);
    assert_eq!((s.slot, s.version.as_str()), (Slot::B, "2.0.0"));
    let c = s.channel.unwrap();
    let err = c.last_error.clone().expect("last_error");
    assert_eq!(err.kind, "install");
    assert!(
        err.message.contains("signature(s) from trusted keys"),
        "{}",
        err.message
    );
    assert!(!vm.saw_after(&Kind::Installed.prefix(), mark));
    assert!(c.bytes_fetched > 0 && c.checks >= 1, "{c:?}");
    let (code, metrics) = vm.http("GET", "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("slate_channel_failures_total{kind=\"install\"} 1"),
        "{metrics}"
    );

    // The operator's lever: max_version 1.0.0 sends the device back, waves or not.
    let mark = vm.mark();
    ch.publish(None, None, Some(Some("1.0.0")));
    vm.wait_for_after(
        &format!(
            "{} version=1.0.0 reason=roll_back",
            Kind::ChannelUpdate.prefix()
        ),
        mark,
        CHECK,
    )
    .unwrap();
    vm.wait_for_after(&Kind::Committed.on_version(Slot::A, "1.0.0"), mark, WAIT)
        .unwrap();
    let s = status(&vm);
    assert_eq!((s.slot, s.version.as_str()), (Slot::A, "1.0.0"));
}
