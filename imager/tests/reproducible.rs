//! Same inputs, same bytes; a different version, different bytes. And no root needed.

use crate::util::*;
use std::process::Command;

#[test]
fn two_builds_are_byte_identical_and_a_new_version_differs() {
    let tmp = tempdir();
    let spec = data().join("spec/image.toml");
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    ok(&mut build_cmd(&spec, &a));
    ok(&mut build_cmd(&spec, &b));
    ok(build_cmd(&spec, &c).args(["--version", "1.2.4"]));
    for f in [
        "disk.img",
        "rootfs.img",
        "initrd.img",
        "disk.img.bmap",
        "build.toml",
    ] {
        assert_eq!(
            sha256sum(&a.join(f)),
            sha256sum(&b.join(f)),
            "{f} differs between two builds"
        );
    }
    for f in ["disk.img", "rootfs.img", "build.toml"] {
        assert_ne!(
            sha256sum(&a.join(f)),
            sha256sum(&c.join(f)),
            "{f} did not change with --version"
        );
    }
    assert_eq!(report_value(&c, "image", "version").as_str(), Some("1.2.4"));

    // A checkout made under umask 002 (group-writable overlay files) gives the same root.
    let loose = tmp.path().join("loose-spec");
    ok(Command::new("cp")
        .arg("-a")
        .arg(data().join("spec"))
        .arg(&loose));
    ok(Command::new("chmod").args(["-R", "g+w,o+w"]).arg(&loose));
    let d = tmp.path().join("d");
    ok(&mut build_cmd(&loose.join("image.toml"), &d));
    assert_eq!(
        sha256sum(&a.join("rootfs.img")),
        sha256sum(&d.join("rootfs.img")),
        "group/other-writable overlay files changed the root image"
    );
}

#[test]
fn building_needs_no_root() {
    // Run the whole build as `nobody`: no loop devices, no mounts, no privileged calls.
    let tmp = tempdir();
    let work = tmp.path();
    std::fs::set_permissions(work, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        ok(Command::new("cp").arg("-a").arg(from).arg(to))
    };
    // Everything the unprivileged build reads is copied into the world-readable folder: the
    // checkout itself may live under a private home folder.
    copy(&data(), &work.join("data"));
    copy(agent_dir(), &work.join("agent"));
    copy(&workspace().join(".cache/debs"), &work.join("debs"));
    std::fs::create_dir_all(work.join("cache")).unwrap();
    copy(
        &workspace().join(".cache/slate/debs"),
        &work.join("cache/debs"),
    );
    copy(
        std::path::Path::new(env!("CARGO_BIN_EXE_slate")),
        &work.join("slate"),
    );
    ok(Command::new("chmod").args(["-R", "a+rwX"]).arg(work));
    if Command::new("setpriv").arg("--version").output().is_err() {
        panic!("setpriv (util-linux) is needed to drop root for this test");
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(work.join("slate"))
        .args(["build", "--quiet"])
        .arg("--spec")
        .arg(work.join("data/spec/image.toml"))
        .arg("--out")
        .arg(work.join("out"))
        .arg("--boards")
        .arg(work.join("data/boards"))
        .arg("--debs")
        .arg(work.join("debs"))
        .arg("--cache")
        .arg(work.join("cache"))
        .arg("--agent-dir")
        .arg(work.join("agent"))
        .env("HOME", work);
    let is_root = String::from_utf8_lossy(&ok(Command::new("id").arg("-u")).stdout).trim() == "0";
    if !is_root {
        // Already unprivileged: run directly.
        let mut direct = build_cmd(&work.join("data/spec/image.toml"), &work.join("out"));
        ok(&mut direct);
    } else {
        ok(&mut cmd);
    }
    sgdisk_verify(&work.join("out/disk.img"));
}

/// A build that reuses the extraction cache (kernel package contents, compressed initramfs)
/// writes the same bytes as one that starts from the packages alone.
#[test]
fn a_cached_build_is_byte_identical_to_a_cold_one() {
    let tmp = tempdir();
    // A cache with only the lock's packages: the spec's lock names the kernel too, so what the
    // build extracts is kept beside them.
    let cache = tmp.path().join("cache");
    let lock =
        slate_imager::image::debian::lock::Lock::read(&data().join("spec/image.lock")).unwrap();
    std::fs::create_dir_all(cache.join("debs")).unwrap();
    for p in lock.all_packages() {
        let name = p.file_name();
        std::fs::copy(
            workspace().join(".cache/slate/debs").join(&name),
            cache.join("debs").join(&name),
        )
        .unwrap();
    }
    let spec = data().join("spec/image.toml");
    let build = |out: &std::path::Path| {
        ok(&mut build_cmd_with_cache(&spec, out, &cache));
    };
    let (cold, warm) = (tmp.path().join("cold"), tmp.path().join("warm"));
    assert!(!cache.join("extracted").exists());
    build(&cold);
    assert!(
        cache.join("extracted").is_dir(),
        "the cold build left no extraction cache"
    );
    build(&warm);
    for f in [
        "disk.img",
        "rootfs.img",
        "initrd.img",
        "vmlinuz",
        "disk.img.bmap",
        "build.toml",
    ] {
        assert_eq!(
            sha256sum(&cold.join(f)),
            sha256sum(&warm.join(f)),
            "{f} differs between a cold and a cached build"
        );
    }
}
