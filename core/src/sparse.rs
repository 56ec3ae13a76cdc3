//! A file that is mostly zeros, kept as its non-zero 4 KiB blocks: the empty ext4 a sealed
//! `/data` starts from is 16 MiB of which a few hundred KiB are not zero, and it rides in
//! every initramfs (which stays in memory), so it is stored sparse and expanded only while
//! stage 1 writes it.
//!
//! ```text
//! "SLSPARSE"  magic
//! u64 LE      the file's length
//! u32 LE      number of runs, then per run: u64 LE offset, u32 LE length, the bytes
//! ```

/// The granularity of runs.
pub const BLOCK: usize = 4096;
const MAGIC: &[u8; 8] = b"SLSPARSE";

/// Encodes `bytes`: each maximal run of non-zero blocks once.
pub fn encode(bytes: &[u8]) -> Vec<u8> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, block) in bytes.chunks(BLOCK).enumerate() {
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        let start = i * BLOCK;
        match runs.last_mut() {
            Some((s, len)) if *s + *len == start => *len += block.len(),
            _ => runs.push((start, block.len())),
        }
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&u32::try_from(runs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (start, len) in runs {
        out.extend_from_slice(&(start as u64).to_le_bytes());
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&bytes[start..start + len]);
    }
    out
}

/// A run of non-zero bytes at an offset.
#[derive(Debug, PartialEq, Eq)]
pub struct Run<'a> {
    /// Offset in the file.
    pub offset: u64,
    /// The bytes.
    pub bytes: &'a [u8],
}

/// Why an encoded file is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a malformed sparse file at byte {at}: {what}")]
pub struct SparseError {
    /// Where.
    pub at: usize,
    /// What.
    pub what: &'static str,
}

/// Decodes an encoded file into its length and runs, every run inside the length and after
/// the previous one.
pub fn decode(encoded: &[u8]) -> Result<(u64, Vec<Run<'_>>), SparseError> {
    let mut at = 0usize;
    let mut take = |n: usize, what| -> Result<&[u8], SparseError> {
        let s = at
            .checked_add(n)
            .and_then(|end| encoded.get(at..end))
            .ok_or(SparseError { at, what })?;
        at += n;
        Ok(s)
    };
    if take(8, "no magic")? != MAGIC {
        return Err(SparseError {
            at: 0,
            what: "not a sparse file",
        });
    }
    let le64 = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
    let le32 = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or_default());
    let len = le64(take(8, "no length")?);
    let count = le32(take(4, "no run count")?);
    let mut runs = Vec::new();
    let mut end_of_last = 0u64;
    for _ in 0..count {
        let offset = le64(take(8, "a run's offset past the end")?);
        let n = le32(take(4, "a run's length past the end")?);
        let bytes = take(crate::num::usize_of(u64::from(n)), "a run past the end")?;
        let end = offset.checked_add(u64::from(n));
        if offset < end_of_last || end.is_none_or(|e| e > len) {
            return Err(SparseError {
                at: 0,
                what: "runs out of order or past the file's length",
            });
        }
        end_of_last = end.unwrap_or(len);
        runs.push(Run { offset, bytes });
    }
    Ok((len, runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mostly_zero_file_round_trips_small() {
        let mut file = vec![0u8; 64 * BLOCK + 100];
        file[5] = 1;
        file[BLOCK + 9] = 2; // the next block: one run of two blocks
        file[40 * BLOCK] = 3;
        file[64 * BLOCK + 99] = 4; // the short last block
        let enc = encode(&file);
        assert!(enc.len() < 5 * BLOCK, "{}", enc.len());
        let (len, runs) = decode(&enc).unwrap();
        assert_eq!(len, file.len() as u64);
        assert_eq!(runs.len(), 3);
        let mut back = vec![0u8; len as usize];
        for r in runs {
            back[r.offset as usize..r.offset as usize + r.bytes.len()].copy_from_slice(r.bytes);
        }
        assert_eq!(back, file);
    }

    #[test]
    fn runs_past_the_length_or_the_input_are_refused() {
        let mut enc = encode(&[1u8; 10]);
        enc[8] = 5; // the length: 5, below the run's end
        assert!(decode(&enc).is_err());
        let enc = encode(&[1u8; 10]);
        assert!(decode(&enc[..enc.len() - 1]).is_err());
        assert!(decode(b"nope").is_err());
    }
}
