//! The root of trust a check starts from: the newest root this device has verified, not the
//! one baked into its image.
//!
//! Starting every check from the baked root let anyone who holds a root key the operator has
//! since retired (`slate repo rotate-root`) serve a forged successor to that old root, and
//! every device walked onto it. So after each check, the root tough reached is kept on
//! `/data` with the digest of the baked root its chain began from, and the next check starts
//! from it while the image still bakes that root. An image that bakes another root (a newer
//! one of the same chain, or another repository's) starts a new chain from it.
//!
//! The kept file is one JSON document written durably, not tough's own `root.json` in the
//! datastore, which tough replaces by removing it first (a power cut there would send the
//! device back to its baked root).

use crate::durable;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use slate_core::Digest32;
use std::path::Path;
use tough::schema::{Root, Signed};

/// The kept root, in the channel's datastore folder.
pub const FILE: &str = "/data/slate/tuf/trusted-root.json";

/// What is kept: the newest verified root and the baked root its chain began from.
#[derive(Serialize, Deserialize)]
struct Kept {
    /// sha256 of the baked root file the chain was walked from.
    anchor: Digest32,
    /// The newest root reached from it.
    root: Signed<Root>,
}

/// The root one check starts from.
pub struct Start {
    /// The root document handed to tough.
    pub root: Vec<u8>,
    /// Its version.
    pub version: u64,
    /// True when it is the kept root, false for the baked one.
    pub kept: bool,
    /// Why a kept file was not used although it exists (damaged), for a warning.
    pub warning: Option<String>,
}

impl std::fmt::Debug for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Start")
            .field("root", &format_args!("{} bytes", self.root.len()))
            .field("version", &self.version)
            .field("kept", &self.kept)
            .field("warning", &self.warning)
            .finish()
    }
}

/// Parses a root document and checks that it is signed by a threshold of its own root keys.
fn self_signed(bytes: &[u8]) -> Result<Signed<Root>> {
    let root: Signed<Root> = serde_json::from_slice(bytes).context("not a TUF root document")?;
    root.signed
        .verify_role(&root)
        .context("not signed by a threshold of its own root keys")?;
    Ok(root)
}

/// Chooses where a check starts: the kept root when its chain began from this image's baked
/// root and it is at least as new; the baked root otherwise. A baked root that is not a
/// self-signed TUF root is an error (the image is broken); a damaged kept file is not (the
/// check starts from the baked root and says why).
pub fn start(baked: &[u8], kept: Option<&[u8]>) -> Result<Start> {
    let baked_root = self_signed(baked).context("the image's channel root")?;
    let from_baked = |warning: Option<String>| Start {
        root: baked.to_vec(),
        version: baked_root.signed.version.get(),
        kept: false,
        warning,
    };
    let Some(kept) = kept else {
        return Ok(from_baked(None));
    };
    let parsed = serde_json::from_slice::<Kept>(kept)
        .context("not a kept root")
        .and_then(|k| {
            k.root
                .signed
                .verify_role(&k.root)
                .context("not signed by a threshold of its own root keys")?;
            Ok(k)
        });
    let k = match parsed {
        Ok(k) => k,
        Err(e) => {
            return Ok(from_baked(Some(format!(
                "{FILE} is damaged ({e:#}); starting from the image's root"
            ))))
        }
    };
    if k.anchor != Digest32::of(baked) || k.root.signed.version < baked_root.signed.version {
        return Ok(from_baked(None));
    }
    Ok(Start {
        root: serde_json::to_vec(&k.root).context("encoding the kept root")?,
        version: k.root.signed.version.get(),
        kept: true,
        warning: None,
    })
}

/// Keeps `root` (what tough reached this check) as the start of the next check, unless it
/// is what is kept already.
pub fn keep(path: &Path, baked: &[u8], root: &Signed<Root>) -> Result<()> {
    let kept = Kept {
        anchor: Digest32::of(baked),
        root: root.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&kept).context("encoding the kept root")?;
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    durable::replace(path, &bytes)
}

/// The version of a root file's last path segment (`7.root.json` → 7): the files a TUF
/// client asks for while it walks the root chain.
pub fn chain_step(url: &url::Url) -> Option<u64> {
    let name = url.path_segments()?.next_back()?;
    let version = name.strip_suffix(".root.json")?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    version.parse().ok()
}

/// Fails when the root chain's walk met anything but "not found": a server that answers
/// `N+1.root.json` with an error or a broken connection may be withholding a new root, and
/// a check that went on with the old one would trust keys the operator has retired.
pub fn walk_was_complete(failed_step: Option<(u64, String)>) -> Result<()> {
    match failed_step {
        None => Ok(()),
        Some((version, error)) => bail!(
            "fetching {version}.root.json failed ({error}); only \"not found\" ends the root chain, so this check is not trusted"
        ),
    }
}
