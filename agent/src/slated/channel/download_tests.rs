//! `fetch` against a misbehaving HTTPS server on loopback: each fault a flaky CDN, proxy or
//! link shows, and what the download must make of it (the bytes the install reads are the
//! signed ones, or the install gets an error; never a mixture).

use super::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    DropAtHalf,
    ServerErrorFirst,
    ServerErrorAlways,
    IgnoreRange,
    ChangedSize,
    StallAtHalf,
    WrongBytes,
    /// Every answer trickles 1 KiB every 100 ms (10 KiB/s): never a stall.
    Trickle,
    /// Every answer is honest but stops after 5% of the payload: progress on each connection.
    DropAfterEvery5Percent,
    /// Several ranges are answered with the first alone (a server without multipart answers).
    FirstRangeOnly,
    /// Several ranges are answered with the whole file, `200` (as some object stores do).
    WholeForSeveral,
    /// The first answer to several ranges stops half way through its second part.
    DropInSecondPart,
}

const LEN: usize = 300_000;

fn payload() -> Vec<u8> {
    (0..LEN)
        .map(|i| u8::try_from(i * 7 % 251).unwrap_or(0))
        .collect()
}

/// A request's first stretch, `Range: bytes=from-[to]`.
type Range = Option<(usize, Option<usize>)>;

/// A request's stretches, `Range: bytes=from-[to],…` (empty: no Range).
type Ranges = Vec<(usize, Option<usize>)>;

struct Server {
    port: u16,
    ca: tempfile::NamedTempFile,
    requests: Arc<AtomicUsize>,
    /// Each request's ranges (empty: none).
    ranges: Arc<std::sync::Mutex<Vec<Ranges>>>,
}

/// A CA file for the client and the server's TLS settings, for a server on 127.0.0.1.
pub(in crate::slated::channel) fn tls_pair() -> (tempfile::NamedTempFile, Arc<rustls::ServerConfig>)
{
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let mut ca_file = tempfile::NamedTempFile::new().unwrap();
    ca_file.write_all(ca_cert.pem().as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (ca_file, Arc::new(config))
}

/// The stretches of a request head's `Range: bytes=from-[to],…` header.
fn ranges_of(head: &str) -> Ranges {
    let Some(r) = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("range: bytes=")
            .map(str::to_string)
    }) else {
        return Vec::new();
    };
    r.trim()
        .split(',')
        .filter_map(|one| {
            let (from, to) = one.trim().split_once('-')?;
            Some((from.parse().ok()?, to.parse().ok()))
        })
        .collect()
}

