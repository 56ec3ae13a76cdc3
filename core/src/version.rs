//! Image versions: semantic versions without build metadata.
//!
//! Build metadata (`1.0.0+abc`) is refused because `+` starts the boot counter in a boot
//! entry's file name (`slate-a-1.0.0+3.conf`); and because semver ignores it when comparing,
//! two "different" images could not be ordered.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A validated image version (`MAJOR.MINOR.PATCH[-PRERELEASE]`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(semver::Version);

/// Why a version string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    /// Not semver at all.
    #[error("invalid version {text:?}: {why} (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)")]
    Syntax {
        /// The text given.
        text: String,
        /// The parser's reason.
        why: String,
    },
    /// Carries `+build` metadata.
    #[error("invalid version {text:?}: build metadata (+...) is not allowed, '+' starts the boot counter in entry names")]
    BuildMetadata {
        /// The text given.
        text: String,
    },
}

impl Version {
    /// Builds a version from numbers.
    pub fn new(major: u64, minor: u64, patch: u64) -> Version {
        Version(semver::Version::new(major, minor, patch))
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Version, VersionError> {
        let v = semver::Version::parse(s).map_err(|e| VersionError::Syntax {
            text: s.to_string(),
            why: e.to_string(),
        })?;
        if !v.build.is_empty() {
            return Err(VersionError::BuildMetadata {
                text: s.to_string(),
            });
        }
        Ok(Version(v))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.0)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_semver() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        assert!(v("1.10.0") > v("1.9.9"));
        assert!(v("2.0.0-rc.1") < v("2.0.0"));
    }

    #[test]
    fn refuses_build_metadata_and_junk() {
        assert!(matches!(
            "1.0.0+3".parse::<Version>(),
            Err(VersionError::BuildMetadata { .. })
        ));
        assert!(matches!(
            "1.0".parse::<Version>(),
            Err(VersionError::Syntax { .. })
        ));
    }
}
