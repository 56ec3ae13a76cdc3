//! `slated`: the Slate agent on the device.
//!
//! As a service (no arguments) it runs the health checks once per boot and prints
//! `slate: healthy …`; on a trial boot it then commits (`slate: committed …`) or marks the slot
//! bad and reboots (`slate: rollback …`). It serves on the configured port:
//! `GET /v1/status`, `GET /metrics`, `POST /v1/update` (body: a bundle; `?force=true`,
//! `?reboot=false`), `POST /v1/reboot`, `POST /v1/poweroff`. The API is HTTPS; every route
//! needs a client certificate from the image's operator CA (status and metrics not, with
//! `public_status`). Plain HTTP without authentication only with `insecure_http`.
//!
//! `slated install FILE [--force] [--no-reboot]` installs a bundle from a file (a USB stick, a
//! bundle on /data) with the same checks.

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use slate_agent::slated::daemon::Agent;
use slate_agent::slated::identity::{self, Identity};
use slate_agent::slated::install::InstallError;
use slate_agent::slated::server::{self, Caller};
use slate_agent::{marker, slated::health, slated::http};
use slate_core::api::{self, ActionAnswer, ErrorAnswer, Marker, UploadAnswer};
use slate_core::install::Refusal;
use std::sync::Arc;
use std::time::Duration;

/// An upload may fall behind the minimum rate by this much time (its first bytes, a slow
/// start of the connection) before it is cut off.
const UPLOAD_GRACE: Duration = Duration::from_secs(15);

type Resp = Response<Full<Bytes>>;

fn json(code: StatusCode, body: &impl serde::Serialize) -> Resp {
    let text = serde_json::to_string(body)
        .unwrap_or_else(|e| format!("{{\"error\":\"serialising the answer: {e}\"}}"));
    let mut r = Response::new(Full::new(Bytes::from(text + "\n")));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn signal_init_later(sig: rustix::process::Signal) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = rustix::process::kill_process(rustix::process::Pid::INIT, sig);
    });
}

/// When an upload that has received `received` bytes since `started` falls below
/// `min_bytes_s`: the deadline for its next bytes.
fn upload_deadline(
    started: tokio::time::Instant,
    received: u64,
    min_bytes_s: u64,
) -> tokio::time::Instant {
    let behind_allowed = Duration::from_secs_f64(received as f64 / min_bytes_s.max(1) as f64);
    started + UPLOAD_GRACE + behind_allowed
}

async fn update(req: Request<hyper::body::Incoming>, agent: Arc<Agent>) -> Resp {
    let force = http::query_flag(req.uri().query(), "force").unwrap_or(false);
    let reboot = http::query_flag(req.uri().query(), "reboot").unwrap_or(true);
    // The same reader a channel download feeds: a closed channel is the end of the bundle.
    let (tx, reader) = slate_agent::slated::channel::StreamReader::new();
    let worker_agent = agent.clone();
    let worker = tokio::task::spawn_blocking(move || worker_agent.install(reader, force));
    let mut body = req.into_body();
    let mut stalled = false;
    // A client that sends slower than the minimum rate (averaged from the start, after a
    // grace) is cut off, so it can hold neither the install lock nor this connection.
    let min_bytes_s = u64::from(agent.config.min_upload_kib_s) * 1024;
    let started = tokio::time::Instant::now();
    let mut received = 0u64;
    loop {
        let deadline = upload_deadline(started, received, min_bytes_s);
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                stalled = true;
                break;
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    received += data.len() as u64;
                    // Once the installer stops reading (it refused the bundle), the rest is
                    // drained so the client can read the answer.
                    if !tx.is_closed() {
                        let _ = tx.send(Ok(data)).await;
                    }
                }
            }
        }
    }
    drop(tx);
    let result = match worker.await {
        Ok(r) => r,
        Err(e) => Err(InstallError::Failed(anyhow::anyhow!("install task: {e}"))),
    };
    match result {
        Ok(i) => {
            if reboot {
                signal_init_later(rustix::process::Signal::TERM);
            }
            json(
                StatusCode::OK,
                &UploadAnswer::Installed {
                    slot: i.slot,
                    version: i.manifest.version.to_string(),
                    bytes: i.bytes_written,
                    seconds: i.seconds,
                    reboot,
                },
            )
        }
        Err(InstallError::Refused(why)) => {
            tracing::info!(
                kind = why.kind().as_str(),
                status = why.http_status(),
                stalled,
                "upload refused"
            );
            let why = if stalled {
                Refusal::Stalled {
                    seconds: started.elapsed().as_secs(),
                    min_kib_s: agent.config.min_upload_kib_s,
                    inner: Box::new(why),
                }
            } else {
                why
            };
            let code = StatusCode::from_u16(why.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            json(
                code,
                &UploadAnswer::Refused {
                    error: why.to_string(),
                    kind: Some(why.kind()),
                },
            )
        }
        Err(InstallError::Failed(e)) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &UploadAnswer::Failed {
                error: format!("{e:#}"),
            },
        ),
    }
}