/// An answer to several ranges as nginx writes it (`multipart/byteranges`).
fn multipart(data: &[u8], ranges: &[(usize, Option<usize>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for &(from, to) in ranges {
        let last = to.unwrap_or(data.len() - 1).min(data.len() - 1);
        body.extend_from_slice(
            format!(
                "\r\n--00000000000000000001\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {from}-{last}/{}\r\n\r\n",
                data.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data[from..=last]);
    }
    body.extend_from_slice(b"\r\n--00000000000000000001--\r\n");
    let mut out = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Type: multipart/byteranges; boundary=00000000000000000001\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

async fn answer<S: tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    fault: Fault,
    n: usize,
    all: &[(usize, Option<usize>)],
    data: &[u8],
) -> std::io::Result<()> {
    let range: Range = all.first().copied();
    let multipart_faults = [
        Fault::None,
        Fault::FirstRangeOnly,
        Fault::WholeForSeveral,
        Fault::DropInSecondPart,
    ];
    if all.len() > 1 && multipart_faults.contains(&fault) {
        return match fault {
            Fault::FirstRangeOnly => {
                let (from, to) = all[0];
                let last = to.unwrap_or(data.len() - 1);
                let mut out = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{last}/{}\r\nConnection: close\r\n\r\n",
                    last + 1 - from,
                    data.len()
                )
                .into_bytes();
                out.extend_from_slice(&data[from..=last]);
                s.write_all(&out).await
            }
            Fault::WholeForSeveral => {
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    data.len()
                )
                .into_bytes();
                out.extend_from_slice(data);
                s.write_all(&out).await
            }
            Fault::DropInSecondPart if n == 0 => {
                let whole = multipart(data, all);
                let heads: Vec<usize> = whole
                    .windows(4)
                    .enumerate()
                    .filter(|(_, w)| *w == b"\r\n\r\n")
                    .map(|(i, _)| i + 4)
                    .collect();
                // The response's head, the first part's, then the second part's.
                let second_body = heads[2];
                let (from, to) = all[1];
                let half = (to.unwrap_or(data.len() - 1) - from) / 2;
                s.write_all(&whole[..second_body + half]).await?;
                s.flush().await
            }
            _ => s.write_all(&multipart(data, all)).await,
        };
    }
    let partial = |total: usize, (from, to): (usize, Option<usize>), data: &[u8]| {
        let last = to.unwrap_or(data.len() - 1).min(data.len() - 1);
        let body = &data[from..=last];
        let mut out = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{last}/{total}\r\nConnection: close\r\n\r\n",
            body.len(),
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    };
    let honest = |range: Range, data: &[u8]| match range {
        Some(r) => partial(data.len(), r, data),
        None => {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                data.len()
            )
            .into_bytes();
            out.extend_from_slice(data);
            out
        }
    };
    let half_then = |data: &[u8]| {
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            data.len()
        )
        .into_bytes();
        out.extend_from_slice(&data[..data.len() / 2]);
        out
    };
    match (fault, n) {
        (Fault::DropAtHalf | Fault::IgnoreRange | Fault::ChangedSize, 0) => {
            s.write_all(&half_then(data)).await?;
            s.flush().await?;
            Ok(())
        }
        (Fault::StallAtHalf, 0) => {
            s.write_all(&half_then(data)).await?;
            s.flush().await?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        }
        (Fault::ServerErrorFirst, 0) | (Fault::ServerErrorAlways, _) => {
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await
        }
        (Fault::IgnoreRange, _) => s.write_all(&honest(None, data)).await,
        (Fault::Trickle, _) => {
            let whole = honest(range, data);
            for piece in whole.chunks(1024) {
                s.write_all(piece).await?;
                s.flush().await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        }
        (Fault::DropAfterEvery5Percent, _) => {
            let whole = honest(range, data);
            let head = whole
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |p| p + 4);
            let end = (head + LEN / 20).min(whole.len());
            s.write_all(&whole[..end]).await?;
            s.flush().await
        }
        (Fault::ChangedSize, _) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0; 10]);
            s.write_all(&honest(range, &longer)).await
        }
        (Fault::WrongBytes, _) => {
            let mut other = data.to_vec();
            other[LEN / 3] ^= 1;
            s.write_all(&honest(range, &other)).await
        }
        _ => s.write_all(&honest(range, data)).await,
    }
}

async fn serve(fault: Fault) -> Server {
    serve_bytes(fault, payload()).await
}

/// [`serve`] of other bytes.
async fn serve_bytes(fault: Fault, body: Vec<u8>) -> Server {
    let (ca, config) = tls_pair();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let ranges = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ranges.clone();
    let data = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let data = data.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let all = ranges_of(&String::from_utf8_lossy(&head));
                seen.lock().unwrap().push(all.clone());
                let _ = answer(&mut tls, fault, n, &all, &data).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server {
        port,
        ca,
        requests,
        ranges,
    }
}

/// A client of `server` expecting the test payload, with a short patience.
fn client(server: &Server) -> (Https, Url, Expected, Patience) {
    let https = Https::new(Some(server.ca.path().to_str().unwrap())).unwrap();
    let url = Url::parse(&format!("https://127.0.0.1:{}/b.slate", server.port)).unwrap();
    let expected = Expected {
        length: LEN as u64,
        sha256: slate_core::Digest32(Sha256::digest(payload()).into()),
    };
    let patience = Patience {
        attempts: 4,
        stall: Duration::from_secs(2),
        first_backoff: Duration::from_millis(10),
        connections: 8,
        min_bytes_s: 50 << 10,
        grace: Duration::from_secs(2),
    };
    (https, url, expected, patience)
}

struct Run {
    result: Result<()>,
    delivered: Result<Vec<u8>, String>,
    stats: Fetched,
    requests: usize,
    ranges: Vec<Ranges>,
}

/// The install's side of a download in a test: reads the stream to its end (or its error).
fn consume(mut reader: StreamReader) -> tokio::task::JoinHandle<Result<Vec<u8>, String>> {
    tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        reader
            .read_to_end(&mut v)
            .map(|_| v)
            .map_err(|e| e.to_string())
    })
}

async fn run(fault: Fault) -> Run {
    run_with(fault, None).await
}

