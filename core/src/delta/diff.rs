//! Making a static patch ([`super::patch`]), the publisher's side: each source is indexed at
//! every [`BLOCK`]-th byte with a rolling hash, which then slides over the target one byte at
//! a time; each verified hit is extended both ways — the rsync/xdelta way, without a
//! compressor for the new bytes (a root image's new bytes are squashfs blocks that are
//! compressed already).

use super::patch::{is_source_name, LevelsAt, PatchError, SourceBytes, BLOCK, MAGIC, MAX_SOURCES};
use std::collections::HashMap;

fn push_leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The multiplier of the rolling hash (odd, so no input bit is lost).
const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// `MUL` to the power `BLOCK - 1`: what the byte leaving the window was multiplied by.
fn out_factor() -> u64 {
    (1..BLOCK).fold(1u64, |f, _| f.wrapping_mul(MUL))
}

fn hash_block(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |h, &x| {
        h.wrapping_mul(MUL).wrapping_add(u64::from(x) + 1)
    })
}

/// Spreads the rolling hash's high bits into the low ones the table indexes by (a polynomial
/// hash's low bits depend only on its inputs' low bits).
fn mix(h: u64) -> u64 {
    let h = h ^ (h >> 31);
    h.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ (h >> 29)
}

/// The patch that builds `target` from `sources` (the publisher's side; holds an index of
/// every [`BLOCK`]-th position of the sources in memory, about 24 bytes each), with the
/// target's verity levels, when given, left for the device to compute.
///
/// Refuses more than [`MAX_SOURCES`] sources, names a device could not hold, and levels
/// outside the target or before their data.
pub fn diff(
    target: &[u8],
    sources: &[SourceBytes<'_>],
    levels: Option<&LevelsAt>,
) -> Result<Vec<u8>, PatchError> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(target.len() as u64).to_le_bytes());
    let count = u8::try_from(sources.len())
        .ok()
        .filter(|&n| (1..=MAX_SOURCES).contains(&usize::from(n)))
        .ok_or_else(|| PatchError::Field {
            what: "source count",
            at: 16,
            why: format!("{} is not 1..={MAX_SOURCES}", sources.len()),
        })?;
    out.push(count);
    for s in sources {
        let len = u8::try_from(s.name.len())
            .ok()
            .filter(|_| is_source_name(s.name))
            .ok_or_else(|| PatchError::Field {
                what: "source name",
                at: out.len() as u64,
                why: format!("{:?} is not 1..=64 of [A-Za-z0-9._-]", s.name),
            })?;
        out.push(len);
        out.extend_from_slice(s.name.as_bytes());
        out.extend_from_slice(&(s.bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&s.id.0);
    }
    let mut table: HashMap<u64, (u8, usize)> = HashMap::new();
    for (i, s) in (0u8..).zip(sources) {
        for pos in (0..s.bytes.len().saturating_sub(BLOCK - 1)).step_by(BLOCK) {
            table
                .entry(mix(hash_block(&s.bytes[pos..pos + BLOCK])))
                .or_insert((i, pos));
        }
    }
    let Some(l) = levels.filter(|l| l.len > 0) else {
        scan(&mut out, target, 0, target.len(), sources, &table);
        return Ok(out);
    };
    let bad = |why: &str| PatchError::Field {
        what: "levels",
        at: l.at,
        why: why.to_string(),
    };
    let at = usize::try_from(l.at).map_err(|_| bad("past the target"))?;
    let end = usize::try_from(l.at.saturating_add(l.len))
        .ok()
        .filter(|&e| e <= target.len())
        .ok_or_else(|| bad("past the target"))?;
    let s = &l.source;
    let salt_len = u16::try_from(s.salt.len())
        .ok()
        .filter(|&n| usize::from(n) <= crate::verity::MAX_SALT)
        .ok_or_else(|| bad("the salt is too long"))?;
    if s.data_at.saturating_add(s.data_len) > l.at {
        return Err(bad("their data does not come before them"));
    }
    scan(&mut out, target, 0, at, sources, &table);
    out.push(2);
    push_leb128(&mut out, s.data_at);
    push_leb128(&mut out, s.data_len);
    out.extend_from_slice(&salt_len.to_le_bytes());
    out.extend_from_slice(&s.salt);
    push_leb128(&mut out, l.len);
    scan(&mut out, target, end, target.len(), sources, &table);
    Ok(out)
}

/// Appends the steps that build `target[start..end]`: copies of every run the sources share
/// with it (found by `table`), literals for the rest.
fn scan(
    out: &mut Vec<u8>,
    target: &[u8],
    start: usize,
    end: usize,
    sources: &[SourceBytes<'_>],
    table: &HashMap<u64, (u8, usize)>,
) {
    let out_f = out_factor();
    let literal = |out: &mut Vec<u8>, bytes: &[u8]| {
        if !bytes.is_empty() {
            out.push(1);
            push_leb128(out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
    };
    let mut pending = start; // the first target byte not yet in the patch
    let mut i = start;
    let mut h = if start + BLOCK <= end {
        hash_block(&target[start..start + BLOCK])
    } else {
        0
    };
    while i + BLOCK <= end {
        let hit = table
            .get(&mix(h))
            .copied()
            .filter(|&(s, p)| sources[usize::from(s)].bytes[p..p + BLOCK] == target[i..i + BLOCK]);
        if let Some((s, p)) = hit {
            let src = sources[usize::from(s)].bytes;
            // Extend the match backwards over bytes not yet emitted, and forwards.
            let back = (1..=(i - pending).min(p))
                .take_while(|&k| target[i - k] == src[p - k])
                .count();
            let (first, from) = (i - back, p - back);
            let fwd = target[i + BLOCK..end]
                .iter()
                .zip(&src[p + BLOCK..])
                .take_while(|(a, b)| a == b)
                .count();
            let last = i + BLOCK + fwd;
            literal(out, &target[pending..first]);
            out.push(0);
            out.push(s);
            push_leb128(out, from as u64);
            push_leb128(out, (last - first) as u64);
            pending = last;
            i = last;
            if i + BLOCK <= end {
                h = hash_block(&target[i..i + BLOCK]);
            }
            continue;
        }
        if i + BLOCK < end {
            h = h
                .wrapping_sub((u64::from(target[i]) + 1).wrapping_mul(out_f))
                .wrapping_mul(MUL)
                .wrapping_add(u64::from(target[i + BLOCK]) + 1);
        }
        i += 1;
    }
    literal(out, &target[pending..end]);
}
