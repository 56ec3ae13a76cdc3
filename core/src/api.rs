//! The contract between host and device: what slated's HTTP API answers and what its console
//! markers say.
//!
//! slated serialises these types; `slate push`, `slate inspect`, xtask and the tests parse the
//! same types with serde, so neither side reads the other's JSON by string keys and every
//! outcome word is written in one place. The JSON field names and the marker texts are pinned
//! by golden tests below: scripts and the QEMU tests rely on them byte for byte.

use crate::layout::Slot;
use crate::version::Version;
use serde::{Deserialize, Serialize};
use std::fmt;

pub mod channel;
pub mod cut_point;
pub mod fleet;
mod kinds;
pub mod marker;
mod marker_kind;
pub mod metrics;
pub mod policy;
pub mod progress;
pub mod tpm;

pub use channel::{ChannelError, ChannelStatus, Downloads};
pub use cut_point::CutPoint;
pub use fleet::{FleetError, FleetStatus};
use kinds::empty_is_none;
pub use kinds::{ChannelFailure, RefusalKind};
pub use marker::{Kind, Marker};
pub use policy::{ConsentStatus, Failed, ResetConfirm, StagedStatus, WindowStatus};
pub use progress::{Phase, Progress};
pub use tpm::TpmStatus;

/// `GET /v1/status`.
pub const STATUS_ROUTE: &str = "/v1/status";
/// `POST /v1/update` (body: a bundle; `?force=true`, `?reboot=false`, `?now=true` applies
/// it outside the maintenance windows and without the application's consent, `?stage=true`
/// installs it and waits for `POST /v1/apply`).
pub const UPDATE_ROUTE: &str = "/v1/update";
/// `POST /v1/apply`: applies the staged update now (windows or not; `?now=true` also skips
/// the application's consent) and reboots into it.
pub const APPLY_ROUTE: &str = "/v1/apply";
/// `POST /v1/reboot`.
pub const REBOOT_ROUTE: &str = "/v1/reboot";
/// `POST /v1/poweroff`.
pub const POWEROFF_ROUTE: &str = "/v1/poweroff";
/// `GET /metrics` (Prometheus text).
pub const METRICS_ROUTE: &str = "/metrics";
/// A TPM quote over PCRs 7 and 11 for `?nonce=<hex>` (`core::tpm::quote::Quote`).
pub const QUOTE_ROUTE: &str = "/v1/quote";
/// Hands the device a newer CRL of its operator CA (the body, DER or PEM): certificates it
/// revokes are refused from the next handshake on.
pub const OPERATORS_CRL_ROUTE: &str = "/v1/operators/crl";
/// Factory reset: a first call answers a confirmation token ([`ResetConfirm`]); a second
/// with `?confirm=TOKEN` (and `&new_identity=true` to make a new identity) asks stage 1 to
/// wipe `/data` at the reboot that follows.
pub const FACTORY_RESET_ROUTE: &str = "/v1/factory-reset";

/// How an update attempt ended, as status, state.json and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Written to the idle slot; waits for its trial boot.
    Installed,
    /// The trial boot passed its health checks and was blessed.
    Committed,
    /// The trial failed (health checks or boot tries) and the old slot runs again.
    RolledBack,
    /// The bundle or the moment was not acceptable; nothing bootable changed.
    Refused,
}

impl Outcome {
    /// Every outcome, in the order metrics list them.
    pub const ALL: [Outcome; 4] = [
        Outcome::Installed,
        Outcome::Committed,
        Outcome::RolledBack,
        Outcome::Refused,
    ];

    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Installed => "installed",
            Outcome::Committed => "committed",
            Outcome::RolledBack => "rolled-back",
            Outcome::Refused => "refused",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where this boot's health checks stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Still running.
    #[default]
    Pending,
    /// All passed.
    Passed,
    /// At least one failed.
    Failed,
}

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Check name.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// Last error, or what passed.
    pub detail: String,
    /// Attempts made.
    pub attempts: u32,
}

/// Health of this boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Health {
    /// pending, passed or failed.
    pub state: HealthState,
    /// Per check.
    pub checks: Vec<CheckResult>,
}

