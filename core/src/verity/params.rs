//! The root's verity parameters as they travel from `slate build` to stage 1: the command
//! line's `slate.verity=root:salt:blocks:offset`, the manifest's and `build.toml`'s table, and
//! the device-mapper target stage 1 hands the kernel. One typed form, one parser.

use super::{tree_blocks, VerityError, BLOCK, MAX_DATA_BLOCKS, MAX_SALT};
use crate::digest::Digest32;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// What the kernel needs to map a slot: everything `slate.verity=` carries on the command line.
///
/// The one typed form of these parameters from `slate build` to stage 1: `build.toml` and the
/// manifest store it as a table (`root_hash`, `salt`, `data_blocks`, `hash_offset`), the boot
/// entry as `root:salt:blocks:offset`, and stage 1 hands [`VerityInfo::dm_target`] to the kernel.
/// Every way in goes through [`VerityInfo::new`], so no form accepts what another refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityInfo {
    /// Root hash of the tree.
    pub root_hash: Digest32,
    /// Salt mixed into every digest.
    pub salt: Vec<u8>,
    /// Number of 4 KiB data blocks covered.
    pub data_blocks: u64,
    /// Byte offset of the superblock (= padded data size).
    pub hash_offset: u64,
}

/// One device-mapper target line, in the pieces `DM_TABLE_LOAD` takes (no text to split again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmTarget {
    /// First sector.
    pub start: u64,
    /// Length in 512-byte sectors.
    pub sectors: u64,
    /// Target type (`verity`).
    pub kind: &'static str,
    /// The target's parameters.
    pub params: String,
}

impl fmt::Display for DmTarget {
    /// As `dmsetup table` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.start, self.sectors, self.kind, self.params
        )
    }
}

impl VerityInfo {
    /// Checks the parameters together: the one gate for the command line, the manifest and
    /// `build.toml`.
    pub fn new(
        root_hash: Digest32,
        salt: Vec<u8>,
        data_blocks: u64,
        hash_offset: u64,
    ) -> Result<VerityInfo, &'static str> {
        if salt.len() > MAX_SALT {
            return Err("salt longer than 256 bytes");
        }
        if data_blocks == 0
            || !hash_offset.is_multiple_of(BLOCK)
            || hash_offset / BLOCK < data_blocks
        {
            return Err("hash offset must be 4 KiB aligned and after the data");
        }
        // Bounds that keep every size computed from these numbers far from u64 overflow.
        if data_blocks > MAX_DATA_BLOCKS || hash_offset > 2 * MAX_DATA_BLOCKS * BLOCK {
            return Err("describes more than 4 PiB; not a slot image");
        }
        Ok(VerityInfo {
            root_hash,
            salt,
            data_blocks,
            hash_offset,
        })
    }

    /// The first hash block the kernel reads, in 4 KiB blocks (the superblock is skipped).
    pub fn hash_start_block(&self) -> u64 {
        self.hash_offset / BLOCK + 1
    }

    /// The device-mapper target for this tree on `dev` (data and hash on the same device).
    pub fn dm_target(&self, dev: &str, options: &[&str]) -> DmTarget {
        let mut params = format!(
            "1 {dev} {dev} {BLOCK} {BLOCK} {} {} sha256 {} {}",
            self.data_blocks,
            self.hash_start_block(),
            self.root_hash,
            hex::encode(&self.salt),
        );
        if !options.is_empty() {
            params.push_str(&format!(" {} {}", options.len(), options.join(" ")));
        }
        DmTarget {
            start: 0,
            sectors: self.data_blocks * (BLOCK / 512),
            kind: "verity",
            params,
        }
    }

    /// Total bytes of the slot image: data, superblock block and tree.
    pub fn image_size(&self) -> u64 {
        self.hash_offset + (1 + tree_blocks(self.data_blocks)) * BLOCK
    }
}

/// `root:salt:data_blocks:hash_offset`, the form of `slate.verity=` on the kernel command line.
impl fmt::Display for VerityInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.root_hash,
            hex::encode(&self.salt),
            self.data_blocks,
            self.hash_offset
        )
    }
}

impl FromStr for VerityInfo {
    type Err = VerityError;

    fn from_str(s: &str) -> Result<VerityInfo, VerityError> {
        let bad = |why: &str| VerityError::BadParams {
            text: s.to_string(),
            why: why.to_string(),
        };
        let f: Vec<&str> = s.split(':').collect();
        if f.len() != 4 {
            return Err(bad("need 4 colon-separated fields"));
        }
        let root_hash: Digest32 = f[0]
            .parse()
            .map_err(|e: crate::digest::DigestError| bad(&format!("root hash: {e}")))?;
        let salt = decode_salt(f[1]).map_err(|e| bad(&e))?;
        let data_blocks: u64 = f[2]
            .parse()
            .map_err(|_| bad("data blocks is not a number"))?;
        let hash_offset: u64 = f[3]
            .parse()
            .map_err(|_| bad("hash offset is not a number"))?;
        VerityInfo::new(root_hash, salt, data_blocks, hash_offset).map_err(bad)
    }
}

/// Lower-case hex only, like every digest Slate writes, so one salt has one spelling.
fn decode_salt(text: &str) -> Result<Vec<u8>, String> {
    if text.chars().any(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err("salt is not lower-case hex".into());
    }
    hex::decode(text).map_err(|e| format!("salt: {e}"))
}

/// The table form of `build.toml` and the manifest (`[verity]` / `[artifact.verity]`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerityTable {
    root_hash: Digest32,
    salt: String,
    data_blocks: u64,
    hash_offset: u64,
}

impl Serialize for VerityInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        VerityTable {
            root_hash: self.root_hash,
            salt: hex::encode(&self.salt),
            data_blocks: self.data_blocks,
            hash_offset: self.hash_offset,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for VerityInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<VerityInfo, D::Error> {
        use serde::de::Error;
        let t = VerityTable::deserialize(d)?;
        let salt = decode_salt(&t.salt).map_err(D::Error::custom)?;
        VerityInfo::new(t.root_hash, salt, t.data_blocks, t.hash_offset)
            .map_err(|why| D::Error::custom(format!("verity parameters: {why}")))
    }
}
