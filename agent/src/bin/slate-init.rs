//! `slate-init`: PID 1 of a Slate device.
//!
//! Run by the kernel as `/init` of the initramfs it is stage 1; stage 1 execs it again from the
//! verified root as `/usr/lib/slate/slate-init --stage2`. On any fatal error it prints
//! `slate: stage1 failed: …` (or `stage2 failed`) and reboots after a short delay, so boot
//! counting can fall back. It never drops to a shell on its own.
//!
//! `slate-init dhcp IFACE` is the DHCP client, which stage 2 runs as a supervised service.
//! `slate-init tpm status|quote NONCE` prints the TPM's part of the status (`key=value`
//! lines), or a quote (JSON), for the agent: the TPM client lives in this binary (stage 1 needs it), not in slated.

use slate_agent::{init::stage1, init::stage2, marker, sys};
use std::time::Duration;

/// Pause before rebooting after a failure, so the message can be read on a console.
const FAIL_DELAY: Duration = Duration::from_secs(5);

/// `slate-init dhcp IFACE [--hostname NAME] [--resolv-conf FILE]`: the DHCP client, as the
/// service stage 2 supervises (never PID 1).
fn dhcp(args: &[String]) -> ! {
    let usage = "usage: slate-init dhcp IFACE [--hostname NAME] [--resolv-conf FILE]";
    let Some(iface) = args.first().filter(|a| !a.starts_with('-')) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let mut options = slate_agent::dhcp::Options {
        iface: iface.clone(),
        hostname: "slate".into(),
        resolv_conf: slate_agent::dhcp::RESOLV_CONF.into(),
    };
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        match (flag.as_str(), rest.next()) {
            ("--hostname", Some(v)) => options.hostname = v.clone(),
            ("--resolv-conf", Some(v)) => options.resolv_conf = v.into(),
            _ => {
                eprintln!("{usage}");
                std::process::exit(2);
            }
        }
    }
    if let Some(w) = slate_agent::logging::init_for_service() {
        marker::warn(w);
    }
    match slate_agent::dhcp::run(&options) {
        Ok(never) => match never {},
        Err(e) => {
            marker::warn(format!(
                "network {}: the DHCP client stops: {e:#}",
                options.iface
            ));
            std::process::exit(1);
        }
    }
}

/// `slate-init tpm status` (`key=value` lines) and `slate-init tpm quote NONCE_HEX` (JSON) on
/// stdout, or the reason on stderr and exit 1.
fn tpm(args: &[String]) -> ! {
    let printed = match args {
        [what] if what == "status" => {
            Ok(slate_agent::tpm::status_lines(&slate_agent::tpm::status())
                .trim_end()
                .to_string())
        }
        [what, nonce] if what == "quote" => hex::decode(nonce)
            .map_err(|_| "the nonce is not hex".to_string())
            .and_then(|n| slate_agent::tpm::quote(&n).map_err(|e| format!("{e:#}")))
            .and_then(|q| serde_json::to_string(&q).map_err(|e| e.to_string())),
        _ => {
            eprintln!("usage: slate-init tpm status | slate-init tpm quote NONCE_HEX");
            std::process::exit(2);
        }
    };
    match printed {
        Ok(json) => {
            println!("{json}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("dhcp") {
        dhcp(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("tpm") {
        tpm(&args[1..]);
    }
    let stage2 = args.first().map(String::as_str) == Some("--stage2");
    if std::process::id() != 1 {
        eprintln!("slate-init is PID 1 of a Slate device; it does nothing as an ordinary process");
        std::process::exit(2);
    }
    let (which, err) = if stage2 {
        ("stage2", stage2::run())
    } else {
        ("stage1", stage1::run())
    };
    marker::emit(&slate_core::api::Marker::StageFailed {
        stage: which,
        error: format!("{err:#}"),
    });
    std::thread::sleep(FAIL_DELAY);
    let e = sys::halt(sys::Halt::Reboot);
    marker::warn(format!("{which}: {e:#}"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
