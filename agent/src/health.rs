//! Health checks: each probe retried until it passes or the deadline (counted from boot)
//! passes. All checks run concurrently.

use crate::status::{CheckResult, Health};
use slate_core::config::{self, Check, Probe};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Splits `http://host:port/path` into (host:port, host, path).
pub fn split_http_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_string();
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, host, path.to_string()))
}

/// The status code of an HTTP/1 response's first line.
pub fn status_code(head: &str) -> Option<u16> {
    let mut parts = head.split_whitespace();
    let proto = parts.next()?;
    if !proto.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

async fn http_get(url: &str) -> Result<String, String> {
    let (addr, host, path) = split_http_url(url)?;
    let mut s = TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: slated\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        let n = s
            .read(&mut buf[got..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 || buf[..got + n].contains(&b'\n') {
            got += n;
            break;
        }
        got += n;
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    let line = head.lines().next().unwrap_or("");
    match status_code(line) {
        Some(c) if (200..300).contains(&c) => Ok(format!("HTTP {c}")),
        Some(c) => Err(format!("HTTP {c}")),
        None => Err(format!("not an HTTP response: {line:?}")),
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
            let path = format!("{}/{service}.json", crate::stage2::SERVICE_STATE_DIR);
            let text = std::fs::read_to_string(&path)
                .map_err(|_| format!("service {service} is not known to PID 1"))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
            let running = v["running"].as_bool().unwrap_or(false);
            let since = v["started_uptime_ms"].as_u64().unwrap_or(u64::MAX);
            let up_ms = uptime_ms.saturating_sub(since);
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
        state: if ok { "passed".into() } else { "failed".into() },
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_host_and_path() {
        assert_eq!(
            split_http_url("http://127.0.0.1:8080/x?y").unwrap(),
            ("127.0.0.1:8080".into(), "127.0.0.1".into(), "/x?y".into())
        );
        assert_eq!(
            split_http_url("http://localhost").unwrap(),
            ("localhost:80".into(), "localhost".into(), "/".into())
        );
        assert!(split_http_url("https://x/").is_err());
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(status_code("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(status_code("SSH-2.0"), None);
    }
}
