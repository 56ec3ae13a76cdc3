//! Stage 2 of `slate-init`: PID 1 in the verified root.
//!
//! Mounts the writable places (/run, /tmp, /var on /data), sets the hostname and network,
//! keeps the watchdog fed, supervises the services from `/etc/slate/services/*.toml` plus
//! `slated` (and a debug shell when the image asks), reaps every zombie, and on a signal stops
//! everything, syncs, unmounts /data and reboots or powers off.
//!
//! Signals (as busybox init): SIGTERM or SIGINT → reboot, SIGUSR2 → power off.

use crate::init::supervisor::{self, Exit};
use crate::{attempts, init::stage1, init::watchdog, lines, logging, marker, sys, uptime_ms};
use anyhow::{Context, Result};
use rustix::process::{Pid, Signal, WaitOptions};
use slate_core::api::Marker;
use slate_core::config::{paths, InitConfig, Network, Service};
use std::io::{BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where service output is logged besides the console.
pub use crate::logging::LOG_DIR;
/// Bytes each service's log may take on /data (from the image's `[log] max_mib`).
static LOG_CAP: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
const STOP_GRACE: Duration = Duration::from_secs(5);
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// One supervised process.
struct Supervised {
    service: Service,
    pid: Option<Pid>,
    started: Instant,
    quick_restarts: u32,
    restarts: u32,
    next_start: Option<Instant>,
    /// Console programs (the debug shell) get the console as stdin/stdout and a session.
    console: bool,
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    toml::from_str(&text).with_context(|| format!("parsing {path}"))
}

fn setup_mounts() -> Result<()> {
    use sys::Flags;
    sys::mount(
        "tmpfs",
        "/run",
        "tmpfs",
        Flags::NOSUID | Flags::NODEV,
        "mode=0755",
    )?;
    sys::mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        Flags::NOSUID | Flags::NODEV,
        "mode=1777",
    )?;
    sys::mount(
        "devpts",
        "/dev/pts",
        "devpts",
        Flags::NOSUID | Flags::NOEXEC,
        "gid=5,mode=620,ptmxmode=000",
    )?;
    std::fs::create_dir_all("/data/var").context("creating /data/var")?;
    // /var is every service's (PID 1's umask is 077).
    std::fs::set_permissions(
        "/data/var",
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .context("making /data/var traversable")?;
    sys::mount_bind("/data/var", "/var")?;
    std::fs::create_dir_all(LOG_DIR).ok();
    // What PID 1 and the agent keep under /run/slate (the install lock, the services' states,
    // the ESP's mount point) is root's alone.
    crate::durable::private_dir(std::path::Path::new("/run/slate"))?;
    std::fs::create_dir_all(crate::services::STATE_DIR)?;
    Ok(())
}

/// Brings the network up: a static address here, or the DHCP client as a supervised service
/// (returned, to be started with the others: its parser of what anyone on the link sends
/// never runs in PID 1).
fn setup_network(hostname: &str) -> Option<Service> {
    let _ = sys::link_up("lo");
    let net: Network = read_toml(&format!("/{}", paths::NETWORK)).unwrap_or_default();
    let result = (|| -> Result<Option<Service>> {
        sys::link_up(&net.interface)?;
        if net.dhcp {
            return Ok(Some(Service::root(
                "slate-dhcp",
                vec![
                    stage1::STAGE2.into(),
                    "dhcp".into(),
                    net.interface.clone(),
                    "--hostname".into(),
                    hostname.into(),
                ],
            )));
        }
        if let Some((ip, prefix)) = net.ipv4().map_err(anyhow::Error::msg)? {
            sys::set_ipv4(&net.interface, ip, prefix)?;
        }
        Ok(None)
    })();
    result.unwrap_or_else(|e| {
        marker::warn(format!("network {}: {e:#}", net.interface));
        None
    })
}

fn load_services(init: &InitConfig, builtin: Option<Service>) -> Vec<Supervised> {
    let mut list: Vec<Service> = builtin.into_iter().collect();
    let dir = format!("/{}", paths::SERVICES_DIR);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        match read_toml::<Service>(&f.to_string_lossy()) {
            Ok(service) if service.exec.is_empty() => marker::warn(format!(
                "service {}: `exec` is empty; it is not started",
                f.display()
            )),
            Ok(service)
                if service
                    .capabilities
                    .iter()
                    .any(|c| slate_core::config::capability_bit(c).is_none()) =>
            {
                marker::warn(format!(
                    "service {}: unknown capability in {:?}; it is not started",
                    f.display(),
                    service.capabilities
                ))
            }
            Ok(service) => list.push(service),
            Err(e) => marker::warn(format!("service {}: {e:#}", f.display())),
        }
    }
    list.push(Service::root("slated", vec!["/usr/bin/slated".into()]));
    let mut out: Vec<Supervised> = list
        .into_iter()
        .map(|service| Supervised {
            service,
            pid: None,
            started: Instant::now(),
            quick_restarts: 0,
            restarts: 0,
            next_start: Some(Instant::now()),
            console: false,
        })
        .collect();
    if init.debug_shell && std::path::Path::new("/bin/sh").exists() {
        out.push(Supervised {
            service: Service::root("debug-shell", vec!["/bin/sh".into(), "-l".into()]),
            pid: None,
            started: Instant::now(),
            quick_restarts: 0,
            restarts: 0,
            next_start: Some(Instant::now()),
            console: true,
        });
    }
    out
}

