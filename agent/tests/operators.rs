//! Who the agent lets in, on the host's loopback with real TLS: an operator's roles reach the
//! request handler as its certificate states them; a certificate the CA's CRL revokes is
//! refused in the handshake once the device has the CRL; a CRL from another CA, a forged one
//! or an older one is not taken; and a device whose clock is far behind still takes an
//! operator issued today (and learns the time from it), while an expired one stays refused.

// Test set-up helpers fail the test as a #[test] would.
#![allow(clippy::unwrap_used)]

use rustls::pki_types::pem::PemObject;
use slate_agent::slated::operators::{CrlRefused, OperatorCa, TimeProof};
use slate_agent::slated::server::{self, Caller, Io};
use slate_core::operator::{Role, Roles};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers one request per connection with the caller's roles.
async fn answer(mut io: Box<dyn Io>, caller: Caller) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let who = match caller.operator {
        Some(_) => format!("roles={}", caller.roles),
        None => "anonymous".into(),
    };
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{who}",
        who.len()
    );
    let _ = io.write_all(resp.as_bytes()).await;
    let _ = io.shutdown().await;
}

/// The agent's listener with `ca`, on a thread of its own; returns its port.
fn serve(dir: &Path, ca: &Arc<OperatorCa>) -> u16 {
    let (identity, _) =
        slate_agent::slated::identity::Identity::load_or_make(&dir.join("identity"), "ops-test")
            .unwrap();
    let tls = server::tls_config(&identity, Some(ca)).unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            server::run(listener, Some(tls), answer).await
        });
    });
    port
}

/// One request as the operator pair `op`: the answer's body, or the TLS/IO error.
fn ask(port: u16, op: &Path) -> Result<String, String> {
    let client =
        slate_imager::operator::tls::unpinned_client(Some(op)).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("device").unwrap();
    let conn = rustls::ClientConnection::new(client, name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: device\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or(resp.clone())?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_string());
    }
    Ok(body.to_string())
}

struct Setup {
    dir: tempfile::TempDir,
    ca: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        Setup::named("ops test CA")
    }

    fn named(name: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ops-ca");
        slate_imager::operator::ca::init(&ca, name).unwrap();
        Setup { dir, ca }
    }

    fn issue(&self, name: &str, roles: Roles) -> PathBuf {
        let out = self.dir.path().join(name);
        slate_imager::operator::ca::issue(&self.ca, name, 30, roles, &out).unwrap();
        out
    }

    fn ca_pem(&self) -> String {
        slate_imager::operator::ca::pair_paths(&self.ca)
            .0
            .display()
            .to_string()
    }

    fn load(&self, proofs: &Arc<Mutex<Vec<i64>>>) -> Arc<OperatorCa> {
        let p = proofs.clone();
        let proof: TimeProof = Arc::new(move |t| p.lock().unwrap().push(t));
        OperatorCa::load_with(&self.ca_pem(), &self.dir.path().join("kept.crl"), proof).unwrap()
    }
}

