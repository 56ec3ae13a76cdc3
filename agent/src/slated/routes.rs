//! The agent's HTTP API: each route's authorisation and handling, and the upload that streams
//! a bundle into the install. `bin/slated.rs` serves it (flags, logging, the listener); the
//! routes and their answers are here, where the daemon's state is.
//!
//! `GET /v1/status`, `GET /v1/metrics`, `GET /v1/quote?nonce=…`, `POST /v1/update` (body: a bundle; `?force=true`,
//! `?reboot=false`, `?now=true`, `?stage=true`), `POST /v1/apply` (`?now=true`), `POST
//! /v1/reboot`, `POST /v1/poweroff`, `POST
//! /v1/operators/crl` (body: the operator CA's CRL), `POST /v1/factory-reset` (twice: a token,
//! then `?confirm=TOKEN`). Each needs the roles [`slate_core::operator::needed`] names.

use crate::slated::daemon::Agent;
use crate::slated::http;
use crate::slated::install::InstallError;
use crate::slated::operators;
use crate::slated::server::Caller;
use anyhow::Result;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use slate_core::api::{self, ActionAnswer, ErrorAnswer, UploadAnswer};
use slate_core::install::Refusal;
use slate_core::operator::Role;
use slate_core::policy::Trigger;
use std::sync::Arc;
use std::time::Duration;

/// An upload may fall behind the minimum rate by this much time (its first bytes, a slow
/// start of the connection) before it is cut off.
const UPLOAD_GRACE: Duration = Duration::from_secs(15);

