//! What `GET /v1/status` reports, and how the running boot's state is read.

use serde::{Deserialize, Serialize};
use slate_core::bootentry::EntryName;
use slate_core::layout::Slot;

/// systemd-boot's vendor GUID for its EFI variables.
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// How this boot was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl BootState {
    /// From the entry id systemd-boot booted.
    pub fn from_entry(id: Option<&str>) -> BootState {
        let Some(id) = id else {
            return BootState::Unknown;
        };
        let name = if id.ends_with(".conf") {
            id.to_string()
        } else {
            format!("{id}.conf")
        };
        match name.parse::<EntryName>() {
            Ok(EntryName { counter: None, .. }) => BootState::Good,
            Ok(EntryName {
                counter: Some(c), ..
            }) => BootState::Trial {
                left: c.left,
                done: c.done,
            },
            Err(_) => BootState::Unknown,
        }
    }
}

/// Decodes an efivarfs file: 4 bytes of attributes, then UTF-16LE text, maybe NUL-terminated.
pub fn decode_efi_string(raw: &[u8]) -> Option<String> {
    let body = raw.get(4..)?;
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

/// Reads systemd-boot's `LoaderEntrySelected`.
pub fn selected_entry() -> Option<String> {
    let raw = std::fs::read(format!(
        "/sys/firmware/efi/efivars/LoaderEntrySelected-{LOADER_GUID}"
    ))
    .ok()?;
    decode_efi_string(&raw)
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// pending, passed or failed.
    pub state: String,
    /// Per check.
    pub checks: Vec<CheckResult>,
}

/// The status document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Running slot.
    pub slot: Slot,
    /// Product name.
    pub name: String,
    /// Running version.
    pub version: String,
    /// Board.
    pub board: String,
    /// Root hash of the running slot.
    pub root_hash: String,
    /// Boot entry systemd-boot started.
    pub entry: Option<String>,
    /// Good or trial.
    pub boot: BootState,
    /// Seconds since the kernel started.
    pub uptime_s: f64,
    /// Health checks.
    pub health: Health,
    /// Both slots, from the boot entries on the ESP.
    pub slots: Vec<slate_core::slots::SlotView>,
    /// The last install and its outcome.
    pub last_attempt: Option<crate::state::Attempt>,
    /// The last refused bundle and why.
    pub last_refusal: Option<crate::state::Attempt>,
    /// Versions that failed and are not retried automatically.
    pub failed: Vec<crate::state::Failed>,
    /// Boots the agent has seen on this device.
    pub boots: u64,
    /// Highest security epoch committed.
    pub security_epoch: u64,
    /// An install is running.
    pub installing: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_state_follows_the_entry_counter() {
        assert_eq!(
            BootState::from_entry(Some("slate-a-1.0.0.conf")),
            BootState::Good
        );
        assert_eq!(
            BootState::from_entry(Some("slate-b-1.1.0+2-1.conf")),
            BootState::Trial { left: 2, done: 1 }
        );
        assert_eq!(
            BootState::from_entry(Some("slate-b-1.1.0+2-1")),
            BootState::Trial { left: 2, done: 1 }
        );
        assert_eq!(
            BootState::from_entry(Some("auto-efi-shell")),
            BootState::Unknown
        );
        assert_eq!(BootState::from_entry(None), BootState::Unknown);
    }

    #[test]
    fn efi_strings_decode() {
        let mut raw = vec![6, 0, 0, 0];
        for u in "slate-a-1.0.0.conf".encode_utf16().chain([0]) {
            raw.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(
            decode_efi_string(&raw).as_deref(),
            Some("slate-a-1.0.0.conf")
        );
        assert_eq!(decode_efi_string(&[1, 2]), None);
    }
}