/// Whether `caller` may use `method path`: everything needs an operator certificate, except
/// status and metrics in an image with `public_status`, and everything in an `insecure_http`
/// image (development only).
fn authorized(method: &Method, path: &str, caller: &Caller, agent: &Agent) -> bool {
    if agent.config.insecure_http || caller.operator.is_some() {
        return true;
    }
    let read_only =
        *method == Method::GET && (path == api::STATUS_ROUTE || path == api::METRICS_ROUTE);
    read_only && agent.config.public_status
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    agent: Arc<Agent>,
    caller: Caller,
) -> Result<Resp, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    tracing::debug!(method = %req.method(), path = %path, peer = %caller.addr, operator = ?caller.operator, "request");
    if !authorized(req.method(), &path, &caller, &agent) {
        return Ok(json(
            StatusCode::UNAUTHORIZED,
            &ErrorAnswer {
                error: "this device needs a client certificate from its operator CA (slate push/status --identity NAME, with NAME.crt.pem from `slate ca issue`)".into(),
            },
        ));
    }
    if req.method() == Method::POST {
        tracing::info!(path = %path, peer = %caller.addr, operator = ?caller.operator, "operator request");
    }
    let resp = match (req.method().clone(), path.as_str()) {
        (Method::GET, api::STATUS_ROUTE) => json(StatusCode::OK, &agent.status()),
        (Method::GET, api::METRICS_ROUTE) => {
            let mut r = Response::new(Full::new(Bytes::from(agent.metrics())));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (Method::POST, api::UPDATE_ROUTE) => update(req, agent).await,
        (Method::POST, api::REBOOT_ROUTE)
            if matches!(agent.status().boot, api::BootState::Trial { .. })
                && !http::query_flag(req.uri().query(), "force").unwrap_or(false) =>
        {
            // Each start of a trial slot spends one of its tries; reboots from the network
            // could otherwise veto an update before its health checks finish.
            json(
                StatusCode::CONFLICT,
                &ErrorAnswer {
                    error: "the running slot is on trial: rebooting now would spend one of its tries; wait for `healthy`, or add ?force=true".into(),
                },
            )
        }
        (Method::POST, api::REBOOT_ROUTE) => {
            signal_init_later(rustix::process::Signal::TERM);
            json(
                StatusCode::ACCEPTED,
                &ActionAnswer {
                    action: "reboot".into(),
                },
            )
        }
        (Method::POST, api::POWEROFF_ROUTE) => {
            signal_init_later(rustix::process::Signal::USR2);
            json(
                StatusCode::ACCEPTED,
                &ActionAnswer {
                    action: "poweroff".into(),
                },
            )
        }
        (m, p) => json(
            StatusCode::NOT_FOUND,
            &ErrorAnswer {
                error: format!("no route {m} {p}"),
            },
        ),
    };
    Ok(resp)
}

async fn serve(agent: Arc<Agent>) -> Result<()> {
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
        Some(server::tls_config(
            &identity,
            agent.config.operators.as_deref(),
        )?)
    };
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("listening on port {port}"))?;
    marker::emit(&Marker::Api {
        port,
        tls: tls.is_some(),
        operators: agent.config.operators.is_some(),
    });
    let serve_one = move |io: Box<dyn server::Io>, caller: Caller| {
        let agent = agent.clone();
        async move {
            let svc = hyper::service::service_fn(move |req| handle(req, agent.clone(), caller));
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
    let a = agent.clone();
    tokio::spawn(async move {
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
    serve(agent).await
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
    let log: slate_core::config::LogConfig =
        std::fs::read_to_string(format!("/{}", slate_core::config::paths::INIT))
            .ok()
            .and_then(|t| toml::from_str::<slate_core::config::InitConfig>(&t).ok())
            .map(|init| init.log)
            .unwrap_or_default();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let filter = slate_agent::logging::filter_text(&cmdline, &log);
    if let Some(w) = slate_agent::logging::init(&filter, false) {
        marker::warn(w);
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !matches!(args.first().map(String::as_str), Some("--help" | "-h")) {
        init_logging();
    }
    let result = match args.first().map(String::as_str) {
        Some("install") => install_cli(&args[1..]),
        Some("--help") | Some("-h") => {
            println!("slated: the Slate agent\n  slated                      run as the agent service (started by slate-init)\n  slated install FILE.slate   install a bundle [--force] [--no-reboot]");
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