/// `prefix`: where the slot's bytes sit in the bundle, and the slot (a file) holding them.
async fn run_with(fault: Fault, prefix: Option<(u64, &[u8])>) -> Run {
    let server = serve(fault).await;
    let (https, url, expected, patience) = client(&server);
    let (tx, reader) = StreamReader::new();
    let consumer = consume(reader);
    let slot = tempfile::NamedTempFile::new().unwrap();
    let prefix = prefix.map(|(offset, bytes)| {
        std::fs::write(slot.path(), bytes).unwrap();
        SlotPrefix {
            at: super::super::resume::Prefix {
                bundle_offset: offset,
                len: 100_000,
            },
            device: slot.path().to_path_buf(),
        }
    });
    let mut stats = Fetched::default();
    let pieces: Vec<Piece> = prefix.into_iter().map(Piece::from).collect();
    let result = fetch(&https, &url, &expected, pieces, tx, &mut stats, &patience).await;
    let delivered = consumer.await.unwrap();
    let ranges = server.ranges.lock().unwrap().clone();
    Run {
        result,
        delivered,
        stats,
        requests: server.requests.load(Ordering::SeqCst),
        ranges,
    }
}

fn delivered_whole(r: &Run) {
    assert!(r.result.is_ok(), "{:?}", r.result);
    assert_eq!(r.delivered.as_ref().map(Vec::len), Ok(LEN));
    assert!(r.delivered.as_ref().is_ok_and(|d| *d == payload()));
}

#[tokio::test]
async fn a_clean_download_takes_one_request() {
    let r = run(Fault::None).await;
    delivered_whole(&r);
    assert_eq!(
        (r.requests, r.stats.resumes, r.stats.bytes),
        (1, 0, LEN as u64)
    );
}

#[tokio::test]
async fn a_drop_at_half_continues_with_range_and_fetches_nothing_twice() {
    let r = run(Fault::DropAtHalf).await;
    delivered_whole(&r);
    assert_eq!((r.requests, r.stats.resumes, r.stats.restarts), (2, 1, 0));
    // Every byte came over the wire once.
    assert_eq!(r.stats.bytes, LEN as u64);
}

#[tokio::test]
async fn a_stall_counts_as_a_drop() {
    let r = run(Fault::StallAtHalf).await;
    delivered_whole(&r);
    assert_eq!(r.stats.resumes, 1);
    assert_eq!(r.stats.bytes, LEN as u64);
}

#[tokio::test]
async fn a_server_error_is_retried() {
    let r = run(Fault::ServerErrorFirst).await;
    delivered_whole(&r);
    assert_eq!(r.requests, 2);
}

#[tokio::test]
async fn a_server_that_ignores_range_is_read_again_and_the_delivered_part_skipped() {
    let r = run(Fault::IgnoreRange).await;
    delivered_whole(&r);
    assert_eq!((r.stats.resumes, r.stats.restarts), (0, 1));
    assert_eq!(r.stats.bytes, (LEN + LEN / 2) as u64);
}

#[tokio::test]
async fn a_changed_size_is_refused_and_the_install_gets_an_error() {
    let r = run(Fault::ChangedSize).await;
    let e = format!("{:#}", r.result.unwrap_err());
    assert!(e.contains("refusing a mixture"), "{e}");
    assert!(
        r.delivered.is_err(),
        "the install read to the end of a mixture"
    );
}

#[tokio::test]
async fn bytes_that_are_not_the_signed_ones_never_reach_a_clean_end() {
    let r = run(Fault::WrongBytes).await;
    let err = r.result.unwrap_err();
    // Typed, so the channel takes another tier next time (not a network failure to resume).
    assert!(mismatched(&err) && !gave_up(&err));
    let e = format!("{err:#}");
    assert!(e.contains("does not match the signed target"), "{e}");
    let d = r.delivered.unwrap_err();
    assert!(d.contains("does not match the signed target"), "{d}");
}

#[tokio::test]
async fn a_server_that_keeps_failing_is_given_up_with_the_reason() {
    let r = run(Fault::ServerErrorAlways).await;
    let e = format!("{:#}", r.result.unwrap_err());
    assert!(
        e.contains("gave up after 4 tries at byte 0") && e.contains("503"),
        "{e}"
    );
    assert!(r.delivered.is_err());
    assert_eq!(r.requests, 4);
}

/// Where the slot's 100,000 prefix bytes start in the test bundle.
const PREFIX_AT: usize = 1000;

#[tokio::test]
async fn a_durable_prefix_in_the_slot_is_not_fetched_again() {
    let data = payload();
    let r = run_with(
        Fault::None,
        Some((PREFIX_AT as u64, &data[PREFIX_AT..PREFIX_AT + 100_000])),
    )
    .await;
    delivered_whole(&r);
    assert_eq!(r.stats.from_slot, 100_000);
    assert_eq!(r.stats.bytes, (LEN - 100_000) as u64);
    // The head up to the prefix (a bounded range) and the rest after it, in one request.
    assert_eq!(
        r.ranges,
        vec![vec![(0, Some(PREFIX_AT - 1)), (PREFIX_AT + 100_000, None)]]
    );
    assert_eq!((r.requests, r.stats.requests), (1, 1));
}

