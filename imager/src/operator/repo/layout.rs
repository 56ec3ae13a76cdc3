//! Where a repository's files live, its settings, and reading it back through tough.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use slate_core::channel::{ReleaseManifest, Span, RELEASE_TARGET};
use std::path::{Path, PathBuf};
use tough::{ExpirationEnforcement, Repository, RepositoryLoader, TargetName};

/// The settings file's name inside the repository folder.
pub const SETTINGS: &str = "slate-repo.toml";

/// How long each role's signatures stay valid; kept beside the repository so that `slate
/// publish` and a `slate repo refresh` cron job agree without flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Root metadata (offline keys).
    pub root_expiry: Span,
    /// Targets metadata (release key): re-signed by each `slate publish`.
    pub targets_expiry: Span,
    /// Snapshot metadata (online key).
    pub snapshot_expiry: Span,
    /// Timestamp metadata (online key): how long a device trusts a repository it cannot
    /// refresh; re-signed by `slate repo refresh`.
    pub timestamp_expiry: Span,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            root_expiry: Span(365 * 86_400),
            targets_expiry: Span(182 * 86_400),
            snapshot_expiry: Span(7 * 86_400),
            timestamp_expiry: Span(86_400),
        }
    }
}

/// A repository folder.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The folder a static server serves.
    pub dir: PathBuf,
}

impl Layout {
    /// The repository at `dir`.
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// `metadata/`.
    pub fn metadata(&self) -> PathBuf {
        self.dir.join("metadata")
    }

    /// `targets/`.
    pub fn targets(&self) -> PathBuf {
        self.dir.join("targets")
    }

    /// The settings file.
    pub fn settings_path(&self) -> PathBuf {
        self.dir.join(SETTINGS)
    }

    /// Reads the settings; a folder without them is not a repository.
    pub fn settings(&self) -> Result<Settings> {
        let path = self.settings_path();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a Slate repository (no {}); make one with slate repo init",
                self.dir.display(),
                path.display()
            )
        })?;
        toml::from_str(&text).with_context(|| format!("{}: bad settings", path.display()))
    }

    /// Loads the repository through tough's TUF client from its first root, checking every
    /// signature, version and hash; expiry is checked only when `enforce_expiry` (a refresh
    /// must be able to read an expired timestamp to replace it).
    pub fn load(&self, enforce_expiry: bool) -> Result<Repository> {
        let root_path = self.metadata().join("1.root.json");
        let root = std::fs::read(&root_path)
            .with_context(|| format!("reading {}", root_path.display()))?;
        let meta = dir_url(&self.metadata())?;
        let targets = dir_url(&self.targets())?;
        let enforcement = if enforce_expiry {
            ExpirationEnforcement::Safe
        } else {
            ExpirationEnforcement::Unsafe
        };
        block_on(
            RepositoryLoader::new(&root, meta, targets)
                .expiration_enforcement(enforcement)
                .load(),
        )?
        .with_context(|| format!("loading the TUF repository {}", self.dir.display()))
    }

    /// The release manifest the targets metadata names (empty before the first publish);
    /// its bytes are checked against the signed length and sha256.
    pub fn release(&self, repo: &Repository) -> Result<ReleaseManifest> {
        let Some(bytes) = self.target_bytes(repo, RELEASE_TARGET)? else {
            return Ok(ReleaseManifest::default());
        };
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{}: bad release manifest",
                self.targets().join(RELEASE_TARGET).display()
            )
        })
    }

    /// Where a target's file is kept (None: no such target), unchecked: for reading a part of
    /// a large one, such as a bundle's head.
    pub fn target_path(&self, repo: &Repository, name: &str) -> Result<Option<PathBuf>> {
        let target_name = TargetName::new(name).context("target name")?;
        Ok(repo.targets().signed.targets.get(&target_name).map(|t| {
            self.targets()
                .join(format!("{}.{name}", hex::encode(&t.hashes.sha256)))
        }))
    }

    /// A target's bytes as the signed targets metadata describes them (None: no such target).
    pub fn target_bytes(&self, repo: &Repository, name: &str) -> Result<Option<Vec<u8>>> {
        let target_name = TargetName::new(name).context("target name")?;
        let Some(target) = repo.targets().signed.targets.get(&target_name) else {
            return Ok(None);
        };
        let sha = hex::encode(&target.hashes.sha256);
        let path = self.targets().join(format!("{sha}.{name}"));
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if actual != sha || bytes.len() as u64 != target.length {
            bail!(
                "{}: does not match the signed targets metadata (sha256 {actual}, expected {sha})",
                path.display()
            );
        }
        Ok(Some(bytes))
    }
}

/// A `file://` URL for a folder (with the trailing slash tough joins names onto).
fn dir_url(dir: &Path) -> Result<url::Url> {
    let abs = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    url::Url::from_directory_path(&abs)
        .map_err(|()| anyhow::anyhow!("{} cannot be a file URL", abs.display()))
}

/// Runs one of tough's futures to completion on this thread.
pub(super) fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting an async runtime for the TUF client")?;
    Ok(rt.block_on(f))
}