impl Health {
    /// The failed checks as `name: detail; …` (the reason a rollback records).
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// How this boot was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum BootState {
    /// A blessed entry (no counter).
    Good,
    /// A trial entry with tries left and spent.
    Trial {
        /// Tries left.
        left: u32,
        /// Tries spent (this boot included).
        done: u32,
    },
    /// The boot loader did not say (no EFI variables, or not a Slate entry).
    Unknown,
}

/// State of one slot, derived from the boot entries on the ESP (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// No entry.
    Empty,
    /// Blessed entry.
    Good,
    /// Counter with tries left.
    Trial,
    /// Counter at zero.
    Bad,
}

impl SlotState {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Empty => "empty",
            SlotState::Good => "good",
            SlotState::Trial => "trial",
            SlotState::Bad => "bad",
        }
    }
}

/// One slot as the boot entries describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotStatus {
    /// Which slot.
    pub slot: Slot,
    /// Its state.
    pub state: SlotState,
    /// Version of its entry.
    pub version: Option<Version>,
    /// Tries left, for trial and bad.
    pub tries_left: Option<u32>,
    /// Entry file name.
    pub entry: Option<String>,
}

/// One update attempt and how it ended (status `last_attempt`/`last_refusal`, and state.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// Version installed (none, `""` in JSON, when a refusal came before the manifest was
    /// read).
    #[serde(with = "empty_is_none")]
    pub version: Option<Version>,
    /// Slot it went into.
    pub slot: Slot,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, for rolled-back and refused.
    #[serde(default)]
    pub reason: String,
    /// Security epoch of the bundle (raised on the device when committed).
    #[serde(default)]
    pub security_epoch: u64,
    /// Unix seconds.
    pub at: i64,
}

/// The status document, `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Running slot.
    pub slot: Slot,
    /// Product name.
    pub name: String,
    /// Running version.
    pub version: Version,
    /// Board.
    pub board: String,
    /// Root hash of the running slot (none, `""` in JSON, when the command line had none).
    #[serde(with = "empty_is_none")]
    pub root_hash: Option<crate::Digest32>,
    /// Boot entry systemd-boot started.
    pub entry: Option<String>,
    /// Good or trial.
    pub boot: BootState,
    /// Seconds since the kernel started.
    pub uptime_s: f64,
    /// Health checks.
    pub health: Health,
    /// Both slots, from the boot entries on the ESP.
    pub slots: Vec<SlotStatus>,
    /// The last install and its outcome.
    pub last_attempt: Option<UpdateRecord>,
    /// The last refused bundle and why.
    pub last_refusal: Option<UpdateRecord>,
    /// Versions that failed and are not retried automatically.
    pub failed: Vec<Failed>,
    /// Boots the agent has seen on this device.
    pub boots: u64,
    /// Highest security epoch committed.
    pub security_epoch: u64,
    /// An install is running.
    pub installing: bool,
    /// The fingerprint of the device's TLS certificate (None when it serves plain HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<crate::Fingerprint>,
    /// The update channel, when the image pulls from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelStatus>,
    /// The fleet server, when the image reports to one (`[fleet]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
    /// The firmware booted this device with UEFI Secure Boot on: the running root hash came
    /// from a signed UKI.
    #[serde(default)]
    pub secure_boot: bool,
    /// The running image was built for Secure Boot (signed UKIs); with `secure_boot` false
    /// that is a device whose firmware does not enforce it.
    #[serde(default)]
    pub built_for_secure_boot: bool,
    /// For an image with maintenance windows: whether one is open and when one next is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowStatus>,
    /// The update being worked on, live (none when idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The application's last answer holding an update back (`[update] consent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentStatus>,
    /// An update installed into the idle slot and waiting to be applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<StagedStatus>,
    /// The TPM and the sealed `/data` (None from agents before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmStatus>,
}

impl Status {
    /// The slot `slot` as the ESP shows it.
    pub fn slot_status(&self, slot: Slot) -> Option<&SlotStatus> {
        self.slots.iter().find(|s| s.slot == slot)
    }

