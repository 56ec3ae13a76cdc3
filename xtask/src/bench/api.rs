//! `cargo xtask bench api`: what mutual TLS costs the agent. slated's static size and idle RSS,
//! and `GET /v1/status` latency over mutual TLS beside plain HTTP (an `insecure_http` build of
//! the same spec), each with a new connection per request and over one kept-alive connection.

use crate::{workspace::root, workspace::run};
use anyhow::{bail, Context, Result};
use slate_core::api::Kind;
use slate_qemu::Vm;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const REQUESTS: usize = 200;

/// Median and 90th percentile of `n` status requests, in ms.
fn latency(vm: &Vm, fresh: bool) -> Result<(f64, f64)> {
    let url = format!(
        "{}{}",
        vm.agent_url().context("no agent port")?,
        slate_core::api::STATUS_ROUTE
    );
    // A new connection is a full TLS handshake: without a session cache, nothing is resumed
    // (rustls would otherwise resume the session the previous connection left).
    let tls = vm.tls_config().map(|tls| {
        if fresh {
            let mut c = (*tls).clone();
            c.resumption = rustls::client::Resumption::disabled();
            std::sync::Arc::new(c)
        } else {
            tls
        }
    });
    let build = || {
        let mut b = ureq::AgentBuilder::new().timeout(Duration::from_secs(10));
        if let Some(tls) = tls.clone() {
            b = b.tls_config(tls);
        }
        b.build()
    };
    let kept = build();
    let mut ms = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let agent = if fresh { build() } else { kept.clone() };
        let t = Instant::now();
        let r = agent.get(&url).call().context("status")?;
        let _ = r.into_string()?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], ms[ms.len() * 9 / 10]))
}

fn boot(disk_src: &Path, work: &Path) -> Result<Vm> {
    std::fs::create_dir_all(work)?;
    let disk = work.join("disk.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(disk_src)
        .arg(&disk))?;
    let vm = Vm::start(&crate::dev::dev_vm(&disk, work)?)?;
    vm.wait_for(&Kind::Healthy.prefix(), Duration::from_secs(300))?;
    Ok(vm)
}

pub(super) fn measure() -> Result<()> {
    let spec = root().join("rootfs/image.toml");
    let tls_image = crate::images::ensure_image(&spec, "qemu-x86_64", false)?;
    let scratch = root().join("target/bench-api");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let spec_dir = scratch.join("spec");
    run(Command::new("cp")
        .arg("-a")
        .arg(root().join("rootfs"))
        .arg(&spec_dir))?;
    let text = std::fs::read_to_string(spec_dir.join("image.toml"))?;
    if !text.contains("[agent]\n") {
        bail!("the demo spec has no [agent] table");
    }
    std::fs::write(
        spec_dir.join("image.toml"),
        text.replacen("[agent]\n", "[agent]\ninsecure_http = true\n", 1),
    )?;
    // No trust file: a development image, which may serve plain HTTP.
    run(Command::new(crate::images::release_imager()?)
        .args(["build", "--quiet", "--spec"])
        .arg(spec_dir.join("image.toml"))
        .arg("--out")
        .arg(scratch.join("plain")))?;

    println!("\nslated over mutual TLS and over plain HTTP (GET /v1/status, {REQUESTS} requests each, TCG guest):");
    println!("  {:<34} {:>12} {:>12}", "", "median ms", "p90 ms");
    let mut rss = String::new();
    for (name, dir, tls) in [
        ("mutual TLS", tls_image.clone(), true),
        ("plain HTTP", scratch.join("plain"), false),
    ] {
        let mut vm = boot(&dir.join("disk.img"), &scratch.join(name.replace(' ', "-")))?;
        if !tls {
            vm.set_tls(None);
        }
        for (how, fresh) in [
            ("new connection each (full handshake)", true),
            ("one kept-alive connection", false),
        ] {
            let (median, p90) = latency(&vm, fresh)?;
            println!(
                "  {:<34} {median:>12.2} {p90:>12.2}",
                format!("{name}, {how}")
            );
        }
        vm.wait_prompt("slate# ", 0, Duration::from_secs(60))?;
        let r = vm.shell(
            "grep VmRSS /proc/$(busybox pidof slated)/status",
            Duration::from_secs(30),
        )?;
        rss.push_str(&format!(
            "  slated idle RSS ({name}, after the requests): {}\n",
            r.lines()
                .find(|l| l.contains("VmRSS"))
                .unwrap_or("?")
                .trim()
        ));
        vm.power_cut();
    }
    print!("\n{rss}");
    let slated = root()
        .join("target")
        .join(slate_imager::image::agentbin::DEVICE_TARGET)
        .join(slate_imager::image::agentbin::DEVICE_PROFILE)
        .join("slated");
    let size = std::fs::metadata(&slated)
        .with_context(|| format!("{} (build an image first)", slated.display()))?
        .len();
    println!(
        "  slated static binary: {:.2} MiB (goal ≤ 4 MiB)",
        size as f64 / 1048576.0
    );
    Ok(())
}
