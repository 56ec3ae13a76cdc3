//! `slate repo rotate-root`: a new root (new root keys, a new threshold, a renewed expiry)
//! signed by enough of the old root keys *and* all of the new ones, so devices that trust an
//! older root walk forward to it (TUF's root chain) without a new image.
//!
//! `slate repo rotate-key --role targets|snapshot|timestamp`: a new root version that gives
//! one of the other roles new keys (a lost or compromised release or online key), signed by
//! the root keys, and that role's metadata signed again by its new keys, so devices drop the
//! old key at their next check.

use super::layout::Layout;
use super::signing::{self, tuf_key};
use super::write::{self, OnlineKeys, TargetsState};
use crate::operator::keys;
use anyhow::{bail, Context, Result};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::schema::{RoleKeys, RoleType};

/// Writes `N+1.root.json` (and `root.json`); returns the new root's version.
pub fn rotate_root(
    dir: &Path,
    old_paths: &[PathBuf],
    new_keys: &[PathBuf],
    threshold: u64,
    now: i64,
) -> Result<u64> {
    let layout = Layout::new(dir);
    let settings = layout.settings()?;
    let repo = layout.load(false)?;
    let old_root = &repo.root().signed;
    let old_keys = old_paths
        .iter()
        .map(|p| keys::load_private(p))
        .collect::<Result<Vec<_>>>()?;
    let new_keys = new_keys
        .iter()
        .map(|p| keys::load_private(p))
        .collect::<Result<Vec<_>>>()?;
    let old_role = old_root
        .roles
        .get(&RoleType::Root)
        .context("the current root has no root role")?;
    let mut signing_old = 0u64;
    for (k, path) in old_keys.iter().zip(old_paths) {
        let id = signing::key_id(&k.verifying_key())?;
        if !old_role.keyids.contains(&id) {
            bail!(
                "--old-key {}: not a key of the current root (version {})",
                path.display(),
                old_root.version
            );
        }
        signing_old += 1;
    }
    if signing_old < old_role.threshold.get() {
        bail!(
            "the current root needs {} of its keys to sign its successor; {signing_old} given (--old-key)",
            old_role.threshold
        );
    }
    let mut root = next_root(old_root, RoleType::Root, &new_keys, threshold, "--root-key")?;
    root.expires = signing::expires(now, settings.root_expiry)?;
    let version = root.version;
    let new_refs: Vec<_> = new_keys.iter().collect();
    let mut signed = signing::sign(root, &new_refs)?;
    let old_refs: Vec<_> = old_keys.iter().collect();
    signing::add_signatures(&mut signed, &old_refs)?;
    let bytes = signing::to_bytes(&signed)?;
    signing::write_atomic(
        &layout.metadata().join(format!("{version}.root.json")),
        &bytes,
    )?;
    signing::write_atomic(&layout.metadata().join("root.json"), &bytes)?;
    let check = layout.load(false)?;
    if check.root().signed.version != version {
        bail!("the TUF client did not reach the new root {version}");
    }
    Ok(version.get())
}

/// The role `slate repo rotate-key` gives new keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyRole {
    /// The release keys (each publish).
    Targets,
    /// The online key of snapshot.json.
    Snapshot,
    /// The online key of timestamp.json.
    Timestamp,
}

impl KeyRole {
    fn role_type(self) -> RoleType {
        match self {
            KeyRole::Targets => RoleType::Targets,
            KeyRole::Snapshot => RoleType::Snapshot,
            KeyRole::Timestamp => RoleType::Timestamp,
        }
    }
}

/// What `slate repo rotate-key` needs.
#[derive(Debug)]
pub struct RotateKey {
    /// The role whose keys are replaced.
    pub role: KeyRole,
    /// Current root keys, at least the root's threshold of them.
    pub root_keys: Vec<PathBuf>,
    /// The role's new keys (private: they sign its metadata now).
    pub new_keys: Vec<PathBuf>,
    /// How many of the new keys must sign the role.
    pub threshold: u64,
    /// Online keys for the snapshot and timestamp this writes (the rotated role's new key
    /// is used for its own role).
    pub online_keys: Vec<PathBuf>,
}

