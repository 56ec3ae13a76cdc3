//! `slate push`: stream a bundle to a device's agent over HTTP and, with `--wait`, follow the
//! device through its reboot to the outcome (committed, or rolled back and why).
//!
//! HTTP is `ureq`'s; URLs are parsed by `ureq`'s URL parser (IPv6 literals, default ports).
//! Answers are the [`slate_core::api`] types the agent serves, never read by string keys.

use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use slate_core::api::{self, Status, UploadAnswer};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// The device's base URL, checked: `http://HOST[:PORT]` with no path (IPv6 as `[::1]`).
pub fn base_url(device: &str) -> Result<String> {
    let url = url::Url::parse(device)
        .with_context(|| format!("--device {device:?}: expected http://HOST:PORT"))?;
    if url.scheme() != "http" {
        bail!("--device {device:?}: only http:// is supported (expected http://HOST:PORT)");
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .with_context(|| format!("--device {device:?} has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    Ok(format!("http://{host}:{port}"))
}

fn agent(read_timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(read_timeout.min(CONNECT_TIMEOUT))
        .timeout_read(read_timeout)
        .user_agent(concat!("slate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The status code and body of an answer, whatever its status (4xx/5xx answers carry JSON).
fn answer(
    r: std::result::Result<ureq::Response, ureq::Error>,
    what: &str,
) -> Result<(u16, String)> {
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => return Err(anyhow::Error::new(e)).context(what.to_string()),
    };
    let code = resp.status();
    let body = resp
        .into_string()
        .with_context(|| format!("{what}: reading the answer"))?;
    Ok((code, body))
}

/// GET /v1/status, or None while the device is down.
pub fn status(base: &str) -> Option<Status> {
    let r = agent(STATUS_TIMEOUT)
        .get(&format!("{base}{}", api::STATUS_ROUTE))
        .call();
    let (code, body) = answer(r, "status").ok()?;
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// Outcome of a push.
#[derive(Debug)]
pub struct Pushed {
    /// The device's answer to the upload.
    pub answer: UploadAnswer,
    /// With --wait: the final status.
    pub outcome: Option<Status>,
}

/// Counts bytes into the progress bar as ureq reads the bundle.
struct Counting<'a, R> {
    inner: R,
    bar: &'a indicatif::ProgressBar,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
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
    let base = base_url(device)?;
    let f = std::fs::File::open(bundle).with_context(|| format!("opening {}", bundle.display()))?;
    let size = f.metadata()?.len();
    let bar = progress.bytes(size, "uploading");
    let mut req = agent(UPLOAD_ANSWER_TIMEOUT)
        .post(&format!("{base}{}", api::UPDATE_ROUTE))
        .set("Content-Type", "application/octet-stream")
        .set("Content-Length", &size.to_string());
    if !reboot {
        req = req.query("reboot", "false");
    }
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let sent = req.send(Counting {
        inner: std::io::BufReader::with_capacity(1 << 20, f),
        bar: &bar,
    });
    bar.finish_and_clear();
    let (code, body) = answer(sent, &format!("sending the bundle to {base}"))?;
    let answer: UploadAnswer = match serde_json::from_str(&body) {
        Ok(a) => a,
        Err(_) if code == 401 => bail!("the device refused the bundle (HTTP 401): missing or wrong bearer token"),
        Err(e) => bail!("the device answered HTTP {code} with something that is not an upload answer ({e}): {body}"),
    };
    let (slot, version) = match &answer {
        UploadAnswer::Installed { slot, version, .. } => (*slot, version.clone()),
        UploadAnswer::Refused { error, .. } | UploadAnswer::Failed { error } => {
            bail!("the device refused the bundle (HTTP {code}): {error}")
        }
    };
    let Some(limit) = wait else {
        return Ok(Pushed {
            answer,
            outcome: None,
        });
    };
    progress.step(format!(
        "installed {version} in slot {slot}; waiting for the device to reboot and decide"
    ));
    let deadline = Instant::now() + limit;
    let spinner = progress.spinner("waiting for the trial boot");
    while Instant::now() < deadline {
        std::thread::sleep(POLL_INTERVAL);
        let Some(s) = status(&base) else { continue };
        if s.decided(&version).is_some() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_urls_are_parsed_by_a_url_parser() {
        assert_eq!(
            base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("http://dev.local/").unwrap(),
            "http://dev.local:80"
        );
        assert_eq!(base_url("http://[::1]:9").unwrap(), "http://[::1]:9");
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("127.0.0.1:8080").is_err());
    }
}
