//! Restart decisions for supervised services, kept pure so they are testable.

use slate_core::config::Restart;
use std::time::Duration;

/// How a service's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit status 0.
    Success,
    /// Non-zero status or killed by a signal.
    Failure,
}

/// First restart delay; doubles on each consecutive quick failure.
pub const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest delay between restarts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run longer than this resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Whether and when to restart, given the policy, the exit, how long it ran and how many quick
/// restarts came before.
pub fn restart_after(
    policy: Restart,
    exit: Exit,
    ran: Duration,
    quick_restarts: u32,
) -> Option<Duration> {
    let restart = match policy {
        Restart::Always => true,
        Restart::OnFailure => exit == Exit::Failure,
        Restart::Never => false,
    };
    if !restart {
        return None;
    }
    if ran >= STABLE_AFTER {
        return Some(BACKOFF_START);
    }
    let factor = 1u32 << quick_restarts.min(10);
    Some((BACKOFF_START * factor).min(BACKOFF_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decide_restarts() {
        let quick = Duration::from_secs(1);
        assert_eq!(restart_after(Restart::Never, Exit::Failure, quick, 0), None);
        assert_eq!(
            restart_after(Restart::OnFailure, Exit::Success, quick, 0),
            None
        );
        assert_eq!(
            restart_after(Restart::OnFailure, Exit::Failure, quick, 0),
            Some(BACKOFF_START)
        );
        assert_eq!(
            restart_after(Restart::Always, Exit::Success, quick, 0),
            Some(BACKOFF_START)
        );
    }

    #[test]
    fn backoff_doubles_then_caps_and_resets_after_a_stable_run() {
        let quick = Duration::from_secs(1);
        assert_eq!(
            restart_after(Restart::Always, Exit::Failure, quick, 2),
            Some(BACKOFF_START * 4)
        );
        assert_eq!(
            restart_after(Restart::Always, Exit::Failure, quick, 20),
            Some(BACKOFF_MAX)
        );
        assert_eq!(
            restart_after(Restart::Always, Exit::Failure, STABLE_AFTER, 20),
            Some(BACKOFF_START)
        );
    }
}
