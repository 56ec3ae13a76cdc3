//! `slate publish`: a signed bundle becomes a target, and the release manifest offers it to
//! devices in waves; `--max-version` pulls the fleet-wide roll-back lever.

use super::layout::Layout;
use super::signing;
use super::write::{self, TargetsState};
use crate::operator::keys;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use slate_core::bundle::BundleReader;
use slate_core::channel::{
    ReleaseManifest, Update, WaveFile, Waves, OPERATORS_CRL_TARGET, RELEASE_TARGET,
};
use slate_core::manifest::Manifest;
use slate_core::Version;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{Hashes, Target};
use tough::TargetName;

/// The field of a static patch's TUF target (`custom`) that names the version it is for, so
/// `slate repo status` can say so (devices find a patch by their running root hash).
pub const PATCH_FROM_VERSION: &str = "from_version";

/// What `slate publish` does.
#[derive(Debug, Default)]
pub struct PublishOptions {
    /// The repository folder.
    pub repo: PathBuf,
    /// A signed bundle to offer.
    pub bundle: Option<PathBuf>,
    /// Its waves [default: every device at once].
    pub waves: Option<PathBuf>,
    /// Product and board for `max_version` without a bundle.
    pub product_board: Option<(String, String)>,
    /// Set the highest version devices may run (`Some(None)` lifts it).
    pub max_version: Option<Option<Version>>,
    /// The release keys (targets role: at least its threshold of them).
    pub targets_keys: Vec<PathBuf>,
    /// The online keys (snapshot and timestamp).
    pub online_keys: Vec<PathBuf>,
    /// The operator CA's CRL to hand devices (`slate ca revoke`).
    pub crl: Option<PathBuf>,
    /// The time it is (seconds since the epoch): waves count from it.
    pub now: i64,
    /// Publish the bundle without its chunk index (devices then always fetch it whole).
    pub no_chunk_index: bool,
    /// Earlier releases' bundles to publish static patches from (devices running one of them
    /// fetch its patch: only the bytes they lack, in one file).
    pub from: Vec<PathBuf>,
}

/// A static patch `slate publish --from` made.
#[derive(Debug, Clone)]
pub struct PatchMade {
    /// The version it is for.
    pub from: Version,
    /// Its bytes.
    pub bytes: u64,
    /// Published, or left out because it would not save at least 5% of the bundle.
    pub published: bool,
}

/// What changed, for the CLI to print.
#[derive(Debug)]
pub struct Published {
    /// The update offered, if a bundle was given.
    pub update: Option<Update>,
    /// The release manifest as devices now read it.
    pub release: ReleaseManifest,
    /// The static patches made (`--from`).
    pub patches: Vec<PatchMade>,
}