/// Copies a service's output lines to the console (prefixed) and its log file, holding at
/// most [`lines::MAX_LINE`] bytes of a line at a time.
fn tee(name: String, pipe: impl std::io::Read + Send + 'static) {
    let thread = format!("tee-{name}");
    let spawned = std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            let cap = LOG_CAP
                .get()
                .copied()
                .unwrap_or_else(|| slate_core::config::LogConfig::default().max_bytes());
            let mut log = crate::logfile::RotatingLog::open(
                std::path::Path::new(&format!("{LOG_DIR}/{name}.log")),
                cap,
            )
            .ok();
            let mut pipe = BufReader::new(pipe);
            let mut raw = Vec::new();
            while let Ok(true) = lines::next_line(&mut pipe, &mut raw, lines::MAX_LINE) {
                let line = String::from_utf8_lossy(&raw);
                let text = if line.starts_with("slate:") {
                    format!("{line}\n")
                } else {
                    format!("[{name}] {line}\n")
                };
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
                if let Some(l) = log.as_mut() {
                    let _ = l.write_all(format!("{line}\n").as_bytes());
                }
            }
        });
    if let Err(e) = spawned {
        // The pipe is dropped with the closure: the service gets EPIPE, PID 1 lives on.
        marker::warn(format!(
            "no thread {thread} to copy a service's output: {e}"
        ));
    }
}

fn write_state(s: &Supervised) {
    let state = crate::services::ServiceState {
        name: s.service.name.clone(),
        pid: s
            .pid
            .and_then(|p| u32::try_from(p.as_raw_nonzero().get()).ok()),
        running: s.pid.is_some(),
        started_uptime_ms: uptime_ms().saturating_sub(s.started.elapsed().as_millis() as u64),
        restarts: s.restarts,
    };
    // Best effort: a health check that finds no file says the service is unknown.
    let _ = state.write();
}

