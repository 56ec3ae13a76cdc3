//! Slate's kernel command-line parameters, `slate.slot=` and `slate.verity=`.
//!
//! [`BootParams`] is the only code that writes them (`slate build` for slot A's first entry,
//! the agent for every entry it installs) and the only code that reads them (stage 1, slated,
//! `slate inspect`), so the two sides cannot drift apart. A missing or malformed value is an
//! error naming the parameter, because stage 1 cannot guess which root to trust.

use crate::layout::{Slot, SlotError};
use crate::verity::{VerityError, VerityInfo};
use std::fmt;
use std::str::FromStr;

/// Name of the slot parameter.
pub const SLOT: &str = "slate.slot";
/// Name of the verity parameter.
pub const VERITY: &str = "slate.verity";

/// What a boot entry tells the boot it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// Slot being booted.
    pub slot: Slot,
    /// Verity parameters of that slot's root.
    pub verity: VerityInfo,
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    /// A parameter is absent.
    #[error("kernel command line has no {0}= (boot entries written by slate carry it)")]
    Missing(&'static str),
    /// A parameter is malformed.
    #[error("kernel command line {param}=: {why}")]
    Invalid {
        /// Which parameter.
        param: &'static str,
        /// Why.
        why: String,
    },
}

/// The value of `name=` (last one wins, as the kernel does).
pub fn value<'a>(cmdline: &'a str, name: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// Whether a command line (a manifest's extra options, say) sets either Slate parameter.
pub fn sets_slate_params(options: &str) -> bool {
    options
        .split_whitespace()
        .any(|w| w.starts_with("slate.slot=") || w.starts_with("slate.verity="))
}

/// The slot alone (what slated needs even if the verity parameters were damaged).
pub fn slot(cmdline: &str) -> Result<Slot, CmdlineError> {
    let s = value(cmdline, SLOT).ok_or(CmdlineError::Missing(SLOT))?;
    s.parse().map_err(|e: SlotError| CmdlineError::Invalid {
        param: SLOT,
        why: e.to_string(),
    })
}

impl BootParams {
    /// The options of a boot entry: `extra` (console, panic, …) followed by Slate's own.
    pub fn options(&self, extra: &str) -> String {
        let extra = extra.trim();
        if extra.is_empty() {
            self.to_string()
        } else {
            format!("{extra} {self}")
        }
    }
}

/// `slate.slot=<slot> slate.verity=<root>:<salt>:<blocks>:<offset>`.
impl fmt::Display for BootParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SLOT}={} {VERITY}={}", self.slot, self.verity)
    }
}

/// Reads both parameters from a whole command line (other words are ignored).
impl FromStr for BootParams {
    type Err = CmdlineError;

    fn from_str(cmdline: &str) -> Result<BootParams, CmdlineError> {
        let slot = slot(cmdline)?;
        let v = value(cmdline, VERITY).ok_or(CmdlineError::Missing(VERITY))?;
        let verity = v.parse().map_err(|e: VerityError| CmdlineError::Invalid {
            param: VERITY,
            why: e.to_string(),
        })?;
        Ok(BootParams { slot, verity })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest32;

    fn params() -> BootParams {
        BootParams {
            slot: Slot::B,
            verity: VerityInfo::new(Digest32([0xab; 32]), vec![0xaa], 10, 40960).unwrap(),
        }
    }

    #[test]
    fn reads_what_it_writes() {
        let p = params();
        let line = format!("{}\n", p.options("console=ttyS0 panic=5"));
        assert!(line.starts_with("console=ttyS0 panic=5 slate.slot=b slate.verity=abab"));
        assert_eq!(line.parse::<BootParams>(), Ok(p.clone()));
        assert_eq!(p.options(""), p.to_string());
    }

    #[test]
    fn missing_and_bad_values_are_named() {
        assert_eq!(
            "quiet".parse::<BootParams>(),
            Err(CmdlineError::Missing(SLOT))
        );
        assert_eq!(
            "slate.slot=a".parse::<BootParams>(),
            Err(CmdlineError::Missing(VERITY))
        );
        assert!(matches!(
            "slate.slot=c".parse::<BootParams>(),
            Err(CmdlineError::Invalid { param: SLOT, .. })
        ));
        assert!(matches!(
            "slate.slot=a slate.verity=xyz".parse::<BootParams>(),
            Err(CmdlineError::Invalid { param: VERITY, .. })
        ));
        let upper = format!(
            "slate.slot=b slate.verity={}",
            params().verity.to_string().to_uppercase()
        );
        assert!(upper.parse::<BootParams>().is_err(), "{upper}");
    }

    #[test]
    fn prefix_of_another_parameter_does_not_match() {
        assert_eq!(value("slate.slotx=a slate.slot=b", SLOT), Some("b"));
        assert!(!sets_slate_params("slate.slotx=1 quiet"));
        assert!(sets_slate_params("quiet slate.verity=1"));
    }
}
