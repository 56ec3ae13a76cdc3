//! `/etc/slate/fleet.toml`: where the fleet server is and who the device is to it. Written by
//! the imager from the spec's `[fleet]`; secrets (a target token) are never in it: they live
//! on `/data`, put there by an operator.

use crate::channel::Span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The server's base URL, HTTPS only (checked once, where it enters: the spec, the file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FleetUrl(url::Url);

impl TryFrom<String> for FleetUrl {
    type Error = String;

    fn try_from(s: String) -> Result<FleetUrl, String> {
        let u = url::Url::parse(&s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if u.scheme() != "https" {
            return Err(format!(
                "{s:?}: a fleet server is reached over https:// only (the device authenticates it)"
            ));
        }
        if u.host_str().is_none() {
            return Err(format!("{s:?} has no host"));
        }
        if u.query().is_some() || u.fragment().is_some() {
            return Err(format!("{s:?}: a base URL has no query or fragment"));
        }
        Ok(FleetUrl(u))
    }
}

impl From<FleetUrl> for String {
    fn from(u: FleetUrl) -> String {
        u.0.to_string()
    }
}

impl FleetUrl {
    /// The URL itself.
    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// The controller's base resource: `<server>/<tenant>/controller/v1/<controller id>`.
    pub fn controller(&self, tenant: &str, controller_id: &str) -> url::Url {
        let mut u = self.0.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty()
                .extend([tenant, "controller", "v1", controller_id]);
        }
        u
    }
}

/// The fleet client's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The DDI server's base URL.
    pub server: FleetUrl,
    /// CA certificates the server must chain to (a file in the image); none: Mozilla's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca: Option<String>,
    /// hawkBit's tenant.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The device's name on the server; none: derived from the device identity
    /// ([`controller_id_for`]), so no two devices flashed from one image share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_id: Option<String>,
    /// The poll interval before the server has said its own (`config.polling.sleep`).
    pub poll_interval: Span,
    /// First wait after a failed poll; doubles per failure up to the server's interval.
    pub backoff_base: Span,
    /// Sent in `configData` beside the device's own facts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

fn default_tenant() -> String {
    "DEFAULT".to_string()
}

/// The default controller id of the device whose identity has `fingerprint`: `slate-` and
/// the first 16 hex digits of its sha256, stable across reboots and updates, and what an
/// operator reads in `slate status` too.
pub fn controller_id_for(fingerprint: &crate::Fingerprint) -> String {
    let text = fingerprint.to_string();
    let hex: String = text
        .split_once(':')
        .map_or(text.as_str(), |(_, h)| h)
        .chars()
        .take(16)
        .collect();
    format!("slate-{}", hex.to_ascii_lowercase())
}

/// Whether `id` can name a controller in a URL path: hawkBit allows letters, digits and
/// `-_.:`; at most 64.
pub fn valid_controller_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_url_is_under_the_server_with_tenant_and_id() {
        let u = FleetUrl::try_from("https://fleet.example:8443/ddi".to_string()).unwrap();
        assert_eq!(
            u.controller("DEFAULT", "slate-00ff").as_str(),
            "https://fleet.example:8443/ddi/DEFAULT/controller/v1/slate-00ff"
        );
        let u = FleetUrl::try_from("https://fleet.example/".to_string()).unwrap();
        assert_eq!(
            u.controller("t", "d").as_str(),
            "https://fleet.example/t/controller/v1/d"
        );
    }

    #[test]
    fn only_https_without_query_is_a_server() {
        for bad in [
            "http://fleet.example",
            "fleet.example",
            "https://fleet.example/?a=1",
        ] {
            assert!(FleetUrl::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn controller_ids_come_from_the_fingerprint_and_are_checked() {
        let fp = crate::Fingerprint::of_der(b"a certificate");
        let id = controller_id_for(&fp);
        assert_eq!(id.len(), "slate-".len() + 16);
        assert!(
            fp.to_string().starts_with(&format!("sha256:{}", &id[6..])),
            "{id} {fp}"
        );
        assert!(valid_controller_id(&id));
        assert!(valid_controller_id("slate-abcd0123456789ab"));
        assert!(!valid_controller_id("a/b"));
        assert!(!valid_controller_id(""));
        assert!(!valid_controller_id(&"a".repeat(65)));
    }
}
