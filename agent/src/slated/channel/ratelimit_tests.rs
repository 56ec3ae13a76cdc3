//! The bandwidth cap measured where the issue measures it, at the server: a capped download
//! of 4 MiB from a TLS server on loopback whose socket keeps a small send buffer (so what it
//! has written is what the client has taken, give or take 64 KiB), and the server's rate over
//! the steady part is the cap within 5%.

use super::download::{fetch, Expected, Fetched, Patience, StreamReader};
use super::https::Https;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEN: usize = 4 << 20;
const CAP_KIB: u32 = 512;

#[tokio::test]
async fn a_capped_download_reaches_the_server_at_the_cap() {
    let (ca, config) = super::download::faults::tls_pair();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let data: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
    let sha256 = slate_core::Digest32(Sha256::digest(&data).into());
    let served = data.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(64 << 10)
            .unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(tcp)
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut b).await.unwrap();
            head.extend_from_slice(&b[..n]);
        }
        let header =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\nConnection: close\r\n\r\n");
        tls.write_all(header.as_bytes()).await.unwrap();
        let mut timeline = Vec::new();
        let mut written = 0usize;
        for chunk in served.chunks(16 << 10) {
            tls.write_all(chunk).await.unwrap();
            tls.flush().await.unwrap();
            written += chunk.len();
            timeline.push((Instant::now(), written));
        }
        let _ = tls.shutdown().await;
        timeline
    });
    let https = Https::new(Some(ca.path().to_str().unwrap()))
        .unwrap()
        .capped(CAP_KIB);
    let url = url::Url::parse(&format!("https://127.0.0.1:{port}/b.slate")).unwrap();
    let (tx, mut reader) = StreamReader::new();
    let consumer = tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        reader.read_to_end(&mut v).map(|_| v.len())
    });
    let mut stats = Fetched::default();
    let expected = Expected {
        length: LEN as u64,
        sha256,
    };
    let started = Instant::now();
    fetch(
        &https,
        &url,
        &expected,
        Vec::new(),
        tx,
        &mut stats,
        &Patience::device(1),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(consumer.await.unwrap().unwrap(), LEN);
    let timeline = server.await.unwrap();
    // The steady part: from the first MiB written (the buffers filled) to the end.
    let (t0, w0) = *timeline.iter().find(|(_, w)| *w >= 1 << 20).unwrap();
    let (t1, w1) = *timeline.last().unwrap();
    let rate = (w1 - w0) as f64 / t1.duration_since(t0).as_secs_f64();
    let cap = f64::from(CAP_KIB) * 1024.0;
    eprintln!(
        "capped at {CAP_KIB} KiB/s: {LEN} bytes in {took:?}; the server sent {:.1} KiB/s in the steady part",
        rate / 1024.0
    );
    assert!(
        (rate - cap).abs() <= cap * 0.05,
        "the server sent {:.1} KiB/s, the cap is {CAP_KIB}",
        rate / 1024.0
    );
    assert!(
        took >= Duration::from_secs_f64(LEN as f64 / cap * 0.9),
        "{took:?}"
    );
}
