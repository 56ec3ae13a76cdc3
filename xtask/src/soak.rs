//! `cargo xtask soak --cycles N`: A→B→A… updates back to back on one QEMU device, printing
//! each cycle's outcome and time and the agent's and PID 1's RSS after each boot.

use crate::{dev::dev_trust, workspace::root, workspace::run};
use anyhow::{Context, Result};
use slate_core::api::Kind;
use slate_imager::progress::Progress;
use slate_qemu::Vm;
use std::process::Command;
use std::time::{Duration, Instant};

fn rss(vm: &mut Vm) -> String {
    vm.wait_prompt(
        "slate# ",
        vm.mark().saturating_sub(50),
        Duration::from_secs(60),
    )
    .ok();
    let out = vm.shell("grep VmRSS /proc/1/status /proc/$(busybox pidof slated)/status | busybox awk '{print $2}' | busybox xargs", Duration::from_secs(60)).unwrap_or_default();
    out.lines()
        .find(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or("?")
        .trim()
        .to_string()
}

/// Runs the soak.
pub fn soak(cycles: u32) -> Result<()> {
    let slate = crate::images::release_imager()?;
    let trust = dev_trust()?;
    let key = root().join(".cache/keys/dev.pem");
    let scratch = root().join("target/soak");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    for i in 0..=cycles {
        let version = format!("1.{i}.0");
        let out = scratch.join(&version);
        run(Command::new(&slate)
            .args([
                "build",
                "--quiet",
                "--allow-debug",
                "--version",
                &version,
                "--trust",
            ])
            .arg(&trust)
            .arg("--operators")
            .arg(crate::dev::dev_operators()?)
            .arg("--out")
            .arg(&out))?;
        if i > 0 {
            run(Command::new(&slate)
                .arg("bundle")
                .arg("--build")
                .arg(&out)
                .arg("--key")
                .arg(&key)
                .arg("--out")
                .arg(scratch.join(format!("{version}.slate"))))?;
        }
    }
    let disk = scratch.join("disk.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(scratch.join("1.0.0/disk.img"))
        .arg(&disk))?;
    let mut vm = Vm::start(&crate::dev::dev_vm(&disk, &scratch.join("vm"))?)?;
    let access = crate::dev::dev_access(&scratch)?;
    vm.wait_for(&Kind::Healthy.prefix(), Duration::from_secs(300))?;
    let url = vm.agent_url().context("no agent port")?;
    println!("cycle  version  outcome      seconds  slot  RSS kB (PID 1, slated)");
    println!(
        "    0  1.0.0    booted           -      a    {}",
        rss(&mut vm)
    );
    let mut failures = 0;
    for i in 1..=cycles {
        let version = format!("1.{i}.0");
        let t = Instant::now();
        let r = slate_imager::operator::push::push(
            &url,
            &scratch.join(format!("{version}.slate")),
            &access,
            true,
            Some(Duration::from_secs(600)),
            Progress::new(true),
        );
        let secs = t.elapsed().as_secs_f64();
        let (outcome, slot) = match &r {
            Ok(p) => match &p.outcome {
                Some(s) => (
                    s.last_attempt
                        .as_ref()
                        .map_or("?".to_string(), |a| a.outcome.to_string()),
                    s.slot.to_string(),
                ),
                None => ("no outcome".to_string(), "?".to_string()),
            },
            Err(e) => (format!("error: {e:#}"), "?".into()),
        };
        if outcome != slate_core::api::Outcome::Committed.as_str() {
            failures += 1;
        }
        let mark = vm.mark();
        vm.wait_for_after(
            &Kind::Healthy.prefix(),
            mark.saturating_sub(20),
            Duration::from_secs(60),
        )
        .ok();
        println!(
            "{i:>5}  {version:<8} {outcome:<12} {secs:>7.1}  {slot:>4}    {}",
            rss(&mut vm)
        );
    }
    println!(
        "\n{cycles} cycles, {failures} failures; serial log {}",
        vm.log_path().display()
    );
    vm.power_cut();
    if failures > 0 {
        anyhow::bail!("{failures} of {cycles} updates did not commit");
    }
    Ok(())
}
