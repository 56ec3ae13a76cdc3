//! The update channel end to end: two devices pull from a real nginx serving a TUF
//! repository over HTTPS. The main device first refuses an expired and a replayed repository;
//! both then take v2 in wave order (the main one through a power cut in the middle of its
//! download, after which it fetches only what its slot does not already hold); a release that
//! fails its health checks is stopped after wave 1 (the main device falls back by itself, the
//! operator lowers max_version, the other device never takes it); the main device then refuses
//! a release its trust file does not sign and a corrupt copy of a signed one, keeps running
//! through each, and goes back when the operator lowers max_version; the operators' CRL
//! published in the channel reaches it. The other device's RTC says 2020 (a flat battery).

use slate_core::api::Kind;
use slate_core::layout::Slot;
use slate_qemu::{Line, Vm};
use slate_tests::apps::write_data_file;
use slate_tests::channel::channel;
use slate_tests::channel::faults::Fault;
use slate_tests::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(600);
const CHECK: Duration = Duration::from_secs(120);

/// Two waves compressed to seconds: 1% (seeds 0–20) at once, the rest opening one seed after
/// another between 20 s and 80 s after publishing.
const WAVES: &str = "[[wave]]\nstart_after = \"1s\"\nfleet_percentage = 1\n[[wave]]\nstart_after = \"20s\"\nfleet_percentage = 100\nend_after = \"80s\"\n";

/// A release that will be stopped: wave 1 at once, wave 2 not before 150 s (the main
/// device's failed trial and fallback take about 70 s under TCG).
const LATE_WAVES: &str = "[[wave]]\nstart_after = \"1s\"\nfleet_percentage = 1\n[[wave]]\nstart_after = \"150s\"\nfleet_percentage = 100\nend_after = \"160s\"\n";

/// The seeds planted on the devices' data partitions before their first boot: the main device
/// in wave 1, another late in wave 2 (ready ~73 s after publishing), far enough apart that a
/// 10 s poll cannot swap them. (The harness runs two machines at a time: a third would wait
/// for one of these to stop.)
const MAIN_SEED: u32 = 5;
const FLEET_SEEDS: [u32; 1] = [1800];

/// A device of the fleet beside the main one.
struct Device {
    vm: Vm,
    seed: u32,
    _work: tempfile::TempDir,
}

/// Copies `image`'s disk, plants `seed` in its /data/slate/seed, and boots it (with its RTC
/// at `rtc_base`, if given).
fn boot_seeded(
    image: &Image,
    seed: u32,
    rtc_base: Option<&str>,
) -> (Vm, std::path::PathBuf, tempfile::TempDir) {
    let (work, disk) = copy_disk(&image.dir.join("disk.img")).unwrap();
    write_data_file(&disk, "slate/seed", format!("{seed}\n").as_bytes());
    let vm = boot(&disk, work.path(), |c| {
        c.rtc_base = rtc_base.map(str::to_string)
    })
    .unwrap();
    (vm, disk, work)
}

/// The fleet's other device has a flat RTC battery: its clock starts in 2020 at every boot.
const FLAT_BATTERY: &str = "2020-01-01";

/// Waits after `mark` for `slate: channel error kind=<kind>`.
fn channel_error(vm: &Vm, kind: &str, mark: usize, timeout: Duration) -> Line {
    vm.wait_for_after(
        &format!("{} kind={kind}", Kind::ChannelError.prefix()),
        mark,
        timeout,
    )
    .unwrap()
}

/// When the host saw `line` (lines carry the time since their machine started).
fn seen_at(vm: &Vm, line: &Line) -> Instant {
    Instant::now() - vm.elapsed() + line.at
}

