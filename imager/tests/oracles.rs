//! Each output checked by the standard tool that knows its format.

use crate::util::*;
use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn sgdisk_finds_no_problems_and_the_designed_layout() {
    let disk = shared_build().join("disk.img");
    sgdisk_verify(&disk);
    let expect = [
        (
            1,
            "esp",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "0000000000000000",
        ),
        (
            2,
            "root-a",
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            "9000000000000000",
        ),
        (
            3,
            "root-b",
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            "9000000000000000",
        ),
        (
            4,
            "data",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "0000000000000000",
        ),
    ];
    for (n, label, type_guid, attrs) in expect {
        let info = stdout(&ok(Command::new("sgdisk")
            .arg("-i")
            .arg(n.to_string())
            .arg(&disk)));
        assert!(
            info.contains(&format!("Partition GUID code: {type_guid}")),
            "partition {n}: {info}"
        );
        assert!(
            info.contains(&format!("Partition name: '{label}'")),
            "partition {n}: {info}"
        );
        assert!(
            info.contains(&format!("Attribute flags: {attrs}")),
            "partition {n}: {info}"
        );
        let (first, _) = partition_extent(&disk, n);
        assert_eq!(first % 2048, 0, "partition {n} is not 1 MiB aligned");
    }
}

#[test]
fn esp_passes_fsck_fat_and_holds_bootloader_kernel_and_entry() {
    let out = shared_build();
    let tmp = tempdir();
    let esp = tmp.path().join("esp.img");
    extract_partition(&out.join("disk.img"), 1, &esp);
    fsck_fat(&esp);
    let img = esp.to_str().unwrap();
    let listing = stdout(&ok(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-/", "-b", "-i", img, "::/"])));
    for f in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/loader/loader.conf",
        "::/loader/entries/slate-a-1.2.3.conf",
        "::/slate/a/vmlinuz",
        "::/slate/a/initrd.img",
    ] {
        assert!(
            listing.lines().any(|l| l.trim() == f),
            "{f} missing from the ESP:\n{listing}"
        );
    }
    let entry = stdout(&ok(Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", img, "::/loader/entries/slate-a-1.2.3.conf"])));
    let root_hash = report_value(out, "verity", "root_hash");
    assert!(entry.contains("version 1.2.3"), "{entry}");
    assert!(entry.contains("sort-key slate"), "{entry}");
    assert!(entry.contains("slate.slot=a"), "{entry}");
    assert!(
        entry.contains(&format!("slate.verity={}:", root_hash.as_str().unwrap())),
        "{entry}"
    );
    // The kernel on the ESP is the one in the output folder.
    let kernel = tmp.path().join("vmlinuz");
    ok(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", img, "::/slate/a/vmlinuz"])
        .arg(&kernel));
    assert_eq!(sha256sum(&kernel), sha256sum(&out.join("vmlinuz")));
}

/// (type+mode string, uid/gid, link target) per path, from `unsquashfs -lln`.
fn squashfs_listing(image: &std::path::Path) -> BTreeMap<String, (String, String, Option<String>)> {
    let text = slate_oracles::unsquashfs_list(image).unwrap();
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || !f[5].starts_with("squashfs-root") {
            continue;
        }
        let path = f[5].trim_start_matches("squashfs-root").to_string();
        let target = (f.len() >= 8 && f[6] == "->").then(|| f[7].to_string());
        map.insert(
            if path.is_empty() { "/".into() } else { path },
            (f[0].to_string(), f[1].to_string(), target),
        );
    }
    map
}

#[test]
fn unsquashfs_lists_exactly_the_tree_the_spec_asked_for() {
    let out = shared_build();
    let listing = squashfs_listing(&out.join("rootfs.img"));
    let host_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data().join("spec/overlay/etc/app/config.toml"))
            .unwrap()
            .permissions(),
    );
    let overlay_mode = if host_mode & 0o077 == 0 {
        "-rw-------"
    } else {
        "-rw-r--r--"
    };
    let expected: Vec<(&str, &str, &str, Option<&str>)> = vec![
        ("/", "drwxr-xr-x", "0/0", None),
        // Merged-/usr, as Debian 12 lays out a root.
        ("/bin", "lrwxrwxrwx", "0/0", Some("usr/bin")),
        ("/sbin", "lrwxrwxrwx", "0/0", Some("usr/sbin")),
        ("/lib", "lrwxrwxrwx", "0/0", Some("usr/lib")),
        // From the package (only the path asked for), with the package's mode, under /usr.
        ("/usr/bin/busybox", "-rwxr-xr-x", "0/0", None),
        ("/usr/bin/sh", "lrwxrwxrwx", "0/0", Some("busybox")),
        ("/usr/bin/ls", "lrwxrwxrwx", "0/0", Some("busybox")),
        // From the overlay.
        ("/etc", "drwxr-xr-x", "0/0", None),
        ("/etc/app", "drwxr-xr-x", "0/0", None),
        ("/etc/app/config.toml", overlay_mode, "0/0", None),
        // Explicit file, folder and links.
        ("/opt", "drwxr-xr-x", "0/0", None),
        ("/opt/app", "drwxr-xr-x", "0/0", None),
        ("/opt/app/tool", "-rwsr-x---", "1000/100", None),
        ("/srv", "drwxr-xr-x", "0/0", None),
        ("/srv/private", "drwx------", "1000/1000", None),
        ("/usr", "drwxr-xr-x", "0/0", None),
        ("/usr/bin", "drwxr-xr-x", "0/0", None),
        ("/usr/bin/tool", "lrwxrwxrwx", "0/0", Some("/opt/app/tool")),
        // What Slate adds to every root.
        ("/data", "drwxr-xr-x", "0/0", None),
        ("/dev", "drwxr-xr-x", "0/0", None),
        ("/proc", "dr-xr-xr-x", "0/0", None),
        ("/run", "drwxr-xr-x", "0/0", None),
        ("/sys", "dr-xr-xr-x", "0/0", None),
        ("/tmp", "drwxrwxrwt", "0/0", None),
        ("/var", "drwxr-xr-x", "0/0", None),
        ("/etc/os-release", "-rw-r--r--", "0/0", None),
        ("/etc/passwd", "-rw-r--r--", "0/0", None),
        ("/etc/group", "-rw-r--r--", "0/0", None),
        ("/etc/slate", "drwxr-xr-x", "0/0", None),
        ("/etc/slate/agent.toml", "-rw-r--r--", "0/0", None),
        ("/etc/slate/health.toml", "-rw-r--r--", "0/0", None),
        ("/etc/slate/image.toml", "-rw-r--r--", "0/0", None),
        ("/etc/slate/init.toml", "-rw-r--r--", "0/0", None),
        ("/etc/slate/network.toml", "-rw-r--r--", "0/0", None),
        ("/etc/slate/services", "drwxr-xr-x", "0/0", None),
        ("/etc/slate/services/web.toml", "-rw-r--r--", "0/0", None),
        ("/usr/bin/slated", "-rwxr-xr-x", "0/0", None),
        ("/usr/lib", "drwxr-xr-x", "0/0", None),
        ("/usr/lib/slate", "drwxr-xr-x", "0/0", None),
        ("/usr/lib/slate/provenance.toml", "-rw-r--r--", "0/0", None),
        ("/usr/lib/slate/slate-init", "-rwxr-xr-x", "0/0", None),
    ];
    let expected: BTreeMap<String, (String, String, Option<String>)> = expected
        .into_iter()
        .map(|(p, m, o, t)| {
            (
                p.to_string(),
                (m.to_string(), o.to_string(), t.map(str::to_string)),
            )
        })
        .collect();
    assert_eq!(listing, expected);

    // The generated files say what the spec said.
    let tmp = tempdir();
    let x = tmp.path().join("x");
    slate_oracles::unsquashfs_extract(&out.join("rootfs.img"), &x).unwrap();
    let read = |p: &str| std::fs::read_to_string(x.join(p)).unwrap();
    assert!(read("etc/os-release").contains("VERSION_ID=1.2.3"));
    assert!(read("etc/os-release").contains("NAME=\"oracle\""));
    assert!(read("etc/slate/agent.toml").contains("port = 9090"));
    assert!(read("etc/slate/init.toml").contains("hostname = \"oracle-host\""));
    assert!(read("etc/slate/services/web.toml").contains("restart = \"on-failure\""));
    assert!(read("etc/slate/health.toml").contains("kind = \"tcp\""));
    let prov = read("usr/lib/slate/provenance.toml");
    assert!(prov.contains("name = \"busybox-static\""), "{prov}");
    assert!(
        prov.contains(&sha256sum(&data().join("spec/files/tool.sh"))),
        "{prov}"
    );
    // The same provenance is in build.toml.
    let report: toml::Table =
        toml::from_str(&std::fs::read_to_string(out.join("build.toml")).unwrap()).unwrap();
    let inside: toml::Table = toml::from_str(&prov).unwrap();
    assert_eq!(report["provenance"].as_table().unwrap(), &inside);
}