/// Writes `N+1.root.json` with the role's new keys, then that role's metadata signed by
/// them (and snapshot and timestamp over it); returns the new root's version.
pub fn rotate_key(dir: &Path, o: &RotateKey, now: i64) -> Result<u64> {
    let layout = Layout::new(dir);
    let settings = layout.settings()?;
    let repo = layout.load(false)?;
    let old_root = &repo.root().signed;
    let root_keys = keys::load_all(&o.root_keys)?;
    let root_signers = signing::signers(old_root, RoleType::Root, &root_keys, "--root-key")?;
    let new_keys = keys::load_all(&o.new_keys)?;
    let role = o.role.role_type();
    let root = next_root(old_root, role, &new_keys, o.threshold, "--new-key")?;
    let version = root.version;
    let signed = signing::sign(root.clone(), &root_signers)?;
    let bytes = signing::to_bytes(&signed)?;

    // The role's keys sign what it covers again before devices can see the new root: the
    // targets first (a new version), then snapshot and timestamp over them. A device that
    // reads the new root before the timestamp changed refuses the old timestamp's key for
    // one check, and takes the new one at the next.
    let mut online_keys = keys::load_all(&o.online_keys)?;
    online_keys.extend(new_keys.iter().cloned());
    let online = OnlineKeys::choose(&root, &online_keys)?;
    let targets_state = if o.role == KeyRole::Targets {
        let mut targets = repo.targets().signed.clone();
        targets.version = targets
            .version
            .checked_add(1)
            .context("targets version overflow")?;
        targets.expires = signing::expires(now, settings.targets_expiry)?;
        let signers = signing::signers(&root, role, &new_keys, "--new-key")?;
        write::targets(&layout, targets, &signers)?
    } else {
        TargetsState::of(&repo)?
    };
    signing::write_atomic(
        &layout.metadata().join(format!("{version}.root.json")),
        &bytes,
    )?;
    signing::write_atomic(&layout.metadata().join("root.json"), &bytes)?;
    write::snapshot_and_timestamp(
        &layout,
        &targets_state,
        Some(&repo),
        &online,
        &settings,
        now,
    )?;
    let check = layout.load(false)?;
    if check.root().signed.version != version {
        bail!("the TUF client did not reach the new root {version}");
    }
    Ok(version.get())
}

/// The next root version after `old`, with `role` given `keys` (at least `threshold` distinct
/// ones, from the option `flag`), and the keys no role uses any more left out.
fn next_root(
    old: &tough::schema::Root,
    role: RoleType,
    keys: &[ed25519_dalek::SigningKey],
    threshold: u64,
    flag: &str,
) -> Result<tough::schema::Root> {
    let threshold = NonZeroU64::new(threshold).context("--threshold must be at least 1")?;
    let mut root = old.clone();
    let mut keyids = Vec::new();
    for k in keys {
        let id = signing::key_id(&k.verifying_key())?;
        root.keys.insert(id.clone(), tuf_key(&k.verifying_key()));
        if !keyids.contains(&id) {
            keyids.push(id);
        }
    }
    if (keyids.len() as u64) < threshold.get() {
        bail!("--threshold {threshold} needs that many distinct {flag} files");
    }
    root.roles.insert(
        role,
        RoleKeys {
            keyids,
            threshold,
            _extra: Default::default(),
        },
    );
    let used: Vec<_> = root.roles.values().flat_map(|r| r.keyids.clone()).collect();
    root.keys.retain(|id, _| used.contains(id));
    root.version = old
        .version
        .checked_add(1)
        .context("root version overflow")?;
    Ok(root)
}
