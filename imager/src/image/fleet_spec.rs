//! The spec's `[fleet]`: a hawkBit DDI server the device reports to and takes deployments
//! from (a third source beside `slate push` and the channel). Checked at build time and baked
//! in as `/etc/slate/fleet.toml` and the server's CA; no token is ever baked: the device
//! authenticates with its own mutual-TLS identity, made on first boot.

use crate::error::BuildError;
use crate::image::update_spec::read_ca;
use serde::Deserialize;
use slate_core::channel::Span;
use slate_core::config::paths;
use slate_core::fleet::{config::valid_controller_id, FleetConfig, FleetUrl};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `[fleet]` in an image spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// The DDI server's base URL (`https://…`; hawkBit's is the server root, goosebit's ends
    /// in `/ddi`).
    pub server: String,
    /// CA certificate(s) (PEM) the server must chain to [default: Mozilla's roots].
    #[serde(default)]
    pub server_ca: Option<PathBuf>,
    /// hawkBit's tenant [default: DEFAULT].
    #[serde(default)]
    pub tenant: Option<String>,
    /// The device's controller id [default: `slate-` and the first 16 hex digits of its
    /// identity's fingerprint, so every device has its own].
    #[serde(default)]
    pub controller_id: Option<String>,
    /// Poll interval until the server says its own [default: 5m].
    #[serde(default)]
    pub poll_interval: Option<Span>,
    /// Extra attributes sent in `configData` (site, customer, hardware revision).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The checked settings and the CA to bake.
#[derive(Debug)]
pub struct FleetFiles {
    /// `/etc/slate/fleet.toml`.
    pub config: FleetConfig,
    /// The CA's bytes, when given.
    pub ca: Option<Vec<u8>>,
}

impl FleetSpec {
    /// Checks the settings and reads the CA (`resolve` turns a spec-relative path into one to
    /// read).
    pub fn files(
        &self,
        spec_path: &Path,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> Result<FleetFiles, BuildError> {
        let bad = |field: &str, why: String| BuildError::Spec {
            path: spec_path.to_path_buf(),
            field: format!("fleet.{field}"),
            why,
        };
        let server = FleetUrl::try_from(self.server.clone()).map_err(|e| bad("server", e))?;
        let tenant = self.tenant.clone().unwrap_or_else(|| "DEFAULT".into());
        if !valid_controller_id(&tenant) {
            return Err(bad(
                "tenant",
                format!("{tenant:?}: letters, digits and -_.: only"),
            ));
        }
        if let Some(id) = &self.controller_id {
            if !valid_controller_id(id) {
                return Err(bad(
                    "controller_id",
                    format!("{id:?}: 1 to 64 letters, digits and -_.: (and every device flashed from this image shares it: leave it out to derive one per device)"),
                ));
            }
        }
        let interval = self.poll_interval.unwrap_or(Span(300));
        if interval.secs() < 5 {
            return Err(bad("poll_interval", "must be at least 5s".into()));
        }
        for (k, v) in &self.attributes {
            if k.is_empty() || k.len() > 64 || v.len() > 128 {
                return Err(bad(
                    "attributes",
                    format!("{k:?}: keys of 1 to 64 bytes, values of at most 128"),
                ));
            }
        }
        let ca = self
            .server_ca
            .as_ref()
            .map(|p| read_ca(spec_path, &resolve(p), "fleet.server_ca"))
            .transpose()?;
        Ok(FleetFiles {
            config: FleetConfig {
                server,
                server_ca: ca.as_ref().map(|_| format!("/{}", paths::FLEET_CA)),
                tenant,
                controller_id: self.controller_id.clone(),
                poll_interval: interval,
                backoff_base: Span(10),
                attributes: self.attributes.clone(),
            },
            ca,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> FleetSpec {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_fleet_table_becomes_the_devices_file() {
        let f = spec("server = \"https://fleet.example/ddi\"\nattributes = { site = \"north\" }")
            .files(Path::new("image.toml"), Path::to_path_buf)
            .unwrap();
        assert_eq!(f.config.tenant, "DEFAULT");
        assert_eq!(f.config.poll_interval, Span(300));
        assert_eq!(f.config.attributes["site"], "north");
        assert!(f.ca.is_none());
    }

    #[test]
    fn bad_fields_are_named() {
        for (text, field) in [
            ("server = \"http://fleet.example\"", "fleet.server"),
            (
                "server = \"https://f\"\ncontroller_id = \"a/b\"",
                "fleet.controller_id",
            ),
            (
                "server = \"https://f\"\npoll_interval = \"1s\"",
                "fleet.poll_interval",
            ),
            (
                "server = \"https://f\"\nserver_ca = \"/nonexistent/ca.pem\"",
                "fleet.server_ca",
            ),
        ] {
            let e = spec(text)
                .files(Path::new("image.toml"), Path::to_path_buf)
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