/// The wave `slate repo status` gives `seed`, checked against what the device says.
fn agree_on_wave(vm: &Vm, seed: u32) -> usize {
    let repo_view = channel().status_for(seed);
    let wave = if seed <= 20 { 1 } else { 2 };
    assert!(
        repo_view.contains(&format!("seed {seed}: wave {wave},")),
        "{repo_view}"
    );
    let c = status(vm).channel.expect("channel status");
    assert_eq!((c.seed, c.wave), (seed, Some(wave)), "{c:?}");
    wave
}

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
    let v2_len = std::fs::metadata(&v2).unwrap().len();
    // Slow enough that the first download of v2 can be cut in the middle.
    let nginx = ch.serve_at(Some("256k"));

    let (mut vm, disk, tmp) = boot_seeded(v1, MAIN_SEED, None);
    let fleet: Vec<Device> = FLEET_SEEDS
        .iter()
        .map(|&seed| {
            let (vm, _, work) = boot_seeded(v1, seed, Some(FLAT_BATTERY));
            Device {
                vm,
                seed,
                _work: work,
            }
        })
        .collect();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    // An empty repository: nothing to take; the CDN's log shows the device's seed and version.
    vm.wait_for(&Kind::ChannelUpToDate.prefix(), CHECK).unwrap();
    let seed = status(&vm).channel.expect("channel status").seed;
    assert_eq!(seed, MAIN_SEED);
    for d in &fleet {
        d.vm.wait_for(&Kind::ChannelUpToDate.prefix(), BOOT_TIMEOUT + CHECK)
            .unwrap();
    }
    assert!(
        ch.access_log()
            .contains(&format!("seed={seed}&version=1.0.0")),
        "{}",
        ch.access_log()
    );

    // Freshness: an expired timestamp, then a replayed older one, are refused; the device
    // keeps running and says why.
    let fresh = ch.timestamp();
    let mark = vm.mark();
    ch.refresh(slate_imager::operator::bundle::now() - 2 * 86_400);
    channel_error(&vm, "expired", mark, CHECK);
    let mark = vm.mark();
    ch.refresh(slate_imager::operator::bundle::now());
    vm.wait_for_after(&Kind::ChannelUpToDate.prefix(), mark, CHECK)
        .unwrap();
    let mark = vm.mark();
    ch.set_timestamp(&fresh);
    let line = channel_error(&vm, "replayed", mark, CHECK);
    assert!(line.text.contains("timestamp"), "{}", line.text);
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::A, "1.0.0"));
    assert_eq!(
        s.channel.and_then(|c| c.last_error).map(|e| e.kind),
        Some(slate_core::api::ChannelFailure::Replayed)
    );
    ch.refresh(slate_imager::operator::bundle::now());

    // v1 (to go back to later) and v2 in two waves.
    ch.publish(Some(&v1_bundle), None, None);
    let mark = vm.mark();
    let fleet_marks: Vec<usize> = fleet.iter().map(|d| d.vm.mark()).collect();
    ch.publish(Some(&v2), Some(WAVES), None);
    let update_v2 = format!(
        "{} version=2.0.0 reason=upgrade",
        Kind::ChannelUpdate.prefix()
    );
    let line = vm.wait_for_after(&update_v2, mark, CHECK).unwrap();
    let main_took = seen_at(&vm, &line);
    assert_eq!(agree_on_wave(&vm, MAIN_SEED), 1);
    // The others wait for wave 2, and agree with `slate repo status` on it.
    for (d, &mark) in fleet.iter().zip(&fleet_marks) {
        let waiting =
            d.vm.wait_for_after(&Kind::ChannelWaiting.prefix(), mark, CHECK)
                .unwrap();
        assert!(
            waiting.text.contains("version=2.0.0 wave=2 "),
            "{}",
            waiting.text
        );
        assert_eq!(agree_on_wave(&d.vm, d.seed), 2);
    }
    // A power cut once a MiB of the root image is durable in slot b; the cold boot comes
    // back on 1.0.0 and pulls again, taking that prefix from the slot, not from the server.
    let durable = wait_durable(&mut vm, 1 << 20);
    vm.power_cut();
    // Its machine slot is free for the cold boot only once it is dropped.
    drop(vm);
    drop(nginx);
    let log_before = ch.access_log().len();
    let nginx = ch.serve();
    let vm = boot(&disk, tmp.path(), |_| {}).unwrap();
    let mark = 0;
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let line = vm
        .wait_for(
            &format!("{} version=2.0.0 ", Kind::ChannelResumed.prefix()),
            CHECK,
        )
        .unwrap();
    let from_slot: u64 = line
        .text
        .rsplit("from_slot=")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}", line.text));
    assert!(from_slot >= durable, "{from_slot} < {durable}");
    vm.wait_for_after(&Kind::Committed.on_version(Slot::B, "2.0.0"), mark, WAIT)
        .unwrap();
    let (requests, sent) =
        slate_tests::channel::Channel::bundle_bytes_sent(&ch.access_log()[log_before..], MAIN_SEED)
            .unwrap();
    eprintln!(
        "after the cut: {sent} of {v2_len} bundle bytes fetched in {requests} request(s), {from_slot} taken from the slot"
    );
    assert!(
        requests >= 1,
        "no bundle request of the device after the restart in nginx's access log"
    );
    // What came over the network and what came from the slot make the bundle once: not
    // more (the prefix fetched again), and not less (a log that missed requests).
    assert!(
        (sent + from_slot).abs_diff(v2_len) <= 64 << 10,
        "the resumed download fetched {sent} bytes of {v2_len} with {from_slot} in the slot"
    );
    // The other took v2 when its wave came, after the main device, and commits.
    let mut took = vec![(MAIN_SEED, main_took)];
    for (d, &mark) in fleet.iter().zip(&fleet_marks) {
        let line = d.vm.wait_for_after(&update_v2, mark, WAIT).unwrap();
        took.push((d.seed, seen_at(&d.vm, &line)));
        d.vm.wait_for_after(&Kind::Committed.on_version(Slot::B, "2.0.0"), mark, WAIT)
            .unwrap();
        // Its RTC said 2020: the operator (a certificate issued today) and the channel were
        // taken all the same; the signed times raised the clock, the time kept on /data
        // raised it again after the reboot into 2.0.0, and the device said so.
        let raised = |source: &str| {
            d.vm.lines()
                .iter()
                .any(|l| l.text.contains("clock: it said") && l.text.contains(source))
        };
        assert!(
            raised("a release published in the channel") && raised("the time kept on /data"),
            "{}",
            d.vm.tail(40)
        );
    }
    let order: Vec<u32> = {
        let mut t = took.clone();
        t.sort_by_key(|(_, at)| *at);
        t.iter().map(|(seed, _)| *seed).collect()
    };
    assert_eq!(order, vec![MAIN_SEED, FLEET_SEEDS[0]], "{took:?}");

    // The stop lever: a release that fails its health checks reaches wave 1 only. The main
    // device takes 2.1.0, fails and falls back to 2.0.0 by itself; the operator supersedes the
    // release (max_version 2.0.0) before wave 2 opens, and the other device, which was
    // waiting for wave 2, never takes it.
    let failing = bundle(image_variant("2.1.0", Variant::FailingHealth));
    let mark = vm.mark();
    let fleet_mark = fleet[0].vm.mark();
    ch.publish(Some(&failing), Some(LATE_WAVES), None);
    fleet[0]
        .vm
        .wait_for_after(
            &format!("{} version=2.1.0 wave=2 ", Kind::ChannelWaiting.prefix()),
            fleet_mark,
            CHECK,
        )
        .unwrap();
    vm.wait_for_after(&Kind::Rollback.on_version(Slot::A, "2.1.0"), mark, WAIT)
        .unwrap();
    vm.wait_for_after(&Kind::Healthy.on_version(Slot::B, "2.0.0"), mark, WAIT)
        .unwrap();
    let s = status(&vm);
    assert!(s.failed.iter().any(|f| f.version == "2.1.0"), "{s:?}");
    let lever = fleet[0].vm.mark();
    ch.publish(None, None, Some(Some("2.0.0")));
    fleet[0]
        .vm
        .wait_for_after(
            &format!("{} version=2.0.0", Kind::ChannelUpToDate.prefix()),
            lever,
            CHECK,
        )
        .unwrap();
    assert!(
        !fleet[0].vm.saw_after(
            &format!("{} version=2.1.0", Kind::ChannelUpdate.prefix()),
            fleet_mark
        ),
        "a wave-2 device took the stopped release"
    );
    drop(fleet);
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "2.0.0"));

    // A release the image's trust file does not sign: refused, nothing boots it, the device
    // keeps running 2.0.0 and says why.
    let mark = vm.mark();
    // (Lifting the max_version lever, or 3.0.0 would stay above it.)
    ch.publish(Some(&v3_path), None, Some(None));
    let line = channel_error(&vm, "install", mark, CHECK);
    assert!(line.text.contains("3.0.0"), "{}", line.text);
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "2.0.0"));
    let c = s.channel.unwrap();
    let err = c.last_error.clone().expect("last_error");
    assert_eq!(err.kind, slate_core::api::ChannelFailure::Install);
    assert!(
        err.message.contains("signature(s) from trusted keys"),
        "{}",
        err.message
    );
    assert!(!vm.saw_after(&Kind::Installed.prefix(), mark));
    assert!(c.downloads.bytes_fetched > 0 && c.checks >= 1, "{c:?}");
    let (code, metrics) = vm.http("GET", "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("slate_channel_failures_total{kind=\"install\"} 1"),
        "{metrics}"
    );

    // The operator's lever: max_version 1.0.0 sends the device back, waves or not. The
    // server's first copy of 1.0.0 is corrupt (one byte): refused as not the signed target,
    // and taken once the server has the right bytes again.
    let v1_target = ch.target_file("1.0.0");
    let good = std::fs::read(&v1_target).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x01;
    std::fs::write(&v1_target, &bad).unwrap();
    let mark = vm.mark();
    ch.publish(None, None, Some(Some("1.0.0")));
    let line = channel_error(&vm, "download", mark, WAIT);
    assert!(
        line.text.contains("does not match the signed target"),
        "{}",
        line.text
    );
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "2.0.0"));
    std::fs::write(&v1_target, &good).unwrap();

    // The right bytes again, from a flaky origin behind nginx. The first pull meets two 5xx
    // answers, a stall, a drop, and a file that changed size under its Range continuation:
    // a clear error and nothing installed. The next pull meets a drop and a server that
    // then ignores Range (a clean restart of the transfer), and commits.
    drop(nginx);
    let (_nginx, origin) = ch.serve_with_faults();
    origin.script(&[
        Fault::Status(503),
        Fault::Status(502),
        Fault::StallAt(0.2, Duration::from_secs(40)),
        Fault::DropAt(0.4),
        Fault::ChangedSize,
        Fault::DropAt(0.5),
        Fault::IgnoreRange,
    ]);
    let mark = vm.mark();
    let line = channel_error(&vm, "download", mark, WAIT);
    assert!(line.text.contains("refusing a mixture"), "{}", line.text);
    assert!(!vm.saw_after(&Kind::Installed.prefix(), mark));
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "2.0.0"));
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
    let fetched = vm
        .wait_for_after(&Kind::ChannelFetched.prefix(), mark, CHECK)
        .unwrap();
    assert!(fetched.text.contains("version=1.0.0 "), "{}", fetched.text);
    // Half the bundle before the drop, then all of it again from the server that ignored
    // Range: more bytes than the bundle, and no continuation.
    let received = marker_number(&fetched.text, "bytes=");
    let len = good.len() as u64;
    assert!(
        received > len && received <= len + len / 2 + (1 << 20),
        "{}",
        fetched.text
    );
    assert!(fetched.text.contains(" resumes=0 "), "{}", fetched.text);
    let served: Vec<(Option<bool>, u16)> = origin
        .served()
        .iter()
        .map(|r| (r.range_from.map(|from| from > 0), r.status))
        .collect();
    assert_eq!(
        served,
        vec![
            (None, 503),
            (None, 502),
            (None, 200),
            (Some(true), 206),
            (Some(true), 206),
            (None, 200),
            (Some(true), 200),
        ],
        "{:?}",
        origin.served()
    );
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::A, "1.0.0"));

    // The operators' CRL through the channel (`slate publish --crl`): the device takes it at
    // its next check and refuses the lost laptop's certificate from then on.
    let port = vm.host_port().unwrap();
    let ops = operators();
    let (code, why) = raw_request(
        port,
        Some(&ops.lost),
        "GET",
        slate_core::api::STATUS_ROUTE,
        b"",
    );
    assert_eq!(code, 200, "{why}");
    let mark = vm.mark();
    ch.publish_crl(&ops.crl);
    vm.wait_for_after(&Kind::OperatorsCrl.prefix(), mark, CHECK)
        .unwrap();
    let (code, why) = raw_request(
        port,
        Some(&ops.lost),
        "GET",
        slate_core::api::STATUS_ROUTE,
        b"",
    );
    assert_eq!(
        code, 0,
        "a revoked operator was answered: HTTP {code} {why}"
    );
    let (code, why) = raw_request(
        port,
        Some(&ops.identity),
        "GET",
        slate_core::api::STATUS_ROUTE,
        b"",
    );
    assert_eq!(code, 200, "{why}");
}

/// Polls the device's download record until `at_least` bytes of the root image are durable;
/// returns how many are.
fn wait_durable(vm: &mut slate_qemu::Vm, at_least: u64) -> u64 {
    let started = std::time::Instant::now();
    vm.wait_prompt("slate# ", 0, CHECK).unwrap();
    loop {
        let out = vm
            .shell("cat /data/slate/download.json 2>/dev/null; echo", CHECK)
            .unwrap();
        let durable = out
            .split("\"durable\":")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if durable >= at_least {
            return durable;
        }
        assert!(
            started.elapsed() < CHECK,
            "no {at_least} durable bytes in the download record within {CHECK:?}: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
