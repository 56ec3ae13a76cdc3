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
        slate_imager::operator::ca::issue(&dir.join("ca"), "e2e", 1, &dir.join("ops"))
            .expect("issue");
        slate_imager::operator::ca::init(&dir.join("other-ca"), "another CA").expect("CA");
        slate_imager::operator::ca::issue(
            &dir.join("other-ca"),
            "stranger",
            1,
            &dir.join("stranger"),
        )
        .expect("issue");
        let day = std::time::Duration::from_secs(86_400);
        let now = std::time::SystemTime::now();
        slate_imager::operator::ca::issue_between(
            &dir.join("ca"),
            "expired",
            now - 3 * day,
            now - day,
            &dir.join("expired"),
        )
        .expect("issue");
        let identity = dir.join("ops");
        let client =
            slate_imager::operator::tls::unpinned_client(Some(&identity)).expect("client config");
        Operators {
            ca_crt,
            identity,
            stranger: dir.join("stranger"),
            expired: dir.join("expired"),
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
