//! The release manifest: one signed TUF target (`release.json`) per channel that says, per
//! product and board, which versions exist, where their bundles are, when each device may take
//! them, and the highest version any device may run.
//!
//! It is a TUF target, so the repository's targets key signs it and snapshot/timestamp keep it
//! fresh; the bundles it names carry their own manifest signatures on top. [`decide`] is the
//! whole of a device's policy: the agent and the fleet simulator both call it.

use super::{Seed, Waves};
use crate::Version;
use serde::{Deserialize, Serialize};

/// The target name of the release manifest in the repository.
pub const RELEASE_TARGET: &str = "release.json";
/// The target that carries the operator CA's CRL (`slate publish --crl`): devices take it
/// when it is newer than theirs, as from `slate push --crl`.
pub const OPERATORS_CRL_TARGET: &str = "operators.crl";

/// The format this code writes and reads.
pub const RELEASE_FORMAT: u32 = 1;

/// `release.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    /// Format version ([`RELEASE_FORMAT`]).
    pub format: u32,
    /// Every published update, in publishing order.
    #[serde(default)]
    pub updates: Vec<Update>,
    /// The roll-back lever: per product and board, the highest version devices may run.
    #[serde(default)]
    pub limits: Vec<Limit>,
}

/// One published bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// Product the bundle is for.
    pub product: String,
    /// Board the bundle is for.
    pub board: String,
    /// Image version the bundle installs.
    pub version: Version,
    /// Its TUF target name.
    pub target: String,
    /// When it was published (seconds since the epoch): the time waves count from.
    pub published: u64,
    /// When each device may take it; empty: at once.
    #[serde(default)]
    pub waves: Waves,
}

/// The highest version a product/board may run; devices above it go back to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Product.
    pub product: String,
    /// Board.
    pub board: String,
    /// Highest version allowed.
    pub max_version: Version,
}

impl Default for ReleaseManifest {
    fn default() -> ReleaseManifest {
        ReleaseManifest {
            format: RELEASE_FORMAT,
            updates: Vec::new(),
            limits: Vec::new(),
        }
    }
}

impl ReleaseManifest {
    /// The updates for one product and board.
    pub fn updates_for<'a, 'b>(
        &'a self,
        product: &'b str,
        board: &'b str,
    ) -> impl Iterator<Item = &'a Update> + 'b
    where
        'a: 'b,
    {
        self.updates
            .iter()
            .filter(move |u| u.product == product && u.board == board)
    }

    /// The limit for one product and board.
    pub fn max_version(&self, product: &str, board: &str) -> Option<&Version> {
        self.limits
            .iter()
            .find(|l| l.product == product && l.board == board)
            .map(|l| &l.max_version)
    }

    /// Adds an update, replacing one of the same product, board and version (republishing
    /// with new waves).
    pub fn publish(&mut self, update: Update) {
        self.updates.retain(|u| {
            !(u.product == update.product && u.board == update.board && u.version == update.version)
        });
        self.updates.push(update);
    }

    /// Sets (or with `None` lifts) the limit of a product and board.
    pub fn set_max_version(&mut self, product: &str, board: &str, max: Option<Version>) {
        self.limits
            .retain(|l| !(l.product == product && l.board == board));
        if let Some(max_version) = max {
            self.limits.push(Limit {
                product: product.to_string(),
                board: board.to_string(),
                max_version,
            });
        }
    }
}

/// What the device knows about itself when it decides.
#[derive(Clone, Copy, Debug)]
pub struct DeviceView<'a> {
    /// Product of the running image.
    pub product: &'a str,
    /// Board of the running image.
    pub board: &'a str,
    /// Version of the running image.
    pub version: &'a Version,
    /// The device's seed.
    pub seed: Seed,
    /// Versions that failed their trial here and may not be taken now
    /// ([`crate::retry::blocked`]: back-off running, or failures final).
    pub failed: &'a [Version],
    /// `[update] version_lock`: run exactly this version.
    pub version_lock: Option<&'a Version>,
    /// `[update] ignore_waves`: take a release as soon as it is published.
    pub ignore_waves: bool,
}

/// Why a device installs an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A newer version whose wave has reached this device.
    Upgrade,
    /// The device runs above the product's `max_version`.
    RollBack,
    /// `version_lock` names another version.
    Locked,
}

/// What a device does after reading the release manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Nothing to take.
    UpToDate,
    /// A newer version exists, but this device's time in its wave has not come.
    Wait {
        /// The update waited for.
        update: &'a Update,
        /// When this device becomes ready (seconds since the epoch).
        ready_at: u64,
    },
    /// Install this update now.
    Install {
        /// The update to take.
        update: &'a Update,
        /// Why.
        reason: Reason,
    },
}

/// A device's whole update policy: given the manifest, itself and the time, what to do.
pub fn decide<'a>(manifest: &'a ReleaseManifest, me: &DeviceView<'_>, now: u64) -> Decision<'a> {
    let max = manifest.max_version(me.product, me.board);
    // Neither a lever nor a lock takes a version that failed its trial here: the device
    // already knows it does not work on it (an operator retries one with `slate push --force`).
    let allowed =
        |u: &&Update| !matches!(max, Some(m) if u.version > *m) && !me.failed.contains(&u.version);
    let updates = || manifest.updates_for(me.product, me.board).filter(allowed);
    if let Some(lock) = me.version_lock {
        if lock == me.version {
            return Decision::UpToDate;
        }
        return match updates().find(|u| u.version == *lock) {
            Some(update) => Decision::Install {
                update,
                reason: Reason::Locked,
            },
            None => Decision::UpToDate,
        };
    }
    if max.is_some_and(|m| me.version > m) {
        // The lever an operator pulls when a release is bad: no waves, everyone goes back.
        if let Some(update) = updates().max_by(|a, b| a.version.cmp(&b.version)) {
            return Decision::Install {
                update,
                reason: Reason::RollBack,
            };
        }
        return Decision::UpToDate;
    }
    let newest = updates()
        .filter(|u| u.version > *me.version)
        .max_by(|a, b| a.version.cmp(&b.version));
    let Some(update) = newest else {
        return Decision::UpToDate;
    };
    let ready_at = update.waves.ready_at(me.seed, update.published);
    if me.ignore_waves || ready_at <= now {
        Decision::Install {
            update,
            reason: Reason::Upgrade,
        }
    } else {
        Decision::Wait { update, ready_at }
    }
}
