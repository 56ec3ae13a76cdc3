//! A small HTTPS client for the channel: one connection per request (checks are hours apart),
//! rustls with ring, the image's CA file or Mozilla's roots, and timeouts on every step so a
//! stalled server costs a retry, not a hung agent.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Longest wait to connect and for the response head.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The client: TLS settings shared by every request, and the bandwidth cap if there is one.
#[derive(Clone)]
pub struct Https {
    tls: Arc<ClientConfig>,
    cap: Option<super::ratelimit::Cap>,
    /// With a cap: the socket's receive buffer, in bytes (see [`super::ratelimit::recv_buffer`]).
    recv_buffer: Option<u32>,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https")
            .field("capped", &self.cap.is_some())
            .finish_non_exhaustive()
    }
}

impl Https {
    /// Trusts the CA certificates in `ca` (PEM), or Mozilla's roots when `None`.
    pub fn new(ca: Option<&str>) -> Result<Https> {
        Https::with_identity(ca, None)
    }

    /// [`Https::new`] that shows the server `identity` (certificate and key) when it asks for
    /// a client certificate: how a fleet server knows the device.
    pub fn with_identity(
        ca: Option<&str>,
        identity: Option<(
            CertificateDer<'static>,
            rustls::pki_types::PrivateKeyDer<'static>,
        )>,
    ) -> Result<Https> {
        let mut roots = RootCertStore::empty();
        match ca {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("reading {path}"))?
                {
                    let cert = cert.with_context(|| format!("{path}: bad PEM certificate"))?;
                    roots
                        .add(cert)
                        .with_context(|| format!("{path}: unusable CA certificate"))?;
                }
                if roots.is_empty() {
                    bail!("{path}: no CA certificate");
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots);
        let tls = match identity {
            Some((cert, key)) => tls
                .with_client_auth_cert(vec![cert], key)
                .context("the device identity as a client certificate")?,
            None => tls.with_no_client_auth(),
        };
        Ok(Https {
            tls: Arc::new(tls),
            cap: None,
            recv_buffer: None,
        })
    }

    /// The same client with every connection's reads capped at `kib_s` KiB/s (one bucket
    /// for all of them).
    pub fn capped(mut self, kib_s: u32) -> Https {
        self.cap = Some(super::ratelimit::cap(kib_s));
        self.recv_buffer = Some(super::ratelimit::recv_buffer(kib_s));
        self
    }

    /// GET `url`, only the bytes `range` names when given (a Range request: from the first,
    /// up to and including the second, or to the end); returns the response head with its
    /// body still to be read.
    pub async fn get(
        &self,
        url: &Url,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<Response<Incoming>> {
        let ranges: Vec<_> = range.into_iter().collect();
        self.send(hyper::Method::GET, url, &ranges, None).await
    }

    /// GET several stretches of `url` in one request (`Range: bytes=a-b,c-d,…`, each as in
    /// [`Https::get`]): a server that can answers `multipart/byteranges`.
    pub async fn get_ranges(
        &self,
        url: &Url,
        ranges: &[(u64, Option<u64>)],
    ) -> Result<Response<Incoming>> {
        self.send(hyper::Method::GET, url, ranges, None).await
    }

    /// A request of `method` to `url` with a JSON `body` when given; the answer's head with
    /// its body still to be read (redirects are answers like any other: never followed).
    pub async fn send(
        &self,
        method: hyper::Method,
        url: &Url,
        ranges: &[(u64, Option<u64>)],
        json: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>> {
        if url.scheme() != "https" {
            bail!("{url}: only https:// is fetched");
        }
        let host = url.host_str().context("URL without a host")?.to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .with_context(|| format!("{host}: not a valid server name"))?;
        let connect = async {
            let tcp =
                super::ratelimit::connect(host.trim_matches(['[', ']']), port, self.recv_buffer)
                    .await
                    .with_context(|| format!("connecting to {host}:{port}"))?;
            // The cap counts what crosses the wire (TLS included), as the server measures it.
            let tcp = super::ratelimit::MaybeCapped::new(tcp, self.cap.clone());
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS with {host}:{port}"))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls))
                    .await
                    .context("HTTP handshake")?;
            tokio::spawn(conn);
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            let mut req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(hyper::header::HOST, url.authority())
                .header(hyper::header::USER_AGENT, "slated");
            if !ranges.is_empty() {
                let spec: Vec<String> = ranges
                    .iter()
                    .map(|(from, to)| match to {
                        Some(to) => format!("{from}-{to}"),
                        None => format!("{from}-"),
                    })
                    .collect();
                req = req.header(hyper::header::RANGE, format!("bytes={}", spec.join(",")));
            }
            let body = match json {
                Some(bytes) => {
                    req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                    Full::new(Bytes::from(bytes))
                }
                None => Full::new(Bytes::new()),
            };
            let req = req.body(body).context("building the request")?;
            sender
                .send_request(req)
                .await
                .with_context(|| format!("{method} {url}"))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .with_context(|| format!("{method} {url}: no answer within {CONNECT_TIMEOUT:?}"))?
    }
}