#[test]
fn veritysetup_accepts_the_tree_and_writes_the_same_bytes() {
    let out = shared_build();
    let rootfs = out.join("rootfs.img");
    let root_hash = report_value(out, "verity", "root_hash")
        .as_str()
        .unwrap()
        .to_string();
    let salt = report_value(out, "verity", "salt")
        .as_str()
        .unwrap()
        .to_string();
    let uuid = report_value(out, "verity", "uuid")
        .as_str()
        .unwrap()
        .to_string();
    let hash_offset = report_value(out, "verity", "hash_offset")
        .as_integer()
        .unwrap() as u64;
    ok(Command::new("veritysetup")
        .arg("verify")
        .arg(&rootfs)
        .arg(&rootfs)
        .arg(&root_hash)
        .arg(format!("--hash-offset={hash_offset}")));

    // veritysetup format over the same data with the same salt and UUID.
    let bytes = std::fs::read(&rootfs).unwrap();
    let tmp = tempdir();
    let data_file = tmp.path().join("data");
    let hash_file = tmp.path().join("hash");
    std::fs::write(&data_file, &bytes[..hash_offset as usize]).unwrap();
    std::fs::write(&hash_file, b"").unwrap();
    let fmt = stdout(&ok(Command::new("veritysetup")
        .arg("format")
        .arg(&data_file)
        .arg(&hash_file)
        .arg(format!("--salt={salt}"))
        .arg(format!("--uuid={uuid}"))
        .args([
            "--data-block-size=4096",
            "--hash-block-size=4096",
            "--hash=sha256",
            "--format=1",
        ])));
    assert!(
        fmt.contains(&root_hash),
        "veritysetup's root hash differs:\n{fmt}"
    );
    let theirs = std::fs::read(&hash_file).unwrap();
    let ours = &bytes[hash_offset as usize..];
    assert_eq!(ours.len(), theirs.len(), "hash area sizes differ");
    assert!(
        ours == theirs.as_slice(),
        "hash area differs from veritysetup's"
    );

    // One flipped data byte is caught.
    let mut bad = bytes.clone();
    bad[4096 * 3 + 17] ^= 0x40;
    let bad_file = tmp.path().join("bad.img");
    std::fs::write(&bad_file, &bad).unwrap();
    fails(
        Command::new("veritysetup")
            .arg("verify")
            .arg(&bad_file)
            .arg(&bad_file)
            .arg(&root_hash)
            .arg(format!("--hash-offset={hash_offset}")),
    );
}