fn start(s: &mut Supervised) {
    s.next_start = None;
    let Some((program, args)) = s.service.exec.split_first() else {
        marker::warn(format!("service {}: `exec` is empty", s.service.name));
        return;
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .env("TERM", "linux")
        .envs(&s.service.env);
    let bits: Vec<u32> = s
        .service
        .capabilities
        .iter()
        .filter_map(|c| slate_core::config::capability_bit(c))
        .collect();
    sys::run_as(
        &mut cmd,
        s.service.uid,
        s.service.gid,
        sys::capability_set(&bits),
    );
    let spawned = if s.console {
        match std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/console")
        {
            Ok(con) => {
                let (a, b) = (con.try_clone(), con.try_clone());
                match (a, b) {
                    (Ok(a), Ok(b)) => {
                        cmd.stdin(con).stdout(a).stderr(b);
                        sys::spawn_session(&mut cmd)
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    } else {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn()
    };
    match spawned {
        Ok(mut child) => {
            if let Some(o) = child.stdout.take() {
                tee(s.service.name.clone(), o);
            }
            if let Some(e) = child.stderr.take() {
                tee(s.service.name.clone(), e);
            }
            s.pid = Pid::from_raw(child.id() as i32);
            s.started = Instant::now();
            tracing::info!(service = %s.service.name, pid = child.id(), restarts = s.restarts, "service started");
            // The child is reaped by the waitpid loop, not through `child`.
            std::mem::forget(child);
        }
        Err(e) => {
            marker::emit(&Marker::ServiceFailedToStart {
                name: s.service.name.clone(),
                error: e.to_string(),
            });
            s.pid = None;
            s.next_start = Some(Instant::now() + supervisor::BACKOFF_MAX);
        }
    }
    write_state(s);
}

fn on_exit(s: &mut Supervised, exit: Exit) {
    let ran = s.started.elapsed();
    tracing::debug!(service = %s.service.name, ?exit, ran_ms = ran.as_millis() as u64, "service exited");
    s.pid = None;
    match supervisor::restart_after(s.service.restart, exit, ran, s.quick_restarts) {
        Some(delay) => {
            s.quick_restarts = if ran >= supervisor::STABLE_AFTER {
                0
            } else {
                s.quick_restarts + 1
            };
            s.restarts += 1;
            s.next_start = Some(Instant::now() + delay);
            if !s.console {
                marker::emit(&Marker::ServiceExited {
                    name: s.service.name.clone(),
                    exit: format!("{exit:?}"),
                    restart_ms: Some(delay.as_millis()),
                });
            }
        }
        None => marker::emit(&Marker::ServiceExited {
            name: s.service.name.clone(),
            exit: format!("{exit:?}"),
            restart_ms: None,
        }),
    }
    write_state(s);
}

/// Reaps every exited child; returns (pid, exit) pairs.
fn reap() -> Vec<(Pid, Exit)> {
    let mut out = Vec::new();
    while let Ok(Some((pid, status))) = rustix::process::waitpid(None, WaitOptions::NOHANG) {
        let exit = if status.exit_status() == Some(0) {
            Exit::Success
        } else {
            Exit::Failure
        };
        out.push((pid, exit));
    }
    out
}

fn shutdown(services: &mut [Supervised], how: sys::Halt) -> anyhow::Error {
    tracing::info!(?how, services = services.len(), "shutting down");
    marker::emit(&Marker::Shutdown {
        reboot: how == sys::Halt::Reboot,
    });
    // SIGTERM asks daemons to stop (SIGCONT lets a stopped one act on it). A console program
    // (the debug shell) holds nothing to save: it is killed and not waited for. An
    // interactive shell ignores SIGTERM, and its exit can hang for seconds while the kernel
    // drains the console it leaves; before, every reboot waited out the grace period for it.
    for s in services.iter_mut() {
        let Some(pid) = s.pid else { continue };
        if s.console {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            s.pid = None;
        } else {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
            let _ = rustix::process::kill_process(pid, Signal::CONT);
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    while services.iter().any(|s| s.pid.is_some()) && Instant::now() < deadline {
        for (pid, _) in reap() {
            for s in services.iter_mut() {
                if s.pid == Some(pid) {
                    s.pid = None;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for s in services.iter() {
        if let Some(pid) = s.pid {
            marker::warn(format!(
                "service {} did not stop within {} s; killing it",
                s.service.name,
                STOP_GRACE.as_secs()
            ));
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
    forgive_this_start();
    keep_the_clock();
    sys::sync();
    for m in [crate::boot::esp::MOUNT, "/var"] {
        if m == crate::boot::esp::MOUNT && !std::path::Path::new(m).join("loader").exists() {
            continue;
        }
        if let Err(e) = sys::unmount(m) {
            marker::warn(format!("{e:#}"));
        }
    }
    release_data();
    sys::sync();
    sys::halt(how)
}

/// How often the time is kept on `/data` as the next boot's clock floor.
const CLOCK_KEPT_EVERY: Duration = Duration::from_secs(600);

/// Keeps the time as the next boot's clock floor (a warning when `/data` cannot take it).
fn keep_the_clock() {
    let path = std::path::Path::new(crate::clock::FILE);
    if let Err(e) = crate::clock::keep(path, crate::clock::now()) {
        tracing::warn!("keeping the time in {}: {e:#}", path.display());
    }
}

/// Unmounts `/data` for real (a lazy detach would leave its journal dirty until the halt, and
/// the next boot would replay it): PID 1's own log is closed first, and services' log writers
/// get a moment to see their pipes close. If it stays busy, it is remounted read-only; if even
/// that fails, the console says so.
fn release_data() {
    crate::logging::detach();
    let mut last = None;
    for _ in 0..30 {
        match sys::unmount_now("/data") {
            Ok(()) => return,
            Err(rustix::io::Errno::BUSY) => {
                last = Some(rustix::io::Errno::BUSY);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    let remounted = sys::remount("/data", sys::Flags::RDONLY, "");
    match remounted {
        Ok(()) => marker::warn(format!(
            "/data could not be unmounted ({}); remounted read-only instead",
            last.map_or_else(String::new, |e| e.to_string())
        )),
        Err(e) => marker::warn(format!(
            "/data is still in use and stays writable ({e:#}): its journal will be replayed at the next boot"
        )),
    }
}

/// An orderly reboot or poweroff (through the API or a signal to PID 1) is not a failed start:
/// the start stage 1 counted for this boot is taken back, so only panics, verity restarts,
/// watchdog resets and power cuts bring a good slot closer to being given up. Otherwise
/// anyone who may reboot the device could make it fall back to the older slot.
fn forgive_this_start() {
    let slot = std::fs::read_to_string("/proc/cmdline")
        .ok()
        .and_then(|line| line.parse::<slate_core::cmdline::BootParams>().ok())
        .map(|p| p.slot);
    if let Some(slot) = slot {
        match attempts::forgive(slot) {
            Ok(Some(left)) => {
                tracing::info!(slot = %slot, starts = left.starts, "orderly shutdown: this start is not counted")
            }
            Ok(None) => {}
            Err(e) => marker::warn(format!("taking back this boot's start: {e:#}")),
        }
    }
}

/// Runs stage 2; returns only with an error.
pub fn run() -> anyhow::Error {
    match supervise() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn supervise() -> Result<std::convert::Infallible> {
    // What PID 1 creates is root's alone unless it says otherwise; services get 022 back
    // (sys::run_as).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    setup_mounts()?;
    if let Some(w) = std::env::var(stage1::WATCHDOG_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .and_then(sys::adopt_fd)
    {
        if let Err(e) = watchdog::feed_forever(w) {
            marker::warn(format!("{e:#}; the watchdog will reset the machine"));
        }
    }
    let init: InitConfig = read_toml(&format!("/{}", paths::INIT)).unwrap_or(InitConfig {
        hostname: "slate".into(),
        debug_shell: false,
        log: Default::default(),
        etc_overrides: Vec::new(),
    });
    let _ = LOG_CAP.set(init.log.max_bytes());
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Err(e) = logging::attach(
        &std::path::Path::new(LOG_DIR).join("init.log"),
        init.log.max_bytes(),
    ) {
        marker::warn(format!("keeping PID 1's log in {LOG_DIR}: {e}"));
    }
    if let Some(w) = logging::init(&logging::filter_text(&cmdline, &init.log), true) {
        marker::warn(w);
    }
    tracing::info!(hostname = %init.hostname, debug_shell = init.debug_shell, "stage 2 starting");
    // Before anything judges a certificate or an expiry date by it.
    let built = read_toml::<slate_core::config::ImageInfo>(&format!("/{}", paths::IMAGE))
        .ok()
        .and_then(|i| i.built);
    crate::clock::raise_at_boot(built);
    if let Err(e) = sys::set_hostname(&init.hostname) {
        marker::warn(format!("{e:#}"));
    }
    crate::init::etc_overrides::apply(&init.etc_overrides);
    let dhcp = setup_network(&init.hostname);

    let reboot = Arc::new(AtomicBool::new(false));
    let poweroff = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, reboot.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR2, poweroff.clone())
        .context("installing signal handlers")?;
    // Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting at once.
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);

    let mut services = load_services(&init, dhcp);
    marker::emit(&Marker::Stage2Up {
        ms: uptime_ms(),
        services: services.len(),
    });
    let mut clock_kept = Instant::now();
    loop {
        if clock_kept.elapsed() >= CLOCK_KEPT_EVERY {
            keep_the_clock();
            clock_kept = Instant::now();
        }
        if poweroff.load(Ordering::Relaxed) {
            return Err(shutdown(&mut services, sys::Halt::PowerOff));
        }
        if reboot.load(Ordering::Relaxed) {
            return Err(shutdown(&mut services, sys::Halt::Reboot));
        }
        let now = Instant::now();
        for s in services.iter_mut() {
            if s.pid.is_none() && s.next_start.is_some_and(|t| t <= now) {
                start(s);
            }
        }
        for (pid, exit) in reap() {
            if let Some(s) = services.iter_mut().find(|s| s.pid == Some(pid)) {
                on_exit(s, exit);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
