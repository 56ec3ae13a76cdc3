//! `cargo xtask bench delta` (its second part): figures, not a test (ignored unless asked for
//! by name). The device's install time of the same release three ways, on three twin devices
//! booted from the same 1.0.0 delta image, one after another: the whole bundle; by chunks
//! (the dynamic tier); by a static patch. Each from the `channel fetching` marker (the plan
//! made: the index and the running slot's index read, or the patch fetched) — and, separately,
//! from the `channel update` marker (what planning costs: chunking the running slot the
//! first time) — to `installed`. Bytes from the server as nginx counted them; the agent's
//! peak resident memory (`/metrics`, VmHWM) from its start through the install.

use slate_core::api::Kind;
use slate_core::layout::Slot;
use slate_tests::channel::{delta_channel, Channel};
use slate_tests::*;
use std::time::Duration;

use crate::bench_channel::between;

const WAIT: Duration = Duration::from_secs(900);

#[test]
#[ignore = "benchmark: cargo xtask bench delta"]
fn install_time_by_mode() {
    let ch = delta_channel();
    let v1 = image_variant("1.0.0", Variant::Delta);
    let v1_bundle = bundle(image_variant("1.0.0", Variant::Delta));
    let v2 = bundle(image_variant("2.0.0", Variant::Delta));
    let v2_len = std::fs::metadata(&v2).unwrap().len();
    let _nginx = ch.serve();
    let mut rows = Vec::new();
    for mode in ["full", "delta", "static"] {
        // Published before the twin boots: it takes 2.0.0 at its first check.
        match mode {
            "full" => ch.publish(Some(&v2), None, None),
            "delta" => ch.publish_with_index(&v2),
            _ => ch.publish_with_patch(&v2, &v1_bundle),
        }
        let log_mark = ch.access_log().len();
        let (work, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
        let vm = boot(&disk, work.path(), |_| {}).unwrap();
        let mark = 0;
        let fetching = vm
            .wait_for_after(
                &format!("{} version=2.0.0 ", Kind::ChannelFetching.prefix()),
                mark,
                WAIT,
            )
            .unwrap();
        assert!(
            fetching.text.contains(&format!("mode={mode} ")),
            "{}",
            fetching.text
        );
        vm.wait_for_after(&Kind::Installed.prefix(), mark, WAIT)
            .unwrap();
        // The agent's peak memory from its start through the install (a twin each time).
        let (code, metrics) = vm.http("GET", "/metrics").unwrap();
        assert_eq!(code, 200, "{metrics}");
        let peak: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("slate_agent_peak_resident_bytes "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak resident memory in {metrics}"));
        let install = between(
            &vm,
            mark,
            &Kind::ChannelFetching.prefix(),
            &Kind::Installed.prefix(),
        );
        let planned = between(
            &vm,
            mark,
            &Kind::ChannelUpdate.prefix(),
            &Kind::Installed.prefix(),
        );
        vm.wait_for_after(&Kind::Committed.on_version(Slot::B, "2.0.0"), mark, WAIT)
            .unwrap();
        let after = vm.mark();
        vm.wait_for_after(&Kind::ChannelUpToDate.prefix(), after, WAIT)
            .unwrap();
        let seed = status(&vm).channel.expect("channel status").seed;
        drop(vm);
        let sent: u64 = Channel::requests(&ch.access_log()[log_mark..], seed)
            .unwrap()
            .iter()
            .map(|r| r.bytes)
            .sum();
        rows.push((mode, install, planned, sent, peak));
    }
    let full = rows[0].1;
    println!(
        "\ninstall of 2.0.0 ({v2_len} bytes) on a device running 1.0.0, under this machine's QEMU:"
    );
    println!(
        "  {:<8} {:>12} {:>10} {:>22} {:>14} {:>16}",
        "mode", "install (s)", "of full", "with planning (s)", "bytes sent", "agent peak MiB"
    );
    for (mode, install, planned, sent, peak) in rows {
        println!(
            "  {mode:<8} {install:>12.1} {:>9.2}× {planned:>22.1} {sent:>14} {:>16.1}",
            install / full,
            peak as f64 / 1048576.0
        );
    }
    println!("  (bytes sent: everything nginx sent the device from its boot to its first check after the commit, metadata included)");
}
