//! Provenance: every input of an image, by name, version and sha256.
//!
//! The same text is the `[provenance]` part of `build.toml` and `/usr/lib/slate/provenance.toml`
//! in the image, so a device can say exactly what it runs. Paths are relative to the spec's
//! folder and nothing depends on where or when the build ran, so two builds of the same
//! inputs write the same bytes.

use serde::Serialize;
use std::collections::BTreeMap;

/// A Debian package used.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebUsed {
    /// Resolved package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// What it was for ("kernel", "bootloader", "rootfs").
    pub role: String,
    /// sha256 of the .deb.
    pub sha256: slate_core::Digest32,
}

/// A host file used.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileUsed {
    /// Path relative to the spec's folder (or a role name for binaries).
    pub source: String,
    /// Where it went in the image.
    pub dest: String,
    /// sha256.
    pub sha256: slate_core::Digest32,
}

/// All inputs of a build.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Provenance {
    /// Timestamp every file carries.
    pub source_date_epoch: i64,
    /// The imager that built it.
    pub imager: String,
    /// Spec file and its sha256.
    pub spec: BTreeMap<String, String>,
    /// Board file and its sha256.
    pub board: BTreeMap<String, String>,
    /// Versions of the host tools used.
    pub tools: BTreeMap<String, String>,
    /// Debian packages.
    #[serde(rename = "deb")]
    pub debs: Vec<DebUsed>,
    /// Files from the build host, including the device binaries.
    #[serde(rename = "file")]
    pub files: Vec<FileUsed>,
}

impl Provenance {
    /// The TOML text (sorted, so it is stable).
    pub fn to_toml(&self) -> String {
        let mut p = self.clone();
        p.debs.sort();
        p.files.sort();
        toml::to_string(&p).unwrap_or_default()
    }
}
