//! When a version that failed here may be installed again without force.
//!
//! A trial can fail for reasons that are not the version's: a LAN flood that starved its
//! checks, a power cut in the wrong second, a service that needed one more minute. Blacklisting
//! such a version for good strands the fleet on the old one. So a failure is retried after a
//! back-off, a bounded number of times; but a version that its own health checks judged bad
//! twice is not taken again, and neither is one that failed [`MAX_FAILURES`] times in all.
//! An operator's `--force` still installs any of them.

use crate::api::Failed;
use crate::Version;

/// Failures after which a version is never taken again automatically.
pub const MAX_FAILURES: u32 = 3;
/// Verdicts of the version's own health checks after which it is never taken again.
pub const FINAL_VERDICTS: u32 = 2;
/// Wait before the first retry (seconds); each further failure waits four times as long.
pub const FIRST_BACKOFF_S: i64 = 3600;

/// How a trial ended in failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The version booted and its own health checks failed.
    Verdict,
    /// The version never reached a verdict: it did not boot, or fell back.
    NoVerdict,
}

/// The record after one more failure of `version`, given what `failed` already holds.
pub fn record(failed: &[Failed], version: &str, reason: &str, cause: Cause, now: i64) -> Failed {
    let before = failed.iter().find(|f| f.version == version);
    let failures = before.map_or(0, |f| f.failures).saturating_add(1);
    let verdicts = before
        .map_or(0, |f| f.verdicts)
        .saturating_add(u32::from(cause == Cause::Verdict));
    let last_chance = failures >= MAX_FAILURES || verdicts >= FINAL_VERDICTS;
    let retry_at = (!last_chance).then(|| {
        let factor = 4_i64.saturating_pow(failures.saturating_sub(1));
        now.saturating_add(FIRST_BACKOFF_S.saturating_mul(factor))
    });
    Failed {
        version: version.to_string(),
        reason: reason.to_string(),
        failures,
        verdicts,
        at: Some(now),
        retry_at,
    }
}

/// Puts `record` in place of the version's earlier record (or adds it).
pub fn remember(failed: &mut Vec<Failed>, record: Failed) {
    match failed.iter_mut().find(|f| f.version == record.version) {
        Some(f) => *f = record,
        None => failed.push(record),
    }
}

/// Whether `f`'s version may not be installed at `now` without force.
pub fn blocks(f: &Failed, now: i64) -> bool {
    match f.retry_at {
        Some(at) => now < at,
        None => true,
    }
}

/// The versions that may not be installed at `now` without force.
pub fn blocked(failed: &[Failed], now: i64) -> Vec<Version> {
    failed
        .iter()
        .filter(|f| blocks(f, now))
        .filter_map(|f| f.version.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(failed: &mut Vec<Failed>, cause: Cause, now: i64) -> Failed {
        let r = record(failed, "1.2.0", "x", cause, now);
        remember(failed, r.clone());
        r
    }

    #[test]
    fn a_failure_without_a_verdict_is_retried_twice_after_growing_back_offs() {
        let mut failed = Vec::new();
        let r = fail(&mut failed, Cause::NoVerdict, 1000);
        assert_eq!(r.retry_at, Some(1000 + 3600));
        assert_eq!(blocked(&failed, 4599), vec!["1.2.0".parse().unwrap()]);
        assert!(blocked(&failed, 4600).is_empty());
        let r = fail(&mut failed, Cause::NoVerdict, 5000);
        assert_eq!((r.failures, r.retry_at), (2, Some(5000 + 4 * 3600)));
        let r = fail(&mut failed, Cause::NoVerdict, 30000);
        assert_eq!((r.failures, r.retry_at), (3, None));
        assert_eq!(failed.len(), 1);
        assert!(blocks(&failed[0], i64::MAX));
    }

    #[test]
    fn two_verdicts_of_its_own_checks_are_final() {
        let mut failed = Vec::new();
        let r = fail(&mut failed, Cause::Verdict, 0);
        assert_eq!((r.verdicts, r.retry_at), (1, Some(3600)));
        let r = fail(&mut failed, Cause::Verdict, 4000);
        assert_eq!((r.failures, r.verdicts, r.retry_at), (2, 2, None));
        assert!(blocks(&r, i64::MAX));
    }

    #[test]
    fn a_record_from_an_agent_before_retries_stays_final() {
        let old = Failed {
            version: "1.2.0".into(),
            reason: "x".into(),
            failures: 1,
            verdicts: 0,
            at: None,
            retry_at: None,
        };
        assert!(blocks(&old, i64::MAX));
        assert_eq!(blocked(&[old], 0).len(), 1);
    }

    #[test]
    fn other_versions_are_kept_and_unparsable_ones_block_nothing() {
        let mut failed = vec![record(&[], "junk", "x", Cause::Verdict, 0)];
        let next = record(&failed, "2.0.0", "y", Cause::Verdict, 0);
        remember(&mut failed, next);
        assert_eq!(failed.len(), 2);
        assert_eq!(blocked(&failed, 1), vec!["2.0.0".parse().unwrap()]);
    }
}