#[test]
fn root_partition_holds_the_root_image() {
    let out = shared_build();
    let tmp = tempdir();
    let part = tmp.path().join("root-a");
    extract_partition(&out.join("disk.img"), 2, &part);
    let image = std::fs::read(out.join("rootfs.img")).unwrap();
    let slot = std::fs::read(&part).unwrap();
    assert!(slot.len() >= image.len());
    assert!(
        slot[..image.len()] == image[..],
        "root-a does not start with rootfs.img"
    );
}

#[test]
fn initramfs_is_a_newc_cpio_with_init_and_modules_in_dependency_order() {
    let out = shared_build();
    let tmp = tempdir();
    let cpio_path = tmp.path().join("initrd.cpio");
    let raw = ok(Command::new("zstd").arg("-dc").arg(out.join("initrd.img")));
    std::fs::write(&cpio_path, &raw.stdout).unwrap();
    let list = stdout(&ok(Command::new("sh")
        .arg("-c")
        .arg(format!("cpio -itv --quiet < {}", cpio_path.display()))));
    let find = |suffix: &str| {
        list.lines()
            .find(|l| l.ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix} not in the initramfs:\n{list}"))
    };
    assert!(find(" init").starts_with("-rwxr-xr-x"));
    assert!(find(" dev/console").starts_with("crw-------"));
    for m in ["dm-mod.ko", "dm-bufio.ko", "dm-verity.ko", "squashfs.ko"] {
        find(&format!("/{m}"));
    }
    ok(Command::new("sh").arg("-c").arg(format!(
        "cd {} && cpio -id --quiet etc/slate/initrd.toml < initrd.cpio",
        tmp.path().display()
    )));
    let cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(tmp.path().join("etc/slate/initrd.toml")).unwrap())
            .unwrap();
    let order: Vec<String> = cfg["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    let pos = |m: &str| {
        order
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("{m} not in {order:?}"))
    };
    assert!(pos("dm-mod.ko") < pos("dm-verity.ko"), "{order:?}");
    assert!(pos("dm-bufio.ko") < pos("dm-verity.ko"), "{order:?}");
}

#[test]
fn inspect_reports_slots_and_entries_as_json() {
    let out = shared_build();
    let json = stdout(&ok(slate()
        .arg("inspect")
        .arg("--json")
        .arg(out.join("disk.img"))));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let root_hash = report_value(out, "verity", "root_hash");
    assert_eq!(v["slots"][0]["slot"], "a");
    assert_eq!(v["slots"][0]["state"], "good");
    assert_eq!(v["slots"][0]["version"], "1.2.3");
    assert_eq!(v["slots"][0]["root_hash"].as_str(), root_hash.as_str());
    assert_eq!(v["slots"][1]["state"], "empty");
    assert_eq!(v["entries"][0]["file"], "slate-a-1.2.3.conf");
    assert_eq!(v["partitions"].as_array().unwrap().len(), 4);
    let human = stdout(&ok(slate().arg("inspect").arg(out.join("disk.img"))));
    assert!(human.contains("a: good"), "{human}");
    assert!(human.contains("b: empty"), "{human}");
}
