//! The kernel command line as Slate reads it: `slate.slot=` and `slate.verity=`.
//!
//! Parsed once into typed values at the edge; a missing or malformed value is an error that
//! names the parameter, because stage 1 cannot guess which root to trust.

use slate_core::layout::Slot;
use slate_core::verity::VerityInfo;

/// What the boot entry told this boot.
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

/// The slot alone (what slated needs even if verity parameters were damaged).
pub fn slot(cmdline: &str) -> Result<Slot, CmdlineError> {
    let s = value(cmdline, "slate.slot").ok_or(CmdlineError::Missing("slate.slot"))?;
    s.parse()
        .map_err(|e: slate_core::layout::SlotError| CmdlineError::Invalid {
            param: "slate.slot",
            why: e.to_string(),
        })
}

/// Parses both Slate parameters.
pub fn parse(cmdline: &str) -> Result<BootParams, CmdlineError> {
    let slot = slot(cmdline)?;
    let v = value(cmdline, "slate.verity").ok_or(CmdlineError::Missing("slate.verity"))?;
    let verity = v
        .parse()
        .map_err(|e: slate_core::verity::VerityError| CmdlineError::Invalid {
            param: "slate.verity",
            why: e.to_string(),
        })?;
    Ok(BootParams { slot, verity })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_slot_and_verity() {
        let line = format!(
            "console=ttyS0 slate.slot=b slate.verity={}:aa:10:40960 panic=5\n",
            "ab".repeat(32)
        );
        let p = parse(&line).unwrap();
        assert_eq!(p.slot, Slot::B);
        assert_eq!(p.verity.data_blocks, 10);
        assert_eq!(p.verity.hash_offset, 40960);
    }

    #[test]
    fn missing_and_bad_values_are_named() {
        assert_eq!(parse("quiet"), Err(CmdlineError::Missing("slate.slot")));
        assert_eq!(
            parse("slate.slot=a"),
            Err(CmdlineError::Missing("slate.verity"))
        );
        assert!(matches!(
            parse("slate.slot=c"),
            Err(CmdlineError::Invalid {
                param: "slate.slot",
                ..
            })
        ));
        assert!(matches!(
            parse("slate.slot=a slate.verity=xyz"),
            Err(CmdlineError::Invalid {
                param: "slate.verity",
                ..
            })
        ));
    }

    #[test]
    fn prefix_of_another_parameter_does_not_match() {
        assert_eq!(value("slate.slotx=a slate.slot=b", "slate.slot"), Some("b"));
    }
}
