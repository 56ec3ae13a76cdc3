//! `cargo xtask bench install`: an update installed end to end beside dd and sha256sum.

use crate::timeline::line_time;
use crate::{workspace::root, workspace::run};
use anyhow::{bail, Context, Result};
use slate_core::api::Kind;
use slate_core::layout::Slot;
use std::process::Command;

/// `cargo xtask bench install`: a 256 MiB root image installed end to end (upload to
/// ready-to-reboot) beside `dd` and `sha256sum` of 256 MiB on the same virtual disk, in the same
/// guest; then the time from a failed health check to the old slot healthy again.
pub(super) fn measure() -> Result<()> {
    use slate_imager::progress::Progress;
    use slate_qemu::Vm;
    use std::time::{Duration, Instant};
    let slate = crate::images::release_imager()?;
    let trust = crate::dev::dev_trust()?;
    let key = root().join(".cache/keys/dev.pem");
    let scratch = root().join("target/bench-install");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("boards"))?;
    // The demo spec plus 256 MiB that does not compress, on a board with room for it.
    let spec_dir = scratch.join("spec");
    run(Command::new("cp")
        .arg("-a")
        .arg(root().join("rootfs"))
        .arg(&spec_dir))?;
    run(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=256", "status=none"])
        .arg(format!(
            "of={}",
            spec_dir.join("overlay/srv/payload.bin").display()
        )))?;
    let board = std::fs::read_to_string(root().join("boards/qemu-x86_64.toml"))?
        .replace("slot_mib = 256", "slot_mib = 320");
    std::fs::write(scratch.join("boards/qemu-x86_64.toml"), board)?;
    let failing = std::fs::read_to_string(spec_dir.join("image.toml"))?.replace("deadline_s = 60", "deadline_s = 20")
        + "\n[[health.check]]\nname = \"always-fails\"\nkind = \"exec\"\ncommand = [\"/bin/busybox\", \"false\"]\n";
    std::fs::write(spec_dir.join("failing.toml"), failing)?;
    for (spec, version, out) in [
        ("image.toml", "1.0.0", "v1"),
        ("image.toml", "1.1.0", "v2"),
        ("failing.toml", "1.2.0", "v3"),
    ] {
        run(Command::new(&slate)
            .args(["build", "--quiet", "--force", "--version", version])
            .arg("--spec")
            .arg(spec_dir.join(spec))
            .arg("--boards")
            .arg(scratch.join("boards"))
            .arg("--trust")
            .arg(&trust)
            .arg("--operators")
            .arg(crate::dev::dev_operators()?)
            .arg("--allow-debug")
            .arg("--out")
            .arg(scratch.join(out)))?;
        run(Command::new(&slate)
            .arg("bundle")
            .arg("--build")
            .arg(scratch.join(out))
            .arg("--key")
            .arg(&key)
            .arg("--out")
            .arg(scratch.join(format!("{out}.slate"))))?;
    }
    let rootfs_bytes = std::fs::metadata(scratch.join("v2/rootfs.img"))?.len();
    let disk = scratch.join("disk.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(scratch.join("v1/disk.img"))
        .arg(&disk))?;
    let mut vm = Vm::start(&crate::dev::dev_vm(&disk, &scratch.join("vm"))?)?;
    let access = crate::dev::dev_access(&scratch)?;
    vm.wait_for(&Kind::Healthy.prefix(), Duration::from_secs(300))?;
    vm.wait_prompt("slate# ", 0, Duration::from_secs(60))?;
    let url = vm.agent_url().context("no agent port")?;

    // The standard tools on the same disk, same guest: dd slot a → slot b, sha256sum of slot a.
    let mib = rootfs_bytes / 1048576;
    let t = Instant::now();
    let out = vm.shell(
        &format!("dd if=/dev/vda2 of=/dev/vda3 bs=1M count={mib} conv=fsync 2>/dev/null"),
        Duration::from_secs(900),
    )?;
    let dd = t.elapsed().as_secs_f64();
    if !out.ends_with("exit=0") {
        bail!("dd in the guest failed: {out}");
    }
    // From the disk, not from the pages dd just wrote (slate reads its slot back cold too).
    let out = vm.shell(
        "sync; echo 3 > /proc/sys/vm/drop_caches",
        Duration::from_secs(60),
    )?;
    if !out.ends_with("exit=0") {
        bail!("dropping the guest's page cache failed: {out}");
    }
    let t = Instant::now();
    let out = vm.shell(
        &format!("head -c {} /dev/vda3 | sha256sum", mib * 1048576),
        Duration::from_secs(900),
    )?;
    let sha = t.elapsed().as_secs_f64();
    // The pipeline's status is sha256sum's: its output must be a digest of what head read.
    let digest = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("");
    if !out.ends_with("exit=0")
        || digest.len() != 64
        || !digest.bytes().all(|b| b.is_ascii_hexdigit())
    {
        bail!("sha256sum in the guest failed: {out}");
    }
    // slate: upload → verified → entry written (no reboot).
    let t = Instant::now();
    let p = slate_imager::operator::push::push(
        &url,
        &scratch.join("v2.slate"),
        &access,
        false,
        None,
        Progress::new(true),
    )?;
    let ours = t.elapsed().as_secs_f64();
    let slate_core::api::UploadAnswer::Installed {
        seconds: device_seconds,
        ..
    } = p.answer
    else {
        anyhow::bail!("the device did not install the bundle: {:?}", p.answer);
    };
    println!(
        "\ninstall of a {:.0} MiB root image (TCG guest, virtio-blk, user-mode network)",
        rootfs_bytes as f64 / 1048576.0
    );
    println!(
        "  {:<44} {:>8.1} s {:>9.1} MiB/s",
        "dd slot a → slot b, conv=fsync (in the guest)",
        dd,
        mib as f64 / dd
    );
    println!(
        "  {:<44} {:>8.1} s {:>9.1} MiB/s",
        "sha256sum of the same bytes (in the guest)",
        sha,
        mib as f64 / sha
    );
    println!(
        "  {:<44} {:>8.1} s {:>9.1} MiB/s",
        "slate push → installed (upload, write, read back)",
        ours,
        rootfs_bytes as f64 / 1048576.0 / ours
    );
    println!(
        "  {:<44} {:>8.1} s",
        "  of which the device's install", device_seconds
    );
    println!(
        "  ratio to the slower of dd and sha256sum: {:.2}× (goal ≥ 0.9×)",
        dd.max(sha) / ours
    );

    // Failed health check → old slot healthy again: reboot into v2 (trial, commits), then v3 fails.
    let mark = vm.mark();
    vm.http("POST", "/v1/reboot")?;
    vm.wait_for_after(&Kind::Committed.on(Slot::B), mark, Duration::from_secs(300))?;
    let mark = vm.mark();
    slate_imager::operator::push::push(
        &url,
        &scratch.join("v3.slate"),
        &access,
        true,
        None,
        Progress::new(true),
    )?;
    vm.wait_for_after(
        &Kind::Healthy.on(Slot::B),
        vm.wait_for_after(&Kind::Rollback.prefix(), mark, Duration::from_secs(300))
            .map(|_| mark)?,
        Duration::from_secs(300),
    )?;
    let failed_at = line_time(&vm, mark, &Kind::Unhealthy.prefix())
        .context("no `slate: unhealthy` line was seen; nothing to measure")?;
    let last = |needle: &str| {
        vm.lines()
            .iter()
            .skip(mark)
            .rev()
            .find(|l| l.text.contains(needle))
            .map(|l| l.at.as_secs_f64())
            .with_context(|| format!("no {needle:?} line was seen; nothing to measure"))
    };
    let healthy_at = last(&Kind::Healthy.on(Slot::B))?;
    let kernel = last(&Kind::Stage2Up.prefix())?;
    println!("\nfailed health check → old slot healthy: {:.1} s (of which the fallback boot from QEMU reset to stage 2 ≈ {:.1} s; goal: one boot + ≤ 5 s)", healthy_at - failed_at, kernel - failed_at);
    vm.power_cut();
    Ok(())
}
