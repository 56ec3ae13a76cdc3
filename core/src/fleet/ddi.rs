//! DDI's documents as the device reads and writes them (hawkBit's "Direct Device Integration
//! API", v1): the base resource it polls, a deployment, a cancel request, and the feedback and
//! `configData` it sends. Every document read is checked here before the agent acts on it:
//! links must stay on the server the image names (a server cannot send the device elsewhere),
//! an artefact must announce its size and sha256, numbers must fit.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most a server document may weigh; a larger one is refused unread.
pub const MAX_DOCUMENT: usize = 256 * 1024;
/// The poll interval is held within these bounds whatever the server says (seconds).
pub const SLEEP_BOUNDS: (u64, u64) = (5, 24 * 3600);

/// Why a server document was refused: what is wrong and where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DdiError {
    /// Not the JSON DDI describes.
    #[error("the server's {what} is not a DDI document: {why}")]
    Malformed {
        /// Which document.
        what: &'static str,
        /// serde's message (line and column).
        why: String,
    },
    /// A link leaves the server the image names.
    #[error(
        "the server's {what} link {href:?} leaves {server} (links must stay on the fleet server)"
    )]
    ForeignLink {
        /// Which link.
        what: &'static str,
        /// The link.
        href: String,
        /// The server's origin.
        server: String,
    },
    /// A field is missing or out of range.
    #[error("the server's {what}: {why}")]
    Field {
        /// Which document and field.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// A link (`{"href": …}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Where it points.
    pub href: String,
}

/// The base resource's `config`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseConfig {
    /// How often to poll.
    #[serde(default)]
    pub polling: Polling,
}

/// `config.polling`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polling {
    /// `HH:MM:SS`.
    #[serde(default)]
    pub sleep: Option<String>,
}

/// `GET {tenant}/controller/v1/{controllerId}`: what the server wants of the device now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Polling settings.
    #[serde(default)]
    pub config: BaseConfig,
    /// What to do: `deploymentBase`, `cancelAction`, `configData`, `installedBase`.
    #[serde(default, rename = "_links")]
    pub links: BTreeMap<String, Link>,
}

/// What one poll asks of the device, its links checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    /// Seconds until the next poll (bounded by [`SLEEP_BOUNDS`]); none when the server said
    /// nothing.
    pub sleep: Option<u64>,
    /// A deployment to follow: its URL and action id.
    pub deployment: Option<(url::Url, u64)>,
    /// A cancel request: its URL and action id.
    pub cancel: Option<(url::Url, u64)>,
    /// The server wants the device's attributes.
    pub config_data: Option<url::Url>,
}

/// How the server wants a step handled (`download`, `update`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Handling {
    /// Not now (a maintenance window is closed, or a download-only deployment's update).
    Skip,
    /// When the device's own policy allows.
    Attempt,
    /// Now, whatever the device's windows say.
    Forced,
}

/// `deployment.maintenanceWindow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    /// The server's window is open.
    Available,
    /// It is closed: download, do not update.
    Unavailable,
}

/// An artefact's hashes (sha1 and md5 are not checked: only sha256 counts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashes {
    /// Hex.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Hex (hawkBit's first hash; read, never trusted).
    #[serde(default)]
    pub sha1: Option<String>,
    /// Hex.
    #[serde(default)]
    pub md5: Option<String>,
}

/// One artefact of a chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Its file name.
    pub filename: String,
    /// Its hashes.
    #[serde(default)]
    pub hashes: Hashes,
    /// Its size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// `download` (HTTPS) and `download-http`.
    #[serde(default, rename = "_links")]
    pub links: BTreeMap<String, Link>,
}

/// One software module of a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// hawkBit's module type (`os`, `bApp`, …).
    #[serde(default)]
    pub part: String,
    /// The module's version.
    #[serde(default)]
    pub version: String,
    /// The module's name.
    #[serde(default)]
    pub name: String,
    /// Its files.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
}

/// `deployment`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentBody {
    /// Download handling.
    pub download: Handling,
    /// Update handling.
    pub update: Handling,
    /// The server's maintenance window, when the action has one.
    #[serde(default, rename = "maintenanceWindow")]
    pub maintenance_window: Option<Window>,
    /// The software modules.
    #[serde(default)]
    pub chunks: Vec<Chunk>,
}

/// `GET …/deploymentBase/{actionId}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The action id (a string in DDI).
    pub id: String,
    /// What to install and how.
    pub deployment: DeploymentBody,
}

