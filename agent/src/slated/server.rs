//! The agent's listener: HTTPS with client certificates (plain HTTP only when the image asks
//! for `insecure_http`), and the rules that keep it up whatever the network does:
//!
//! - a cap on connections in all and per address, where an unauthenticated connection makes
//!   room for a newer one ([`crate::slated::conntable`]); an operator's connection is never pushed out;
//! - a deadline on the TLS handshake and on reading each request's headers (which also ends
//!   idle keep-alive connections);
//! - accept errors (descriptors exhausted, aborted connections) logged at most once a second
//!   and survived, never the end of the agent;
//! - the descriptor limit raised to the hard limit at start.
//!
//! Who is calling is decided here, once per connection, and handed to the request handler as
//! a [`Caller`].

use crate::slated::conntable::{Admission, Caps, Table};
use crate::slated::identity::Identity;
use crate::slated::operators::OperatorCa;
use crate::slated::throttle::Throttle;
use anyhow::{Context, Result};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use slate_core::Fingerprint;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections kept in all.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections kept from one address.
pub const MAX_PER_ADDRESS: usize = 64;
/// Time a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection is safe from being pushed out by newer ones: a TLS handshake
/// on a LAN takes milliseconds; this keeps churn from an operator's own NAT address from
/// cutting it off, and is short enough that a flood's connections soon become evictable.
pub const HANDSHAKE_GRACE: Duration = Duration::from_secs(1);
/// Time a client has to send a request's headers (and the most a connection idles).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// Who sent a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The fingerprint of the client certificate the operator CA issued, if one was presented
    /// (rustls has checked it against the CA, its dates, its key usage and the CRL).
    pub operator: Option<Fingerprint>,
    /// What that certificate allows (nothing without one).
    pub roles: slate_core::operator::Roles,
}

/// Builds the TLS configuration: the device identity as server certificate; client
/// certificates checked by the operator CA's verifier ([`OperatorCa`]: path, CRL, the clock
/// floor). Without a CA, no client certificate is accepted and no request is authorised.
pub fn tls_config(
    identity: &Identity,
    operators: Option<&Arc<OperatorCa>>,
) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = match operators {
        Some(ca) => ca.verifier(),
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .context("the device identity as server certificate")?;
    Ok(Arc::new(config))
}

/// Raises the soft descriptor limit to the hard one, so a flood meets the connection caps
/// before it meets EMFILE.
pub fn raise_fd_limit() {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(max) = lim.maximum {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
}

/// Serves connections on `listener` forever with `serve_one(stream, caller)`, over TLS when
/// `tls` is given. Returns only if the listener itself is gone.
pub async fn run<F, Fut>(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<ServerConfig>>,
    serve_one: F,
) where
    F: Fn(Box<dyn Io>, Caller) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let table = Arc::new(Mutex::new(Table::default()));
    let closers: Arc<Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<()>>>> =
        Arc::default();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let caps = Caps {
        total: MAX_CONNECTIONS,
        per_address: MAX_PER_ADDRESS,
        grace: HANDSHAKE_GRACE,
    };
    let budget = Arc::new(Mutex::new(crate::slated::handshakes::Budget::new(
        crate::slated::handshakes::Limits::AGENT,
        std::time::Instant::now(),
    )));
    let over_budget = Arc::new(Mutex::new(Throttle::default()));
    let mut accept_errors = Throttle::default();
    let mut refused = Throttle::default();
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                if let Some(held_back) = accept_errors.admit() {
                    tracing::warn!(held_back, "accepting a connection failed: {e}");
                }
                // EMFILE and friends: give closing connections a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (decision, id) = crate::lock(&table).admit(addr.ip(), caps, std::time::Instant::now());
        if let Admission::AcceptEvicting(old) = decision {
            if let Some(close) = crate::lock(&closers).remove(&old) {
                let _ = close.send(());
            }
        }
        let Some(id) = id else {
            if let Some(held_back) = refused.admit() {
                tracing::warn!(
                    held_back,
                    "connection from {addr} refused: every place is held by operators"
                );
            }
            continue;
        };
        let (close_tx, close_rx) = tokio::sync::oneshot::channel();
        crate::lock(&closers).insert(id, close_tx);
        let (table, closers, acceptor, serve_one, budget, over_budget) = (
            table.clone(),
            closers.clone(),
            acceptor.clone(),
            serve_one.clone(),
            budget.clone(),
            over_budget.clone(),
        );
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let work = async {
                match acceptor {
                    None => {
                        let caller = Caller {
                            addr,
                            operator: None,
                            roles: slate_core::operator::Roles::default(),
                        };
                        serve_one(Box::new(stream), caller).await;
                    }
                    Some(acceptor) => {
                        // The handshake's cost starts with the client's first bytes: only then
                        // is a token of the handshake budget spent, or the connection closed.
                        // (peek, not readable(): readiness may be reported before any byte.)
                        let mut first = [0u8; 1];
                        let hello =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first));
                        if !matches!(hello.await, Ok(Ok(n)) if n > 0) {
                            return;
                        }
                        if !crate::lock(&budget).allow(addr.ip(), std::time::Instant::now()) {
                            if let Some(held_back) = crate::lock(&over_budget).admit() {
                                tracing::warn!(held_back, %addr, "too many TLS handshakes; closing before the handshake");
                            }
                            return;
                        }
                        let Ok(Ok(tls)) =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        else {
                            return;
                        };
                        let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                        let operator = cert.map(|c| Fingerprint::of_der(c));
                        let roles = cert
                            .map(crate::slated::operators::roles_of)
                            .unwrap_or_default();
                        if operator.is_some() {
                            crate::lock(&table).authenticated(id);
                        }
                        serve_one(
                            Box::new(tls),
                            Caller {
                                addr,
                                operator,
                                roles,
                            },
                        )
                        .await;
                    }
                }
            };
            tokio::select! {
                _ = work => {}
                _ = close_rx => {}
            }
            crate::lock(&table).remove(id);
            crate::lock(&closers).remove(&id);
        });
    }
}

/// A connection's byte stream, plain or TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
