//! Health checks: each probe retried until it passes or the deadline (counted from boot)
//! passes. All checks run concurrently.

use slate_core::api::{CheckResult, Health, HealthState};
use slate_core::config::{self, Check, Probe};
use std::time::Duration;
use tokio::net::TcpStream;

const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Where an `http://` probe connects: host (IPv6 literals without brackets), port, and the
/// URI to request. Parsed by `http`'s URI parser, so `[::1]:8080` and userinfo-free authorities
/// read as the standard says.
pub fn http_target(url: &str) -> Result<(String, u16, hyper::Uri), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?} is not an http:// URL"));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{url:?} has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    Ok((host, port, uri))
}

/// One GET with hyper's HTTP/1 client; a 2xx status passes.
async fn http_get(url: &str) -> Result<String, String> {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let (host, port, uri) = http_target(url)?;
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(conn);
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "slated")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("not an HTTP response: {e}"))?;
    let c = resp.status().as_u16();
    if resp.status().is_success() {
        Ok(format!("HTTP {c}"))
    } else {
        Err(format!("HTTP {c}"))
    }
}

async fn probe_once(probe: &Probe, uptime_ms: u64) -> Result<String, String> {
    match probe {
        Probe::Exec { command } => {
            let Some((prog, args)) = command.split_first() else {
                return Err("empty command".into());
            };
            let out = tokio::process::Command::new(prog)
                .args(args)
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| format!("{prog}: {e}"))?;
            if out.status.success() {
                Ok("exit 0".into())
            } else {
                Err(format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
        Probe::Http { url } => http_get(url).await,
        Probe::Tcp { address } => TcpStream::connect(address)
            .await
            .map(|_| "connected".into())
            .map_err(|e| format!("connect {address}: {e}")),
        Probe::Service { service, for_s } => {
            let state = crate::services::ServiceState::read(service)?
                .ok_or_else(|| format!("service {service} is not known to PID 1"))?;
            let running = state.running;
            let up_ms = uptime_ms.saturating_sub(state.started_uptime_ms);
            if running && up_ms >= u64::from(*for_s) * 1000 {
                Ok(format!("running for {} s", up_ms / 1000))
            } else if running {
                Err(format!("running for {} ms, needs {for_s} s", up_ms))
            } else {
                Err(format!("service {service} is not running"))
            }
        }
    }
}

async fn run_check(check: Check, deadline_ms: u64) -> CheckResult {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let timeout = Duration::from_secs(u64::from(check.timeout_s));
        let r = match tokio::time::timeout(timeout, probe_once(&check.probe, crate::uptime_ms()))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {} s", check.timeout_s)),
        };
        tracing::debug!(check = %check.name, attempt = attempts, result = ?r, "health probe");
        match r {
            Ok(detail) => {
                return CheckResult {
                    name: check.name,
                    ok: true,
                    detail,
                    attempts,
                }
            }
            Err(detail) if crate::uptime_ms() + RETRY_EVERY.as_millis() as u64 >= deadline_ms => {
                return CheckResult {
                    name: check.name,
                    ok: false,
                    detail,
                    attempts,
                }
            }
            Err(_) => tokio::time::sleep(RETRY_EVERY).await,
        }
    }
}

/// Runs every check until it passes or `deadline_s` after boot.
pub async fn run_all(health: &config::Health) -> Health {
    let deadline_ms = u64::from(health.deadline_s) * 1000;
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in health.checks.iter().cloned().enumerate() {
        set.spawn(async move { (i, run_check(c, deadline_ms).await) });
    }
    let mut results: Vec<(usize, CheckResult)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            results.push(r);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    let checks: Vec<CheckResult> = results.into_iter().map(|(_, r)| r).collect();
    let ok = checks.len() == health.checks.len() && checks.iter().all(|c| c.ok);
    Health {
        state: if ok {
            HealthState::Passed
        } else {
            HealthState::Failed
        },
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_urls_parse_with_ipv6_and_default_ports() {
        let (h, p, u) = http_target("http://127.0.0.1:8080/x?y").unwrap();
        assert_eq!(
            (h.as_str(), p, u.path_and_query().unwrap().as_str()),
            ("127.0.0.1", 8080, "/x?y")
        );
        let (h, p, _) = http_target("http://localhost").unwrap();
        assert_eq!((h.as_str(), p), ("localhost", 80));
        let (h, p, _) = http_target("http://[::1]:9000/health").unwrap();
        assert_eq!((h.as_str(), p), ("::1", 9000));
        assert!(http_target("https://x/").is_err());
        assert!(http_target("http:///nohost").is_err());
    }

    /// A real server on loopback answering with a chunked body: the probe reads the status.
    #[test]
    fn probes_read_chunked_answers() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for code in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).unwrap();
                write!(
                    s,
                    "HTTP/1.1 {code}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                )
                .unwrap();
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/");
        assert_eq!(rt.block_on(http_get(&url)), Ok("HTTP 200".into()));
        assert_eq!(rt.block_on(http_get(&url)), Err("HTTP 503".into()));
        server.join().unwrap();
    }
}