#[test]
fn roles_reach_the_handler_and_a_revoked_operator_is_refused_in_the_handshake() {
    let s = Setup::new();
    let all = s.issue("admin", Roles::all());
    let watcher = s.issue("watcher", [Role::Status].into_iter().collect());
    let lost = s.issue("lost", Roles::all());
    let proofs = Arc::default();
    let ca = s.load(&proofs);
    let port = serve(s.dir.path(), &ca);

    assert_eq!(ask(port, &all).unwrap(), "roles=status,push,reboot,force");
    assert_eq!(ask(port, &watcher).unwrap(), "roles=status");
    assert_eq!(ask(port, &lost).unwrap(), "roles=status,push,reboot,force");

    // The CA revokes the lost laptop's certificate; the device takes the CRL.
    let lost_crt = slate_imager::operator::ca::pair_paths(&lost).0;
    let r = slate_imager::operator::ca::revoke(&s.ca, &[lost_crt]).unwrap();
    let first = std::fs::read(&r.crl).unwrap();
    assert_eq!(ca.offer_crl(&first).unwrap(), r.this_update);
    let e = ask(port, &lost).unwrap_err();
    assert!(e.contains("Revoked") || e.contains("revoked"), "{e}");
    assert_eq!(ask(port, &all).unwrap(), "roles=status,push,reboot,force");
    // Kept on disk: a restarted agent refuses it too.
    let again = s.load(&proofs);
    let port2 = serve(s.dir.path(), &again);
    assert!(ask(port2, &lost).is_err());
    assert!(ask(port2, &watcher).is_ok());

    // A newer CRL is taken; the older one is then refused (it would un-revoke).
    let watcher_crt = slate_imager::operator::ca::pair_paths(&watcher).0;
    let newer = slate_imager::operator::ca::revoke(&s.ca, &[watcher_crt]).unwrap();
    assert!(newer.this_update > r.this_update);
    assert_eq!(newer.listed, 2);
    ca.offer_crl(&std::fs::read(&newer.crl).unwrap()).unwrap();
    assert!(ask(port, &watcher).is_err());
    assert!(matches!(
        ca.offer_crl(&first),
        Err(CrlRefused::Older { .. })
    ));
    assert!(ask(port, &watcher).is_err(), "the older CRL un-revoked");
}

#[test]
fn a_crl_of_another_ca_a_forged_one_or_garbage_is_not_taken() {
    let s = Setup::new();
    let proofs = Arc::default();
    let ca = s.load(&proofs);
    let other = Setup::named("another CA");
    let theirs = slate_imager::operator::ca::revoke(&other.ca, &[]).unwrap();
    assert!(matches!(
        ca.offer_crl(&std::fs::read(&theirs.crl).unwrap()),
        Err(CrlRefused::OtherIssuer)
    ));
    // Another CA under the same name: its key did not sign for ours.
    let twin = Setup::new();
    let twins = slate_imager::operator::ca::revoke(&twin.ca, &[]).unwrap();
    assert!(matches!(
        ca.offer_crl(&std::fs::read(&twins.crl).unwrap()),
        Err(CrlRefused::BadSignature)
    ));
    let ours = slate_imager::operator::ca::revoke(&s.ca, &[]).unwrap();
    let pem = std::fs::read(&ours.crl).unwrap();
    let der = rustls::pki_types::CertificateRevocationListDer::from_pem_slice(&pem).unwrap();
    // The last byte of the signature, changed.
    let mut forged = der.as_ref().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(matches!(
        ca.offer_crl(&forged),
        Err(CrlRefused::BadSignature)
    ));
    assert!(matches!(
        ca.offer_crl(b"not a crl"),
        Err(CrlRefused::Malformed(_))
    ));
    // The genuine one, as DER or PEM.
    ca.offer_crl(der.as_ref()).unwrap();
    ca.offer_crl(&pem).unwrap();
}

#[test]
fn an_operator_issued_after_the_devices_clock_is_taken_and_proves_the_time() {
    let s = Setup::new();
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    // As seen by a device whose clock is ten days behind: the certificate starts "tomorrow"
    // for the machine running this test, and is taken, with its start as proof of the time.
    let future = s.dir.path().join("future");
    slate_imager::operator::ca::issue_between(
        &s.ca,
        "future",
        now + day,
        now + 30 * day,
        Roles::all(),
        &future,
    )
    .unwrap();
    let expired = s.dir.path().join("expired");
    slate_imager::operator::ca::issue_between(
        &s.ca,
        "expired",
        now - 3 * day,
        now - day,
        Roles::all(),
        &expired,
    )
    .unwrap();
    let proofs: Arc<Mutex<Vec<i64>>> = Arc::default();
    let ca = s.load(&proofs);
    let port = serve(s.dir.path(), &ca);
    assert_eq!(
        ask(port, &future).unwrap(),
        "roles=status,push,reboot,force"
    );
    let start = (now + day)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(*proofs.lock().unwrap(), vec![start]);
    assert!(ask(port, &expired).is_err());
}
