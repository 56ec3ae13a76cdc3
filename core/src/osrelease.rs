//! `/etc/os-release` of a Slate root and the `.osrel` section of a slot's UKI: one type, one
//! writer ([`OsRelease::render`]) and one reader ([`OsRelease::field`]), so the two files
//! cannot disagree on what a field holds.
//!
//! `ID=slate` names the OS; `IMAGE_ID` names the image (the spec's product, as os-release(5)
//! means it: "vendorx-cashier-system"). systemd-boot sorts a UKI by its `IMAGE_ID` and then its
//! `IMAGE_VERSION`, and both slots of a device hold the same product, so the newest is first,
//! as with `.conf` entries.

use crate::layout::Slot;
use crate::version::Version;

/// The fields Slate writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsRelease {
    /// The product (the spec's `name`): `NAME`, and `IMAGE_ID` in os-release's alphabet.
    pub name: String,
    /// The image's version: `VERSION`, `VERSION_ID`, `IMAGE_VERSION`.
    pub version: Version,
    /// The board (`SLATE_BOARD`), in the root's file.
    pub board: Option<String>,
    /// The slot a UKI boots (`SLATE_SLOT`, and in `PRETTY_NAME`).
    pub slot: Option<Slot>,
    /// The image's security epoch (`SLATE_SECURITY_EPOCH`).
    pub security_epoch: u64,
}

/// `ID=`: what every Slate image is.
pub const ID: &str = "slate";

/// `name` in os-release's alphabet for `IMAGE_ID` (lower-case `0-9a-z._-`; anything else
/// becomes `-`).
pub fn image_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

impl OsRelease {
    /// The file's text.
    pub fn render(&self) -> String {
        let (name, version) = (&self.name, &self.version);
        let pretty = match self.slot {
            Some(slot) => format!("{name} {version} (slot {slot})"),
            None => format!("{name} {version}"),
        };
        let mut out = format!(
            "NAME=\"{name}\"\nID={ID}\nPRETTY_NAME=\"{pretty}\"\nVERSION=\"{version}\"\nVERSION_ID={version}\nIMAGE_ID={}\nIMAGE_VERSION={version}\n",
            image_id(name)
        );
        if let Some(board) = &self.board {
            out.push_str(&format!("SLATE_BOARD={board}\n"));
        }
        if let Some(slot) = self.slot {
            out.push_str(&format!("SLATE_SLOT={slot}\n"));
        }
        out.push_str(&format!("SLATE_SECURITY_EPOCH={}\n", self.security_epoch));
        out
    }

    /// The value of `key` in os-release `text` (quotes removed), or `""` when absent.
    pub fn field<'a>(text: &'a str, key: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map_or("", |v| v.trim().trim_matches('"'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(slot: Option<Slot>, board: Option<&str>) -> OsRelease {
        OsRelease {
            name: "Demo Kiosk".into(),
            version: "1.2.0".parse().unwrap(),
            board: board.map(str::to_string),
            slot,
            security_epoch: 3,
        }
    }

    #[test]
    fn the_root_and_a_uki_agree_on_every_field_they_share() {
        let root = release(None, Some("qemu-x86_64")).render();
        let uki = release(Some(Slot::B), None).render();
        for key in [
            "NAME",
            "ID",
            "VERSION_ID",
            "IMAGE_ID",
            "IMAGE_VERSION",
            "SLATE_SECURITY_EPOCH",
        ] {
            assert_eq!(
                OsRelease::field(&root, key),
                OsRelease::field(&uki, key),
                "{key}"
            );
            assert_ne!(OsRelease::field(&root, key), "", "{key}");
        }
        assert_eq!(OsRelease::field(&root, "IMAGE_ID"), "demo-kiosk");
        assert_eq!(OsRelease::field(&uki, "SLATE_SLOT"), "b");
        assert_eq!(OsRelease::field(&root, "SLATE_SLOT"), "");
        assert_eq!(OsRelease::field(&root, "SLATE_BOARD"), "qemu-x86_64");
        assert_eq!(
            OsRelease::field(&uki, "PRETTY_NAME"),
            "Demo Kiosk 1.2.0 (slot b)"
        );
        assert_eq!(OsRelease::field(&root, "NAME"), "Demo Kiosk");
    }

    #[test]
    fn a_field_is_found_by_its_whole_key() {
        let text = "IMAGE_VERSION=1.2.0\nVERSION=\"1.2.0\"\n";
        assert_eq!(OsRelease::field(text, "VERSION"), "1.2.0");
        assert_eq!(OsRelease::field(text, "VERSION_ID"), "");
        assert_eq!(OsRelease::field(text, "IMAGE"), "");
    }
}
