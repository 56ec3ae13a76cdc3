//! `slated`: the Slate agent on the device.
//!
//! It runs the image's health checks once per boot and prints `slate: healthy slot=<s>
//! version=<v>` (or `slate: unhealthy …`), and serves a small HTTP API on the configured port:
//! `GET /v1/status` (JSON), `POST /v1/reboot`, `POST /v1/poweroff`.

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use slate_agent::status::{BootState, Health, Status};
use slate_agent::{cmdline, health, marker, uptime_ms};
use slate_core::config::{self, paths, AgentConfig, ImageInfo};
use std::sync::{Arc, Mutex};

fn read_toml<T: serde::de::DeserializeOwned>(path: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    toml::from_str(&text).with_context(|| format!("parsing {path}"))
}

fn json(code: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn signal_init(sig: rustix::process::Signal) {
    let _ = rustix::process::kill_process(rustix::process::Pid::INIT, sig);
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<Status>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/status") => {
            let mut s = state
                .lock()
                .map(|s| s.clone())
                .unwrap_or_else(|p| p.into_inner().clone());
            s.uptime_s = uptime_ms() as f64 / 1000.0;
            json(StatusCode::OK, serde_json::to_value(s).unwrap_or_default())
        }
        (&Method::POST, "/v1/reboot") => {
            tokio::spawn(async {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                signal_init(rustix::process::Signal::TERM)
            });
            json(
                StatusCode::ACCEPTED,
                serde_json::json!({"action": "reboot"}),
            )
        }
        (&Method::POST, "/v1/poweroff") => {
            tokio::spawn(async {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                signal_init(rustix::process::Signal::USR2)
            });
            json(
                StatusCode::ACCEPTED,
                serde_json::json!({"action": "poweroff"}),
            )
        }
        (_, path) => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": format!("no route {} {path}", req.method())}),
        ),
    };
    Ok(resp)
}

async fn serve(port: u16, state: Arc<Mutex<Status>>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("listening on port {port}"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn run() -> Result<()> {
    let line = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let slot = cmdline::slot(&line)?;
    let root_hash = cmdline::parse(&line)
        .map(|p| hex::encode(p.verity.root_hash))
        .unwrap_or_default();
    let image: ImageInfo = read_toml(&format!("/{}", paths::IMAGE))?;
    let agent: AgentConfig = read_toml(&format!("/{}", paths::AGENT)).unwrap_or_default();
    let checks: config::Health = read_toml(&format!("/{}", paths::HEALTH)).unwrap_or_default();
    let entry = slate_agent::status::selected_entry();
    let state = Arc::new(Mutex::new(Status {
        slot,
        name: image.name.clone(),
        version: image.version.to_string(),
        board: image.board.clone(),
        root_hash,
        boot: BootState::from_entry(entry.as_deref()),
        entry,
        uptime_s: 0.0,
        health: Health {
            state: "pending".into(),
            checks: Vec::new(),
        },
    }));

    let health_state = state.clone();
    tokio::spawn(async move {
        let result = health::run_all(&checks).await;
        if result.state == "passed" {
            marker::emit(&format!(
                "healthy slot={slot} version={} in {} ms since boot",
                image.version,
                uptime_ms()
            ));
        } else {
            let failed: Vec<String> = result
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            marker::emit(&format!(
                "unhealthy slot={slot} version={} failed={}",
                image.version,
                failed.join("; ")
            ));
        }
        if let Ok(mut s) = health_state.lock() {
            s.health = result;
        }
    });
    serve(agent.port, state).await
}

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slated: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slated: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