/// An answer with its whole body.
pub type Resp = Response<Full<Bytes>>;

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
    let now_override = http::query_flag(req.uri().query(), "now").unwrap_or(false);
    let stage_only = http::query_flag(req.uri().query(), "stage").unwrap_or(false);
    // Who decides when it is applied: the operator (now, or only when asked), or the
    // device's policy (windows, reboot, consent).
    let trigger = if stage_only {
        Trigger::StageOnly
    } else if now_override {
        Trigger::Operator { now: true }
    } else {
        Trigger::Device
    };
    let total = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The same reader a channel download feeds: a closed channel is the end of the bundle.
    let (tx, reader) = crate::slated::channel::StreamReader::new();
    let feed = crate::slated::daemon::Feed {
        phase: api::Phase::Writing,
        total,
        done: reader.counter(),
    };
    let worker_agent = agent.clone();
    let worker = tokio::task::spawn_blocking(move || {
        // Applied at once or staged: decided once the bundle's version is known (its manifest
        // verified) and before anything is written.
        let gate = |v: &slate_core::Version| Ok(worker_agent.install_gate(v, trigger));
        worker_agent.install_with(reader, force, None, None, Some(feed), Some(&gate))
    });
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
        Ok(i) if i.staged => {
            let apply_at = agent.staged_status().and_then(|s| s.apply_at);
            json(
                StatusCode::OK,
                &UploadAnswer::Staged {
                    slot: i.slot,
                    version: i.manifest.version.to_string(),
                    bytes: i.bytes_written,
                    seconds: i.seconds,
                    apply_at,
                },
            )
        }
        Ok(i) => {
            if reboot {
                agent.progress_phase(api::Phase::Applying, 0, None);
                signal_init_later(rustix::process::Signal::TERM);
            } else {
                agent.progress_done();
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

/// The roles `caller` lacks for this request (none over plain HTTP, or for the status when it
/// is public and no certificate was presented).
fn missing_roles(
    method: &Method,
    path: &str,
    query: Option<&str>,
    caller: &Caller,
    agent: &Agent,
) -> Vec<Role> {
    if agent.config.insecure_http || caller.operator.is_none() {
        return Vec::new();
    }
    // Applying outside the maintenance windows (`now=true`) is an override, as force is.
    let force = http::query_flag(query, "force").unwrap_or(false)
        || http::query_flag(query, "now").unwrap_or(false);
    slate_core::operator::needed(*method == Method::POST, path, force)
        .into_iter()
        .filter(|r| !caller.roles.has(*r))
        .collect()
}

/// `GET /v1/quote?nonce=<hex>`: a TPM quote over PCRs 7 and 11 with the verifier's nonce (at
/// most 64 bytes), signed by the attestation key. 409 without a TPM.
async fn quote(query: Option<&str>) -> Resp {
    let nonce = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce="))
        .and_then(|h| hex::decode(h).ok())
        .filter(|n| !n.is_empty() && n.len() <= 64);
    let Some(nonce) = nonce else {
        return json(
            StatusCode::BAD_REQUEST,
            &ErrorAnswer {
                error: "give ?nonce=<hex>, 1 to 64 bytes of your own randomness".into(),
            },
        );
    };
    let answer = tokio::task::spawn_blocking(move || crate::tpm::quote_for_agent(&nonce)).await;
    match answer {
        // slate-init's JSON as it printed it (the verifier checks every field).
        Ok(Ok(q)) => {
            let mut r = Response::new(Full::new(Bytes::from(q + "\n")));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Ok(Err(e)) => json(
            StatusCode::CONFLICT,
            &ErrorAnswer {
                error: format!("quoting: {e:#}"),
            },
        ),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ErrorAnswer {
                error: format!("quoting: {e}"),
            },
        ),
    }
}

/// `POST /v1/apply`: the staged update applied now (windows or not; `?now=true` also skips
/// the application's consent), then a reboot into it.
async fn apply(query: Option<&str>, agent: Arc<Agent>) -> Resp {
    let now = http::query_flag(query, "now").unwrap_or(false);
    let a = agent.clone();
    let looked =
        tokio::task::spawn_blocking(move || a.look_at_staged(Trigger::Operator { now })).await;
    match looked {
        Ok(Ok(crate::slated::daemon::Applied::Reboot)) => {
            crate::marker::emit(&api::Marker::RebootingIntoNewSlot);
            signal_init_later(rustix::process::Signal::TERM);
            json(
                StatusCode::ACCEPTED,
                &ActionAnswer {
                    action: "apply".into(),
                },
            )
        }
        Ok(Ok(crate::slated::daemon::Applied::Waiting(_))) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ErrorAnswer {
                error: "the staged update was not applied, and no reason was given".into(),
            },
        ),
        Ok(Err(InstallError::Refused(why))) => json(
            StatusCode::from_u16(why.http_status()).unwrap_or(StatusCode::CONFLICT),
            &UploadAnswer::Refused {
                error: why.to_string(),
                kind: Some(why.kind()),
            },
        ),
        Ok(Err(InstallError::Failed(e))) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &UploadAnswer::Failed {
                error: format!("{e:#}"),
            },
        ),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ErrorAnswer {
                error: format!("apply task: {e}"),
            },
        ),
    }
}

/// `POST /v1/factory-reset`: without `confirm`, a token to send back; with the right one
/// (within a minute), the request for stage 1 to wipe `/data`, and a reboot.
fn factory_reset(query: Option<&str>, agent: &Agent) -> Resp {
    let confirm = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("confirm="))
            .map(str::to_string)
    });
    let Some(token) = confirm else {
        return match agent.reset_token() {
            Ok(confirm) => json(
                StatusCode::OK,
                &api::ResetConfirm {
                    confirm,
                    expires_in_s: crate::slated::daemon::RESET_CONFIRM.as_secs(),
                    wipes: "everything on /data but the device identity (unless new_identity=true), the security and clock floors, the trusted TUF root and the operators' CRL; then the device reboots".into(),
                },
            ),
            Err(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &ErrorAnswer {
                    error: format!("{e:#}"),
                },
            ),
        };
    };
    if !agent.reset_confirmed(&token) {
        return json(
            StatusCode::FORBIDDEN,
            &ErrorAnswer {
                error: "that confirmation token is not the device's last one, or is older than a minute: ask for a new one (POST without confirm)".into(),
            },
        );
    }
    let s = agent.status();
    if matches!(s.boot, api::BootState::Trial { .. }) || s.installing {
        return json(
            StatusCode::CONFLICT,
            &ErrorAnswer {
                error: "the device is installing or on trial; reset it once that is decided".into(),
            },
        );
    }
    let new_identity = http::query_flag(query, "new_identity").unwrap_or(false);
    let asked = crate::reset::ask(
        std::path::Path::new("/data"),
        crate::reset::Request { new_identity },
    );
    if let Err(e) = asked {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ErrorAnswer {
                error: format!("{e:#}"),
            },
        );
    }
    crate::marker::warn(format!(
        "a factory reset was asked for (new identity: {new_identity}); /data is wiped at the reboot"
    ));
    signal_init_later(rustix::process::Signal::TERM);
    json(
        StatusCode::ACCEPTED,
        &ActionAnswer {
            action: "factory-reset".into(),
        },
    )
}

