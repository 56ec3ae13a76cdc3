//! tough's transport over [`Https`]: TUF metadata and the release manifest, read whole (they
//! are small; tough enforces each role's size limit, this caps what is read before that).

use super::https::Https;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

/// Largest metadata file read.
const MAX_METADATA: usize = 16 << 20;
/// Longest a metadata file may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Fetches TUF files; adds `?seed=&version=` so a CDN's logs show the rollout.
#[derive(Clone, Debug)]
pub struct HttpsTransport {
    /// The client.
    pub https: Https,
    /// `seed=…&version=…`.
    pub query: String,
    /// The first step of the root chain's walk (`N.root.json`) that failed for another
    /// reason than "not found": tough ends the walk on any error, so the check asks here
    /// whether the walk really reached the newest root.
    pub failed_root_step: Arc<Mutex<Option<(u64, String)>>>,
}

impl HttpsTransport {
    /// A transport for one check.
    pub fn new(https: Https, query: String) -> HttpsTransport {
        HttpsTransport {
            https,
            query,
            failed_root_step: Arc::default(),
        }
    }

    /// The failed step of the root chain's walk, if any (see [`trusted_root::walk_was_complete`]).
    ///
    /// [`trusted_root::walk_was_complete`]: super::trusted_root::walk_was_complete
    pub fn take_failed_root_step(&self) -> Option<(u64, String)> {
        self.failed_root_step
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

fn other(url: &Url, e: impl std::fmt::Display) -> TransportError {
    TransportError::new_with_cause(
        TransportErrorKind::Other,
        url.clone(),
        std::io::Error::other(e.to_string()),
    )
}

#[async_trait]
impl Transport for HttpsTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let fetched = self.fetch_whole(&url).await;
        if let (Err(e), Some(version)) = (&fetched, super::trusted_root::chain_step(&url)) {
            if e.kind() != TransportErrorKind::FileNotFound {
                let mut failed = self
                    .failed_root_step
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                failed.get_or_insert_with(|| (version, with_causes(e)));
            }
        }
        fetched
    }
}

/// An error and its causes on one line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl HttpsTransport {
    async fn fetch_whole(&self, url: &Url) -> Result<TransportStream, TransportError> {
        let url = url.clone();
        let mut with_query = url.clone();
        with_query.set_query(Some(&self.query));
        let resp = self
            .https
            .get(&with_query, None)
            .await
            .map_err(|e| other(&url, format!("{e:#}")))?;
        let status = resp.status();
        if status == hyper::StatusCode::NOT_FOUND {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        }
        if !status.is_success() {
            return Err(other(&url, format!("HTTP {status}")));
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_METADATA);
        let bytes = tokio::time::timeout(READ_TIMEOUT, body.collect())
            .await
            .map_err(|_| other(&url, "the body stalled"))?
            .map_err(|e| other(&url, e))?
            .to_bytes();
        let item: Result<Bytes, TransportError> = Ok(bytes);
        Ok(Box::pin(futures::stream::once(async move { item })))
    }
}