/// `GET …/cancelAction/{actionId}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// This cancel action's id.
    pub id: String,
    /// `{"stopId": …}`: the action to stop.
    #[serde(rename = "cancelAction")]
    pub cancel_action: CancelAction,
}

/// `cancelAction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelAction {
    /// The action to stop.
    #[serde(rename = "stopId")]
    pub stop_id: String,
}

/// The bundle a deployment carries, checked: one `.slate` artefact with its size, sha256 and
/// an HTTPS link on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The action id.
    pub action: u64,
    /// The module's version (what the server says; the bundle's manifest decides).
    pub version: String,
    /// The artefact's file name.
    pub filename: String,
    /// Where to fetch it.
    pub url: url::Url,
    /// Its announced size.
    pub size: u64,
    /// Its announced sha256.
    pub sha256: [u8; 32],
    /// Download handling.
    pub download: Handling,
    /// Update handling.
    pub update: Handling,
    /// The server's window, when it has one.
    pub window: Option<Window>,
}

impl Offer {
    /// Whether the server asks for the bundle to be staged only (downloaded and verified, not
    /// switched to): a download-only deployment or a closed maintenance window.
    pub fn stage_only(&self) -> bool {
        self.update == Handling::Skip || self.window == Some(Window::Unavailable)
    }
}

/// Parses `HH:MM:SS` (hours may exceed 23) into seconds, held within [`SLEEP_BOUNDS`].
pub fn parse_sleep(s: &str) -> Option<u64> {
    let mut parts = s.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let n = |t: &str| -> Option<u64> {
        (!t.is_empty() && t.len() <= 6 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (h, m, sec) = (n(h)?, n(m)?, n(sec)?);
    if m > 59 || sec > 59 {
        return None;
    }
    Some((h * 3600 + m * 60 + sec).clamp(SLEEP_BOUNDS.0, SLEEP_BOUNDS.1))
}

/// Whether `href` is on `server`'s origin (scheme, host, port) and under its path; returns
/// it parsed.
pub fn on_server(server: &url::Url, what: &'static str, href: &str) -> Result<url::Url, DdiError> {
    let foreign = || DdiError::ForeignLink {
        what,
        href: href.chars().take(200).collect(),
        server: server.origin().ascii_serialization(),
    };
    let u = url::Url::parse(href).map_err(|_| foreign())?;
    if u.origin() != server.origin() || !u.path().starts_with(server.path().trim_end_matches('/')) {
        return Err(foreign());
    }
    Ok(u)
}

/// The action id at the end of a `deploymentBase/{id}` or `cancelAction/{id}` link.
fn action_id(what: &'static str, u: &url::Url) -> Result<u64, DdiError> {
    u.path_segments()
        .and_then(|mut s| s.next_back())
        .and_then(|last| last.parse::<u64>().ok())
        .ok_or_else(|| DdiError::Field {
            what,
            why: format!("{u} does not end in an action id"),
        })
}

fn parse<T: serde::de::DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, DdiError> {
    if body.len() > MAX_DOCUMENT {
        return Err(DdiError::Malformed {
            what,
            why: format!("{} bytes, more than {MAX_DOCUMENT}", body.len()),
        });
    }
    serde_json::from_slice(body).map_err(|e| DdiError::Malformed {
        what,
        why: e.to_string(),
    })
}

/// Reads the base resource and checks its links against `server`.
pub fn read_base(server: &url::Url, body: &[u8]) -> Result<Asked, DdiError> {
    let base: Base = parse("base resource", body)?;
    let mut asked = Asked {
        sleep: base.config.polling.sleep.as_deref().and_then(parse_sleep),
        ..Asked::default()
    };
    if let Some(l) = base.links.get("deploymentBase") {
        let u = on_server(server, "deploymentBase", &l.href)?;
        let id = action_id("deploymentBase", &u)?;
        asked.deployment = Some((u, id));
    }
    if let Some(l) = base.links.get("cancelAction") {
        let u = on_server(server, "cancelAction", &l.href)?;
        let id = action_id("cancelAction", &u)?;
        asked.cancel = Some((u, id));
    }
    if let Some(l) = base.links.get("configData") {
        asked.config_data = Some(on_server(server, "configData", &l.href)?);
    }
    Ok(asked)
}

/// Reads a deployment and picks its Slate bundle: the one artefact whose name ends in
/// `.slate` (or the only artefact), with its size, sha256 and an HTTPS download link on
/// `server`.
pub fn read_deployment(server: &url::Url, body: &[u8]) -> Result<Offer, DdiError> {
    const WHAT: &str = "deployment";
    let d: Deployment = parse(WHAT, body)?;
    let field = |why: String| DdiError::Field { what: WHAT, why };
    let action =
        d.id.parse::<u64>()
            .map_err(|_| field(format!("id {:?} is not an action id", d.id)))?;
    let all: Vec<(&Chunk, &Artifact)> = d
        .deployment
        .chunks
        .iter()
        .flat_map(|c| c.artifacts.iter().map(move |a| (c, a)))
        .collect();
    let slate: Vec<_> = all
        .iter()
        .filter(|(_, a)| a.filename.ends_with(".slate"))
        .collect();
    let (chunk, artifact) = match (slate.as_slice(), all.as_slice()) {
        ([one], _) => **one,
        ([], [only]) => *only,
        ([], []) => return Err(field(format!("action {action} has no artefact"))),
        ([], _) => {
            return Err(field(format!(
                "action {action} has {} artefacts and none named *.slate",
                all.len()
            )))
        }
        (many, _) => {
            return Err(field(format!(
                "action {action} has {} *.slate artefacts; a deployment installs one",
                many.len()
            )))
        }
    };
    let size = artifact.size.ok_or_else(|| {
        field(format!(
            "artefact {:?} does not announce its size",
            artifact.filename
        ))
    })?;
    let sha256 = artifact
        .hashes
        .sha256
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| {
            field(format!(
                "artefact {:?} announces no sha256 (sha1 and md5 are not enough)",
                artifact.filename
            ))
        })?;
    let link = artifact.links.get("download").ok_or_else(|| {
        field(format!(
            "artefact {:?} has no https download link",
            artifact.filename
        ))
    })?;
    let url = on_server(server, "download", &link.href)?;
    Ok(Offer {
        action,
        version: chunk.version.clone(),
        filename: artifact.filename.clone(),
        url,
        size,
        sha256,
        download: d.deployment.download,
        update: d.deployment.update,
        window: d.deployment.maintenance_window,
    })
}

/// Reads a cancel request: the id of the action to stop.
pub fn read_cancel(body: &[u8]) -> Result<u64, DdiError> {
    let c: Cancel = parse("cancel request", body)?;
    c.cancel_action
        .stop_id
        .parse()
        .map_err(|_| DdiError::Field {
            what: "cancel request",
            why: format!("stopId {:?} is not an action id", c.cancel_action.stop_id),
        })
}

/// `status.execution` of a feedback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    /// Working on it.
    Proceeding,
    /// Waiting for a window.
    Scheduled,
    /// Downloaded and verified, not applied (download-only, or the window is closed).
    Downloaded,
    /// Finished (see `finished`).
    Closed,
    /// The device refuses (a cancel that comes too late).
    Rejected,
    /// A cancel request was carried out.
    Canceled,
}