    /// Whether the device has decided about `version` for good: committed and running it, or
    /// rolled back and running the other slot again.
    pub fn decided(&self, version: &str) -> Option<&UpdateRecord> {
        let a = self.last_attempt.as_ref()?;
        if a.version.as_ref().map(ToString::to_string).as_deref() != Some(version) {
            return None;
        }
        let running_it = a.slot == self.slot;
        match a.outcome {
            Outcome::Committed if running_it => Some(a),
            Outcome::RolledBack if !running_it => Some(a),
            _ => None,
        }
    }
}

/// The answer to `POST /v1/update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum UploadAnswer {
    /// Written to the idle slot (HTTP 200).
    Installed {
        /// Slot written.
        slot: Slot,
        /// Version installed.
        version: String,
        /// Bytes written to the slot and the ESP.
        bytes: u64,
        /// Seconds from the first byte to the entry written.
        seconds: f64,
        /// Whether the device reboots into it now.
        reboot: bool,
    },
    /// Written to the idle slot, verified and staged (HTTP 200): applied at `apply_at`, or
    /// when an operator asks (`POST /v1/apply`).
    Staged {
        /// Slot written.
        slot: Slot,
        /// Version staged.
        version: String,
        /// Bytes written to the slot and the ESP.
        bytes: u64,
        /// Seconds from the first byte to the staged entry written.
        seconds: f64,
        /// When the device applies it by itself (Unix seconds; none: only an operator).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        apply_at: Option<i64>,
    },
    /// The bundle or the moment was not acceptable (HTTP 400 or 409).
    Refused {
        /// Why, for a person.
        error: String,
        /// Why, for a program (absent from agents before the typed refusals).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<RefusalKind>,
    },
    /// The device failed while installing (HTTP 500).
    Failed {
        /// What failed.
        error: String,
    },
}

/// Any other error answer (`401`, `404`): `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What is wrong.
    pub error: String,
}

