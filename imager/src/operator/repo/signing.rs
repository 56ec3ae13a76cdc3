//! TUF roles signed with Slate's ed25519 keys (`slate keygen` PEM files), and metadata
//! written atomically.

use anyhow::{Context, Result};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use tough::schema::{Role, RoleType, Root, Signature, Signed};

/// The TUF form of a public key.
pub fn tuf_key(key: &VerifyingKey) -> Key {
    Key::Ed25519 {
        keyval: Ed25519Key {
            public: Decoded::<Hex>::from(key.to_bytes().to_vec()),
            _extra: HashMap::new(),
        },
        scheme: Ed25519Scheme::Ed25519,
        _extra: HashMap::new(),
    }
}

/// A key's TUF key id (sha256 of its canonical JSON).
pub fn key_id(key: &VerifyingKey) -> Result<Decoded<Hex>> {
    tuf_key(key).key_id().context("computing a TUF key id")
}

/// Signs a role with each key (over its canonical JSON, as TUF says).
pub fn sign<T: Role + Serialize>(role: T, keys: &[&SigningKey]) -> Result<Signed<T>> {
    let mut signed = Signed {
        signed: role,
        signatures: Vec::with_capacity(keys.len()),
    };
    add_signatures(&mut signed, keys)?;
    Ok(signed)
}

/// Adds more signatures over the same role (root rotation: old and new keys both sign).
pub fn add_signatures<T: Role + Serialize>(
    signed: &mut Signed<T>,
    keys: &[&SigningKey],
) -> Result<()> {
    let canonical = signed
        .signed
        .canonical_form()
        .context("canonical JSON of the metadata")?;
    for k in keys {
        let keyid = key_id(&k.verifying_key())?;
        if signed.signatures.iter().any(|s| s.keyid == keyid) {
            continue;
        }
        signed.signatures.push(Signature {
            keyid,
            sig: Decoded::<Hex>::from(k.sign(&canonical).to_bytes().to_vec()),
        });
    }
    Ok(())
}

/// The bytes a role is stored as.
pub fn to_bytes<T: Serialize>(signed: &Signed<T>) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(signed).context("encoding metadata")?;
    v.push(b'\n');
    Ok(v)
}

/// Writes a file atomically: temp name, fsync, rename, fsync the folder; a reader (or the
/// static server) sees the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no folder", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    // Served files must be readable by the web server's user.
    let perm = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(tmp.path(), perm)
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Expiry `span` seconds after `now` (seconds since the epoch).
pub fn expires(now: i64, span: slate_core::channel::Span) -> Result<jiff::Timestamp> {
    let secs = i64::try_from(span.secs()).context("expiry too far away")?;
    jiff::Timestamp::from_second(now.saturating_add(secs)).context("expiry out of range")
}

/// The keys among `keys` that `root` lists for `role`, when they meet its threshold: who may
/// sign that role now. `flag` names the option the keys came from, for the error.
pub fn signers<'k>(
    root: &Root,
    role: RoleType,
    keys: &'k [SigningKey],
    flag: &str,
) -> Result<Vec<&'k SigningKey>> {
    let listed = root
        .roles
        .get(&role)
        .with_context(|| format!("the root (version {}) has no {role:?} role", root.version))?;
    let mut chosen: Vec<&SigningKey> = Vec::new();
    for k in keys {
        let id = key_id(&k.verifying_key())?;
        let fresh = !chosen
            .iter()
            .any(|c| c.verifying_key() == k.verifying_key());
        if listed.keyids.contains(&id) && fresh {
            chosen.push(k);
        }
    }
    if (chosen.len() as u64) < listed.threshold.get() {
        let ids: Vec<String> = listed
            .keyids
            .iter()
            .map(|id| hex::encode(id.as_ref()).chars().take(16).collect())
            .collect();
        anyhow::bail!(
            "the {role:?} role of root version {} needs {} of its keys (ids {}); {} of the {flag} files given {}",
            root.version,
            listed.threshold,
            ids.join(", "),
            chosen.len(),
            if chosen.len() == 1 { "is one" } else { "are" }
        );
    }
    Ok(chosen)
}
