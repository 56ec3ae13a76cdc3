//! Writing new versions of targets, snapshot and timestamp, in the order a client reads
//! them backwards, so a live server never serves a timestamp whose snapshot is missing.

use super::layout::{Layout, Settings};
use super::signing;
use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::num::NonZeroU64;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{Hashes, Metafile, Snapshot, Targets, Timestamp};
use tough::Repository;

/// A signed targets metadata file as snapshot must describe it.
pub struct TargetsState {
    /// Its version.
    pub version: NonZeroU64,
    /// Its length in bytes.
    pub length: u64,
    /// Its sha256.
    pub sha256: Vec<u8>,
}

impl TargetsState {
    /// The targets metadata a loaded repository trusts now.
    pub fn of(repo: &Repository) -> Result<TargetsState> {
        let meta = repo
            .snapshot()
            .signed
            .meta
            .get("targets.json")
            .context("the snapshot does not describe targets.json")?;
        let hashes = meta
            .hashes
            .as_ref()
            .context("the snapshot has no hash of targets.json")?;
        Ok(TargetsState {
            version: meta.version,
            length: meta
                .length
                .context("the snapshot has no length of targets.json")?,
            sha256: hashes.sha256.to_vec(),
        })
    }
}

/// The keys that sign snapshot and timestamp: one online key for both unless
/// `slate repo rotate-key` gave them different ones.
pub struct OnlineKeys<'k> {
    /// Signers of snapshot.json.
    pub snapshot: Vec<&'k SigningKey>,
    /// Signers of timestamp.json.
    pub timestamp: Vec<&'k SigningKey>,
}

impl<'k> OnlineKeys<'k> {
    /// The keys among `keys` (the `--online-key` files) that `root` lists for each role.
    pub fn choose(root: &tough::schema::Root, keys: &'k [SigningKey]) -> Result<OnlineKeys<'k>> {
        use tough::schema::RoleType;
        Ok(OnlineKeys {
            snapshot: signing::signers(root, RoleType::Snapshot, keys, "--online-key")?,
            timestamp: signing::signers(root, RoleType::Timestamp, keys, "--online-key")?,
        })
    }
}

fn metafile(version: NonZeroU64, bytes: &[u8]) -> Metafile {
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: Decoded::<Hex>::from(Sha256::digest(bytes).to_vec()),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

/// Signs (with each of `keys`) and writes `N.targets.json`.
pub fn targets(layout: &Layout, targets: Targets, keys: &[&SigningKey]) -> Result<TargetsState> {
    let version = targets.version;
    let signed = signing::sign(targets, keys)?;
    let bytes = signing::to_bytes(&signed)?;
    signing::write_atomic(
        &layout.metadata().join(format!("{version}.targets.json")),
        &bytes,
    )?;
    Ok(TargetsState {
        version,
        length: bytes.len() as u64,
        sha256: Sha256::digest(&bytes).to_vec(),
    })
}

/// Signs and writes the next `N.snapshot.json` and then `timestamp.json`, one version above
/// `previous` (the loaded repository, or `None` for a new one).
pub fn snapshot_and_timestamp(
    layout: &Layout,
    targets: &TargetsState,
    previous: Option<&Repository>,
    keys: &OnlineKeys<'_>,
    settings: &Settings,
    now: i64,
) -> Result<()> {
    let next = |v: Option<NonZeroU64>| v.map_or(Some(NonZeroU64::MIN), |v| v.checked_add(1));
    let snap_version =
        next(previous.map(|r| r.snapshot().signed.version)).context("snapshot version overflow")?;
    let ts_version = next(previous.map(|r| r.timestamp().signed.version))
        .context("timestamp version overflow")?;

    let mut snapshot = Snapshot::new(
        super::SPEC_VERSION.to_string(),
        snap_version,
        signing::expires(now, settings.snapshot_expiry)?,
    );
    snapshot.meta.insert(
        "targets.json".to_string(),
        Metafile {
            length: Some(targets.length),
            hashes: Some(Hashes {
                sha256: Decoded::<Hex>::from(targets.sha256.clone()),
                _extra: HashMap::new(),
            }),
            version: targets.version,
            _extra: HashMap::new(),
        },
    );
    let snapshot = signing::to_bytes(&signing::sign(snapshot, &keys.snapshot)?)?;
    signing::write_atomic(
        &layout
            .metadata()
            .join(format!("{snap_version}.snapshot.json")),
        &snapshot,
    )?;

    let mut timestamp = Timestamp::new(
        super::SPEC_VERSION.to_string(),
        ts_version,
        signing::expires(now, settings.timestamp_expiry)?,
    );
    timestamp.meta.insert(
        "snapshot.json".to_string(),
        metafile(snap_version, &snapshot),
    );
    let timestamp = signing::to_bytes(&signing::sign(timestamp, &keys.timestamp)?)?;
    signing::write_atomic(&layout.metadata().join("timestamp.json"), &timestamp)?;
    Ok(())
}