/// Publishes; the repository is read back through the TUF client before this returns.
pub fn publish(o: &PublishOptions) -> Result<Published> {
    let layout = Layout::new(&o.repo);
    let settings = layout.settings()?;
    let targets_keys = keys::load_all(&o.targets_keys)?;
    let online_keys = keys::load_all(&o.online_keys)?;
    let repo = layout.load(false)?;
    let root = &repo.root().signed;
    let targets_signers = signing::signers(
        root,
        tough::schema::RoleType::Targets,
        &targets_keys,
        "--targets-key",
    )?;
    let online = write::OnlineKeys::choose(root, &online_keys)?;
    let mut release = layout.release(&repo)?;
    let mut targets = repo.targets().signed.clone();
    let now = u64::try_from(o.now).context("the clock is before 1970")?;

    let mut offered = None;
    let mut patches = Vec::new();
    let mut product_board = o.product_board.clone();
    if let Some(path) = &o.bundle {
        let manifest = signed_manifest(path)?;
        let waves = match &o.waves {
            Some(w) => {
                let text = std::fs::read_to_string(w)
                    .with_context(|| format!("reading {}", w.display()))?;
                WaveFile::parse(&text)
                    .with_context(|| format!("{}", w.display()))?
                    .resolve(now)
            }
            None => Waves::default(),
        };
        let name = format!(
            "{}-{}-{}.slate",
            manifest.product, manifest.board, manifest.version
        );
        let target = add_target_file(&layout, &name, path)?;
        let target_name = TargetName::new(&name).context("target name")?;
        if let Some(old) = targets.targets.get(&target_name) {
            if old.hashes.sha256 != target.hashes.sha256 {
                let copied = layout.targets().join(format!(
                    "{}.{name}",
                    hex::encode(target.hashes.sha256.as_ref())
                ));
                let _ = std::fs::remove_file(copied);
                bail!(
                    "{}: {} {} for {} is already published with other bytes (sha256 {}); devices may have taken it, so a version is never replaced: build and publish a new version",
                    path.display(),
                    manifest.product,
                    manifest.version,
                    manifest.board,
                    hex::encode(old.hashes.sha256.as_ref())
                );
            }
        }
        let bundle_len = target.length;
        targets.targets.insert(target_name, target);
        if !o.no_chunk_index {
            // The root image's chunks (and a format-2 bundle's UKIs'), beside the bundle:
            // devices fetch only what they lack.
            let indexes = super::chunks::of_bundle(path, &manifest)?;
            let named = std::iter::once((slate_core::delta::index_target(&name), indexes.root))
                .chain(indexes.ukis.into_iter().map(|(artifact, index)| {
                    (slate_core::delta::uki_index_target(&name, &artifact), index)
                }));
            for (index_name, index) in named {
                let index_target = add_target_bytes(&layout, &index_name, &index.to_bytes())?;
                targets.targets.insert(
                    TargetName::new(&index_name).context("target name")?,
                    index_target,
                );
            }
        }
        for previous in &o.from {
            let p = super::patches::from_previous(previous, path, &manifest)?;
            let worth_it = (p.bytes.len() as u128)
                * u128::from(slate_core::delta::plan::WORTH_IT.1)
                < u128::from(bundle_len) * u128::from(slate_core::delta::plan::WORTH_IT.0);
            if worth_it {
                let patch_name = slate_core::delta::patch_target(&name, &p.root_hash);
                let mut patch_target = add_target_bytes(&layout, &patch_name, &p.bytes)?;
                patch_target.custom.insert(
                    PATCH_FROM_VERSION.to_string(),
                    serde_json::Value::String(p.from.version.to_string()),
                );
                targets.targets.insert(
                    TargetName::new(&patch_name).context("target name")?,
                    patch_target,
                );
            }
            patches.push(PatchMade {
                from: p.from.version,
                bytes: p.bytes.len() as u64,
                published: worth_it,
            });
        }
        let update = Update {
            product: manifest.product.clone(),
            board: manifest.board.clone(),
            version: manifest.version.clone(),
            target: name,
            published: now,
            waves,
        };
        release.publish(update.clone());
        product_board = Some((manifest.product, manifest.board));
        offered = Some(update);
    } else if o.waves.is_some() {
        bail!("--waves needs --bundle (waves belong to one published bundle)");
    } else if !o.from.is_empty() {
        bail!("--from needs --bundle (a patch builds one published bundle)");
    }
    if let Some(max) = &o.max_version {
        let Some((product, board)) = &product_board else {
            bail!("--max-version needs --bundle, or --product and --board");
        };
        release.set_max_version(product, board, max.clone());
    }
    if let Some(path) = &o.crl {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let der = match x509_parser::pem::parse_x509_pem(&pem) {
            Ok((_, p)) => p.contents,
            Err(_) => pem,
        };
        <x509_parser::revocation_list::CertificateRevocationList as x509_parser::prelude::FromDer<
            '_,
            x509_parser::error::X509Error,
        >>::from_der(&der)
        .map_err(|e| anyhow::anyhow!("{}: not a CRL ({e}); make one with slate ca revoke", path.display()))?;
        let target = add_target_bytes(&layout, OPERATORS_CRL_TARGET, &der)?;
        targets.targets.insert(
            TargetName::new(OPERATORS_CRL_TARGET).context("target name")?,
            target,
        );
    }
    if offered.is_none() && o.max_version.is_none() && o.crl.is_none() {
        bail!("nothing to publish: give --bundle, --max-version and/or --crl");
    }

    let mut json = serde_json::to_vec_pretty(&release).context("encoding release.json")?;
    json.push(b'\n');
    let target = add_target_bytes(&layout, RELEASE_TARGET, &json)?;
    targets.targets.insert(
        TargetName::new(RELEASE_TARGET).context("target name")?,
        target,
    );
    targets.version = targets
        .version
        .checked_add(1)
        .context("targets version overflow")?;
    targets.expires = signing::expires(o.now, settings.targets_expiry)?;
    let state: TargetsState = write::targets(&layout, targets, &targets_signers)?;
    write::snapshot_and_timestamp(&layout, &state, Some(&repo), &online, &settings, o.now)?;
    let check = layout.load(false)?;
    let release = layout.release(&check)?;
    Ok(Published {
        update: offered,
        release,
        patches,
    })
}

/// The manifest of a bundle that carries at least one signature (the device checks them
/// against its trust file; an unsigned bundle could never install).
fn signed_manifest(path: &Path) -> Result<Manifest> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BundleReader::new(BufReader::new(f));
    let (bytes, sigs) =
        slate_core::install::read_head(&mut r).with_context(|| format!("{}", path.display()))?;
    if sigs.signatures.is_empty() {
        bail!(
            "{} is not signed; devices would refuse it (sign it with slate sign --key …)",
            path.display()
        );
    }
    Manifest::parse(&bytes).with_context(|| format!("{}: manifest.toml", path.display()))
}

fn target(length: u64, sha256: Vec<u8>) -> Target {
    Target {
        length,
        hashes: Hashes {
            sha256: Decoded::<Hex>::from(sha256),
            _extra: HashMap::new(),
        },
        custom: HashMap::new(),
        _extra: HashMap::new(),
    }
}

/// Copies a file into `targets/<sha256>.<name>`, hashing as it goes.
fn add_target_file(layout: &Layout, name: &str, path: &Path) -> Result<Target> {
    let dir = layout.targets();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut src = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut length = 0u64;
    loop {
        let n = src
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .with_context(|| format!("writing into {}", dir.display()))?;
        length += n as u64;
    }
    tmp.as_file().sync_all().context("syncing the target")?;
    let sha = hash.finalize().to_vec();
    let perm = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(tmp.path(), perm).context("setting the target's mode")?;
    let dest = dir.join(format!("{}.{name}", hex::encode(&sha)));
    tmp.persist(&dest)
        .with_context(|| format!("renaming into {}", dest.display()))?;
    Ok(target(length, sha))
}

/// Writes bytes as `targets/<sha256>.<name>`.
fn add_target_bytes(layout: &Layout, name: &str, bytes: &[u8]) -> Result<Target> {
    let sha = Sha256::digest(bytes).to_vec();
    let dest = layout
        .targets()
        .join(format!("{}.{name}", hex::encode(&sha)));
    signing::write_atomic(&dest, bytes)?;
    Ok(target(bytes.len() as u64, sha))
}
