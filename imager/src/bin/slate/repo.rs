//! The update channel side of the CLI: `slate repo …` and `slate publish`.

use anyhow::Result;
use clap::Subcommand;
use slate_core::channel::{Seed, Span};
use slate_imager::operator::repo::{self, InitOptions, PublishOptions, Settings};
use std::path::PathBuf;

/// The keys that sign a repository's changing roles.
#[derive(clap::Args)]
pub struct RoleKeys {
    /// The release key (signs targets: each publish); repeat when targets need several.
    #[arg(long = "targets-key", value_name = "KEY.pem", required = true)]
    targets_keys: Vec<PathBuf>,
    /// The online key (signs snapshot and timestamp: each publish and refresh); repeat when
    /// rotate-key gave them different keys.
    #[arg(long = "online-key", value_name = "KEY.pem", required = true)]
    online_keys: Vec<PathBuf>,
}

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Make a TUF repository for devices to pull from: plain files for any static HTTPS server.
    ///
    /// Writes DIR/metadata/root.json (bake it into images: `[update] channel_root`), empty
    /// targets, snapshot and timestamp, and DIR/slate-repo.toml (expiries). Keys come from
    /// `slate keygen`; keep the root keys offline afterwards.
    Init {
        /// The folder to create.
        #[arg(long)]
        out: PathBuf,
        /// A root key (private); repeat for several.
        #[arg(long = "root-key", value_name = "KEY.pem", required = true)]
        root_keys: Vec<PathBuf>,
        /// How many root keys must sign a new root.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        #[command(flatten)]
        keys: RoleKeys,
        /// How many release keys (--targets-key) must sign targets: each publish then needs
        /// that many of them.
        #[arg(long, default_value_t = 1)]
        targets_threshold: u64,
        /// How long a timestamp stays valid: devices refuse a repository not refreshed within it.
        #[arg(long, default_value = "1d")]
        timestamp_expiry: Span,
        /// How long a snapshot stays valid.
        #[arg(long, default_value = "7d")]
        snapshot_expiry: Span,
        /// How long targets stay valid (each publish renews them).
        #[arg(long, default_value = "26w")]
        targets_expiry: Span,
        /// How long the root stays valid (rotate-root renews it).
        #[arg(long, default_value = "52w")]
        root_expiry: Span,
    },
    /// Re-sign snapshot and timestamp with the online key (run it from cron, well within
    /// the timestamp expiry). Warns when targets or root expire within 30 days.
    Refresh {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// The online key; repeat when snapshot and timestamp have different keys.
        #[arg(long = "online-key", value_name = "KEY.pem", required = true)]
        online_keys: Vec<PathBuf>,
    },
    /// Replace the root keys (and renew the root's expiry): the new root is signed by enough
    /// old root keys and all new ones, so devices with an older root.json follow.
    RotateRoot {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// A current root key (private); repeat until the current threshold is met.
        #[arg(long = "old-key", value_name = "KEY.pem", required = true)]
        old_keys: Vec<PathBuf>,
        /// A new root key (private); repeat for several. The old ones may be given again.
        #[arg(long = "root-key", value_name = "KEY.pem", required = true)]
        root_keys: Vec<PathBuf>,
        /// How many new root keys must sign the next root.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
    },
    /// Give the targets, snapshot or timestamp role new keys (a lost or compromised key): a
    /// new root version signed by the root keys, and the role's metadata signed again by the
    /// new keys. Devices drop the old key at their next check.
    RotateKey {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// The role whose keys are replaced.
        #[arg(long, value_enum)]
        role: repo::KeyRole,
        /// A current root key (private); repeat until the root's threshold is met.
        #[arg(long = "root-key", value_name = "KEY.pem", required = true)]
        root_keys: Vec<PathBuf>,
        /// A new key of the role (private); repeat for several.
        #[arg(long = "new-key", value_name = "KEY.pem", required = true)]
        new_keys: Vec<PathBuf>,
        /// How many of the new keys must sign the role.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        /// The online key for snapshot and timestamp (when the rotated role is one of them,
        /// its new key signs it); repeat when they have different keys.
        #[arg(long = "online-key", value_name = "KEY.pem", required = true)]
        online_keys: Vec<PathBuf>,
    },
    /// Show what a repository offers: versions, waves as dates and fleet shares, limits,
    /// and each role's expiry.
    Status {
        /// The repository folder.
        repo: PathBuf,
        /// Also say when the device with this seed (its status shows it) becomes ready.
        #[arg(long)]
        seed: Option<u32>,
    },
}

