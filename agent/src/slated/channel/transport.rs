//! tough's transport over [`Https`]: TUF metadata and the release manifest, read whole (they
//! are small; tough enforces each role's size limit, this caps what is read before that).

use super::https::Https;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
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
