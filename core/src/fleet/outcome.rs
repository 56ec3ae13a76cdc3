//! What a fleet action came to once the device rebooted into it: the feedback the server gets
//! is decided from the device's own record of the attempt, never from the poll that follows,
//! so a rollback discovered after the reboot (a failed health check, a kernel that never came
//! up, the firmware refusing a UKI) is reported as that action's failure.

use crate::api::{Outcome, UpdateRecord};
use crate::Version;
use serde::{Deserialize, Serialize};

/// An action the device installed (switched slots for, or staged) and has not yet reported
/// the end of; kept on `/data` across the reboot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    /// The server's action id.
    pub action: u64,
    /// The feedback URL of the action.
    pub feedback: String,
    /// The version installed.
    pub version: Version,
    /// The version that ran when it was installed.
    pub from: Version,
    /// The server asked for it staged only (download-only, or its window closed): it waits
    /// for the server's go.
    #[serde(default)]
    pub stage_only: bool,
}

/// The end of a switched action, as the server is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Not known yet: the trial boot is still running its checks.
    Pending,
    /// Staged and not applied: waiting for a window, the application's consent or the
    /// server's go.
    Staged,
    /// Committed after its health checks.
    Success,
    /// Rolled back or never booted: the device runs `running` again, for `reason`.
    Failure {
        /// Why.
        reason: String,
    },
}

/// Decides the end of `switched` from the running version, whether this boot is still on
/// trial, the version staged (if any) and the device's last attempt record.
pub fn end_of(
    switched: &Taken,
    running: &Version,
    on_trial: bool,
    staged: Option<&Version>,
    last_attempt: Option<&UpdateRecord>,
) -> End {
    if on_trial {
        return End::Pending;
    }
    if running != &switched.version && staged == Some(&switched.version) {
        return End::Staged;
    }
    let record = last_attempt.filter(|r| r.version.as_ref() == Some(&switched.version));
    if running == &switched.version {
        return match record.map(|r| r.outcome) {
            // Committed, or installed and running good (a record written by an older agent).
            Some(Outcome::Committed) | Some(Outcome::Installed) | None => End::Success,
            Some(Outcome::RolledBack) | Some(Outcome::Refused) => End::Failure {
                reason: record.map(|r| r.reason.clone()).unwrap_or_default(),
            },
        };
    }
    let reason = match record {
        Some(r) if !r.reason.is_empty() => r.reason.clone(),
        _ => format!(
            "{} did not come up; the device fell back to {running}",
            switched.version
        ),
    };
    End::Failure {
        reason: format!("rolled back to {running}: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Slot;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn switched() -> Taken {
        Taken {
            action: 3,
            feedback: "https://f/x".into(),
            version: v("2.0.0"),
            from: v("1.0.0"),
            stage_only: false,
        }
    }

    fn record(outcome: Outcome, reason: &str) -> UpdateRecord {
        UpdateRecord {
            version: Some(v("2.0.0")),
            slot: Slot::B,
            outcome,
            reason: reason.into(),
            security_epoch: 0,
            at: 0,
        }
    }

    #[test]
    fn a_committed_update_is_a_success_and_a_trial_waits() {
        let r = record(Outcome::Committed, "");
        assert_eq!(
            end_of(&switched(), &v("2.0.0"), false, None, Some(&r)),
            End::Success
        );
        assert_eq!(
            end_of(&switched(), &v("2.0.0"), true, None, Some(&r)),
            End::Pending
        );
        let installed = record(Outcome::Installed, "");
        assert_eq!(
            end_of(
                &switched(),
                &v("1.0.0"),
                false,
                Some(&v("2.0.0")),
                Some(&installed)
            ),
            End::Staged
        );
    }

    #[test]
    fn a_rollback_after_the_reboot_is_a_failure_with_the_devices_reason() {
        let r = record(Outcome::RolledBack, "health check app failed");
        match end_of(&switched(), &v("1.0.0"), false, None, Some(&r)) {
            End::Failure { reason } => {
                assert!(reason.contains("rolled back to 1.0.0"), "{reason}");
                assert!(reason.contains("health check app failed"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // No record at all (the new kernel never started the agent): still a failure.
        match end_of(&switched(), &v("1.0.0"), false, None, None) {
            End::Failure { reason } => assert!(reason.contains("did not come up"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
