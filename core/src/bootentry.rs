//! systemd-boot entries for slots: file names with boot counters, and entry contents.
//!
//! ```text
//! loader/entries/slate-<slot>-<version>[+LEFT[-DONE]].conf
//!   slate-a-1.0.0.conf        good: blessed, no counter
//!   slate-b-1.1.0+3.conf      trial: 3 tries left, none spent
//!   slate-b-1.1.0+1-2.conf    trial: systemd-boot spent 2 tries renaming it before each boot
//!   slate-b-1.1.0+0-3.conf    bad: systemd-boot sorts it last and will not pick it
//! ```
//! (systemd Boot Loader Specification, "Boot counting"; Automatic Boot Assessment.)
//! Contents are `key value` lines; Slate writes `title`, `version`, `sort-key`, `linux`,
//! `initrd` and `options`, with `slate.slot=` and `slate.verity=` in `options`.
//!
//! A Secure Boot image has type-2 entries instead: one signed Unified Kernel Image per slot,
//! `EFI/Linux/slate-<slot>-<version>[+LEFT[-DONE]].efi`, named and counted the same way; its
//! command line is inside the signed file ([`crate::pe`]).

use crate::layout::Slot;
use crate::version::Version;
use std::fmt;
use std::str::FromStr;

/// Directory of entries on the ESP.
pub const ENTRIES_DIR: &str = "loader/entries";
/// `sort-key` every Slate entry carries, so systemd-boot orders slots by version.
pub const SORT_KEY: &str = "slate";

/// What a staged entry's file name ends with, after the entry's own name: systemd-boot loads
/// only `*.conf` and `*.efi` files, so a staged update is never booted until the agent renames
/// it (applies it).
pub const STAGED_SUFFIX: &str = ".staged";

/// Directory of type-2 entries (Unified Kernel Images) on the ESP.
pub const UKI_DIR: &str = "EFI/Linux";

/// What kind of file a slot's entry is: where it lives and what its name ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum EntryKind {
    /// A type-1 entry, `loader/entries/*.conf`, naming a kernel and an initramfs on the ESP:
    /// nothing on the ESP is authenticated.
    #[default]
    Conf,
    /// A type-2 entry, `EFI/Linux/*.efi`: a Unified Kernel Image the firmware checks against
    /// its db before running it (Secure Boot).
    Uki,
}

impl EntryKind {
    /// The ESP folder entries of this kind live in.
    pub fn dir(self) -> &'static str {
        match self {
            EntryKind::Conf => ENTRIES_DIR,
            EntryKind::Uki => UKI_DIR,
        }
    }

    /// The file name suffix systemd-boot looks for.
    pub fn suffix(self) -> &'static str {
        match self {
            EntryKind::Conf => ".conf",
            EntryKind::Uki => ".efi",
        }
    }
}

/// Boot counter of a trial entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Tries left.
    pub left: u32,
    /// Tries spent.
    pub done: u32,
}

/// A parsed entry file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    /// Slot the entry boots.
    pub slot: Slot,
    /// Image version in the slot.
    pub version: Version,
    /// None for a blessed (good) entry.
    pub counter: Option<Counter>,
    /// A `.conf` entry or a signed Unified Kernel Image.
    pub kind: EntryKind,
}

/// Why a file name is not a Slate entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name:?} is not a Slate boot entry name: {why} (expected slate-<a|b>-<version>[+LEFT[-DONE]].conf or .efi)")]
pub struct EntryNameError {
    /// The file name.
    pub name: String,
    /// What was wrong.
    pub why: String,
}

impl EntryName {
    /// A new trial entry with `tries` tries left.
    pub fn trial(slot: Slot, version: Version, tries: u32) -> EntryName {
        EntryName {
            slot,
            version,
            counter: Some(Counter {
                left: tries,
                done: 0,
            }),
            kind: EntryKind::Conf,
        }
    }

    /// The same name for an entry of `kind`.
    pub fn with_kind(self, kind: EntryKind) -> EntryName {
        EntryName { kind, ..self }
    }

    /// Its path on the ESP, without a leading `/` (`EFI/Linux/slate-a-1.0.0.efi`).
    pub fn path(&self) -> String {
        format!("{}/{self}", self.kind.dir())
    }

    /// Its staged file's path on the ESP (`loader/entries/slate-b-1.1.0+3.conf.staged`).
    pub fn staged_path(&self) -> String {
        format!("{}{STAGED_SUFFIX}", self.path())
    }

    /// The entry a staged file name (`slate-b-1.1.0+3.conf.staged`) becomes when applied;
    /// None for a file that is not staged.
    pub fn parse_staged(file_name: &str) -> Option<Result<EntryName, EntryNameError>> {
        file_name.strip_suffix(STAGED_SUFFIX).map(str::parse)
    }