/// `POST /v1/operators/crl`: a newer CRL of the operator CA, taken (and kept) or refused.
async fn operators_crl(req: Request<hyper::body::Incoming>, agent: Arc<Agent>) -> Resp {
    let Some(ca) = agent.operator_ca.get() else {
        return json(
            StatusCode::CONFLICT,
            &ErrorAnswer {
                error: "this device has no operator CA, so no CRL to keep".into(),
            },
        );
    };
    let limited = http_body_util::Limited::new(req.into_body(), operators::MAX_CRL);
    let body = match tokio::time::timeout(Duration::from_secs(60), limited.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return json(
                StatusCode::BAD_REQUEST,
                &ErrorAnswer {
                    error: format!("reading the CRL: {e}"),
                },
            )
        }
        Err(_) => {
            return json(
                StatusCode::REQUEST_TIMEOUT,
                &ErrorAnswer {
                    error: "the CRL did not arrive within 60 s".into(),
                },
            )
        }
    };
    match ca.offer_crl(&body) {
        Ok(this_update) => {
            crate::marker::emit(&api::Marker::OperatorsCrl { this_update });
            json(
                StatusCode::OK,
                &ActionAnswer {
                    action: "crl".into(),
                },
            )
        }
        Err(e) => {
            let code = match e {
                operators::CrlRefused::Keeping(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            json(
                code,
                &ErrorAnswer {
                    error: e.to_string(),
                },
            )
        }
    }
}

/// Answers one request of `caller` (an operator, a stranger, or anyone over plain HTTP):
/// refused unless [`authorized`], else routed. Errors are answers, never a dropped connection.
pub async fn handle(
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
    let missing = missing_roles(req.method(), &path, req.uri().query(), &caller, &agent);
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|r| r.as_str()).collect();
        tracing::warn!(path = %path, peer = %caller.addr, operator = ?caller.operator, "refused: lacks {}", names.join(","));
        return Ok(json(
            StatusCode::FORBIDDEN,
            &ErrorAnswer {
                error: format!(
                    "this operator certificate lacks the role {} for {} {path} (it has: {}); the operator CA issues one with `slate ca issue --role …`",
                    names.join(" and "),
                    req.method(),
                    caller.roles
                ),
            },
        ));
    }
    if req.method() == Method::POST {
        tracing::info!(path = %path, peer = %caller.addr, operator = ?caller.operator, roles = %caller.roles, "operator request");
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
        (Method::GET, api::QUOTE_ROUTE) => quote(req.uri().query()).await,
        (Method::POST, api::UPDATE_ROUTE) => update(req, agent).await,
        (Method::POST, api::APPLY_ROUTE) => apply(req.uri().query(), agent).await,
        (Method::POST, api::OPERATORS_CRL_ROUTE) => operators_crl(req, agent).await,
        (Method::POST, api::FACTORY_RESET_ROUTE) => factory_reset(req.uri().query(), &agent),
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
