//! `slated`: the Slate agent on the device. This binary is its flags, its logging and its
//! listener; the routes are `slate_agent::slated::routes`, the rest `slate_agent::slated`.
//!
//! As a service (no arguments) it runs the health checks once per boot and prints
//! `slate: healthy …`; on a trial boot it then commits (`slate: committed …`) or marks the slot
//! bad and reboots (`slate: rollback …`). It serves on the configured port:
//! `GET /v1/status`, `GET /metrics`, `POST /v1/update` (body: a bundle; `?force=true`,
//! `?reboot=false`), `POST /v1/reboot`, `POST /v1/poweroff`. The API is HTTPS; every route
//! needs a client certificate from the image's operator CA (status and metrics not, with
//! `public_status`). Plain HTTP without authentication only with `insecure_http`.
//!
//! With `/etc/slate/fleet.toml` it also polls a hawkBit DDI fleet server (`slated::fleet`).
//!
//! `slated install FILE [--force] [--no-reboot]` installs a bundle from a file (a USB stick, a
//! bundle on /data) with the same checks; `slated reset --yes` asks for a factory reset.

use anyhow::{bail, Context, Result};
use hyper_util::rt::TokioIo;
use slate_agent::slated::daemon::Agent;
use slate_agent::slated::identity::{self, Identity};
use slate_agent::slated::operators::{self, OperatorCa};
use slate_agent::slated::routes;
use slate_agent::slated::server::{self, Caller};
use slate_agent::{marker, slated::health};
use slate_core::api::Marker;
use std::sync::Arc;
use std::time::Duration;

/// The API's listener and TLS settings, ready before the health checks start: `slate:
/// healthy` tells operators and tests the API can be reached.
async fn listen(
    agent: &Agent,
) -> Result<(tokio::net::TcpListener, Option<Arc<rustls::ServerConfig>>)> {
    let port = agent.config.port;
    server::raise_fd_limit();
    let tls = if agent.config.insecure_http {
        None
    } else {
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let (identity, made) =
            Identity::load_or_make(std::path::Path::new(identity::DIR), &hostname)?;
        if made {
            tracing::info!(fingerprint = %identity.fingerprint, "made the device identity");
        }
        marker::emit(&Marker::Identity {
            fingerprint: identity.fingerprint,
        });
        agent.set_identity(identity.fingerprint);
        let ca = match agent.config.operators.as_deref() {
            Some(path) => {
                let ca = OperatorCa::load(path, std::path::Path::new(operators::CRL_FILE))?;
                Some(agent.operator_ca.get_or_init(|| ca).clone())
            }
            None => None,
        };
        Some(server::tls_config(&identity, ca.as_ref())?)
    };
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("listening on port {port}"))?;
    marker::emit(&Marker::Api {
        port,
        tls: tls.is_some(),
        operators: agent.config.operators.is_some(),
    });
    Ok((listener, tls))
}

