//! The DDI requests: GET a document (bounded, JSON), PUT or POST a JSON body; one HTTPS
//! connection each, with the device's identity as the client certificate. Redirects are never
//! followed, and every answer that is not a success is an error naming the status.

use crate::slated::channel::Https;
use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Limited};
use hyper::{Method, StatusCode};
use slate_core::fleet::ddi::MAX_DOCUMENT;
use url::Url;

/// Why a request failed, as the loop treats it.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The server could not be reached or did not answer in time.
    #[error("{0:#}")]
    Network(anyhow::Error),
    /// It answered, but not with success.
    #[error("{method} {url}: the server answered {status}{hint}")]
    Status {
        /// The method.
        method: Method,
        /// The URL (no secrets: DDI URLs carry none).
        url: String,
        /// Its status.
        status: StatusCode,
        /// What it means for the device.
        hint: &'static str,
    },
    /// Its answer is not what DDI documents.
    #[error("{0:#}")]
    Refused(anyhow::Error),
}

impl RequestError {
    /// Whether the server asked the device to slow down (429) or is briefly unable (503).
    pub fn busy(&self) -> bool {
        matches!(self, RequestError::Status { status, .. }
            if *status == StatusCode::TOO_MANY_REQUESTS || *status == StatusCode::SERVICE_UNAVAILABLE)
    }
}

fn hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        300..=399 => {
            " (a redirect: the device follows none; set [fleet] server to where it points)"
        }
        401 | 403 => " (not authorised: is this device's identity or controller id registered?)",
        404 => " (no such resource: check [fleet] server and tenant)",
        409 => " (a conflict: the action changed on the server; the next poll sees how)",
        429 => " (too many requests: the device waits longer)",
        _ => "",
    }
}

/// GETs `url` and returns its body, refused when it is not a 200 or weighs more than
/// [`MAX_DOCUMENT`].
pub async fn get_document(https: &Https, url: &Url) -> Result<Vec<u8>, RequestError> {
    let resp = https
        .send(Method::GET, url, &[], None)
        .await
        .map_err(RequestError::Network)?;
    let status = resp.status();
    if status != StatusCode::OK {
        return Err(RequestError::Status {
            method: Method::GET,
            url: url.to_string(),
            status,
            hint: hint(status),
        });
    }
    if let Some(len) = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_DOCUMENT as u64 {
            return Err(RequestError::Refused(anyhow::anyhow!(
                "GET {url}: a document of {len} bytes, more than the {MAX_DOCUMENT} a DDI document may weigh"
            )));
        }
    }
    let body = tokio::time::timeout(
        crate::slated::channel::https::CONNECT_TIMEOUT,
        Limited::new(resp.into_body(), MAX_DOCUMENT).collect(),
    )
    .await
    .map_err(|_| RequestError::Network(anyhow::anyhow!("GET {url}: the body did not arrive in time")))?
    .map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            RequestError::Refused(anyhow::anyhow!(
                "GET {url}: the document is longer than the {MAX_DOCUMENT} bytes a DDI document may weigh"
            ))
        } else {
            RequestError::Network(anyhow::anyhow!("GET {url}: reading the body: {e}"))
        }
    })?;
    Ok(body.to_bytes().to_vec())
}

/// Sends `body` (JSON) to `url` with `method`; any 2xx is success.
pub async fn send_json(
    https: &Https,
    method: Method,
    url: &Url,
    body: Vec<u8>,
) -> Result<(), RequestError> {
    let resp = https
        .send(method.clone(), url, &[], Some(body))
        .await
        .map_err(RequestError::Network)?;
    let status = resp.status();
    // Drain a small answer so the server sees the exchange complete.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        Limited::new(resp.into_body(), 64 * 1024).collect(),
    )
    .await;
    if !status.is_success() {
        return Err(RequestError::Status {
            method,
            url: url.to_string(),
            status,
            hint: hint(status),
        });
    }
    Ok(())
}

/// Reads the device identity (made by the API's listener on first boot, or here when the
/// image serves plain HTTP) for the client certificate.
pub fn identity() -> Result<(
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
    slate_core::Fingerprint,
)> {
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let (id, _) = crate::slated::identity::Identity::load_or_make(
        std::path::Path::new(crate::slated::identity::DIR),
        &hostname,
    )
    .context("the device identity, which the fleet server knows the device by")?;
    if id.cert.is_empty() {
        bail!("the device identity has an empty certificate");
    }
    Ok((id.cert, id.key, id.fingerprint))
}
