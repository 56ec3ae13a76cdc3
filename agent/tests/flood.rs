//! The agent's listener under a flood, on the host's loopback with real sockets and real TLS:
//! thousands of idle connections from many addresses (more than QEMU's user network can carry
//! to a guest, which is why this runs here as well as in the hostile QEMU scenario), and an
//! operator's request still gets its answer. The unauthenticated idle connections are evicted
//! to make room; none of them stops the agent.

use rustls::pki_types::pem::PemObject;
use slate_agent::slated::server::{self, Caller, Io};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Idle connections opened before the operator's request.
const FLOOD: usize = 2000;
/// Source addresses they come from (127.0.0.2 …), each held to the per-address cap.
const SOURCES: u8 = 40;

/// Answers one request per connection with the caller's operator fingerprint (or "anonymous").
async fn answer(mut io: Box<dyn Io>, caller: Caller, served: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    served.fetch_add(1, Ordering::SeqCst);
    let who = caller
        .operator
        .map_or("anonymous".to_string(), |f| f.to_string());
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{who}",
        who.len()
    );
    let _ = io.write_all(resp.as_bytes()).await;
    let _ = io.shutdown().await;
}

/// A TCP connection to the agent from `source`.
fn connect_from(source: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((source, 0)).into())?;
    sock.connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)).into(),
        Duration::from_secs(5),
    )?;
    Ok(TcpStream::from(sock))
}

/// Whether the agent has closed `c` (end of file or a reset, at once).
fn closed_by_peer(c: &TcpStream) -> bool {
    c.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 1];
    match (&*c).read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn an_operator_is_served_through_thousands_of_idle_connections() {
    server::raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ops-ca");
    slate_imager::operator::ca::init(&ca, "flood test CA").unwrap();
    let op = dir.path().join("alice");
    slate_imager::operator::ca::issue(&ca, "alice", 1, slate_core::operator::Roles::all(), &op)
        .unwrap();
    let (identity, _) = slate_agent::slated::identity::Identity::load_or_make(
        &dir.path().join("identity"),
        "flood",
    )
    .unwrap();
    let ca_pem = slate_imager::operator::ca::pair_paths(&ca).0;
    let ca = slate_agent::slated::operators::OperatorCa::load(
        ca_pem.to_str().unwrap(),
        &dir.path().join("operators.crl"),
    )
    .unwrap();
    let tls = server::tls_config(&identity, Some(&ca)).unwrap();

    // The agent's runtime (one thread, as slated runs it) on a thread of its own.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            server::run(listener, Some(tls), move |io, caller| {
                answer(io, caller, counter.clone())
            })
            .await
        });
    });

    let started = Instant::now();
    let mut idle = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(SOURCES)) as u8);
        let c = connect_from(source, port)
            .unwrap_or_else(|e| panic!("idle connection {i} from {source}: {e}"));
        idle.push(c);
    }
    eprintln!(
        "{FLOOD} idle connections from {SOURCES} addresses in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The operator, from yet another address, with a client certificate of the CA.
    let client = slate_imager::operator::tls::unpinned_client(Some(&op)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("device").unwrap();
    let conn = rustls::ClientConnection::new(client, name).unwrap();
    let tcp = connect_from(Ipv4Addr::new(127, 0, 0, 200), port).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: device\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp:?}");
    assert!(resp.ends_with(&fingerprint_of(&op).to_string()), "{resp}");
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // The agent keeps at most its cap of them: the rest were evicted to make room, which the
    // client sees as a closed connection.
    std::thread::sleep(Duration::from_millis(500));
    let closed = idle.iter().filter(|c| closed_by_peer(c)).count();
    eprintln!("{closed} of {FLOOD} idle connections closed by the agent");
    assert!(
        closed >= FLOOD - server::MAX_CONNECTIONS,
        "only {closed} of {FLOOD} idle connections were closed: the agent keeps at most {}",
        server::MAX_CONNECTIONS
    );
    drop(idle);
}

/// The operator certificate's fingerprint, as the agent names its caller.
fn fingerprint_of(op: &std::path::Path) -> slate_core::Fingerprint {
    let pem = slate_imager::operator::ca::pair_paths(op).0;
    let der = rustls::pki_types::CertificateDer::from_pem_file(&pem).expect("operator certificate");
    slate_core::Fingerprint::of_der(&der)
}
