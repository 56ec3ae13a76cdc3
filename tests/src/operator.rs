//! Talking to devices as their operator: the test operator CA and certificates (with a
//! stranger's and an expired one), and raw TLS requests for tests that write bytes themselves.

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Test operator certificates, made once per test process: the CA test images trust, an
/// operator it issued, an operator of another CA, and an expired one of the right CA.
pub struct Operators {
    /// The CA's certificate, baked into test images.
    pub ca_crt: PathBuf,
    /// The operator pair (base name) the tests act as.
    pub identity: PathBuf,
    /// An operator pair from another CA.
    pub stranger: PathBuf,
    /// An operator pair of the right CA whose certificate has expired.
    pub expired: PathBuf,
    /// An operator pair of the right CA with the role `status` only.
    pub watcher: PathBuf,
    /// An operator pair of the right CA that `crl` revokes.
    pub lost: PathBuf,
    /// The CA's CRL (`slate ca revoke`), listing `lost`.
    pub crl: PathBuf,
    /// A TLS client presenting `identity` that accepts any device certificate (the harness
    /// talks to many devices; pinning is tested through [`access`]).
    pub client: std::sync::Arc<rustls::ClientConfig>,
}

/// The operator certificates, made once per test process.
pub fn operators() -> &'static Operators {
    static OPS: OnceLock<Operators> = OnceLock::new();
    OPS.get_or_init(|| {
        let dir = Box::leak(Box::new(
            tempfile::Builder::new()
                .prefix("slate-e2e-operators-")
                .tempdir()
                .expect("temp dir"),
        ))
        .path();
        let (ca_crt, _) = slate_imager::operator::ca::init(&dir.join("ca"), "e2e CA").expect("CA");
        let all = slate_core::operator::Roles::all();
        let ca = dir.join("ca");
        // A week: scenarios set a device's clock days ahead (to reach its maintenance window).
        slate_imager::operator::ca::issue(&ca, "e2e", 7, all, &dir.join("ops")).expect("issue");
        slate_imager::operator::ca::init(&dir.join("other-ca"), "another CA").expect("CA");
        slate_imager::operator::ca::issue(
            &dir.join("other-ca"),
            "stranger",
            1,
            all,
            &dir.join("stranger"),
        )
        .expect("issue");
        let day = std::time::Duration::from_secs(86_400);
        let now = std::time::SystemTime::now();
        slate_imager::operator::ca::issue_between(
            &ca,
            "expired",
            now - 3 * day,
            now - day,
            all,
            &dir.join("expired"),
        )
        .expect("issue");
        let status_only = [slate_core::operator::Role::Status].into_iter().collect();
        slate_imager::operator::ca::issue(&ca, "watcher", 1, status_only, &dir.join("watcher"))
            .expect("issue");
        let (lost, _) =
            slate_imager::operator::ca::issue(&ca, "lost-laptop", 1, all, &dir.join("lost"))
                .expect("issue");
        let crl = slate_imager::operator::ca::revoke(&ca, &[lost])
            .expect("revoke")
            .crl;
        let identity = dir.join("ops");
        let client =
            slate_imager::operator::tls::unpinned_client(Some(&identity)).expect("client config");
        Operators {
            ca_crt,
            identity,
            stranger: dir.join("stranger"),
            expired: dir.join("expired"),
            watcher: dir.join("watcher"),
            lost: dir.join("lost"),
            crl,
            client,
        }
    })
}

/// How tests reach a device as its operator: the test identity, device pins kept in `work`
/// (one file per test, so devices of other tests on a reused port do not clash).
pub fn access(work: &Path) -> slate_imager::operator::push::Access {
    slate_imager::operator::push::Access {
        identity: Some(operators().identity.clone()),
        fingerprint: None,
        known_devices: Some(work.join("known_devices")),
    }
}

/// A raw TLS connection to the agent on `port` as the operator pair `identity` (None: no
/// client certificate), for tests that write requests byte by byte.
pub fn tls_stream(
    port: u16,
    identity: Option<&Path>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let cfg = slate_imager::operator::tls::unpinned_client(identity)?;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(300)))?;
    let name = rustls::pki_types::ServerName::try_from("slate-device")?;
    let conn = rustls::ClientConnection::new(cfg, name)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Sends one request over `tls_stream(port, identity)` with `body`; returns the status code
/// (0 when the connection failed, for example a refused handshake) and the answer's text.
pub fn raw_request(
    port: u16,
    identity: Option<&Path>,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    let (code, answer) = raw_exchange(port, identity, method, path, body);
    if code == 0 {
        return (0, answer);
    }
    // The reason, decoded from the JSON answer (so quotes in it compare as written).
    let reason = serde_json::from_str::<serde_json::Value>(answer.trim())
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or(answer);
    (code, reason)
}

/// [`raw_request`]'s HTTP status and the answer's whole body (the JSON as sent), or 0 and
/// what went wrong.
pub fn raw_exchange(
    port: u16,
    identity: Option<&Path>,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = tls_stream(port, identity) else {
        return (0, "no connection".into());
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if let Err(e) = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
    {
        return (0, format!("sending: {e}"));
    }
    let mut resp = Vec::new();
    let read = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if code == 0 {
        return (0, format!("{resp} ({read:?})"));
    }
    let text = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, text.to_string())
}

/// What a handshake flood did.
#[derive(Debug, Default, Clone, Copy)]
pub struct FloodCount {
    /// TCP connections made.
    pub connections: u64,
    /// Of those, handshakes the device answered with its certificate (it did the work of a
    /// handshake: key exchange and signature).
    pub answered: u64,
}

/// TLS handshakes without a client certificate, from `threads` threads, as fast as the link
/// takes them, until `stop` is set: what a LAN neighbour can throw at a device for free.
pub fn handshake_flood(
    port: u16,
    threads: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<FloodCount> {
    std::thread::spawn(move || {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut count = FloodCount::default();
                    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                    let Ok(cfg) = slate_imager::operator::tls::unpinned_client(None) else {
                        return count;
                    };
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let Ok(mut tcp) =
                            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                        else {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        };
                        count.connections += 1;
                        let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                        let Ok(name) = rustls::pki_types::ServerName::try_from("slate-device")
                        else {
                            return count;
                        };
                        let Ok(mut conn) = rustls::ClientConnection::new(cfg.clone(), name) else {
                            return count;
                        };
                        // Until the device's certificate came (or the device hung up).
                        while conn.is_handshaking() && conn.complete_io(&mut tcp).is_ok() {
                            if conn.peer_certificates().is_some() {
                                count.answered += 1;
                                break;
                            }
                        }
                    }
                    count
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().ok())
            .fold(FloodCount::default(), |a, b| FloodCount {
                connections: a.connections + b.connections,
                answered: a.answered + b.answered,
            })
    })
}
