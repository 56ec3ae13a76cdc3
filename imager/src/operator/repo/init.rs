//! `slate repo init`: a new repository with its root of trust and empty targets.

use super::layout::{Layout, Settings};
use super::signing::{self, tuf_key};
use super::write;
use crate::operator::keys;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::PathBuf;
use tough::schema::{RoleKeys, RoleType, Root, Targets};

/// What `slate repo init` needs.
#[derive(Debug)]
pub struct InitOptions {
    /// The folder to create.
    pub out: PathBuf,
    /// Root keys (private: root.json is signed by them now; keep them offline afterwards).
    pub root_keys: Vec<PathBuf>,
    /// How many root keys must sign a new root.
    pub threshold: u64,
    /// The release keys that sign targets (each `slate publish`).
    pub targets_keys: Vec<PathBuf>,
    /// How many release keys must sign targets.
    pub targets_threshold: u64,
    /// The online key that signs snapshot and timestamp (each `slate repo refresh`).
    pub online_key: PathBuf,
    /// Expiries.
    pub settings: Settings,
    /// The time it is (seconds since the epoch).
    pub now: i64,
}

/// Creates the repository; returns the path of the root.json to bake into images.
pub fn init(o: &InitOptions) -> Result<PathBuf> {
    let layout = Layout::new(&o.out);
    if layout.metadata().exists() || layout.settings_path().exists() {
        bail!(
            "{} already holds a repository; keys and roots are never replaced by init (use slate repo rotate-root)",
            o.out.display()
        );
    }
    let threshold = NonZeroU64::new(o.threshold).context("--threshold must be at least 1")?;
    if (o.root_keys.len() as u64) < o.threshold {
        bail!(
            "--threshold {} needs at least that many --root-key files (got {})",
            o.threshold,
            o.root_keys.len()
        );
    }
    let root_keys = o
        .root_keys
        .iter()
        .map(|p| keys::load_private(p))
        .collect::<Result<Vec<_>>>()?;
    let targets_threshold =
        NonZeroU64::new(o.targets_threshold).context("--targets-threshold must be at least 1")?;
    let targets_keys = o
        .targets_keys
        .iter()
        .map(|p| keys::load_private(p))
        .collect::<Result<Vec<_>>>()?;
    let online_key = keys::load_private(&o.online_key)?;

    let mut root = Root {
        spec_version: super::SPEC_VERSION.to_string(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: signing::expires(o.now, o.settings.root_expiry)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    let mut role = |role: RoleType, keys: &[&ed25519_dalek::SigningKey], threshold| -> Result<()> {
        let mut keyids = Vec::new();
        for k in keys {
            let id = signing::key_id(&k.verifying_key())?;
            root.keys.insert(id.clone(), tuf_key(&k.verifying_key()));
            if !keyids.contains(&id) {
                keyids.push(id);
            }
        }
        if (keyids.len() as u64) < u64::from(threshold) {
            bail!("{role:?}: the same key was given more than once; {threshold} distinct keys are needed");
        }
        root.roles.insert(
            role,
            RoleKeys {
                keyids,
                threshold,
                _extra: HashMap::new(),
            },
        );
        Ok(())
    };
    let root_refs: Vec<_> = root_keys.iter().collect();
    role(RoleType::Root, &root_refs, threshold)?;
    let targets_refs: Vec<_> = targets_keys.iter().collect();
    role(RoleType::Targets, &targets_refs, targets_threshold)?;
    role(RoleType::Snapshot, &[&online_key], NonZeroU64::MIN)?;
    role(RoleType::Timestamp, &[&online_key], NonZeroU64::MIN)?;
    let root = signing::sign(root, &root_refs)?;
    let bytes = signing::to_bytes(&root)?;

    std::fs::create_dir_all(layout.targets())
        .with_context(|| format!("creating {}", layout.targets().display()))?;
    let settings = toml::to_string(&o.settings).context("encoding the settings")?;
    signing::write_atomic(&layout.settings_path(), settings.as_bytes())?;
    signing::write_atomic(&layout.metadata().join("1.root.json"), &bytes)?;
    signing::write_atomic(&layout.metadata().join("root.json"), &bytes)?;

    let targets = Targets::new(
        super::SPEC_VERSION.to_string(),
        NonZeroU64::MIN,
        signing::expires(o.now, o.settings.targets_expiry)?,
    );
    let state = write::targets(&layout, targets, &targets_refs)?;
    let online = write::OnlineKeys {
        snapshot: vec![&online_key],
        timestamp: vec![&online_key],
    };
    write::snapshot_and_timestamp(&layout, &state, None, &online, &o.settings, o.now)?;
    layout.load(false)?;
    Ok(layout.metadata().join("root.json"))
}
