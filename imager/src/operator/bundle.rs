//! `slate bundle`, `slate sign`, `slate verify` and bundle inspection (DESIGN §7).
//!
//! A bundle is made from a build folder: its `build.toml` names the version, board and verity
//! parameters, and each artifact is hashed again so a folder changed after the build is caught.

use crate::image::build::Report;
use crate::image::hashing::hash_file;
use anyhow::{bail, Context, Result};
use ed25519_dalek::{Signer, SigningKey};
use slate_core::bundle::{self, BundleReader};
use slate_core::install;
use slate_core::manifest::{
    self, key_id, Artifact, DeviceFacts, Manifest, SignatureEntry, Signatures, Trust, Verifier,
};
use slate_core::verity::VerityInfo;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Unix seconds now, or `SOURCE_DATE_EPOCH` when set (reproducible bundles; a malformed value
/// is an error where a bundle is made, [`created`], and the clock here).
pub fn now() -> i64 {
    created().unwrap_or_else(|_| clock())
}

/// A new bundle's `created`: `SOURCE_DATE_EPOCH`, else the clock; a malformed value is refused
/// rather than ignored.
fn created() -> Result<i64> {
    Ok(crate::image::build::source_date_epoch()?.unwrap_or_else(clock))
}

/// Unix seconds by the system clock.
fn clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` or unix seconds.
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let bad = || {
        anyhow::anyhow!(
            "{s:?} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC) or unix seconds"
        )
    };
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00Z"));
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let t: Vec<i64> = time
        .trim_end_matches('Z')
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    if d.len() != 3
        || t.len() != 3
        || !(1..=12).contains(&d[1])
        || !(1..=31).contains(&d[2])
        || t[0] > 23
        || t[1] > 59
        || t[2] > 60
    {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2])
}

fn sign_entry(key: &SigningKey, manifest: &[u8]) -> SignatureEntry {
    SignatureEntry {
        key_id: key_id(&key.verifying_key()),
        signature: hex::encode(key.sign(manifest).to_bytes()),
    }
}

fn partial(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.partial", out.display()))
}

/// Makes a signed bundle from a build folder. Its security epoch is the image's; one given
/// (`security_epoch`) must be the same, so the manifest never says what the image does not.
pub fn make(
    build_dir: &Path,
    keys: &[SigningKey],
    security_epoch: Option<u64>,
    expires: Option<i64>,
    out: &Path,
) -> Result<Manifest> {
    if keys.is_empty() {
        bail!("give at least one --key to sign with");
    }
    let report = Report::load(build_dir)?;
    let image_epoch = report.image.security_epoch;
    if let Some(asked) = security_epoch.filter(|&e| e != image_epoch) {
        bail!(
            "--security-epoch {asked}: the image in {} has security epoch {image_epoch} (build.toml); the manifest must agree with the image, so rebuild it with `slate build --security-epoch {asked}`",
            build_dir.display()
        );
    }
    let security_epoch = image_epoch;
    // A Secure Boot build's slots boot its signed UKIs, so its bundles carry those (format 2).
    let ukis = report.has_ukis();
    let (format, names) = if ukis {
        (manifest::FORMAT_UKI, manifest::UKI_ARTIFACTS)
    } else {
        (manifest::FORMAT, manifest::ARTIFACTS)
    };
    let mut artifacts = Vec::new();
    for name in names {
        let path = build_dir.join(name);
        let (size, sha256) = hash_file(&path)?;
        let recorded = report
            .outputs
            .iter()
            .find(|o| o.name == name)
            .with_context(|| format!("build.toml lists no {name}"))?;
        if recorded.sha256 != sha256 || recorded.size != size {
            bail!(
                "{} changed since `slate build` recorded it in build.toml; rebuild",
                path.display()
            );
        }
        let verity = (name == manifest::ROOTFS).then(|| report.verity.info.clone());
        artifacts.push(Artifact {
            name: name.into(),
            size,
            sha256,
            verity,
        });
    }
    let created = created()?;
    let m = Manifest {
        format,
        product: report.image.name.clone(),
        board: report.image.board.clone(),
        version: report.image.version.clone(),
        security_epoch,
        created,
        expires,
        options: report.boot.options.clone(),
        artifacts,
    };
    let bytes = m.to_bytes();
    Manifest::parse(&bytes).context("the manifest made from build.toml is invalid")?;
    let sigs = Signatures {
        signatures: keys.iter().map(|k| sign_entry(k, &bytes)).collect(),
    };
    write_through_temporary(out, created, |w| {
        w.head(&bytes, &sigs.to_bytes())?;
        for a in &m.artifacts {
            let path = build_dir.join(&a.name);
            let mut f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            w.stream(&a.name, a.size, &mut f)
                .with_context(|| format!("{} changed while being bundled", a.name))?;
        }
        Ok(())
    })?;
    Ok(m)
}

/// Writes the bundle `out` with `fill` through a temporary file beside it, synced and renamed
/// into place: a failure or a cut leaves no half-written bundle under the name.
fn write_through_temporary(
    out: &Path,
    mtime: i64,
    fill: impl FnOnce(&mut bundle::Writer<BufWriter<File>>) -> Result<()>,
) -> Result<()> {
    let tmp = partial(out);
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = bundle::Writer::new(BufWriter::new(file), mtime);
        fill(&mut w)?;
        w.finish()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).with_context(|| format!("moving the bundle to {}", out.display()))
}

/// Adds a signature to a bundle, rewriting it through a temporary file.
pub fn sign(path: &Path, key: &SigningKey) -> Result<usize> {
    let mut r = BundleReader::new(BufReader::new(
        File::open(path).with_context(|| format!("opening {}", path.display()))?,
    ));
    let (m, mut sigs) = install::read_head(&mut r)?;
    let manifest = Manifest::parse(&m)?;
    let id = key_id(&key.verifying_key());
    if sigs.signatures.iter().any(|s| s.key_id == id) {
        bail!("{} is already signed by key {id}", path.display());
    }
    sigs.signatures.push(sign_entry(key, &m));
    write_through_temporary(path, manifest.created, |w| {
        w.head(&m, &sigs.to_bytes())?;
        for a in &manifest.artifacts {
            install::expect_artifact(&mut r, a)?;
            // Checked against its signed sha256 on the way: a bundle signed again carries only
            // what its manifest says.
            w.entry_with(&a.name, a.size, |out| {
                let mut n = 0u64;
                install::stream_artifact(&mut r, a, |c| {
                    n += c.len() as u64;
                    out.write_all(c)
                })
                .map_err(std::io::Error::other)??;
                Ok(n)
            })?;
        }
        r.expect_end()?;
        Ok(())
    })?;
    Ok(sigs.signatures.len())
}

/// Facts of a device to verify against, from the build folder of the image it runs.
pub fn facts_from_build(
    dir: &Path,
    security_epoch: u64,
    failed: Vec<slate_core::Version>,
) -> Result<DeviceFacts> {
    let r = Report::load(dir)?;
    Ok(DeviceFacts {
        product: r.image.name,
        board: r.image.board,
        version: r.image.version,
        security_epoch,
        failed_versions: failed,
        now: now(),
    })
}

/// Everything a device checks, offline: signatures and threshold, manifest, compatibility
/// (when `device` is given), expiry, then every artifact's size and sha256 and the root
/// image's verity tree and root hash. A bundle that carries UKIs (format 2) has each checked
/// as the device checks it before it writes anything: the manifest's command line and
/// version, and for a Secure Boot image (its UKIs are signed) a signature by the image's db
/// certificate (`secure_boot_cert`, PEM, then required).
pub fn verify(
    path: &Path,
    trust: &Trust,
    device: Option<&DeviceFacts>,
    secure_boot_cert: Option<&Path>,
) -> Result<Manifest> {
    let mut r = BundleReader::new(BufReader::new(
        File::open(path).with_context(|| format!("opening {}", path.display()))?,
    ));
    let (m, sigs) = install::read_head(&mut r)?;
    let v = Verifier { trust };
    let manifest = match device {
        Some(d) => v.verify(&m, &sigs, d, false)?,
        None => {
            v.check_signatures(&m, &sigs)?;
            let manifest = Manifest::parse(&m)?;
            if let Some(e) = manifest.expires.filter(|&e| now() >= e) {
                return Err(manifest::ManifestError::Expired {
                    expires: e,
                    now: now(),
                }
                .into());
            }
            manifest
        }
    };
    let db_cert = match (manifest.carries_ukis(), secure_boot_cert) {
        (true, Some(p)) => {
            Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
        }
        (true, None) => None,
        (false, Some(p)) => bail!(
            "{} carries a kernel and an initramfs, not signed UKIs: it is not for a Secure Boot image, so --secure-boot-cert {} does not apply (a Secure Boot device refuses it)",
            path.display(),
            p.display()
        ),
        (false, None) => None,
    };
    // A private file (0600, a name no one can guess), removed when dropped.
    let scratch =
        tempfile::NamedTempFile::new().context("creating a scratch file for the root image")?;
    for a in &manifest.artifacts {
        install::expect_artifact(&mut r, a)?;
        let mut keep = if a.verity.is_some() {
            let f = scratch.reopen().context("reopening the scratch file")?;
            f.set_len(0).context("emptying the scratch file")?;
            Some(f)
        } else {
            None
        };
        // A UKI is at most MAX_BOOT_ARTIFACT bytes (Manifest::parse): checked in memory.
        let mut uki =
            uki_slot(&a.name).map(|_| Vec::with_capacity(slate_core::num::usize_of(a.size)));
        install::stream_artifact(&mut r, a, |c| -> std::io::Result<()> {
            if let Some(f) = keep.as_mut() {
                f.write_all(c)?;
            }
            if let Some(v) = uki.as_mut() {
                v.extend_from_slice(c);
            }
            Ok(())
        })??;
        if let (Some(vp), Some(mut f)) = (&a.verity, keep) {
            check_verity(&mut f, vp)?;
        }
        if let (Some(slot), Some(bytes)) = (uki_slot(&a.name), uki) {
            let signed = slate_core::pe::Pe::parse(&bytes).is_ok_and(|pe| pe.is_signed());
            if signed && db_cert.is_none() {
                bail!(
                    "{}: {} is signed, so the bundle is for a Secure Boot image: give --secure-boot-cert with the image's db certificate so its UKIs are checked as the device checks them",
                    path.display(),
                    a.name
                );
            }
            crate::image::write::uki::check_bundle_uki(
                &bytes,
                slot,
                &manifest,
                db_cert.as_deref(),
            )?;
        }
    }
    drop(scratch);
    r.expect_end()?;
    Ok(manifest)
}

/// The slot whose UKI the artifact `name` is, if it is one.
fn uki_slot(name: &str) -> Option<slate_core::layout::Slot> {
    [slate_core::layout::Slot::A, slate_core::layout::Slot::B]
        .into_iter()
        .find(|&s| manifest::uki_artifact(s) == name)
}

/// Recomputes the verity tree of a root image file and compares it with the file and manifest.
pub fn check_verity(f: &mut File, info: &VerityInfo) -> Result<()> {
    if let Err(why) = slate_core::verity::check_image(f, info, 2)? {
        bail!("rootfs.img: {why}");
    }
    Ok(())
}

/// Human description of a bundle (no trust needed).
pub fn describe(path: &Path) -> Result<String> {
    let mut r = BundleReader::new(BufReader::new(
        File::open(path).with_context(|| format!("opening {}", path.display()))?,
    ));
    let (m, sigs) = install::read_head(&mut r)?;
    let manifest = Manifest::parse(&m)?;
    let mut s = format!(
        "{}: bundle of {} {} for board {}\n  security epoch {}, created {}, expires {}\n  options: {}\n",
        path.display(),
        manifest.product,
        manifest.version,
        manifest.board,
        manifest.security_epoch,
        manifest.created,
        manifest.expires.map_or("never".to_string(), |e| e.to_string()),
        manifest.options
    );
    for a in &manifest.artifacts {
        s.push_str(&format!(
            "  {:<11} {:>12} bytes  sha256 {}\n",
            a.name, a.size, a.sha256
        ));
        if let Some(v) = &a.verity {
            s.push_str(&format!(
                "              verity root {} ({} data blocks)\n",
                v.root_hash, v.data_blocks
            ));
        }
    }
    for sig in &sigs.signatures {
        s.push_str(&format!("  signed by key {}\n", sig.key_id));
    }
    if sigs.signatures.is_empty() {
        s.push_str("  not signed\n");
    }
    Ok(s)
}