    /// A blessed entry (no counter).
    pub fn good(slot: Slot, version: Version) -> EntryName {
        EntryName {
            slot,
            version,
            counter: None,
            kind: EntryKind::Conf,
        }
    }

    /// True when systemd-boot will no longer pick it (tries left is 0).
    pub fn is_bad(&self) -> bool {
        matches!(self.counter, Some(Counter { left: 0, .. }))
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slate-{}-{}", self.slot, self.version)?;
        match self.counter {
            None => {}
            Some(Counter { left, done: 0 }) => write!(f, "+{left}")?,
            Some(Counter { left, done }) => write!(f, "+{left}-{done}")?,
        }
        write!(f, "{}", self.kind.suffix())
    }
}

impl FromStr for EntryName {
    type Err = EntryNameError;

    fn from_str(name: &str) -> Result<EntryName, EntryNameError> {
        let err = |why: &str| EntryNameError {
            name: name.to_string(),
            why: why.to_string(),
        };
        let (stem, kind) = if let Some(stem) = name.strip_suffix(EntryKind::Conf.suffix()) {
            (stem, EntryKind::Conf)
        } else if let Some(stem) = name.strip_suffix(EntryKind::Uki.suffix()) {
            (stem, EntryKind::Uki)
        } else {
            return Err(err("neither a .conf nor an .efi suffix"));
        };
        let rest = stem
            .strip_prefix("slate-")
            .ok_or_else(|| err("no slate- prefix"))?;
        let (slot, rest) = rest.split_once('-').ok_or_else(|| err("no slot"))?;
        let slot: Slot = slot.parse().map_err(|_| err("slot is not a or b"))?;
        let (version, counter) = match rest.split_once('+') {
            None => (rest, None),
            Some((v, c)) => {
                let num = |s: &str| {
                    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(err("counter is not a number"));
                    }
                    s.parse::<u32>().map_err(|_| err("counter out of range"))
                };
                let counter = match c.split_once('-') {
                    None => Counter {
                        left: num(c)?,
                        done: 0,
                    },
                    Some((l, d)) => Counter {
                        left: num(l)?,
                        done: num(d)?,
                    },
                };
                (v, Some(counter))
            }
        };
        let version: Version = version.parse().map_err(|e| err(&format!("{e}")))?;
        Ok(EntryName {
            slot,
            version,
            counter,
            kind,
        })
    }
}

/// The contents of a Slate boot entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Menu title.
    pub title: String,
    /// Version (systemd-boot sorts by it, newest first).
    pub version: Version,
    /// Path of the kernel on the ESP.
    pub linux: String,
    /// Path of the initrd on the ESP.
    pub initrd: String,
    /// Kernel command line.
    pub options: String,
}

/// Why entry contents were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    /// A required key is missing.
    #[error("boot entry has no {key:?} line")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// The version line is not a version.
    #[error("boot entry line {line}: {source}")]
    BadVersion {
        /// 1-based line number.
        line: usize,
        /// Why.
        source: crate::version::VersionError,
    },
}

impl Entry {
    /// The `.conf` entry that boots `slot` with `version` of `product`: the one builder of
    /// entries, so the imager's first entry and the agent's later ones cannot differ.
    pub fn for_slot(
        product: &str,
        version: &Version,
        slot: Slot,
        verity: crate::verity::VerityInfo,
        extra_options: &str,
    ) -> Entry {
        Entry {
            title: format!("{product} {version} (slot {slot})"),
            version: version.clone(),
            linux: Entry::kernel_path(slot),
            initrd: Entry::initrd_path(slot),
            options: crate::cmdline::BootParams { slot, verity }.options(extra_options),
        }
    }

    /// ESP path of a slot's kernel.
    pub fn kernel_path(slot: Slot) -> String {
        format!("/slate/{slot}/vmlinuz")
    }

    /// ESP path of a slot's initrd.
    pub fn initrd_path(slot: Slot) -> String {
        format!("/slate/{slot}/initrd.img")
    }

    /// Renders the file contents.
    pub fn render(&self) -> String {
        format!(
            "title {}\nversion {}\nsort-key {SORT_KEY}\nlinux {}\ninitrd {}\noptions {}\n",
            self.title, self.version, self.linux, self.initrd, self.options
        )
    }

