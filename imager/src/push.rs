//! `slate push`: stream a bundle to a device's agent over HTTP and, with `--wait`, follow the
//! device through its reboot to the outcome (committed, or rolled back and why).

use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// `http://host:port` → `host:port`.
pub fn authority(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--device {url:?}: expected http://HOST:PORT"))?;
    let a = rest.split('/').next().unwrap_or("");
    if a.is_empty() {
        bail!("--device {url:?} has no host");
    }
    Ok(if a.contains(':') {
        a.to_string()
    } else {
        format!("{a}:80")
    })
}

fn read_response(s: TcpStream) -> Result<(u16, String)> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)
        .context("reading the device's answer")?;
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP answer: {line:?}"))?;
    let mut len = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let mut body = String::new();
    match len {
        Some(n) => {
            let mut b = vec![0u8; n];
            r.read_exact(&mut b)?;
            body = String::from_utf8_lossy(&b).into_owned();
        }
        None => {
            r.read_to_string(&mut body)?;
        }
    }
    Ok((code, body))
}

/// How long an upload may wait for the device's answer (it verifies and writes the whole
/// slot before answering).
const UPLOAD_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
/// A status request answers at once from a running agent; while the device reboots, the
/// forwarded or routed connection may hang instead of failing, so give up soon and ask again.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How often `--wait` asks the device for its status.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A device that is off or unreachable should fail a connection in seconds, not after the
/// system's minutes of SYN retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolves to no address",
        )
    }))
}

/// One request with an optional body from a reader.
fn request(
    addr: &str,
    read_timeout: Duration,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&mut dyn Read, u64)>,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<(u16, String)> {
    let mut s = connect(addr, read_timeout.min(CONNECT_TIMEOUT))
        .with_context(|| format!("connecting to the device at {addr}"))?;
    s.set_read_timeout(Some(read_timeout))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let len = body.as_ref().map_or(0, |b| b.1);
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: slate/{}\r\n{auth}Content-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n", env!("CARGO_PKG_VERSION"))?;
    if let Some((r, _)) = body {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Err(e) = s.write_all(&buf[..n]) {
                // The device stopped reading: it refused the bundle. Its answer says why.
                let answer = read_response(s.try_clone()?);
                return answer.or_else(|_| Err(e).context("sending the bundle"));
            }
            if let Some(p) = progress {
                p.inc(n as u64);
            }
        }
    }
    read_response(s)
}

/// GET /v1/status as JSON, or None while the device is down.
pub fn status(addr: &str) -> Option<serde_json::Value> {
    let (code, body) = request(addr, STATUS_TIMEOUT, "GET", "/v1/status", None, None, None).ok()?;
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// Outcome of a push.
#[derive(Debug)]
pub struct Pushed {
    /// The device's JSON answer to the upload.
    pub answer: serde_json::Value,
    /// With --wait: the final status.
    pub outcome: Option<serde_json::Value>,
}

/// Pushes a bundle; with `wait`, follows the device until the version commits or rolls back.
pub fn push(
    device: &str,
    bundle: &Path,
    token: Option<&str>,
    reboot: bool,
    wait: Option<Duration>,
    progress: Progress,
) -> Result<Pushed> {
    let addr = authority(device)?;
    let mut f =
        std::fs::File::open(bundle).with_context(|| format!("opening {}", bundle.display()))?;
    let size = f.metadata()?.len();
    let bar = progress.bytes(size, "uploading");
    let path = if reboot {
        "/v1/update"
    } else {
        "/v1/update?reboot=false"
    };
    let (code, body) = request(
        &addr,
        UPLOAD_ANSWER_TIMEOUT,
        "POST",
        path,
        token,
        Some((&mut f, size)),
        Some(&bar),
    )?;
    bar.finish_and_clear();
    let answer: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|_| serde_json::json!({"raw": body}));
    if code != 200 {
        bail!(
            "the device refused the bundle (HTTP {code}): {}",
            answer["error"].as_str().unwrap_or(&body)
        );
    }
    let Some(limit) = wait else {
        return Ok(Pushed {
            answer,
            outcome: None,
        });
    };
    let version = answer["version"].as_str().unwrap_or_default().to_string();
    progress.step(format!(
        "installed {version} in slot {}; waiting for the device to reboot and decide",
        answer["slot"].as_str().unwrap_or("?")
    ));
    let deadline = Instant::now() + limit;
    let spinner = progress.spinner("waiting for the trial boot");
    while Instant::now() < deadline {
        std::thread::sleep(POLL_INTERVAL);
        let Some(s) = status(&addr) else { continue };
        let a = &s["last_attempt"];
        // A rollback is final once the device runs the old slot again.
        let done = (a["outcome"] == "committed" && s["slot"] == a["slot"])
            || (a["outcome"] == "rolled-back" && s["slot"] != a["slot"]);
        if a["version"] == version.as_str() && done {
            spinner.finish_and_clear();
            return Ok(Pushed {
                answer,
                outcome: Some(s),
            });
        }
    }
    spinner.finish_and_clear();
    bail!(
        "no outcome from the device within {} s (it may still be booting)",
        limit.as_secs()
    )
}
