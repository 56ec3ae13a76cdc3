//! The words for programs in the API's answers, typed: why an install was refused, why a
//! channel check failed. Their serde form is the word itself, the same bytes as when they
//! were strings.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an install was refused, for programs: the upload answer's `kind` (see
/// [`crate::install::Refusal::kind`]). A word this client does not know reads as `Other`, so a
/// newer agent's answer still parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// The running slot is still on trial.
    OnTrial,
    /// Another install is in progress.
    Busy,
    /// An apply with nothing staged.
    NothingStaged,
    /// The application held the update back.
    Consent,
    /// The image has no trust file.
    NoTrust,
    /// The ESP is not mounted.
    NoEsp,
    /// The bundle boots its slot in another way than the image.
    BootKind,
    /// A Secure Boot image cannot read its db certificate.
    NoSecureBootCert,
    /// A UKI the firmware would refuse.
    Uki,
    /// The archive is malformed.
    Bundle,
    /// The manifest, its signatures or its rules.
    Manifest,
    /// An artifact's bytes are not the signed ones.
    DigestMismatch,
    /// The root image does not fit the slot.
    TooLarge,
    /// The upload stalled.
    Stalled,
    /// A kind this client does not know.
    #[serde(other)]
    Other,
}

impl RefusalKind {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::OnTrial => "on-trial",
            RefusalKind::Busy => "busy",
            RefusalKind::NothingStaged => "nothing-staged",
            RefusalKind::Consent => "consent",
            RefusalKind::NoTrust => "no-trust",
            RefusalKind::NoEsp => "no-esp",
            RefusalKind::BootKind => "boot-kind",
            RefusalKind::NoSecureBootCert => "no-secure-boot-cert",
            RefusalKind::Uki => "uki",
            RefusalKind::Bundle => "bundle",
            RefusalKind::Manifest => "manifest",
            RefusalKind::DigestMismatch => "digest-mismatch",
            RefusalKind::TooLarge => "too-large",
            RefusalKind::Stalled => "stalled",
            RefusalKind::Other => "other",
        }
    }
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check of the update channel failed: the metrics' label, the marker's and the
/// status's `kind`. Declared in the words' alphabetical order, so maps keyed by it keep the
/// order they had as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelFailure {
    /// The image's channel settings (root, CA, URL) could not be used.
    Config,
    /// The bundle's download failed or was not the signed bytes.
    Download,
    /// The channel's metadata expired.
    Expired,
    /// The bundle was refused by the install.
    Install,
    /// The server could not be reached.
    Network,
    /// Older metadata than the device already trusted (a replay, a frozen mirror).
    Replayed,
    /// Any other failure of the TUF metadata or the release file.
    Tuf,
    /// A kind this client does not know.
    #[serde(other)]
    Other,
}

impl ChannelFailure {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelFailure::Config => "config",
            ChannelFailure::Download => "download",
            ChannelFailure::Expired => "expired",
            ChannelFailure::Install => "install",
            ChannelFailure::Network => "network",
            ChannelFailure::Replayed => "replayed",
            ChannelFailure::Tuf => "tuf",
            ChannelFailure::Other => "other",
        }
    }
}

impl fmt::Display for ChannelFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serde for an optional value written as its text, and as `""` when absent (the form these
/// fields had as strings, kept byte for byte).
pub(super) mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub(crate) fn serialize<T: Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_str(""),
        }
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(serde::de::Error::custom)
    }
}