impl RepoCommand {
    /// Runs `slate repo …`.
    pub fn run(self) -> Result<()> {
        let now = slate_imager::operator::bundle::now();
        match self {
            RepoCommand::Init {
                out,
                root_keys,
                threshold,
                keys,
                targets_threshold,
                timestamp_expiry,
                snapshot_expiry,
                targets_expiry,
                root_expiry,
            } => {
                let root = repo::init(&InitOptions {
                    out: out.clone(),
                    root_keys,
                    threshold,
                    targets_keys: keys.targets_keys,
                    targets_threshold,
                    online_key: single_online_key(keys.online_keys)?,
                    settings: Settings {
                        root_expiry,
                        targets_expiry,
                        snapshot_expiry,
                        timestamp_expiry,
                    },
                    now,
                })?;
                println!(
                    "repository {}: serve this folder over HTTPS; bake {} into images ([update] channel_root)",
                    out.display(),
                    root.display()
                );
            }
            RepoCommand::Refresh {
                repo: dir,
                online_keys,
            } => {
                let done = repo::refresh(&dir, &online_keys, now)?;
                println!(
                    "{}: timestamp valid until {}",
                    dir.display(),
                    done.timestamp_expires
                );
                for w in &done.warnings {
                    eprintln!("warning: {w}");
                }
            }
            RepoCommand::RotateKey {
                repo: dir,
                role,
                root_keys,
                new_keys,
                threshold,
                online_keys,
            } => {
                let v = repo::rotate_key(
                    &dir,
                    &repo::RotateKey {
                        role,
                        root_keys,
                        new_keys,
                        threshold,
                        online_keys,
                    },
                    now,
                )?;
                println!(
                    "{}: root version {v} gives the {role:?} role new keys; devices drop the old one at their next check",
                    dir.display()
                );
            }
            RepoCommand::RotateRoot {
                repo: dir,
                old_keys,
                root_keys,
                threshold,
            } => {
                let v = repo::rotate_root(&dir, &old_keys, &root_keys, threshold, now)?;
                println!(
                    "{}: root version {v}; devices with an older root follow the chain",
                    dir.display()
                );
            }
            RepoCommand::Status { repo: dir, seed } => {
                let seed = seed
                    .map(|s| Seed::try_from(s).map_err(anyhow::Error::msg))
                    .transpose()?;
                print!("{}", repo::status(&dir)?.render(now, seed));
            }
        }
        Ok(())
    }
}

/// `slate publish`.
#[derive(clap::Args)]
pub struct PublishArgs {
    /// The repository folder (`slate repo init`).
    #[arg(long)]
    repo: PathBuf,
    /// A signed bundle to offer to devices.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Wave file ([[wave]] start_after = "1h", fleet_percentage = 1, …) [default: every
    /// device at once].
    #[arg(long, value_name = "waves.toml", requires = "bundle")]
    waves: Option<PathBuf>,
    /// The highest version devices of this product and board may run: devices above it go
    /// back to the newest published version at or below it.
    #[arg(long, value_name = "X.Y.Z", conflicts_with = "no_max_version")]
    max_version: Option<slate_core::Version>,
    /// Lift the max_version limit.
    #[arg(long)]
    no_max_version: bool,
    /// Product, for --max-version without --bundle.
    #[arg(long, requires = "board", conflicts_with = "bundle")]
    product: Option<String>,
    /// Board, for --max-version without --bundle.
    #[arg(long, requires = "product", conflicts_with = "bundle")]
    board: Option<String>,
    /// The operator CA's CRL (`slate ca revoke`): devices refuse the certificates it lists
    /// once they have checked the channel.
    #[arg(long, value_name = "CA.crl.pem")]
    crl: Option<PathBuf>,
    /// Publish the bundle without the chunk index of its root image (`<bundle>.chunks`), with
    /// which devices fetch only the chunks they lack.
    #[arg(long, requires = "bundle")]
    no_chunk_index: bool,
    /// An earlier release's bundle (repeatable): also publish a static patch from it
    /// (`<bundle>.patch-<its root hash>`), which devices running exactly that release fetch
    /// instead of chunks — only the bytes they lack, in one file. Left out, with a note, when
    /// it would not save 5% of the bundle.
    #[arg(long, value_name = "PREV.slate", requires = "bundle")]
    from: Vec<PathBuf>,
    #[command(flatten)]
    keys: RoleKeys,
}

impl PublishArgs {
    /// Runs `slate publish`.
    pub fn run(self) -> Result<()> {
        let max_version = match (self.max_version, self.no_max_version) {
            (Some(v), _) => Some(Some(v)),
            (None, true) => Some(None),
            (None, false) => None,
        };
        let out = repo::publish(&PublishOptions {
            repo: self.repo.clone(),
            bundle: self.bundle,
            waves: self.waves,
            product_board: self.product.zip(self.board),
            max_version,
            targets_keys: self.keys.targets_keys,
            online_keys: self.keys.online_keys,
            crl: self.crl.clone(),
            now: slate_imager::operator::bundle::now(),
            no_chunk_index: self.no_chunk_index,
            from: self.from,
        })?;
        for p in &out.patches {
            if p.published {
                println!(
                    "published a static patch from {} ({} bytes)",
                    p.from, p.bytes
                );
            } else {
                println!(
                    "no static patch from {}: {} bytes would not save 5% of the bundle",
                    p.from, p.bytes
                );
            }
        }
        if let Some(crl) = &self.crl {
            println!("published the operators' CRL {}", crl.display());
        }
        if let Some(u) = &out.update {
            println!(
                "published {} {} for {} as {} ({} waves)",
                u.product,
                u.version,
                u.board,
                u.target,
                u.waves.0.len()
            );
        }
        for l in &out.release.limits {
            println!(
                "max_version {} for {} on {}",
                l.max_version, l.product, l.board
            );
        }
        println!("see: slate repo status {}", self.repo.display());
        Ok(())
    }
}

/// A new repository signs snapshot and timestamp with one online key.
fn single_online_key(mut keys: Vec<PathBuf>) -> Result<PathBuf> {
    match (keys.pop(), keys.is_empty()) {
        (Some(k), true) => Ok(k),
        _ => anyhow::bail!(
            "slate repo init takes one --online-key (rotate-key can give snapshot and timestamp different keys later)"
        ),
    }
}