    /// Parses file contents (unknown keys and comments are ignored, as systemd-boot does).
    pub fn parse(text: &str) -> Result<Entry, EntryError> {
        let (mut title, mut version, mut linux, mut initrd, mut options) =
            (None, None, None, None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let value = value.trim().to_string();
            match key {
                "title" => title = Some(value),
                "version" => {
                    version =
                        Some(
                            value
                                .parse::<Version>()
                                .map_err(|source| EntryError::BadVersion {
                                    line: i + 1,
                                    source,
                                })?,
                        )
                }
                "linux" => linux = Some(value),
                "initrd" => initrd = Some(value),
                "options" => options = Some(value),
                _ => {}
            }
        }
        Ok(Entry {
            title: title.unwrap_or_default(),
            version: version.ok_or(EntryError::Missing { key: "version" })?,
            linux: linux.ok_or(EntryError::Missing { key: "linux" })?,
            initrd: initrd.ok_or(EntryError::Missing { key: "initrd" })?,
            options: options.unwrap_or_default(),
        })
    }

    /// The value of `name=` on the options line, if present.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_follow_the_boot_counting_spec() {
        let v: Version = "1.1.0".parse().unwrap();
        assert_eq!(
            EntryName::trial(Slot::B, v.clone(), 3).to_string(),
            "slate-b-1.1.0+3.conf"
        );
        assert_eq!(
            EntryName::good(Slot::A, v).to_string(),
            "slate-a-1.1.0.conf"
        );
        let n: EntryName = "slate-b-2.0.0-rc.1+1-2.conf".parse().unwrap();
        assert_eq!(n.counter, Some(Counter { left: 1, done: 2 }));
        assert_eq!(n.version.to_string(), "2.0.0-rc.1");
        assert!("slate-b-1.0.0+0-3.conf"
            .parse::<EntryName>()
            .unwrap()
            .is_bad());
    }

    #[test]
    fn staged_entries_are_not_entries_until_renamed() {
        let n = EntryName::trial(Slot::B, "1.1.0".parse().unwrap(), 3).with_kind(EntryKind::Uki);
        assert_eq!(n.staged_path(), "EFI/Linux/slate-b-1.1.0+3.efi.staged");
        let staged = "slate-b-1.1.0+3.efi.staged";
        assert!(
            staged.parse::<EntryName>().is_err(),
            "the boot loader's view"
        );
        assert_eq!(EntryName::parse_staged(staged), Some(Ok(n)));
        assert_eq!(EntryName::parse_staged("slate-b-1.1.0+3.efi"), None);
        assert!(matches!(
            EntryName::parse_staged("other.conf.staged"),
            Some(Err(_))
        ));
    }

    #[test]
    fn unified_kernel_images_are_named_and_counted_alike() {
        let v: Version = "1.1.0".parse().unwrap();
        let n = EntryName::trial(Slot::B, v, 3).with_kind(EntryKind::Uki);
        assert_eq!(n.path(), "EFI/Linux/slate-b-1.1.0+3.efi");
        let back: EntryName = "slate-b-1.1.0+3.efi".parse().unwrap();
        assert_eq!(back, n);
        assert_eq!(
            "slate-a-1.0.0.conf".parse::<EntryName>().unwrap().path(),
            "loader/entries/slate-a-1.0.0.conf"
        );
    }

    #[test]
    fn foreign_names_are_refused() {
        for bad in [
            "debian.conf",
            "slate-c-1.0.0.conf",
            "slate-a-1.0.0+x.conf",
            "slate-a-1.0.0",
            "slate-a-1.0.0+.conf",
            "slate-a-1.0.0.EFI",
            "linux.efi",
        ] {
            assert!(bad.parse::<EntryName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn entry_round_trips_and_reads_options() {
        let e = Entry {
            title: "Slate 1.0.0 (slot a)".into(),
            version: "1.0.0".parse().unwrap(),
            linux: Entry::kernel_path(Slot::A),
            initrd: Entry::initrd_path(Slot::A),
            options: "console=ttyS0 slate.slot=a panic=5".into(),
        };
        let back = Entry::parse(&e.render()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.option("slate.slot"), Some("a"));
        assert_eq!(back.option("slate"), None);
    }

    #[test]
    fn entry_without_version_is_refused() {
        assert_eq!(
            Entry::parse("linux /x\ninitrd /y\n"),
            Err(EntryError::Missing { key: "version" })
        );
    }

    proptest! {
        #[test]
        fn names_round_trip(maj in 0u64..100, min in 0u64..100, left in proptest::option::of(0u32..10), done in 0u32..10, b in any::<bool>(), uki in any::<bool>()) {
            let n = EntryName {
                slot: if b { Slot::B } else { Slot::A },
                version: Version::new(maj, min, 0),
                counter: left.map(|left| Counter { left, done }),
                kind: if uki { EntryKind::Uki } else { EntryKind::Conf },
            };
            prop_assert_eq!(n.to_string().parse::<EntryName>().unwrap(), n);
        }
    }
}