/// The answer to `POST /v1/reboot` and `/v1/poweroff` (HTTP 202): `{"action": "reboot"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionAnswer {
    /// `reboot` or `poweroff`.
    pub action: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_status() -> Status {
        Status {
            slot: Slot::B,
            name: "slate-demo".into(),
            version: "1.1.0".parse().unwrap(),
            board: "qemu-x86_64".into(),
            root_hash: Some(crate::Digest32([0xab; 32])),
            entry: Some("slate-b-1.1.0+2-1.conf".into()),
            boot: BootState::Trial { left: 2, done: 1 },
            uptime_s: 4.5,
            health: Health {
                state: HealthState::Passed,
                checks: vec![CheckResult {
                    name: "web".into(),
                    ok: true,
                    detail: "HTTP 200".into(),
                    attempts: 1,
                }],
            },
            slots: vec![
                SlotStatus {
                    slot: Slot::A,
                    state: SlotState::Good,
                    version: Some("1.0.0".parse().unwrap()),
                    tries_left: None,
                    entry: Some("slate-a-1.0.0.conf".into()),
                },
                SlotStatus {
                    slot: Slot::B,
                    state: SlotState::Empty,
                    version: None,
                    tries_left: None,
                    entry: None,
                },
            ],
            last_attempt: Some(UpdateRecord {
                version: Some("1.1.0".parse().unwrap()),
                slot: Slot::B,
                outcome: Outcome::RolledBack,
                reason: "health check failed: web: HTTP 500".into(),
                security_epoch: 2,
                at: 1700000000,
            }),
            last_refusal: None,
            failed: vec![Failed {
                version: "1.1.0".into(),
                reason: "x".into(),
                failures: 1,
                verdicts: 1,
                at: Some(1700000000),
                retry_at: Some(1700003600),
            }],
            boots: 3,
            security_epoch: 1,
            installing: false,
            identity: None,
            channel: None,
            fleet: None,
            tpm: None,
            secure_boot: true,
            built_for_secure_boot: true,
            window: None,
            progress: None,
            consent: None,
            staged: None,
        }
    }

    /// The status JSON as agents have always served it: field names and words pinned.
    #[test]
    fn golden_status_json() {
        let got = serde_json::to_string(&sample_status()).unwrap();
        let want = concat!(
            r#"{"slot":"b","name":"slate-demo","version":"1.1.0","board":"qemu-x86_64","#,
            r#""root_hash":"abababababababababababababababababababababababababababababababab","#,
            r#""entry":"slate-b-1.1.0+2-1.conf","boot":{"state":"trial","left":2,"done":1},"#,
            r#""uptime_s":4.5,"health":{"state":"passed","checks":[{"name":"web","ok":true,"#,
            r#""detail":"HTTP 200","attempts":1}]},"slots":[{"slot":"a","state":"good","#,
            r#""version":"1.0.0","tries_left":null,"entry":"slate-a-1.0.0.conf"},{"slot":"b","#,
            r#""state":"empty","version":null,"tries_left":null,"entry":null}],"#,
            r#""last_attempt":{"version":"1.1.0","slot":"b","outcome":"rolled-back","#,
            r#""reason":"health check failed: web: HTTP 500","security_epoch":2,"at":1700000000},"#,
            r#""last_refusal":null,"failed":[{"version":"1.1.0","reason":"x","failures":1,"#,
            r#""verdicts":1,"at":1700000000,"retry_at":1700003600}],"boots":3,"#,
            r#""security_epoch":1,"installing":false,"secure_boot":true,"#,
            r#""built_for_secure_boot":true}"#
        );
        assert_eq!(got, want);
        let back: Status = serde_json::from_str(want).unwrap();
        assert_eq!(back, sample_status());
        // A status from an agent before Secure Boot reads as off.
        let older = want.replace(r#","secure_boot":true,"built_for_secure_boot":true"#, "");
        let back: Status = serde_json::from_str(&older).unwrap();
        assert!(!back.secure_boot && !back.built_for_secure_boot);
        // A failed version recorded before bounded retries: failed once, never retried.
        let older = want.replace(
            r#","failures":1,"verdicts":1,"at":1700000000,"retry_at":1700003600"#,
            "",
        );
        let back: Status = serde_json::from_str(&older).unwrap();
        let f = &back.failed[0];
        assert_eq!(
            (f.failures, f.verdicts, f.at, f.retry_at),
            (1, 0, None, None)
        );
    }

    #[test]
    fn golden_upload_answers() {
        let ok = UploadAnswer::Installed {
            slot: Slot::B,
            version: "1.1.0".into(),
            bytes: 42,
            seconds: 1.5,
            reboot: true,
        };
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"result":"installed","slot":"b","version":"1.1.0","bytes":42,"seconds":1.5,"reboot":true}"#
        );
        let refused = UploadAnswer::Refused {
            error: "no".into(),
            kind: Some(RefusalKind::Busy),
        };
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"result":"refused","error":"no","kind":"busy"}"#
        );
        // An older agent's refusal has no kind.
        let old: UploadAnswer =
            serde_json::from_str(r#"{"result":"refused","error":"no"}"#).unwrap();
        assert_eq!(
            old,
            UploadAnswer::Refused {
                error: "no".into(),
                kind: None
            }
        );
        assert_eq!(
            serde_json::to_string(&UploadAnswer::Failed { error: "io".into() }).unwrap(),
            r#"{"result":"failed","error":"io"}"#
        );
        assert_eq!(
            serde_json::to_string(&ActionAnswer {
                action: "reboot".into()
            })
            .unwrap(),
            r#"{"action":"reboot"}"#
        );
    }

    #[test]
    fn outcome_words_are_the_wire_words() {
        for o in Outcome::ALL {
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
        assert_eq!(Outcome::RolledBack.to_string(), "rolled-back");
    }

    #[test]
    fn decided_means_committed_and_running_or_rolled_back_and_not() {
        let mut s = sample_status();
        // Rolled back from b, but b still runs: not decided yet.
        assert_eq!(s.decided("1.1.0"), None);
        s.slot = Slot::A;
        assert!(s.decided("1.1.0").is_some());
        assert_eq!(s.decided("1.2.0"), None);
        if let Some(a) = s.last_attempt.as_mut() {
            a.outcome = Outcome::Committed;
        }
        assert_eq!(s.decided("1.1.0"), None);
        s.slot = Slot::B;
        assert!(s.decided("1.1.0").is_some());
    }
}