async fn serve(
    agent: Arc<Agent>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<()> {
    let port = agent.config.port;
    let serve_one = move |io: Box<dyn server::Io>, caller: Caller| {
        let agent = agent.clone();
        async move {
            let svc =
                hyper::service::service_fn(move |req| routes::handle(req, agent.clone(), caller));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(server::HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(io), svc)
                .await;
        }
    };
    server::run(listener, tls, serve_one).await;
    anyhow::bail!("the listener on port {port} is gone")
}

async fn daemon() -> Result<()> {
    let agent = Arc::new(Agent::load(true)?);
    agent.boot_cut_points();
    agent.notice_fallback();
    let (listener, tls) = listen(&agent).await?;
    // The health checks run on a thread and runtime of their own: the API's listener takes
    // connections from anyone on the network, and a flood of handshakes on the agent's
    // runtime must not make a trial's checks miss their deadline (and roll back a good update).
    let a = agent.clone();
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    marker::warn(format!("health checks: no runtime: {e}"));
                    return;
                }
            };
            rt.block_on(async move {
                if matches!(a.status().boot, slate_core::api::BootState::Trial { .. }) {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        slate_agent::hooks::cut_point(slate_core::api::CutPoint::HealthRunning);
                    });
                }
                let result = health::run_all(&a.checks).await;
                if a.conclude(&result) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = rustix::process::kill_process(
                        rustix::process::Pid::INIT,
                        rustix::process::Signal::TERM,
                    );
                }
            });
        })
        .context("starting the health checks' thread")?;
    // Staged updates are applied by their own loop (windows, reboot policy, consent).
    tokio::spawn(slate_agent::slated::daemon::run_staged(agent.clone()));
    let update = format!("/{}", slate_core::config::paths::UPDATE);
    match std::fs::read_to_string(&update) {
        Ok(text) => match toml::from_str::<slate_core::channel::UpdateConfig>(&text) {
            Ok(cfg) => {
                tokio::spawn(slate_agent::slated::channel::run(agent.clone(), cfg));
            }
            Err(e) => marker::warn(format!("{update}: {e}; pulling updates is off")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => marker::warn(format!("{update}: {e}; pulling updates is off")),
    }
    let fleet = format!("/{}", slate_core::config::paths::FLEET);
    match std::fs::read_to_string(&fleet) {
        Ok(text) => match toml::from_str::<slate_core::fleet::FleetConfig>(&text) {
            Ok(cfg) => {
                tokio::spawn(slate_agent::slated::fleet::run(agent.clone(), cfg));
            }
            Err(e) => marker::warn(format!("{fleet}: {e}; the fleet server is not polled")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => marker::warn(format!("{fleet}: {e}; the fleet server is not polled")),
    }
    serve(agent, listener, tls).await
}

fn install_cli(args: &[String]) -> Result<()> {
    let mut file = None;
    let (mut force, mut reboot) = (false, true);
    for a in args {
        match a.as_str() {
            "--force" => force = true,
            "--no-reboot" => reboot = false,
            s if !s.starts_with('-') && file.is_none() => file = Some(s.to_string()),
            other => bail!("unknown argument {other:?}; usage: slated install FILE.slate [--force] [--no-reboot]"),
        }
    }
    let file = file.context("usage: slated install FILE.slate [--force] [--no-reboot]")?;
    let agent = Agent::load(false)?;
    let f = std::fs::File::open(&file).with_context(|| format!("opening {file}"))?;
    let i = agent
        .install(std::io::BufReader::new(f), force)
        .map_err(|e| anyhow::anyhow!("{file} is refused: {e}"))?;
    println!(
        "installed {} {} into slot {} ({} bytes in {:.1} s)",
        i.manifest.product, i.manifest.version, i.slot, i.bytes_written, i.seconds
    );
    if reboot {
        marker::emit(&Marker::RebootingIntoNewSlot);
        let _ = rustix::process::kill_process(
            rustix::process::Pid::INIT,
            rustix::process::Signal::TERM,
        );
    }
    Ok(())
}

/// Logs to stdout (stage 2 keeps slated's output in /data/slate/log/slated.log) at the level
/// the image or the kernel command line asks for.
fn init_logging() {
    if let Some(w) = slate_agent::logging::init_for_service() {
        marker::warn(w);
    }
}

/// `slated reset --yes [--new-identity]`: a factory reset from the console (a device without
/// a network).
fn reset_cli(args: &[String]) -> Result<()> {
    let (mut yes, mut new_identity) = (false, false);
    for a in args {
        match a.as_str() {
            "--yes" => yes = true,
            "--new-identity" => new_identity = true,
            other => {
                bail!("unknown argument {other:?}; usage: slated reset --yes [--new-identity]")
            }
        }
    }
    if !yes {
        bail!("a factory reset wipes /data (all application data, logs and the agent's state) at a reboot; run `slated reset --yes` to do it");
    }
    slate_agent::reset::ask(
        std::path::Path::new("/data"),
        slate_agent::reset::Request { new_identity },
    )?;
    println!("factory reset asked for; rebooting");
    rustix::process::kill_process(rustix::process::Pid::INIT, rustix::process::Signal::TERM)
        .context("asking PID 1 to reboot")?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !matches!(args.first().map(String::as_str), Some("--help" | "-h")) {
        init_logging();
    }
    let result = match args.first().map(String::as_str) {
        Some("install") => install_cli(&args[1..]),
        Some("reset") => reset_cli(&args[1..]),
        Some("--help") | Some("-h") => {
            println!("slated: the Slate agent\n  slated                      run as the agent service (started by slate-init)\n  slated install FILE.slate   install a bundle [--force] [--no-reboot]\n  slated reset --yes          factory reset: wipe /data (keeping the identity [unless --new-identity],\n                              the floors, the TUF root and the operators' CRL) at a reboot, now");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!(
            "unknown command {other:?}; see slated --help"
        )),
        None => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(daemon()),
            Err(e) => Err(anyhow::anyhow!("cannot start the runtime: {e}")),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slated: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
