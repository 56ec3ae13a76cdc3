//! `slate repo refresh`: new snapshot and timestamp signatures with the online key alone, so
//! devices keep trusting an unchanged repository (what a cron job runs, well inside the
//! timestamp's expiry). It also warns while there is time to act when the roles only offline
//! keys can renew (targets, root) are close to expiring: devices refuse an expired role.

use super::layout::Layout;
use super::write::{self, OnlineKeys, TargetsState};
use crate::operator::keys;
use anyhow::Result;
use std::path::{Path, PathBuf};
use tough::schema::RoleType;

/// How long before the targets or root expiry a refresh starts to warn.
pub const WARN_BEFORE_SECS: i64 = 30 * 86_400;

/// What a refresh did and what needs the operator soon.
#[derive(Debug)]
pub struct Refreshed {
    /// The new timestamp's expiry.
    pub timestamp_expires: jiff::Timestamp,
    /// Roles that expire within [`WARN_BEFORE_SECS`] (or already have), with what renews them.
    pub warnings: Vec<String>,
}

/// Re-signs snapshot and timestamp with the online keys (those the root lists for each).
pub fn refresh(dir: &Path, online_keys: &[PathBuf], now: i64) -> Result<Refreshed> {
    let layout = Layout::new(dir);
    let settings = layout.settings()?;
    let keys = keys::load_all(online_keys)?;
    let repo = layout.load(false)?;
    let online = OnlineKeys::choose(&repo.root().signed, &keys)?;
    let targets = TargetsState::of(&repo)?;
    write::snapshot_and_timestamp(&layout, &targets, Some(&repo), &online, &settings, now)?;
    let repo = layout.load(false)?;
    Ok(Refreshed {
        timestamp_expires: repo.timestamp().signed.expires,
        warnings: expiry_warnings(
            &[
                (RoleType::Targets, repo.targets().signed.expires),
                (RoleType::Root, repo.root().signed.expires),
            ],
            now,
        ),
    })
}

/// A warning for each role that expires within [`WARN_BEFORE_SECS`] of `now`.
pub fn expiry_warnings(roles: &[(RoleType, jiff::Timestamp)], now: i64) -> Vec<String> {
    roles
        .iter()
        .filter_map(|(role, expires)| {
            let left = expires.as_second().saturating_sub(now);
            if left > WARN_BEFORE_SECS {
                return None;
            }
            let (name, renew) = match role {
                RoleType::Root => ("root", "slate repo rotate-root (the same keys may be given again)"),
                _ => ("targets", "slate publish (every publish re-signs targets)"),
            };
            Some(if left <= 0 {
                format!("the {name} metadata expired at {expires}: devices refuse the repository until {renew}")
            } else {
                format!(
                    "the {name} metadata expires at {expires}, in {} day(s): renew it with {renew} before then",
                    left / 86_400
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_close_to_expiry_are_named_and_others_are_not() {
        let now = 1_800_000_000;
        let at = |secs: i64| jiff::Timestamp::from_second(now + secs).expect("time");
        let w = expiry_warnings(
            &[
                (RoleType::Targets, at(10 * 86_400)),
                (RoleType::Root, at(300 * 86_400)),
            ],
            now,
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("targets") && w[0].contains("in 10 day(s)"),
            "{w:?}"
        );
        let w = expiry_warnings(&[(RoleType::Root, at(-5))], now);
        assert!(w[0].contains("root metadata expired"), "{w:?}");
        assert!(expiry_warnings(&[(RoleType::Root, at(31 * 86_400))], now).is_empty());
    }
}