#[tokio::test]
async fn a_prefix_that_did_not_survive_the_cut_never_reaches_a_clean_end() {
    let mut torn = payload()[PREFIX_AT..PREFIX_AT + 100_000].to_vec();
    torn[50_000] ^= 0x80;
    let r = run_with(Fault::None, Some((PREFIX_AT as u64, &torn))).await;
    let e = format!("{:#}", r.result.unwrap_err());
    assert!(e.contains("does not match the signed target"), "{e}");
    assert!(r.delivered.is_err());
}

#[tokio::test]
async fn a_slot_that_cannot_be_read_is_downloaded_instead() {
    // The slot ends before the prefix the record promised.
    let short = payload()[PREFIX_AT..PREFIX_AT + 10].to_vec();
    let r = run_with(Fault::None, Some((PREFIX_AT as u64, &short))).await;
    delivered_whole(&r);
    assert_eq!(r.stats.from_slot, 0);
    // The first request asked for the stretches around the prefix in one answer; what came
    // of its second part before the slot failed is read again with the prefix's bytes.
    assert!(r.stats.bytes >= LEN as u64, "{:?}", r.stats);
    assert_eq!(r.stats.requests, 2);
    assert_eq!(r.ranges[1], vec![(PREFIX_AT, None)]);
}

#[tokio::test]
async fn a_server_that_ignores_the_range_end_is_cut_at_the_prefix() {
    let data = payload();
    let r = run_with(
        Fault::IgnoreRange,
        Some((PREFIX_AT as u64, &data[PREFIX_AT..PREFIX_AT + 100_000])),
    )
    .await;
    delivered_whole(&r);
    assert_eq!(r.stats.from_slot, 100_000);
}

/// The install reads the first KiB and stops (it refused the bundle): what `fetch` says then.
async fn run_refused_early(fault: Fault) -> (Result<()>, Fetched) {
    let server = serve(fault).await;
    let (https, url, expected, patience) = client(&server);
    let (tx, mut reader) = StreamReader::new();
    let consumer = tokio::task::spawn_blocking(move || {
        let mut head = [0u8; 1024];
        reader.read_exact(&mut head).map(|_| head.len())
    });
    let mut stats = Fetched::default();
    let result = fetch(
        &https,
        &url,
        &expected,
        Vec::new(),
        tx,
        &mut stats,
        &patience,
    )
    .await;
    assert_eq!(consumer.await.unwrap().unwrap(), 1024);
    (result, stats)
}

#[tokio::test]
async fn a_bundle_the_install_refuses_is_still_checked_against_the_signed_hash() {
    // The signed bytes: the refusal is about the release itself.
    let (ok, stats) = run_refused_early(Fault::None).await;
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(stats.bytes, LEN as u64);
    // A corrupt copy: the refusal may be the mirror's fault, and the error says so.
    let (bad, _) = run_refused_early(Fault::WrongBytes).await;
    let e = format!("{:#}", bad.unwrap_err());
    assert!(e.contains("does not match the signed target"), "{e}");
}

/// A trickle that never stalls (the old code reset its tries at every byte and waited for
/// ever) is given up once its average falls below the minimum, and the install gets an
/// error, so the lock is freed.
#[tokio::test]
async fn a_trickle_below_the_minimum_average_is_given_up() {
    let r = run(Fault::Trickle).await;
    let e = r.result.expect_err("a 10 KiB/s trickle was taken");
    assert!(gave_up(&e), "{e:#}");
    assert!(
        format!("{e:#}").contains("below the minimum average of 50 KiB/s"),
        "{e:#}"
    );
    assert!(r.delivered.is_err(), "the install was not told");
}

/// A server that drops every connection after 5% more (progress each time, so the tries
/// never run out) is given up at the connection cap; the next check resumes from the slot.
#[tokio::test]
async fn a_server_that_drops_after_every_5_percent_is_given_up_at_the_connection_cap() {
    let r = run(Fault::DropAfterEvery5Percent).await;
    let e = r.result.expect_err("twenty connections were opened");
    assert!(gave_up(&e), "{e:#}");
    assert!(format!("{e:#}").contains("after 8 connections"), "{e:#}");
    assert_eq!(r.requests, 8);
    assert!(r.delivered.is_err(), "the install was not told");
    assert_eq!(r.stats.resumes, 7);
}

/// Pieces a download takes from the device's disks instead of the server.
#[path = "download_pieces_tests.rs"]
mod pieces;
