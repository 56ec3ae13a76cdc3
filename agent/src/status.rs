//! How the running boot's state is read: systemd-boot's EFI variables, decoded into the
//! [`slate_core::api`] types that `GET /v1/status` serves.

use slate_core::api::BootState;
use slate_core::bootentry::EntryName;

/// systemd-boot's vendor GUID for its EFI variables.
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// How this boot was chosen, from the entry id systemd-boot booted.
pub fn boot_state(id: Option<&str>) -> BootState {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_state_follows_the_entry_counter() {
        assert_eq!(boot_state(Some("slate-a-1.0.0.conf")), BootState::Good);
        assert_eq!(
            boot_state(Some("slate-b-1.1.0+2-1.conf")),
            BootState::Trial { left: 2, done: 1 }
        );
        assert_eq!(
            boot_state(Some("slate-b-1.1.0+2-1")),
            BootState::Trial { left: 2, done: 1 }
        );
        assert_eq!(boot_state(Some("auto-efi-shell")), BootState::Unknown);
        assert_eq!(boot_state(None), BootState::Unknown);
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
