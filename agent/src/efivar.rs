//! systemd-boot's `LoaderEntryOneShot`: the entry to boot next, once.
//!
//! systemd-boot orders Slate's entries by version, which puts a new trial first when it is an
//! upgrade, but not when the signed release asks for an older version (`max_version`, a version
//! lock, a forced reinstall): the good, newer entry would boot again and the trial never would.
//! Naming the trial as the one-shot entry boots it next whatever its version; if that boot
//! fails, systemd-boot's own order (good before bad) brings the device back.

use crate::status::LOADER_GUID;
use anyhow::{Context, Result};
use std::io::Write;

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
    fn the_text_decodes_back() {
        let raw = encode_efi_string("slate-a-1.0.0+3.conf");
        assert_eq!(&raw[..4], &[7, 0, 0, 0]);
        assert_eq!(
            crate::status::decode_efi_string(&raw).as_deref(),
            Some("slate-a-1.0.0+3.conf")
        );
    }
}
