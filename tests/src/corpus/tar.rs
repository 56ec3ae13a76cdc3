//! The corpus's archives written by hand: entries with any name, type flag and checksum, and
//! a good bundle's parts serialised with the offsets where each begins (for cuts and flips).

use crate::Parts;
use slate_core::bundle;

pub(super) fn ustar(name: &str, data: &[u8], typeflag: u8) -> Vec<u8> {
    let mut w = bundle::Writer::new(Vec::new(), 0);
    w.entry("x", data).expect("write");
    let mut v = w.into_inner();
    // Rewrite the name and type, then the checksum.
    v[..100].fill(0);
    v[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
    v[156] = typeflag;
    fix_checksum(&mut v[..512]);
    v
}

pub(super) fn fix_checksum(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Serialises parts with an arbitrary list of (name, data, typeflag) entries after the head.
pub(super) fn archive(
    manifest: &[u8],
    sigs: &[u8],
    entries: &[(String, Vec<u8>, u8)],
    end: bool,
) -> Vec<u8> {
    let mut w = bundle::Writer::new(Vec::new(), 0);
    w.head(manifest, sigs).expect("write");
    for (n, d, t) in entries {
        w.get_mut().extend_from_slice(&ustar(n, d, *t));
    }
    if end {
        w.finish().expect("write")
    } else {
        w.into_inner()
    }
}

pub(super) fn bytes_of(p: &Parts) -> Vec<u8> {
    let entries: Vec<(String, Vec<u8>, u8)> = p
        .entries
        .iter()
        .map(|(n, d)| (n.clone(), d.clone(), b'0'))
        .collect();
    archive(&p.manifest_bytes, &p.sigs.to_bytes(), &entries, true)
}

/// Offsets in the serialised good bundle where each part starts (header offsets).
pub(super) fn boundaries(p: &Parts) -> Vec<(String, usize)> {
    let pad = |n: usize| n.div_ceil(512) * 512;
    let mut at = 0;
    let mut out = Vec::new();
    for (name, len) in [
        ("manifest.toml".to_string(), p.manifest_bytes.len()),
        ("manifest.sig".to_string(), p.sigs.to_bytes().len()),
    ]
    .into_iter()
    .chain(p.entries.iter().map(|(n, d)| (n.clone(), d.len())))
    {
        out.push((name, at));
        at += 512 + pad(len);
    }
    out.push(("end".into(), at));
    out
}
