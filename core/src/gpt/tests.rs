//! Tests of the GPT reader and writer (with `sgdisk` as the oracle where it can judge).
use super::*;
use proptest::prelude::*;

fn table(parts: Vec<(u64, u64, &str)>) -> Table {
    Table {
        disk_guid: Guid::derive("test", b"disk"),
        total_sectors: 1 << 20,
        partitions: parts
            .into_iter()
            .map(|(first, last, name)| Partition {
                type_guid: Guid::derive("type", name.as_bytes()),
                unique_guid: Guid::derive("uniq", name.as_bytes()),
                first_lba: first,
                last_lba: last,
                attributes: Attributes(Attributes::READ_ONLY | Attributes::NO_AUTO),
                name: name.to_string(),
            })
            .collect(),
    }
}

/// A disk image file holding `t` (both tables), `sectors` long.
fn disk_with(t: &Table, dir: &std::path::Path) -> std::path::PathBuf {
    let enc = t.encode().unwrap();
    let path = dir.join("disk.img");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(t.total_sectors * SECTOR).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&enc.primary, 0).unwrap();
    f.write_all_at(&enc.backup, enc.backup_offset).unwrap();
    path
}

#[test]
fn a_grown_table_ends_the_last_partition_at_the_new_end_and_sgdisk_agrees() {
    let mut t = table(vec![(2048, 4095, "esp"), (4096, 8191, "data")]);
    t.total_sectors = 10240;
    assert!(
        t.grown(10240, "data", 2048).is_none(),
        "same size: nothing to do"
    );
    assert!(
        t.grown(20480, "esp", 2048).is_none(),
        "esp is not the last partition"
    );
    let g = t.grown(20480 + 100, "data", 2048).unwrap();
    assert_eq!(g.total_sectors, 20580);
    let data = g.by_name("data").unwrap();
    assert_eq!(data.first_lba, 4096);
    assert_eq!((data.last_lba + 1) % 2048, 0);
    assert!(data.last_lba <= g.last_usable() && data.last_lba + 2048 > g.last_usable());
    assert_eq!(g.by_name("esp"), t.by_name("esp"));
    assert!(g.grown(20580, "data", 2048).is_none(), "grown once");

    // The standard tool reads the grown table with no problem.
    let dir = tempfile::tempdir().unwrap();
    let disk = disk_with(&g, dir.path());
    if let Err(e) = slate_oracles::sgdisk_verify(&disk) {
        panic!("{e}");
    }
}

#[test]
fn the_backup_table_reads_back_and_a_damaged_one_is_refused() {
    let mut t = table(vec![(2048, 4095, "esp"), (4096, 8191, "data")]);
    t.total_sectors = 10240;
    let enc = t.encode().unwrap();
    let back = Table::decode_backup(&enc.backup, t.total_sectors).unwrap();
    assert_eq!(back, t);
    let mut bad = enc.backup.clone();
    bad[100] ^= 1;
    assert!(matches!(
        Table::decode_backup(&bad, t.total_sectors),
        Err(GptError::BadCrc { .. })
    ));
    assert!(Table::decode_backup(&enc.backup, t.total_sectors + 8).is_err());
}

#[test]
fn round_trips_through_primary_bytes() {
    let t = table(vec![(2048, 4095, "esp"), (4096, 8191, "root-a")]);
    let enc = t.encode().unwrap();
    assert_eq!(Table::decode(&enc.primary).unwrap(), t);
    assert_eq!(enc.backup_offset, ((1 << 20) - 33) * SECTOR);
    assert_eq!(&enc.backup[enc.backup.len() - 512..][..8], SIGNATURE);
}

#[test]
fn overlapping_partitions_are_refused() {
    let t = table(vec![(2048, 4096, "esp"), (4096, 8191, "root-a")]);
    assert!(matches!(
        t.encode(),
        Err(GptError::BadExtent { index: 1, .. })
    ));
}

#[test]
fn partition_past_usable_area_is_refused() {
    let t = table(vec![(2048, (1 << 20) - 2, "esp")]);
    assert!(matches!(t.encode(), Err(GptError::BadExtent { .. })));
}

#[test]
fn flipped_entry_byte_is_caught_by_crc() {
    let t = table(vec![(2048, 4095, "esp")]);
    let mut enc = t.encode().unwrap();
    enc.primary[1024 + 60] ^= 1;
    assert!(matches!(
        Table::decode(&enc.primary),
        Err(GptError::BadCrc {
            which: "partition entries",
            ..
        })
    ));
}

#[test]
fn attributes_display_names_bits() {
    let a = Attributes(Attributes::READ_ONLY | Attributes::NO_AUTO);
    assert_eq!(a.to_string(), "read-only,no-auto");
    assert_eq!(Attributes(0).to_string(), "-");
}

proptest! {
    #[test]
    fn any_valid_layout_round_trips(sizes in proptest::collection::vec(1u64..5000, 1..8),
                                    label in "[a-z0-9-]{1,36}") {
        let mut first = 2048;
        let mut parts = Vec::new();
        for s in sizes {
            parts.push((first, first + s - 1, label.as_str()));
            first += s;
        }
        let t = table(parts);
        let enc = t.encode().unwrap();
        prop_assert_eq!(Table::decode(&enc.primary).unwrap(), t);
    }
}
