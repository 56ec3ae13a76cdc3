//! Factory reset: `/data` back to what a first boot makes, keeping what protects the device.
//!
//! The agent only asks for it (a request file on `/data`, written durably, then a reboot);
//! stage 1 carries it out on the next boot, right after mounting `/data` and before anything
//! reads it, so no service holds a file open and a power cut in the middle simply wipes again
//! (the request goes last). Kept whatever is asked: the security floor, the clock floor, the
//! TUF root the device verified and the operators' CRL (a reset must not re-open a rollback,
//! a replay or a revoked operator), and ext4's `lost+found`; the device identity too unless a
//! new one is asked for.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The request, relative to `/data`.
pub const REQUEST: &str = "slate/factory-reset.toml";

/// What is kept whatever is asked (relative to `/data`).
pub const ALWAYS_KEPT: [&str; 5] = [
    "slate/security-epoch",
    "slate/clock",
    "slate/tuf/trusted-root.json",
    "slate/operators.crl",
    "lost+found",
];

/// Kept unless a new identity is asked for.
pub const IDENTITY: &str = "slate/identity";

/// What a reset keeps beyond [`ALWAYS_KEPT`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Make a new device identity (new key, new fingerprint: operators pin it again).
    #[serde(default)]
    pub new_identity: bool,
}

/// Asks for a reset at the next boot (`data` is `/data`).
pub fn ask(data: &Path, request: Request) -> Result<()> {
    let path = data.join(REQUEST);
    crate::durable::replace(&path, toml::to_string(&request)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Carries out a reset that was asked for; returns the request when there was one.
pub fn carry_out(data: &Path) -> Result<Option<Request>> {
    let path = data.join(REQUEST);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    // A damaged request still resets, keeping the identity (the safer reading).
    let request: Request = toml::from_str(&text).unwrap_or_default();
    let mut kept: Vec<&str> = ALWAYS_KEPT.to_vec();
    kept.push(REQUEST);
    if !request.new_identity {
        kept.push(IDENTITY);
    }
    wipe(data, "", &kept)?;
    crate::sys::sync();
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    crate::durable::sync_dir(&data.join("slate"))?;
    Ok(Some(request))
}

/// Removes everything under `dir` (`rel` from `/data`) but the `kept` paths and the folders
/// leading to them.
fn wipe(dir: &Path, rel: &str, kept: &[&str]) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let here = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        if kept.contains(&here.as_str()) {
            continue;
        }
        let leads_to_kept = kept.iter().any(|k| k.starts_with(&format!("{here}/")));
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if leads_to_kept && is_dir {
            wipe(&path, &here, kept)?;
        } else if is_dir {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        } else {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    }

    fn tree(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        walk(root, root, &mut out);
        out.sort();
        out
    }

    fn device(root: &Path) {
        for f in [
            "precious",
            "var/lib/app/db",
            "etc/x.conf",
            "slate/state.json",
            "slate/seed",
            "slate/log/slated.log",
            "slate/security-epoch",
            "slate/clock",
            "slate/tuf/trusted-root.json",
            "slate/tuf/timestamp.json",
            "slate/operators.crl",
            "slate/identity/key.pem",
            "slate/identity/cert.pem",
            "lost+found/x",
        ] {
            put(root, f);
        }
    }

    #[test]
    fn a_reset_keeps_the_floors_the_trust_and_the_identity() {
        let d = tempfile::tempdir().unwrap();
        device(d.path());
        assert_eq!(carry_out(d.path()).unwrap(), None, "nothing asked");
        assert_eq!(tree(d.path()).len(), 14);
        ask(d.path(), Request::default()).unwrap();
        assert_eq!(carry_out(d.path()).unwrap(), Some(Request::default()));
        assert_eq!(
            tree(d.path()),
            [
                "lost+found/x",
                "slate/clock",
                "slate/identity/cert.pem",
                "slate/identity/key.pem",
                "slate/operators.crl",
                "slate/security-epoch",
                "slate/tuf/trusted-root.json",
            ]
        );
        assert!(!d.path().join("var").exists());
        // Done: the next boot does nothing.
        assert_eq!(carry_out(d.path()).unwrap(), None);
    }

    #[test]
    fn a_new_identity_goes_too_and_a_damaged_request_keeps_it() {
        let d = tempfile::tempdir().unwrap();
        device(d.path());
        ask(d.path(), Request { new_identity: true }).unwrap();
        carry_out(d.path()).unwrap();
        assert!(!d.path().join("slate/identity").exists());
        device(d.path());
        std::fs::write(d.path().join(REQUEST), "garbage = [").unwrap();
        carry_out(d.path()).unwrap();
        assert!(d.path().join("slate/identity/key.pem").exists());
        assert!(!d.path().join("precious").exists());
    }
}