/// `status.result.finished`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finished {
    /// It worked.
    Success,
    /// It did not.
    Failure,
    /// Not finished yet.
    None,
}

/// `status.result.progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Done.
    pub cnt: u64,
    /// Of.
    pub of: u64,
}

/// `status.result`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackResult {
    /// Whether it finished, and how.
    pub finished: Finished,
    /// How far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackStatus {
    /// Where the action stands.
    pub execution: Execution,
    /// Its result.
    pub result: FeedbackResult,
    /// Lines a person reads in the server's action history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// The body of a deployment's or a cancel's feedback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// The action (older servers want it; newer ones ignore it).
    pub id: String,
    /// Where it stands.
    pub status: FeedbackStatus,
}

impl Feedback {
    /// A feedback for `action`.
    pub fn new(
        action: u64,
        execution: Execution,
        finished: Finished,
        progress: Option<Progress>,
        details: Vec<String>,
    ) -> Feedback {
        Feedback {
            id: action.to_string(),
            status: FeedbackStatus {
                execution,
                result: FeedbackResult { finished, progress },
                details,
            },
        }
    }
}

/// `PUT …/configData`: the device's attributes, merged into what the server has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigData {
    /// `merge`.
    pub mode: String,
    /// The attributes.
    pub data: BTreeMap<String, String>,
}

impl ConfigData {
    /// `data`, merged.
    pub fn merge(data: BTreeMap<String, String>) -> ConfigData {
        ConfigData {
            mode: "merge".to_string(),
            data,
        }
    }
}

#[cfg(test)]
#[path = "ddi_tests.rs"]
mod tests;
