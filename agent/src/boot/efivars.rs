//! systemd-boot's EFI variables: how the running boot was chosen (`LoaderEntrySelected`,
//! decoded into the [`slate_core::api`] types that `GET /v1/status` serves) and the entry to
//! boot next, once (`LoaderEntryOneShot`).
//!
//! systemd-boot orders Slate's entries by version, which puts a new trial first when it is an
//! upgrade, but not when the signed release asks for an older version (`max_version`, a version
//! lock, a forced reinstall): the good, newer entry would boot again and the trial never would.
//! Naming the trial as the one-shot entry boots it next whatever its version; if that boot
//! fails, systemd-boot's own order (good before bad) brings the device back.

use anyhow::{Context, Result};
use slate_core::api::BootState;
use slate_core::bootentry::EntryName;
use std::io::Write;

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

/// efivarfs's attributes for a boot loader variable: non-volatile, boot and runtime access.
const ATTRIBUTES: u32 = 0x7;

/// The efivarfs file contents: attributes, then the UTF-16LE text with its NUL.
pub fn encode_efi_string(text: &str) -> Vec<u8> {
    let mut out = ATTRIBUTES.to_le_bytes().to_vec();
    for unit in text.encode_utf16().chain([0]) {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

/// Asks systemd-boot to boot `entry` (its file name as it is now) at the next boot only.
pub fn set_one_shot(entry: &str) -> Result<()> {
    let path = format!("/sys/firmware/efi/efivars/LoaderEntryOneShot-{LOADER_GUID}");
    // An earlier value left behind is immutable in efivarfs until the flag is cleared.
    if let Ok(f) = std::fs::File::open(&path) {
        if let Ok(flags) = rustix::fs::ioctl_getflags(&f) {
            let _ = rustix::fs::ioctl_setflags(&f, flags - rustix::fs::IFlags::IMMUTABLE);
        }
    }
    let bytes = encode_efi_string(entry);
    // efivarfs takes a variable in one write.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("opening {path}"))?;
    let n = f.write(&bytes).with_context(|| format!("writing {path}"))?;
    anyhow::ensure!(
        n == bytes.len(),
        "{path}: short write ({n} of {})",
        bytes.len()
    );
    Ok(())
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

    #[test]
    fn the_text_decodes_back() {
        let raw = encode_efi_string("slate-a-1.0.0+3.conf");
        assert_eq!(&raw[..4], &[7, 0, 0, 0]);
        assert_eq!(
            decode_efi_string(&raw).as_deref(),
            Some("slate-a-1.0.0+3.conf")
        );
    }
}
