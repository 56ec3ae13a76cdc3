//! `slate push` and `slate status`: talk to a device's agent over mutual TLS (the operator's
//! certificate, the device's pinned fingerprint), stream a bundle and, with `--wait`, follow
//! the device through its reboot to the outcome (committed, or rolled back and why).
//!
//! HTTP is `ureq`'s; URLs are parsed by `ureq`'s URL parser (IPv6 literals, default ports).
//! Answers are the [`slate_core::api`] types the agent serves, never read by string keys.

use crate::operator::tls::{self, Identity, KnownDevices, PinVerifier};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use slate_core::api::{self, Status, UploadAnswer};
use slate_core::Fingerprint;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// The most of an answer read from a device: answers are small JSON documents, and a device
/// (or whatever answers at its address) must not make the operator's tool read without end.
const MAX_ANSWER: u64 = 1 << 20;

/// The device's base URL, checked: `https://HOST[:PORT]` (or `http://` for a development image
/// built with `insecure_http`) with no path (IPv6 as `[::1]`).
pub fn base_url(device: &str) -> Result<String> {
    let url = url::Url::parse(device)
        .with_context(|| format!("--device {device:?}: expected https://HOST:PORT"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        bail!(
            "--device {device:?}: expected https://HOST:PORT (or http:// for a development image)"
        );
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .with_context(|| format!("--device {device:?} has no host"))?;
    let port = url.port_or_known_default().unwrap_or(443);
    Ok(format!("{}://{host}:{port}", url.scheme()))
}

/// How to reach and trust a device: the operator's certificate, and the device's fingerprint
/// (given, or pinned before in the known-devices file).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The operator's pair (`NAME` for `NAME.crt.pem` and `NAME.key.pem`).
    pub identity: Option<PathBuf>,
    /// The device's certificate fingerprint, given up front (overrides the known-devices file).
    pub fingerprint: Option<Fingerprint>,
    /// Known-devices file [default: [`KnownDevices::default_path`]].
    pub known_devices: Option<PathBuf>,
}

/// A device's API, reached over TLS with its certificate pinned (or plain HTTP).
pub struct Device {
    base: String,
    /// `host:port`, the key in the known-devices file.
    addr: String,
    tls: Option<Pinning>,
}

struct Pinning {
    config: Arc<rustls::ClientConfig>,
    verifier: Arc<PinVerifier>,
    known: Option<PathBuf>,
}

impl Device {
    /// Prepares to talk to the device at `url` with `access` (no connection yet).
    pub fn open(url: &str, access: &Access) -> Result<Device> {
        let base = base_url(url)?;
        let addr = base
            .split_once("://")
            .map(|(_, a)| a.to_string())
            .unwrap_or_default();
        if base.starts_with("http://") {
            if access.identity.is_some() || access.fingerprint.is_some() {
                bail!("--device {url}: --identity and --fingerprint need https:// (the device serves TLS unless built with insecure_http)");
            }
            return Ok(Device {
                base,
                addr,
                tls: None,
            });
        }
        let known = access
            .known_devices
            .clone()
            .or_else(KnownDevices::default_path);
        let pinned = match (&access.fingerprint, &known) {
            (Some(f), _) => Some(*f),
            (None, Some(k)) => KnownDevices::load(k)?.devices.get(&addr).copied(),
            (None, None) => None,
        };
        let identity = access.identity.as_deref().map(Identity::load).transpose()?;
        let verifier = PinVerifier::new(pinned);
        let config = tls::client_config(identity.as_ref(), verifier.clone())?;
        Ok(Device {
            base,
            addr,
            tls: Some(Pinning {
                config,
                verifier,
                known,
            }),
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn agent(&self, read_timeout: Duration) -> ureq::Agent {
        let mut b = ureq::AgentBuilder::new()
            .timeout_connect(read_timeout.min(CONNECT_TIMEOUT))
            .timeout_read(read_timeout)
            .user_agent(concat!("slate/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = &self.tls {
            b = b.tls_config(t.config.clone());
        }
        b.build()
    }

    /// POST `path` (with its query) and no body: the answer's status and text.
    pub fn post(&self, path: &str) -> Result<(u16, String)> {
        let req = self
            .agent(STATUS_TIMEOUT)
            .post(&format!("{}{path}", self.base));
        self.exchange(req, None, &format!("POST {path}"))
    }

    /// After a successful exchange: a device seen for the first time is pinned.
    fn remember(&self) -> Result<()> {
        let Some(t) = &self.tls else { return Ok(()) };
        let (None, Some(seen), Some(known)) = (t.verifier.expected(), t.verifier.seen(), &t.known)
        else {
            return Ok(());
        };
        let mut k = KnownDevices::load(known)?;
        if k.devices.get(&self.addr) == Some(&seen) {
            return Ok(());
        }
        k.devices.insert(self.addr.clone(), seen);
        k.save(known)?;
        eprintln!(
            "pinned {} as {seen} in {} (compare with the device's console line `slate: identity fingerprint=…`)",
            self.addr,
            known.display()
        );
        Ok(())
    }

    /// Turns a failed exchange into the reason: a [`PinMismatch`] when the device's
    /// certificate is not the pinned one.
    fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let Some(t) = &self.tls else { return e };
        match (t.verifier.expected(), t.verifier.seen()) {
            (Some(pinned), Some(presented)) if pinned != presented => PinMismatch {
                addr: self.addr.clone(),
                presented,
                pinned,
                pinned_in: t
                    .known
                    .as_ref()
                    .map_or_else(|| "--fingerprint".into(), |k| k.display().to_string()),
            }
            .into(),
            _ => e,
        }
    }

    /// Sends `req` (with `body`, if any) and returns the status code and body of the answer,
    /// whatever its status; pins a first-seen device.
    fn exchange(
        &self,
        req: ureq::Request,
        body: Option<&mut dyn Read>,
        what: &str,
    ) -> Result<(u16, String)> {
        let r = match body {
            Some(b) => req.send(b),
            None => req.call(),
        };
        let resp = match r {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => {
                return Err(self.explain(anyhow::Error::new(e).context(what.to_string())));
            }
        };
        self.remember()?;
        let code = resp.status();
        let mut body = String::new();
        resp.into_reader()
            .take(MAX_ANSWER)
            .read_to_string(&mut body)
            .with_context(|| format!("{what}: reading the answer"))?;
        Ok((code, body))
    }

    /// `GET /v1/status`, with the reason when it fails.
    pub fn status(&self) -> Result<Status> {
        let what = format!("asking {} for its status", self.base);
        let req =
            self.agent(STATUS_TIMEOUT * 5)
                .get(&format!("{}{}", self.base, api::STATUS_ROUTE));
        let (code, body) = self.exchange(req, None, &what)?;
        if code != 200 {
            bail!("{what}: HTTP {code}: {}", error_text(&body));
        }
        serde_json::from_str(&body).with_context(|| format!("{what}: not a status: {body}"))
    }

    /// `GET /v1/quote?nonce=…`: the device's TPM quote over `nonce`.
    pub fn quote(&self, nonce: &[u8]) -> Result<slate_core::tpm::quote::Quote> {
        let what = format!("asking {} for a TPM quote", self.base);
        let req = self.agent(STATUS_TIMEOUT * 5).get(&format!(
            "{}{}?nonce={}",
            self.base,
            api::QUOTE_ROUTE,
            hex::encode(nonce)
        ));
        let (code, body) = self.exchange(req, None, &what)?;
        if code != 200 {
            bail!("{what}: HTTP {code}: {}", error_text(&body));
        }
        serde_json::from_str(&body).with_context(|| format!("{what}: not a quote: {body}"))
    }

    /// Polls the status through the device's reboots until it has decided about `version`
    /// (committed it, or rolled it back); None when `limit` passes first.
    pub fn wait_decided(&self, version: &str, limit: Duration) -> Result<Option<Status>> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            std::thread::sleep(POLL_INTERVAL);
            if let Some(s) = self.poll_status()? {
                if s.decided(version).is_some() {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    /// GET /v1/status, or None while the device is down (a changed certificate is an error).
    pub fn poll_status(&self) -> Result<Option<Status>> {
        let req = self
            .agent(STATUS_TIMEOUT)
            .get(&format!("{}{}", self.base, api::STATUS_ROUTE));
        match self.exchange(req, None, "status") {
            Ok((200, body)) => Ok(serde_json::from_str(&body).ok()),
            Ok(_) => Ok(None),
            Err(e) if e.is::<PinMismatch>() => Err(e),
            Err(_) => Ok(None),
        }
    }
}

/// The device presents another certificate than the one pinned for its address.
#[derive(Debug, thiserror::Error)]
#[error(
    "THE DEVICE AT {addr} PRESENTS A DIFFERENT CERTIFICATE: {presented}, but {pinned_in} pins {pinned}. \
     Someone may be impersonating it, or it was re-flashed or lost its /data. \
     Check the fingerprint on its console (`slate: identity fingerprint=…`); if it is \
     right, remove the line for {addr} from {pinned_in} and try again."
)]
pub struct PinMismatch {
    /// `host:port`.
    pub addr: String,
    /// What the device presented.
    pub presented: Fingerprint,
    /// What was pinned.
    pub pinned: Fingerprint,
    /// Where the pin came from (the known-devices file, or `--fingerprint`).
    pub pinned_in: String,
}

/// The `error` of a JSON error answer, or the body as it is.
fn error_text(body: &str) -> String {
    serde_json::from_str::<api::ErrorAnswer>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| body.trim().to_string())
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

/// How a bundle is pushed.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Reboot into the new slot at once.
    pub reboot: bool,
    /// `force=true`: a failed or not newer version (never below the floor).
    pub force: bool,
    /// `now=true`: apply it even outside the device's maintenance windows.
    pub now: bool,
    /// `stage=true`: install it and wait for `slate apply` (a download-only deployment).
    pub stage: bool,
    /// Follow the device to the outcome, for at most this long.
    pub wait: Option<Duration>,
}

/// Pushes a bundle; with `wait`, follows the device until the version commits or rolls back.
pub fn push(
    device: &str,
    bundle: &Path,
    access: &Access,
    reboot: bool,
    wait: Option<Duration>,
    progress: Progress,
) -> Result<Pushed> {
    let options = Options {
        reboot,
        force: false,
        now: false,
        stage: false,
        wait,
    };
    push_with(device, bundle, access, options, progress)
}

/// While an upload's answer is awaited: once `bar` has counted the whole bundle, a spinner
/// with the device's phase from its status (`progress`), every second, until `answered`.
fn show_device_phases(
    dev: &Device,
    bar: &indicatif::ProgressBar,
    size: u64,
    answered: &std::sync::atomic::AtomicBool,
    progress: Progress,
) {
    use std::sync::atomic::Ordering;
    while bar.position() < size {
        if answered.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let spinner = progress.spinner("the device is working");
    while !answered.load(Ordering::Relaxed) {
        if let Ok(Some(s)) = dev.poll_status() {
            if let Some(p) = s.progress {
                spinner.set_message(format!("device: {}", render_progress(&p)));
            }
        }
        for _ in 0..5 {
            if answered.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    spinner.finish_and_clear();
}

/// One line for a device's progress: `verifying 2.0.0 12.0/24.0 MiB at 3.1 MiB/s, 4 s left`.
pub fn render_progress(p: &api::Progress) -> String {
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let mut line = p.phase.as_str().to_string();
    if let Some(v) = &p.version {
        line.push_str(&format!(" {v}"));
    }
    if p.total > 0 {
        line.push_str(&format!(" {:.1}/{:.1} MiB", mib(p.bytes), mib(p.total)));
    }
    if p.rate_bytes_s > 0 {
        line.push_str(&format!(" at {:.1} MiB/s", mib(p.rate_bytes_s)));
    }
    if let Some(eta) = p.eta_s {
        line.push_str(&format!(", {eta} s left"));
    }
    line
}

/// Hands the device a CRL of its operator CA (`slate push --crl`).
pub fn push_crl(device: &str, crl: &Path, access: &Access) -> Result<()> {
    let dev = Device::open(device, access)?;
    let base = dev.base().to_string();
    let bytes = std::fs::read(crl).with_context(|| format!("reading {}", crl.display()))?;
    let req = dev
        .agent(STATUS_TIMEOUT)
        .post(&format!("{base}{}", api::OPERATORS_CRL_ROUTE))
        .set("Content-Type", "application/pkix-crl");
    let mut body: &[u8] = &bytes;
    let (code, answer) =
        dev.exchange(req, Some(&mut body), &format!("sending the CRL to {base}"))?;
    if code != 200 {
        bail!(
            "the device refused the CRL {} (HTTP {code}): {}",
            crl.display(),
            error_text(&answer)
        );
    }
    Ok(())
}

/// When a staged update is applied, in words.
pub fn staged_when(apply_at: Option<i64>) -> String {
    match apply_at {
        Some(t) => format!(
            "the device applies it at {t} (Unix time: its maintenance window, or the application's next answer), or now with `slate apply`"
        ),
        None => "the device applies it when told: `slate apply`".into(),
    }
}

/// [`push`] with every option.
pub fn push_with(
    device: &str,
    bundle: &Path,
    access: &Access,
    options: Options,
    progress: Progress,
) -> Result<Pushed> {
    let Options {
        reboot,
        force,
        now,
        stage,
        wait,
    } = options;
    let dev = Device::open(device, access)?;
    let base = dev.base().to_string();
    if dev.tls.is_some() && access.identity.is_none() {
        // The device would refuse the upload at once and close the connection under it.
        bail!("pushing to {base} needs an operator certificate: add --identity NAME (NAME.crt.pem and NAME.key.pem from `slate ca issue --ca CA --name you --out NAME`)");
    }
    let f = std::fs::File::open(bundle).with_context(|| format!("opening {}", bundle.display()))?;
    let size = f.metadata()?.len();
    let bar = progress.bytes(size, "uploading");
    let mut req = dev
        .agent(UPLOAD_ANSWER_TIMEOUT)
        .post(&format!("{base}{}", api::UPDATE_ROUTE))
        .set("Content-Type", "application/octet-stream")
        .set("Content-Length", &size.to_string());
    if !reboot {
        req = req.query("reboot", "false");
    }
    if force {
        req = req.query("force", "true");
    }
    if now {
        req = req.query("now", "true");
    }
    if stage {
        req = req.query("stage", "true");
    }
    let mut body = Counting {
        inner: std::io::BufReader::with_capacity(1 << 20, f),
        bar: &bar,
    };
    // Once the bundle is sent, the device still writes and verifies before it answers: show
    // its phases from its status, on a connection of their own.
    let answered = std::sync::atomic::AtomicBool::new(false);
    let sent = std::thread::scope(|scope| {
        if !progress.is_quiet() {
            scope.spawn(|| show_device_phases(&dev, &bar, size, &answered, progress));
        }
        let sent = dev.exchange(
            req,
            Some(&mut body),
            &format!("sending the bundle to {base}"),
        );
        answered.store(true, std::sync::atomic::Ordering::Relaxed);
        sent
    });
    bar.finish_and_clear();
    let (code, body) = sent?;
    let answer: UploadAnswer = match serde_json::from_str(&body) {
        Ok(a) => a,
        Err(_) if code == 401 || code == 403 => bail!(
            "the device refused the bundle (HTTP 401): {}",
            error_text(&body)
        ),
        Err(e) => bail!("the device answered HTTP {code} with something that is not an upload answer ({e}): {body}"),
    };
    let (slot, version) = match &answer {
        UploadAnswer::Installed { slot, version, .. } => (*slot, version.clone()),
        UploadAnswer::Staged {
            slot,
            version,
            apply_at,
            ..
        } => {
            // Nothing to follow until it is applied.
            progress.step(format!(
                "staged {version} in slot {slot}; {}",
                staged_when(*apply_at)
            ));
            return Ok(Pushed {
                answer,
                outcome: None,
            });
        }
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
    let spinner = progress.spinner("waiting for the trial boot");
    let decided = dev.wait_decided(&version, limit);
    spinner.finish_and_clear();
    match decided? {
        Some(s) => Ok(Pushed {
            answer,
            outcome: Some(s),
        }),
        None => bail!(
            "no outcome from the device within {} s (it may still be booting)",
            limit.as_secs()
        ),
    }
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
        assert_eq!(
            base_url("https://10.0.0.7:8080/").unwrap(),
            "https://10.0.0.7:8080"
        );
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("127.0.0.1:8080").is_err());
    }
}
